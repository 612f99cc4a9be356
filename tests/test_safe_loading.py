"""Loading is safe: no pickle is loaded unless the user passes the explicit flag (`--allow_pickle` of the convert
tool; run_distillation.py has none), and no code that travels with a checkpoint (transformers' `auto_map` remote
code) is ever executed.

Two kinds of checks: the source itself (every `from_pretrained` passes `trust_remote_code=False`, every
`torch.load` is weights-only unless `allow_pickle`, no `pickle`/`np.load(allow_pickle=True)`/Keras unsafe mode),
and behaviour (checkpoints carrying a pickle payload or remote code that would leave a marker file if run).
"""
from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

import tiny_setup

REPO = tiny_setup.REPO_ROOT


def _sources() -> list[Path]:
    """Every source file, listed when a test runs (not at import, so files moved meanwhile are not stale)."""
    return sorted((REPO / "xtremedistil_tf").rglob("*.py")) + sorted(REPO.glob("run_*.py"))


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            yield name, owner, node


def _kw(node: ast.Call, name: str):
    return next((k.value for k in node.keywords if k.arg == name), None)


def test_sources_never_trust_remote_code():
    offenders = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        if "trust_remote_code=True" in text.replace(" ", ""):
            offenders.append(f"{path.relative_to(REPO)}: trust_remote_code=True")
        for name, owner, node in _calls(path):
            if name == "from_pretrained":
                value = _kw(node, "trust_remote_code")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {owner}.from_pretrained without "
                                     "trust_remote_code=False")
    assert not offenders, "\n".join(offenders)


def test_sources_never_unpickle_without_the_flag():
    offenders = []
    for path in _sources():
        rel = path.relative_to(REPO)
        for name, owner, node in _calls(path):
            where = f"{rel}:{node.lineno}: {ast.unparse(node)[:120]}"
            if name == "load" and owner == "torch":
                value = _kw(node, "weights_only")
                # weights-only unless the caller's explicit allow_pickle says otherwise
                if value is None or ast.unparse(value) != "not allow_pickle":
                    offenders.append(where)
            elif owner in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") and name in ("load", "loads"):
                offenders.append(where)
            elif name == "load" and owner in ("np", "numpy"):
                value = _kw(node, "allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    offenders.append(where)
            elif name in ("load_model", "deserialize_keras_object", "from_config") and _kw(node, "safe_mode"):
                value = _kw(node, "safe_mode")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    offenders.append(where)
            elif name in ("eval", "exec") and not owner:
                offenders.append(where)
    assert not offenders, "\n".join(offenders)


# --------------------------------------------------------------------------------------------------- behaviour
class _Payload:
    """Unpickling this creates a file: proof of code execution if it ever happens."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_dir):
    return tiny_setup.make_setup(tmp_path_factory.mktemp("base"), minilm_dir)


def test_pickled_teacher_is_refused_and_never_unpickled(base, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file

    from xtremedistil_tf.cli import run_main
    from xtremedistil_tf.convert.__main__ import main as convert_main
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.runner import run_distillation
    teacher = tmp_path / "teacher"
    shutil.copytree(base["teacher"], teacher)
    marker = tmp_path / "pwned"
    state = {k: torch.from_numpy(v) for k, v in load_file(str(teacher / "model.safetensors")).items()}
    torch.save({**state, "payload": _Payload(str(marker))}, str(teacher / "pytorch_model.bin"))
    (teacher / "model.safetensors").unlink()

    config = DistilConfig(**tiny_setup.distil_flags({**base, "teacher": teacher}, tmp_path / "run"))
    capsys.readouterr()
    assert run_main(lambda argv: run_distillation(config), [], verbose=False) == 2
    err = capsys.readouterr().err
    assert "refused by weights-only loading" in err and "--allow_pickle" in err, err
    assert not marker.exists()
    # The convert tool refuses it too without --allow_pickle.
    assert convert_main(["--input", str(teacher), "--output", str(tmp_path / "out"), "--format", "keras"]) == 2
    assert "refused by weights-only loading" in capsys.readouterr().err
    assert not marker.exists()


def _remote_code_folder(folder: Path, marker: Path) -> Path:
    """A checkpoint whose config and tokenizer config point at code shipped beside them (transformers' auto_map)."""
    code = f"open({str(marker)!r}, 'w').write('remote code ran')\n"
    for name in ("evil_config.py", "evil_model.py", "evil_tokenizer.py"):
        (folder / name).write_text(code + "from transformers import BertConfig as EvilConfig, "
                                   "BertModel as EvilModel, BertTokenizerFast as EvilTokenizer\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil_config.EvilConfig", "AutoModel": "evil_model.EvilModel",
                       "AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]}
    (folder / "config.json").write_text(json.dumps(cfg))
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    tok_cfg["auto_map"] = {"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return folder


def test_remote_code_in_a_checkpoint_is_never_run(base, tmp_path, capsys):
    from xtremedistil_tf.convert.__main__ import main as convert_main
    from xtremedistil_tf.data.tokenize import load_tokenizer
    from xtremedistil_tf.errors import UserError
    marker = tmp_path / "remote-code-ran"
    teacher = tmp_path / "teacher"
    shutil.copytree(base["teacher"], teacher)
    _remote_code_folder(teacher, marker)

    try:  # either the built-in class is used, or loading stops with a clear error; the code never runs
        tok = load_tokenizer(str(teacher))
        assert type(tok).__module__.startswith("transformers."), type(tok)
    except UserError:
        pass
    assert not marker.exists()
    rc = convert_main(["--input", str(teacher), "--output", str(tmp_path / "out"), "--format", "keras"])
    assert rc in (0, 2), capsys.readouterr().err
    assert not marker.exists()
    torch = pytest.importorskip("torch")  # noqa: F841 - the --verify reference model is built by transformers
    from xtremedistil_tf.convert.__main__ import torch_reference
    from xtremedistil_tf.convert.export import load_any
    try:
        model = torch_reference(load_any(str(teacher)))
        assert type(model).__module__.startswith("transformers."), type(model)
    except Exception:  # noqa: BLE001 - refusing is fine; running the code is not
        pass
    assert not marker.exists()
