"""Shared entry-point behaviour: one clear line for user errors (no traceback unless --verbose), exit codes."""
from __future__ import annotations

import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_USER_ERROR = 2


def run_main(main, argv, verbose: bool) -> int:
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
