"""``progreg gc``: pack the registry's loose objects and merge its packs, by hand."""

from __future__ import annotations

import click

from progreg.cli.context import Context
from progreg.cli.output import ProgregCommand, echo_json, json_option, open_storage


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@click.command(cls=ProgregCommand)
@click.option(
    "--pack-limit",
    type=click.IntRange(min=0),
    default=None,
    help="Merge the packs into one when there are more than this many (default 1: always;"
    " 0 never).",
)
@json_option
@click.pass_obj
def gc(ctx: Context, pack_limit: int | None, as_json: bool) -> None:
    """Pack every loose object, then merge every pack into one (with deltas), like git gc.

    Saves write packs, and progreg merges small packs on its own after saves
    (and packs loose objects once enough have piled up: gc.auto in the
    registry's Git config, default 6700; 0 turns all automatic maintenance
    off). No git binary is needed. --json prints {objects_packed,
    loose_removed, packs_before, packs_after, packs_consolidated, size_before,
    size_after, seconds, pack}, sizes in bytes under objects/.

    \b
    Example:
      progreg --registry ./registry gc
      progreg gc --json
    """
    storage = open_storage(ctx)
    report = storage.gc(pack_limit=pack_limit)
    if as_json:
        echo_json(report.model_dump(mode="json"))
        return
    click.echo(
        f"packed {report.objects_packed} objects, removed {report.loose_removed} loose files"
        f" in {report.seconds:.2f} s"
    )
    if report.packs_consolidated:
        click.echo(f"merged {report.packs_consolidated} packs into one")
    click.echo(
        f"objects: {_mb(report.size_before)} before, {_mb(report.size_after)} after;"
        f" {report.packs_after} pack(s)"
    )
