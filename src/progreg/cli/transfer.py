"""``progreg export`` and ``progreg import``: Git bundles and the reference formats.

JSON shape of ``export --json``: the :class:`~progreg.sharing.transfer.ExportResult`
fields (``path``, ``kind``, ``bundle_version``, ``refs``, ``prerequisites``,
``program_ids``, ``commit``, ``object_count``, ``size_bytes``,
``duration_ms``); of ``import --json``: the
:class:`~progreg.sharing.transfer.ImportResult` fields (``source``, ``source_kind``,
``commit``, ``imported``, ``updated``, ``removed``, ``identical``,
``tags_created``, ``tags_kept``, ``checkpoints_created``,
``checkpoints_updated``, ``history_missing``, ``history_unlisted``,
``warnings``, ``object_count``, ``size_bytes``, ``duration_ms``).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from progreg.cli.context import Context
from progreg.cli.output import (
    ProgregCommand,
    echo_json,
    info,
    json_option,
    open_storage,
    progress_reporter,
)
from progreg.cli.params import PROGRAM_ID
from progreg.cli.usage import OneLineUsageError


def _size(size: int) -> str:
    """A byte count for people: ``512 B``, ``4.2 KB``, ``21.9 MB``."""
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KB", "MB", "GB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GB":
            break
    return f"{scaled:.1f} {unit}"


def check_hints(registry: Path, bundle: Path, incremental: bool) -> list[str]:
    """How to check the bundle with git: commands that work from any directory.

    ``git bundle verify`` needs a repository (to look for the prerequisites):
    the registry the bundle was exported from has them. ``git bundle
    list-heads`` reads the header anywhere.
    """
    where = shlex.quote(str(registry.absolute()))
    path = shlex.quote(str(bundle.absolute()))
    lines = []
    if incremental:
        lines.append(
            "incremental: the reader needs the commit(s) it builds on; it verifies it in its"
            f" own registry: git -C <that registry> bundle verify {path}"
        )
    lines.append(f"check it with: git -C {where} bundle verify {path}")
    lines.append(f"list its refs anywhere with: git bundle list-heads {path}")
    return lines


@click.command("export", cls=ProgregCommand)
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("program_ids", nargs=-1, type=PROGRAM_ID, metavar="[IDS]...")
@click.option("--all", "everything", is_flag=True, help="Bundle the whole registry.")
@click.option(
    "--since",
    metavar="BUNDLE_OR_COMMIT",
    help="Only what is new since a previous bundle file or a commit (implies --all).",
)
@json_option
@click.pass_obj
def export_command(
    ctx: Context,
    path: Path,
    program_ids: tuple[str, ...],
    everything: bool,
    since: str | None,
    as_json: bool,
) -> None:
    """Write a Git bundle: the programs IDS, or the whole registry with --all.

    With IDS, the bundle holds one new commit with exactly those programs
    (their current versions) and their tags on those versions. With --all it
    holds main, every tag and every checkpoint branch; --since makes it
    incremental. Git reads the bundle:
    'git -C REGISTRY bundle verify PATH' (git verifies a bundle only inside a
    repository, one that has what it builds on), 'git bundle list-heads PATH'
    anywhere, 'git clone PATH' for a full bundle.

    \b
    Examples:
      progreg export picked.bundle 1a2b3c4d5e6f7a8b 00ff00ff00ff00ff
      progreg export registry.bundle --all
      progreg export weekly.bundle --since registry.bundle --json
    """
    if program_ids and (everything or since is not None):
        raise OneLineUsageError("give program IDS or --all/--since, not both")
    if not program_ids and not everything and since is None:
        raise OneLineUsageError("give the program IDS to export, or --all")
    storage = open_storage(ctx)
    if program_ids:
        with progress_reporter("exporting") as progress:
            result = storage.export_programs(program_ids, path, progress=progress)
    else:
        with progress_reporter("exporting") as progress:
            result = storage.export_registry(path, since=since, progress=progress)
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    what = (
        f"{len(result.program_ids)} program(s)"
        if result.kind == "programs"
        else f"the registry ({len(result.program_ids)} programs, {len(result.refs)} refs)"
    )
    click.echo(
        f"exported {what} to {result.path}: {result.object_count} objects,"
        f" {_size(result.size_bytes)}"
    )
    if result.tags_left_out:
        info(
            f"tags left out (they label other versions, whose history --all carries):"
            f" {', '.join(result.tags_left_out)}"
        )
    for line in check_hints(storage.path, Path(result.path), bool(result.prerequisites)):
        info(line)


@click.command("import", cls=ProgregCommand)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--redact-secrets",
    is_flag=True,
    help="Import a reference export's programs with credentials replaced by [REDACTED]"
    " instead of refusing them (a bundle holding one is always refused).",
)
@json_option
@click.pass_obj
def import_command(ctx: Context, path: Path, redact_secrets: bool, as_json: bool) -> None:
    """Import a Git bundle, a reference JSON export or a dspy_storage/ folder.

    Programs already present with identical content are skipped; a program
    that exists with different content is refused, and so is anything
    malformed: nothing is written then. The registry is created if needed.

    \b
    Examples:
      progreg import registry.bundle
      progreg --registry ./registry import ./dspy_storage --json
    """
    storage = open_storage(ctx, create=True)
    with progress_reporter("importing") as progress:
        result = storage.import_programs(
            path, progress=progress, secrets="redact" if redact_secrets else "refuse"
        )
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    click.echo(
        f"imported {len(result.imported)} program(s) from {path}"
        f" ({result.source_kind}): {len(result.updated)} updated,"
        f" {len(result.identical)} identical (skipped)"
        + (f", commit {result.commit[:10]}" if result.commit else ", registry unchanged")
        + (" (main fast-forwarded to the bundle's)" if result.fast_forward else "")
    )
    for label, refs in (
        ("tags created", result.tags_created),
        ("tags kept (ours differ)", result.tags_kept),
        ("checkpoints created", result.checkpoints_created),
        ("checkpoints updated", result.checkpoints_updated),
    ):
        if refs:
            click.echo(f"{label}: {', '.join(refs)}")
    for warning in result.warnings:
        info(f"warning: {warning}")
