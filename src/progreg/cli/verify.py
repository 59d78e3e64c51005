"""``progreg verify``: programs intact, commits and tags signed by whom."""

from __future__ import annotations

import json
import sys

import click

from progreg import DamagedObjectError, VerifyReport
from progreg.cli.context import EXIT_ERROR, Context
from progreg.cli.output import open_storage, registry_path
from progreg.registry.verify import DamagedObject, verify_path


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List every commit and tag, not a summary.")
@click.pass_obj
def verify(ctx: Context, as_json: bool, show_all: bool) -> None:
    """Check every object, every program on main and every commit's and tag's signature.

    Every object the refs reach is read (loose object files are checked
    before Git reads them); a damaged or missing one is listed with its file,
    the refs that reach it and the programs whose files it holds. Every tag
    is checked as progreg's server hook checks a pushed one (an annotated
    tag on a commit of main's history holding its program). Exits with 1
    when an object, a program or a tag is wrong or a signature does not hold.

    \b
    Example:
      progreg --registry ./registry verify --all
    """
    report = _report(ctx)
    if as_json:
        data = report.model_dump(mode="json")
        data.update(ok=report.ok, signed=report.signed, unsigned=report.unsigned)
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"damaged objects: {len(report.damaged_objects)}")
        for damage in report.damaged_objects:
            click.echo(f"  {describe_damage(damage)}")
        click.echo(f"programs checked: {report.programs_checked}, problems: {len(report.problems)}")
        for problem in report.problems:
            click.echo(f"  {problem.path}: {problem.message}")
        if report.tag_problems:
            click.echo(f"tags a server's hook would refuse: {len(report.tag_problems)}")
            for tag in report.tag_problems:
                click.echo(f"  {tag.ref}: {tag.message}")
        click.echo(
            f"commits and tags: {report.signed} signed, {report.unsigned} unsigned,"
            f" {len(report.bad_signatures)} bad signatures"
        )
        for record in report.signatures:
            if show_all or record.valid is False:
                state = {True: "good", False: "BAD", None: "unchecked"}[record.valid]
                who = record.signer or "-"
                status = f"{state} {record.format} by {who}" if record.signed else "unsigned"
                click.echo(f"  {record.kind} {record.id[:12]} {status}: {record.subject}")
        click.echo("ok" if report.ok else "NOT OK")
    if not report.ok:
        sys.exit(EXIT_ERROR)


def _report(ctx: Context) -> VerifyReport:
    """Verify the registry; one too damaged to open as a registry is checked as a repository."""
    try:
        return open_storage(ctx).verify()
    except DamagedObjectError:
        path = registry_path(ctx)
        return verify_path(path)


def describe_damage(damage: DamagedObject) -> str:
    """One line about a damaged object: what, where, why, and what needs it."""
    what = f"{damage.kind or 'object'} {damage.object_id}" if damage.object_id else "pack"
    where = f" ({damage.file})" if damage.file else ""
    line = f"{what}{where}: {damage.message}"
    if damage.programs:
        line += f"; programs: {', '.join(damage.programs)}"
    line += f"; reached from: {', '.join(damage.refs)}" if damage.refs else "; nothing uses it"
    return line
