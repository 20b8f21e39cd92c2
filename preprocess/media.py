"""Video files in and out with PyAV: ``probe``, ``decode`` (the analysis window) and ``write_video``.

``decode`` resamples frames to a fixed analysis rate by timestamp: slot ``i`` shows the source
frame on screen at ``i / fps`` seconds after the first frame (the last frame whose presentation
time is not later). That handles any source rate (12.5, 22.13, 29.97, 50 fps) and variable frame
rates alike. Only frames that fill a slot are converted to RGB, which is the costly step.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from core.files import atomic_path
from core.image_ops import rotate
from core.preprocess_config import MediaConfig
from core.preprocess_data import Clip, PreprocessError, VideoInfo
from preprocess.frame_store import FrameStore, plane_bytes, stores_planes

# Above this many bytes of RGB frames the window is downscaled (with a warning) rather than
# risking an out-of-memory kill: 10 s of 1080p at 25 fps (1.56 GB) fits, 16 s (2.5 GB) does not.
MAX_FRAME_BYTES = 2 * 1024**3
# Audio and video lengths that differ by more than this are worth a warning.
LENGTH_TOLERANCE_S = 0.1
# A jump in audio timestamps longer than this is missing audio (filled with silence).
_AUDIO_GAP_S = 0.02

# ``decode``'s progress hook: called with the frame array and how many slots are filled so far.
FrameCallback = Callable[[np.ndarray, int], None]

# Leading bytes of containers we know to be video; when such a file does not open it is
# damaged (e.g. an MP4 cut before its index), not some other kind of file.
_VIDEO_SIGNATURES = ((4, b"ftyp"), (0, b"\x1aE\xdf\xa3"), (0, b"\x00\x00\x01\xba"), (8, b"AVI "))


# ---------------------------------------------------------------------------------------------
# probing


def probe(path: str | Path) -> VideoInfo:
    """Describe a video file; decodes its first frame (rotation lives in frame side data, and a
    file whose first frame does not decode is no use). Raises ``PreprocessError``."""
    path = str(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        info = _describe(container, stream, path)
        first = _first_frame(container, stream, path)
        return _with_rotation(info, _rotation(first, stream))


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise PreprocessError(path, "not_found", "no such file")
    if not os.path.isfile(path):
        raise PreprocessError(path, "not_a_video", "not a regular file")
    if os.path.getsize(path) == 0:
        raise PreprocessError(path, "empty_file", "0 bytes")


def _open(path: str, still_images: bool = False) -> av.container.InputContainer:
    _check_file(path)
    try:
        container = av.open(path, metadata_errors="ignore")
    except PermissionError as err:
        raise PreprocessError(path, "unreadable", str(err)) from err
    except (av.FFmpegError, UnicodeDecodeError) as err:
        if _looks_like_video(path):
            raise PreprocessError(path, "decode_error", f"damaged or truncated container: {err}") from err
        raise PreprocessError(path, "not_a_video", f"unrecognised format: {err}") from err
    name = container.format.name
    still = name.startswith("image2") or name.endswith("_pipe")
    if name == "tty" or (still and not still_images):
        container.close()
        raise PreprocessError(path, "not_a_video", f"{name} is an image or text format")
    return container


def _looks_like_video(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    return any(head[at : at + len(sig)] == sig for at, sig in _VIDEO_SIGNATURES)


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    # Cover art in music files is a one-picture "video" stream; it is not footage.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        container.close()
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise PreprocessError(path, "no_video_stream", f"streams: {', '.join(kinds)}")
    if streams[0].codec_context is None:  # FFmpeg has no decoder for it
        container.close()
        raise PreprocessError(path, "decode_error", "no decoder for the video codec")
    return streams[0]


def _describe(container, stream, path: str) -> VideoInfo:
    ctx = stream.codec_context
    audio = container.streams.audio[0] if container.streams.audio else None
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    return VideoInfo(
        path=path,
        container=container.format.name,
        duration=_duration(container),
        has_video=True,
        has_audio=audio is not None,
        width=ctx.width,
        height=ctx.height,
        fps=fps,
        variable_fps=_is_variable(_index_times(stream, fps)),
        rotation=0,
        video_codec=ctx.name,
        audio_codec=audio.codec_context.name if audio is not None else None,
        audio_sample_rate=audio.rate if audio is not None else None,
        audio_channels=audio.channels if audio is not None else None,
        num_frames=stream.frames or None,
    )


def _stream_seconds(stream) -> float | None:
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _duration(container) -> float:
    if container.duration is not None:
        return container.duration / av.time_base
    spans = [s for s in (_stream_seconds(st) for st in container.streams) if s]
    return max(spans, default=0.0)


def _index_times(stream, fps: float) -> np.ndarray:
    """Timestamps from the container index, when it lists every frame (MP4 does; MKV lists only
    key frames, whose spacing says nothing about the frame rate)."""
    entries = stream.index_entries
    expected = stream.frames or (_stream_seconds(stream) or 0.0) * fps
    if not entries or expected <= 0 or len(entries) < 0.9 * expected:
        return np.zeros(0)
    return np.sort(np.array([e.timestamp for e in entries], np.float64)) * float(stream.time_base)


def _is_variable(times: np.ndarray) -> bool:
    """Frame intervals that stray (>10%) from the median for more than 5% of frames. Ignores the
    odd dropped frame and millisecond rounding of constant rates."""
    steps = np.diff(times)
    steps = steps[steps > 0]
    if len(steps) < 3:
        return False
    median = np.median(steps)
    return bool(np.mean(np.abs(steps - median) > 0.1 * median) > 0.05)


def _rotation(frame: av.VideoFrame | None, stream) -> int:
    """Clockwise degrees (0/90/180/270) to turn the coded frame for upright display."""
    ccw = frame.rotation if frame is not None else 0
    if ccw:
        return int(round(-ccw / 90.0)) * 90 % 360
    tag = stream.metadata.get("rotate")  # legacy tag, already clockwise
    try:
        return int(round(float(tag) / 90.0)) * 90 % 360 if tag else 0
    except ValueError:
        return 0


def _with_rotation(info: VideoInfo, rotation: int) -> VideoInfo:
    if rotation in (90, 270):
        return dataclasses.replace(info, rotation=rotation, width=info.height, height=info.width)
    return dataclasses.replace(info, rotation=rotation)


def _cut_short(container, path: str) -> str:
    """``partial: ...`` when the container's index (an MP4's, read from its header) points past
    the end of the file: a file cut short, e.g. an interrupted upload of a faststart MP4. Such
    a file still decodes up to the cut; "" when it is whole or its format keeps no such index."""
    size = os.path.getsize(path)
    end = max((e.pos + e.size for s in container.streams for e in s.index_entries if e.pos >= 0), default=0)
    if end <= size:
        return ""
    return f"partial: the file ends at byte {size} of the {end} its index lists"


def _first_frame(container, stream, path: str) -> av.VideoFrame:
    for frame in _frames(container, stream, errors=[]):
        return frame
    raise PreprocessError(path, "decode_error", "no decodable video frame")


def _frames(container, stream, errors: list[str]):
    """Decoded frames in presentation order; packets that fail to decode are skipped and noted
    in ``errors`` (a damaged stretch must not lose the rest of the video)."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as err:  # the container itself breaks off: keep what we have
            errors.append(f"demux: {err}")
            packet = None
        try:
            frames = stream.decode(packet)
        except av.FFmpegError as err:
            errors.append(f"decode: {err}")
            continue
        yield from frames
        if packet is None:
            return


# ---------------------------------------------------------------------------------------------
# decoding


def decode(
    path: str | Path,
    cfg: MediaConfig | None = None,
    buffer: FrameBuffer | None = None,
    on_frames: FrameCallback | None = None,
    lazy: bool = False,
    threads: int = 0,
    thread_type: str = "AUTO",
) -> Clip:
    """The first ``cfg.window_s`` seconds as RGB frames at ``cfg.fps`` plus mono int16 audio.

    Frames keep the decoded resolution unless ``cfg.max_side`` > 0 (or they would exceed
    ``MAX_FRAME_BYTES``); rotation metadata is applied so frames are upright. With a
    ``buffer`` the frames are a view into its memory (see ``FrameBuffer``).

    ``on_frames(frames, count)`` lets work start before decoding ends: it is called on the
    decoding thread each time slots are filled, with the array holding them (it may be replaced
    by a larger one as the window grows) and the number filled. Slots below ``count`` never
    change again, so another thread may read them; the callback itself should return quickly.
    An exception it raises aborts the decode.

    ``lazy``: the frames may come back as a ``FrameStore`` (the decoder's planes, RGB made where
    read, same pixels) instead of an array, for 8-bit planar formats kept at their decoded size;
    other streams still decode to an array.

    ``threads``: the decoder's threads (0: FFmpeg's choice, one per core it sees, which in a
    container limited to 2 CPUs of a 64-core host is 64); ``thread_type`` "AUTO" (frame and
    slice threads), "FRAME" or "SLICE".
    """
    cfg = cfg or MediaConfig()
    path = str(path)
    warnings: list[str] = []
    with _open(path, cfg.still_images) as container:
        stream = _video_stream(container, path)
        stream.thread_type = thread_type  # decoding is most of the cost: threads pay
        if threads > 0:
            stream.codec_context.thread_count = threads
        info = _describe(container, stream, path)
        cut = _cut_short(container, path)
        if cut:
            warnings.append(cut)
        video = _read_video(container, stream, info, cfg, warnings, buffer, on_frames, lazy)
    info = dataclasses.replace(_with_rotation(info, video.rotation), variable_fps=video.variable_fps)
    audio = None
    if info.has_audio:
        duration = len(video.frames) / cfg.fps
        audio = _read_audio(path, video.start, duration, cfg, warnings)
    else:
        warnings.append("no_audio")
    return Clip(
        info=info,
        frames=video.frames,
        timestamps=video.timestamps,
        fps=cfg.fps,
        audio=audio,
        sample_rate=cfg.sample_rate,
        warnings=warnings,
    )


class FrameBuffer:
    """Memory that successive ``decode`` calls reuse for their frames.

    Fresh memory is expensive: first-touch page faults on ~1.5 GB of 1080p frames cost as much as
    decoding them. A batch loop that keeps one FrameBuffer pays that once. The frames of a
    Clip decoded into a buffer are overwritten by the next decode into the same buffer: copy
    what must outlive it (crops are copies already).
    """

    def __init__(self) -> None:
        self._memory = np.empty(0, np.uint8)

    def array(self, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        if size > len(self._memory):
            self._memory = np.empty(size, np.uint8)
        return self._memory[:size].reshape(shape)

    @property
    def nbytes(self) -> int:
        return len(self._memory)


@dataclasses.dataclass
class _Video:
    frames: np.ndarray
    timestamps: np.ndarray
    start: float  # seconds, presentation time of the first frame (where audio is aligned)
    rotation: int
    variable_fps: bool


class _SlotWriter:
    """Owns the output array; converts a source frame once and copies it into later slots."""

    memory_scaled = False

    def __init__(
        self,
        capacity: int,
        max_slots: int,
        max_side: int,
        first: av.VideoFrame,
        rotation: int,
        buffer: FrameBuffer | None,
    ):
        w, h = first.width, first.height
        scale = 1.0
        if max_side > 0 and max(w, h) > max_side:
            scale = max_side / max(w, h)
        budget = MAX_FRAME_BYTES / (3.0 * capacity * w * h)  # in squared scale
        self.memory_scaled = budget < scale * scale
        scale = min(scale, math.sqrt(budget))
        # Size the decoder's frames are converted to, before rotation.
        self.coded = (max(1, round(w * scale)), max(1, round(h * scale))) if scale < 1.0 else (w, h)
        cw, ch = self.coded
        self.shape = (cw, ch, 3) if rotation in (90, 270) else (ch, cw, 3)
        self.rotate = rotation if rotation in (90, 180, 270) else None  # clockwise degrees
        self.max_slots = max_slots
        shape = (max(1, capacity), *self.shape)
        # np.empty reserves address space only; pages of slots never written cost no memory.
        self.frames = buffer.array(shape) if buffer is not None else np.empty(shape, np.uint8)
        self.times = np.zeros(max(1, capacity), np.float64)
        self.count = 0
        # One long-lived swscale context per step: PyAV's frame.reformat builds (and frees) a
        # context, with its thread pool, on every call. One thread, because the decoder's frame
        # threads and the face detector already have the cores. Same pixels; on 10 s of 1080p
        # decoding takes 0.05-0.15 CPU-s less (0.25 s with the cores otherwise idle).
        self._scaler = VideoReformatter()
        self._to_rgb = VideoReformatter()

    def fill(self, frame: av.VideoFrame, time: float, upto: int) -> None:
        """Put ``frame`` into every slot from the next free one up to (excluding) ``upto``."""
        first = self.count
        for slot in range(first, min(upto, self.max_slots)):
            self._reserve(slot)
            if slot == first:
                self._convert(frame, self.frames[slot])
            else:
                self.frames[slot] = self.frames[first]
            self.times[slot] = time
            self.count = slot + 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames, timestamps) of the filled slots."""
        return self.frames[: self.count], self.times[: self.count].copy()

    def _convert(self, frame: av.VideoFrame, out: np.ndarray) -> None:
        if (frame.width, frame.height) != self.coded:  # downscaling, or the size changed midway
            # Scaling the YUV planes first, then converting, is ~3x faster than one sws pass.
            w, h = self.coded
            frame = self._scaler.reformat(frame, width=w, height=h, interpolation="AREA", threads=1)
        rgb = self._to_rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()  # a view, no copy
        if self.rotate is None:
            out[...] = rgb
        else:
            out[...] = rotate(rgb, self.rotate)

    def _reserve(self, slot: int) -> None:
        if slot < len(self.frames):
            return
        grown = min(self.max_slots, 2 * len(self.frames))
        frames = np.empty((grown, *self.shape), np.uint8)
        frames[: len(self.frames)] = self.frames
        times = np.zeros(grown, np.float64)
        times[: len(self.times)] = self.times
        self.frames, self.times = frames, times


class _StoreWriter:
    """``_SlotWriter``'s job with a ``FrameStore``: a source frame's planes are copied once,
    and later slots showing it point at them; nothing is converted here."""

    memory_scaled = False

    def __init__(self, capacity: int, max_slots: int, first: av.VideoFrame, rotation: int, buffer):
        self.frames = FrameStore(first, rotation, capacity, buffer.array if buffer is not None else None)
        self.times: list[float] = []
        self.max_slots = max_slots

    @staticmethod
    def suits(first: av.VideoFrame, capacity: int, max_side: int) -> bool:
        """Planes at decoded size, within the memory budget (else the eager writer scales)."""
        if max_side > 0 and max(first.width, first.height) > max_side:
            return False
        return stores_planes(first) and plane_bytes(first) * max(1, capacity) <= MAX_FRAME_BYTES

    @property
    def count(self) -> int:
        return len(self.times)

    def fill(self, frame: av.VideoFrame, time: float, upto: int) -> None:
        if min(upto, self.max_slots) <= self.count:
            return
        stored = self.frames.add(frame)
        for _ in range(self.count, min(upto, self.max_slots)):
            self.frames.show(stored)
            self.times.append(time)

    def result(self) -> tuple[FrameStore, np.ndarray]:
        return self.frames, np.asarray(self.times, np.float64)


def _read_video(
    container,
    stream,
    info: VideoInfo,
    cfg: MediaConfig,
    warnings: list[str],
    buffer: FrameBuffer | None,
    on_frames: FrameCallback | None,
    lazy: bool = False,
) -> _Video:
    path = info.path
    max_slots = max(1, math.ceil(cfg.window_s * cfg.fps - 1e-9))
    src_fps = info.fps or cfg.fps
    nominal = 1.0 / src_fps
    # A source frame stamped a hair after a slot's time still counts as shown at that time.
    tol = min(1e-4, 0.25 * nominal)
    expected = _stream_seconds(stream) or info.duration
    capacity = min(max_slots, math.ceil(min(cfg.window_s, expected or cfg.window_s) * cfg.fps) + 2)

    errors: list[str] = []
    writer: _SlotWriter | _StoreWriter | None = None
    start = 0.0
    rotation = 0
    prev: av.VideoFrame | None = None
    prev_t = 0.0
    times: list[float] = []
    try:
        for frame in _frames(container, stream, errors):
            t = frame.time
            if prev is None:
                start = t if t is not None else 0.0
                rotation = _rotation(frame, stream)
                if lazy and _StoreWriter.suits(frame, capacity, cfg.max_side):
                    writer = _StoreWriter(capacity, max_slots, frame, rotation, buffer)
                else:
                    writer = _SlotWriter(capacity, max_slots, cfg.max_side, frame, rotation, buffer)
                prev, prev_t = frame, 0.0
                times.append(0.0)
                continue
            t = prev_t + nominal if t is None else t - start
            if t <= prev_t:
                continue  # out of order (a damaged stream): its moment has already been filled
            # ``prev`` was on screen during [prev_t, t): it fills the slots whose time falls there.
            filled = writer.count
            writer.fill(prev, prev_t, _slots_before(t - tol, cfg.fps))
            if on_frames is not None and writer.count > filled:
                on_frames(writer.frames, writer.count)
            if writer.count >= max_slots:
                break
            prev, prev_t = frame, t
            times.append(t)
        else:
            if prev is not None:
                shown = float(prev.duration * prev.time_base) if prev.duration and prev.time_base else 0.0
                end = prev_t + (shown if shown > 0 else nominal)
                filled = writer.count
                writer.fill(prev, prev_t, max(_slots_before(end - tol, cfg.fps), 1))
                if on_frames is not None and writer.count > filled:
                    on_frames(writer.frames, writer.count)
    except av.FFmpegError as err:
        raise PreprocessError(path, "decode_error", str(err)) from err
    if writer is None or writer.count == 0:
        detail = errors[0] if errors else "no video frames"
        raise PreprocessError(path, "decode_error", detail)

    if errors:
        warnings.append(f"decode_errors: {len(errors)} packet(s) failed, first: {errors[0]}")
    decoded_s = writer.count / cfg.fps
    if expected and decoded_s < min(cfg.window_s, expected) - max(0.5, 2 * nominal):
        warnings.append(f"video_truncated: decoded {decoded_s:.2f} s of {expected:.2f} s")
    if writer.memory_scaled:
        warnings.append(f"downscaled_for_memory: frames {writer.shape[1]}x{writer.shape[0]}")
    frames, timestamps = writer.result()
    return _Video(
        frames=frames,
        timestamps=timestamps,
        start=start,
        rotation=rotation,
        variable_fps=_is_variable(np.asarray(times)),
    )


def _slots_before(t: float, fps: float) -> int:
    """Number of slots whose time i/fps is below t."""
    return max(0, math.ceil(t * fps - 1e-9))


def _read_audio(path: str, start: float, duration: float, cfg: MediaConfig, warnings: list[str]):
    """Mono int16 at cfg.sample_rate covering [start, start + duration) of the video's clock;
    padded with silence or trimmed to exactly that length. None when nothing decodes."""
    sr = cfg.sample_rate
    chunks: list[np.ndarray] = []
    errors: list[str] = []
    audio_start = None
    declared_end = None
    try:
        with av.open(path, metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            if stream.duration is not None:
                declared_end = float((stream.duration + (stream.start_time or 0)) * stream.time_base)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=sr)
            stop = start + cfg.window_s + 0.5  # enough to tell whether audio outlasts the video
            expected = None  # where the next frame should start if nothing is missing
            for frame in _frames(container, stream, errors):
                t = frame.time
                if audio_start is None:
                    audio_start = expected = t if t is not None else start
                if t is not None and t - expected > _AUDIO_GAP_S:
                    # Packets lost to damage: fill with silence so later audio keeps its sync.
                    gap = _silence(frame, expected, min(t, stop) - expected)
                    chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(gap))
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
                expected = (t if t is not None else expected) + frame.samples / frame.sample_rate
                if expected > stop:
                    break
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except (av.FFmpegError, ValueError) as err:
        errors.append(str(err))
    if errors:
        warnings.append(f"audio_decode_errors: {len(errors)}, first: {errors[0]}")
    if audio_start is None or not chunks:
        warnings.append("no_audio: the audio stream has no decodable samples")
        return None

    samples = np.concatenate(chunks).astype(np.int16, copy=False)
    # Decoders emit whole codec frames; the container's duration excludes the padding at the end.
    audio_end = audio_start + len(samples) / sr
    if declared_end is not None and declared_end > audio_start:
        audio_end = min(audio_end, declared_end)
    lead = round((audio_start - start) * sr)  # >0: audio starts after the first video frame
    samples = np.concatenate([np.zeros(lead, np.int16), samples]) if lead > 0 else samples[-lead:]
    video_end = start + duration
    if audio_start - start > LENGTH_TOLERANCE_S:
        warnings.append(f"audio_starts_late: {audio_start - start:.2f} s after the video (padded)")
    if video_end - audio_end > LENGTH_TOLERANCE_S:
        warnings.append(
            f"audio_shorter_than_video: audio ends at {audio_end - start:.2f} s, video at {duration:.2f} s (padded)"
        )
    elif audio_end - video_end > LENGTH_TOLERANCE_S and duration < cfg.window_s - 1.0 / cfg.fps:
        warnings.append(f"audio_longer_than_video: audio runs past the video's {duration:.2f} s (trimmed)")
    target = round(duration * sr)
    if len(samples) < target:
        samples = np.concatenate([samples, np.zeros(target - len(samples), np.int16)])
    return np.ascontiguousarray(samples[:target])


def _silence(like: av.AudioFrame, at: float, seconds: float) -> av.AudioFrame:
    """A silent frame in the format of ``like``, starting at ``at`` seconds."""
    frame = av.AudioFrame(
        format=like.format.name, layout=like.layout.name, samples=round(seconds * like.sample_rate)
    )
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.sample_rate = like.sample_rate
    frame.time_base = like.time_base
    frame.pts = round(at / like.time_base)
    return frame


# ---------------------------------------------------------------------------------------------
# writing


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    codec: str = "libx264",
    crf: int = 23,
    rotation: int = 0,
    timestamps: np.ndarray | None = None,
    bit_rate: int | None = None,
) -> None:
    """Encode RGB uint8 frames (T, H, W, 3) and optional mono int16 audio into ``path``.

    The container follows the suffix (.mp4, .mov, .mkv, .avi, .mpg); audio is AAC, or MP2 in
    MPEG-PS. ``crf`` sets x264/x265 quality, ``bit_rate`` the others'. ``rotation`` stores
    display-rotation metadata: clockwise degrees a player turns the frames (as in VideoInfo).
    ``timestamps`` (seconds per frame) writes variable-frame-rate video. Written atomically.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"frames must be a non-empty (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}"
        )
    if timestamps is not None and len(timestamps) != len(frames):
        raise ValueError("timestamps must give one time per frame")
    path = Path(path)
    suffix = path.suffix.lower()
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p video needs even frame sizes, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001 * 100)
    with atomic_path(path) as tmp:
        options = {"movflags": "+faststart"} if suffix in (".mp4", ".mov", ".m4v") else {}
        with av.open(str(tmp), "w", format=_MUXERS.get(suffix), options=options) as container:
            video = container.add_stream(codec, rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            if codec in ("libx264", "libx265"):
                video.options = {"crf": str(crf), "preset": "veryfast"}
                if codec == "libx265":
                    video.options["x265-params"] = "log-level=error"
            else:
                video.bit_rate = bit_rate or max(400_000, width * height * 4)
            if timestamps is not None:
                video.codec_context.time_base = Fraction(1, 90000)
            if rotation % 360:
                video.set_display_rotation(-(rotation % 360))
            sound = None
            if audio is not None:
                sound = container.add_stream(
                    "mp2" if suffix in (".mpg", ".mpeg") else "aac", rate=sample_rate
                )
                sound.layout = "mono"
                samples = np.asarray(audio, np.int16).reshape(-1)
                written = 0
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                if timestamps is not None:
                    frame.pts = round(float(timestamps[i]) * 90000)
                    frame.time_base = Fraction(1, 90000)
                else:
                    frame.pts = i
                container.mux(video.encode(frame))
                if sound is not None:  # keep audio level with video so the muxer interleaves
                    shown_until = (
                        timestamps[i + 1] if timestamps is not None and i + 1 < len(frames) else (i + 1) / fps
                    )
                    written = _encode_audio(
                        container, sound, samples, written, round(shown_until * sample_rate)
                    )
            container.mux(video.encode())
            if sound is not None:
                _encode_audio(container, sound, samples, written, len(samples), final=True)
                container.mux(sound.encode())


_MUXERS = {".mpg": "mpeg", ".mpeg": "mpeg", ".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".avi": "avi"}


def _encode_audio(container, stream, samples: np.ndarray, start: int, stop: int, final: bool = False) -> int:
    """Encode samples[start:stop] in whole codec frames (only the final one may be short);
    returns where it stopped."""
    block = 1152 if stream.codec_context.name == "mp2" else 1024  # samples per codec frame
    stop = min(stop, len(samples))
    sample_rate = stream.codec_context.sample_rate
    while start < stop and (final or start + block <= stop):
        chunk = np.ascontiguousarray(samples[start : start + block])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        container.mux(stream.encode(frame))
        start += len(chunk)
    return start
