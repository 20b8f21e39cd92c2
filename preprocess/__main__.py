"""``python -m preprocess``: see ``preprocess.cli``."""

import sys

from preprocess.cli import main

if __name__ == "__main__":  # spawned workers import this module as __mp_main__: run nothing then
    sys.exit(main())
