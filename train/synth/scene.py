"""Talking-head video frames: a head layer moved over a background by a smooth pose.

``Scene`` fixes everything about one shot (identity, background, frame size, head motion,
blinks, gaze); ``render_frames`` draws it for a mouth-opening sequence. A ``layer_edit``
hook lets a fake replace parts of the head layer before it is composited, the place where
face swaps and mouth re-enactments alter a real video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from train.synth.face import (
    CX,
    CY,
    LAYER_H,
    LAYER_W,
    Identity,
    draw_eyes,
    draw_mouth,
    eyes_box,
    face_outline,
    mouth_box,
    render_head_base,
)

FRAME_SIZES = ((320, 240), (288, 288), (256, 320), (352, 288), (320, 256))  # (width, height)

# (frame index, head RGB float layer) -> edited layer
LayerEdit = Callable[[int, np.ndarray], np.ndarray]


@dataclass
class Scene:
    ident: Identity
    base_rgb: np.ndarray  # (LH, LW, 3) float32 static head layer
    base_alpha: np.ndarray  # (LH, LW) float32
    background: np.ndarray  # (H, W, 3) float32
    angle: np.ndarray  # (T,) degrees
    scale: np.ndarray  # (T,) layer -> frame scale
    centre: np.ndarray  # (T, 2) frame position of the face centre
    closure: np.ndarray  # (T,) eyelid closure 0..1
    gaze: np.ndarray  # (T, 2) -1..1
    noise_seed: int

    @property
    def num_frames(self) -> int:
        return len(self.angle)


def _smooth_walk(rng: np.random.Generator, n: int, amplitude: float, fps: float) -> np.ndarray:
    """A sum of a few slow sinusoids: natural-looking drift without jumps."""
    t = np.arange(n) / fps
    out = np.zeros(n)
    for _ in range(3):
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.08, 0.6) * t + rng.uniform(0, 6.3))
    return amplitude * out / 2.0


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    c1, c2 = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
    g = (
        np.linspace(0, 1, height)[:, None, None]
        if rng.random() < 0.5
        else np.linspace(0, 1, width)[None, :, None]
    )
    bg = np.broadcast_to(c1 * (1 - g) + c2 * g, (height, width, 3)).astype(np.float32).copy()
    for _ in range(int(rng.integers(2, 7))):  # furniture, frames, windows
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        x1, y1 = x0 + rng.integers(20, width // 2), y0 + rng.integers(20, height // 2)
        cv2.rectangle(bg, (int(x0), int(y0)), (int(x1), int(y1)), rng.uniform(20, 240, 3).tolist(), -1)
    bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(1.0, 4.0))
    return bg + rng.normal(0, 3, bg.shape).astype(np.float32)


def blink_closure(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    closure = np.zeros(n, np.float32)
    t = rng.uniform(0.2, 2.5)
    shape = np.array([0.35, 0.8, 1.0, 0.7, 0.3], np.float32)  # a blink lasts ~5 frames at 25 fps
    while t < n / fps:
        i = int(t * fps)
        seg = closure[i : i + len(shape)]
        seg[:] = np.maximum(seg, shape[: len(seg)])
        t += rng.uniform(1.5, 5.0)
    return closure


def make_scene(
    rng: np.random.Generator,
    ident: Identity,
    num_frames: int,
    fps: float = 25.0,
    size: tuple[int, int] | None = None,
) -> Scene:
    width, height = size or FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
    base_rgb, base_alpha = render_head_base(ident, rng)
    face_h = 2 * ident.face_b
    s0 = rng.uniform(0.38, 0.62) * height / face_h
    cx = width / 2 + rng.uniform(-0.12, 0.12) * width
    cy = height * rng.uniform(0.42, 0.52)
    centre = np.stack(
        [
            cx + _smooth_walk(rng, num_frames, 0.05 * width, fps),
            cy + _smooth_walk(rng, num_frames, 0.03 * height, fps),
        ],
        1,
    )
    gaze = np.stack([_smooth_walk(rng, num_frames, 0.6, fps), _smooth_walk(rng, num_frames, 0.4, fps)], 1)
    return Scene(
        ident=ident,
        base_rgb=base_rgb,
        base_alpha=base_alpha,
        background=_background(rng, width, height),
        angle=_smooth_walk(rng, num_frames, rng.uniform(2, 8), fps),
        scale=s0 * (1 + _smooth_walk(rng, num_frames, 0.03, fps)),
        centre=centre,
        closure=blink_closure(rng, num_frames, fps),
        gaze=np.clip(gaze, -1, 1),
        noise_seed=int(rng.integers(2**31)),
    )


def head_layer(
    scene: Scene, ident: Identity, base_rgb: np.ndarray, i: int, opening: float, smooth_mouth: bool = False
):
    """The head layer of frame ``i`` (before any edit): static base + eyes + mouth."""
    layer = base_rgb.copy()
    x0, y0, x1, y1 = eyes_box(ident)  # draw only where things change: ~10x faster than whole layers
    gaze = (float(scene.gaze[i, 0]), float(scene.gaze[i, 1]))
    draw_eyes(layer[y0:y1, x0:x1], ident, float(scene.closure[i]), gaze, origin=(x0, y0))
    x0, y0, x1, y1 = mouth_box(ident)
    draw_mouth(layer[y0:y1, x0:x1], ident, float(opening), smooth=smooth_mouth, origin=(x0, y0))
    return layer


def layer_to_frame(scene: Scene, i: int) -> np.ndarray:
    """2x3 affine taking head-layer pixels to frame pixels for frame ``i``."""
    m = cv2.getRotationMatrix2D((CX, CY), float(scene.angle[i]), float(scene.scale[i]))
    m[:, 2] += scene.centre[i] - np.array([CX, CY])
    return m


def render_frames(scene: Scene, opening: np.ndarray, layer_edit: LayerEdit | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames of the scene with the given mouth openings."""
    height, width = scene.background.shape[:2]
    rng = np.random.default_rng(scene.noise_seed)
    # Sensor noise from a small pool, re-drawn by offset: fresh Gaussian noise per frame would
    # cost as much as the drawing, and H.264 smooths the difference away anyway.
    pool = rng.normal(0, 1.5, (3, height + 8, width + 8, 3)).astype(np.float32)
    corners = np.array([[0, 0, 1], [LAYER_W, 0, 1], [0, LAYER_H, 1], [LAYER_W, LAYER_H, 1]], np.float64)
    frames = np.empty((scene.num_frames, height, width, 3), np.uint8)
    for i in range(scene.num_frames):
        layer = head_layer(scene, scene.ident, scene.base_rgb, i, opening[i])
        if layer_edit is not None:
            layer = layer_edit(i, layer)
        m = layer_to_frame(scene, i)
        # composite only inside the head's bounding box in the frame
        pts = corners @ m.T
        x0, y0 = np.clip(np.floor(pts.min(0)).astype(int), 0, [width, height])
        x1, y1 = np.clip(np.ceil(pts.max(0)).astype(int) + 1, 0, [width, height])
        out = scene.background.copy()
        if x1 > x0 and y1 > y0:
            m_roi = m.copy()
            m_roi[:, 2] -= (x0, y0)
            rgba = np.dstack([layer, scene.base_alpha * 255])
            warped = cv2.warpAffine(
                rgba, m_roi, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0)
            )
            a = warped[..., 3:] * (1 / 255.0)
            roi = out[y0:y1, x0:x1]
            roi += (warped[..., :3] - roi) * a
        dy, dx = rng.integers(0, 8, 2)
        out += pool[i % 3, dy : dy + height, dx : dx + width]
        np.clip(out, 0, 255, out=out)
        frames[i] = out.astype(np.uint8)
    return frames


def face_boxes(scene: Scene) -> np.ndarray:
    """(T, 4) float32 x1, y1, x2, y2 of the face outline in each frame (ground truth boxes)."""
    outline = np.concatenate([face_outline(scene.ident), np.ones((120, 1))], 1)  # homogeneous
    boxes = np.empty((scene.num_frames, 4), np.float32)
    for i in range(scene.num_frames):
        pts = outline @ layer_to_frame(scene, i).T
        boxes[i] = (*pts.min(0), *pts.max(0))
    return boxes
