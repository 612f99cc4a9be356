"""Shared assertion of the reader tests: a DataError that names the file and the line."""
import pytest

from xtremedistil_tf.errors import DataError


def raises_at(path, line, match=None):
    """Context: a DataError naming `path` and `line` (and matching `match`), its message starting `path:line:`."""

    class _Ctx:
        def __enter__(self):
            self._ctx = pytest.raises(DataError, match=match)
            self.info = self._ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            ok = self._ctx.__exit__(*exc)
            err = self.info.value
            assert err.path == path and err.line == line, (err.path, err.line, str(err))
            where = f"{path}:{line}" if line is not None else path
            assert str(err).startswith(where + ":"), str(err)
            return ok

    return _Ctx()
