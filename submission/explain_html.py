"""HTML of the ``--explain`` pages: one self-contained file per video and an index.

Self-contained because the pages are opened from wherever the output folder was copied, often
offline: inline CSS, charts as inline SVG, thumbnails as ``data:`` URIs, no script, font,
image or link that reaches the network. Every string that comes from a file name, a model, a
log line or an error goes through ``html.escape``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from core.calibration import UNCERTAIN_BAND, is_uncertain
from core.text import plural
from submission.explain import LatencyView, ModelInfo, TrackExplanation, VideoExplanation
from submission.per_second import measured_flags
from submission.scoring import SecondScores, VideoScore

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
COMBINED = "#d62728"

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:20px 0 6px}h3{font-size:14px;margin:12px 0 4px}
.score{font-size:28px;font-weight:600}.fake{color:#c0392b}.real{color:#1e7d32}.failed{color:#7f8c8d}.uncertain{color:#b9770e}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 16px;margin:10px 0}
.thumbs img{width:96px;height:96px;margin:2px;border:1px solid #ccc;border-radius:3px}
.note{color:#666;font-style:italic}.warn{color:#a0522d}
table{border-collapse:collapse}td,th{border-bottom:1px solid #e5e5e5;padding:4px 10px;text-align:left}
code{font-size:12px;word-break:break-all}.drove{background:#fff3cd;border-radius:4px;padding:2px 6px}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _verdict(p: float | None) -> tuple[str, str]:
    if p is None:
        return "failed", "not scored"
    if is_uncertain(p):
        low, high = UNCERTAIN_BAND
        return "uncertain", f"uncertain: inside {low:.2f}-{high:.2f}, the detector says little either way"
    return ("fake", "likely fake") if p >= 0.5 else ("real", "likely real")


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


# --- charts -------------------------------------------------------------------------------------


def line_chart(
    series: Sequence[tuple[str, str, Sequence[float], Sequence[float | None]]],
    *,
    x_label: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    marks: Sequence[tuple[float, str]] = (),
    hline: float | None = None,
    width: int = 560,
    height: int = 200,
) -> str:
    """An inline SVG line chart: ``series`` of (label, colour, xs, ys; None = no point),
    vertical ``marks`` (x, label), an optional dashed horizontal line, a legend."""
    xs = [x for _, _, sx, _ in series for x in sx]
    ys = [y for _, _, _, sy in series for y in sy if y is not None and math.isfinite(y)]
    if not xs or not ys:
        return ""
    left, right, top, bottom = 46, 12, 12, 34
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = y_range if y_range is not None else (min(ys), max(ys))
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [
        f'<svg width="{width}" height="{height + 18 * len(series)}" '
        f'role="img" aria-label="{esc(y_label)} over {esc(x_label)}">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#bbb"/>',
    ]
    for frac in (0.0, 0.5, 1.0):  # y ticks
        y = y0 + frac * (y1 - y0)
        parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.3g}</text>')
    ticks = sorted(set(xs))
    step = max(1, len(ticks) // 10)
    for x in ticks[::step]:  # x ticks
        parts.append(f'<text x="{px(x):.1f}" y="{top + ph + 14}" text-anchor="middle">{x:g}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(
        f'<text x="12" y="{top + ph / 2:.1f}" transform="rotate(-90 12 {top + ph / 2:.1f})" '
        f'text-anchor="middle">{esc(y_label)}</text>'
    )
    if hline is not None and y0 <= hline <= y1:
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{py(hline):.1f}" y2="{py(hline):.1f}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
        )
    for x, label in marks:
        # the label on the side of the line with room for it
        right_half = px(x) > left + pw / 2
        anchor, dx = ("end", -4) if right_half else ("start", 4)
        parts.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + ph}" stroke="{COMBINED}" '
            'stroke-width="1.5" stroke-dasharray="3 2"/>'
            f'<text x="{px(x) + dx:.1f}" y="{top + 12}" fill="{COMBINED}" text-anchor="{anchor}">{esc(label)}</text>'
        )
    for k, (label, color, sx, sy) in enumerate(series):
        for run in _runs(sx, sy):  # a missing value breaks the line: nothing is drawn across it
            if len(run) > 1:
                path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in run)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>' for x, y in run]
        ly = height + 18 * k + 10
        parts.append(
            f'<rect x="{left}" y="{ly - 8}" width="12" height="4" fill="{color}"/>'
            f'<text x="{left + 18}" y="{ly - 3}">{esc(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _runs(xs: Sequence[float], ys: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    """The points of a series in runs of consecutive present values (None or NaN ends a run)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(xs, ys, strict=True):
        if y is None or not math.isfinite(y):
            runs.append([])
        else:
            runs[-1].append((x, y))
    return [r for r in runs if r]


def timeline_svg(seconds: SecondScores, member_names: Sequence[str]) -> str:
    """Per-second P(fake) of one track: each member and the combined score (one detector: one
    line), at the measured seconds only: a line joins two seconds only when both were looked at."""
    xs = [float(s) for s in seconds.seconds]
    seen = measured_flags(seconds)
    series = [
        (name, COLORS[k % len(COLORS)], xs, list(values))
        for k, (name, values) in enumerate(zip(member_names, seconds.members, strict=False))
        if any(v is not None for v in values)  # a member without time outputs: no line, no legend
    ]
    combined = [p if m else None for p, m in zip(seconds.probabilities, seen, strict=True)]
    series.append(("combined" if seconds.members else "score", COMBINED, xs, combined))
    return line_chart(series, x_label="second", y_label="P(fake)", y_range=(0.0, 1.0), hline=0.5)


def unmeasured_note(seconds: SecondScores) -> str | None:
    """Which seconds of the track no scored moment lies in (not drawn), or None."""
    gaps = [s for s, m in zip(seconds.seconds, measured_flags(seconds), strict=True) if not m]
    if not gaps:
        return None
    spans: list[list[int]] = []
    for s in gaps:
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    text = ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)
    return (
        f"The detector looked at no moment of second{'s' if len(gaps) > 1 else ''} {text}: "
        "not drawn (the --per-second CSV interpolates them, with measured = 0)."
    )


def latency_svg(view: LatencyView) -> str:
    return line_chart(
        [("mean SyncNet distance", COLORS[0], [float(o) for o in view.offsets], list(view.distances))],
        x_label="audio-visual offset (frames)",
        y_label="distance",
        marks=[(float(view.offset), f"offset {view.offset:+d}, confidence {view.confidence:.2f}")],
    )


# --- pages --------------------------------------------------------------------------------------


def shown_path(path: str) -> str:
    """A weights path as the page shows it: relative when it lies under the working directory
    (``weights/detector.safetensors``, not the checkout's absolute path); anything else (a path
    elsewhere, a description) as it is. The JSON keeps the full path."""
    p = Path(path)
    if not p.is_absolute():
        return path
    cwd = Path.cwd()
    for inner, outer in ((p, cwd), (p.resolve(), cwd.resolve())):
        if inner.is_relative_to(outer) and inner != outer:
            return inner.relative_to(outer).as_posix()
    return path


def _models_table(models: Sequence[ModelInfo]) -> str:
    rows = "".join(
        f"<tr><td>{esc(m.name)}</td><td>{esc(m.arch)}</td><td>{esc(m.runtime)}</td>"
        f"<td>{m.weight:g}</td><td><code>{esc(shown_path(m.weights))}</code><br><code>sha256 {esc(m.sha256 or '?')}</code></td></tr>"
        for m in models
    )
    return (
        "<table><tr><th>model</th><th>architecture</th><th>runtime</th><th>weight</th><th>weights</th></tr>"
        f"{rows}</table>"
    )


def _track_card(track: TrackExplanation, expl: VideoExplanation) -> str:
    names = [m.name for m in expl.models]
    drove = track.track == expl.driving_track
    head = f"<h3>face track {track.track} — P(fake) {track.probability:.3f}"
    head += ' <span class="drove">drove the video score</span></h3>' if drove else "</h3>"
    parts = [f'<div class="card">{head}']
    if track.member_probabilities:
        parts.append(
            "<p>"
            + "; ".join(f"{esc(n)} {p:.3f}" for n, p in zip(names, track.member_probabilities, strict=False))
            + "</p>"
        )
    thumbs = "".join(
        f'<img alt="face at frame {f}" title="frame {f}" src="data:image/jpeg;base64,{t}">'
        for f, t in zip(track.frames, track.thumbnails, strict=True)
    )
    parts.append(f'<div class="thumbs">{thumbs or "<span class=note>no face crops</span>"}</div>')
    parts.append("<h3>per-second score</h3>")
    if track.seconds is not None:
        parts.append(timeline_svg(track.seconds, names if track.seconds.members else ()))
        if unmeasured_note(track.seconds):
            parts.append(f'<p class="note">{esc(unmeasured_note(track.seconds))}</p>')
        if expl.timeline_note:  # an ensemble member without time outputs
            parts.append(f'<p class="note">{esc(expl.timeline_note)}</p>')
    else:
        parts.append(
            f'<p class="note">{esc(expl.timeline_note or "no per-second scores for this track")}</p>'
        )
    parts.append("<h3>SyncNet distance over offsets</h3>")
    if track.latency is not None:
        parts.append(latency_svg(track.latency))
        parts.append(
            f"<p>chosen offset {track.latency.offset:+d} frames, minimum distance "
            f"{track.latency.min_distance:.3f}, confidence {track.latency.confidence:.3f}</p>"
        )
    else:
        parts.append(f'<p class="note">{esc(track.latency_note)}</p>')
    parts.append("</div>")
    return "".join(parts)


def render_video(expl: VideoExplanation) -> str:
    cls, verdict = _verdict(expl.probability)
    body = [f'<p><a href="{INDEX_HREF}">← all videos</a></p><h1>{esc(expl.filename)}</h1>']
    if expl.probability is None:
        body.append(f'<p class="score failed">not scored</p><p class="warn">error: {esc(expl.error)}</p>')
    else:
        body.append(f'<p class="score {cls}">P(fake) = {expl.probability:.3f} <small>({verdict})</small></p>')
        body.append(f"<p>{esc(expl.driver)}</p>")
        if expl.member_probabilities:
            members = "; ".join(
                f"{esc(m.name)} {p:.3f} (weight {m.weight:g})"
                for m, p in zip(expl.models, expl.member_probabilities, strict=False)
            )
            body.append(
                f"<p>ensemble members' video scores (combined as the weighted mean of log-odds): {members}</p>"
            )
    facts = []
    if expl.duration is not None:
        facts.append(f"{expl.duration:.1f} s analysed")
    if expl.has_audio is not None:
        facts.append("with audio" if expl.has_audio else "no audio")
    if facts:
        body.append(f"<p>{esc(', '.join(facts))}</p>")
    if expl.tracks:
        body.append(f"<h2>face tracks ({len(expl.tracks)})</h2>")
        body += [_track_card(t, expl) for t in expl.tracks]
    body.append("<h2>models</h2>" + _models_table(expl.models))
    if expl.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in expl.warnings)
        body.append(f'<h2>preprocessing warnings</h2><ul class="warn">{items}</ul>')
    return _page(f"{expl.filename}: explanation", "\n".join(body))


INDEX_HREF = "index.html"


def render_index(videos: Sequence[tuple[VideoScore, str]], models: Sequence[ModelInfo]) -> str:
    """Videos by score, highest first (failed ones last), each linking to its page."""
    ordered = sorted(
        videos, key=lambda v: (v[0].probability is None, -(v[0].probability or 0.0), v[0].filename)
    )
    rows = []
    for score, page in ordered:
        cls, verdict = _verdict(score.probability)
        value = "—" if score.probability is None else f"{score.probability:.3f}"
        note = esc(score.reason) if not score.ok else verdict
        rows.append(
            f'<tr><td><a href="{esc(quote(page))}">{esc(score.filename)}</a></td>'
            f'<td class="{cls}">{value}</td><td>{note}</td></tr>'
        )
    body = (
        f"<h1>Explanations: {plural(len(videos), 'video')}</h1>"
        "<table><tr><th>video</th><th>P(fake)</th><th></th></tr>" + "".join(rows) + "</table>"
        "<h2>models</h2>" + _models_table(models)
    )
    return _page("Explanations", body)
