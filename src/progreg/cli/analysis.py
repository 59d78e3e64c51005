"""``progreg history``, ``log`` and ``cleanup``: what the registry's log says.

JSON shapes: ``history --json`` is ``OptimizationHistory.model_dump(mode="json")``;
``log --json`` an array of :class:`~progreg.LogEntry`;
``cleanup --json`` an object ``{"dry_run", "keep", "protected_tags",
"protected", "removed": [ProgramRef...], "remaining", "commit"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from progreg import OptimizationHistory, ProgramRef, SavedProgram
from progreg.cli.context import Context
from progreg.cli.output import (
    Failure,
    ProgregCommand,
    color_option,
    echo_json,
    format_time,
    info,
    json_option,
    open_manager,
    plot_option,
    progress,
    table,
    use_color,
)
from progreg.cli.params import TAG
from progreg.cli.plot import render_report, score_series
from progreg.cli.render import format_score, optimizer_rows

_ACTION_COLORS = {
    "save": "green",
    "restore": "cyan",
    "delete": "red",
    "cleanup": "yellow",
    "merge": "magenta",
}


def history_lines(history: OptimizationHistory) -> list[str]:
    """Summary, per-optimizer statistics and trends for people."""
    summary = history.summary
    lines = [
        f"{summary.total_programs} programs, average score {format_score(summary.avg_score)},"
        f" latest save {format_time(summary.latest_save)} UTC"
    ]
    if history.optimizer_stats:
        rows = optimizer_rows(history)
        lines.append("")
        lines.extend(table(["OPTIMIZER", "PROGRAMS", "AVG", "BEST", "LATEST"], rows))
    trends = history.trends
    lines.append("")
    if trends.recent_count == 0:
        lines.append("trend: needs at least 2 programs")
    else:
        improvement = trends.improvement_percentage
        change = "-" if improvement is None else f"{improvement:+.2f}%"
        lines.append(
            f"trend: newest {trends.recent_count} average"
            f" {format_score(trends.recent_avg_score)}, the {trends.older_count} before"
            f" {format_score(trends.older_avg_score)}: {change}"
        )
    return lines


@click.command(cls=ProgregCommand)
@plot_option("Also write an HTML report charting each signature's score over time.")
@json_option
@click.pass_obj
def history(ctx: Context, plot: Path | None, as_json: bool) -> None:
    """Summary, per-optimizer statistics and trends of the registry's programs.

    --plot writes a self-contained HTML file (inline SVG, no script) with
    one line per signature through the score of every save on main. --json
    prints {summary, optimizer_stats, trends}.

    \b
    Example:
      progreg history
      progreg history --plot scores.html && xdg-open scores.html
    """
    manager = open_manager(ctx)
    result = manager.get_optimization_history()
    if plot is not None:
        series = score_series(manager.storage.log())
        report = render_report(series, result, str(manager.storage.path), datetime.now(UTC))
        try:
            plot.write_text(report, encoding="utf-8")
        except OSError as exc:
            raise Failure(f"cannot write {plot}: {exc.strerror or exc}") from exc
        points = sum(len(line) for line in series.values())
        info(f"wrote {plot}: {len(series)} signatures, {points} scored saves")
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    for line in history_lines(result):
        click.echo(line)


def _action_style(color: bool) -> Callable[[str], str]:
    def style(cell: str) -> str:
        return click.style(cell, fg=_ACTION_COLORS.get(cell.strip())) if color else cell

    return style


@click.command(cls=ProgregCommand)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Show at most this many commits (0: all).",
)
@color_option
@json_option
@click.pass_obj
def log(ctx: Context, limit: int, color: bool | None, as_json: bool) -> None:
    """The saves, deletes, restores and cleanups on main, newest first.

    Commits made without progreg show as "commit" or "merge" with their
    subject. --json prints an array of {commit, date, committed_at, action,
    program_id, signature_class, optimizer, score, score_name, author,
    author_email, subject} (ProgramStorage.log).

    \b
    Example:
      progreg log --limit 10
      progreg log --limit 0 --json | jq '.[] | select(.action == "save")'
    """
    storage = open_manager(ctx).storage
    records = storage.log(limit or None)
    if as_json:
        echo_json([record.model_dump(mode="json") for record in records])
        return
    if not records:
        info("no commits yet")
        return
    rows = [
        [
            format_time(r.date),
            r.action,
            r.program_id or "-",
            (r.signature_class or "-") if r.program_id else r.subject,
            format_score(r.score) if r.program_id else "",
            r.author,
        ]
        for r in records
    ]
    colored = use_color(color)
    headers = ["DATE (UTC)", "ACTION", "PROGRAM", "SIGNATURE", "SCORE", "AUTHOR"]
    for line in table(headers, rows, {1: _action_style(colored)}):
        click.echo(line, color=colored)


def _program_refs(
    load: Callable[[str], SavedProgram | None], program_ids: list[str]
) -> list[ProgramRef]:
    """What cleanup lists of each program: its id, save time, score, optimizer, signature, commit.

    A program removed meanwhile by another writer is left out.
    """
    refs = []
    for program_id in program_ids:
        saved = load(program_id)
        if saved is not None:
            refs.append(
                ProgramRef(
                    program_id=program_id,
                    saved_at=saved.saved_at,
                    best_score=saved.best_score,
                    optimizer=saved.optimizer,
                    signature_class=saved.signature_class,
                    commit=saved.commit,
                )
            )
    return refs


@click.command(cls=ProgregCommand)
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    help="Unprotected programs to keep (default: PROGREG_MAX_STORED_PROGRAMS, else 100).",
)
@click.option(
    "--protect",
    "protect",
    multiple=True,
    type=TAG,
    help="Never remove programs with this tag (repeatable; default: PROGREG_PROTECTED_TAGS,"
    " else production).",
)
@json_option
@click.pass_obj
def cleanup(
    ctx: Context, dry_run: bool, keep: int | None, protect: tuple[str, ...], as_json: bool
) -> None:
    """Keep the best unprotected programs, remove the rest in one commit.

    Programs are ranked by 70% score and 30% recency; programs with a
    protected tag are always kept. Removed programs stay in history:
    'progreg restore ID' brings any back. --json prints {dry_run, keep,
    protected_tags, protected, removed: [{program_id, saved_at, best_score,
    optimizer, signature_class, commit}], remaining, commit}.

    \b
    Example:
      progreg cleanup --keep 20 --dry-run
      progreg cleanup --keep 20 --protect production --protect baseline
    """
    settings: dict[str, Any] = {}
    if keep is not None:
        settings["max_stored_programs"] = keep
    if protect:
        settings["protected_tags"] = list(protect)
    with progress(2 if dry_run else 3, "cleanup") as advance:
        manager = open_manager(ctx, **settings)
        storage = manager.storage
        plan = manager.plan_cleanup()
        advance(1)
        doomed = _program_refs(storage.load_program, plan.remove)
        advance(1)
        commit = None
        remaining = plan.remaining
        if doomed and not dry_run:
            result = manager.cleanup_old_programs()
            commit, remaining = result.commit, result.remaining
            if result.removed != plan.remove:
                info(f"warning: the registry changed meanwhile; {result.removed_count} removed")
                gone = set(result.removed)
                doomed = [ref for ref in doomed if ref.program_id in gone]
            advance(1)
    removed = doomed
    total = remaining + len(removed)
    if as_json:
        echo_json(
            {
                "dry_run": dry_run,
                "keep": plan.keep,
                "protected_tags": plan.protected_tags,
                "protected": plan.protected,
                "removed": [ref.model_dump(mode="json") for ref in removed],
                "remaining": remaining,
                "commit": commit,
            }
        )
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {len(removed)} of {total} programs (keep {plan.keep}"
        f" unprotected; {len(plan.protected)} protected by {', '.join(plan.protected_tags) or '-'})"
    )
    if removed:
        rows = [
            [
                ref.program_id,
                format_time(ref.saved_at),
                ref.signature_class or "-",
                ref.optimizer or "-",
                format_score(ref.best_score),
            ]
            for ref in removed
        ]
        for line in table(["ID", "SAVED (UTC)", "SIGNATURE", "OPTIMIZER", "SCORE"], rows):
            click.echo(f"  {line}")
    if commit is not None:
        click.echo(f"commit {commit[:10]}; 'progreg restore ID' brings a program back")
