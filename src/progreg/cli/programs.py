"""``progreg init``, ``save``, ``show``, ``list``, ``find``, ``best`` and ``restore``.

JSON shapes (``--json``): a program is ``SavedProgram.model_dump(mode="json")``
without ``program`` (it would repeat ``state``); a list of programs is a JSON
array of ``ProgramSummary.model_dump(mode="json")``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import IO

import click

from progreg import ProgramStorage, ProgramSummary, SavedProgram
from progreg.cli.context import Context
from progreg.cli.inputs import ProgramInput, amended, read_program, result_options
from progreg.cli.output import (
    NotFound,
    ProgregCommand,
    echo_json,
    info,
    json_option,
    open_manager,
    open_storage,
    registry_path,
    table,
)
from progreg.cli.params import PROGRAM_ID, REVISION, SIGNATURE, TAG
from progreg.cli.render import format_score, program_lines, saved_json, summary_rows


def emit_program(
    storage: ProgramStorage,
    saved: SavedProgram,
    *,
    as_json: bool,
    state_only: bool,
    revision: str | None = None,
) -> None:
    """Print a program as JSON, as its bare state, or for people."""
    if as_json:
        echo_json(saved_json(saved))
    elif state_only:
        echo_json(saved.state)
    else:
        tags = storage.tags_of(saved.program_id)
        for line in program_lines(saved, tags, revision):
            click.echo(line)


def emit_summaries(
    storage: ProgramStorage, programs: Iterable[ProgramSummary], *, as_json: bool, empty: str
) -> None:
    """Print programs as a JSON array or a table (``empty`` on stderr when there are none)."""
    programs = list(programs)
    tags = storage.all_tags() if programs else {}
    if as_json:
        records = [program.model_dump(mode="json") for program in programs]
        for record in records:
            record["tags"] = tags.get(record["program_id"], [])
        echo_json(records)
        return
    if not programs:
        info(empty)
        return
    headers, rows = summary_rows(programs, tags)
    click.echo("\n".join(table(headers, rows)))


def missing_program(storage: ProgramStorage, program_id: str) -> NotFound:
    """The not-found error for a program that is not on ``main``, with a hint if it was."""
    if storage.versions(program_id, limit=1):
        return NotFound(
            f"program {program_id} was removed from the registry;"
            f" 'progreg restore {program_id}' brings it back"
        )
    return NotFound(f"program {program_id} is not in the registry")


@click.command(cls=ProgregCommand)
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.pass_obj
def init(ctx: Context, path: Path | None) -> None:
    """Create a registry (an empty bare Git repository) and print its path.

    Without PATH, the registry is the one --registry, PROGREG_PATH or the
    default ./dspy_storage names. An existing registry is left as it is.

    \b
    Example:
      progreg init ./registry
      export PROGREG_PATH=$PWD/registry
    """
    target = path if path is not None else registry_path(ctx)
    existed = target.is_dir() and any(target.iterdir())
    storage = ProgramStorage(target)
    click.echo(str(storage.path))
    info("the registry already exists" if existed else "created an empty registry")


@click.command(cls=ProgregCommand)
@click.argument("file", type=click.File("rb"), required=False, metavar="[FILE|-]")
@result_options
@click.option("--tag", "tags", multiple=True, type=TAG, help="Tag the program (repeatable).")
@click.option("--description", help="A description, kept in the metadata.")
@click.option(
    "--id",
    "program_id",
    type=PROGRAM_ID,
    help="Save under this id: a new version of that program (default: a new id).",
)
@click.option(
    "--redact-secrets",
    is_flag=True,
    help="Save a program holding credentials (API keys, tokens) with each replaced by"
    " [REDACTED] instead of refusing it.",
)
@click.option(
    "--derived-from",
    "derived_from",
    type=PROGRAM_ID,
    metavar="ID",
    help="Record that the program was derived from program ID (see progreg lineage).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Commit even when the content equals the live version of --id (default: no commit).",
)
@json_option
@click.pass_obj
def save(
    ctx: Context,
    file: IO[bytes] | None,
    score: float | None,
    score_name: str | None,
    optimizer: str | None,
    signature: str | None,
    tags: tuple[str, ...],
    description: str | None,
    program_id: str | None,
    redact_secrets: bool,
    derived_from: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Save a program from a JSON file, or stdin (FILE omitted or -), as one commit.

    The JSON is what show --json prints (saved as a new version of that
    program, keeping its score, optimizer and metadata), {"program": STATE,
    "optimization_result": {...}, "metadata": {...}} (only "program" is
    required), or a bare program STATE such as a DSPy dump_state(); a bare
    state saved with --id keeps the score, optimizer and metadata of that
    program's current version. The options override what the file says.
    Prints the new version's id, signature, score and commit; --json prints
    it as show --json does. A record saved with another --id is derived from
    the version it shows (see progreg lineage). When the program, result,
    metadata and ancestor equal the live version of that id, nothing is
    committed and that version is printed as unchanged (tags are still
    added); --force commits anyway.

    \b
    Example:
      progreg save program.json --score 0.91 --score-name accuracy \\
          --optimizer MIPROv2 --signature ClassifyText --tag candidate
      progreg show 1a2b3c4d5e6f7a8b --json > program.json   # edit it, then:
      progreg save program.json
    """
    if file is None:
        if sys.stdin.isatty():
            raise click.UsageError("give a FILE, or pipe the program's JSON into stdin")
        file = sys.stdin.buffer
    given = read_program(file)
    program_id = program_id if program_id is not None else given.program_id
    storage = open_storage(ctx, create=True)
    if given.bare and program_id is not None:
        current = storage.load_program(program_id)
        if current is not None:
            given = replace(
                given, optimization_result=current.optimization_result, metadata=current.metadata
            )
            info(f"kept the score, optimizer and metadata of {program_id}'s current version")
    given = amended(given, score, score_name, optimizer, signature)
    ancestor: str | SavedProgram | None = derived_from
    if ancestor is None and given.program_id not in (None, program_id):
        ancestor = _record_version(storage, given)
    metadata = dict(given.metadata)
    if description is not None:
        metadata["description"] = description
    saved = storage.save_program(
        given.program,
        given.optimization_result,
        metadata,
        program_id,
        tags=tags,
        secrets="redact" if redact_secrets else "refuse",
        derived_from=ancestor,
        force=force,
    )
    if as_json:
        echo_json(saved_json(saved))
        return
    click.echo(
        f"{'unchanged' if saved.unchanged else 'saved'} {saved.program_id}"
        f"  {saved.signature_class or '-'}"
        f"  {format_score(saved.best_score)}  commit {saved.commit[:10]}"
    )


def _record_version(storage: ProgramStorage, given: ProgramInput) -> SavedProgram | None:
    """The version a show --json record names, when this registry holds that program."""
    assert given.program_id is not None
    versions = storage.versions(given.program_id)
    exact = [version for version in versions if version.commit == given.commit]
    return exact[0] if exact else (versions[0] if versions else None)


@click.command(cls=ProgregCommand)
@click.argument("revision", type=REVISION, metavar="ID[~N]|SIGNATURE@LABEL")
@click.option("--state", "state_only", is_flag=True, help="Print only the state (what save reads).")
@json_option
@click.pass_obj
def show(ctx: Context, revision: tuple[str, int], state_only: bool, as_json: bool) -> None:
    """Show a program: ID as it is now, ID~N as it was N saves of it before,
    SIGNATURE@LABEL the program a label names on main.

    Versions are the commits of main's first-parent log that wrote the
    program's file. --json prints {program_id, program_type, state,
    optimization_result, metadata, saved_at, commit}; --state only the
    state. Exits with 3 if the program (or that version) is not there.

    \b
    Example:
      progreg show 1a2b3c4d5e6f7a8b
      progreg show 1a2b3c4d5e6f7a8b~1 --json
      progreg show 1a2b3c4d5e6f7a8b --state > state.json
      progreg show ClassifyText@production
    """
    program_id, back = revision
    storage = open_storage(ctx)
    if back == 0:
        saved = storage.load_program(program_id)
        if saved is None and "@" in program_id:
            raise NotFound(f"{program_id} names a program that is not on main")
        if saved is None:
            raise missing_program(storage, program_id)
    else:
        versions = storage.versions(program_id, limit=back + 1)
        saved = versions[back] if len(versions) > back else None
        if saved is None:
            count = len(storage.versions(program_id))
            if count == 0:
                raise NotFound(f"program {program_id} is not in the registry's history")
            raise NotFound(
                f"program {program_id} has {count} version(s) on main, so"
                f" {program_id}~{back} does not exist (the oldest is ~{count - 1})"
            )
    label = f"{program_id}~{back}" if back else None
    emit_program(storage, saved, as_json=as_json, state_only=state_only, revision=label)


@click.command("list", cls=ProgregCommand)
@json_option
@click.pass_obj
def list_programs(ctx: Context, as_json: bool) -> None:
    """List every program in the registry, in the order main recorded them.

    --json prints an array of {program_id, saved_at, best_score,
    score_name, optimizer, signature_class, metadata, tags}.

    \b
    Example:
      progreg list
      progreg list --json | jq -r '.[].program_id'
    """
    storage = open_storage(ctx)
    programs = storage.get_history().programs
    emit_summaries(storage, programs, as_json=as_json, empty="the registry holds no programs")


@click.command(cls=ProgregCommand)
@click.option("--optimizer", help="Only programs from this optimizer (exact match).")
@click.option("--min-score", type=float, help="Only programs scoring at least this.")
@click.option("--max-age-days", type=float, help="Only programs saved in the last N days.")
@click.option("--signature", type=SIGNATURE, help="Only programs for this signature.")
@click.option(
    "--tag", "tags", multiple=True, type=TAG, help="Only programs with this tag (any of)."
)
@json_option
@click.pass_obj
def find(
    ctx: Context,
    optimizer: str | None,
    min_score: float | None,
    max_age_days: float | None,
    signature: str | None,
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Find the programs that match every filter given (StorageManager.find_programs).

    A program without a score counts as 0 for --min-score; with several
    --tag, a program needs one of them. --json prints an array of
    ProgramSummary objects (empty when nothing matches; the exit code is 0).

    \b
    Example:
      progreg find --signature ClassifyText --min-score 0.8 --max-age-days 7
      progreg find --tag production --tag candidate --json
    """
    manager = open_manager(ctx)
    found = manager.find_programs(optimizer, min_score, max_age_days, signature, tags or None)
    emit_summaries(manager.storage, found, as_json=as_json, empty="no program matches")


@click.command(cls=ProgregCommand)
@click.argument("signature", type=SIGNATURE)
@click.option("--state", "state_only", is_flag=True, help="Print only the state (what save reads).")
@json_option
@click.pass_obj
def best(ctx: Context, signature: str, state_only: bool, as_json: bool) -> None:
    """Show the highest-scoring program for SIGNATURE (ties go to the newest).

    --json prints the program as show --json does. Exits with 3 when no
    program for SIGNATURE has a score.

    \b
    Example:
      progreg best ClassifyText
      progreg best ClassifyText --state > best-state.json
    """
    manager = open_manager(ctx)
    saved = manager.get_best_program(signature)
    if saved is None:
        raise NotFound(f"no program with a score for signature {signature}")
    emit_program(manager.storage, saved, as_json=as_json, state_only=state_only)


@click.command(cls=ProgregCommand)
@click.argument("program_ids", nargs=-1, required=True, type=PROGRAM_ID, metavar="ID...")
@click.pass_obj
def delete(ctx: Context, program_ids: tuple[str, ...]) -> None:
    """Remove programs from the registry, one commit each; their history stays.

    'progreg restore ID' brings a program back. Exits with 3, removing
    nothing, when any ID is not in the registry.

    \b
    Example:
      progreg delete 1a2b3c4d5e6f7a8b
    """
    storage = open_storage(ctx)
    live = set(storage.program_ids())
    for program_id in program_ids:
        if program_id not in live:
            raise missing_program(storage, program_id)
    for program_id in dict.fromkeys(program_ids):
        if storage.delete_program(program_id):
            click.echo(f"deleted {program_id} (restore it with: progreg restore {program_id})")
        else:
            info(f"{program_id} was removed meanwhile by another writer")


@click.command(cls=ProgregCommand)
@click.argument("program_id", type=PROGRAM_ID, metavar="ID")
@json_option
@click.pass_obj
def restore(ctx: Context, program_id: str, as_json: bool) -> None:
    """Bring back the last version of a removed program, as a new commit.

    A program that is already there is left as it is. --json prints the
    program as show --json does. Exits with 3 when the registry's history
    never held ID.

    \b
    Example:
      progreg restore 1a2b3c4d5e6f7a8b
    """
    storage = open_storage(ctx)
    present = program_id in storage.program_ids()
    saved = storage.restore_program(program_id)
    if as_json:
        echo_json(saved_json(saved))
    elif present:
        click.echo(f"{program_id} is already in the registry (commit {saved.commit[:10]})")
    else:
        click.echo(
            f"restored {program_id}  {saved.signature_class or '-'}"
            f"  {format_score(saved.best_score)}  commit {saved.commit[:10]}"
        )
