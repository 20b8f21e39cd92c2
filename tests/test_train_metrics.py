"""train.metrics against scikit-learn, and EER on cases whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from train.metrics import (
    Confusion,
    VideoTimeline,
    choose_threshold,
    equal_error_rate,
    evaluate_localisation,
    evaluate_scores,
    log_loss,
    per_second_auc,
    predicted_segments,
    roc_auc,
    second_labels,
    segment_average_precision,
    temporal_iou,
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


# --- localisation -------------------------------------------------------------------------------


def timeline(name, probs, segment):
    return VideoTimeline(name, np.arange(len(probs)), np.asarray(probs, dtype=float), segment)


def test_second_labels_need_half_the_second_inside_the_segment():
    np.testing.assert_array_equal(second_labels(range(6), (1.5, 3.4)), [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(second_labels(range(3), None), [0, 0, 0])
    np.testing.assert_array_equal(second_labels([0, 1, 2], (0.0, 3.0)), [1, 1, 1])


def test_predicted_segments_are_runs_of_seconds_above_one_half():
    segs = predicted_segments([0, 1, 2, 3, 4, 6, 7], [0.9, 0.7, 0.2, 0.8, 0.6, 0.9, 0.4])
    assert segs == [(0.0, 2.0, 0.8), (3.0, 5.0, 0.7), (6.0, 7.0, 0.9)]
    assert predicted_segments([3, 5], [0.9, 0.9]) == [(3.0, 4.0, 0.9), (5.0, 6.0, 0.9)]  # a gap splits
    assert predicted_segments([0, 1], [0.5, 0.2]) == []  # strictly above
    assert temporal_iou((1, 3), (2, 4)) == pytest.approx(1 / 3)


def test_a_perfect_localisation_scores_one():
    videos = [
        timeline("partial", [0.1, 0.9, 0.8, 0.2, 0.1], (1.0, 3.0)),
        timeline("full", [0.9, 0.95, 0.7], (0.0, 3.0)),
        timeline("real", [0.1, 0.2, 0.3, 0.1], None),
    ]
    assert segment_average_precision(videos) == 1.0
    assert per_second_auc(videos) == 1.0
    report = evaluate_localisation(videos)
    assert (report.videos, report.videos_with_segment, report.seconds, report.fake_seconds) == (3, 2, 12, 5)
    assert report.predicted_segments == 2 and report.to_dict()["segment_ap"] == 1.0


def test_a_shifted_segment_below_iou_one_half_scores_zero():
    truth = (1.0, 3.0)
    shifted = timeline("partial", [0.1, 0.1, 0.9, 0.9, 0.1], truth)  # predicted [2, 4): IoU 1/3
    assert segment_average_precision([shifted]) == 0.0
    assert segment_average_precision([shifted], iou=0.3) == 1.0


def test_segment_ap_ranks_predictions_and_counts_misses():
    videos = [
        timeline("a", [0.1, 0.9, 0.9, 0.1], (1.0, 3.0)),  # hit, score 0.9
        timeline("b", [0.6, 0.1, 0.1, 0.1], None),  # false alarm on a real video, score 0.6
        timeline("c", [0.1, 0.1, 0.7, 0.7], (2.0, 4.0)),  # hit, score 0.7: ranked before the false alarm
        timeline("d", [0.1, 0.1, 0.1, 0.1], (0.0, 2.0)),  # missed: no prediction
    ]
    # ranks: a (TP, precision 1), c (TP, 2/2), b (FP); 2 of 3 true segments found
    assert segment_average_precision(videos) == pytest.approx((1 + 1) / 3)
    videos[2] = timeline("c", [0.1, 0.1, 0.55, 0.55], (2.0, 4.0))  # now after the false alarm
    assert segment_average_precision(videos) == pytest.approx((1 + 2 / 3) / 3)
    # two predictions in one video: only one can match its segment
    double = [timeline("e", [0.9, 0.9, 0.1, 0.8, 0.8], (0.0, 2.0))]
    assert segment_average_precision(double) == 1.0
    assert np.isnan(segment_average_precision([timeline("r", [0.9], None)]))


def test_per_second_auc_counts_the_seconds_of_every_video():
    videos = [timeline("p", [0.2, 0.6, 0.3], (1.0, 2.0)), timeline("r", [0.7, 0.1], None)]
    # fake second 0.6 against reals 0.2, 0.3, 0.7, 0.1: above three of four
    assert per_second_auc(videos) == pytest.approx(0.75)


def _binormal(
    rng: np.random.Generator, reals: int, fakes: int, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true AUC is Φ(shift / √2): reals ~ N(0, 1), fakes ~ N(shift, 1), squashed to (0, 1)."""
    z = np.r_[rng.normal(0.0, 1.0, reals), rng.normal(shift, 1.0, fakes)]
    return np.r_[np.zeros(reals), np.ones(fakes)], 1 / (1 + np.exp(-z))


def test_bootstrap_auc_intervals_cover_the_true_auc_about_as_often_as_they_say():
    """Small sets as ours (29 reals, 18 fakes): over 120 draws the 95 % interval holds the true
    AUC (Φ(1/√2) = 0.760) in at least 85 % of them, and its point estimate lies inside it."""
    from train.metrics import bootstrap_intervals

    truth = 0.5 * (1 + math.erf(1.0 / 2))  # Φ(1/√2)
    rng = np.random.default_rng(0)
    covered, widths = 0, []
    for draw in range(120):
        y, p = _binormal(rng, 29, 18, 1.0)
        i = bootstrap_intervals(y, p, resamples=400, seed=draw)["auc"]
        assert i.low <= roc_auc(y, p) <= i.high
        covered += i.low <= truth <= i.high
        widths.append(i.high - i.low)
    assert covered / 120 >= 0.85
    y, p = _binormal(np.random.default_rng(1), 290, 180, 1.0)  # ten times the videos: ~√10 narrower
    wide = bootstrap_intervals(y, p, resamples=400)["auc"]
    assert wide.high - wide.low < 0.5 * np.mean(widths)


def test_bootstrap_intervals_per_category_and_only_with_enough_videos():
    from train.metrics import bootstrap_intervals

    y, p = _binormal(np.random.default_rng(2), 20, 12, 1.5)
    cats = ["real"] * 20 + ["lip_sync"] * 8 + ["face_swap"] * 4
    got = bootstrap_intervals(y, p, cats, resamples=300)
    assert set(got) == {"auc", "log_loss", "balanced_log_loss", "auc_vs_real:lip_sync"}  # 4 face swaps: none
    loss = got["log_loss"]
    assert loss.low <= log_loss(y, p) <= loss.high
    assert got == bootstrap_intervals(y, p, cats, resamples=300)  # seeded
    assert bootstrap_intervals(y[:24], p[:24]) == {}  # 4 fakes
    report = evaluate_scores(y, p, cats, resamples=300)
    assert report.to_dict()["intervals"]["auc"] == got["auc"].to_list()
    assert evaluate_scores(y, p, cats).intervals == {}


def test_paired_differences_see_what_two_separate_intervals_cannot():
    """B = A with every fake's log-odds lowered a little (its ranking worse by a few pairs): the
    paired interval of A − B excludes 0 while A's and B's own intervals overlap; A against
    itself differs by exactly 0."""
    from train.metrics import bootstrap_intervals, paired_differences

    rng = np.random.default_rng(3)
    y, a = _binormal(rng, 30, 20, 1.2)
    b = 1 / (1 + np.exp(-(np.log(a / (1 - a)) - 0.4 * y)))
    rows = {r.figure: r for r in paired_differences(y, a, b, resamples=1000)}
    auc = rows["auc"]
    assert auc.difference == pytest.approx(roc_auc(y, a) - roc_auc(y, b))
    assert auc.difference > 0 and auc.interval.low > 0 and auc.a_better > 0.975
    ia, ib = (
        bootstrap_intervals(y, a, resamples=1000)["auc"],
        bootstrap_intervals(y, b, resamples=1000)["auc"],
    )
    assert ib.high > ia.low  # separately, the two overlap
    same = {r.figure: r for r in paired_differences(y, a, a, resamples=200)}
    assert same["log_loss"].interval.to_list() == [0.0, 0.0] and same["auc"].a_better == 0.0
    with pytest.raises(ValueError, match="needs at least 5"):
        paired_differences(y[:33], a[:33], b[:33])


def test_big_sets_are_resampled_a_few_rows_at_a_time_to_the_same_figures():
    """Memory stays flat for a big set: figures computed a few resamples at a time are the ones
    computed all at once (the draws do not depend on how many rows a pass holds)."""
    from train.metrics import _resampled_figures

    y, p = _binormal(np.random.default_rng(4), 30, 20, 1.0)
    cats = ["real"] * 30 + ["lip_sync"] * 12 + ["talking_head"] * 8
    whole = _resampled_figures(y.astype(int), [p, p**2], cats, 450, 0, 1e-7)
    sliced = _resampled_figures(y.astype(int), [p, p**2], cats, 450, 0, 1e-7, cells=7 * len(y))
    assert set(whole) == set(sliced) and whole["auc"].shape == (2, 450)
    for key in whole:
        np.testing.assert_array_equal(whole[key], sliced[key])
