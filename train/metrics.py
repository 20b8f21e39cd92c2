"""Binary detection metrics: ROC AUC, log loss, average precision, EER, thresholded accuracy.

Scores are probabilities of "fake" (label 1). A decision threshold is chosen on validation
scores (Youden's J or the EER point) and then applied, unchanged, to the test scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm

THRESHOLD_METHODS = ("youden", "eer")
INTERVAL_LEVEL = 0.95  # two-sided percentile interval of the stratified bootstrap
MIN_INTERVAL_VIDEOS = 5  # fewer reals, fakes or fakes of one kind: no interval for them
MODEL_THRESHOLD = 0.5  # a model's own decision: fake when its probability is at least this


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    p = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} scores")
    if len(y) and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(p).all():
        raise ValueError("scores contain NaN or infinity")
    return y, p


def _both_classes(y: np.ndarray) -> bool:
    return bool((y == 0).any() and (y == 1).any())


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    y, p = _arrays(labels, scores)
    return float(skm.roc_auc_score(y, p)) if _both_classes(y) else math.nan


def average_precision(labels, scores) -> float:
    y, p = _arrays(labels, scores)
    return float(skm.average_precision_score(y, p)) if (y == 1).any() else math.nan


def log_loss(labels, scores, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities are clipped to [eps, 1 - eps] as the challenge did."""
    y, p = _arrays(labels, scores)
    if not len(y):
        return math.nan
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def balanced_log_loss(labels, scores, eps: float = 1e-7) -> float:
    """The mean of the reals' and the fakes' log losses: what a set with as many of each would
    score, so a test set's class balance (unknown in advance) does not decide the figure."""
    y, p = _arrays(labels, scores)
    if not _both_classes(y):
        return math.nan
    return 0.5 * (log_loss(y[y == 0], p[y == 0], eps) + log_loss(y[y == 1], p[y == 1], eps))


def _auc_rows(fakes: np.ndarray, reals: np.ndarray) -> np.ndarray:
    """AUC of each row pair (fakes (B, F), reals (B, R)): the Mann-Whitney statistic from the
    joint ranks, ties counted half."""
    from scipy.stats import rankdata

    both = np.concatenate([fakes, reals], axis=1)
    ranks = rankdata(both, axis=1)[:, : fakes.shape[1]]
    f, r = fakes.shape[1], reals.shape[1]
    return (ranks.sum(axis=1) - f * (f + 1) / 2) / (f * r)


@dataclass(frozen=True)
class Interval:
    """A figure's stratified-bootstrap percentile interval (``INTERVAL_LEVEL``)."""

    low: float
    high: float

    def to_list(self) -> list[float]:
        return [self.low, self.high]


def _resampled_figures(
    y: np.ndarray,
    score_sets: Sequence[np.ndarray],
    categories: Sequence[str] | None,
    resamples: int,
    seed: int,
    eps: float,
    chunk: int = 200,
    cells: int = 2_000_000,
) -> dict[str, np.ndarray]:
    """Each figure over ``resamples`` stratified resamples, for each score set on the *same*
    resampled videos (so differences are paired): key → (sets, resamples). Reals and each fake
    category are drawn with replacement apart, keeping their counts; a category with fewer than
    ``MIN_INTERVAL_VIDEOS`` gets no AUC of its own (a bootstrap of 2 videos says nothing)."""
    cats = np.asarray(
        list(categories) if categories is not None else ["fake" if v else "real" for v in y], dtype=object
    )
    if len(cats) != len(y):
        raise ValueError(f"{len(cats)} categories for {len(y)} scores")
    rng = np.random.default_rng(seed)
    ps = np.stack([np.asarray(s, dtype=np.float64) for s in score_sets])  # (sets, videos)
    q = np.clip(ps, eps, 1 - eps)
    losses = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    real = np.flatnonzero(y == 0)
    fake = np.flatnonzero(y == 1)
    groups = {str(c): np.flatnonzero((cats == c) & (y == 1)) for c in sorted(set(cats[y == 1].tolist()))}
    own_auc = [c for c, idx in groups.items() if categories is not None and len(idx) >= MIN_INTERVAL_VIDEOS]
    figures: dict[str, list[np.ndarray]] = {"auc": [], "log_loss": [], "balanced_log_loss": []}
    figures.update({f"auc_vs_real:{c}": [] for c in own_auc})
    rows_at_once = max(1, cells // len(y))  # big sets: figures computed a few resamples at a time
    for start in range(0, resamples, chunk):  # draws in fixed blocks: the same resamples at any size
        b = min(chunk, resamples - start)
        r_all = rng.choice(real, size=(b, len(real)))
        g_all = {c: rng.choice(idx, size=(b, len(idx))) for c, idx in groups.items()}
        for lo in range(0, b, rows_at_once):
            rs = slice(lo, lo + rows_at_once)
            r_idx, g_idx = r_all[rs], {c: g[rs] for c, g in g_all.items()}
            f_idx = np.concatenate(list(g_idx.values()), axis=1)  # each category keeps its count
            rows: dict[str, list[np.ndarray]] = {key: [] for key in figures}
            for p, loss in zip(ps, losses, strict=True):
                rows["auc"].append(_auc_rows(p[f_idx], p[r_idx]))
                real_loss, fake_loss = loss[r_idx].mean(axis=1), loss[f_idx].mean(axis=1)
                rows["log_loss"].append((real_loss * len(real) + fake_loss * len(fake)) / len(y))
                rows["balanced_log_loss"].append(0.5 * (real_loss + fake_loss))
                for c in own_auc:
                    rows[f"auc_vs_real:{c}"].append(_auc_rows(p[g_idx[c]], p[r_idx]))
            for key, per_set in rows.items():
                figures[key].append(np.stack(per_set))
    return {key: np.concatenate(parts, axis=1) for key, parts in figures.items()}


def _percentiles(values: np.ndarray) -> Interval:
    tail = 100 * (1 - INTERVAL_LEVEL) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return Interval(float(lo), float(hi))


def _enough(y: np.ndarray) -> bool:
    return int((y == 0).sum()) >= MIN_INTERVAL_VIDEOS and int((y == 1).sum()) >= MIN_INTERVAL_VIDEOS


def bootstrap_intervals(
    labels,
    scores,
    categories: Sequence[str] | None = None,
    resamples: int = 2000,
    seed: int = 0,
    eps: float = 1e-7,
) -> dict[str, Interval]:
    """How far AUC, log loss and balanced log loss (and each fake category's AUC against the
    reals) could move with other videos of the same kinds (``_resampled_figures``): percentile
    intervals, seeded. Keys: ``auc``, ``log_loss``, ``balanced_log_loss``, ``auc_vs_real:<cat>``.
    Empty with fewer than ``MIN_INTERVAL_VIDEOS`` reals or fakes."""
    y, p = _arrays(labels, scores)
    if not _enough(y) or resamples < 1:
        return {}
    figures = _resampled_figures(y, [p], categories, resamples, seed, eps)
    return {key: _percentiles(values[0]) for key, values in figures.items()}


@dataclass(frozen=True)
class PairedDifference:
    """One figure of detector A minus detector B on the same videos: the difference, its
    paired-bootstrap interval, and the share of resamples in which A is the better one."""

    figure: str
    a: float
    b: float
    difference: float
    interval: Interval
    a_better: float  # share of resamples: higher AUC, lower log loss

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = self.interval.to_list()
        return d


def paired_differences(
    labels,
    scores_a,
    scores_b,
    categories: Sequence[str] | None = None,
    resamples: int = 2000,
    seed: int = 0,
    eps: float = 1e-7,
) -> list[PairedDifference]:
    """A − B for each figure of ``bootstrap_intervals``, both detectors scored on the same
    resampled videos each time — the question "is A better than B on videos like these?", which
    two separate intervals answer too cautiously when the detectors' errors go together."""
    y, a = _arrays(labels, scores_a)
    _, b = _arrays(labels, scores_b)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} scores for A but {len(b)} for B")
    if not _enough(y):
        raise ValueError(f"a paired comparison needs at least {MIN_INTERVAL_VIDEOS} reals and fakes")
    figures = _resampled_figures(y, [a, b], categories, resamples, seed, eps)
    point = {"auc": roc_auc, "log_loss": log_loss, "balanced_log_loss": balanced_log_loss}
    cats = np.asarray(list(categories), dtype=object) if categories is not None else None
    out = []
    for key, values in figures.items():
        if key in point:
            fa, fb = point[key](y, a), point[key](y, b)
        else:  # auc_vs_real:<category>
            sel = (y == 0) | (cats == key.split(":", 1)[1])
            fa, fb = roc_auc(y[sel], a[sel]), roc_auc(y[sel], b[sel])
        diff = values[0] - values[1]
        better = diff > 0 if key.startswith("auc") else diff < 0
        out.append(PairedDifference(key, fa, fb, fa - fb, _percentiles(diff), float(better.mean())))
    return out


def brier_score(labels, scores) -> float:
    """Mean squared difference between probability and label (0.25 for a constant 0.5)."""
    y, p = _arrays(labels, scores)
    return float(np.mean((p - y) ** 2)) if len(y) else math.nan


CALIBRATION_BINS = 10


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_probability: float  # NaN for an empty bin
    fake_fraction: float


def reliability_bins(labels, scores, bins: int = CALIBRATION_BINS) -> list[ReliabilityBin]:
    """Equal-width probability bins: how many videos, their mean probability, the share fake."""
    y, p = _arrays(labels, scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = index == b
        n = int(sel.sum())
        out.append(
            ReliabilityBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(p[sel].mean()) if n else math.nan,
                float(y[sel].mean()) if n else math.nan,
            )
        )
    return out


def expected_calibration_error(labels, scores, bins: int = CALIBRATION_BINS) -> float:
    """ECE: the bins' |mean probability - share fake|, weighted by how many videos each holds."""
    y, _ = _arrays(labels, scores)
    if not len(y):
        return math.nan
    return float(
        sum(
            b.n * abs(b.mean_probability - b.fake_fraction)
            for b in reliability_bins(labels, scores, bins)
            if b.n
        )
        / len(y)
    )


def equal_error_rate(labels, scores) -> tuple[float, float]:
    """(EER, threshold): the rate where false-positive and false-negative rates meet.

    Between the two ROC operating points that bracket the crossing, both rates move
    linearly, so the crossing is found exactly by linear interpolation; the threshold is
    interpolated the same way (between the two points' thresholds).
    """
    y, p = _arrays(labels, scores)
    if not _both_classes(y):
        return math.nan, math.nan
    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
    thr = np.where(np.isinf(thr), np.nextafter(p.max(), np.inf), thr)  # sklearn's first point is +inf
    fnr = 1 - tpr
    diff = fnr - fpr  # starts at 1 (threshold above all scores), ends at -1
    k = int(np.argmax(diff <= 0))  # first operating point where fnr <= fpr
    if diff[k] == 0 or k == 0:
        return float(fpr[k]), float(thr[k])
    w = diff[k - 1] / (diff[k - 1] - diff[k])  # fraction of the way from point k-1 to k
    rate = fpr[k - 1] + w * (fpr[k] - fpr[k - 1])
    return float(rate), float(thr[k - 1] + w * (thr[k] - thr[k - 1]))


def youden_threshold(labels, scores) -> float:
    """Threshold maximising TPR - FPR (predict fake when score >= threshold)."""
    y, p = _arrays(labels, scores)
    if not _both_classes(y):
        return 0.5
    fpr, tpr, thr = skm.roc_curve(y, p)
    k = int(np.argmax(tpr - fpr))
    return float(min(thr[k], 1.0)) if np.isfinite(thr[k]) else 1.0


def balanced_accuracy_threshold(labels, scores) -> tuple[float, float]:
    """(threshold, balanced accuracy) of the threshold on raw ``scores`` (any scale, e.g. a
    distance) that maximises (TPR + TNR) / 2, predicting fake when score >= threshold. The
    candidates are the midpoints between consecutive distinct scores (and just outside
    them), so the threshold sits between the classes, not on a sample; ties go to the lowest.
    (NaN, NaN) with only one class."""
    y, p = _arrays(labels, scores)
    if not _both_classes(y):
        return math.nan, math.nan
    values = np.unique(p)
    spread = max(float(values[-1] - values[0]), 1e-6)
    candidates = np.concatenate([[values[0] - spread], (values[:-1] + values[1:]) / 2, [values[-1] + spread]])
    fake = p[None, :] >= candidates[:, None]
    tpr = fake[:, y == 1].mean(axis=1)
    tnr = (~fake[:, y == 0]).mean(axis=1)
    balanced = (tpr + tnr) / 2
    best = int(np.argmax(balanced))
    return float(candidates[best]), float(balanced[best])


def choose_threshold(labels, scores, method: str = "youden") -> float:
    if method == "youden":
        return youden_threshold(labels, scores)
    if method == "eer":
        t = equal_error_rate(labels, scores)[1]
        return 0.5 if math.isnan(t) else t
    raise ValueError(f"threshold method must be one of {THRESHOLD_METHODS}, got {method!r}")


@dataclass
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @classmethod
    def at(cls, labels, scores, threshold: float) -> Confusion:
        y, p = _arrays(labels, scores)
        pred = p >= threshold
        return cls(
            tp=int(np.sum(pred & (y == 1))),
            fp=int(np.sum(pred & (y == 0))),
            tn=int(np.sum(~pred & (y == 0))),
            fn=int(np.sum(~pred & (y == 1))),
        )

    @property
    def accuracy(self) -> float:
        n = self.tp + self.fp + self.tn + self.fn
        return (self.tp + self.tn) / n if n else math.nan

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def tnr(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else math.nan


@dataclass
class CategoryReport:
    """One category's scores: fakes are measured against all reals (AUC) and at the threshold."""

    n: int
    label: int
    mean_score: float
    detected: float  # fakes: fraction scored >= threshold; reals: fraction scored < threshold
    auc_vs_real: float | None = None


@dataclass
class DetectionReport:
    n: int
    n_fake: int
    auc: float
    log_loss: float
    average_precision: float
    eer: float
    eer_threshold: float
    threshold: float
    threshold_source: str  # e.g. "youden on validation (n=12)"
    accuracy: float
    confusion: Confusion
    per_category: dict[str, CategoryReport] = field(default_factory=dict)
    brier: float = math.nan
    ece: float = math.nan  # expected calibration error, CALIBRATION_BINS equal-width bins
    balanced_log_loss: float = math.nan  # mean of the reals' and the fakes' log loss
    # at probability 0.5: the model's own decision (a detector with a threshold in its config,
    # MDS, folds it in there), whatever threshold the report chose above
    model_confusion: Confusion | None = None
    # stratified-bootstrap intervals (``bootstrap_intervals``), when asked for: auc, log_loss,
    # balanced_log_loss, auc_vs_real:<category>
    intervals: dict[str, Interval] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["intervals"] = {k: v.to_list() for k, v in self.intervals.items()}
        d["confusion"]["accuracy"] = self.confusion.accuracy
        if self.model_confusion is not None:
            d["model_confusion"]["accuracy"] = self.model_confusion.accuracy
            d["model_confusion"]["threshold"] = MODEL_THRESHOLD
        return _json_safe(d)


def _json_safe(x):
    """NaN is not JSON: report it as null."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def evaluate_scores(
    labels,
    scores,
    categories: Sequence[str] | None = None,
    threshold: float | None = None,
    threshold_method: str = "youden",
    threshold_source: str | None = None,
    resamples: int = 0,
) -> DetectionReport:
    """All metrics for one set of scores. Without ``threshold`` one is chosen on these very
    scores (optimistic; pass a validation threshold for an honest accuracy). ``resamples`` > 0
    adds bootstrap intervals (``bootstrap_intervals``, seed 0)."""
    y, p = _arrays(labels, scores)
    if threshold is None:
        threshold = choose_threshold(y, p, threshold_method)
        threshold_source = threshold_source or f"{threshold_method} on the evaluated scores (optimistic)"
    eer, eer_thr = equal_error_rate(y, p)
    conf = Confusion.at(y, p, threshold)
    report = DetectionReport(
        n=len(y),
        n_fake=int(y.sum()),
        auc=roc_auc(y, p),
        log_loss=log_loss(y, p),
        average_precision=average_precision(y, p),
        eer=eer,
        eer_threshold=eer_thr,
        threshold=float(threshold),
        threshold_source=threshold_source or "given",
        accuracy=conf.accuracy,
        confusion=conf,
        model_confusion=Confusion.at(y, p, MODEL_THRESHOLD),
        brier=brier_score(y, p),
        ece=expected_calibration_error(y, p),
        balanced_log_loss=balanced_log_loss(y, p),
        intervals=bootstrap_intervals(y, p, categories, resamples) if resamples else {},
    )
    if categories is not None:
        cats = np.asarray(list(categories), dtype=object)
        if len(cats) != len(y):
            raise ValueError(f"{len(cats)} categories for {len(y)} scores")
        real = y == 0
        for name in sorted(set(cats.tolist())):
            sel = cats == name
            label = int(round(y[sel].mean()))
            detected = np.mean(p[sel] >= threshold) if label == 1 else np.mean(p[sel] < threshold)
            auc = None
            if label == 1 and real.any():
                both = sel | real
                auc = roc_auc(y[both], p[both])
            report.per_category[name] = CategoryReport(
                n=int(sel.sum()),
                label=label,
                mean_score=float(p[sel].mean()),
                detected=float(detected),
                auc_vs_real=auc,
            )
    return report


# --- localisation: where in a video the fake is ------------------------------------------------

SEGMENT_IOU = 0.5  # a predicted segment counts when its temporal IoU with the truth reaches this
SECOND_OVERLAP = 0.5  # a second is fake when at least this much of it lies inside the fake segment
SEGMENT_THRESHOLD = 0.5  # seconds above this probability form predicted segments


@dataclass(frozen=True)
class VideoTimeline:
    """One labelled video's per-second fake probabilities (``core.aggregation.per_second`` of its
    time logits, max over face tracks) against its true fake segment."""

    name: str
    seconds: np.ndarray  # (S,) int, ascending: the whole seconds that hold a score
    probabilities: np.ndarray  # (S,) P(fake) of each of those seconds
    segment: tuple[float, float] | None  # the fake part in seconds; None: a real video


def second_labels(
    seconds: Sequence[int], segment: tuple[float, float] | None, overlap: float = SECOND_OVERLAP
) -> np.ndarray:
    """1 for each second ``[s, s + 1)`` that lies at least ``overlap`` inside ``segment``."""
    s = np.asarray(seconds, dtype=np.float64)
    if segment is None:
        return np.zeros(len(s), dtype=np.int64)
    inside = np.clip(np.minimum(s + 1, segment[1]) - np.maximum(s, segment[0]), 0.0, None)
    return (inside >= overlap - 1e-9).astype(np.int64)


def predicted_segments(
    seconds: Sequence[int], probabilities: Sequence[float], threshold: float = SEGMENT_THRESHOLD
) -> list[tuple[float, float, float]]:
    """Runs of consecutive whole seconds with probability > ``threshold`` → ``(start, end,
    score)``: ``[first second, last second + 1)``, scored by the run's mean probability. A
    second without a score breaks a run (nothing says it was fake)."""
    s = np.asarray(seconds, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    if s.shape != p.shape:
        raise ValueError(f"{len(s)} seconds but {len(p)} probabilities")
    out: list[tuple[float, float, float]] = []
    first: int | None = None  # index of the current run's first second
    for k in range(len(s) + 1):
        above = k < len(s) and p[k] > threshold
        if above and first is not None and s[k] == s[k - 1] + 1:
            continue  # the run goes on
        if first is not None:  # the run ended at k - 1
            out.append((float(s[first]), float(s[k - 1] + 1), float(p[first:k].mean())))
        first = k if above else None
    return out


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time intervals ``(start, end)``."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def segment_average_precision(
    timelines: Sequence[VideoTimeline], iou: float = SEGMENT_IOU, threshold: float = SEGMENT_THRESHOLD
) -> float:
    """Detection AP over every video's predicted segments (``predicted_segments``), ranked by
    score: a prediction is a true positive when its IoU with a not yet matched true segment of
    its video is >= ``iou`` (greedy, best-scored first), else a false positive; AP is the mean of
    the precision at each true positive's rank over all true segments (missed ones add 0), as
    ``sklearn``'s average precision sums it. NaN when no video has a true segment."""
    n_true = sum(t.segment is not None for t in timelines)
    if n_true == 0:
        return math.nan
    ranked = sorted(
        ((score, i, (start, end)) for i, t in enumerate(timelines)
         for start, end, score in predicted_segments(t.seconds, t.probabilities, threshold)),
        key=lambda x: -x[0],
    )  # fmt: skip
    matched: set[int] = set()
    tp, precisions = 0, []
    for rank, (_, i, span) in enumerate(ranked, start=1):
        truth = timelines[i].segment
        if truth is not None and i not in matched and temporal_iou(span, truth) >= iou:
            matched.add(i)
            tp += 1
            precisions.append(tp / rank)
    return float(sum(precisions) / n_true)


def per_second_auc(timelines: Sequence[VideoTimeline], overlap: float = SECOND_OVERLAP) -> float:
    """ROC AUC over every scored second of every video: fake seconds (``second_labels``) against
    the rest; NaN when one class is absent."""
    if not timelines:
        return math.nan
    y = np.concatenate([second_labels(t.seconds, t.segment, overlap) for t in timelines])
    p = np.concatenate([np.asarray(t.probabilities, dtype=np.float64) for t in timelines])
    return roc_auc(y, p)


@dataclass
class LocalisationReport:
    videos: int
    videos_with_segment: int  # true segments (partial fakes and fully fake videos)
    seconds: int
    fake_seconds: int
    per_second_auc: float
    segment_ap: float
    predicted_segments: int
    iou: float = SEGMENT_IOU
    threshold: float = SEGMENT_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def evaluate_localisation(
    timelines: Sequence[VideoTimeline], iou: float = SEGMENT_IOU, threshold: float = SEGMENT_THRESHOLD
) -> LocalisationReport:
    """Per-second AUC and segment AP at ``iou`` for a set of labelled videos."""
    labels = [second_labels(t.seconds, t.segment) for t in timelines]
    return LocalisationReport(
        videos=len(timelines),
        videos_with_segment=sum(t.segment is not None for t in timelines),
        seconds=int(sum(len(y) for y in labels)),
        fake_seconds=int(sum(int(y.sum()) for y in labels)),
        per_second_auc=per_second_auc(timelines),
        segment_ap=segment_average_precision(timelines, iou, threshold),
        predicted_segments=sum(
            len(predicted_segments(t.seconds, t.probabilities, threshold)) for t in timelines
        ),
        iou=iou,
        threshold=threshold,
    )
