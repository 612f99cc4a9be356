"""run_glue.py end to end on tiny data with a tiny random BERT: TFDS mock data, local GLUE folders (regression and
classification), a CoNLL folder; metrics.json, submission files, NER predictions, exports that reload, resume and
errors."""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from xtremedistil_tf.errors import ConfigError, UserError  # noqa: E402
from xtremedistil_tf.apps.glue import GlueConfig, run_glue  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
WORDS = ("the cat dog sat on a mat house green red blue ran quickly slowly big small bird tree old new man woman "
         "car road city river paris london john mary").split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_dir):
    """A random BERT with a hidden size of 32 and the MiniLM's (uncased WordPiece, 30522) tokenizer."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (minilm_dir / name).exists():
            shutil.copyfile(minilm_dir / name, folder / name)
    return folder


def _sentence(rng, n=None):
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(3, 9)))


def _write(path, rows):
    path.write_text("".join("\t".join(map(str, r)) + "\n" for r in rows), encoding="utf-8")


def _stsb_folder(root, n_train=24, n_dev=10, n_test=7):
    rng = random.Random(1)
    folder = root / "STS-B"
    folder.mkdir()
    head = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rows = [head + ([] if split == "test" else ["score"])]
        for i in range(n):
            row = [i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", _sentence(rng),
                   _sentence(rng)]
            rows.append(row + ([] if split == "test" else [f"{rng.uniform(0, 5):.3f}"]))
        _write(folder / f"{split}.tsv", rows)
    return folder


def _cola_folder(root, n_train=24, n_dev=10, n_test=9):
    rng = random.Random(2)
    folder = root / "CoLA"
    folder.mkdir()
    for split, n in (("train", n_train), ("dev", n_dev)):
        _write(folder / f"{split}.tsv", [["gj04", rng.randint(0, 1), "", _sentence(rng)] for _ in range(n)])
    _write(folder / "test.tsv", [["index", "sentence"]] + [[i, _sentence(rng)] for i in range(n_test)])
    return folder


def _conll_folder(root):
    rng = random.Random(3)
    folder = root / "conll"
    folder.mkdir()
    tags = {"john": "PER", "mary": "PER", "paris": "LOC", "london": "LOC"}
    for split, n in (("train", 20), ("dev", 8), ("test", 6)):
        lines = []
        for _ in range(n):
            words = _sentence(rng, rng.randint(3, 12)).split() + [rng.choice(["john", "paris"])]
            prev = None
            for w in words:
                t = tags.get(w)
                tag = "O" if t is None else ("I-" if prev == t else "B-") + t
                lines.append(f"{w} NN {tag}")
                prev = t
            lines.append("")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _config(model, out, **kw):
    base = dict(model=str(model), output_dir=str(out), seq_len=32, batch_size=8, eval_batch_size=8, epochs=2,
                learning_rate=1e-3, log_every=0, export_saved_model=False, cost_report=False)
    base.update(kw)
    return GlueConfig(**base)


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t"))


def test_stsb_regression_local_folder(tmp_path, tiny_bert):
    data = _stsb_folder(tmp_path)
    out = tmp_path / "out"
    m = run_glue(_config(tiny_bert, out, task="stsb", data_dir=str(data), export_saved_model=True))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["finished"] and saved["kind"] == "regression" and saved["main_metric"] == "pearson"
    assert saved["data"]["train"] == 24 and saved["data"]["dev"] == 10 and saved["data"]["test"] == 7
    assert [h["epoch"] for h in saved["epochs"]] == [1, 2]
    for h in saved["epochs"]:
        assert np.isfinite(h["loss"]) and {"pearson", "spearman", "corr"} <= set(h)
    dev = saved["final"]["dev"]
    assert set(dev) >= {"pearson", "spearman"} and -1 <= dev["pearson"] <= 1
    assert saved["score"]["dev"] == dev["pearson"] == m["final"]["dev"]["pearson"]
    assert "test" not in saved["final"]  # STS-B's test has no scores
    rows = _read_tsv(out / "submission" / "STS-B.tsv")
    assert rows[0] == ["index", "prediction"] and len(rows) == 1 + 7
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(7)] and all(np.isfinite(float(r[1])) for r in rows[1:])
    assert "epoch 2" in (out / "run.log").read_text()
    assert not (out / "checkpoint").exists()

    # The exports: transformers' regression model gives the logits we evaluated; the SavedModel too.
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out / "hf")
    assert hf.config.problem_type == "regression" and hf.config.num_labels == 1
    tok = transformers.AutoTokenizer.from_pretrained(out / "hf")
    enc = tok(["the cat sat"], ["a dog ran"], return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).logits.numpy()
    import tensorflow as tf
    sm = tf.saved_model.load(str(out / "saved_model"))
    got = sm.signatures["serving_default"](**{k: tf.constant(v.numpy(), tf.int32) for k, v in enc.items()})
    np.testing.assert_allclose(got["logits"].numpy(), ref, atol=1e-4)
    from xtremedistil_tf.convert.export import load_keras
    km = load_keras(str(out / "keras"))
    got = km({k: tf.constant(v.numpy(), tf.int32) for k, v in enc.items()})["logits"].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)

    # A finished run with the same flags only reports (nothing is loaded, trained or written again); different
    # flags are refused.
    from xtremedistil_tf.apps.glue import GlueRun
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "run.log"}
    original_run = GlueRun._run
    GlueRun._run = lambda self: pytest.fail("a finished run_glue.py run did its work again")
    try:
        again = run_glue(_config(tiny_bert, out, task="stsb", data_dir=str(data), export_saved_model=True))
    finally:
        GlueRun._run = original_run
    assert again["final"] == saved["final"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "run.log"} == written
    with pytest.raises(ConfigError, match="different flags"):
        run_glue(_config(tiny_bert, out, task="stsb", data_dir=str(data), epochs=3))


def test_cola_local_folder_subsample_and_reload(tmp_path, tiny_bert):
    data = _cola_folder(tmp_path)
    out = tmp_path / "out"
    m = run_glue(_config(tiny_bert, out, task="cola", data_dir=str(tmp_path), max_train_examples=16, epochs=3,
                         patience=1))
    assert m["data"]["train"] == 16 and m["data"]["train_total"] == 24 and m["main_metric"] == "mcc"
    assert 1 <= len(m["epochs"]) <= 3 and all("mcc" in h and "accuracy" in h for h in m["epochs"])
    assert m["best_epoch"] == max(m["epochs"], key=lambda h: h["score"])["epoch"]
    rows = _read_tsv(out / "submission" / "CoLA.tsv")
    assert rows[0] == ["index", "prediction"] and len(rows) == 1 + 9 and {r[1] for r in rows[1:]} <= {"0", "1"}
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out / "hf")
    assert hf.config.id2label == {0: "unacceptable", 1: "acceptable"}
    # The exported HF folder fine-tunes again (its head kept: same labels), here evaluated only.
    again = run_glue(_config(out / "hf", tmp_path / "again", task="cola", data_dir=str(data), epochs=0,
                             export_hf=False, export_keras=False))
    assert again["head"] != "new" and again["epochs"] == []
    assert again["final"]["dev"]["mcc"] == pytest.approx(m["final"]["dev"]["mcc"], abs=1e-6)
    # evaluated afresh, the exported weights score what the best epoch scored: the best epoch is the model kept
    assert again["final"]["dev"]["mcc"] == pytest.approx(m["best_dev_score"], abs=1e-6)
    assert again["final"]["dev"]["accuracy"] == pytest.approx(m["final"]["dev"]["accuracy"])


def test_ner_conll_folder(tmp_path, tiny_bert):
    data = _conll_folder(tmp_path)
    out = tmp_path / "out"
    m = run_glue(_config(tiny_bert, out, task="ner", data_dir=str(data), epochs=2, learning_rate=3e-3))
    assert m["kind"] == "ner" and m["main_metric"] == "f1"
    assert m["label_names"] == ["B-LOC", "B-PER", "I-LOC", "I-PER", "O"]
    assert set(m["final"]) == {"dev", "test"}
    for split in ("dev", "test"):
        assert set(m["final"][split]) >= {"precision", "recall", "f1", "accuracy"}
    # The prediction file is conlleval's input and scores to the reported test metrics.
    from xtremedistil_tf.metrics import ner_metrics
    blocks = (out / "test_predictions.txt").read_text().strip("\n").split("\n\n")
    assert len(blocks) == 6
    gold, pred = [], []
    test_words = [ln.split()[0] for ln in (data / "test.txt").read_text().split("\n") if ln.strip()]
    file_words = []
    for b in blocks:
        rows = [ln.split(" ") for ln in b.split("\n")]
        assert all(len(r) == 3 for r in rows)
        file_words += [r[0] for r in rows]
        gold.append([r[1] for r in rows])
        pred.append([r[2] for r in rows])
    assert file_words == test_words
    assert ner_metrics(gold, pred)["f1"] == pytest.approx(m["final"]["test"]["f1"])
    hf = transformers.AutoModelForTokenClassification.from_pretrained(out / "hf")
    assert hf.config.id2label == dict(enumerate(m["label_names"]))


def test_tfds_mock_sst2(tmp_path, tiny_bert):
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    with tfds.testing.mock_data(num_examples=12):
        m = run_glue(_config(tiny_bert, out, task="sst2", epochs=1, export_hf=False, export_keras=False))
    assert m["data"]["source"] == "glue/sst2" and m["data"]["train"] == 12 and m["data"]["dev"] == 12
    assert set(m["final"]) == {"dev", "test"}  # mock test labels are drawn too, so the test split is scored
    assert 0.0 <= m["final"]["dev"]["accuracy"] <= 1.0
    rows = _read_tsv(out / "submission" / "SST-2.tsv")
    assert rows[0] == ["index", "prediction"] and len(rows) == 13


def test_tfds_mock_mnli_matched_and_mismatched(tmp_path, tiny_bert):
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    with tfds.testing.mock_data(num_examples=6):
        m = run_glue(_config(tiny_bert, out, task="mnli", epochs=1, export_hf=False, export_keras=False))
    assert set(m["final"]) == {"dev", "dev_mismatched", "test", "test_mismatched"}
    assert "mismatched_accuracy" in m["epochs"][0] and set(m["score"]) >= {"dev", "dev_mismatched"}
    for name in ("MNLI-m", "MNLI-mm"):
        rows = _read_tsv(out / "submission" / f"{name}.tsv")
        assert len(rows) == 7 and {r[1] for r in rows[1:]} <= {"entailment", "neutral", "contradiction"}


def test_errors(tmp_path, tiny_bert):
    with pytest.raises(ConfigError, match="--task='sst3'"):
        run_glue(_config(tiny_bert, tmp_path / "o", task="sst3"))
    with pytest.raises(ConfigError, match="no such folder"):
        run_glue(_config(tiny_bert, tmp_path / "o", task="cola", data_dir=str(tmp_path / "missing")))
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a run_glue.py output folder"):
        run_glue(_config(tiny_bert, full, task="cola", data_dir=str(tmp_path)))
    stsb = _stsb_folder(tmp_path)
    with pytest.raises(UserError):  # NER on a folder without CoNLL files
        run_glue(_config(tiny_bert, tmp_path / "o2", task="ner", data_dir=str(stsb)))
    with pytest.raises(ConfigError, match="longer than the model's 64 positions"):
        run_glue(_config(tiny_bert, tmp_path / "o3", task="stsb", data_dir=str(stsb), seq_len=128))


def test_cli_exit_codes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    bad = subprocess.run([sys.executable, str(REPO_ROOT / "run_glue.py"), "--task=sst3", "--model=x",
                          f"--output_dir={tmp_path}"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --task='sst3'") and "Traceback" not in bad.stderr


def test_distilled_model_dir(tmp_path, tiny_bert):
    """A run_distillation.py model_dir (student-config.json + xtremedistil.weights.h5, tokenizer in hf/): its head
    is kept for its own task (the student is judged as it is) and replaced for another task."""
    import tensorflow as tf

    from xtremedistil_tf.convert.hf import load_hf_encoder
    from xtremedistil_tf.data.tokenize import Featurizer, load_tokenizer
    from xtremedistil_tf.distill.student import Student
    from xtremedistil_tf.models.saving import save_model
    from xtremedistil_tf.apps.glue import STUDENT_CONFIG, STUDENT_WEIGHTS
    names = ["unacceptable", "acceptable"]
    student = Student(load_hf_encoder(str(tiny_bert)).encoder, 2, "classification", teacher_hidden_size=32)
    student.build()
    folder = tmp_path / "distilled"
    save_model(student, str(folder), STUDENT_WEIGHTS, STUDENT_CONFIG, extra={"label_names": names,
                                                                             "kind": "classification"})
    (folder / "hf").mkdir()
    for name in TOKENIZER_FILES:
        if (tiny_bert / name).exists():
            shutil.copyfile(tiny_bert / name, folder / "hf" / name)
    data = _cola_folder(tmp_path)
    m = run_glue(_config(folder, tmp_path / "out", task="cola", data_dir=str(data), epochs=0, export_hf=False,
                         export_keras=False))
    assert m["model_format"] == "distilled" and m["head"] == str(folder) and m["epochs"] == []
    # The kept head gives the student's own predictions.
    from xtremedistil_tf.data.readers import read_glue
    dev = read_glue("cola", str(data))["dev"]
    arrays = Featurizer(load_tokenizer(str(folder / "hf")), 32).encode(dev)
    logits = student({k: tf.constant(arrays[k]) for k in ("input_ids", "attention_mask", "token_type_ids")})["logits"]
    acc = float(np.mean(logits.numpy().argmax(-1) == arrays["labels"]))
    assert m["final"]["dev"]["accuracy"] == pytest.approx(acc)
    other = run_glue(_config(folder, tmp_path / "out2", task="stsb", data_dir=str(_stsb_folder(tmp_path)), epochs=0,
                             export_hf=False, export_keras=False))
    assert other["head"] == "new" and other["kind"] == "regression"


@pytest.mark.slow  # about 17 s; tests/test_deploy_int8.py re-scores token-level int8 logits by default
def test_export_int8_rescores_ner_in_each_runtime_and_writes_the_cost_report(tmp_path, tiny_bert):
    """--export_int8 with --epochs 0: the model as it is, exported and re-scored per word (conlleval) from each
    runtime's own token logits; the float exports score what TensorFlow scored."""
    data = _conll_folder(tmp_path)
    out = tmp_path / "out"
    m = run_glue(_config(tiny_bert, out, task="ner", data_dir=str(data), epochs=0, export_hf=False,
                         export_keras=False, export_int8=True, cost_report=True, latency_seconds=0.0,
                         int8_calibration_examples=4))
    int8 = m["int8"]
    assert set(int8["runtimes"]) == {"onnxruntime", "litert"} and int8["calibration_examples"] == 4
    for runtime, info in int8["runtimes"].items():
        assert set(info["models"]["float"]) >= {"dev", "test", "latency_ms", "bytes"}
        for split in ("dev", "test"):  # float in any runtime: TensorFlow's predictions, word for word
            assert info["models"]["float"][split]["f1"] == pytest.approx(m["final"][split]["f1"], abs=1e-9)
            assert info["models"]["float"][split]["accuracy"] == pytest.approx(m["final"][split]["accuracy"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["int8"] == json.loads(json.dumps(int8)) and saved["report"]["file"] == "report.md"
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["models"]] == ["model"] + [f"model {v}" for v in
                                                                 ("float", "int8-dynamic", "int8-full", "float",
                                                                  "int8-dynamic", "int8-static")]
    assert "| model int8-dynamic | onnxruntime" in (out / "report.md").read_text()
