"""``python -m submission -input /data/input/ -output /data/output/submission.csv``"""

from core.entry import ensure_dependencies
from core.scratch import use_writable_caches

ensure_dependencies("submission")  # scoring needs no torch (ONNX Runtime)
# Before anything imports numba (librosa): a read-only image or site-packages needs its
# caches elsewhere (core/scratch.py).
use_writable_caches()

from submission.cli import main  # noqa: E402

raise SystemExit(main())
