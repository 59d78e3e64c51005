"""``progreg tag``, ``untag`` and ``tags``: labels on programs (annotated Git tags).

JSON shape of ``tags ID --json``: ``{"program_id": ID, "tags": [...]}``; of
``tags --json`` (every tag): ``{TAG: [program ids], ...}``, both sorted.
"""

from __future__ import annotations

import click

from progreg import StorageManager
from progreg.cli.context import Context
from progreg.cli.output import NotFound, ProgregCommand, echo_json, info, json_option, open_manager
from progreg.cli.params import PROGRAM_ID, TAG


def _known(manager: StorageManager, program_id: str) -> bool:
    """Whether the program has tags, or has a version on main (live or removed)."""
    storage = manager.storage
    return bool(storage.tags_of(program_id)) or bool(storage.versions(program_id, limit=1))


@click.command(cls=ProgregCommand)
@click.argument("program_id", type=PROGRAM_ID, metavar="ID")
@click.argument("tags", nargs=-1, required=True, type=TAG, metavar="TAG...")
@click.pass_obj
def tag(ctx: Context, program_id: str, tags: tuple[str, ...]) -> None:
    """Tag program ID; tags it already has are kept as they are.

    Each tag is an annotated Git tag TAG/ID on the commit that saved the
    program. Exits with 3 when ID is not in the registry.

    \b
    Example:
      progreg tag 1a2b3c4d5e6f7a8b production reviewed
    """
    manager = open_manager(ctx)
    created = manager.tag_program(program_id, *tags)
    if created:
        click.echo(f"tagged {program_id}: {', '.join(created)}")
    kept = [name for name in dict.fromkeys(tags) if name not in created]
    if kept:
        info(f"{program_id} already had: {', '.join(kept)}")


@click.command(cls=ProgregCommand)
@click.argument("program_id", type=PROGRAM_ID, metavar="ID")
@click.argument("tags", nargs=-1, required=True, type=TAG, metavar="TAG...")
@click.pass_obj
def untag(ctx: Context, program_id: str, tags: tuple[str, ...]) -> None:
    """Remove tags from program ID (removed programs can be untagged too).

    Tags the program does not have are reported and skipped. Exits with 3
    when the registry never held ID.

    \b
    Example:
      progreg untag 1a2b3c4d5e6f7a8b candidate
    """
    manager = open_manager(ctx)
    if not _known(manager, program_id):
        raise NotFound(f"program {program_id} is not in the registry")
    removed = manager.untag_program(program_id, *tags)
    if removed:
        click.echo(f"untagged {program_id}: {', '.join(removed)}")
    absent = [name for name in dict.fromkeys(tags) if name not in removed]
    if absent:
        info(f"{program_id} did not have: {', '.join(absent)}")


@click.command(cls=ProgregCommand)
@click.argument("program_id", type=PROGRAM_ID, metavar="[ID]", required=False)
@json_option
@click.pass_obj
def tags(ctx: Context, program_id: str | None, as_json: bool) -> None:
    """List the tags of program ID, or without ID every tag and its programs.

    --json prints {"program_id": ID, "tags": [...]}, or without ID
    {TAG: [program ids]}. Exits with 3 when the registry never held ID.

    \b
    Example:
      progreg tags 1a2b3c4d5e6f7a8b
      progreg tags --json
    """
    manager = open_manager(ctx)
    if program_id is None:
        by_tag: dict[str, list[str]] = {}
        for owner, names in manager.storage.all_tags().items():
            for name in names:
                by_tag.setdefault(name, []).append(owner)
        if as_json:
            echo_json({name: by_tag[name] for name in sorted(by_tag)})
            return
        if not by_tag:
            info("no program is tagged")
        for name in sorted(by_tag):
            click.echo(f"{name}: {' '.join(by_tag[name])}")
        return
    if not _known(manager, program_id):
        raise NotFound(f"program {program_id} is not in the registry")
    found = manager.get_tags(program_id)
    if as_json:
        echo_json({"program_id": program_id, "tags": found})
    else:
        for name in found:
            click.echo(name)
