"""Temporal pseudo-fakes: real clips re-rendered over time the way generators render faces.

A one-image talking head or a diffusion renderer leaves no blend seam; what separates it from a
camera is how the face changes from frame to frame. These categories forge that from real
footage, run by run of consecutive frames (a ``"windows"`` sample's windows; the rows of any
sample whose frame indices follow each other), so a forgery differs from its original only in
its motion and texture over time — never in resolution, framing, codec or identity:

- ``still_animation``: one real frame animated along the clip's own motion. The dense flow from
  each frame back to the reference frame (DIS optical flow, computed at ``flow_size``) warps the
  reference, so the head and mouth move as they really did while the texture is frozen: no
  sensor noise, no new detail, teeth and wrinkles stretched rather than revealed — what warp
  and motion-latent generators (SadTalker, LivePortrait, VASA-1, EDTalk) produce. The motion
  is low-passed in time (by a random amount), as keypoint drivers smooth it.
- ``temporal_resynthesis``: the clip re-timed by a generator that renders keyframes and fills
  the frames between them (flow-based interpolation, every 2nd-4th frame kept), or rendered
  denoised and blended with its neighbours: the independent noise of real frames is gone and
  motion is smoother than a camera records.
- ``face_flicker``: every face frame re-synthesised on its own, as per-frame diffusion rendering
  does: colour, sharpness, resolution, sub-pixel placement and a structured texture noise drawn
  anew for each frame, inside a feathered face (or lower-face) mask. The other side of the
  band: more change from frame to frame than real video has.
- ``mouth_temporal``: the lower face regenerated at a fraction of its resolution (a lip-sync
  generator's mouth) and either jittered independently per frame or over-smoothed in time.

Random choices are drawn once per clip (a generator is consistent over a video) except what is
per frame by design (``face_flicker``, the jitter of ``mouth_temporal``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from core.preprocess_data import Sample
from core.windows import window_runs
from train.pseudo_fakes import ColourDraw, FaceFrame, MaskDraw, _blend, _require_landmarks, resample

ALL_CONSECUTIVE = 1 << 30  # window_runs cuts nothing: abutting windows form one run


def consecutive_runs(sample: Sample) -> list[np.ndarray]:
    """Row indices of ``sample.faces`` in runs of consecutive clip frames."""
    return window_runs(np.asarray(sample.face_frame_indices, np.int64), ALL_CONSECUTIVE)


def _grey(frame: np.ndarray, size: int) -> np.ndarray:
    """Grey at ``size``², lightly blurred: sensor noise would otherwise jitter the flow."""
    grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(grey, (0, 0), 1.0)


def flow_to(target: np.ndarray, reference: np.ndarray, size: int) -> np.ndarray:
    """Dense flow (S, S, 2) in crop pixels such that ``target(x) ≈ reference(x + flow(x))``,
    measured at ``size``² (DIS, fast preset) and scaled up to the crop."""
    side = target.shape[0]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    flow = dis.calc(_grey(target, size), _grey(reference, size), None)
    if size != side:
        flow = cv2.resize(flow, (side, side), interpolation=cv2.INTER_LINEAR) * (side / size)
    return flow


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at x + flow(x) (bilinear, edges reflected)."""
    side = image.shape[0]
    grid = np.mgrid[0:side, 0:side][::-1].transpose(1, 2, 0).astype(np.float32)
    coords = grid + flow.astype(np.float32)
    return cv2.remap(image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def face_masks(points: np.ndarray, shape: tuple[int, int], draw: MaskDraw, lower: bool = False) -> list:
    """One feathered mask per frame, following each frame's landmarks."""
    return [
        draw.render(FaceFrame.of(p).lower_face_outline() if lower else FaceFrame.of(p).face_outline(), shape)
        for p in points
    ]


def _mask_draw(rng: np.random.Generator, points: int, blur: tuple[float, float]) -> MaskDraw:
    return MaskDraw(
        scale=tuple(rng.uniform(1.0, 1.12, 2)),  # a little beyond the face: the renderer's region
        jitter=rng.normal(0, 0.5, (points, 2)),
        edge=0,
        blur=rng.uniform(*blur),
        ratio=1.0,
    )


@dataclass(frozen=True)
class StillAnimation:
    name: ClassVar[str] = "still_animation"
    flow_size: int = 112  # side the flow is measured at (flow is smooth: cheaper, no worse)
    # the motion low-passed in time: flow measured frame by frame jitters, and keypoint drivers
    # smooth their trajectories
    smooth_sigma: tuple[float, float] = (0.8, 2.5)  # frames
    paste_p: float = 0.3  # animate only the face, pasted over the real frames (else the whole crop)

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        points = _require_landmarks(sample)
        faces = sample.faces.copy()
        smooth = rng.uniform(*self.smooth_sigma)
        paste = rng.random() < self.paste_p
        draw = _mask_draw(rng, 10, (3.0, 8.0))
        for rows in consecutive_runs(sample):
            reference = sample.faces[rows[int(rng.integers(len(rows)))]]
            flows = np.stack([flow_to(sample.faces[r], reference, self.flow_size) for r in rows])
            if len(rows) > 2:
                flows = gaussian_filter1d(flows, smooth, axis=0, mode="nearest")
            for r, flow in zip(rows, flows, strict=True):
                animated = warp(reference, flow)
                if paste:
                    mask = face_masks(points[r : r + 1], animated.shape[:2], draw)[0]
                    animated = _blend(animated.astype(np.float32), sample.faces[r], mask)
                faces[r] = animated
        return dataclasses.replace(sample, faces=faces)


@dataclass(frozen=True)
class TemporalResynthesis:
    name: ClassVar[str] = "temporal_resynthesis"
    interpolate_p: float = 0.6  # keyframes + interpolation; else denoise + blend with neighbours
    key_every: tuple[int, int] = (2, 4)
    flow_size: int = 112
    denoise_sigma: tuple[float, float] = (0.5, 1.2)  # pixels
    blend_sigma: tuple[float, float] = (0.6, 1.5)  # frames

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        faces = sample.faces.copy()
        interpolate = rng.random() < self.interpolate_p
        step = int(rng.integers(self.key_every[0], self.key_every[1] + 1))
        denoise = rng.uniform(*self.denoise_sigma)
        blend = rng.uniform(*self.blend_sigma)
        for rows in consecutive_runs(sample):
            clip = sample.faces[rows]
            faces[rows] = (
                self.interpolated(clip, step) if interpolate else self.smoothed(clip, denoise, blend)
            )
        return dataclasses.replace(sample, faces=faces)

    def interpolated(self, clip: np.ndarray, step: int) -> np.ndarray:
        """Keep every ``step``-th frame (and the last); the frames between come from warping the
        two keyframes towards each other along the flow between them and mixing them."""
        out = clip.copy()
        keys = list(range(0, len(clip), step))
        if keys[-1] != len(clip) - 1:
            keys.append(len(clip) - 1)
        for a, b in zip(keys[:-1], keys[1:], strict=True):
            if b - a < 2:
                continue
            forward = flow_to(clip[a], clip[b], self.flow_size)  # clip[a](x) ≈ clip[b](x + forward)
            for t in range(a + 1, b):
                alpha = (t - a) / (b - a)
                from_a = warp(clip[a], -alpha * forward).astype(np.float32)
                from_b = warp(clip[b], (1 - alpha) * forward).astype(np.float32)
                out[t] = np.clip((1 - alpha) * from_a + alpha * from_b + 0.5, 0, 255).astype(np.uint8)
        return out

    @staticmethod
    def smoothed(clip: np.ndarray, denoise: float, blend: float) -> np.ndarray:
        """Each frame denoised in space, then mixed with its neighbours in time."""
        x = np.stack([cv2.GaussianBlur(f, (0, 0), denoise) for f in clip]).astype(np.float32)
        if len(x) > 1:
            x = gaussian_filter1d(x, blend, axis=0, mode="nearest")
        return np.clip(x + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class FaceFlicker:
    name: ClassVar[str] = "face_flicker"
    amount: tuple[float, float] = (0.3, 1.0)  # strength of every per-frame change, drawn per clip
    colour: float = 0.35  # ColourDraw amount at full strength
    resample_factor: tuple[float, float] = (1.0, 2.2)
    shift_px: float = 1.2  # per-frame placement error at full strength
    noise: tuple[float, float] = (2.0, 7.0)  # grey levels of the texture noise at full strength
    noise_blur: tuple[float, float] = (0.6, 1.8)  # its grain, pixels
    lower_p: float = 0.25  # only the lower face flickers

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        points = _require_landmarks(sample)
        amount = rng.uniform(*self.amount)
        lower = rng.random() < self.lower_p
        draw = _mask_draw(rng, 8 if lower else 10, (2.0, 6.0))
        grain = rng.uniform(*self.noise_blur)
        noise_level = rng.uniform(*self.noise) * amount
        faces = sample.faces.copy()
        side = sample.faces.shape[1]
        for r, (frame, p) in enumerate(zip(sample.faces, points, strict=True)):
            x = ColourDraw.draw(rng, self.colour * amount).apply(frame)
            factor = 1.0 + (rng.uniform(*self.resample_factor) - 1.0) * amount
            if factor > 1.05:
                x = resample(x, factor)
            m = np.float32([[1, 0, 0], [0, 1, 0]])
            m[:, 2] = rng.normal(0, self.shift_px * amount, 2)
            x = cv2.warpAffine(x, m, (side, side), borderMode=cv2.BORDER_REFLECT)
            texture = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), grain)
            texture *= noise_level / max(float(texture.std()), 1e-6)
            x = x + texture[..., None]
            mask = face_masks(p[None], (side, side), draw, lower)[0]
            faces[r] = _blend(x, frame, mask)
        return dataclasses.replace(sample, faces=faces)


@dataclass(frozen=True)
class MouthTemporal:
    name: ClassVar[str] = "mouth_temporal"
    resample_factor: tuple[float, float] = (1.5, 3.5)
    jitter_p: float = 0.5  # per-frame jitter (else over-smoothed in time)
    jitter_px: tuple[float, float] = (0.4, 1.5)
    colour: float = 0.25
    smooth_sigma: tuple[float, float] = (1.0, 2.5)  # frames

    def forge(self, sample: Sample, rng: np.random.Generator) -> Sample:
        points = _require_landmarks(sample)
        factor = rng.uniform(*self.resample_factor)
        jitter = rng.uniform(*self.jitter_px) if rng.random() < self.jitter_p else 0.0
        smooth = 0.0 if jitter else rng.uniform(*self.smooth_sigma)
        draw = _mask_draw(rng, 8, (1.5, 5.0))
        side = sample.faces.shape[1]
        rendered = np.stack([resample(f, factor) for f in sample.faces]).astype(np.float32)
        if jitter:
            for r in range(len(rendered)):
                m = np.float32([[1, 0, 0], [0, 1, 0]])
                m[:, 2] = rng.normal(0, jitter, 2)
                shifted = cv2.warpAffine(rendered[r], m, (side, side), borderMode=cv2.BORDER_REFLECT)
                rendered[r] = ColourDraw.draw(rng, self.colour).apply(
                    np.clip(shifted, 0, 255).astype(np.uint8)
                )
        else:
            for rows in consecutive_runs(sample):
                if len(rows) > 2:
                    rendered[rows] = gaussian_filter1d(rendered[rows], smooth, axis=0, mode="nearest")
        masks = face_masks(points, (side, side), draw, lower=True)
        faces = np.stack([_blend(x, f, m) for x, f, m in zip(rendered, sample.faces, masks, strict=True)])
        return dataclasses.replace(sample, faces=faces)


TEMPORAL_CATEGORIES: dict[str, type] = {
    c.name: c for c in (StillAnimation, TemporalResynthesis, FaceFlicker, MouthTemporal)
}
