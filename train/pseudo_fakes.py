"""Pseudo-fakes: real samples forged on the fly, so a forgery is the only thing that separates
them from their real originals.

Detectors trained on labelled fakes from a handful of generators learn *which collection* a clip
came from (resolution, framing, compression, the people in it) rather than *fake*: measured on
``../shared/train``, labelled generator outputs were told apart from the real footage within
~100 steps, and the model then scored unseen generators at chance. A pseudo-fake shares every
such cue with its original; only the forgery differs. The categories imitate the traces the
three kinds of deepfake leave:

- ``self_blend``: the face, altered (colour, sharpness, resolution, a small shift or zoom),
  blended back into itself through a deformed, feathered face mask: the blending boundary and
  colour/texture mismatch of a face swap (after Shiohara & Yamasaki's self-blended images).
- ``mouth_rerender``: the lower face regenerated at a fraction of its resolution, the mouth
  sometimes reshaped, pasted back through a feathered mask or a face-box rectangle: what
  lip-sync generators (Wav2Lip's 96-pixel faces and box paste) leave.
- ``blend_flicker``: a self blend whose alignment and strength drift from frame to frame: the
  temporal instability of frame-by-frame generation.
- ``audio_shift``: the soundtrack moved by several frames, seen through the SyncNet latency
  vector (the distance curve slides by the shift; see ``shift_latency``).
- ``audio_desync``: the soundtrack itself (waveform, MFCC, mel, and the latency with it) moved
  0.3-1.5 s against the face, or swapped for a far part of the same clip: for detectors that
  read the sound (MDS, ``av_attention``, the fusion's latency branch).
  Not among the default weights: only audio-visual detectors can see it.

Every random choice is drawn once per clip (a generator is consistent over a video) except the
drift of ``blend_flicker``. The mask follows each frame's landmarks (``Sample.landmarks``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from core.preprocess_data import Latency, Sample

LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = range(5)


# --- face geometry from the five landmarks -----------------------------------------------------


@dataclass(frozen=True)
class FaceFrame:
    """A face's own axes, from its landmarks: ``up`` from mouth to eyes, ``right`` along the eyes."""

    eyes: np.ndarray  # centre between the eyes
    mouth: np.ndarray  # centre between the mouth corners
    nose: np.ndarray
    up: np.ndarray  # unit vector
    right: np.ndarray  # unit vector
    height: float  # eyes-to-mouth distance
    width: float  # eye-to-eye distance

    @classmethod
    def of(cls, points: np.ndarray) -> FaceFrame:
        p = np.asarray(points, np.float64)
        eyes, mouth = (p[LEFT_EYE] + p[RIGHT_EYE]) / 2, (p[MOUTH_LEFT] + p[MOUTH_RIGHT]) / 2
        width = float(np.linalg.norm(p[RIGHT_EYE] - p[LEFT_EYE])) + 1e-6
        height = float(np.linalg.norm(eyes - mouth)) + 1e-6
        return cls(
            eyes, mouth, p[NOSE], (eyes - mouth) / height, (p[RIGHT_EYE] - p[LEFT_EYE]) / width, height, width
        )

    def face_outline(self) -> np.ndarray:
        """(10, 2) polygon around forehead, temples, cheeks, jaw and chin."""
        e, m, u, r, h, w = self.eyes, self.mouth, self.up, self.right, self.height, self.width
        points = []
        for side in (-1, 1):
            points += [
                e + u * 0.75 * h + side * r * 0.75 * w,
                e + u * 0.2 * h + side * r * 1.05 * w,
                (e + m) / 2 + side * r * 1.05 * w,
                m - u * 0.3 * h + side * r * 0.85 * w,
                m - u * 0.75 * h + side * r * 0.35 * w,
            ]
        return np.array(points, np.float32)

    def lower_face_outline(self) -> np.ndarray:
        """(8, 2) polygon from just below the nose to the chin, cheek to cheek."""
        m, u, r, h, w = self.mouth, self.up, self.right, self.height, self.width
        top = self.nose - u * 0.15 * h
        points = []
        for side in (-1, 1):
            points += [
                top + side * r * 0.95 * w,
                m + side * r * 1.0 * w,
                m - u * 0.35 * h + side * r * 0.8 * w,
                m - u * 0.75 * h + side * r * 0.3 * w,
            ]
        return np.array(points, np.float32)


# --- parameters drawn once per clip ------------------------------------------------------------


@dataclass(frozen=True)
class MaskDraw:
    """One clip's mask deformation: applied to every frame's polygon."""

    scale: tuple[float, float]
    jitter: np.ndarray  # (P, 2) pixels per polygon point
    edge: int  # erode (<0) or dilate (>0) by this many pixels
    blur: float  # feather sigma, pixels
    ratio: float  # blend strength at the mask's centre

    def render(self, polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        centre = polygon.mean(0)
        points = (polygon - centre) * np.asarray(self.scale) + centre + self.jitter
        mask = np.zeros(shape, np.float32)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1.0)
        if self.edge:
            kernel = np.ones((abs(self.edge), abs(self.edge)), np.uint8)
            mask = cv2.dilate(mask, kernel) if self.edge > 0 else cv2.erode(mask, kernel)
        mask = cv2.GaussianBlur(mask, (0, 0), self.blur)
        return np.clip(mask / max(float(mask.max()), 1e-6), 0.0, 1.0) * self.ratio


@dataclass(frozen=True)
class ColourDraw:
    gain: float
    offset: np.ndarray  # (3,) per channel
    contrast: float
    hue: float  # OpenCV hue units (0..180)
    saturation: float

    @classmethod
    def draw(cls, rng: np.random.Generator, amount: float) -> ColourDraw:
        return cls(
            gain=rng.uniform(1 - 0.1 * amount, 1 + 0.1 * amount),
            offset=rng.uniform(-12, 12, 3) * amount,
            contrast=rng.uniform(1 - 0.1 * amount, 1 + 0.1 * amount),
            hue=rng.uniform(-4, 4) * amount,
            saturation=rng.uniform(1 - 0.15 * amount, 1 + 0.15 * amount),
        )

    def apply(self, image: np.ndarray) -> np.ndarray:
        x = image.astype(np.float32) * self.gain + self.offset
        mean = x.mean((0, 1), keepdims=True)
        x = np.clip((x - mean) * self.contrast + mean, 0, 255).astype(np.uint8)
        hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + self.hue) % 180
        hsv[..., 1] *= self.saturation
        return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)


def resample(image: np.ndarray, factor: float) -> np.ndarray:
    """Down by ``factor`` (area) and back up (bilinear): detail lost as a low-resolution render loses it."""
    h, w = image.shape[:2]
    small = cv2.resize(
        image, (max(8, round(w / factor)), max(8, round(h / factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def shift_zoom(image: np.ndarray, shift: np.ndarray, zoom: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
    m[:, 2] += shift * (w, h)
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def _blend(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None]
    return np.clip(source * m + target.astype(np.float32) * (1 - m), 0, 255).astype(np.uint8)


def _require_landmarks(sample: Sample) -> np.ndarray:
    if sample.landmarks is None:
        raise ValueError(
            f"{sample.meta.video}: pseudo-fakes need face landmarks; the sample was written before "
            "samples kept them (re-run `python -m preprocess` on the dataset)"
        )
    return sample.landmarks


# --- the categories ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfBlend:
    name: ClassVar[str] = "self_blend"
    colour: float = 1.0  # strength of the colour change of the blended-in face
    resample_p: float = 0.5
    resample_factor: tuple[float, float] = (1.2, 2.5)
    blur_p: float = 0.35
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    sharpen_p: float = 0.25
    sharpen: tuple[float, float] = (0.3, 1.0)
    shift: float = 0.02  # of the crop size
    zoom: float = 0.03
    mask_scale: float = 0.08  # polygon stretched by 1 ± this, per axis
    mask_jitter: float = 0.8  # pixels per polygon point, times 10
    mask_edge: int = 9  # erode or dilate by up to this many pixels
    mask_blur: tuple[float, float] = (1.5, 8.0)
    ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.0, 1.0)

    def draw_mask(self, rng: np.random.Generator, points: int) -> MaskDraw:
        edge = int(rng.integers(1, self.mask_edge + 1)) * (1 if rng.random() < 0.5 else -1)
        return MaskDraw(
            scale=tuple(rng.uniform(1 - self.mask_scale, 1 + self.mask_scale, 2)),
            jitter=rng.normal(0, self.mask_jitter * 10 * self.mask_scale, (points, 2)),
            edge=edge,
            blur=rng.uniform(*self.mask_blur),
            ratio=float(rng.choice(self.ratios)),
        )

    def draw_source(self, rng: np.random.Generator) -> dict[str, Any]:
        kind = rng.random()
        return {
            "colour": ColourDraw.draw(rng, self.colour),
            "blur": rng.uniform(*self.blur_sigma) if kind < self.blur_p else 0.0,
            "sharpen": rng.uniform(*self.sharpen)
            if self.blur_p <= kind < self.blur_p + self.sharpen_p
            else 0.0,
            "resample": rng.uniform(*self.resample_factor) if rng.random() < self.resample_p else 1.0,
            "shift": rng.uniform(-self.shift, self.shift, 2),
            "zoom": 1 + rng.uniform(-self.zoom, self.zoom),
        }

    @staticmethod
    def source(frame: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        x = p["colour"].apply(frame)
        if p["blur"]:
            x = cv2.GaussianBlur(x, (0, 0), p["blur"])
        if p["sharpen"]:
            x = x * (1 + p["sharpen"]) - cv2.GaussianBlur(x, (0, 0), 1.0) * p["sharpen"]
        if p["resample"] > 1:
            x = resample(x, p["resample"])
        return shift_zoom(x, p["shift"], p["zoom"])

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        points = _require_landmarks(sample)
        mask, params = self.draw_mask(rng, 10), self.draw_source(rng)
        faces = [
            _blend(self.source(f, params), f, mask.render(FaceFrame.of(p).face_outline(), f.shape[:2]))
            for f, p in zip(sample.faces, points, strict=True)
        ]
        return dataclasses.replace(sample, faces=np.stack(faces))


@dataclass(frozen=True)
class MouthRerender:
    name: ClassVar[str] = "mouth_rerender"
    resample_factor: tuple[float, float] = (2.0, 4.0)  # a 96-px generator face in a ~200-px face
    colour: float = 0.4
    reshape_p: float = 0.5  # the mouth opens differently (it follows other speech)
    reshape: tuple[float, float] = (0.85, 1.2)  # vertical scale about the mouth
    box_paste_p: float = 0.4  # pasted as a rectangle (Wav2Lip) instead of a feathered mask
    box_blur: tuple[float, float] = (0.5, 2.5)
    mask_scale: float = 0.06
    mask_blur: tuple[float, float] = (1.5, 8.0)

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        points = _require_landmarks(sample)
        factor = rng.uniform(*self.resample_factor)
        colour = ColourDraw.draw(rng, self.colour)
        stretch = rng.uniform(*self.reshape) if rng.random() < self.reshape_p else 1.0
        box = rng.random() < self.box_paste_p
        feather = rng.uniform(*(self.box_blur if box else self.mask_blur))
        mask_draw = MaskDraw(
            scale=tuple(rng.uniform(1 - self.mask_scale, 1 + self.mask_scale, 2)),
            jitter=rng.normal(0, 10 * self.mask_scale, (8, 2)),
            edge=0,
            blur=feather,
            ratio=1.0,
        )
        faces = []
        for frame, p in zip(sample.faces, points, strict=True):
            face = FaceFrame.of(p)
            src = colour.apply(resample(frame, factor).astype(np.uint8))
            if stretch != 1.0:
                m = np.float32([[1, 0, 0], [0, stretch, face.mouth[1] * (1 - stretch)]])
                src = cv2.warpAffine(src, m, frame.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
            if box:  # the lower half of the face box, as a box-pasting generator replaces it
                outline = face.face_outline()
                (x0, y0), (x1, y1) = outline.min(0), outline.max(0)
                mask = np.zeros(frame.shape[:2], np.float32)
                mask[max(int((y0 + y1) / 2), 0) : max(int(y1), 0), max(int(x0), 0) : max(int(x1), 0)] = 1
                mask = cv2.GaussianBlur(mask, (0, 0), feather)
            else:
                mask = mask_draw.render(face.lower_face_outline(), frame.shape[:2])
            faces.append(_blend(src, frame, mask))
        return dataclasses.replace(sample, faces=np.stack(faces))


@dataclass(frozen=True)
class BlendFlicker:
    name: ClassVar[str] = "blend_flicker"
    blend: SelfBlend = field(default_factory=SelfBlend)
    shift_drift: float = 0.012  # per-frame alignment error, of the crop size
    ratio_drift: float = 0.2  # per-frame change of the blend strength

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        points = _require_landmarks(sample)
        mask, params = self.blend.draw_mask(rng, 10), self.blend.draw_source(rng)
        faces = []
        for f, p in zip(sample.faces, points, strict=True):
            drift = dict(params, shift=params["shift"] + rng.normal(0, self.shift_drift, 2))
            ratio = float(np.clip(mask.ratio + rng.normal(0, self.ratio_drift), 0.3, 1.0))
            frame_mask = dataclasses.replace(mask, ratio=ratio).render(
                FaceFrame.of(p).face_outline(), f.shape[:2]
            )
            faces.append(_blend(self.blend.source(f, drift), f, frame_mask))
        return dataclasses.replace(sample, faces=np.stack(faces))


def shift_latency(latency: Latency, shift: int) -> Latency:
    """The latency SyncNet would report had the audio been delayed by ``shift`` frames.

    ``distances[i]`` compares lip window ``f`` with audio window ``f + i - vshift``; delaying
    the audio by ``shift`` moves the match to ``i + shift``, so the curve slides right by
    ``shift`` (and the reported offset, ``vshift - argmin``, drops by ``shift``). Offsets slid in
    from outside the searched range get the curve's largest value (no match); the confidence
    and per-frame confidence are kept: the match itself is unchanged, only where it lies."""
    d = np.asarray(latency.distances, np.float32)
    span = len(d)
    vshift = (span - 1) // 2
    shift = int(np.clip(shift, -span, span))  # a whole curve or more away: nothing of it is left
    moved = np.full(span, d.max(), np.float32)
    if shift >= 0:
        moved[shift:] = d[: span - shift]
    else:
        moved[: span + shift] = d[-shift:]
    best = int(np.argmin(moved))
    return Latency(
        distances=moved,
        offset=vshift - best,
        min_distance=float(moved[best]),
        confidence=float(np.median(moved) - moved[best]),
        frame_confidence=latency.frame_confidence,
    )


@dataclass(frozen=True)
class AudioShift:
    name: ClassVar[str] = "audio_shift"
    shift: tuple[int, int] = (5, 12)  # frames, either direction

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if sample.latency is None:
            raise ValueError(f"{sample.meta.video}: audio_shift needs a sample with a SyncNet latency")
        shift = int(rng.integers(self.shift[0], self.shift[1] + 1)) * (1 if rng.random() < 0.5 else -1)
        return dataclasses.replace(sample, latency=shift_latency(sample.latency, shift))


def roll_soundtrack(sample: Sample, columns: int, samples_per_column: int) -> Sample:
    """The sample with its soundtrack rotated ``columns`` feature columns later (negative:
    earlier): MFCC and mel by ``columns``, the waveform by ``columns * samples_per_column``,
    so all three stay in step with each other and move against the frames. A rotation keeps
    speech everywhere (a fill would leave silence to spot), and what wraps round comes from the
    far end of the same clip."""
    audio = sample.audio
    if len(audio):
        audio = np.roll(audio, columns * samples_per_column)
    return dataclasses.replace(
        sample,
        audio=audio,
        mfcc=np.roll(sample.mfcc, columns, axis=1),
        mel=np.roll(sample.mel, columns, axis=1),
    )


@dataclass(frozen=True)
class AudioDesync:
    """The soundtrack moved against the face: by 0.3-1.5 s either way (``shift``) or, with
    ``swap_p``, by about half the clip (``swap``: the sound of a far part of the same clip).
    MDS's natural negatives: real speech, real face, not the same moment. The MFCC, mel and
    waveform move together (``roll_soundtrack``), and so does the SyncNet latency, where the
    sample has one (``shift_latency`` by the same time in video frames): a detector that reads
    the latency (``fusion_timesformer``) would otherwise see the real clip's latency under a
    fake label. Beyond the searched offsets the curve holds no match (confidence 0)."""

    name: ClassVar[str] = "audio_desync"
    shift_s: tuple[float, float] = (0.3, 1.5)
    swap_p: float = 0.3
    feature_rate: float = 100.0  # MFCC/mel columns per second (AudioConfig.mfcc_hop_s = 0.01)
    sample_rate: int = 16000  # waveform samples per second (MediaConfig.sample_rate)

    def applies(self, sample: Sample) -> bool:
        """Needs a soundtrack at least twice the smallest shift (else a rotation comes back round)."""
        return sample.mfcc.ndim == 2 and sample.mfcc.shape[1] >= 2 * self.shift_s[0] * self.feature_rate

    def draw_columns(self, length: int, rng: np.random.Generator) -> int:
        """A rotation of ``length`` columns whose distance from no rotation (either way round)
        is at least the smallest shift."""
        least = int(np.ceil(self.shift_s[0] * self.feature_rate))
        if rng.random() < self.swap_p:
            columns = length // 2 + int(rng.integers(-length // 8, length // 8 + 1))
        else:
            columns = int(round(rng.uniform(*self.shift_s) * self.feature_rate)) * (
                1 if rng.random() < 0.5 else -1
            )
        columns %= length
        if min(columns, length - columns) < least:  # a shift near a whole clip length wraps back
            columns = least if columns < length / 2 else length - least
        return columns if columns <= length // 2 else columns - length

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if not self.applies(sample):
            raise ValueError(
                f"{sample.meta.video}: audio_desync needs a soundtrack of at least {2 * self.shift_s[0]} s"
            )
        columns = self.draw_columns(sample.mfcc.shape[1], rng)
        moved = roll_soundtrack(sample, columns, int(round(self.sample_rate / self.feature_rate)))
        if sample.latency is None:
            return moved
        frames = int(round(columns * sample.meta.fps / self.feature_rate))
        return dataclasses.replace(moved, latency=shift_latency(sample.latency, frames))


CATEGORIES: dict[str, type] = {
    c.name: c for c in (SelfBlend, MouthRerender, BlendFlicker, AudioShift, AudioDesync)
}
