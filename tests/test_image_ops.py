"""core.image_ops: OpenCV's uint8 results without OpenCV (the scoring image has none). The
tolerance is zero: each op is compared byte for byte with cv2 (installed in the development
environment by requirements-train.txt) on seeded noise of many sizes, grey and RGB, shrinking
and enlarging, and the sizes scoring uses (224² crops, the detector's 128², temporal_band's
192² → 32² grey squares, explain's 96² thumbnails). The numpy code is what is compared
(``opencv_use=False``); where OpenCV is installed, scoring hands these ops to it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core import image_ops

# (height, width) → (width, height): the pipeline's sizes and the special cases of OpenCV's
# resize (halving, doubling, integer and non-integer area factors, one-pixel sides)
FIXED = [
    ((300, 300), (224, 224)),
    ((150, 160), (224, 224)),
    ((224, 224), (128, 128)),
    ((192, 192), (32, 32)),
    ((224, 224), (96, 96)),
    ((448, 448), (224, 224)),
    ((101, 57), (202, 114)),
    ((30, 30), (9, 9)),
    ((15, 15), (9, 9)),
    ((1, 7), (5, 3)),
    ((9, 1), (1, 4)),
    ((80, 16), (16, 224)),  # fusion's mel chunk → a square
]


def sizes(seed: int, n: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    return FIXED + [((int(a), int(b)), (int(c), int(d))) for a, b, c, d in rng.integers(1, 500, (n, 4))]


def noise(rng, shape) -> np.ndarray:
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("ours", "flag"),
    [(image_ops.resize_linear, cv2.INTER_LINEAR), (image_ops.resize_area, cv2.INTER_AREA)],
    ids=["linear", "area"],
)
def test_resize_gives_opencvs_bytes(ours, flag, channels):
    rng = np.random.default_rng(channels)
    for (h, w), (width, height) in sizes(seed=channels, n=60):
        image = noise(rng, (h, w) if channels == 1 else (h, w, channels))
        got = ours(image, width, height, opencv_use=False)
        want = cv2.resize(image, (width, height), interpolation=flag)
        assert got.shape == want.shape and got.dtype == np.uint8
        np.testing.assert_array_equal(got, want, err_msg=f"{h}x{w}x{channels} -> {width}x{height}")


def test_resize_reads_views_and_leaves_the_input_alone():
    rng = np.random.default_rng(3)
    frame = noise(rng, (120, 160, 3))
    view = frame[10:90, 20:150]  # a crop, as tracks.py resizes
    before = frame.copy()
    np.testing.assert_array_equal(
        image_ops.resize_linear(view, 224, 224, opencv_use=False),
        cv2.resize(np.ascontiguousarray(view), (224, 224), interpolation=cv2.INTER_LINEAR),
    )
    np.testing.assert_array_equal(frame, before)
    same = image_ops.resize_area(view, view.shape[1], view.shape[0], opencv_use=False)
    assert same is not view and np.array_equal(same, view)


def test_resize_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="uint8"):
        image_ops.resize_linear(np.zeros((4, 4), np.float32), 2, 2)
    with pytest.raises(ValueError, match="cannot resize"):
        image_ops.resize_area(np.zeros((4, 4), np.uint8), 0, 2)


def test_grey_rotation_and_transpose_give_opencvs_bytes():
    rng = np.random.default_rng(4)
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    for (h, w), _ in sizes(seed=4, n=20):
        image = noise(rng, (h, w, 3))
        np.testing.assert_array_equal(
            image_ops.rgb_to_grey(image, opencv_use=False), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        )
        np.testing.assert_array_equal(image_ops.transpose(image, opencv_use=False), cv2.transpose(image))
        np.testing.assert_array_equal(
            image_ops.transpose(image[..., 0], opencv_use=False), cv2.transpose(image[..., 0])
        )
        for degrees, code in codes.items():
            np.testing.assert_array_equal(
                image_ops.rotate(image, degrees, opencv_use=False), cv2.rotate(image, code)
            )
    with pytest.raises(ValueError, match="90, 180 or 270"):
        image_ops.rotate(image, 45)
    with pytest.raises(ValueError, match="RGB"):
        image_ops.rgb_to_grey(image[..., :2])


def test_scoring_hands_the_ops_to_opencv_where_it_is_installed_and_numpy_gives_its_bytes():
    rng = np.random.default_rng(5)
    image = noise(rng, (150, 160, 3))
    assert image_ops.opencv() is cv2 and image_ops.opencv(False) is None
    out = np.empty((224, 224, 3), np.uint8)
    for use in (None, False):
        resizer = image_ops.Resizer(use)
        np.testing.assert_array_equal(
            resizer.linear(image, 224, 224, out=out), resizer.linear(image, 224, 224)
        )
        np.testing.assert_array_equal(
            image_ops.resize_area(image, 64, 60, use),
            cv2.resize(image, (64, 60), interpolation=cv2.INTER_AREA),
        )
        np.testing.assert_array_equal(
            image_ops.rotate(image, 90, use), cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
        )


def test_opencv_required_but_missing_says_so(monkeypatch):
    monkeypatch.setattr(image_ops, "_installed", lambda module: None)
    assert image_ops.opencv() is None
    with pytest.raises(ImportError, match="opencv_use=True"):
        image_ops.Resizer(True)
