"""Shared entry-point behaviour: one clear line for user errors (no traceback unless --verbose), exit codes."""
from __future__ import annotations

import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_USER_ERROR = 2


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


def run_main(main, argv, verbose: bool) -> int:
    """Calls `main(argv)` and returns the exit code: 0, 2 for a UserError (one line on stderr, the traceback
    only if `verbose`), 130 on Ctrl-C. Other exceptions propagate so real bugs keep their traceback."""
    from xtremedistil_tf.errors import UserError
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
