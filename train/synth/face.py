"""A drawn, shaded human head that talks and blinks.

Each identity is a set of drawing parameters. Its static parts (shaded skin, hair, ears,
neck, nose, brows) are rendered once into an RGBA layer; per frame only the eyes (blinks,
gaze) and the mouth (opening) are redrawn, then the layer is moved by the head pose and
composited over the background. Detail matters: face detectors trained on photographs
(RetinaFace) fire on these heads only when eyes, brows, nose shading, lips and hair look
plausible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LAYER_W, LAYER_H = 288, 352  # the head layer, in its own pixel units
CX, CY = 144.0, 150.0  # face centre inside the layer
SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [234, 192, 134], [224, 172, 105], [198, 134, 66],
     [170, 112, 70], [141, 85, 36], [110, 70, 45], [92, 58, 40]],
    np.float32,
)  # fmt: skip
HAIR_COLOURS = np.array(
    [[20, 15, 12], [45, 30, 20], [80, 50, 30], [120, 80, 45], [170, 130, 80], [200, 170, 110],
     [110, 105, 100], [150, 60, 30]],
    np.float32,
)  # fmt: skip
MAX_GAP = 20.0  # mouth opening at full loudness, layer pixels
IRIS_COLOURS = np.array([[70, 45, 25], [100, 70, 40], [60, 90, 120], [80, 110, 70], [40, 30, 25]], np.float32)


@dataclass(frozen=True)
class Identity:
    """Drawing parameters of one synthetic person (layer pixel units, RGB colours)."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    shirt: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 very short, 3 fringe
    face_a: float  # half width of the face
    face_b: float  # half height
    jaw: float  # how much the lower face narrows toward the chin
    eye_dx: float  # half distance between the eye centres
    eye_y: float  # eye line, relative to the face centre
    eye_w: float
    eye_h: float
    brow_thick: int
    brow_lift: float
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_thick: float
    light_x: float  # horizontal light direction (-1 .. 1)

    @classmethod
    def random(cls, rng: np.random.Generator) -> Identity:
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.92, 1.05, 3)
        hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
        lips = np.clip(
            skin * np.array([0.85, 0.55, 0.55]) + np.array([30, 0, 5]) * rng.uniform(0.5, 1.5), 0, 255
        )
        a = rng.uniform(60, 70)
        b = a * rng.uniform(1.22, 1.38)
        return cls(
            skin=tuple(np.clip(skin, 0, 255).tolist()),
            hair=tuple(np.clip(hair, 0, 255).tolist()),
            iris=tuple((IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2)).tolist()),
            lips=tuple(lips.tolist()),
            shirt=tuple(rng.uniform(20, 230, 3).tolist()),
            hair_style=int(rng.integers(4)),
            face_a=a,
            face_b=b,
            jaw=rng.uniform(0.15, 0.35),
            eye_dx=a * rng.uniform(0.38, 0.46),
            eye_y=-b * rng.uniform(0.10, 0.20),
            eye_w=a * rng.uniform(0.21, 0.26),
            eye_h=a * rng.uniform(0.09, 0.12),
            brow_thick=int(rng.integers(4, 8)),
            brow_lift=rng.uniform(0.8, 1.2),
            nose_len=b * rng.uniform(0.30, 0.38),
            nose_w=a * rng.uniform(0.18, 0.25),
            mouth_y=b * rng.uniform(0.45, 0.53),
            mouth_w=a * rng.uniform(0.36, 0.46),
            lip_thick=rng.uniform(4.0, 7.5),
            light_x=rng.uniform(-0.7, 0.7),
        )


def _pt(x: float, y: float) -> tuple[int, int]:
    """cv2 drawing with 4 fractional bits: sub-pixel anti-aliased shapes."""
    return int(round(x * 16)), int(round(y * 16))


def _poly(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * 16).astype(np.int32).reshape(-1, 1, 2)


def _blob(shape: tuple[int, int], x: float, y: float, sx: float, sy: float) -> np.ndarray:
    """A soft Gaussian spot (peak 1) for shading."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return np.exp(-0.5 * (((xx - x) / sx) ** 2 + ((yy - y) / sy) ** 2))


def face_outline(ident: Identity, n: int = 120) -> np.ndarray:
    """(n, 2) face contour: an ellipse whose lower half narrows toward the chin."""
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
    s = np.sin(phi)
    x = CX + ident.face_a * np.cos(phi) * (1 - ident.jaw * np.clip(s, 0, None) ** 2)
    y = CY + ident.face_b * s
    return np.stack([x, y], 1)


def _fill(mask: np.ndarray, points: np.ndarray) -> None:
    cv2.fillPoly(mask, [_poly(points)], 1.0, cv2.LINE_AA, shift=4)


def _paint(img: np.ndarray, mask: np.ndarray, colour) -> None:
    """Alpha-paint ``colour`` where ``mask`` (float 0..1) is set."""
    m = mask[..., None]
    img *= 1 - m
    img += m * np.asarray(colour, np.float32)


def render_head_base(ident: Identity, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Static RGBA head layer: (H, W, 3) float32 RGB and (H, W) float32 alpha."""
    shape = (LAYER_H, LAYER_W)
    img = np.zeros((*shape, 3), np.float32)
    alpha = np.zeros(shape, np.float32)
    skin = np.asarray(ident.skin, np.float32)
    hair = np.asarray(ident.hair, np.float32)
    a, b = ident.face_a, ident.face_b

    def add(points_or_mask, colour):
        m = points_or_mask
        if not isinstance(m, np.ndarray) or m.shape != shape:
            m = np.zeros(shape, np.float32)
            _fill(m, points_or_mask)
        _paint(img, m, colour)
        np.maximum(alpha, m, out=alpha)
        return m

    # Shoulders and shirt, then long hair behind the head.
    shoulders = np.zeros(shape, np.float32)
    cv2.ellipse(shoulders, _pt(CX, LAYER_H + 40), _pt(a * 2.1, 110), 0, 0, 360, 1.0, -1, cv2.LINE_AA, 4)
    add(shoulders, ident.shirt)
    if ident.hair_style == 1:
        back = np.zeros(shape, np.float32)
        cv2.ellipse(back, _pt(CX, CY + 0.2 * b), _pt(a * 1.22, b * 1.25), 0, 0, 360, 1.0, -1, cv2.LINE_AA, 4)
        add(back, hair * 0.8)
    # Neck with a shadow under the jaw.
    neck = np.zeros(shape, np.float32)
    nw = a * 0.52
    _fill(neck, np.array([[CX - nw, CY + 0.5 * b], [CX + nw, CY + 0.5 * b], [CX + nw * 1.1, LAYER_H - 50],
                          [CX - nw * 1.1, LAYER_H - 50]]))  # fmt: skip
    neck_col = skin[None, None] * (0.72 + 0.12 * _blob(shape, CX, LAYER_H, nw * 2, 60)[..., None])
    m = neck[..., None]
    img[:] = img * (1 - m) + neck_col * m
    np.maximum(alpha, neck, out=alpha)
    # Ears.
    for side in (-1, 1):
        ear = np.zeros(shape, np.float32)
        ex = CX + side * a * 0.97
        cv2.ellipse(
            ear, _pt(ex, CY + 0.02 * b), _pt(a * 0.16, b * 0.22), side * 10, 0, 360, 1.0, -1, cv2.LINE_AA, 4
        )
        add(ear, skin * 0.88)
        inner = np.zeros(shape, np.float32)
        cv2.ellipse(
            inner,
            _pt(ex + side * 2, CY + 0.02 * b),
            _pt(a * 0.07, b * 0.13),
            0,
            0,
            360,
            1.0,
            -1,
            cv2.LINE_AA,
            4,
        )
        _paint(img, cv2.GaussianBlur(inner, (0, 0), 1.5) * 0.6, skin * 0.6)

    # Face: shaded as an ellipsoid lit from the front and one side.
    face = np.zeros(shape, np.float32)
    _fill(face, face_outline(ident))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    nx, ny = (xx - CX) / (a * 1.05), (yy - CY) / (b * 1.05)
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
    light = np.array([ident.light_x, -0.35, 0.85])
    light /= np.linalg.norm(light)
    diffuse = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)
    shade = 0.5 + 0.55 * diffuse
    # Eye sockets, cheek bones, nose bridge and under-nose shadows.
    for side in (-1, 1):
        shade -= 0.13 * _blob(
            shape, CX + side * ident.eye_dx, CY + ident.eye_y, ident.eye_w * 1.2, ident.eye_h * 2.2
        )
        shade += 0.06 * _blob(shape, CX + side * a * 0.5, CY + 0.18 * b, a * 0.18, b * 0.1)
    dark_side = -1 if ident.light_x > 0 else 1
    nose_top, nose_tip = CY + ident.eye_y + 4, CY + ident.eye_y + ident.nose_len + 8
    shade -= 0.16 * _blob(
        shape, CX + dark_side * ident.nose_w * 0.55, (nose_top + nose_tip) / 2, 3.5, ident.nose_len * 0.45
    )
    shade += 0.12 * _blob(shape, CX - dark_side * 2, nose_tip - 6, ident.nose_w * 0.45, 6)
    shade -= 0.14 * _blob(shape, CX, nose_tip + 5, ident.nose_w * 0.9, 3.5)
    shade -= 0.10 * _blob(shape, CX, CY + ident.mouth_y + 14, ident.mouth_w * 0.7, 4)  # under the lower lip
    shade += 0.06 * _blob(shape, CX, CY - 0.55 * b, a * 0.4, b * 0.15)  # forehead highlight
    blush = 0.10 * (_blob(shape, CX - a * 0.5, CY + 0.22 * b, a * 0.2, b * 0.1)
                    + _blob(shape, CX + a * 0.5, CY + 0.22 * b, a * 0.2, b * 0.1))  # fmt: skip
    texture = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.2) * 0.035
    face_col = skin[None, None] * (shade + texture)[..., None]
    face_col[..., 0] += 255 * blush * 0.35
    face_col[..., 1:] -= 255 * blush[..., None] * 0.1
    m = face[..., None]
    img[:] = img * (1 - m) + face_col * m
    np.maximum(alpha, face, out=alpha)

    # Nostrils and the alar crease.
    nostril = np.zeros(shape, np.float32)
    for side in (-1, 1):
        cv2.ellipse(nostril, _pt(CX + side * ident.nose_w * 0.42, nose_tip + 1), _pt(ident.nose_w * 0.2, 2.6),
                    side * 20, 0, 360, 1.0, -1, cv2.LINE_AA, 4)  # fmt: skip
        cv2.ellipse(nostril, _pt(CX + side * ident.nose_w * 0.62, nose_tip - 4), _pt(4, 7), 0,
                    90 - side * 70, 90 + side * 10, 0.6, 1, cv2.LINE_AA, 4)  # fmt: skip
    _paint(img, cv2.GaussianBlur(nostril, (0, 0), 0.8) * 0.8, skin * 0.3)

    # Eyebrows: thick tapered arcs.
    for side in (-1, 1):
        brow = np.zeros(shape, np.float32)
        bx, by = CX + side * ident.eye_dx, CY + ident.eye_y - ident.eye_h * 2.4 * ident.brow_lift
        t = np.linspace(-1, 1, 20)
        pts = np.stack([bx + side * t * ident.eye_w * 1.25, by - 6 * (1 - t**2) + side * t * 1.5], 1)
        for i in range(len(pts) - 1):
            thick = max(1, int(ident.brow_thick * (1.1 - 0.5 * (side * t[i] + 1) / 2)))
            cv2.line(brow, _pt(*pts[i]), _pt(*pts[i + 1]), 1.0, thick, cv2.LINE_AA, 4)
        brow = cv2.GaussianBlur(brow, (0, 0), 0.9) * 0.9
        _paint(img, brow, np.minimum(hair, skin * 0.5))

    # Hair on top of the head, bounded below by a hairline over the forehead.
    cap = np.zeros(shape, np.float32)
    grow = {0: 1.08, 1: 1.14, 2: 1.03, 3: 1.10}[ident.hair_style]
    cv2.ellipse(cap, _pt(CX, CY - 0.05 * b), _pt(a * grow, b * grow), 0, 180, 360, 1.0, -1, cv2.LINE_AA, 4)
    hairline = CY + ident.eye_y - ident.eye_h * 2.4 - {0: 26, 1: 24, 2: 34, 3: 8}[ident.hair_style]
    below = np.clip((yy - hairline + (xx - CX) ** 2 / (a * 3.2)) / 3.0, 0, 1)  # forehead arc
    sides = np.clip((np.abs(xx - CX) - a * 0.82) / 3.0, 0, 1) * (yy < CY + 0.05 * b)
    cap *= np.maximum(1 - below, sides)
    if ident.hair_style == 1:
        strands = np.zeros(shape, np.float32)
        for side in (-1, 1):
            _fill(strands, np.array([[CX + side * a * 0.8, CY - 0.3 * b], [CX + side * a * 1.2, CY - 0.2 * b],
                                     [CX + side * a * 1.2, CY + 0.9 * b], [CX + side * a * 0.93, CY + 0.9 * b]]))  # fmt: skip
        cap = np.maximum(cap, strands)
    streaks = (
        cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigmaX=0.6, sigmaY=3) * 0.12
    )
    hair_col = hair[None, None] * (0.85 + streaks + 0.3 * np.clip(diffuse, 0, 1) * 0.5)[..., None]
    m = cap[..., None]
    img[:] = img * (1 - m) + hair_col * m
    np.maximum(alpha, cap, out=alpha)
    return np.clip(img, 0, 255), alpha


def eyes_box(ident: Identity) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) layer box that ``draw_eyes`` touches."""
    x0 = int(CX - ident.eye_dx - ident.eye_w * 1.3)
    y0 = int(CY + ident.eye_y - ident.eye_h * 2.6)
    return x0, y0, int(2 * CX - x0) + 1, int(CY + ident.eye_y + ident.eye_h * 1.6) + 1


def draw_eyes(
    img: np.ndarray,
    ident: Identity,
    closure: float,
    gaze: tuple[float, float],
    origin: tuple[int, int] = (0, 0),
) -> None:
    """Sclera, iris, pupil, highlight and lids; ``closure`` 0 open .. 1 shut (blink).
    ``img`` may be a crop of the layer whose top-left corner is at layer ``origin``."""
    skin = np.asarray(ident.skin, np.float32)
    shape = img.shape[:2]
    cx, cy = CX - origin[0], CY - origin[1]
    for side in (-1, 1):
        ex, ey = cx + side * ident.eye_dx, cy + ident.eye_y
        ew, eh = ident.eye_w, ident.eye_h
        open_h = eh * (1 - closure)
        if open_h > 0.8:
            eye = np.zeros(shape, np.float32)
            t = np.linspace(-1, 1, 24)
            upper = np.stack([ex + t * ew, ey - open_h * (1 - t**2) ** 0.8 - (eh - open_h) * 0.3], 1)
            lower = np.stack([ex - t * ew, ey + min(open_h, eh * 0.8) * (1 - t**2) ** 0.9 * 0.85], 1)
            _fill(eye, np.concatenate([upper, lower]))
            sclera = np.array([235, 230, 225], np.float32)
            _paint(img, eye, sclera * 0.93)
            iris_m = np.zeros(shape, np.float32)
            ix, iy = ex + gaze[0] * ew * 0.3, ey + gaze[1] * eh * 0.2
            r = eh * 0.95
            cv2.circle(iris_m, _pt(ix, iy), int(r * 16), 1.0, -1, cv2.LINE_AA, 4)
            iris_m *= eye
            iris = (
                np.asarray(ident.iris, np.float32)
                * (0.7 + 0.5 * _blob(shape, ix, iy + r * 0.3, r, r))[..., None]
            )
            m = iris_m[..., None]
            img[:] = img * (1 - m) + iris * m
            pupil = np.zeros(shape, np.float32)
            cv2.circle(pupil, _pt(ix, iy), int(r * 0.45 * 16), 1.0, -1, cv2.LINE_AA, 4)
            _paint(img, pupil * eye, (12, 10, 10))
            glint = np.zeros(shape, np.float32)
            cv2.circle(glint, _pt(ix + r * 0.3, iy - r * 0.35), int(1.6 * 16), 1.0, -1, cv2.LINE_AA, 4)
            _paint(img, glint * eye, (250, 250, 250))
            # upper lid line with lashes, and a lid shadow on the sclera
            lid = np.zeros(shape, np.float32)
            cv2.polylines(lid, [_poly(upper)], False, 1.0, 2, cv2.LINE_AA, 4)
            _paint(img, lid * 0.9, (25, 18, 15))
            low = np.zeros(shape, np.float32)
            cv2.polylines(low, [_poly(lower)], False, 1.0, 1, cv2.LINE_AA, 4)
            _paint(img, low * 0.35, skin * 0.45)
        else:  # shut: a single lash line
            lid = np.zeros(shape, np.float32)
            t = np.linspace(-1, 1, 16)
            cv2.polylines(
                lid, [_poly(np.stack([ex + t * ew, ey + 1.5 * (1 - t**2)], 1))], False, 1.0, 2, cv2.LINE_AA, 4
            )
            _paint(img, lid * 0.9, (25, 18, 15))
        # eyelid crease above the eye
        crease = np.zeros(shape, np.float32)
        cv2.ellipse(crease, _pt(ex, ey), _pt(ew * 0.95, eh * 1.9), 0, 200, 340, 1.0, 1, cv2.LINE_AA, 4)
        _paint(img, cv2.GaussianBlur(crease, (0, 0), 0.8) * 0.5, skin * 0.6)


def mouth_geometry(ident: Identity, opening: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outer upper lip, outer lower lip and inner (opening) contours for a mouth state."""
    mx, my = CX, CY + ident.mouth_y
    w = ident.mouth_w * (1 - 0.18 * opening)  # lips round as the jaw opens
    gap = MAX_GAP * opening
    t = np.linspace(-1, 1, 25)
    bow = 2.2 * np.exp(-(((np.abs(t) - 0.22) / 0.18) ** 2))  # cupid's bow peaks
    up_outer = np.stack([mx + t * w, my - gap * 0.3 - ident.lip_thick * (1 - t**2) ** 0.7 - bow], 1)
    inner_top = np.stack([mx - t * w * 0.92, my - gap * 0.3 * (1 - t**2)], 1)
    inner_bot = np.stack([mx + t * w * 0.92, my + gap * 0.7 * (1 - t**2)], 1)
    low_outer = np.stack([mx - t * w, my + gap * 0.7 + ident.lip_thick * 1.25 * (1 - t**2) ** 0.8], 1)
    upper = np.concatenate([up_outer, inner_top])
    lower = np.concatenate([inner_bot, low_outer])
    inner = np.concatenate([inner_top[::-1], inner_bot])
    return upper, lower, inner


def mouth_box(ident: Identity) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) layer box that ``draw_mouth`` touches."""
    x0 = int(CX - ident.mouth_w * 1.1)
    return (
        x0,
        int(CY + ident.mouth_y - MAX_GAP - 14),
        int(2 * CX - x0) + 1,
        int(CY + ident.mouth_y + MAX_GAP + 16),
    )


def draw_mouth(
    img: np.ndarray, ident: Identity, opening: float, smooth: bool = False, origin: tuple[int, int] = (0, 0)
) -> None:
    """Lips, and teeth and mouth cavity when open. ``smooth`` draws a flat, detail-free
    mouth, the kind a face re-enactment generator produces. ``origin`` as in ``draw_eyes``."""
    shape = img.shape[:2]
    lips = np.asarray(ident.lips, np.float32)
    upper, lower, inner = mouth_geometry(ident, opening)
    upper, lower, inner = (p - np.asarray(origin, np.float64) for p in (upper, lower, inner))
    mx = CX - origin[0]
    if opening > 0.04:
        cav = np.zeros(shape, np.float32)
        _fill(cav, inner)
        _paint(img, cav, (55, 20, 25) if not smooth else lips * 0.45)
        if not smooth:
            teeth = np.zeros(shape, np.float32)
            top = inner[:, 1].min()
            cv2.ellipse(teeth, _pt(mx, top), _pt(ident.mouth_w * 0.6, 5.0 * min(1, opening * 2)), 0, 0, 180, 1.0, -1,
                        cv2.LINE_AA, 4)  # fmt: skip
            _paint(img, teeth * cav, (235, 232, 220))
            tongue = _blob(shape, mx, inner[:, 1].max(), ident.mouth_w * 0.4, 4) * cav
            _paint(img, tongue * 0.7, (170, 70, 75))
    for part, bright in ((upper, 0.85), (lower, 1.0)):
        m = np.zeros(shape, np.float32)
        _fill(m, part)
        if smooth:
            _paint(img, m, lips * 0.95)
        else:
            y0 = part[:, 1].min()
            shade = bright * (
                0.85 + 0.25 * _blob(shape, mx, y0 + (part[:, 1].max() - y0) * 0.45, ident.mouth_w * 0.5, 3)
            )
            col = lips[None, None] * shade[..., None]
            mm = m[..., None]
            img[:] = img * (1 - mm) + col * mm
    if not smooth:  # the dark line where the lips meet
        line = np.zeros(shape, np.float32)
        cv2.polylines(line, [_poly(inner[: len(inner) // 2])], False, 1.0, 1, cv2.LINE_AA, 4)
        _paint(img, line * 0.7, lips * 0.35)


def mouth_region(ident: Identity, feather: float = 6.0) -> np.ndarray:
    """Soft (H, W) mask over the lower face, nose to chin: what a lip-sync generator
    (Wav2Lip-style, which regenerates the lower half of the face) replaces."""
    m = np.zeros((LAYER_H, LAYER_W), np.float32)
    top = CY + ident.eye_y + ident.nose_len + 6  # just under the nose
    bottom = CY + ident.face_b * 0.92
    cv2.ellipse(m, _pt(CX, (top + bottom) / 2), _pt(ident.face_a * 0.72, (bottom - top) / 2), 0, 0, 360, 1.0, -1,
                cv2.LINE_AA, 4)  # fmt: skip
    return cv2.GaussianBlur(m, (0, 0), feather)


def inner_face_region(ident: Identity, feather: float = 5.0) -> np.ndarray:
    """Soft mask over brows, eyes, nose and mouth (what a face swap replaces)."""
    m = np.zeros((LAYER_H, LAYER_W), np.float32)
    cv2.ellipse(m, _pt(CX, CY + 0.15 * ident.face_b), _pt(ident.face_a * 0.8, ident.face_b * 0.7), 0, 0, 360, 1.0, -1,
                cv2.LINE_AA, 4)  # fmt: skip
    return cv2.GaussianBlur(m, (0, 0), feather)
