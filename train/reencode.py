"""A clip's face crops re-encoded as a worse camera and codec would deliver them: downscaled,
H.264 at a random quality, decoded and scaled back. Used to fit ``temporal_band`` on reals
with re-encoded copies, to build ``temporal_net``'s repackaged pool, and as a training
augmentation (``train.augment``, ``repackage_p``) so that packaging separates no class."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np


def reencode(frames: np.ndarray, rng: np.random.Generator, workdir: Path) -> np.ndarray:
    """(T, S, S, 3) consecutive face crops → the same after a random round trip through a worse
    camera and codec: downscaled to 35-100 % (sides a multiple of 16), H.264 at CRF 20-40, decoded and scaled
    back to S. What a real clip looks like when resized and re-packaged before it reaches us."""
    size = frames.shape[1]
    # sides a multiple of 16: x264 reads no row padding (whose bytes vary from run to run)
    side = max(32, int(round(size * rng.uniform(0.35, 1.0) / 16)) * 16)
    small = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in frames])
    decoded = h264_round_trip(small, int(rng.integers(20, 41)), workdir / "reencode.mp4")
    if len(decoded) != len(frames):
        raise RuntimeError(f"re-encoding gave {len(decoded)} frames for {len(frames)}")
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in decoded])


def h264_round_trip(frames: np.ndarray, crf: int, path: Path) -> list[np.ndarray]:
    """RGB frames → H.264 (x264, CRF ``crf``, one thread: the same bytes on every run) → RGB."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame = frame.reformat(format="yuv420p", threads=1)  # swscale in slices would vary
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        container.streams.video[0].thread_count = 1
        container.streams.video[0].thread_type = "NONE"
        # copies: to_ndarray may be a view of a buffer the decoder reuses for the next frame
        return [f.reformat(format="rgb24", threads=1).to_ndarray().copy() for f in container.decode(video=0)]
