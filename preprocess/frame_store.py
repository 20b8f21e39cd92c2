"""The decoded window kept as the decoder's own YUV planes, turned into RGB only where read.

Converting every frame of a 1080p window to RGB, and writing 6 MB per frame, cost ~0.3 CPU-s
per 10 s clip, while the stages read few of those pixels: the face detector every 10th frame,
the crops a face-sized region of the sampled frames. A ``FrameStore`` copies each decoded
frame's planes (half the bytes of RGB, no colour conversion) and converts on request, through
the same swscale conversion the eager path uses, so the pixels are identical: a whole frame
(``store[i]``) or a region of one (``store.region``). Regions of 4:2:0 frames are converted
from the planes' matching region, cut on the chroma grid, which gives the same pixels as
converting the whole frame (tested), at a face crop's cost instead of a frame's.

It stands in for the ``(T, H, W, 3)`` array: ``len``, ``shape``, ``dtype``, and ``store[i]`` /
``store[indices]`` give RGB frames. Slots that show the same source frame share its planes.
"""

from __future__ import annotations

import threading

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from core.image_ops import rotate

# 8-bit planar formats whose planes are copied as they are (bytes per row = plane width).
# Anything else (10-bit, packed RGB, palettes, NV12) is converted to RGB at decode, as before.
PLANAR_FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"})
# Formats whose regions convert exactly from the planes' region (2x2 chroma subsampling).
_REGION_FORMATS = frozenset({"yuv420p", "yuvj420p"})


def stores_planes(frame: av.VideoFrame) -> bool:
    """Whether a stream whose first frame is ``frame`` can be kept as planes."""
    return frame.format.name in PLANAR_FORMATS and frame.width % 2 == 0 and frame.height % 2 == 0


def plane_bytes(frame: av.VideoFrame) -> int:
    """Bytes one frame of this stream takes in a ``FrameStore``."""
    return sum(p.width * p.height for p in frame.planes)


class FrameStore:
    """Decoded frames as planes, with RGB made on demand (see the module docstring).

    ``memory(shape)`` hands out the uint8 memory the planes go in (a ``FrameBuffer``'s, so batch
    loops reuse it). The writer calls ``add`` for each new source frame and ``show`` for each
    slot, in order. Reading slots below ``len`` is safe from another thread while the writer
    adds later ones.
    """

    def __init__(self, first: av.VideoFrame, rotation: int, capacity: int, memory=None):
        self.format = first.format.name
        self.coded = (first.width, first.height)
        w, h = self.coded
        self.rotation = rotation
        self._rotate = rotation if rotation in (90, 180, 270) else None  # clockwise degrees
        self.shape_hw = (w, h) if rotation in (90, 270) else (h, w)
        self._planes = [(p.height, p.width) for p in first.planes]  # (rows, bytes per row)
        self._frame_bytes = sum(r * c for r, c in self._planes)
        capacity = max(1, capacity)
        shape = (capacity, self._frame_bytes)
        self._memory = memory(shape) if memory is not None else np.empty(shape, np.uint8)
        self._colour: list[tuple[int, int]] = []  # (colorspace, color_range) per stored frame
        self._slots: list[int] = []  # slot -> stored frame
        self._local = threading.local()  # one swscale context per thread: they are not shareable

    # -- writing ------------------------------------------------------------------------------

    def add(self, frame: av.VideoFrame) -> int:
        """Copy ``frame``'s planes in; returns its stored index."""
        if (frame.width, frame.height) != self.coded or frame.format.name != self.format:
            # the stream changed size or format midway: fit it to the first frame's, as the
            # eager path scales such frames to the first frame's size
            w, h = self.coded
            frame = self._reformatter().reformat(
                frame, width=w, height=h, format=self.format, interpolation="AREA", threads=1
            )
        index = len(self._colour)
        if index >= len(self._memory):
            self._memory = _grown(self._memory, 2 * len(self._memory))
        row = self._memory[index]
        at = 0
        for plane, (rows, cols) in zip(frame.planes, self._planes, strict=True):
            source = np.frombuffer(plane, np.uint8).reshape(rows, plane.line_size)[:, :cols]
            row[at : at + rows * cols].reshape(rows, cols)[...] = source
            at += rows * cols
        self._colour.append((frame.colorspace, frame.color_range))
        return index

    def show(self, stored: int) -> None:
        """The next slot shows stored frame ``stored``."""
        self._slots.append(stored)

    # -- the array-like face ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self._slots), *self.shape_hw, 3)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def nbytes(self) -> int:
        return len(self._colour) * self._frame_bytes

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.frame(int(index))
        slots = np.arange(len(self._slots))[index]
        out = np.empty((len(slots), *self.shape_hw, 3), np.uint8)
        for i, slot in enumerate(slots):
            out[i] = self.frame(int(slot))
        return out

    def frame(self, slot: int) -> np.ndarray:
        """Slot ``slot`` as an upright (H, W, 3) RGB array."""
        rgb = self._rgb(self._rebuild(self._stored(slot)))
        return rgb.copy() if self._rotate is None else rotate(rgb, self._rotate)

    def region(self, slot: int, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """``self[slot][top:bottom, left:right]`` (bounds inside the frame), converting only
        about that region where the format allows."""
        if self.format not in _REGION_FORMATS or self._rotate is not None:
            return self.frame(slot)[top:bottom, left:right]
        # widen to the chroma grid (2x2), so each chroma sample covers the same pixels as in the
        # whole frame and the conversion gives the same values
        y0, x0 = top - top % 2, left - left % 2
        y1, x1 = bottom + bottom % 2, right + right % 2
        rgb = self._rgb(self._rebuild(self._stored(slot), (y0, y1, x0, x1)))
        return rgb[top - y0 : bottom - y0, left - x0 : right - x0].copy()

    # -- conversion ---------------------------------------------------------------------------

    def _stored(self, slot: int) -> int:
        if not 0 <= slot < len(self._slots):
            raise IndexError(f"slot {slot} outside the {len(self._slots)} decoded")
        return self._slots[slot]

    def _rebuild(self, stored: int, box: tuple[int, int, int, int] | None = None) -> av.VideoFrame:
        """A VideoFrame holding stored frame ``stored`` (or the region ``box`` = top, bottom,
        left, right of it, on the chroma grid)."""
        w, h = self.coded
        y0, y1, x0, x1 = box if box is not None else (0, h, 0, w)
        frame = av.VideoFrame(x1 - x0, y1 - y0, self.format)
        row = self._memory[stored]
        at = 0
        for plane, (rows, cols) in zip(frame.planes, self._planes, strict=True):
            sy, sx = h // rows, w // cols  # chroma subsampling of this plane
            source = row[at : at + rows * cols].reshape(rows, cols)[y0 // sy : y1 // sy, x0 // sx : x1 // sx]
            dest = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            dest[:, : source.shape[1]] = source
            at += rows * cols
        frame.colorspace, frame.color_range = self._colour[stored]
        return frame

    def _reformatter(self) -> VideoReformatter:
        reformatter = getattr(self._local, "reformatter", None)
        if reformatter is None:
            reformatter = self._local.reformatter = VideoReformatter()
        return reformatter

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        # one thread: the decoder's frame threads and the face detector already have the cores
        return self._reformatter().reformat(frame, format="rgb24", threads=1).to_ndarray()


def _grown(array: np.ndarray, length: int) -> np.ndarray:
    grown = np.empty((max(length, 1), *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    return grown
