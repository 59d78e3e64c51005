"""``progreg lineage``: where a program came from, and what was derived from it.

JSON shape of ``lineage ID --json``: ``Lineage.model_dump(mode="json")``:
``{"program": NODE, "ancestors": [NODE, ...], "descendants": [NODE, ...]}``,
each NODE ``{program_id, commit, saved_at, score, score_name, live, children}``.
"""

from __future__ import annotations

import click

from progreg import LineageNode
from progreg.cli.context import Context
from progreg.cli.output import ProgregCommand, echo_json, json_option, open_storage
from progreg.cli.params import PROGRAM_ID
from progreg.cli.render import format_score

#: What marks the program asked about in the tree.
_HERE = "  <- this program"


def _label(node: LineageNode) -> str:
    score = "no score" if node.score is None else f"{node.score_name or 'score'} "
    if node.score is not None:
        score += format_score(node.score)
    return f"{node.program_id}  {score}{'' if node.live else '  (deleted)'}"


def tree_lines(
    ancestors: list[LineageNode], program: LineageNode, descendants: list[LineageNode]
) -> list[str]:
    """The lineage as text: ancestors (farthest first) above, descendants indented below."""
    lines: list[str] = []
    indent = ""
    chain = [*reversed(ancestors), program]
    for depth, node in enumerate(chain):
        prefix = "" if depth == 0 else indent + "`-- "
        if depth > 0:
            indent += "    "
        lines.append(prefix + _label(node) + (_HERE if node is program else ""))
    stack = [(child, indent, n == len(descendants) - 1) for n, child in enumerate(descendants)]
    stack.reverse()
    while stack:
        node, pad, last = stack.pop()
        lines.append(f"{pad}{'`-- ' if last else '|-- '}{_label(node)}")
        inner = pad + ("    " if last else "|   ")
        kids = node.children
        stack.extend(
            (child, inner, n == len(kids) - 1) for n, child in reversed(list(enumerate(kids)))
        )
    return lines


@click.command(cls=ProgregCommand)
@click.argument("program_id", type=PROGRAM_ID, metavar="ID")
@json_option
@click.pass_obj
def lineage(ctx: Context, program_id: str, as_json: bool) -> None:
    """Show where program ID came from and the programs derived from it, as a tree.

    Ancestors come first (the farthest at the top), then ID, then the
    programs derived from it, indented under their parent; each with its
    score, and (deleted) when it is no longer on main. Built from the log, so
    deleted programs keep their place. --json prints {"program": NODE,
    "ancestors": [...], "descendants": [...]} (see ProgramStorage.lineage).
    Exits with 3 when the registry never held ID.

    \b
    Example:
      progreg lineage 1a2b3c4d5e6f7a8b
      progreg lineage 1a2b3c4d5e6f7a8b --json
    """
    storage = open_storage(ctx)
    found = storage.lineage(program_id)
    if as_json:
        echo_json(found.model_dump(mode="json"))
        return
    for line in tree_lines(found.ancestors, found.program, found.descendants):
        click.echo(line)
