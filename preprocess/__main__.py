"""``python -m preprocess``: see ``preprocess.cli``."""

import sys

from core.entry import ensure_dependencies

if __name__ == "__main__":  # spawned workers import this module as __mp_main__: run nothing then
    ensure_dependencies("preprocess")
    from preprocess.cli import main

    sys.exit(main())
