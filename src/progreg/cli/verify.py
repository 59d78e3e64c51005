"""``progreg verify``: programs intact, commits and tags signed by whom."""

from __future__ import annotations

import json
import sys

import click

from progreg.cli.main import EXIT_ERROR, Context, cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List every commit and tag, not a summary.")
@click.pass_obj
def verify(ctx: Context, as_json: bool, show_all: bool) -> None:
    """Check every program on main and every commit's and tag's signature.

    Exits with 1 when a program is damaged or a signature does not hold.

    \b
    Example:
      progreg --registry ./registry verify --all
    """
    report = ctx.storage().verify()
    if as_json:
        data = report.model_dump(mode="json")
        data.update(ok=report.ok, signed=report.signed, unsigned=report.unsigned)
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"programs checked: {report.programs_checked}, problems: {len(report.problems)}")
        for problem in report.problems:
            click.echo(f"  {problem.path}: {problem.message}")
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
