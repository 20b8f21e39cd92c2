"""``python -m submission -input /data/input/ -output /data/output/submission.csv``"""

from core.entry import ensure_dependencies

ensure_dependencies("submission")  # before anything imports torch

from submission.cli import main  # noqa: E402

raise SystemExit(main())
