"""Every file a run writes is written atomically (xtremedistil_tf/io.py), and what a crash leaves behind is
cleaned up or put back.

`test_every_write_is_atomic` is the audit: it finds each call that writes a file (open for writing, np.save*,
json.dump, save_weights, savefig, safetensors' save_file, tf.train.Checkpoint.write, SavedModel export,
save_pretrained, TFRecordWriter, shutil copies) in xtremedistil_tf/ and run_*.py and requires it to sit inside a
`with atomic_path(...)` / `with atomic_dir(...)` block, or in a function listed below as writing into a temporary
path or folder its caller made atomic.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import numpy as np
import pytest

from xtremedistil_tf import io
from xtremedistil_tf.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "xtremedistil_tf").rglob("*.py")) + sorted(REPO.glob("run_*.py"))

WRITERS = {"save", "savez", "savez_compressed", "dump", "save_weights", "savefig", "save_file", "write_out",
           "save_pretrained", "TFRecordWriter", "copy", "copyfile", "copy2", "copytree", "to_json_file", "tofile",
           "write_text", "write_bytes"}
ATOMIC = {"atomic_path", "atomic_dir"}
# (file, function): writes into a path its caller already made atomic.
WRITES_INTO_ATOMIC = {
    ("xtremedistil_tf/io.py", "write_text"), ("xtremedistil_tf/io.py", "save_npy"),  # the helpers themselves
    ("xtremedistil_tf/convert/export.py", "write_tokenizer"),  # called inside export_*'s atomic_dir only
    ("xtremedistil_tf/data/pipeline.py", "open_shard"),  # enters xio.atomic_path by hand (a shard stays open)
    ("xtremedistil_tf/train/checkpoint.py", "save"),  # the whole checkpoint folder is one atomic_dir
    ("xtremedistil_tf/io.py", "write_npz"),  # into a file its caller opened (the checkpoint's atomic_dir)
    ("xtremedistil_tf/deploy/runtimes.py", "write"),  # into export_int8's atomic_dir only
    ("xtremedistil_tf/deploy/int8.py", "_fixed_length_saved_model"),  # a scratch SavedModel, not an output
    # The file-system layer's primitives, and the commit steps built on them (uploads under temporary names,
    # the store's copies onto final names, downloads into scratch folders).
    ("xtremedistil_tf/fs.py", "copy"), ("xtremedistil_tf/fs.py", "local_copy"),
    ("xtremedistil_tf/io.py", "_upload"), ("xtremedistil_tf/io.py", "_copy_files"),
    ("xtremedistil_tf/io.py", "_swap_in"),  # the commit marker, copied last
    ("xtremedistil_tf/io.py", "__init__"),  # LogFileHandler: a rerun's remote log downloaded to continue it
}


def _name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _is_write(node: ast.Call) -> bool:
    name = _name(node.func)
    if name == "open":
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                               None)
        return isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+")
    if name == "write" and isinstance(node.func, ast.Attribute):
        return "ckpt" in ast.unparse(node.func.value).lower()  # tf.train.Checkpoint.write
    if name == "save" and isinstance(node.func, ast.Attribute):
        return ast.unparse(node.func.value) in ("np", "numpy", "tf.saved_model", "torch")
    if name in ("write_text", "write_bytes"):  # pathlib's are writes; io.write_text is the atomic helper
        return isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) not in ("io", "xio")
    if name == "dump":
        return isinstance(node.func, ast.Attribute) and ast.unparse(node.func.value) in ("json", "pickle")
    return name in WRITERS - {"save", "dump"}


class _Audit(ast.NodeVisitor):
    def __init__(self, rel: str):
        self.rel, self.functions, self.withs, self.found = rel, [], [], []

    def visit_FunctionDef(self, node):
        self.functions.append(node.name)
        saved, self.withs = self.withs, []
        self.generic_visit(node)
        self.withs = saved
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_With(self, node):
        atomic = any(isinstance(i.context_expr, ast.Call) and _name(i.context_expr.func) in ATOMIC
                     for i in node.items)
        self.withs.append(atomic)
        self.generic_visit(node)
        self.withs.pop()

    def visit_Call(self, node):
        if _is_write(node):
            ok = any(self.withs) or any((self.rel, f) in WRITES_INTO_ATOMIC for f in self.functions)
            self.found.append((f"{self.rel}:{node.lineno}: {ast.unparse(node)[:100]}", ok))
        self.generic_visit(node)


def test_every_write_is_atomic():
    found = []
    for path in SOURCES:
        rel = path.relative_to(REPO).as_posix()
        audit = _Audit(rel)
        audit.visit(ast.parse(path.read_text(encoding="utf-8"), filename=rel))
        found.extend(audit.found)
    assert len(found) >= 10, "the audit found suspiciously few writes; is _is_write still right?"
    bad = [where for where, ok in found if not ok]
    assert not bad, "writes outside atomic_path/atomic_dir:\n" + "\n".join(bad)


def test_atomic_path_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "state.json"
    io.write_json(str(target), {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(str(target)) as tmp, open(tmp, "w") as f:
            f.write('{"a": ')
            raise RuntimeError("killed")
    assert io.read_json(str(target)) == {"a": 1}
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_crash_inside_the_folder_swap_puts_the_old_folder_back(tmp_path):
    """atomic_dir moves the old folder aside before moving the new one in; a kill between the two leaves
    `.name.XXXX.old` (complete) and `.name.XXXX.tmp` (perhaps not). The next start restores the old one."""
    folder = tmp_path / "stage-2"
    with io.atomic_dir(str(folder)) as tmp:
        np.save(os.path.join(tmp, "w.npy"), np.arange(3))
    os.replace(folder, tmp_path / ".stage-2.ab12cd34.old")
    (tmp_path / ".stage-2.ef56gh78.tmp").mkdir()
    (tmp_path / ".stage-2.ef56gh78.tmp" / "w.npy").write_bytes(b"\x93NUMPY half")
    (tmp_path / ".run_state.json.zz99yy88.tmp.json").write_text('{"stages": ')
    assert io.clean_stale_temporaries(str(tmp_path)) == 3
    assert sorted(os.listdir(tmp_path)) == ["stage-2"]
    np.testing.assert_array_equal(np.load(folder / "w.npy"), np.arange(3))


def test_a_finished_swap_drops_the_old_folder(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    (tmp_path / ".hf.ab12cd34.old").mkdir()
    assert io.clean_stale_temporaries(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ["hf"]


def test_damaged_json_is_a_clear_error(tmp_path):
    path = tmp_path / "run_state.json"
    path.write_bytes(b'{"stages": ')
    with pytest.raises(CheckpointError, match=r"run_state\.json: not valid JSON"):
        io.read_json(str(path))
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        io.read_json(str(path))
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')  # a byte order mark is fine
    assert io.read_json(str(path)) == {"a": 1}


def _student(seed: int):
    import keras

    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.student import build_student
    keras.utils.set_random_seed(seed)
    config = DistilConfig(hidden_size=16, num_attention_heads=2, num_hidden_layers=2)
    return build_student(config, vocab_size=50, num_labels=2, teacher_hidden_size=32, teacher_word_embeddings=None)


def test_phase_checkpoint_restores_every_weight(tmp_path):
    """tf.train.Checkpoint alone misses the layers a Keras 3 model keeps in lists (transformer blocks,
    projections); a resumed run then trained on half-initial weights. Every variable must come back."""
    from xtremedistil_tf.train.checkpoint import PhaseCheckpoint, get_weights
    a, b = _student(1), _student(2)
    assert any(not np.array_equal(x, y) for x, y in zip(get_weights(a), get_weights(b)))
    PhaseCheckpoint(str(tmp_path / "stage-1"), a, None).save({"epoch": 1}, {"phase_best": get_weights(a)})
    state, snapshots = PhaseCheckpoint(str(tmp_path / "stage-1"), b, None).restore()
    assert state == {"epoch": 1} and sorted(snapshots) == ["phase_best"]
    for va, vb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=va.path)


def test_damaged_phase_checkpoint_is_a_clear_error(tmp_path):
    from xtremedistil_tf.train.checkpoint import PhaseCheckpoint, get_weights
    a = _student(1)
    folder = tmp_path / "stage-2"
    PhaseCheckpoint(str(folder), a, None).save({"epoch": 1}, {"phase_best": get_weights(a)})
    data = (folder / "snapshots.npz").read_bytes()
    (folder / "snapshots.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"stage-2: cannot restore this checkpoint .*remove the folder"):
        PhaseCheckpoint(str(folder), a, None).restore()
    import keras
    PhaseCheckpoint(str(folder), a, None).save({"epoch": 1}, {})
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(CheckpointError, match="written by a different model"):
        PhaseCheckpoint(str(folder), other, None).restore()
