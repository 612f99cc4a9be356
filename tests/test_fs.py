"""The file-system layer (xtremedistil_tf/fs.py) and the crash-safe writes on it (xtremedistil_tf/io.py), on the
local disk and on TF's in-memory file system (ram://), which stands in for Cloud Storage: like GCS it cannot
rename a folder (a ram:// folder rename leaves the files behind), so the object-store commit is what is tested.

Every test uses its own ram:// root: ram:// is one file system for the whole process.
"""
from __future__ import annotations

import ast
import json
import os
import stat
import uuid
from pathlib import Path

import numpy as np
import pytest

from xtremedistil_tf import fs, io

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ram() -> str:
    return f"ram://test-fs-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------------------------- paths
@pytest.mark.parametrize("path, remote", [("gs://bucket/run", True), ("ram://x/y", True), ("s3://b/k", True),
                                          ("/tmp/run", False), ("runs/sst2", False), ("file:///tmp/x", False)])
def test_remote_paths_are_told_apart_from_local_ones(path, remote):
    assert fs.is_remote(path) is remote


def test_urls_are_never_turned_into_local_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert fs.abspath("gs://bucket/sst2") == "gs://bucket/sst2"
    assert fs.realpath("gs://bucket/sst2/train.tsv") == "gs://bucket/sst2/train.tsv"
    assert fs.join("gs://bucket/sst2", "hf", "config.json") == "gs://bucket/sst2/hf/config.json"
    assert fs.dirname("gs://bucket/sst2/hf") == "gs://bucket/sst2"
    assert fs.dirname("gs://bucket") == "gs://bucket"
    assert fs.basename("gs://bucket/sst2/") == "sst2"
    assert fs.abspath("runs/x") == str(tmp_path / "runs" / "x")
    assert not (tmp_path / "gs:").exists()


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
    """tf.io.gfile recording every path it is handed, gs:// objects kept in ram://; the working folder is tmp_path.
    Returns (calls, ram root)."""
    import tensorflow as tf
    monkeypatch.chdir(tmp_path)
    seen, root = [], f"ram://fake-gcs-{uuid.uuid4().hex[:8]}/"

    def recorder(name):
        real = getattr(tf.io.gfile, name)

        def call(*args, **kwargs):
            seen.append((name, [a for a in args if isinstance(a, str) and "/" in a]))
            mapped = [a.replace("gs://", root) if isinstance(a, str) else a for a in args]
            return real(*mapped, **kwargs)
        return call

    for name in ("exists", "isdir", "listdir", "makedirs", "copy", "remove", "rmtree", "stat", "GFile"):
        monkeypatch.setattr(tf.io.gfile, name, recorder(name))
    return seen, root


def _gs_paths(seen, root):
    return [p for _, args in seen for p in args if not p.startswith(("/", root))]


def test_a_gs_path_reaches_tf_io_gfile_unchanged(tmp_path, fake_gcs):
    """Every call for a gs:// path lands in tf.io.gfile with the path as given (here a recorder that keeps the
    objects in ram://), and no local folder named 'gs:' appears."""
    seen, root = fake_gcs
    run = "gs://bucket/sst2"
    io.write_json(fs.join(run, "metrics.json"), {"accuracy": 0.9})
    with io.atomic_dir(fs.join(run, "hf")) as tmp:
        Path(tmp, "config.json").write_text("{}")
    assert io.read_json(fs.join(run, "metrics.json")) == {"accuracy": 0.9}
    assert io.committed(fs.join(run, "hf"))
    assert sorted(fs.listdir(run)) == ["hf", "metrics.json"]
    paths = _gs_paths(seen, root)
    assert paths and all(p.startswith("gs://bucket/sst2") for p in paths), paths
    assert not (tmp_path / "gs:").exists() and not any(p.name == "gs:" for p in tmp_path.rglob("*"))


def test_a_gs_model_dir_is_validated_and_opened_on_the_store(tmp_path, fake_gcs):
    """run_distillation's path checks and its run folder hand --model_dir gs://... to tf.io.gfile, never to os."""
    from xtremedistil_tf.distill.config import DistilConfig
    from xtremedistil_tf.distill.run_folder import RunFolder
    seen, root = fake_gcs
    cfg = DistilConfig(task="glue/sst2", model_dir="gs://bucket/runs/sst2", teacher_model_dir="gs://bucket/teacher")
    cfg.validate_paths()
    folder = RunFolder(cfg.model_dir, chief=True)
    folder.save_config(cfg)
    folder.save_state({"stages": {}, "finished": False})
    assert folder.load_state() == {"stages": {}, "finished": False}
    assert io.read_json("gs://bucket/runs/sst2/xtremedistil-config.json")["model_dir"] == "gs://bucket/runs/sst2"
    paths = _gs_paths(seen, root)
    assert ("makedirs", ["gs://bucket/runs/sst2"]) in seen and ("makedirs", ["gs://bucket/teacher"]) in seen
    assert all(p.startswith(("gs://bucket/runs/sst2", "gs://bucket/teacher")) for p in paths), paths
    assert not any(p.name == "gs:" for p in tmp_path.rglob("*"))


# ------------------------------------------------------------------------------------------------- file system
def _tree(make, root):
    make(root, "a.txt", b"alpha\n")
    make(root, "sub/b.json", b'{"b": 1}')
    make(root, "sub/deeper/c.bin", bytes(range(256)))


def _local_make(root, rel, data):
    p = Path(root, rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def _remote_make(root, rel, data):
    io.write_bytes(fs.join(root, rel), data)


def test_the_same_operations_give_the_same_answers_on_disk_and_in_ram(tmp_path, ram):
    _tree(_local_make, tmp_path)
    _tree(_remote_make, ram)
    for root in (str(tmp_path), ram):
        assert fs.isdir(root) and not fs.isfile(root)
        assert sorted(fs.listdir(root)) == ["a.txt", "sub"]
        assert fs.isfile(fs.join(root, "a.txt")) and not fs.isdir(fs.join(root, "a.txt"))
        assert not fs.exists(fs.join(root, "nothing"))
        assert not fs.exists(fs.join(root, "a")) and not fs.isdir(fs.join(root, "su"))  # prefixes of real names
        assert fs.size(fs.join(root, "sub/deeper/c.bin")) == 256
        assert fs.read_bytes(fs.join(root, "sub/deeper/c.bin")) == bytes(range(256))
        with fs.open(fs.join(root, "a.txt")) as f:
            assert f.read() == "alpha\n"
        with fs.open(fs.join(root, "a.txt"), "rb") as f:
            assert [line for line in f] == [b"alpha\n"]
        assert [fs.basename(p) for p in fs.glob(fs.join(root, "sub", "*.json"))] == ["b.json"]
        walked = {os.path.relpath(r, root) if not fs.is_remote(root) else r[len(root):].lstrip("/") or ".":
                  (sorted(d), sorted(f)) for r, d, f in fs.walk(root)}
        assert walked == {".": (["sub"], ["a.txt"]), "sub": (["deeper"], ["b.json"]),
                          "sub/deeper": ([], ["c.bin"])}
        with fs.local_copy(fs.join(root, "sub")) as local:
            assert Path(local, "deeper", "c.bin").read_bytes() == bytes(range(256))
        fs.remove(fs.join(root, "a.txt"))
        fs.rmtree(fs.join(root, "sub"))
        assert fs.listdir(root) == []


def test_errors_name_the_path_whatever_the_file_system(tmp_path, ram):
    for root in (str(tmp_path), ram):
        missing = fs.join(root, "missing.tsv")
        with pytest.raises(FileNotFoundError) as e:
            fs.read_bytes(missing)
        assert missing in str(e.value)
        with pytest.raises(FileNotFoundError):
            fs.size(missing)
    io.write_text(fs.join(ram, "f"), "x")
    with pytest.raises(ValueError, match="crash-safe"):
        fs.open(fs.join(ram, "f"), "w")


# ---------------------------------------------------------------------------------------- crash-safe writes
def test_atomic_writes_on_an_object_store_leave_no_temporaries(ram):
    io.write_json(fs.join(ram, "state.json"), {"step": 1})
    io.write_json(fs.join(ram, "state.json"), {"step": 2})  # replaced, not appended to
    io.save_npy(fs.join(ram, "w.npy"), np.arange(6, dtype=np.float32))
    with io.atomic_dir(fs.join(ram, "hf")) as tmp:
        Path(tmp, "config.json").write_text('{"a": 1}')
        Path(tmp, "tokenizer").mkdir()
        Path(tmp, "tokenizer", "vocab.txt").write_text("[PAD]\n")
    with io.atomic_dir(fs.join(ram, "hf")) as tmp:  # a second export replaces the folder as a whole
        Path(tmp, "model.safetensors").write_bytes(b"weights")
    assert io.read_json(fs.join(ram, "state.json")) == {"step": 2}
    np.testing.assert_array_equal(io.load_npy(fs.join(ram, "w.npy")), np.arange(6, dtype=np.float32))
    assert sorted(fs.listdir(ram)) == ["hf", "state.json", "w.npy"]
    assert sorted(fs.listdir(fs.join(ram, "hf"))) == [io.COMMIT_MARKER, "model.safetensors"]
    assert io.committed(fs.join(ram, "hf"))
    assert io.clean_stale_temporaries(ram) == 0


def _faulty_copy(monkeypatch, fail_at: int, *, mid_file: bool):
    """fs.copy that raises at its `fail_at`-th call. An upload (local -> store) may stop mid-file, leaving half
    the bytes under the destination name; the store's own copies are whole or nothing, as on GCS."""
    real, calls = fs.copy, {"n": 0}

    def copy(src, dst):
        calls["n"] += 1
        if calls["n"] == fail_at:
            if mid_file and not fs.is_remote(src):
                data = Path(src).read_bytes()
                io_gfile_write(dst, data[: len(data) // 2])
            raise OSError(f"injected failure copying {src} -> {dst}")
        return real(src, dst)

    monkeypatch.setattr(fs, "copy", copy)
    return calls


def io_gfile_write(path, data):
    import tensorflow as tf
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def _write_version(root, version: int):
    io.write_json(fs.join(root, "state.json"), {"version": version})
    with io.atomic_dir(fs.join(root, "ckpt")) as tmp:
        Path(tmp, "weights.bin").write_bytes(bytes([version]) * 1000)
        Path(tmp, "state.json").write_text(json.dumps({"version": version}))


def _read_version(root):
    """The versions a reader trusting only committed files sees: (state.json, ckpt/) — each None or whole."""
    state = io.read_json(fs.join(root, "state.json"))["version"] if fs.exists(fs.join(root, "state.json")) else None
    ckpt = None
    if io.committed(fs.join(root, "ckpt")):
        data = fs.read_bytes(fs.join(root, "ckpt", "weights.bin"))
        inner = io.read_json(fs.join(root, "ckpt", "state.json"))["version"]
        assert data == bytes([inner]) * 1000, "a committed folder holds a partial or mixed file"
        ckpt = inner
    return state, ckpt


@pytest.mark.parametrize("mid_file", [False, True], ids=["between-files", "mid-file"])
def test_a_failure_at_any_copy_never_exposes_a_partial_file_and_clean_up_recovers(ram, monkeypatch, mid_file):
    """Version 1 is committed; writing version 2 fails at copy k (for every k). Readers then see version 1 or
    version 2, whole, and after the clean-up a committed folder, never a half state; then version 2 writes."""
    probe = f"{ram}/probe"
    _write_version(probe, 1)
    calls = _faulty_copy(monkeypatch, 10 ** 9, mid_file=mid_file)
    _write_version(probe, 2)
    total = calls["n"]
    assert total >= 6
    for k in range(1, total + 1):
        root = f"{ram}/k{k}"
        monkeypatch.undo()
        _write_version(root, 1)
        _faulty_copy(monkeypatch, k, mid_file=mid_file)
        with pytest.raises(OSError, match="injected"):
            _write_version(root, 2)
        monkeypatch.undo()
        state, ckpt = _read_version(root)
        assert state in (1, 2) and ckpt in (1, 2, None), (k, state, ckpt)
        io.clean_stale_temporaries(root)
        state, ckpt = _read_version(root)
        assert state in (1, 2) and ckpt in (1, 2), (k, state, ckpt)
        names = [n for _, dirs, files in fs.walk(root) for n in dirs + files]
        assert not [n for n in names if ".tmp" in n], names
        _write_version(root, 2)
        assert _read_version(root) == (2, 2)


def test_a_half_uploaded_folder_is_not_trusted(ram):
    with io.atomic_dir(fs.join(ram, "ckpt")) as tmp:
        Path(tmp, "a.bin").write_bytes(b"x" * 10)
    assert io.committed(fs.join(ram, "ckpt"))
    io_gfile_write(fs.join(ram, "ckpt", "a.bin"), b"x" * 5)  # a file shorter than the marker says
    assert not io.committed(fs.join(ram, "ckpt"))
    fs.remove(fs.join(ram, "ckpt", io.COMMIT_MARKER))
    assert not io.committed(fs.join(ram, "ckpt"))


# ----------------------------------------------------------------------------------------------------- modes
@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                        (0o002, 0o664, 0o775)])
def test_written_files_and_folders_get_the_modes_open_and_mkdir_give(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        io.write_json(tmp_path / "metrics.json", {"a": 1})
        io.save_npy(tmp_path / "word_embedding.npy", np.zeros(3))
        with io.atomic_path(tmp_path / "x.weights.h5") as tmp:
            Path(tmp).write_bytes(b"h5")
        with io.atomic_dir(tmp_path / "hf") as tmp:
            Path(tmp, "config.json").write_text("{}")
            Path(tmp, "tokenizer").mkdir()
            Path(tmp, "model.safetensors").touch(mode=0o600)  # as safetensors' save_file creates it
        with io.atomic_path(tmp_path / "private.bin") as tmp:
            os.remove(tmp)
            os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    finally:
        os.umask(old)
    for name in ("metrics.json", "word_embedding.npy", "x.weights.h5", "hf/config.json", "hf/model.safetensors",
                 "private.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == file_mode, name
    for name in ("hf", "hf/tokenizer"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == dir_mode, name


def test_a_remote_log_is_uploaded_and_continued_by_a_rerun(ram):
    import logging
    path = fs.join(ram, "run.log")
    for n in range(2):
        handler = io.LogFileHandler(path, every=3600)
        logger = logging.getLogger(f"test-fs-{uuid.uuid4().hex}")
        logger.addHandler(handler)
        logger.warning("line %d", n)
        handler.close()
    assert fs.read_text(path) == "line 0\nline 1\n"


# ------------------------------------------------------------------------------------------------------ audit
# Calls that touch files by path; in the library they belong to fs.py / io.py alone.
_FORBIDDEN = {("os.path", n) for n in ("exists", "lexists", "isdir", "isfile", "getsize", "getmtime", "abspath",
                                        "realpath")} | \
    {("os", n) for n in ("listdir", "makedirs", "mkdir", "remove", "unlink", "stat", "walk", "replace", "rename",
                         "scandir", "rmdir")} | {("shutil", "*"), ("glob", "glob")}
# (file, function): local-only by nature, with the reason.
_ALLOWED = {
    ("xtremedistil_tf/strategy.py", "cpu_flags"): "reads /proc/cpuinfo of this machine",
    ("xtremedistil_tf/cli.py", "_gpu_present"): "looks for /dev/nvidia* on this machine",
}


class _Audit(ast.NodeVisitor):
    """Finds forbidden calls, except inside `with atomic_path/atomic_dir(...)` blocks (their temporary path is a
    local one by design) and the allowed functions."""

    def __init__(self, rel: str):
        self.rel, self.functions, self.atomic, self.found = rel, ["<module>"], 0, []

    def visit_FunctionDef(self, node):
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_With(self, node):
        atomic = any(isinstance(i.context_expr, ast.Call) and isinstance(i.context_expr.func, (ast.Attribute, ast.Name))
                     and getattr(i.context_expr.func, "attr", getattr(i.context_expr.func, "id", "")) in
                     ("atomic_path", "atomic_dir") for i in node.items)
        self.atomic += atomic
        self.generic_visit(node)
        self.atomic -= atomic

    def visit_Call(self, node):
        if isinstance(node.func, ast.Attribute) and not self.atomic:
            owner, attr = ast.unparse(node.func.value), node.func.attr
            if ((owner, attr) in _FORBIDDEN or (owner, "*") in _FORBIDDEN) \
                    and (self.rel, self.functions[-1]) not in _ALLOWED:
                self.found.append(f"{self.rel}:{node.lineno} ({self.functions[-1]}): {ast.unparse(node)[:80]}")
        self.generic_visit(node)


def _calls_outside_the_layer():
    found = []
    for path in sorted((REPO / "xtremedistil_tf").rglob("*.py")) + sorted(REPO.glob("run_*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in ("xtremedistil_tf/fs.py", "xtremedistil_tf/io.py"):
            continue
        audit = _Audit(rel)
        audit.visit(ast.parse(path.read_text(encoding="utf-8")))
        found.extend(audit.found)
    return found


def test_every_file_operation_goes_through_the_file_system_layer():
    assert not _calls_outside_the_layer(), "file operations outside xtremedistil_tf/fs.py:\n" + \
        "\n".join(_calls_outside_the_layer())


def test_folders_whose_names_start_another_name_stay_apart(tmp_path, ram):
    """teacher/ beside teacher_outputs/ (ram:// matches names by string prefix; the layer must not)."""
    for root in (str(tmp_path), ram):
        for rel in ("teacher/w.h5", "teacher/sub/y", "teacher_outputs/c.npz", "teacher_x.json"):
            io.write_text(fs.join(root, rel), rel)
        assert sorted(fs.listdir(fs.join(root, "teacher"))) == ["sub", "w.h5"]
        assert not fs.exists(fs.join(root, "teacher", "_outputs"))
        fs.rmtree(fs.join(root, "teacher"))
        assert sorted(fs.listdir(root)) == ["teacher_outputs", "teacher_x.json"]
        assert fs.read_text(fs.join(root, "teacher_outputs", "c.npz")) == "teacher_outputs/c.npz"
