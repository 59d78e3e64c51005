"""Conventions every subcommand shares: errors, exit codes, JSON, colour, progress, tables.

Subcommands are :class:`ProgregCommand` (groups :class:`ProgregGroup`), which
turn a :class:`~progreg.ProgregError` into one line ``error: ...`` on stderr
with exit code 1, or 3 (:data:`~progreg.cli.main.EXIT_NOT_FOUND`) for a
program that is not there; ``--debug`` lets the original exception (and its
traceback) through. Usage errors (a bad option value, a missing argument) are
one line too, with exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click
import pygit2

from progreg import (
    ProgramNotFoundError,
    ProgramStorage,
    ProgregError,
    RunNotFoundError,
    SecretDetectedError,
)
from progreg.cli.context import EXIT_ERROR, EXIT_NOT_FOUND, Context
from progreg.cli.terminal import visible
from progreg.cli.usage import OneLineUsageCommand, one_line, usage_errors_on_one_line
from progreg.core.secrets import REDACTED
from progreg.registry.locations import registry_path_from_environment

if TYPE_CHECKING:
    from progreg import StorageManager

F = TypeVar("F", bound=Callable[..., Any])


# -- errors ---------------------------------------------------------------------------


class Failure(click.ClickException):
    """An error shown as one line ``error: <message>`` on stderr; exit code 1."""

    exit_code = EXIT_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        """Print ``error: <message>`` on stderr (or ``file``), on one line."""
        click.echo(f"error: {one_line(self.format_message())}", file=file, err=file is None)


class NotFound(Failure):
    """What was asked for is not there (a program, a checkpoint...); exit code 3."""

    exit_code = EXIT_NOT_FOUND


@contextmanager
def _reported(ctx: click.Context) -> Iterator[None]:
    """Turn progreg errors into one-line failures (not with ``--debug``)."""
    with usage_errors_on_one_line():
        try:
            yield
        except ProgregError as exc:
            obj = ctx.find_object(Context)
            if obj is not None and obj.debug:
                raise
            missing = isinstance(exc, ProgramNotFoundError | RunNotFoundError)
            failure = NotFound if missing else Failure
            raise failure(_for_the_command_line(ctx, exc)) from exc


def _for_the_command_line(ctx: click.Context, exc: ProgregError) -> str:
    """``exc``'s message, with a refused secret's way out said as an option of this command."""
    redacts = any(param.name == "redact_secrets" for param in ctx.command.params)
    if not isinstance(exc, SecretDetectedError) or not redacts or not exc.found:
        return str(exc)
    return (
        f"refusing to store credentials: {exc.found}. progreg never stores secrets: give them"
        " to the LM through the environment (OPENAI_API_KEY...) rather than in the program,"
        f" or run the command again with --redact-secrets to store each replaced by {REDACTED!r}"
    )


class ProgregCommand(OneLineUsageCommand):
    """A subcommand that follows the error conventions of the module docstring."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; progreg errors become one-line failures.

        A command that fails leaves no registry it created behind (see
        :func:`open_storage`).
        """
        try:
            with _reported(ctx):
                return super().invoke(ctx)
        except BaseException as exc:
            if not _succeeded(exc):
                _remove_created(ctx.find_object(Context))
            raise


def _succeeded(exc: BaseException) -> bool:
    """True for the exceptions that end a command successfully (exit code 0)."""
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code == 0
    return isinstance(exc, SystemExit) and exc.code in (0, None)


class ProgregGroup(ProgregCommand, click.Group):
    """A group of subcommands that follow the error conventions (the same methods)."""

    command_class = ProgregCommand


# -- opening the registry -------------------------------------------------------------


def registry_path(ctx: Context) -> Path:
    """The registry named by ``--registry``, ``PROGREG_PATH`` or the default."""
    if ctx.registry is not None:
        return Path(ctx.registry)
    return Path(registry_path_from_environment())


def open_storage(ctx: Context, *, create: bool = False) -> ProgramStorage:
    """The registry; without ``create``, a missing one is an error rather than made.

    A registry ``create`` makes is removed again, with the directories made
    for it, if the command then fails: a refused import leaves nothing behind.
    """
    path = registry_path(ctx)
    if not create and (not path.exists() or (path.is_dir() and not any(path.iterdir()))):
        raise Failure(
            f"no registry at {path}: create one with 'progreg init {path}',"
            " or name another with --registry or PROGREG_PATH"
        )
    if ctx.rev is not None or (path / ".git").exists():  # a revision, or a clone: read only
        return ProgramStorage(path, durable=ctx.durable, rev=ctx.rev, read_only=True)
    creation = _creation(path) if create else None
    if creation is not None:  # recorded first: a failure half way through is undone too
        ctx.created.append((path.absolute(), *creation))
    return ProgramStorage(path, durable=ctx.durable)


def _creation(path: Path) -> tuple[Path, bool] | None:
    """What opening a registry at ``path`` creates: (topmost new directory, it exists empty)."""
    path = path.absolute()
    if os.path.lexists(path):
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            return path, True
        return None  # a registry (or something else) is there already: never removed
    top = path
    while not os.path.lexists(top.parent):
        top = top.parent
    return top, False


def _remove_created(ctx: Context | None) -> None:
    """Remove the registries the failed command created, and only what it created.

    A registry that has any ref by now is left: someone else wrote into it.
    """
    if ctx is None:
        return
    while ctx.created:
        registry, top, existed = ctx.created.pop()
        try:
            repo = pygit2.Repository(str(registry), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError:
            repo = None  # not made, or not finished: what is there is ours
        if repo is not None:
            written = any(True for _ in repo.references)
            repo.free()
            if written:
                continue
        if not existed:
            shutil.rmtree(top, ignore_errors=True)
            continue
        for child in top.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def open_manager(ctx: Context, *, create: bool = False, **settings: Any) -> StorageManager:
    """A manager on the registry; ``settings`` override the ``StorageConfig`` (and env)."""
    # imported here: the commands that need no manager (list, show...) start faster
    from progreg import StorageConfig, StorageManager  # noqa: PLC0415

    storage = open_storage(ctx, create=create)
    return StorageManager(StorageConfig(storage_path=storage.path, **settings), storage=storage)


# -- output ---------------------------------------------------------------------------


def echo_json(data: object) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def info(message: str) -> None:
    """A message for the person at the terminal, on stderr (stdout stays data)."""
    click.echo(message, err=True)


def format_time(moment: datetime | None) -> str:
    """A time for tables: ``2026-01-02 10:15:02`` (UTC), or ``-``."""
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    styles: Mapping[int, Callable[[str], str]] | None = None,
) -> list[str]:
    """Rows aligned in columns under ``headers`` (trailing spaces removed).

    Cells hold stored text: their control characters are made visible
    (:func:`~progreg.cli.terminal.visible`). ``styles`` maps a column index to
    a function (``click.style`` with arguments, say) applied to that column's
    padded cells, headers excepted.
    """
    rows = [[visible(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        cells[-1] = cells[-1].rstrip()
        for index, style in (styles or {}).items():
            cells[index] = style(cells[index])
        lines.append("  ".join(cells).rstrip())
    return lines


def color_option(func: F) -> F:
    """Add ``--color/--no-color`` (default: colour only when stdout is a terminal)."""
    option = click.option(
        "--color/--no-color",
        "color",
        default=None,
        help="Force colour on or off (default: only on a terminal, never with NO_COLOR set).",
    )
    return option(func)


def use_color(flag: bool | None) -> bool:
    """Whether to colour stdout: the flag, else not with ``NO_COLOR``, else if a terminal."""
    if flag is not None:
        return flag
    if os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def _check_plot_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix.lower() not in (".html", ".htm"):
        raise click.BadParameter(
            f"{value}: the plot is an HTML report (FILE.html); images need a plotting"
            " library progreg does not depend on",
            ctx,
            param,
        )
    return value


def plot_option(help_text: str) -> Callable[[F], F]:
    """Add ``--plot FILE.html`` (the ``plot`` parameter): where to write an HTML report."""
    return click.option(
        "--plot",
        type=click.Path(dir_okay=False, path_type=Path),
        callback=_check_plot_path,
        metavar="FILE.html",
        help=help_text,
    )


def json_option(func: F) -> F:
    """Add ``--json`` (stored in the ``as_json`` parameter)."""
    option = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON for scripts (shape described above)."
    )
    return option(func)


@contextmanager
def progress_reporter(label: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback for the library, drawing a bar on a terminal.

    The bar appears on stderr at the first report (when the total is known),
    and only when stderr is a terminal.
    """
    stream = sys.stderr
    if not stream.isatty():
        yield lambda done, total: None
        return
    with contextlib.ExitStack() as stack:
        bars: list[Any] = []

        def report(done: int, total: int) -> None:
            if not bars:
                bars.append(
                    stack.enter_context(click.progressbar(length=total, label=label, file=stream))
                )
            bars[0].update(done - bars[0].pos)

        yield report


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, only when stderr is a terminal; yields ``advance(steps)``."""
    stream = sys.stderr
    if not stream.isatty():
        yield lambda steps: None
        return
    with click.progressbar(length=length, label=label, file=stream) as bar:
        yield bar.update
