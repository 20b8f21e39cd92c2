"""Real clips re-packaged the way generated talking heads are delivered: a square crop centred
on the face, resized (typically to 512²), H.264 at a low bitrate, mono 16 kHz AAC.

Why: a detector (or its calibration) can learn *packaging* instead of forgery. Talking-head
generators write face-centred squares at ~0.5 Mbit/s, while real validation footage keeps its
camera framing and codec; frame size, face size and bitrate alone separate them (issue 19:
AUC 0.96 on a held-out set, 0.29 once its reals were re-packaged). Re-packaged reals are hard
*real* examples: ``train ensemble`` weighs them as a source of their own, so the mapping is
fitted to stay safe on reals that look like generator output, and ``train eval`` measures how
far re-packaging alone moves a detector's scores.

Frames are never blended: a frame-rate change repeats or drops whole frames (as pulldown does).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from core.files import atomic_write
from train.footage_labels import read_labels_csv

log = logging.getLogger(__name__)

REPACKAGED_FOLDER = "repackaged"  # prefix of the re-packaged copies' paths (next to the originals')


@dataclass(frozen=True)
class RepackageSpec:
    side: int = 512  # output square, pixels
    bitrate: int = 550_000  # video bits per second
    face_scale: float = 2.2  # square side / the face box's longer side (head and some shoulders)
    fps: float | None = None  # None: the source's rate; else repeat/drop whole frames to this rate
    audio_rate: int = 16_000

    def describe(self) -> str:
        rate = "source fps" if self.fps is None else f"{self.fps:g} fps"
        return f"{self.side}² face-centred, {self.bitrate / 1000:g} kbit/s, {rate}"


@dataclass(frozen=True)
class Repackaged:
    source: Path
    out: Path
    frames: int
    crop: tuple[int, int, int]  # top, left, side of the square in the source frame
    audio: bool


def face_square(
    boxes: Sequence[np.ndarray], height: int, width: int, face_scale: float
) -> tuple[int, int, int]:
    """(top, left, side) of the square around the median face box (x1, y1, x2, y2), as large as
    ``face_scale`` × its longer side allows inside the frame; the frame's centre square when no
    face was found."""
    if len(boxes) == 0:
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side
    x1, y1, x2, y2 = np.median(np.stack(boxes), axis=0)
    side = int(round(min(max(x2 - x1, y2 - y1) * face_scale, height, width)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return top, left, side


def rate_map(n_frames: int, fps_in: float, fps_out: float) -> np.ndarray:
    """Source frame index for each output frame at ``fps_out``: whole frames repeated or dropped."""
    duration = n_frames / fps_in
    n_out = max(1, int(round(duration * fps_out)))
    return np.minimum((np.arange(n_out) * fps_in / fps_out + 1e-9).astype(int), n_frames - 1)


def _largest_face(detections) -> np.ndarray | None:
    if len(detections) == 0:
        return None
    areas = (detections.boxes[:, 2] - detections.boxes[:, 0]) * (
        detections.boxes[:, 3] - detections.boxes[:, 1]
    )
    return detections.boxes[int(np.argmax(areas))]


def _decode(path: Path) -> tuple[list[np.ndarray], float, list[av.AudioFrame]]:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        frames: list[np.ndarray] = []
        audio: list[av.AudioFrame] = []
        streams = [stream] + list(container.streams.audio[:1])
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    frames.append(frame.to_ndarray(format="rgb24"))
                else:
                    audio.append(frame)
    if not frames:
        raise ValueError(f"{path}: no decodable video frames")
    return frames, fps, audio


def _resampled_audio(audio: list[av.AudioFrame], rate: int) -> Iterator[av.AudioFrame]:
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
    for frame in audio:
        frame.pts = None  # resample by order: the source's timestamps may start anywhere
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def repackage_video(source: Path, out: Path, spec: RepackageSpec, detector) -> Repackaged:
    """Write ``source`` re-packaged per ``spec`` to ``out`` (MP4). ``detector``: a
    ``preprocess.faces.detector.FaceDetector`` that places the crop (on up to 8 frames)."""
    frames, fps, audio = _decode(source)
    height, width = frames[0].shape[:2]
    probe = np.unique(np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int))
    found = [_largest_face(d) for d in detector.detect(np.stack([frames[i] for i in probe]))]
    top, left, side = face_square([b for b in found if b is not None], height, width, spec.face_scale)
    out_fps = spec.fps or fps
    order = rate_map(len(frames), fps, out_fps) if spec.fps else np.arange(len(frames))
    rate = Fraction(out_fps).limit_denominator(1001)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.part.mp4")  # a killed run leaves no half file under the final name
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width = video.height = spec.side
        video.pix_fmt = "yuv420p"
        video.bit_rate = spec.bitrate
        video.codec_context.thread_count = 1  # one thread: the same bytes on every run
        video.options = {"preset": "medium", "threads": "1"}
        sound = container.add_stream("aac", rate=spec.audio_rate, layout="mono") if audio else None
        interp = cv2.INTER_AREA if spec.side < side else cv2.INTER_LINEAR
        for i, k in enumerate(order):
            crop = np.ascontiguousarray(frames[k][top : top + side, left : left + side])
            image = cv2.resize(crop, (spec.side, spec.side), interpolation=interp)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p", threads=1)
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            for frame in _resampled_audio(audio, spec.audio_rate):
                frame.pts = None
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    tmp.replace(out)
    return Repackaged(source, out, len(order), (top, left, side), sound is not None)


@dataclass(frozen=True)
class LabelRow:
    filename: str
    label: str
    split: str
    original: str
    category: str
    source: str


def read_label_rows(labels_csv: Path) -> list[LabelRow]:
    fields = [f.name for f in dataclasses.fields(LabelRow)]
    return [LabelRow(**{k: r[k] for k in fields}) for r in read_labels_csv(labels_csv, fields)]


def repackaged_row(row: LabelRow, spec: RepackageSpec) -> LabelRow:
    """The labels row of ``row``'s re-packaged copy: a real of a source of its own."""
    name = f"{REPACKAGED_FOLDER}/{Path(row.filename).with_suffix('.mp4').as_posix()}"
    return LabelRow(
        name, row.label, row.split, row.filename, row.category, f"real re-packaged ({spec.describe()})"
    )


def repackage_reals(
    root: Path, labels_csv: Path, out_root: Path, split: str, spec: RepackageSpec, detector
) -> tuple[list[LabelRow], list[str]]:
    """Re-package every real video of ``split`` in ``labels_csv`` (paths under ``root``) into
    ``out_root/repackaged/…``. Returns the new labels rows and the files that failed (named, with
    why); a copy already written is kept (a rerun resumes)."""
    rows = [
        r for r in read_label_rows(labels_csv) if r.split == split and r.label == "0" and r.category == "real"
    ]
    if not rows:
        raise ValueError(f"{labels_csv}: no real videos in split {split!r}")
    done, failed = [], []
    for row in rows:
        new = repackaged_row(row, spec)
        target = out_root / new.filename
        if not target.exists():
            try:
                result = repackage_video(root / row.filename, target, spec, detector)
            except (OSError, ValueError, av.error.FFmpegError) as err:
                failed.append(f"{root / row.filename}: {err}")
                continue
            log.info("%s -> %s: %d frames, crop %s", row.filename, new.filename, result.frames, result.crop)
        done.append(new)
    return done, failed


def write_label_rows(rows: Sequence[LabelRow], path: Path) -> None:
    fields = [f.name for f in dataclasses.fields(LabelRow)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataclasses.asdict(r) for r in rows)
    atomic_write(path, text.getvalue())
