"""``progreg hooks install`` and ``progreg validate``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from progreg.cli.context import EXIT_ERROR
from progreg.cli.terminal import visible
from progreg.integrations.drivers import configure_clone, merge_driver, readable
from progreg.integrations.hooks import install
from progreg.integrations.worktree import (
    Report,
    validate_index,
    validate_paths,
    validate_range,
)


@click.group()
def hooks() -> None:
    """Git integration: the server's pre-receive hook, a clone's drivers and pre-commit check.

    \b
    Example:
      progreg hooks install /srv/git/registry.git   # a server's bare repository
      progreg hooks install .                       # a clone people edit and merge in
    """


@hooks.command("install")
@click.argument("repo", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Replace a different existing hook.")
def install_command(repo: Path, force: bool) -> None:
    """Install progreg's checks in REPO: a bare repository that receives pushes, or a clone.

    In a bare repository: the pre-receive hook, which refuses pushes with
    invalid or non-canonical program files, paths that do not match program
    ids, rewritten or deleted main, moved or deleted tags and refs outside
    the registry's namespaces (review branches are checked as main is).

    In a clone: the merge and diff drivers for program files (in the
    clone's .git/config: Git runs no command a repository names unless the
    clone defines it) and a pre-commit hook running `progreg validate
    --cached`. The registry's .gitattributes assigns the drivers to program
    files.

    Either hook runs this Python, so the progreg installed here does the checks.

    \b
    Example:
      progreg hooks install /srv/git/registry.git
      progreg hooks install .
    """
    if _is_bare(repo):
        path = install(repo, force=force)
        click.echo(f"installed {path}")
        return
    hook, attributed = configure_clone(repo, force=force)
    click.echo(f"installed {hook}")
    click.echo("defined the merge and diff drivers for program files in the clone's config")
    if not attributed:
        click.echo(
            "warning: main has no .gitattributes assigning them yet: the next progreg save"
            " adds it (or commit the file progreg writes)",
            err=True,
        )


def _is_bare(path: Path) -> bool:
    return (
        (path / "HEAD").is_file() and (path / "objects").is_dir() and not (path / ".git").exists()
    )


@hooks.command("merge-driver", hidden=True)
@click.argument("base", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("ours", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("theirs", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("path")
def merge_driver_command(base: Path, ours: Path, theirs: Path, path: str) -> None:
    """Git's merge driver for program files (%O %A %B %P): see `progreg hooks install`.

    Git runs it with the base, ours (rewritten with the result) and theirs,
    and the file's path, as `progreg hooks install` configures it in a
    clone; exit code 1 leaves a conflict.

    \b
    Example:
      progreg hooks merge-driver %O %A %B %P
    """
    sys.exit(merge_driver(base, ours, theirs, path))


@hooks.command("textconv", hidden=True)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def textconv_command(file: Path) -> None:
    """Git's diff text conversion for program files: one value (or sentence) per line.

    \b
    Example:
      progreg hooks textconv programs/1a/2b/1a2b3c4d5e6f7a8b.json
    """
    for line in readable(file.read_bytes(), str(file)):
        click.echo(visible(line))


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--fix", is_flag=True, help="Rewrite files whose only problem is non-canonical JSON.")
@click.option(
    "--range",
    "revisions",
    metavar="A..B",
    help="Also check these commits as the server's hook would (e.g. origin/main..HEAD).",
)
@click.option(
    "--cached",
    is_flag=True,
    help="Check what the index stages (the next commit), not the work tree's files.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(
    paths: tuple[Path, ...], fix: bool, revisions: str | None, cached: bool, as_json: bool
) -> None:
    """Check a registry checkout edited by hand: program files, progreg.json, stray files.

    PATHS are files or directories of the checkout (default: the whole
    checkout containing the current directory, unless --range is given),
    or a bare registry (its main is checked). With --cached, the staged
    version of those files is checked, as the next commit will record it
    (the pre-commit check). Exit code 1 when a problem is left.

    \b
    Example:
      progreg validate --fix
      progreg validate programs/1a/2b/1a2b3c4d5e6f7a8b.json
      progreg validate --cached
      progreg validate --range origin/main..HEAD
    """
    if cached and fix:
        raise click.UsageError("--fix rewrites work-tree files; --cached checks the index")
    if cached:
        report = validate_index(paths)
    elif revisions is not None and not paths:
        report = Report()
    else:
        report = validate_paths(paths, fix=fix)
    if revisions is not None:
        commits = validate_range(revisions)
        report.problems += commits.problems
        report.checked += commits.checked
    _show(report, as_json)
    if not report.ok:
        sys.exit(EXIT_ERROR)


def _show(report: Report, as_json: bool) -> None:
    if as_json:
        document = {
            "ok": report.ok,
            "checked": report.checked,
            "fixed": report.fixed,
            "problems": [problem.to_json() for problem in report.problems],
        }
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    for path in report.fixed:
        click.echo(f"fixed {path}: rewritten as canonical JSON")
    for problem in report.problems:
        click.echo(str(problem), err=True)
    if report.ok:
        click.echo(f"ok: {report.checked} checked, no problem")
    else:
        count = len(report.problems)
        click.echo(f"error: {count} problem{'s' if count != 1 else ''}", err=True)
