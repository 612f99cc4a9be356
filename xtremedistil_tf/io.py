"""Crash-safe writes on any file system (through `xtremedistil_tf.fs`), and the clean-up after a crash.

On the local disk a file or folder is written under a temporary name beside its target (`.name.XXXX.tmp...`),
fsynced and renamed over it: a reader sees the old version or the whole new one. Object stores (gs://; ram://
stands in for them in tests) cannot rename atomically, so there a write is new-then-commit:

- a file is written locally, uploaded as `.name.XXXX.tmp...` and copied onto `name` by the store (an object
  appears whole or not at all); the temporary object is then removed;
- a folder is written locally, uploaded as `.name.XXXX.tmp/` and sealed by COMMIT_MARKER (its files and sizes),
  written last. `name/` then loses its own marker, gets the sealed files, and gets the marker back last.
  Readers trust a folder only while its marker is there (`committed`), and `clean_stale_temporaries` finishes
  the commit of a sealed copy whose target is not committed, and removes every other leftover.

Files and folders get the modes `open()` and `mkdir` give (0666 / 0777 minus the umask), so other users and
serving containers can read what a run exports.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
import time
import zipfile
from typing import Any, Iterable, Iterator

import numpy as np

from xtremedistil_tf import fs

COMMIT_MARKER = ".committed.json"


def _suffix(base: str) -> str:
    # Keep the suffix: some writers (Keras' save_weights) insist on it.
    return ".weights.h5" if base.endswith(".weights.h5") else os.path.splitext(base)[1]


def _temp_name(base: str, suffix: str = "", *, kind: str = "tmp") -> str:
    return f".{base}.{secrets.token_hex(4)}.{kind}{suffix}"


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and (".tmp" in name or name.endswith(".old"))


# ------------------------------------------------------------------------------------------------------ files
@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a local temporary path to write `path`'s new content to; it becomes `path` only if the block
    finishes (on an object store: by the upload-then-copy commit)."""
    path = os.fspath(path)
    base = fs.basename(path)
    if fs.is_remote(path):
        with _scratch(base) as tmp:
            yield tmp
            _upload(tmp, path)
        return
    path = fs.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = _new_local_temp(folder, base, _suffix(base), folder=False)
    mode = stat.S_IMODE(os.stat(tmp).st_mode)  # what open() gives under the umask
    try:
        yield tmp
        os.chmod(tmp, mode)  # some writers replace the file with a private one
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def _scratch(name: str) -> Iterator[str]:
    """A local path `name` in a private scratch folder, removed afterwards (where remote writes are prepared)."""
    scratch = tempfile.mkdtemp(prefix="xtremedistil-write-")
    try:
        yield os.path.join(scratch, name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _new_local_temp(parent: str, base: str, suffix: str = "", *, kind: str = "tmp", folder: bool) -> str:
    """Creates an empty temporary file (or folder) `_temp_name(base, suffix, kind=kind)` in `parent` with the mode
    open() (or mkdir) would give, not mkstemp's 0600 / mkdtemp's 0700."""
    while True:
        tmp = os.path.join(parent, _temp_name(base, suffix, kind=kind))
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _upload(local: str, path: str) -> None:
    """Commits a finished local file to `path` on an object store: upload under a temporary name (an upload cut
    short leaves only that), then the store's own copy onto `path`, then the temporary object is removed."""
    staged = fs.join(fs.dirname(path), _temp_name(fs.basename(path), _suffix(fs.basename(path))))
    fs.makedirs(fs.dirname(path))
    try:
        fs.copy(local, staged)
        fs.copy(staged, path)
    finally:
        fs.remove(staged)


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    """Writes `text` as UTF-8 to `path` atomically, so readers see the old file or the whole new one."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` atomically as indented, key-sorted JSON (stable diffs); numpy scalars and arrays allowed."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str) -> Any:
    """Parses a JSON file; a file that is not valid UTF-8 JSON raises CheckpointError (a UserError, and a
    ValueError) naming it, so a damaged state file is one clear message, not a traceback."""
    data = fs.read_bytes(path)
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        from xtremedistil_tf.errors import CheckpointError
        raise CheckpointError(f"{path}: not valid JSON ({e}); was it edited or damaged? Restore it or remove "
                              "the folder that holds it") from None


def save_npy(path: str, array: np.ndarray) -> None:
    """Saves `array` in .npy format to `path` atomically, so a crash never leaves a truncated array."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def load_npy(path: str) -> np.ndarray:
    """Reads an .npy array (never pickled objects)."""
    with fs.open(path, "rb") as f:
        return np.load(f, allow_pickle=False)


def write_npz(file, arrays: Iterable[tuple[str, Any]]) -> None:
    """Writes (name, array) pairs to an open binary `file` as an .npz archive (what `np.load` reads), one array at
    a time: numpy's savez needs every array in memory at once, which for a large model's weights and optimizer
    state is several copies of the model."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Reads every array of an .npz archive, in the archive's order (never pickled objects)."""
    with fs.open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ---------------------------------------------------------------------------------------------------- folders
@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yields a local temporary folder; it replaces the folder `path` as a whole only if the block finishes."""
    path = os.fspath(path)
    if fs.is_remote(path):
        with _scratch(fs.basename(path)) as tmp:
            os.mkdir(tmp)
            yield tmp
            _publish(tmp, path)
        return
    path = fs.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = _new_local_temp(parent, os.path.basename(path), folder=True)
    dir_mode = stat.S_IMODE(os.stat(tmp).st_mode)  # what mkdir gives under the umask
    file_mode = dir_mode & 0o666  # and what open() gives
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            os.chmod(root, dir_mode)
            for name in files:  # writers such as safetensors create private (0600) files
                os.chmod(os.path.join(root, name), file_mode)
                _fsync_file(os.path.join(root, name))
        old = None
        if os.path.exists(path):
            old = _new_local_temp(parent, os.path.basename(path), kind="old", folder=True)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(local: str, path: str) -> None:
    """Commits a finished local folder to `path` on an object store (see the module docstring)."""
    sealed = fs.join(fs.dirname(path), _temp_name(fs.basename(path)))
    files = {}
    for root, _, names in os.walk(local):
        rel_root = os.path.relpath(root, local)
        for name in sorted(names):
            rel = name if rel_root == "." else f"{rel_root.replace(os.sep, '/')}/{name}"
            files[rel] = os.path.getsize(os.path.join(root, name))
    _copy_files(local, sealed, files)
    write_json(fs.join(sealed, COMMIT_MARKER), {"files": files})
    _swap_in(sealed, path, files)


def _swap_in(sealed: str, path: str, files: dict[str, int]) -> None:
    """Replaces `path` by the sealed copy: un-commit, replace the files, commit (marker last), drop the copy."""
    fs.remove(fs.join(path, COMMIT_MARKER))
    fs.rmtree(path)
    _copy_files(sealed, path, files)
    fs.copy(fs.join(sealed, COMMIT_MARKER), fs.join(path, COMMIT_MARKER))
    _discard(sealed)


def _copy_files(src: str, dst: str, files) -> None:
    """Copies the files `files` (paths relative to `src`, '/'-separated) to the same places under `dst`, making
    each folder once."""
    for folder in sorted({fs.dirname(fs.join(dst, rel)) for rel in files}):
        fs.makedirs(folder)
    for rel in files:
        fs.copy(fs.join(src, rel), fs.join(dst, rel))


def _discard(sealed: str) -> None:
    fs.remove(fs.join(sealed, COMMIT_MARKER))  # first: a half-removed copy must never look sealed
    fs.rmtree(sealed)


def _sealed_files(folder: str) -> dict[str, int] | None:
    """The files a folder's COMMIT_MARKER lists, if the marker is there and every file is, at its size."""
    try:
        doc = json.loads(fs.read_bytes(fs.join(folder, COMMIT_MARKER)).decode("utf-8"))
        files = {str(k): int(v) for k, v in doc["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    for rel, n in files.items():
        try:
            if fs.size(fs.join(folder, rel)) != n:
                return None
        except OSError:
            return None
    return files


def committed(folder: str) -> bool:
    """Whether a folder written by atomic_dir can be trusted: on the local disk, that it exists (the rename was
    the commit); on an object store, that its commit marker and every file it lists are there."""
    if not fs.is_remote(folder):
        return fs.isdir(folder)
    return _sealed_files(folder) is not None


# -------------------------------------------------------------------------------------------------- clean-up
def clean_stale_temporaries(folder: str) -> int:
    """Removes the leftovers of writes interrupted by a crash; returns how many were handled.

    Local: a crash inside `atomic_dir`'s swap (the old folder moved aside, the new one not yet in place) leaves
    the old folder as `.name.XXXX.old` and no `name`: that previous version is complete, so it is put back.
    Object store: a sealed `.name.XXXX.tmp/` whose `name/` is not committed is committed now.
    """
    if not fs.isdir(folder):
        return 0
    if fs.is_remote(folder):
        return _clean_remote(folder)
    removed = 0
    for root, dirs, files in os.walk(folder):
        for name in list(dirs):
            target = _swapped_out_target(root, name)
            if target is not None:
                os.replace(os.path.join(root, name), target)
                dirs.remove(name)
                dirs.append(os.path.basename(target))
                removed += 1
        for name in list(files) + list(dirs):
            if _is_temporary(name):
                full = os.path.join(root, name)
                if os.path.isdir(full):
                    shutil.rmtree(full, ignore_errors=True)
                    dirs[:] = [d for d in dirs if d != name]
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(full)
                removed += 1
    return removed


def _clean_remote(folder: str) -> int:
    handled = 0
    for root, dirs, files in fs.walk(folder):
        for name in [d for d in dirs if _is_temporary(d)]:
            dirs.remove(name)
            tmp, target = fs.join(root, name), fs.join(root, name[1:].rpartition(".tmp")[0].rpartition(".")[0])
            files_of = _sealed_files(tmp)
            if files_of is not None and not committed(target):
                _swap_in(tmp, target, files_of)
            else:
                _discard(tmp)
            handled += 1
        for name in files:
            if _is_temporary(name):
                fs.remove(fs.join(root, name))
                handled += 1
    return handled


def _swapped_out_target(root: str, name: str) -> str | None:
    """For `.base.XXXXXXXX.old` (atomic_dir's previous version) whose `base` is missing: the path of `base`."""
    if not (name.startswith(".") and name.endswith(".old")):
        return None
    base = name[1:-len(".old")].rpartition(".")[0]
    target = os.path.join(root, base)
    return target if base and not os.path.lexists(target) else None


# ------------------------------------------------------------------------------------------------------- logs
class LogFileHandler(logging.FileHandler):
    """A logging handler writing to `path` on any file system. Object stores cannot append, so a remote log is
    written to a local file and copied up (crash-safe) at most every `every` seconds and when closed.

    Args:
      path: the log file.
      every: seconds between uploads of a remote log.
    """

    def __init__(self, path: str, *, every: float = 30.0):
        self.target = os.fspath(path)
        self.every = every
        self._last = 0.0
        self._scratch = None
        if fs.is_remote(self.target):
            self._scratch = tempfile.mkdtemp(prefix="xtremedistil-log-")
            local = os.path.join(self._scratch, fs.basename(self.target))
            if fs.exists(self.target):  # a rerun continues the log
                fs.copy(self.target, local)
        else:
            local = fs.abspath(self.target)
            os.makedirs(os.path.dirname(local), exist_ok=True)
        super().__init__(local, encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if self._scratch and time.time() - self._last >= self.every:
            self._push()

    def _push(self) -> None:
        self._last = time.time()
        with contextlib.suppress(OSError):
            self.flush()
            with atomic_path(self.target) as tmp:
                shutil.copyfile(self.baseFilename, tmp)

    def close(self) -> None:
        super().close()
        if self._scratch:
            self._push()
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


# ------------------------------------------------------------------------------------------------------ misc
def _fsync_file(path: str) -> None:
    if os.path.isdir(path):
        return
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
