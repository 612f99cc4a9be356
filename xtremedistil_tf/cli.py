"""Shared entry-point behaviour: one clear line for user errors (no traceback unless --verbose), exit codes."""
from __future__ import annotations

import atexit
import importlib.util
import logging as py_logging
import os
import re
import sys
import tempfile
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; on an AVX2 CPU it runs
# Eigen's, and the encoder's forward pass takes 1.5x as long (benchmarks/README.md 1e). TF_ENABLE_ONEDNN_OPTS=0 opts
# out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

EXIT_USER_ERROR = 2

# What TensorFlow's C++ side prints while it starts, before absl logging is set up (so TF_CPP_MIN_LOG_LEVEL cannot
# hide it): notices, not problems. Shown with --verbose.
_START_NOTICES = [re.compile(p) for p in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^I\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations are on",
    r"^I\d{4} [\d:. ]+\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    r"^I\d{4} [\d:. ]+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* in other operations, rebuild TensorFlow",
)]
# CUDA probing on a machine without an NVIDIA device: an "error" line about a GPU that is not there.
_NO_GPU_PROBE = re.compile(r"^E\d{4} [\d:. ]+\d+ cuda_(platform|executor|driver)\.cc:\d+\] failed call to cuInit")
_quiet: dict = {}


def quiet_start(argv: list[str] | None = None) -> None:
    """Keeps TensorFlow's start-up notices (oneDNN, CUDA probing where there is no GPU) off stderr, unless
    --verbose is among `argv`: stderr is held in a file until `end_quiet_start` (called by `run_main` once the
    devices are up) or the exit, then everything else in it is written out, so no real error is hidden.
    Call it first thing in an entry point, before TensorFlow is imported."""
    argv = sys.argv if argv is None else argv
    if _quiet or any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv):
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to quiet
        return
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    _quiet.update(saved=saved, held=held)


def end_quiet_start(*, verbose: bool = False) -> None:
    """Brings stderr back and writes out what was held, start-up notices left out (all of it if `verbose`)."""
    if not _quiet:
        return
    sys.stderr.flush()
    saved, held = _quiet.pop("saved"), _quiet.pop("held")
    os.dup2(saved, 2)
    os.close(saved)
    held.seek(0)
    lines = held.read().decode("utf-8", "replace").splitlines(keepends=True)
    held.close()
    no_gpu = not _gpu_present()
    kept = [ln for ln in lines if verbose or not (any(p.match(ln.rstrip("\n")) for p in _START_NOTICES)
                                                  or (no_gpu and _NO_GPU_PROBE.match(ln)))]
    if kept:
        sys.stderr.write("".join(kept))
        sys.stderr.flush()


atexit.register(end_quiet_start)  # whatever stderr still holds is written out at exit (a no-op otherwise)


def start_tensorflow_quietly(*, verbose: bool = False) -> None:
    """Imports TensorFlow and starts its devices (CUDA probing happens there) with stderr held as `quiet_start`
    does (unless it is held already), then writes out all but the start-up notices (all with `verbose`). A
    failing import is left to the caller's own import, which reports it with stderr back."""
    if not verbose:
        quiet_start([])
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()
    except Exception:  # noqa: BLE001 - reported by the real import later
        pass
    finally:
        end_quiet_start(verbose=verbose)


def _gpu_present() -> bool:
    """Whether this machine has an NVIDIA device node (then a failed CUDA start is a real error)."""
    try:
        return any(n.startswith("nvidia") and n[6:].isdigit() for n in os.listdir("/dev"))
    except OSError:
        return True


def define_config_flags(cls) -> None:
    """One absl flag per field of a config dataclass, typed by the field's default, with the field's help."""
    import dataclasses

    from absl import flags
    for field in dataclasses.fields(cls):
        default, name, help_text = field.default, field.name, field.metadata.get("help", field.name)
        if isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text)
        else:
            flags.DEFINE_string(name, default, help_text)


def config_from_flags(cls):
    """The config dataclass `cls` filled from the parsed flags."""
    import dataclasses

    from absl import flags
    return cls(**{f.name: getattr(flags.FLAGS, f.name) for f in dataclasses.fields(cls)})


class _LibraryInfoFilter(py_logging.Filter):
    """Drops INFO and DEBUG records logged from TensorFlow's and Keras' own files (each checkpoint's "Sharding
    callback duration", SavedModel assets and fingerprints, renamed signature inputs): bookkeeping, not the run's
    progress. They reach absl's logger as well as TensorFlow's, so the filter goes by the file, not the logger."""

    def __init__(self):
        super().__init__()
        roots = []
        for name in ("tensorflow", "keras", "tf_keras"):
            spec = importlib.util.find_spec(name)
            for folder in (spec.submodule_search_locations or []) if spec else []:
                roots.append(os.path.join(folder, ""))
        self.roots = tuple(roots)

    def filter(self, record) -> bool:
        return record.levelno >= py_logging.WARNING or not record.pathname.startswith(self.roots)


_library_info_filter: list = []


def library_info_hidden(hidden: bool = True) -> None:
    """Hides (or shows again) TensorFlow's and Keras' own INFO lines in the log; --verbose shows them."""
    from absl import logging as absl_logging
    loggers = (absl_logging.get_absl_logger(), py_logging.getLogger("tensorflow"))
    if hidden and not _library_info_filter:
        _library_info_filter.append(_LibraryInfoFilter())
        for logger in loggers:
            logger.addFilter(_library_info_filter[0])
    elif not hidden and _library_info_filter:
        for logger in loggers:
            logger.removeFilter(_library_info_filter[0])
        _library_info_filter.clear()


def run_main(main, argv, verbose: bool) -> int:
    """Calls `main(argv)` and returns the exit code: 0, 2 for a UserError (one line on stderr, the traceback
    only if `verbose`), 130 on Ctrl-C. Other exceptions propagate so real bugs keep their traceback."""
    from xtremedistil_tf.errors import UserError
    if _quiet:
        start_tensorflow_quietly(verbose=verbose)
    library_info_hidden(not verbose)
    try:
        main(argv)
        return 0
    except UserError as e:
        if verbose:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
