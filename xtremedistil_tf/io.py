"""Atomic file writes and the run-folder layout.

Every file a run writes goes through here: written to a temporary file in the same folder, flushed and fsynced,
then renamed over the target, so a crash never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it onto `path` only if the block finishes."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    # Keep the suffix: some writers (Keras' save_weights) insist on it.
    suffix = ".weights.h5" if base.endswith(".weights.h5") else os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
    """Yields a temporary folder beside `path`; swaps it in for `path` only if the block finishes."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        yield tmp
        for root, _, files in os.walk(tmp):
            for name in files:
                _fsync_file(os.path.join(root, name))
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str, text: str) -> None:
    """Writes `text` as UTF-8 to `path` atomically, so readers see the old file or the whole new one."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path: str, obj: Any) -> None:
    """Writes `obj` atomically as indented, key-sorted JSON (stable diffs); numpy scalars and arrays allowed."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str) -> Any:
    """Parses a JSON file; a file that is not valid UTF-8 JSON raises CheckpointError (a UserError, and a
    ValueError) naming it, so a damaged state file is one clear message, not a traceback."""
    with open(path, "rb") as f:
        data = f.read()
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


def clean_stale_temporaries(folder: str) -> int:
    """Removes `.name.*.tmp*` leftovers of writes interrupted by a crash; returns how many were removed.

    A crash inside `atomic_dir`'s swap (the old folder moved aside, the new one not yet in place) leaves the old
    folder as `.name.XXXX.old` and no `name`: that previous version is complete, so it is put back, not removed.
    """
    removed = 0
    if not os.path.isdir(folder):
        return 0
    for root, dirs, files in os.walk(folder):
        for name in list(dirs):
            target = _swapped_out_target(root, name)
            if target is not None:
                os.replace(os.path.join(root, name), target)
                dirs.remove(name)
                dirs.append(os.path.basename(target))
                removed += 1
        for name in list(files) + list(dirs):
            if name.startswith(".") and (".tmp" in name or name.endswith(".old")):
                full = os.path.join(root, name)
                if os.path.isdir(full):
                    shutil.rmtree(full, ignore_errors=True)
                    dirs[:] = [d for d in dirs if d != name]
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(full)
                removed += 1
    return removed


def _swapped_out_target(root: str, name: str) -> str | None:
    """For `.base.XXXXXXXX.old` (atomic_dir's previous version) whose `base` is missing: the path of `base`."""
    if not (name.startswith(".") and name.endswith(".old")):
        return None
    base = name[1:-len(".old")].rpartition(".")[0]
    target = os.path.join(root, base)
    return target if base and not os.path.lexists(target) else None


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
