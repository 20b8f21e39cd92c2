"""train.metrics against scikit-learn, and EER on cases whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from train.metrics import (
    Confusion,
    choose_threshold,
    equal_error_rate,
    evaluate_scores,
    log_loss,
    roc_auc,
    youden_threshold,
)
from train.metrics import average_precision as ap


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    p = 0.5 + 0.25 * (2 * y - 1) + rng.normal(0, 0.25, 200)
    p[:10] = np.round(p[:10], 1)  # some ties
    return y, np.clip(p, 0.01, 0.99)


def test_auc_ap_logloss_match_sklearn(scored):
    y, p = scored
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert ap(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p), abs=1e-9)
    assert 0.75 < roc_auc(y, p) < 1.0  # the fixture separates the classes, imperfectly


def test_log_loss_clips_like_the_challenge():
    # A confident wrong answer costs -log(1e-7), not infinity.
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))
    assert log_loss([0, 1], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_single_class_gives_nan_not_an_error():
    assert math.isnan(roc_auc([1, 1], [0.2, 0.9]))
    assert math.isnan(equal_error_rate([0, 0], [0.2, 0.9])[0])


def test_eer_at_an_operating_point():
    # negatives 0.1 0.2 0.3 0.7, positives 0.6 0.8 0.9 0.95: at threshold 0.7 one negative
    # passes (FPR 1/4) and one positive fails (FNR 1/4).
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.7, 0.6, 0.8, 0.9, 0.95]
    eer, thr = equal_error_rate(y, p)
    assert eer == pytest.approx(0.25)
    assert thr == pytest.approx(0.7)


def test_eer_interpolates_between_operating_points():
    # negatives 0.1 0.6 0.65, positives 0.5 0.9. Operating points (threshold: FPR, FNR):
    # 0.9: (0, 1/2); 0.65: (1/3, 1/2); 0.6: (2/3, 1/2); 0.5: (2/3, 0).
    # FNR - FPR goes 1/6 -> -1/6 between 0.65 and 0.6: the rates meet halfway, at 1/2.
    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.6, 0.65, 0.5, 0.9]
    eer, thr = equal_error_rate(y, p)
    assert eer == pytest.approx(0.5)
    assert thr == pytest.approx(0.625)


def test_eer_agrees_with_a_brute_force_search(scored):
    y, p = scored
    eer, thr = equal_error_rate(y, p)
    grid = np.unique(p)
    fpr = np.array([np.mean(p[y == 0] >= t) for t in grid])
    fnr = np.array([np.mean(p[y == 1] < t) for t in grid])
    k = np.argmin(np.abs(fpr - fnr))
    # the exact crossing lies between neighbouring grid points: within one step's change
    step = 1 / min((y == 0).sum(), (y == 1).sum())
    assert abs(eer - (fpr[k] + fnr[k]) / 2) <= step
    assert p.min() <= thr <= p.max()


def test_youden_threshold_separates_a_separable_set():
    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.2, 0.4, 0.6, 0.9]
    t = youden_threshold(y, p)
    assert 0.4 < t <= 0.6
    c = Confusion.at(y, p, t)
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 0, 3, 0)
    assert c.accuracy == 1.0
    assert choose_threshold(y, p, "eer") == pytest.approx(0.6)
    with pytest.raises(ValueError, match="threshold method"):
        choose_threshold(y, p, "best")


def test_report_uses_the_given_threshold_and_breaks_down_categories():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.9, 0.8, 0.4, 0.7])
    cats = ["real"] * 4 + ["face_blend", "face_blend", "audio_shift", "audio_shift"]
    r = evaluate_scores(y, p, cats, threshold=0.5, threshold_source="youden on validation")
    assert r.threshold == 0.5 and r.threshold_source == "youden on validation"
    assert (r.confusion.tp, r.confusion.fp, r.confusion.tn, r.confusion.fn) == (3, 1, 3, 1)
    assert r.accuracy == pytest.approx(0.75)
    assert r.per_category["face_blend"].detected == 1.0
    assert r.per_category["face_blend"].auc_vs_real == 1.0
    assert r.per_category["audio_shift"].detected == 0.5
    assert r.per_category["audio_shift"].auc_vs_real == pytest.approx(
        skm.roc_auc_score([0] * 4 + [1] * 2, [*p[:4], 0.4, 0.7])
    )
    assert r.per_category["real"].detected == 0.75  # reals correctly below the threshold
    d = r.to_dict()
    assert d["confusion"]["accuracy"] == 0.75 and d["auc"] == pytest.approx(roc_auc(y, p))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 labels but 3"):
        roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
