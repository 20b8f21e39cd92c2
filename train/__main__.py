import sys

from core.entry import ensure_dependencies

ensure_dependencies("train", training=True)  # before anything imports torch

from train.cli import main  # noqa: E402

sys.exit(main())
