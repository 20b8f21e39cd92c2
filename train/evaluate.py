"""``python -m train eval``: a JSON report and a ROC-curve PNG for a set of predictions.

Either a submission CSV (``filename,probability``) against a labels file, or a model
(training checkpoint or exported weights) run over a preprocessing cache's split. The
decision threshold for accuracy and the confusion matrix is chosen on validation scores
(another CSV, or the cache's ``val`` split) and applied unchanged to the evaluated ones;
without validation scores it is chosen on the evaluated scores and the report says so.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.calibration import IDENTITY, Calibration
from core.files import atomic_path, atomic_write
from preprocess.datasets import parse_label, parse_segment
from train.metrics import (
    INTERVAL_LEVEL,
    CategoryReport,
    DetectionReport,
    LocalisationReport,
    VideoTimeline,
    balanced_accuracy_threshold,
    choose_threshold,
    evaluate_localisation,
    evaluate_scores,
    reliability_bins,
)


@dataclass
class LabelledScores:
    """Video-level scores joined with their labels."""

    filenames: list[str]
    labels: np.ndarray
    scores: np.ndarray
    categories: list[str]
    missing: list[str]  # labelled videos without a score


@dataclass
class VideoLabel:
    label: int
    split: str
    category: str
    # A partially faked video's manipulated segment in seconds (labels' fake_start,fake_end);
    # None for real videos and for fakes faked throughout.
    segment: tuple[float, float] | None = None


def read_labels(path: str | Path) -> dict[str, VideoLabel]:
    """``filename -> VideoLabel`` from a labels CSV (``filename,label[,split][,category]
    [,fake_start,fake_end]``, labels 0/1/real/fake) or a DFDC ``metadata.json``; unlabelled
    rows are skipped. Files without the segment columns read as before (no segments)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found")
    out: dict[str, VideoLabel] = {}
    if path.suffix.lower() == ".json":
        for name, entry in json.loads(path.read_text(encoding="utf-8")).items():
            label = parse_label(entry.get("label", ""), f"{path}:{name}")
            if label >= 0:
                out[name] = VideoLabel(label, entry.get("split", ""), "fake" if label else "real")
        return out
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a labels CSV needs 'filename' and 'label' columns")
        for line, row in enumerate(reader, start=2):
            label = parse_label(row["label"], f"{path}:{line}")
            if label < 0:
                continue
            category = (row.get("category") or "").strip() or ("fake" if label else "real")
            segment = parse_segment(row.get("fake_start"), row.get("fake_end"), f"{path}:{line}")
            if segment is not None and label != 1:
                raise ValueError(f"{path}:{line}: a fake segment on a video not labelled fake")
            out[Path(row["filename"]).name] = VideoLabel(
                label, (row.get("split") or "").strip(), category, segment
            )
    return out


def read_submission(path: str | Path) -> dict[str, float]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: submission CSV not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"filename", "probability"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a submission CSV needs 'filename' and 'probability' columns")
        out = {}
        for line, row in enumerate(reader, start=2):
            try:
                p = float(row["probability"])
            except ValueError as err:
                raise ValueError(
                    f"{path}:{line}: probability {row['probability']!r} is not a number"
                ) from err
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{path}:{line}: probability {p} is outside [0, 1]")
            out[Path(row["filename"]).name] = p
    return out


def join(scores: dict[str, float], labels: dict[str, VideoLabel], split: str | None = None) -> LabelledScores:
    """Scores of the labelled videos (of ``split`` when given); unscored labelled videos are listed."""
    names, missing = [], []
    for name, lab in sorted(labels.items()):
        if split and lab.split != split:
            continue
        (names if name in scores else missing).append(name)
    if not names:
        raise ValueError(f"no scored video has a label{f' in split {split!r}' if split else ''}")
    return LabelledScores(
        filenames=names,
        labels=np.array([labels[n].label for n in names]),
        scores=np.array([scores[n] for n in names]),
        categories=[labels[n].category for n in names],
        missing=missing,
    )


def report_for(
    evaluated: LabelledScores,
    validation: LabelledScores | None = None,
    threshold: float | None = None,
    method: str = "youden",
    resamples: int = 0,
) -> DetectionReport:
    """``evaluated``'s report: the threshold given, else chosen on ``validation``, else on the
    evaluated scores; ``resamples`` > 0 adds bootstrap intervals."""
    source = "given"
    if threshold is None and validation is not None:
        threshold = choose_threshold(validation.labels, validation.scores, method)
        source = f"{method} on validation (n={len(validation.labels)})"
    return evaluate_scores(
        evaluated.labels,
        evaluated.scores,
        evaluated.categories,
        threshold=threshold,
        threshold_method=method,
        threshold_source=source if threshold is not None else None,
        resamples=resamples,
    )


def per_source(
    evaluated: LabelledScores, sources: dict[str, str], threshold: float, resamples: int = 0
) -> DetectionReport:
    """The report with each video's source (``sources``: file name → source, e.g. from
    ``train.calibration.read_sources``) as its category (``real: SOURCE`` and ``fake: SOURCE``):
    its ``per_category`` holds every fake source's AUC against all reals (with ``resamples``,
    an interval for each source of 5 or more) and which real sources look fake. A video the
    sources do not name keeps its category."""
    groups = [
        f"{'fake' if y else 'real'}: {sources[n]}" if sources.get(n) else c
        for n, y, c in zip(evaluated.filenames, evaluated.labels, evaluated.categories, strict=True)
    ]
    return evaluate_scores(
        evaluated.labels, evaluated.scores, groups, threshold=threshold, resamples=resamples
    )


def save_figure(fig, path: Path) -> Path:
    """Lay out, write atomically and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path


def plot_roc(
    labels: np.ndarray, scores: np.ndarray, report: DetectionReport, path: str | Path, title: str = ""
) -> Path:
    """ROC curve with the operating point at the report's threshold, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    path = Path(path)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    if len(set(labels.tolist())) == 2:
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, lw=2, label=f"AUC {report.auc:.3f}")
        c = report.confusion
        ax.plot([1 - c.tnr], [c.tpr], "o", color="C3", label=f"threshold {report.threshold:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(title or f"ROC (n={report.n}, fakes {report.n_fake})", fontsize=10)
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_reliability(
    labels: np.ndarray, scores: np.ndarray, report: DetectionReport, path: str | Path
) -> Path:
    """Reliability diagram: each probability bin's share of fakes against its mean probability
    (on the diagonal when calibrated), the bins' video counts below; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    bins = reliability_bins(labels, scores)
    fig, (ax, ax_n) = plt.subplots(
        2, 1, figsize=(4.5, 5.4), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    full = [b for b in bins if b.n]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="calibrated")
    ax.plot(
        [b.mean_probability for b in full],
        [b.fake_fraction for b in full],
        "o-",
        color="C0",
        label=f"ECE {report.ece:.3f}  log loss {report.log_loss:.3f}",
    )
    ax.set(ylabel="share of fakes in the bin", xlim=(0, 1), ylim=(-0.02, 1.02))
    ax.set_title(f"Reliability (n={report.n}, fakes {report.n_fake})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax_n.bar([(b.low + b.high) / 2 for b in bins], [b.n for b in bins], width=0.09, color="C1")
    ax_n.set(xlabel="predicted probability of fake", ylabel="videos")
    return save_figure(fig, path)


def write_report(
    report: DetectionReport, scores: LabelledScores, out_dir: str | Path, extra: dict | None = None
) -> tuple[Path, Path]:
    """``report.json``, ``roc.png`` and ``reliability.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**report.to_dict(), "missing": scores.missing, **(extra or {})}
    data["videos"] = [
        {"filename": n, "label": int(y), "score": float(p), "category": c}
        for n, y, p, c in zip(scores.filenames, scores.labels, scores.scores, scores.categories, strict=True)
    ]
    json_path = out_dir / "report.json"
    atomic_write(json_path, json.dumps(data, indent=1) + "\n")
    plot_reliability(scores.labels, scores.scores, report, out_dir / "reliability.png")
    return json_path, plot_roc(scores.labels, scores.scores, report, out_dir / "roc.png")


def _figure(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _interval(report: DetectionReport, key: str) -> str:
    i = report.intervals.get(key)
    return f" [{i.low:.3f}, {i.high:.3f}]" if i is not None else ""


def format_report(report: DetectionReport) -> str:
    f = _figure
    c = report.confusion
    lines = [
        f"videos {report.n} (fake {report.n_fake})  AUC {f(report.auc)}{_interval(report, 'auc')}  "
        f"log-loss {f(report.log_loss)}{_interval(report, 'log_loss')}  "
        f"AP {f(report.average_precision)}  EER {f(report.eer)}",
        f"calibration: Brier {f(report.brier)}  ECE {f(report.ece)}  balanced log-loss "
        f"{f(report.balanced_log_loss)}{_interval(report, 'balanced_log_loss')}  "
        "(a constant 0.5 scores log-loss 0.6931, Brier 0.25)",
        f"threshold {report.threshold:.4f} ({report.threshold_source}): accuracy {f(report.accuracy)}  "
        f"TP {c.tp} FP {c.fp} TN {c.tn} FN {c.fn}",
    ]
    if report.model_confusion is not None:
        m = report.model_confusion
        lines.append(
            f"model's threshold (probability 0.5): accuracy {f(m.accuracy)}  TP {m.tp} FP {m.fp} TN {m.tn} FN {m.fn}"
        )
    lines += format_categories(report.per_category, report)
    if report.intervals:
        lines.append(
            f"[ ]: {INTERVAL_LEVEL:.0%} stratified-bootstrap intervals (reals and each kind of fake resampled apart)"
        )
    return "\n".join(lines)


def format_categories(
    categories: dict[str, CategoryReport], report: DetectionReport | None = None
) -> list[str]:
    f = _figure
    lines = []
    for name, cat in categories.items():
        what = "caught" if cat.label == 1 else "passed"
        within = _interval(report, f"auc_vs_real:{name}") if report is not None else ""
        auc = f"  AUC vs real {f(cat.auc_vs_real)}{within}" if cat.auc_vs_real is not None else ""
        lines.append(
            f"  {name:<16} n {cat.n:<4} mean score {cat.mean_score:.3f}  {what} {f(cat.detected)}{auc}"
        )
    return lines


# --- scoring a cache with a model -------------------------------------------------------------


def load_scoring_model(
    checkpoint: str | Path | None = None, weights: str | Path | None = None
) -> torch.nn.Module:
    if (checkpoint is None) == (weights is None):
        raise ValueError("give exactly one of a checkpoint or weights")
    if checkpoint is not None:
        from train.module import load_checkpoint

        return load_checkpoint(checkpoint).scoring_model().eval()
    from models.registry import load_model

    return load_model(str(weights)).module


def scoring_calibration(weights: str | Path | None) -> Calibration:
    """The probability mapping exported weights carry (identity for a training checkpoint:
    the mapping is fitted at export)."""
    if weights is None:
        return IDENTITY
    from models.registry import load_model

    return load_model(str(weights)).calibration


@torch.no_grad()
def manifest_outputs(
    model: torch.nn.Module, manifest: str | Path, split: str, batch_size: int = 16
) -> Iterator[tuple[list[Any], list[np.ndarray]]]:
    """The model's outputs (numpy, float32) on the samples of ``split`` (``all``: every sample),
    a batch at a time, with the batch's manifest entries."""
    from train.data import SampleDataset, collate_batch, read_manifest

    chosen = [e for e in read_manifest(manifest) if split in ("all", e.split)]
    data = SampleDataset(chosen, type(model), model.config, keep_in_memory=False)
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        batch = collate_batch([data[i] for i in range(start, stop)])
        outputs = model(*(batch[name] for name in model.input_names))
        outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        yield chosen[start:stop], [o.float().numpy() for o in outputs]


def score_manifest(
    model: torch.nn.Module,
    manifest: str | Path,
    splits: Sequence[str],
    batch_size: int = 16,
    calibration: Calibration = IDENTITY,
) -> dict[str, dict[str, float]]:
    """``{split: {video filename: P(fake)}}``, each video's score the detector's
    ``video_aggregation`` over its face tracks, after ``calibration`` (as ``run.sh`` applies
    the weights' mapping); the split ``all`` is every sample."""
    from core.aggregation import aggregate

    out: dict[str, dict[str, float]] = {}
    for split in splits:
        tracks: dict[str, list[float]] = {}
        for entries, outputs in manifest_outputs(model, manifest, split, batch_size):
            for entry, p in zip(entries, calibration.apply(model.fake_probability(outputs)), strict=True):
                tracks.setdefault(entry.filename, []).append(float(p))
        out[split] = {name: aggregate(p, model.video_aggregation) for name, p in tracks.items()}
    return out


def score_ensemble_manifest(
    weights: str, manifest: str | Path, splits: Sequence[str], batch_size: int = 16
) -> dict[str, dict[str, float]]:
    """``score_manifest`` for an ensemble (``--weights a,b`` or an ensemble JSON), as ``run.sh``
    scores it: each member's calibrated video probability (its own rule over the face tracks),
    then the weighted mean of their log-odds under the ensemble's own mapping. A video is
    scored only where every member scored it."""
    from core.aggregation import combine_log_odds
    from models.registry import load_model
    from submission.ensemble import ensemble_settings, parse_members

    members = parse_members(weights)
    settings = ensemble_settings(weights)
    per_member = []
    for m in members:
        loaded = load_model(m.weights)  # once: the network and its own mapping
        per_member.append(score_manifest(loaded.module, manifest, splits, batch_size, loaded.calibration))
    out: dict[str, dict[str, float]] = {}
    for split in splits:
        names = sorted(set.intersection(*(set(scores[split]) for scores in per_member)))
        out[split] = {
            name: combine_log_odds(
                [scores[split][name] for scores in per_member],
                [m.weight for m in members],
                settings.calibration,
            )
            for name in names
        }
    return out


@dataclass
class ThresholdChoice:
    """A detector's decision threshold on its raw statistic (MDS: mean chunk distance), chosen
    on a labelled split's videos."""

    threshold: float
    balanced_accuracy: float
    split: str
    videos: int
    fakes: int
    skipped: int  # videos without the statistic (MDS: no audio)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "method": "max balanced accuracy over video statistics"}


def choose_model_threshold(
    model: torch.nn.Module, manifest: str | Path, split: str = "val", batch_size: int = 16
) -> ThresholdChoice:
    """The threshold on ``model.threshold_statistic`` that best separates ``split``'s labelled
    videos (max balanced accuracy); a video's statistic is the max over its face tracks (the
    probability is increasing in it, so this is the track a ``max`` video score takes)."""
    labels = manifest_labels(manifest)
    tracks: dict[str, list[float]] = {}
    for entries, outputs in manifest_outputs(model, manifest, split, batch_size):
        statistic = model.threshold_statistic(outputs)
        if statistic is None:
            raise ValueError(f"{type(model).__name__} has no decision threshold to choose")
        for entry, value in zip(entries, np.asarray(statistic, np.float64), strict=True):
            if entry.filename in labels:
                tracks.setdefault(entry.filename, []).append(float(value))
    videos = {n: max(v) for n, v in tracks.items() if not all(math.isnan(x) for x in v)}
    y = np.array([labels[n].label for n in videos])
    s = np.array([np.nanmax(tracks[n]) for n in videos])
    threshold, balanced = balanced_accuracy_threshold(y, s)
    if math.isnan(threshold):
        raise ValueError(
            f"{manifest}: split {split!r} needs labelled real and fake videos to choose a threshold "
            f"({int((y == 0).sum())} real, {int((y == 1).sum())} fake with the statistic)"
        )
    return ThresholdChoice(threshold, balanced, split, len(y), int(y.sum()), len(tracks) - len(videos))


def manifest_labels(manifest: str | Path) -> dict[str, VideoLabel]:
    from train.data import read_manifest

    return {
        e.filename: VideoLabel(e.label, e.split, e.category, e.fake_segment)
        for e in read_manifest(manifest)
        if e.label in (0, 1)
    }


# --- localisation ---------------------------------------------------------------------------


def has_segments(labels: dict[str, VideoLabel]) -> bool:
    """Whether any labelled video is a partial fake (localisation metrics are computable)."""
    return any(lab.segment is not None for lab in labels.values())


def true_segment(label: VideoLabel, duration: float) -> tuple[float, float] | None:
    """The fake part of a labelled video within the analysed ``duration``: its labelled segment
    (clipped), the whole analysed span for a fake without one, None for a real video (or a
    segment that lies past what was analysed)."""
    if label.label != 1:
        return None
    start, end = label.segment if label.segment is not None else (0.0, duration)
    end = min(end, duration) if duration > 0 else end
    return (start, end) if end > start else None


@torch.no_grad()
def manifest_timelines(
    model: torch.nn.Module,
    manifest: str | Path,
    split: str,
    labels: dict[str, VideoLabel],
    batch_size: int = 16,
) -> list[VideoTimeline] | None:
    """Per-second probabilities of each labelled video of ``split`` (``all``: every one): each
    face track's ``time_logits`` → ``core.aggregation.per_second``, then the maximum over the
    video's tracks per second (a second is fake if any face in it is, as videos take the max).
    None when the model has no time outputs."""
    from core.aggregation import per_second
    from preprocess.sample_file import load_sample
    from train.data import read_manifest

    detector = type(model)
    entries = [e for e in read_manifest(manifest) if split in ("all", e.split) and e.filename in labels]
    per_video: dict[str, dict[int, float]] = {}
    durations: dict[str, float] = {}
    for start in range(0, len(entries), batch_size):
        samples = [load_sample(e.sample) for e in entries[start : start + batch_size]]
        columns = [detector.time_columns(s, model.config) for s in samples]
        if any(c is None for c in columns):
            return None
        outputs = model(*(torch.from_numpy(x) for x in detector.batch_inputs(samples, model.config)))
        outputs = (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)
        logits = detector.time_logits(outputs)
        if logits is None:
            return None
        logits = logits.float().numpy()
        for sample, times, row in zip(samples, columns, logits, strict=True):
            name = sample.meta.video
            durations[name] = max(durations.get(name, 0.0), float(sample.meta.duration))
            seconds = per_video.setdefault(name, {})
            for second, p in per_second(times, row):
                seconds[second] = max(seconds.get(second, 0.0), p)
    timelines = []
    for name in sorted(per_video):
        seconds = sorted(per_video[name])
        timelines.append(
            VideoTimeline(
                name,
                np.asarray(seconds, dtype=np.int64),
                np.asarray([per_video[name][s] for s in seconds]),
                true_segment(labels[name], durations[name]),
            )
        )
    return timelines


def format_localisation(report: LocalisationReport) -> str:
    def f(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.4f}"

    return (
        f"localisation: videos {report.videos} ({report.videos_with_segment} with a fake segment), "
        f"seconds {report.seconds} (fake {report.fake_seconds})  per-second AUC {f(report.per_second_auc)}  "
        f"segment AP@{report.iou:g} {f(report.segment_ap)} ({report.predicted_segments} predicted segments, "
        f"seconds > {report.threshold:g})"
    )


def localisation_report(
    model: torch.nn.Module, manifest: str | Path, split: str, labels: dict[str, VideoLabel]
) -> LocalisationReport | None:
    """Per-second AUC and segment AP@0.5 of ``model`` on ``split``, or None when they cannot be
    computed: no labelled partial fake, or a model without time outputs."""
    if not has_segments(labels):
        return None
    timelines = manifest_timelines(model, manifest, split, labels)
    return evaluate_localisation(timelines) if timelines else None


def read_per_second(
    path: str | Path, labels: dict[str, VideoLabel], split: str | None = None
) -> list[VideoTimeline]:
    """Timelines from a per-second CSV (``filename,track,second,score``, what ``run.sh
    --per-second`` writes): max over tracks per second. A fully fake video's segment spans the
    seconds the CSV scores (the analysed duration is not in it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: per-second CSV not found")
    per_video: dict[str, dict[int, float]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"filename", "second", "score"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a per-second CSV needs 'filename', 'second' and 'score' columns")
        for line, row in enumerate(reader, start=2):
            try:
                second, score = int(float(row["second"])), float(row["score"])
            except ValueError as err:
                raise ValueError(f"{path}:{line}: second/score {row['second']!r}/{row['score']!r}") from err
            seconds = per_video.setdefault(Path(row["filename"]).name, {})
            seconds[second] = max(seconds.get(second, 0.0), score)
    timelines = []
    for name, lab in sorted(labels.items()):
        if name not in per_video or (split and lab.split != split):
            continue
        seconds = sorted(per_video[name])
        probs = np.asarray([per_video[name][s] for s in seconds])
        timelines.append(
            VideoTimeline(
                name, np.asarray(seconds, dtype=np.int64), probs, true_segment(lab, seconds[-1] + 1.0)
            )
        )
    return timelines
