"""`python -m xtremedistil_tf.convert`, run as a user would (subprocess) and in-process for the other sources."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tf = pytest.importorskip("tensorflow")

from xtremedistil_tf.convert import __main__ as cli  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DIFF = re.compile(r"max \|difference\| of the last hidden state.* = ([0-9.e+-]+) "
                  r"\(tolerance ([0-9.e+-]+)\) (OK|FAILED)")


def run_cli(*args, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "xtremedistil_tf.convert", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _tiny_hf(folder, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, max_position_embeddings=40, initializer_range=0.2)
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


@pytest.mark.slow  # about 25 s on MiniLM; the tiny-model CLI tests keep the subprocess, --verify and exit codes
def test_cli_minilm_to_saved_model_with_verify(minilm_dir, tmp_path):
    proc = run_cli("--input", str(minilm_dir), "--output", "tmp", "--format", "saved_model", "--verify",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    match = DIFF.search(proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) <= 1e-4 and match.group(3) == "OK"
    assert "sentences tokenized" in proc.stdout  # the MiniLM's own tokenizer, real sentences
    serve = tf.saved_model.load(str(tmp_path / "tmp")).signatures["serving_default"]
    assert {"last_hidden_state", "pooler_output"} == set(serve.structured_outputs)
    assert (tmp_path / "tmp" / "tokenizer" / "vocab.txt").is_file()
    # stderr is not a terminal: a progress line after each step (load, export, verify), and nothing else of ours
    steps = [line for line in proc.stderr.splitlines() if line.startswith("convert ")]
    assert [re.search(r"step (\d)/3", line).group(1) for line in steps] == ["1", "2", "3"], proc.stderr
    assert "(load, export, verify)" in steps[0]


def test_cli_exits_1_above_tolerance(tmp_path):
    src = _tiny_hf(tmp_path / "tiny")
    proc = run_cli("--input", str(src), "--output", str(tmp_path / "out"), "--format", "keras", "--verify",
                   "--tolerance", "1e-12", "--progress", "none", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "step " not in proc.stderr  # --progress none
    match = DIFF.search(proc.stdout)
    assert match and match.group(3) == "FAILED" and 0 < float(match.group(1)) < 1e-4, proc.stdout
    assert "random sequences" in proc.stdout  # no tokenizer in SRC: random ids
    assert (tmp_path / "out" / "model.weights.h5").is_file()  # the conversion itself was written


def test_cli_missing_input_exits_2_with_one_line(tmp_path):
    proc = run_cli("--input", str(tmp_path / "no-such-model"), "--output", str(tmp_path / "out"),
                   "--format", "hf", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no-such-model" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ in-process
@pytest.fixture
def quiet_env(monkeypatch):
    for key in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(key, os.environ.get(key, ""))  # whatever main() sets is undone after the test


def test_cli_google_checkpoint_to_hf_verifies(tmp_path, capsys):
    from test_convert_google import _tiny_bert, write_google_checkpoint
    src = write_google_checkpoint(str(tmp_path / "google"), _tiny_bert(seed=3))
    code = cli.run(cli.parse_args(["--input", src, "--output", str(tmp_path / "hf"), "--format", "hf",
                                   "--verify", "--tolerance", "1e-5"]))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "from google" in out and DIFF.search(out).group(3) == "OK"
    model = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    assert type(model).__name__ == "BertModel"


def test_cli_keras_source_to_saved_model_verifies(tmp_path, capsys):
    src = _tiny_hf(tmp_path / "tiny", seed=4)
    assert cli.run(cli.parse_args(["--input", str(src), "--output", str(tmp_path / "k"), "--format", "keras"])) == 0
    code = cli.run(cli.parse_args(["--input", str(tmp_path / "k"), "--output", str(tmp_path / "sm"),
                                   "--format", "saved_model", "--verify", "--tolerance", "1e-5"]))
    out = capsys.readouterr().out
    assert code == 0 and "from keras" in out and DIFF.search(out).group(3) == "OK", out


def test_cli_checkpoint_error_is_one_line_and_verbose_shows_traceback(tmp_path, capsys, quiet_env):
    src = _tiny_hf(tmp_path / "bad", seed=5)
    weights = src / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()  # drop transformers' progress output from writing the source
    args = ["--input", str(src), "--output", str(tmp_path / "out"), "--format", "saved_model"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "model.safetensors" in lines[0], err
    assert cli.main(args + ["--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_cli_refuses_to_overwrite_an_unrelated_folder(tmp_path, capsys, quiet_env):
    src = _tiny_hf(tmp_path / "tiny", seed=6)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    capsys.readouterr()
    assert cli.main(["--input", str(src), "--output", str(out), "--format", "hf"]) == 2
    assert "not a previous export" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "do not delete"
    assert os.listdir(out) == ["thesis.tex"]


@pytest.mark.slow  # about 24 s on MiniLM; tests/test_deploy_int8.py checks every runtime's export by default
def test_cli_export_int8_checks_every_export_against_tensorflow(minilm_dir, tmp_path, capsys):
    """--export_int8: OUTPUT/int8 holds each runtime's float and int8 task model, each run on the calibration
    texts; the float exports agree with TensorFlow exactly, the int8 ones report their own agreement."""
    import json
    import shutil
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64, num_labels=3)
    src = tmp_path / "src"
    transformers.BertForSequenceClassification(cfg).save_pretrained(src)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_dir / name).exists():
            shutil.copy(minilm_dir / name, src / name)
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\n\nthe worst plot of the year , and dull\n" + "it was fun\n" * 6)
    assert cli.main(["--input", str(src), "--output", str(tmp_path / "out"), "--format", "hf", "--export_int8",
                     "--calibration_file", str(texts), "--seq_len", "16", "--progress", "none"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "out" / "int8" / "manifest.json").read_text())
    assert manifest["length"] == 16 and manifest["num_labels"] == 3 and manifest["calibration_examples"] == 8
    for runtime, info in manifest["runtimes"].items():
        assert info["models"]["float"]["calibration"]["agreement"] == 1.0
        assert info["models"]["float"]["calibration"]["max_abs_diff"] < 1e-4
        for variant, m in info["models"].items():
            assert 0.0 <= m["calibration"]["agreement"] <= 1.0
            assert f"int8: {runtime} {variant}: " in out
    for content, message in (("one\ttwo\tthree\n", ":1: expected a text or two texts separated by a tab, got 3"),
                             ("a\tb\n\nc\n", ":3: expected a pair of texts as on the first line")):
        bad = tmp_path / "bad.txt"
        bad.write_text(content)
        assert cli.main(["--input", str(src), "--output", str(tmp_path / "out2"), "--format", "hf",
                         "--export_int8", "--calibration_file", str(bad), "--progress", "none"]) == 2
        assert f"{bad}{message}" in capsys.readouterr().err
