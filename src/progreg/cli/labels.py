"""``progreg label set|remove|list|history``: deployment labels (``ClassifyText@production``).

A label names one program per signature; each move is a commit on main
(``git log -- labels/SIGNATURE.json``). JSON shapes: ``set``/``remove`` print
a ``LabelMove``; ``list`` prints ``{signature: {label: program id}}``;
``history`` an array of ``LabelMove.model_dump(mode="json")``, newest first.
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from progreg import LabelMove
from progreg.cli.context import Context
from progreg.cli.output import (
    NotFound,
    ProgregGroup,
    echo_json,
    format_time,
    info,
    json_option,
    open_storage,
    table,
)
from progreg.cli.params import LABEL, PROGRAM_ID, SIGNATURE

_REASON = click.option(
    "--reason", metavar="TEXT", help="Why: one line, recorded in the commit (Label-Reason)."
)


@click.group(cls=ProgregGroup)
def label() -> None:
    """Point deployment labels (production, staging...) at programs, with audited history.

    A label names one program of a signature; code loads it as
    SIGNATURE@LABEL (progreg show ClassifyText@production).

    \b
    Example:
      progreg label set ClassifyText production 1a2b3c4d5e6f7a8b --reason "won the eval"
      progreg label history ClassifyText production
    """


def _moved(move: LabelMove, as_json: bool) -> None:
    if as_json:
        echo_json(move.model_dump(mode="json"))
        return
    if move.unchanged:
        info(f"{move.signature}@{move.label} already names {move.to_program}: nothing to do")
        return
    click.echo(
        f"{move.signature}@{move.label}: {move.from_program or 'none'} ->"
        f" {move.to_program or 'none'}  commit {move.commit[:10]}"
    )


@label.command("set")
@click.argument("signature", type=SIGNATURE)
@click.argument("name", metavar="LABEL", type=LABEL)
@click.argument("program_id", type=PROGRAM_ID, metavar="PROGRAM_ID")
@_REASON
@json_option
@click.pass_obj
def set_label(
    ctx: Context, signature: str, name: str, program_id: str, reason: str | None, as_json: bool
) -> None:
    """Point SIGNATURE's LABEL at PROGRAM_ID: one commit on main.

    The program must be on main and solve SIGNATURE. Naming the program it
    already names changes nothing. Exits with 3 when the program is not there.

    \b
    Example:
      progreg label set ClassifyText production 1a2b3c4d5e6f7a8b --reason "won the eval"
    """
    storage = open_storage(ctx)
    _moved(storage.set_label(signature, name, program_id, reason=reason), as_json)


@label.command("remove")
@click.argument("signature", type=SIGNATURE)
@click.argument("name", metavar="LABEL", type=LABEL)
@_REASON
@json_option
@click.pass_obj
def remove_label(
    ctx: Context, signature: str, name: str, reason: str | None, as_json: bool
) -> None:
    """Remove SIGNATURE's LABEL: one commit on main. Exits with 3 when it is not set.

    \b
    Example:
      progreg label remove ClassifyText canary --reason "canary over"
    """
    storage = open_storage(ctx)
    _moved(storage.remove_label(signature, name, reason=reason), as_json)


@label.command("list")
@click.argument("signature", type=SIGNATURE, required=False)
@json_option
@click.pass_obj
def list_labels(ctx: Context, signature: str | None, as_json: bool) -> None:
    """List the labels on main: of SIGNATURE, or of every signature.

    --json prints {signature: {label: program id}}.

    \b
    Example:
      progreg label list
      progreg label list ClassifyText --json
    """
    found = open_storage(ctx).labels(signature)
    if as_json:
        echo_json(found)
        return
    if not found:
        info("no labels" + (f" for {signature}" if signature else ""))
        return
    rows = [
        [sig, name, program_id]
        for sig, labels in found.items()
        for name, program_id in labels.items()
    ]
    for line in table(["SIGNATURE", "LABEL", "PROGRAM"], rows):
        click.echo(line)


def _history_table(moves: Iterable[LabelMove]) -> list[str]:
    headers = ["MOVED (UTC)", "FROM", "TO", "AUTHOR", "COMMIT", "REASON"]
    rows = [
        [
            format_time(move.moved_at),
            move.from_program or "none",
            move.to_program or "none",
            move.author,
            move.commit[:10],
            move.reason or "-",
        ]
        for move in moves
    ]
    return table(headers, rows)


@label.command("history")
@click.argument("signature", type=SIGNATURE)
@click.argument("name", metavar="LABEL", type=LABEL)
@json_option
@click.pass_obj
def label_history(ctx: Context, signature: str, name: str, as_json: bool) -> None:
    """List every move of SIGNATURE's LABEL, newest first: when, from, to, who, why.

    --json prints an array of {signature, label, from_program, to_program,
    reason, author, moved_at, commit, unchanged}. Exits with 3 when the label
    never existed.

    \b
    Example:
      progreg label history ClassifyText production
    """
    moves = open_storage(ctx).label_history(signature, name)
    if not moves:
        raise NotFound(f"label {name} of {signature} has never been set on main")
    if as_json:
        echo_json([move.model_dump(mode="json") for move in moves])
        return
    for line in _history_table(moves):
        click.echo(line)
