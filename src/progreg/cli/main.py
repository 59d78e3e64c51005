"""Entry point of the ``progreg`` command: its own options and where each subcommand lives.

Subcommands are imported when they run (or when help lists them), not
before: ``progreg --version`` and ``progreg list`` load only what they use.
:data:`COMMANDS` names the module of each one. Errors are one line on stderr
(``--debug`` shows the traceback) with exit code 1 for a progreg error, 2
for bad usage and 3 for "not found" (see :mod:`progreg.cli.context`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import click

from progreg import ProgregError, __version__
from progreg.cli.context import EXIT_ERROR, Context
from progreg.cli.usage import OneLineUsageCommand, usage_errors_on_one_line
from progreg.registry.locations import PATH_ENV, PATH_ENV_ALIAS

#: Each subcommand: its name, and the module and attribute defining it.
COMMANDS: dict[str, tuple[str, str]] = {
    "best": ("programs", "best"),
    "checkpoint": ("checkpoints", "checkpoint"),
    "cleanup": ("analysis", "cleanup"),
    "completion": ("completion", "completion"),
    "delete": ("programs", "delete"),
    "demo": ("demo", "demo"),
    "diff": ("diffs", "diff"),
    "doctor": ("doctor", "doctor"),
    "export": ("transfer", "export_command"),
    "find": ("programs", "find"),
    "gc": ("maintenance", "gc"),
    "history": ("analysis", "history"),
    "hooks": ("hooks", "hooks"),
    "import": ("transfer", "import_command"),
    "init": ("programs", "init"),
    "label": ("labels", "label"),
    "lineage": ("lineage", "lineage"),
    "list": ("programs", "list_programs"),
    "log": ("analysis", "log"),
    "pull": ("remotes", "pull"),
    "push": ("remotes", "push"),
    "remote": ("remotes", "remote"),
    "restore": ("programs", "restore"),
    "review": ("review", "review"),
    "runs": ("runs", "runs"),
    "save": ("programs", "save"),
    "show": ("programs", "show"),
    "sync": ("remotes", "sync"),
    "tag": ("tags", "tag"),
    "tags": ("tags", "tags"),
    "untag": ("tags", "untag"),
    "validate": ("hooks", "validate"),
    "verify": ("verify", "verify"),
}


def _command_module(module: str) -> ModuleType:
    """The subcommand module ``module``: one of a fixed list, never a name from data."""
    if module == "analysis":
        from progreg.cli import analysis

        return analysis
    if module == "labels":
        from progreg.cli import labels

        return labels
    if module == "checkpoints":
        from progreg.cli import checkpoints

        return checkpoints
    if module == "completion":
        from progreg.cli import completion

        return completion
    if module == "demo":
        from progreg.cli import demo

        return demo
    if module == "diffs":
        from progreg.cli import diffs

        return diffs
    if module == "doctor":
        from progreg.cli import doctor

        return doctor
    if module == "hooks":
        from progreg.cli import hooks

        return hooks
    if module == "lineage":
        from progreg.cli import lineage

        return lineage
    if module == "maintenance":
        from progreg.cli import maintenance

        return maintenance
    if module == "programs":
        from progreg.cli import programs

        return programs
    if module == "remotes":
        from progreg.cli import remotes

        return remotes
    if module == "review":
        from progreg.cli import review

        return review
    if module == "runs":
        from progreg.cli import runs

        return runs
    if module == "tags":
        from progreg.cli import tags

        return tags
    if module == "transfer":
        from progreg.cli import transfer

        return transfer
    if module == "verify":
        from progreg.cli import verify

        return verify
    raise KeyError(module)


def load_command(name: str) -> click.Command:
    """Import the subcommand ``name`` (one of :data:`COMMANDS`)."""
    module, attribute = COMMANDS[name]
    command = getattr(_command_module(module), attribute)
    assert isinstance(command, click.Command), f"progreg.cli.{module}.{attribute}"
    return command


#: The group's own options, taken wherever they stand on the command line.
_GLOBAL_FLAGS = frozenset({"--debug", "--durable", "--no-durable"})
_GLOBAL_WITH_VALUE = frozenset({"--registry", "--rev"})


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the group's options moved before the subcommand.

    ``progreg list --registry X`` means ``progreg --registry X list``: the
    options of ``progreg`` itself are accepted after the subcommand too (no
    subcommand has options of those names). Nothing after ``--`` is moved.
    """
    hoisted: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        name = arg.split("=", 1)[0]
        if arg in _GLOBAL_FLAGS or (name in _GLOBAL_WITH_VALUE and "=" in arg):
            hoisted.append(arg)
        elif arg in _GLOBAL_WITH_VALUE:
            if index + 1 == len(args):
                raise click.BadOptionUsage(arg, f"Option '{arg}' requires an argument.")
            hoisted += args[index : index + 2]
            index += 1
        else:
            rest.append(arg)
        index += 1
    return hoisted + rest


class RootGroup(OneLineUsageCommand, click.Group):
    """The ``progreg`` group: subcommands loaded on use; usage errors on one line too."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every subcommand's name, sorted (nothing is imported)."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The subcommand ``cmd_name``, imported now; ``None`` for an unknown name."""
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse the group's options wherever they stand (see :func:`hoist_global_options`)."""
        return super().parse_args(ctx, hoist_global_options(args))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Find the subcommand; an unknown one is reported on one line."""
        with usage_errors_on_one_line():
            return super().resolve_command(ctx, args)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--registry",
    type=click.Path(path_type=Path),
    envvar=[PATH_ENV, PATH_ENV_ALIAS],
    help="Registry directory (a bare Git repository). Default: $PROGREG_PATH (or"
    " $PROGREG_STORAGE_PATH), else ./dspy_storage.",
)
@click.option(
    "--durable/--no-durable",
    default=None,
    help="Flush every write to the disk before returning (the default), or not. Default:"
    " $PROGREG_DURABLE, else the registry's progreg.durable Git config, else on.",
)
@click.option(
    "--rev",
    metavar="REV",
    help="Read the registry as it is at this revision (a branch under review, a tag, a"
    " commit, main~3); the registry is then read-only. In a clone, the checked-out commit"
    " is read by default.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="progreg")
@click.pass_context
def cli(
    ctx: click.Context,
    registry: Path | None,
    durable: bool | None,
    rev: str | None,
    debug: bool,
) -> None:
    """progreg: a Git-backed registry of optimized LLM programs.

    \b
    Example:
      progreg --registry ./registry demo
    """
    ctx.obj = Context(registry, debug, durable, rev)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; exit with a code that tells what happened."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Without standalone mode, click returns a subcommand's exit code (ctx.exit).
        code = cli.main(args=argv, prog_name="progreg", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ProgregError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:
        if debug:
            raise
        sys.exit(_output_failed(exc))
    try:
        sys.stdout.flush()
    except OSError as exc:
        sys.exit(_output_failed(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _output_failed(exc: OSError) -> int:
    """Report an error the registry layer did not map (writing the output, mostly); its code.

    A reader that went away (``progreg log | head``) ends the command quietly,
    as Git does; anything else is one line on stderr. Standard output is then
    pointed at ``/dev/null`` so that Python's flush at exit cannot fail again.
    """
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    if exc.errno == errno.EPIPE:
        return EXIT_ERROR
    where = f" ({exc.filename})" if exc.filename else " (standard output)"
    click.echo(f"error: {exc.strerror or exc}{where}", err=True)
    return EXIT_ERROR
