"""``progreg checkpoint create|restore|list|log|delete``: the progress of long runs.

Each run NAME is a branch ``checkpoints/NAME``; ``NAME~N`` is the checkpoint
N steps before its newest. JSON shapes: ``create``/``restore`` print the
program (``SavedProgram`` without ``program``, as ``show`` does); ``list``
and ``log`` print arrays of ``CheckpointInfo.model_dump(mode="json")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

import click

from progreg import CheckpointInfo
from progreg.cli.context import Context
from progreg.cli.inputs import amended, read_program, result_options
from progreg.cli.output import (
    NotFound,
    ProgregGroup,
    echo_json,
    format_time,
    info,
    json_option,
    open_manager,
    table,
)
from progreg.cli.params import CHECKPOINT_NAME
from progreg.cli.programs import emit_program
from progreg.cli.render import format_score, saved_json


@click.group(cls=ProgregGroup)
def checkpoint() -> None:
    """Record, restore and inspect checkpoints of long optimization runs.

    \b
    Example:
      progreg checkpoint create mipro-run-1 step-3.json --score 0.84
      progreg checkpoint log mipro-run-1
      progreg checkpoint restore mipro-run-1~1 --state > step-2.json
    """


def _checkpoint_table(infos: Iterable[CheckpointInfo]) -> list[str]:
    headers = ["REVISION", "PROGRAM", "CREATED (UTC)", "SIGNATURE", "OPTIMIZER", "SCORE", "COMMIT"]
    rows = [
        [
            cp.revision,
            cp.program_id,
            format_time(cp.created_at),
            cp.signature_class or "-",
            cp.optimizer or "-",
            format_score(cp.best_score),
            cp.commit[:10],
        ]
        for cp in infos
    ]
    return table(headers, rows)


@checkpoint.command()
@click.argument("name", type=CHECKPOINT_NAME)
@click.argument("file", type=click.File("rb"), metavar="FILE|-")
@result_options
@json_option
@click.pass_obj
def create(
    ctx: Context,
    name: str,
    file: IO[bytes],
    score: float | None,
    score_name: str | None,
    optimizer: str | None,
    signature: str | None,
    as_json: bool,
) -> None:
    """Record the program in FILE (or stdin: -) as the newest checkpoint of run NAME.

    FILE holds what save reads: {"program": STATE, "optimization_result":
    ..., "metadata": ...} or a bare STATE; the metadata is kept with the
    checkpoint. With PROGREG_SAVE_INTERMEDIATE_RESULTS=true the program is
    also saved on main. --json prints the program as show --json does.

    \b
    Example:
      progreg checkpoint create mipro-run-1 step-3.json --score 0.84 --optimizer MIPROv2
    """
    given = amended(read_program(file), score, score_name, optimizer, signature)
    manager = open_manager(ctx, create=True)
    result = {**given.optimization_result, "optimized_program": given.program}
    saved = manager.create_checkpoint(result, name, given.metadata)
    if as_json:
        echo_json(saved_json(saved))
        return
    click.echo(
        f"checkpoint {name}: program {saved.program_id}"
        f"  {format_score(saved.best_score)}  commit {saved.commit[:10]}"
    )


@checkpoint.command("restore")
@click.argument("spec", metavar="NAME[~N]", type=CHECKPOINT_NAME)
@click.option("--state", "state_only", is_flag=True, help="Print only the state (what save reads).")
@json_option
@click.pass_obj
def restore_checkpoint(ctx: Context, spec: str, state_only: bool, as_json: bool) -> None:
    """Show checkpoint NAME (its newest) or NAME~N (N steps older).

    --json prints the program as show --json does; --state only its state.
    Exits with 3 when there is no such checkpoint.

    \b
    Example:
      progreg checkpoint restore mipro-run-1
      progreg checkpoint restore mipro-run-1~2 --state > program.json
    """
    manager = open_manager(ctx)
    saved = manager.restore_checkpoint(spec)
    if saved is None:
        name = spec.partition("~")[0]  # restore_checkpoint has checked NAME or NAME~N
        count = len(manager.checkpoint_history(name))
        if count == 0:
            raise NotFound(f"no checkpoint named {name}")
        raise NotFound(
            f"checkpoint {name} has {count} checkpoint(s), so {spec} does not exist"
            f" (the oldest is {name}~{count - 1})"
        )
    emit_program(manager.storage, saved, as_json=as_json, state_only=state_only, revision=spec)


@checkpoint.command("list")
@json_option
@click.pass_obj
def list_checkpoints(ctx: Context, as_json: bool) -> None:
    """List every run's newest checkpoint, by name.

    --json prints an array of {name, revision, commit, program_id,
    created_at, best_score, optimizer, signature_class, metadata}.

    \b
    Example:
      progreg checkpoint list
    """
    infos = open_manager(ctx).list_checkpoints()
    if as_json:
        echo_json([cp.model_dump(mode="json") for cp in infos])
    elif not infos:
        info("no checkpoints")
    else:
        for line in _checkpoint_table(infos):
            click.echo(line)


@checkpoint.command("log")
@click.argument("name", type=CHECKPOINT_NAME)
@json_option
@click.pass_obj
def checkpoint_log(ctx: Context, name: str, as_json: bool) -> None:
    """List every checkpoint of run NAME, newest first (NAME, NAME~1, ...).

    --json prints an array as checkpoint list --json does. Exits with 3
    when there is no checkpoint named NAME.

    \b
    Example:
      progreg checkpoint log mipro-run-1
    """
    infos = open_manager(ctx).checkpoint_history(name)
    if not infos:
        raise NotFound(f"no checkpoint named {name}")
    if as_json:
        echo_json([cp.model_dump(mode="json") for cp in infos])
        return
    for line in _checkpoint_table(infos):
        click.echo(line)


@checkpoint.command("delete")
@click.argument("name", type=CHECKPOINT_NAME)
@click.pass_obj
def delete_checkpoint(ctx: Context, name: str) -> None:
    """Delete run NAME's checkpoint branch (programs saved on main stay).

    Exits with 3 when there is no checkpoint named NAME.

    \b
    Example:
      progreg checkpoint delete mipro-run-1
    """
    if not open_manager(ctx).delete_checkpoint(name):
        raise NotFound(f"no checkpoint named {name}")
    click.echo(f"deleted checkpoint {name}")
