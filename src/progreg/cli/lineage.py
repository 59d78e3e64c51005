"""``progreg lineage``: where a program came from, and what was derived from it.

JSON shape of ``lineage ID --json``: ``Lineage.model_dump(mode="json")``:
``{"program": NODE, "ancestors": [NODE, ...], "descendants": [NODE, ...]}``,
each NODE ``{program_id, commit, saved_at, score, score_name, live, derived_from,
generation}``; descendants come depth first, each naming its parent in ``derived_from``.
"""

from __future__ import annotations

import click

from progreg import Lineage, LineageNode
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


def tree_lines(lineage: Lineage) -> list[str]:
    """The lineage as text: ancestors (farthest first) above, descendants indented below."""
    lines: list[str] = []
    indent = ""
    for depth, node in enumerate([*reversed(lineage.ancestors), lineage.program]):
        mark = _HERE if node is lineage.program else ""
        lines.append(("" if depth == 0 else indent + "`-- ") + _label(node) + mark)
        indent = "" if depth == 0 else indent + "    "
    # descendants come depth first: a node is the last of its siblings when no
    # later node has the same parent
    last_child = {node.derived_from: n for n, node in enumerate(lineage.descendants)}
    open_levels: list[bool] = []  # per generation below the program: more siblings follow
    for n, node in enumerate(lineage.descendants):
        level = node.generation - 1
        del open_levels[level:]
        last = last_child[node.derived_from] == n
        pad = "".join("|   " if more else "    " for more in open_levels)
        lines.append(f"{indent}{pad}{'`-- ' if last else '|-- '}{_label(node)}")
        open_levels.append(not last)
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
    for line in tree_lines(found):
        click.echo(line)
