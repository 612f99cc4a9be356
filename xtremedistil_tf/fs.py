"""The file-system layer every read and write of the project goes through.

A path with a scheme (`gs://bucket/run`, `ram://`, `s3://`, `hdfs://`) is handed to `tf.io.gfile` unchanged, as
Model Garden, TFDS and Keras do; a plain path (or `file://`) goes to `os`, which gives fsync, atomic rename and
the usual file modes. Errors come back as Python's own (FileNotFoundError, PermissionError, OSError) naming the
path, whichever side raised them. Crash-safe writes are built on this in `xtremedistil_tf.io`.
"""
from __future__ import annotations

import builtins
import contextlib
import fnmatch
import io as _io
import os
import posixpath
import shutil
import tempfile
from typing import IO, Iterator

_FILE_SCHEME = "file://"


def is_remote(path: str) -> bool:
    """Whether `path` names a file system with a scheme (gs://, ram://, ...) rather than the local disk."""
    path = os.fspath(path)
    return "://" in path and not path.startswith(_FILE_SCHEME) and path.index("://") > 0


def _local(path: str) -> str:
    path = os.fspath(path)
    return path[len(_FILE_SCHEME):] if path.startswith(_FILE_SCHEME) else path


def _gfile():
    import tensorflow as tf  # only remote paths need TensorFlow's file systems
    return tf.io.gfile


def _root_len(path: str) -> int:
    """Length of the `scheme://` prefix, which dirname must never cut into."""
    return path.index("://") + 3


@contextlib.contextmanager
def _errors(path: str) -> Iterator[None]:
    """Turns TensorFlow's file-system errors into the OSError subclasses callers already handle."""
    import tensorflow as tf
    try:
        yield
    except tf.errors.NotFoundError:
        raise FileNotFoundError(2, "no such file or folder", path) from None
    except tf.errors.PermissionDeniedError as e:
        raise PermissionError(13, f"permission denied ({e.message})", path) from None
    except tf.errors.OpError as e:
        raise OSError(5, f"{type(e).__name__}: {e.message.strip().splitlines()[0] if e.message else ''}",
                      path) from None


# ------------------------------------------------------------------------------------------------------ paths
def join(base: str, *parts: str) -> str:
    """`base/part/...`; URLs are joined with '/', local paths as os.path.join does."""
    base = os.fspath(base)
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def dirname(path: str) -> str:
    """The folder holding `path` ('gs://bucket' stays itself)."""
    path = os.fspath(path)
    if is_remote(path):
        stripped = path.rstrip("/")
        head = posixpath.dirname(stripped)
        return head if len(head) >= _root_len(stripped) else stripped
    return os.path.dirname(path)


def basename(path: str) -> str:
    """The last component of `path` (trailing slashes ignored)."""
    path = os.fspath(path)
    return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(os.path.normpath(path))


def abspath(path: str) -> str:
    """An absolute local path; a URL unchanged (never turned into a local folder named 'gs:')."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(_local(path))


def realpath(path: str) -> str:
    """The resolved local path (symlinks followed); a URL unchanged."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.realpath(_local(path))


# ------------------------------------------------------------------------------------------------ inspection
def exists(path: str) -> bool:
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.exists(_local(path))
    return isfile(path) or isdir(path)


def isdir(path: str) -> bool:
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.isdir(_local(path))
    with _errors(path):
        g = _gfile()
        if not g.isdir(path):
            return False
        if not path.startswith("ram://") or dirname(path) == path.rstrip("/"):
            return True
        # TF's ram:// calls every string prefix of a file name a folder ('ram://x/a' when 'ram://x/a.txt'
        # exists); a real folder is one its parent lists.
        return basename(path) in [n.rstrip("/") for n in g.listdir(dirname(path))]


def isfile(path: str) -> bool:
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.isfile(_local(path))
    with _errors(path):
        g = _gfile()
        return g.exists(path) and not g.isdir(path)


def listdir(path: str) -> list[str]:
    """Names in the folder `path` (no trailing '/' on sub-folders, whatever the store returns)."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.listdir(_local(path))
    with _errors(path):
        g = _gfile()
        names = [n.rstrip("/") for n in g.listdir(path)]
        if path.startswith("ram://"):  # listed by string prefix: 'x/teacher' shows '_outputs' of 'x/teacher_outputs'
            names = [n for n in names if g.exists(join(path, n))]
        return names


def walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk for both sides: (folder, sub-folder names, file names), top-down; the caller may prune the list
    of sub-folders in place."""
    top = os.fspath(top)
    if not is_remote(top):
        yield from os.walk(_local(top))
        return
    if not isdir(top):
        return
    yield from _walk_remote(top)


def _walk_remote(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    if top.startswith("gs://"):  # GCS lists folders with a trailing '/': no call per entry
        with _errors(top):
            raw = _gfile().listdir(top)
        dirs = [n.rstrip("/") for n in raw if n.endswith("/")]
        files = [n for n in raw if not n.endswith("/")]
    else:
        names = listdir(top)
        dirs = [n for n in names if isdir(join(top, n))]
        files = [n for n in names if n not in dirs]
    yield top, dirs, files
    for d in list(dirs):
        yield from _walk_remote(join(top, d))


def glob(pattern: str) -> list[str]:
    """Sorted paths matching `pattern` (wildcards in the last component)."""
    pattern = os.fspath(pattern)
    if not is_remote(pattern):
        import glob as _glob
        return sorted(_glob.glob(_local(pattern)))
    folder, name = dirname(pattern), basename(pattern)
    if not isdir(folder):
        return []
    return sorted(join(folder, n) for n in listdir(folder) if fnmatch.fnmatchcase(n, name))


def size(path: str) -> int:
    """Size in bytes."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.getsize(_local(path))
    with _errors(path):
        return int(_gfile().stat(path).length)


def mtime_ns(path: str) -> int:
    """Modification time in ns (0 where the store does not keep one, e.g. ram://)."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.stat(_local(path)).st_mtime_ns
    with _errors(path):
        return int(_gfile().stat(path).mtime_nsec)


# ---------------------------------------------------------------------------------------------------- changes
def makedirs(path: str) -> None:
    """Creates `path` and its parents (modes 0777 minus the umask, as mkdir gives); no error if it exists."""
    path = os.fspath(path)
    if not is_remote(path):
        os.makedirs(_local(path), exist_ok=True)
        return
    with _errors(path):
        _gfile().makedirs(path)


def remove(path: str, *, missing_ok: bool = True) -> None:
    """Deletes the file `path`."""
    path = os.fspath(path)
    try:
        if not is_remote(path):
            os.remove(_local(path))
            return
        with _errors(path):
            _gfile().remove(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def rmtree(path: str) -> None:
    """Deletes the folder `path` and everything in it; nothing happens if it does not exist."""
    path = os.fspath(path)
    if not is_remote(path):
        shutil.rmtree(_local(path), ignore_errors=True)
        return
    if not exists(path):
        return
    with _errors(path):
        g = _gfile()
        if not path.startswith("ram://"):
            g.rmtree(path)
            return
        # ram://'s own rmtree trips over its prefix listing (see listdir): files first, then folders, deepest first.
        tree = list(walk(path))
        for root, _, files in tree:
            for name in files:
                g.remove(join(root, name))
        for root, _, _ in reversed(tree):
            if g.exists(root):
                g.remove(root)


def copy(src: str, dst: str) -> None:
    """Copies the file `src` to `dst` (replacing it), across file systems too (uploads and downloads).

    Within an object store the copy is made by the store itself: the new object appears whole or not at all.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if not (is_remote(src) or is_remote(dst)):
        shutil.copyfile(_local(src), _local(dst))
        return
    with _errors(f"{src} -> {dst}"):
        g = _gfile()
        if dst.startswith("ram://") and g.exists(dst):
            g.remove(dst)  # TF's ram:// file system appends to an existing file instead of replacing it
        g.copy(_local(src), _local(dst), overwrite=True)


# ------------------------------------------------------------------------------------------------------- data
def open(path: str, mode: str = "r", *, encoding: str | None = "utf-8", newline: str | None = None) -> IO:
    """Opens a file for reading (or, on the local disk, writing). Remote files are read through tf.io.gfile;
    writes to a remote store go through `xtremedistil_tf.io` (crash-safe), never here."""
    path = os.fspath(path)
    if not is_remote(path):
        if "b" in mode:
            return builtins.open(_local(path), mode)
        return builtins.open(_local(path), mode, encoding=encoding, newline=newline)
    if any(m in mode for m in "wax+"):
        raise ValueError(f"{path}: write remote files through xtremedistil_tf.io (crash-safe), not fs.open")
    with _errors(path):
        g = _gfile()
        if not g.exists(path):
            raise FileNotFoundError(2, "no such file", path)
        if g.isdir(path):
            raise IsADirectoryError(21, "is a folder", path)
        f = _io.BufferedReader(_GFileRaw(g.GFile(path, "rb"), path), 1 << 20)
    if "b" in mode:
        return f
    with f:
        data = f.read()
    return _io.TextIOWrapper(_io.BytesIO(data), encoding=encoding, newline=newline)


class _GFileRaw(_io.RawIOBase):
    """A binary GFile as a raw stream, so io.BufferedReader gives what a local binary file gives: lines split on
    b"\n" alone (GFile's own line iteration drops every b"\r"), seek/tell, and OSError on read failures."""

    def __init__(self, f, path: str):
        self._f, self._path = f, path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        with _errors(self._path):
            data = self._f.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        with _errors(self._path):
            self._f.seek(offset, whence)
            return self._f.tell()

    def tell(self) -> int:
        with _errors(self._path):
            return self._f.tell()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def read_bytes(path: str) -> bytes:
    """The whole content of the file `path`."""
    with open(path, "rb") as f:
        return f.read()


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The whole content of the file `path`, decoded."""
    return read_bytes(path).decode(encoding)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local path holding `path`'s content, for libraries that need a real file or folder (h5py,
    tokenizers, torch): the path itself when local, else a downloaded copy removed afterwards."""
    path = os.fspath(path)
    if not is_remote(path):
        yield _local(path)
        return
    scratch = tempfile.mkdtemp(prefix="xtremedistil-download-")
    try:
        target = os.path.join(scratch, basename(path) or "download")
        if isdir(path):
            for root, _, files in walk(path):
                rel = root[len(path.rstrip("/")):].lstrip("/")
                os.makedirs(os.path.join(target, rel), exist_ok=True)
                for name in files:
                    copy(join(root, name), os.path.join(target, rel, name))
        else:
            copy(path, target)
        yield target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
