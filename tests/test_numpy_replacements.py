"""SciPy's functions that scoring used, now in numpy (the scoring image has no SciPy), checked
against SciPy itself (requirements-train.txt keeps it in the development environment): the
tracker's assignment, the MFCCs' DCT, the log-mel's periodic Hann window and SyncNet's
confidence median filter."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.optimize
import scipy.signal

from core.assignment import linear_sum_assignment
from preprocess.audio import dct_matrix
from preprocess.latency import median_filter
from preprocess.mel_spectrogram import periodic_hann


def cost_matrices(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        rows, cols = (int(v) for v in rng.integers(0, 9, 2))
        if i % 3 == 0:
            yield rng.normal(size=(rows, cols))
        elif i % 3 == 1:  # many ties
            yield rng.integers(0, 4, (rows, cols)).astype(np.float64)
        else:  # as the tracker builds them: minus IoU, mostly zero (boxes far apart)
            yield -np.where(rng.random((rows, cols)) < 0.6, 0.0, rng.random((rows, cols)))


def test_assignment_is_optimal_and_shaped_as_scipys():
    for cost in cost_matrices(seed=0, n=1500):
        want_rows, want_cols = scipy.optimize.linear_sum_assignment(cost)
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == len(cols) == min(cost.shape)
        assert np.all(np.diff(rows) > 0) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(cost[want_rows, want_cols].sum(), abs=1e-9)
        if cost.shape[0] and cost.shape[1] and (cost != 0).all() and len(np.unique(cost)) == cost.size:
            # distinct costs: one optimum, the same pairs
            np.testing.assert_array_equal(rows, want_rows)
            np.testing.assert_array_equal(cols, want_cols)


def test_assignment_links_what_the_tracker_keeps_as_scipy_does():
    """The tracker keeps pairs whose IoU passes a threshold: among tied zero-IoU pairs the two
    may differ, never in a pair with overlap."""
    for cost in cost_matrices(seed=1, n=1500):
        ours = {(int(r), int(c)) for r, c in zip(*linear_sum_assignment(cost), strict=True) if cost[r, c] < 0}
        want = scipy.optimize.linear_sum_assignment(cost)
        theirs = {(int(r), int(c)) for r, c in zip(*want, strict=True) if cost[r, c] < 0}
        if len(np.unique(cost[cost < 0])) == (cost < 0).sum():
            assert ours == theirs


def test_assignment_refuses_nan():
    with pytest.raises(ValueError, match="NaN"):
        linear_sum_assignment(np.array([[0.0, np.nan]]))
    assert [len(a) for a in linear_sum_assignment(np.zeros((0, 3)))] == [0, 0]


def test_dct_matrix_is_scipys_orthonormal_dct2():
    rng = np.random.default_rng(2)
    for n in (1, 2, 13, 26, 40):
        x = rng.normal(scale=10.0, size=(50, n))
        want = scipy.fft.dct(x, type=2, axis=1, norm="ortho")
        np.testing.assert_allclose(
            x @ dct_matrix(n).T, want, rtol=0, atol=1e-12 * np.abs(x).sum(axis=1).max()
        )


def test_periodic_hann_is_scipys_to_the_bit():
    for n in [*range(1, 40), 400, 401, 512, 1024]:
        np.testing.assert_array_equal(periodic_hann(n), scipy.signal.get_window("hann", n, fftbins=True))


@pytest.mark.filterwarnings("ignore:kernel_size exceeds volume extent")
def test_median_filter_is_scipys_medfilt():
    rng = np.random.default_rng(3)
    for length in (1, 2, 5, 16, 33):
        x = rng.normal(size=length)
        for size in (1, 3, 5, 7):
            np.testing.assert_array_equal(median_filter(x, size), scipy.signal.medfilt(x, size))
    with pytest.raises(ValueError, match="odd"):
        median_filter(x, 4)
