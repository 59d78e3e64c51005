"""``progreg review``: what a pull request changes, in progreg's terms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from progreg import ReviewReport, review_range
from progreg.cli.context import EXIT_ERROR, Context
from progreg.cli.output import ProgregCommand
from progreg.cli.render import format_score
from progreg.cli.terminal import visible


@click.command(cls=ProgregCommand)
@click.argument("revisions", metavar="BASE..HEAD")
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "markdown"]),
    default="text",
    show_default=True,
    help="markdown: a comment ready to post on the pull request.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--strict", is_flag=True, help="Exit with 1 when the server's hook would refuse a commit."
)
@click.pass_obj
def review(ctx: Context, revisions: str, output: str, as_json: bool, strict: bool) -> None:
    """Summarise what the commits BASE..HEAD change: programs, scores, prompts, findings.

    Reads the Git repository holding the current directory (a clone), or
    --registry when given (a bare registry too). Lists the programs added,
    changed and removed with their scores before and after, whether the
    best program of each signature changes, a word diff of each changed
    prompt, demo lists that grew or shrank, and what the server's hook would
    refuse in those commits.

    \b
    Example:
      progreg review origin/main..HEAD --format markdown > comment.md
    """
    report = review_range(ctx.registry or Path.cwd(), revisions)
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    elif output == "markdown":
        click.echo(report.to_markdown(), nl=False)
    else:
        for line in _text(report):
            click.echo(line)
    if strict and not report.ok:
        sys.exit(EXIT_ERROR)


def _text(report: ReviewReport) -> list[str]:
    lines = [
        f"{report.base[:12]}..{report.head[:12]}: {report.commits} commit(s),"
        f" {len(report.programs)} program(s) changed"
    ]
    for program in report.programs:
        before, after = program.score.before, program.score.after
        score = (
            format_score(after)
            if before == after
            else f"{format_score(before)} -> {format_score(after)}"
        )
        lines.append(
            f"  {program.status:<8} {program.program_id}"
            f"  {visible(program.signature_class or '-')}  score {score}"
        )
        for text in program.texts:
            shown = "".join(
                words
                if kind == "same"
                else f"[-{words}-]"
                if kind == "removed"
                else f"{{+{words}+}}"
                for kind, words in text.words
            )
            lines.append(f"    {text.path}: {visible(shown)}")
        for path, (old, new) in program.demos.items():
            lines.append(f"    {path}: {old} -> {new} demos")
        if program.other_changes:
            lines.append(f"    also changed: {', '.join(program.other_changes[:10])}")
    for signature in report.signatures:
        name = visible(signature.signature_class or "-")
        if signature.best_changes:
            lines.append(
                f"best {name}: now {signature.best_after or 'none'}"
                f" ({format_score(signature.score.after)}),"
                f" was {signature.best_before or 'none'} ({format_score(signature.score.before)})"
            )
        else:
            lines.append(
                f"best {name}: stays {signature.best_after or 'none'}"
                f" ({format_score(signature.score.after)})"
            )
    for change in report.labels:
        lines.append(
            f"label {visible(change.signature)}@{visible(change.label)}:"
            f" {change.before or 'none'} -> {change.after or 'none'}"
        )
    if report.problems:
        lines.append(f"the server's hook would refuse {len(report.problems)} thing(s):")
        lines += [f"  {visible(problem)}" for problem in report.problems]
    else:
        lines.append("the server's hook would accept every commit")
    return lines
