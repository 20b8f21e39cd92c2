"""How many threads the numeric libraries may use in this process.

Worker processes share the machine's cores; left alone, torch, OpenCV and the BLAS/OpenMP
libraries each start one thread per core in every process, and the oversubscribed threads
spin against each other and the video decoder.
"""

from __future__ import annotations

import os
import sys

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Cap OpenMP/MKL/OpenBLAS (through the environment, read when they load), and torch's and
    OpenCV's thread pools if they are already imported. Importing them here would cost every
    worker a second even when its job needs neither, so a caller that imports them afterwards
    calls this again."""
    threads = max(1, int(threads))
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)
