"""``python -m train compare``: the README's detectors table from ``train eval`` reports.

One row per evaluated detector (its ``report.json`` on the evaluation set); a validation report
of the same name (``--val``) adds that report's AUC as the ``LOGO AUC`` column (this project's
validation split is leave-generator-out: every labelled fake of ``../shared/train``). The table
is a pandas DataFrame, written as CSV (full precision) and as Markdown (``DataFrame.to_markdown``,
3 decimals; the best value of each metric column in bold on request).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.files import atomic_write

DETECTOR = "detector"
VAL_AUC = "LOGO AUC"
# report.json key -> column; the first three are the table's default metrics
METRICS = {
    "auc": "AUC",
    "average_precision": "AP",
    "log_loss": "log loss",
    "eer": "EER",
    "accuracy": "accuracy",
    "brier": "Brier",
    "ece": "ECE",
    "balanced_log_loss": "balanced log loss",
}
DEFAULT_METRICS = ("AUC", "AP", "log loss")
# report.json intervals key -> text column "low–high", shown after its metric when a report has it
INTERVALS = {"auc": ("AUC", "AUC 95 %"), "log_loss": ("log loss", "log loss 95 %")}
COUNTS = {"n": "videos", "n_fake": "fakes"}
LOWER_IS_BETTER = {"log loss", "EER", "Brier", "ECE", "balanced log loss"}
REQUIRED = ("n", "n_fake", "auc", "average_precision", "log_loss", "per_category")


class ReportError(ValueError):
    """A report argument that is missing, not JSON or not what ``train eval`` writes."""


@dataclass(frozen=True)
class NamedReport:
    """One ``train eval`` report and the row name it goes under."""

    name: str
    path: Path
    data: dict[str, Any]


def report_file(path: Path) -> Path:
    """A report argument's JSON: the file itself, or ``report.json`` in the folder ``train eval
    --out`` wrote."""
    return path / "report.json" if path.is_dir() else path


def default_name(data: dict[str, Any], path: Path) -> str:
    """The weights' (or submission's) name from the report's title ``"NAME on SPLIT"``, so a
    detector's evaluation and validation reports pair by themselves; else the folder's name."""
    title = data.get("title")
    if isinstance(title, str) and title.strip():
        weights, on, _ = title.rpartition(" on ")
        return weights if on and weights else title
    return path.parent.name


def read_report(argument: str) -> NamedReport:
    """``[NAME=]PATH`` → the report at PATH (a ``report.json`` or its folder), checked to be one
    ``train eval`` wrote, named NAME (default: ``default_name``). An existing path is never split
    at ``=``."""
    name, path = None, Path(argument)
    if not path.exists() and "=" in argument:
        name, _, rest = argument.partition("=")
        path = Path(rest)
    file = report_file(path)
    if not file.is_file():
        raise ReportError(
            f"{file}: report not found (give a report.json or the folder `train eval --out` wrote)"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{file}: not a JSON report ({err})") from err
    if not isinstance(data, dict):
        raise ReportError(f"{file}: not a `train eval` report (a JSON {type(data).__name__}, not an object)")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ReportError(f"{file}: not a `train eval` report (no {', '.join(repr(k) for k in missing)})")
    if not isinstance(data["per_category"], dict):
        raise ReportError(f"{file}: 'per_category' is not an object")
    for key in (*COUNTS, *METRICS):
        _number(data.get(key), file, key)
    for category, entry in data["per_category"].items():
        if not isinstance(entry, dict):
            raise ReportError(f"{file}: per_category {category!r} is not an object")
        _number(entry.get("auc_vs_real"), file, f"per_category.{category}.auc_vs_real")
    return NamedReport(name.strip() if name else default_name(data, file), file, data)


def _number(value: Any, file: Path, key: str) -> float:
    """A report's number; a missing one (or null: ``train eval`` writes NaN as null) is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{file}: {key!r} is {value!r}, not a number")
    return float(value)


def category_column(category: str) -> str:
    """A fake category's AUC column: its name, words spaced (``lip_sync`` → ``lip sync``)."""
    return category.replace("_", " ")


def fake_categories(reports: Sequence[NamedReport]) -> list[str]:
    """Every fake category the reports hold (those with an AUC against the reals), in order of
    first appearance."""
    seen: dict[str, None] = {}
    for report in reports:
        for category, entry in report.data["per_category"].items():
            if entry.get("label") == 1:
                seen.setdefault(category)
    return list(seen)


def comparison_table(
    evaluated: Sequence[NamedReport], validation: Sequence[NamedReport] = ()
) -> pd.DataFrame:
    """Every column the reports give, one row per evaluated report in the given order:
    ``detector``, the counts, every metric, each fake category's AUC against all reals, and
    ``LOGO AUC`` when validation reports are given (paired by name)."""
    if not evaluated:
        raise ReportError("no report to compare")
    _unique(evaluated, "evaluation")
    _unique(validation, "validation (--val)")
    names = {r.name for r in evaluated}
    for report in validation:
        if report.name not in names:
            raise ReportError(
                f"{report.path}: validation report {report.name!r} pairs with no evaluated report "
                f"({', '.join(sorted(names))}); name both NAME=PATH"
            )
    val_auc = {r.name: _number(r.data["auc"], r.path, "auc") for r in validation}
    categories = fake_categories(evaluated)
    rows = []
    for report in evaluated:
        row: dict[str, Any] = {DETECTOR: report.name}
        row.update({col: int(_number(report.data[key], report.path, key)) for key, col in COUNTS.items()})
        row.update({col: _number(report.data.get(key), report.path, key) for key, col in METRICS.items()})
        per_category = report.data["per_category"]
        for category in categories:
            entry = per_category.get(category) or {}
            row[category_column(category)] = _number(entry.get("auc_vs_real"), report.path, category)
        row.update(interval_cells(report))
        if validation:
            row[VAL_AUC] = val_auc.get(report.name, math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def interval_cells(report: NamedReport) -> dict[str, str]:
    """The report's bootstrap intervals (``train eval --resamples``) as ``low–high`` text, for
    the metrics ``INTERVALS`` names; none when the report has none."""
    intervals = report.data.get("intervals") or {}
    if not isinstance(intervals, dict):
        raise ReportError(f"{report.path}: 'intervals' is not an object")
    cells = {}
    for key, (_, column) in INTERVALS.items():
        pair = intervals.get(key)
        if pair is None:
            continue
        if not isinstance(pair, list) or len(pair) != 2:
            raise ReportError(f"{report.path}: intervals.{key} is {pair!r}, not [low, high]")
        low, high = (_number(v, report.path, f"intervals.{key}") for v in pair)
        cells[column] = f"{low:.2f}–{high:.2f}"
    return cells


def _unique(reports: Sequence[NamedReport], what: str) -> None:
    by_name: dict[str, list[str]] = {}
    for report in reports:
        by_name.setdefault(report.name, []).append(str(report.path))
    for name, paths in by_name.items():
        if len(paths) > 1:
            raise ReportError(
                f"{what} reports share the name {name!r} ({', '.join(paths)}): name them NAME=PATH"
            )


def default_columns(table: pd.DataFrame) -> list[str]:
    """The README table's columns: detector, AUC, AP, log loss (each followed by its interval
    when the reports give one), each fake category, LOGO AUC."""
    interval_of = {metric: column for metric, column in INTERVALS.values() if column in table}
    fixed = {DETECTOR, *COUNTS.values(), *METRICS.values(), VAL_AUC, *(c for _, c in INTERVALS.values())}
    categories = [c for c in table.columns if c not in fixed]
    metrics = [c for m in DEFAULT_METRICS for c in (m, interval_of.get(m)) if c]
    return [DETECTOR, *metrics, *categories, *([VAL_AUC] if VAL_AUC in table else [])]


def select(
    table: pd.DataFrame, columns: Sequence[str] | None = None, sort: str | None = None
) -> pd.DataFrame:
    """``columns`` of ``table`` (default: ``default_columns``; ``detector`` always first),
    rows best first by ``sort`` (descending, ascending for a lower-is-better metric; NaN last)
    or in the reports' order."""
    chosen = list(columns) if columns else default_columns(table)
    unknown = [c for c in [*chosen, *([sort] if sort else [])] if c not in table.columns]
    if unknown:
        raise ValueError(f"no column {', '.join(map(repr, unknown))}; the reports give {list(table.columns)}")
    chosen = [DETECTOR, *(c for c in chosen if c != DETECTOR)]
    if sort:
        table = table.sort_values(sort, ascending=sort in LOWER_IS_BETTER, na_position="last", kind="stable")
    return table[chosen].reset_index(drop=True)


def to_markdown(table: pd.DataFrame, digits: int = 3, bold_best: bool = False) -> str:
    """A pipe table: numbers to ``digits`` decimals, a missing one as ``—``; with ``bold_best``
    each metric column's best value (after rounding; ties all) in bold."""
    shown = pd.DataFrame(index=table.index)
    align = []
    for column in table.columns:
        values = table[column]
        numeric = column != DETECTOR and pd.api.types.is_numeric_dtype(values)
        align.append("right" if numeric else "left")
        if not numeric:
            text = values.map(lambda x: "—" if isinstance(x, float) and math.isnan(x) else str(x))
            shown[column] = text.str.replace("|", r"\|", regex=False)
            continue
        if pd.api.types.is_integer_dtype(values):
            shown[column] = values.astype(str)
            continue
        rounded = values.round(digits)
        text = rounded.map(lambda x: "—" if pd.isna(x) else f"{x:.{digits}f}")
        if bold_best and rounded.notna().any():
            best = rounded.min() if column in LOWER_IS_BETTER else rounded.max()
            text = text.where(rounded != best, "**" + text + "**")
        shown[column] = text
    # numbers arrive as text (rounded, bold): tabulate must not parse them back
    return shown.to_markdown(index=False, tablefmt="pipe", disable_numparse=True, colalign=align)


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` wrote: the table and the files."""

    table: pd.DataFrame
    markdown: str
    md_path: Path | None
    csv_path: Path | None


def compare(
    evaluated: Sequence[str],
    validation: Sequence[str] = (),
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    bold_best: bool = False,
    out_md: Path | None = None,
    out_csv: Path | None = None,
    digits: int = 3,
) -> Comparison:
    """Read the ``[NAME=]PATH`` report arguments, build and select the table, write the files."""
    table = select(
        comparison_table([read_report(a) for a in evaluated], [read_report(a) for a in validation]),
        columns,
        sort,
    )
    markdown = to_markdown(table, digits, bold_best) + "\n"
    for path in (out_md, out_csv):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    if out_md is not None:
        atomic_write(out_md, markdown)
    if out_csv is not None:
        atomic_write(out_csv, table.to_csv(index=False))
    return Comparison(table, markdown, out_md, out_csv)
