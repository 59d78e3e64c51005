"""The HTML report of ``progreg history --plot``: score over time per signature.

One self-contained file: inline CSS and an inline SVG line chart (one
``<polyline>`` per signature, a point per save with a native tooltip), then
the numbers of ``progreg history``. No script, no external resource.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from progreg import LogEntry, OptimizationHistory, RunPoint, RunSummary
from progreg.cli.render import format_score, optimizer_rows

WIDTH, HEIGHT = 880, 440
LEFT, RIGHT, TOP, BOTTOM = 64, 40, 24, 56
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
NO_SIGNATURE = "(no signature)"
TICK = 'font-size="11" fill="#555"'
LABEL = 'font-size="12" fill="#333"'


@dataclass(frozen=True)
class Point:
    """One save on the chart."""

    when: datetime
    score: float
    program_id: str
    optimizer: str | None


def score_series(newest_first: Iterable[LogEntry]) -> dict[str, list[Point]]:
    """The scored saves of the log by signature, oldest first, signatures sorted.

    The order is the log's (``newest_first``, as ``git log`` walks it, reversed),
    not the commit times': those have a resolution of one second, and saves in
    the same second must still come in the order they were made.
    """
    series: dict[str, list[Point]] = {}
    for record in reversed(list(newest_first)):
        if record.action != "save" or record.score is None or record.program_id is None:
            continue
        point = Point(record.date, record.score, record.program_id, record.optimizer)
        series.setdefault(record.signature_class or NO_SIGNATURE, []).append(point)
    return {name: series[name] for name in sorted(series)}


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``lo``..``hi`` (1, 2 or 5 times 10^k apart)."""
    if hi <= lo:
        pad = max(abs(lo) * 0.05, 0.05)
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(round((stop - start) / step) + 1)]


def _time_label(moment: datetime, span: timedelta) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%m-%d %H:%M" if span < timedelta(days=2) else "%Y-%m-%d")


class _Axes:
    """Maps times and scores to SVG coordinates."""

    def __init__(self, points: Sequence[Point]) -> None:
        times = [p.when for p in points]
        self.t0, self.t1 = min(times), max(times)
        if self.t0 == self.t1:
            self.t0, self.t1 = self.t0 - timedelta(hours=1), self.t1 + timedelta(hours=1)
        pad = (self.t1 - self.t0) * 0.03
        self.t0, self.t1 = self.t0 - pad, self.t1 + pad
        self.y_ticks = nice_ticks(min(p.score for p in points), max(p.score for p in points))
        self.lo, self.hi = self.y_ticks[0], self.y_ticks[-1]

    def x(self, moment: datetime) -> float:
        share = (moment - self.t0) / (self.t1 - self.t0)
        return round(LEFT + share * (WIDTH - LEFT - RIGHT), 2)

    def y(self, score: float) -> float:
        share = (score - self.lo) / (self.hi - self.lo)
        return round(HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM), 2)

    def x_ticks(self, count: int = 6) -> list[datetime]:
        return [self.t0 + (self.t1 - self.t0) * i / (count - 1) for i in range(count)]


def render_chart(series: dict[str, list[Point]], x_label: str = "saved at (UTC)") -> str:
    """The SVG chart: axes, grid, and one polyline with point markers per series; the time
    axis is named ``x_label``."""
    points = [p for line in series.values() for p in line]
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="Score over time"'
        ' font-family="system-ui, sans-serif">'
    ]
    if not points:
        svg.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            "No scored saves yet.</text></svg>"
        )
        return "\n".join(svg)
    axes = _Axes(points)
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    for tick in axes.y_ticks:
        y = axes.y(tick)
        svg.append(f'<line stroke="#e5e5e5" x1="{LEFT}" y1="{y}" x2="{right}" y2="{y}"/>')
        svg.append(f'<text {TICK} x="{LEFT - 8}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
    span = axes.t1 - axes.t0
    for moment in axes.x_ticks():
        x = axes.x(moment)
        svg.append(f'<line stroke="#e5e5e5" x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}"/>')
        label = escape(_time_label(moment, span))
        svg.append(f'<text {TICK} x="{x}" y="{bottom + 18}" text-anchor="middle">{label}</text>')
    svg.append(f'<line stroke="#888" x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>')
    svg.append(f'<line stroke="#888" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>')
    svg.append(
        f'<text {LABEL} x="{(LEFT + right) / 2}" y="{HEIGHT - 12}"'
        f' text-anchor="middle">{escape(x_label)}</text>'
    )
    svg.append(
        f'<text {LABEL} transform="translate(16 {(TOP + bottom) / 2}) rotate(-90)"'
        ' text-anchor="middle">score</text>'
    )
    for index, (signature, line) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{axes.x(p.when)},{axes.y(p.score)}" for p in line)
        svg.append(f'<g class="series" data-signature="{escape(signature)}">')
        svg.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        for p in line:
            tip = escape(
                f"{signature} {p.program_id}: {format_score(p.score)}"
                f" ({p.optimizer or 'no optimizer'}, {p.when.astimezone(UTC):%Y-%m-%d %H:%M})"
            )
            svg.append(
                f'<circle cx="{axes.x(p.when)}" cy="{axes.y(p.score)}" r="3.5"'
                f' fill="{color}"><title>{tip}</title></circle>'
            )
        svg.append("</g>")
    svg.append("</svg>")
    return "\n".join(svg)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _legend(series: dict[str, list[Point]], points: str = "saves") -> str:
    items = []
    for index, (signature, line) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        best = max(p.score for p in line)
        items.append(
            f'<li><span class="swatch" style="background:{color}"></span>{escape(signature)}'
            f" &middot; {len(line)} {points}, best {format_score(best)},"
            f" latest {format_score(line[-1].score)}</li>"
        )
    return '<ul class="legend">' + "".join(items) + "</ul>"


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 940px; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
.meta { color: #666; } svg { background: #fff; border: 1px solid #ddd; max-width: 100%; }
.legend { list-style: none; padding: 0; } .legend li { margin: .2rem 0; }
.swatch { display: inline-block; width: .9rem; height: .9rem; margin-right: .4rem;
  vertical-align: -2px; border-radius: 2px; }
table { border-collapse: collapse; } th, td { padding: .25rem .7rem; border-bottom: 1px solid #eee;
  text-align: left; }
"""


def render_report(
    series: dict[str, list[Point]],
    history: OptimizationHistory,
    registry: str,
    generated: datetime,
) -> str:
    """The complete HTML document of the report."""
    summary = history.summary
    trends = history.trends
    improvement = trends.improvement_percentage
    rows = optimizer_rows(history)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>progreg: score over time</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>Score over time, per signature</h1>",
        f'<p class="meta">Registry {escape(registry)} &middot; generated'
        f" {generated.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC &middot; every scored save"
        " recorded on main, including versions since replaced or removed.</p>",
        render_chart(series),
        _legend(series),
        "<h2>Live programs</h2>",
        _table(
            ["programs", "average score", "latest save (UTC)"],
            [
                [
                    str(summary.total_programs),
                    format_score(summary.avg_score),
                    "-"
                    if summary.latest_save is None
                    else f"{summary.latest_save.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
                ]
            ],
        ),
        "<h2>Per optimizer</h2>",
        _table(["optimizer", "programs", "average", "best", "latest program"], rows),
        "<h2>Trend</h2>",
        _table(
            ["recent average", "older average", "improvement", "recent / older programs"],
            [
                [
                    format_score(trends.recent_avg_score),
                    format_score(trends.older_avg_score),
                    "-" if improvement is None else f"{improvement:+.2f}%",
                    f"{trends.recent_count} / {trends.older_count}",
                ]
            ],
        ),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# -- the trajectory of an optimization run (progreg runs NAME --plot) ---------------

SCORE_LINE = "candidate score"
MINIBATCH_LINE = "minibatch score"
BEST_LINE = "best so far"


def run_series(summary: RunSummary, points: Iterable[RunPoint]) -> dict[str, list[Point]]:
    """A run's candidates as lines: their scores (full data, minibatches) and the best so far."""
    series: dict[str, list[Point]] = {SCORE_LINE: [], MINIBATCH_LINE: [], BEST_LINE: []}
    for point in points:
        if point.score is not None:
            line = MINIBATCH_LINE if point.minibatch else SCORE_LINE
            series[line].append(
                Point(point.recorded_at, point.score, point.program_id, summary.optimizer)
            )
        if point.best_score is not None and point.best_program_id is not None:
            series[BEST_LINE].append(
                Point(point.recorded_at, point.best_score, point.best_program_id, summary.optimizer)
            )
    return {name: line for name, line in series.items() if line}


def render_run_report(
    summary: RunSummary, points: Sequence[RunPoint], registry: str, generated: datetime
) -> str:
    """The HTML report of one run: its trajectory charted, then its candidates' table."""
    series = run_series(summary, points)
    rows = [
        [
            str(point.candidate),
            format_score(point.score) + (" (minibatch)" if point.minibatch else ""),
            format_score(point.best_score),
            point.program_id,
            f"{point.recorded_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            point.revision,
        ]
        for point in points
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>progreg: run {escape(summary.name)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>Run {escape(summary.name)}: score per candidate</h1>",
        f'<p class="meta">Registry {escape(registry)} &middot; {escape(summary.status)}'
        f" &middot; {summary.candidates} candidates &middot; best"
        f" {format_score(summary.best_score)} &middot; {escape(summary.optimizer or '-')}"
        f" &middot; generated {generated.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC</p>",
        render_chart(series, "recorded at (UTC)"),
        _legend(series, "candidates"),
        "<h2>Candidates</h2>",
        _table(
            ["candidate", "score", "best so far", "program", "recorded (UTC)", "checkpoint"], rows
        ),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"
