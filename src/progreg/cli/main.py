"""Entry point and shared conventions of the ``progreg`` command.

Errors are one line on stderr (``--debug`` shows the traceback) with exit
code 1 for a progreg error, 2 for bad usage and 3 for "not found".
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from progreg._version import __version__
from progreg.cli.usage import OneLineUsageCommand, usage_errors_on_one_line
from progreg.errors import ProgregError
from progreg.storage import ProgramStorage

EXIT_ERROR = 1
EXIT_NOT_FOUND = 3


class Context:
    """What every subcommand shares: where the registry is and how to report."""

    def __init__(self, registry: Path | None, debug: bool, durable: bool | None = None) -> None:
        self.registry = registry
        self.debug = debug
        #: ``--durable`` / ``--no-durable``; ``None`` leaves it to PROGREG_DURABLE and Git config.
        self.durable = durable
        #: Registries this command created, as ``(registry, topmost directory created,
        #: that directory existed empty)``: removed again if the command fails.
        self.created: list[tuple[Path, Path, bool]] = []

    def storage(self) -> ProgramStorage:
        """Open (or create) the registry named by ``--registry`` / ``PROGREG_PATH``."""
        return ProgramStorage(self.registry, durable=self.durable)


class RootGroup(OneLineUsageCommand, click.Group):
    """The ``progreg`` group: its usage errors (an unknown command or option) are one line too."""

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
    envvar="PROGREG_PATH",
    help="Registry directory (a bare Git repository). Default: $PROGREG_PATH, else ./dspy_storage.",
)
@click.option(
    "--durable/--no-durable",
    default=None,
    help="Flush every write to the disk before returning (the default), or not. Default:"
    " $PROGREG_DURABLE, else the registry's progreg.durable Git config, else on.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="progreg")
@click.pass_context
def cli(ctx: click.Context, registry: Path | None, durable: bool | None, debug: bool) -> None:
    """progreg: a Git-backed registry of optimized LLM programs.

    \b
    Example:
      progreg --registry ./registry demo
    """
    ctx.obj = Context(registry, debug, durable)


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
    sys.exit(code if isinstance(code, int) else 0)


# Subcommands register themselves on import.
from progreg.cli import analysis as _analysis  # noqa: E402, F401
from progreg.cli import checkpoints as _checkpoints  # noqa: E402, F401
from progreg.cli import completion as _completion  # noqa: E402, F401
from progreg.cli import demo as _demo  # noqa: E402, F401
from progreg.cli import diffs as _diffs  # noqa: E402, F401
from progreg.cli import doctor as _doctor  # noqa: E402, F401
from progreg.cli import hooks as _hooks  # noqa: E402, F401
from progreg.cli import maintenance as _maintenance  # noqa: E402, F401
from progreg.cli import programs as _programs  # noqa: E402, F401
from progreg.cli import remotes as _remotes  # noqa: E402, F401
from progreg.cli import tags as _tags  # noqa: E402, F401
from progreg.cli import transfer as _transfer  # noqa: E402, F401
from progreg.cli import verify as _verify  # noqa: E402, F401
