"""``progreg doctor``: locks, temporary files, caches and damage a crash may leave."""

from __future__ import annotations

import sys

import click

from progreg.cli.context import EXIT_ERROR, Context
from progreg.cli.output import ProgregCommand, echo_json, json_option, registry_path
from progreg.registry.doctor import DEFAULT_GRACE, DoctorReport, diagnose


def _lines(report: DoctorReport) -> list[str]:
    lock = report.write_lock
    holder = {True: "held now", False: "free", None: "unknown"}[lock.held_now]
    lines = [
        f"registry: {report.registry} (format {report.format_version or '?'})",
        f"write lock: record {lock.record}"
        + (f" by pid {lock.pid}" if lock.pid is not None else "")
        + f", {holder}"
        + (" (its holder died inside its critical section)" if lock.holder_crashed else ""),
        f"ref locks: {len(report.ref_locks)}",
    ]
    for ref_lock in report.ref_locks:
        state = "removed" if ref_lock.removed else "present"
        lines.append(
            f"  {ref_lock.path}: {ref_lock.age_seconds:.0f} s old, left by {ref_lock.left_by},"
            f" {state}"
        )
    lines.append(f"temporary files: {len(report.temp_files)}")
    for temp in report.temp_files:
        state = "removed" if temp.removed else f"{temp.size_bytes} bytes"
        lines.append(f"  {temp.path}: {temp.kind}, {temp.age_seconds:.0f} s old, {state}")
    objects = report.objects
    lines.append(
        f"objects: {objects.loose_objects} loose, {objects.packs} pack(s),"
        f" {objects.size_bytes / 1e6:.1f} MB"
    )
    lines.append(f"log cache: {report.cache.state}" + (", removed" if report.cache.removed else ""))
    if report.verify is not None:
        summary = report.verify
        lines.append(
            f"verify: {summary.programs_checked} programs checked, {summary.program_problems}"
            f" problems, {summary.damaged_objects} damaged objects,"
            f" {summary.bad_signatures} bad signatures"
        )
    lines += [f"note: {note}" for note in report.notes]
    lines += [f"PROBLEM: {problem}" for problem in report.problems]
    lines.append("ok" if report.ok else "NOT OK")
    return lines


@click.command(cls=ProgregCommand)
@click.option(
    "--fix",
    is_flag=True,
    help="Remove what is provably safe to remove: ref locks of a crashed progreg writer,"
    " temporary files older than --grace, a damaged log cache.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE,
    show_default=True,
    help="Seconds a temporary file must be left untouched before --fix removes it.",
)
@click.option("--quick", is_flag=True, help="Skip reading every object (the verify summary).")
@json_option
@click.pass_obj
def doctor(ctx: Context, fix: bool, grace: float, quick: bool, as_json: bool) -> None:
    """Look for what crashes, full disks and other tools left in the registry.

    Reports the write lock (its record, whether a writer holds it), ref lock
    files with their age and who left them, temporary files, loose objects
    and packs, the log cache, the format marker and a verify summary. It
    works on a registry too damaged to open. --fix removes only what is
    provably safe (see the on-disk format page); ref locks of other Git
    processes and damaged objects are left for a person. Exits with 1 when
    something still needs a person. --json prints the report (DoctorReport,
    plus "ok").

    \b
    Example:
      progreg --registry ./registry doctor
      progreg doctor --fix --json
    """
    report = diagnose(registry_path(ctx), fix=fix, grace=grace, quick=quick)
    if as_json:
        echo_json({**report.model_dump(mode="json"), "ok": report.ok})
    else:
        for line in _lines(report):
            click.echo(line)
    if not report.ok:
        sys.exit(EXIT_ERROR)
