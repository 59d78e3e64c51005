"""``progreg runs [NAME]``: the optimization runs recorded with ``progreg.track_run``.

JSON shapes: ``runs --json`` is an array of ``RunSummary.model_dump(mode="json")``;
``runs NAME --json`` an object ``{"run": RunSummary, "trajectory": [RunPoint...]}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from progreg import RunPoint, RunSummary
from progreg.cli.context import Context
from progreg.cli.output import (
    Failure,
    ProgregCommand,
    echo_json,
    format_time,
    info,
    json_option,
    open_storage,
    plot_option,
    table,
)
from progreg.cli.params import CHECKPOINT_NAME
from progreg.cli.plot import render_run_report
from progreg.cli.render import format_score


def _runs_table(summaries: list[RunSummary]) -> list[str]:
    headers = ["RUN", "STATUS", "CANDIDATES", "BEST", "PROGRAM", "OPTIMIZER", "UPDATED (UTC)"]
    rows = [
        [
            run.name,
            run.status,
            str(run.candidates),
            format_score(run.best_score),
            run.best_program_id or "-",
            run.optimizer or "-",
            format_time(run.updated_at),
        ]
        for run in summaries
    ]
    return table(headers, rows)


def _trajectory_table(points: list[RunPoint]) -> list[str]:
    headers = ["CANDIDATE", "SCORE", "BEST", "PROGRAM", "RECORDED (UTC)", "CHECKPOINT"]
    rows = [
        [
            str(point.candidate),
            format_score(point.score) + (" minibatch" if point.minibatch else ""),
            format_score(point.best_score),
            point.program_id,
            format_time(point.recorded_at),
            point.revision,
        ]
        for point in points
    ]
    return table(headers, rows)


def _describe(run: RunSummary) -> list[str]:
    lines = [
        f"run {run.name}: {run.status}, {run.candidates} candidates,"
        f" best {format_score(run.best_score)}"
        + (f" (candidate {run.best_candidate})" if run.best_candidate is not None else ""),
        f"optimizer {run.optimizer or '-'}, started {format_time(run.started_at)} UTC,"
        f" updated {format_time(run.updated_at)} UTC, by process {run.pid} on {run.host}",
        f"program {run.best_program_id or '-'}",
    ]
    if run.error is not None:
        lines.append(f"error: {run.error}")
    if run.record_errors:
        lines.append(f"{run.record_errors} candidates could not be recorded (see the events)")
    return lines


@click.command(cls=ProgregCommand)
@click.argument("name", required=False, type=CHECKPOINT_NAME)
@plot_option("With NAME: also write an HTML report charting the run's scores per candidate.")
@json_option
@click.pass_obj
def runs(ctx: Context, name: str | None, plot: Path | None, as_json: bool) -> None:
    """List the optimization runs, or show run NAME's trajectory.

    A run's status is running, finished, failed, or interrupted (its process
    died: its best program so far and its trajectory are kept). --plot
    writes a self-contained HTML file charting each candidate's score and
    the best so far. Exits with 3 when there is no run NAME.

    \b
    Example:
      progreg runs
      progreg runs mipro-1 --plot mipro-1.html
    """
    storage = open_storage(ctx)
    if name is None:
        if plot is not None:
            raise click.UsageError("--plot charts one run: give its NAME")
        summaries = storage.runs()
        if as_json:
            echo_json([run.model_dump(mode="json") for run in summaries])
            return
        if not summaries:
            info("no runs yet: record one with progreg.track_run (see docs/runs.md)")
            return
        for line in _runs_table(summaries):
            click.echo(line)
        return
    summary = storage.run(name)
    points = storage.run_trajectory(name)
    if plot is not None:
        report = render_run_report(summary, points, str(storage.path), datetime.now(UTC))
        try:
            plot.write_text(report, encoding="utf-8")
        except OSError as exc:
            raise Failure(f"cannot write {plot}: {exc.strerror or exc}") from exc
        info(f"wrote {plot}: run {name}, {len(points)} candidates")
    if as_json:
        echo_json(
            {
                "run": summary.model_dump(mode="json"),
                "trajectory": [point.model_dump(mode="json") for point in points],
            }
        )
        return
    for line in _describe(summary):
        click.echo(line)
    if points:
        click.echo("")
        for line in _trajectory_table(points):
            click.echo(line)
