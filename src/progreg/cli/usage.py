"""Usage errors on one line: ``error: <message> (see '<command> --help')``, exit code 2.

Kept apart from :mod:`progreg.cli.output` so that the root group in
:mod:`progreg.cli.main` follows the same convention as every subcommand.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from progreg.cli.terminal import visible


def one_line(message: str) -> str:
    """``message`` with its lines joined by ``; `` (pydantic errors span several).

    Control characters are made visible: a message may quote stored text.
    """
    return visible("; ".join(line.strip() for line in message.splitlines() if line.strip()))


class OneLineUsageError(click.UsageError):
    """A usage error shown as one line, with where to find help; exit code 2."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message> (see '<command> --help')`` on stderr."""
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        message = one_line(self.format_message()).rstrip(".")
        click.echo(f"error: {message}{hint}", file=file, err=file is None)


@contextmanager
def usage_errors_on_one_line() -> Iterator[None]:
    """Re-raise click's usage errors (a bad option, an unknown command) as one-line ones."""
    try:
        yield
    except (OneLineUsageError, click.exceptions.NoArgsIsHelpError):
        raise
    except click.UsageError as exc:
        raise OneLineUsageError(exc.format_message(), exc.ctx) from exc


class OneLineUsageCommand(click.Command):
    """A command whose usage errors met while parsing its arguments are one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the arguments; a usage error is reported on one line."""
        with usage_errors_on_one_line():
            return super().make_context(info_name, args, parent, **extra)
