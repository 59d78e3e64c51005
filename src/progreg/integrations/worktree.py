"""``progreg validate``: check (and fix) a registry checkout edited by hand.

A person reviewing program changes in a pull request works in an ordinary
clone of the registry. :func:`validate_paths` applies the rules of
:mod:`progreg.registry.validation` to the files on disk: the whole checkout (minus
``.git`` and what ``.gitignore`` ignores), a directory of it, or single files
(what the pre-commit framework passes). With ``fix``, files whose only
problem is their encoding are rewritten as canonical JSON.
:func:`validate_range` checks commits (``origin/main..HEAD``) as the server's
hook would check them on ``main``; :func:`validate_index` checks what the
index stages (the pre-commit check), whatever the work tree holds.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
from pygit2.enums import FileMode

from progreg.core.document import DEFAULT_MAX_PROGRAM_BYTES
from progreg.core.layout import MARKER
from progreg.errors import InvalidInputError
from progreg.registry.validation import (
    Problem,
    check_file,
    resolve_range,
    validate_commits,
    validate_entries,
    validate_tree,
)


@dataclass
class Report:
    """What ``progreg validate`` found: problems, files it rewrote, files it checked."""

    problems: list[Problem] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        """No problem is left."""
        return not self.problems


@dataclass(frozen=True)
class Checkout:
    """Where a registry checkout is: its root directory, and its Git repository if any."""

    root: Path
    repo: pygit2.Repository | None

    def ignored(self, relative: str) -> bool:
        """Whether Git ignores ``relative`` (a path from the root)."""
        return self.repo is not None and self.repo.path_is_ignored(relative)


def find_checkout(start: Path) -> Checkout:
    """The checkout holding ``start``: its Git work tree, else the nearest dir with progreg.json."""
    start = start.resolve()
    directory = start if start.is_dir() else start.parent
    found = pygit2.discover_repository(str(directory))
    if found is not None:
        repo = pygit2.Repository(found)
        if repo.workdir is not None:
            return Checkout(Path(repo.workdir).resolve(), repo)
        if repo.is_bare:
            return Checkout(Path(repo.path).resolve(), repo)
    for candidate in (directory, *directory.parents):
        if (candidate / MARKER).is_file():
            return Checkout(candidate, None)
    return Checkout(directory, None)


def validate_paths(
    paths: Sequence[Path] = (),
    *,
    fix: bool = False,
    cwd: Path | None = None,
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
) -> Report:
    """Check files of a registry checkout: ``paths`` (files or directories), or all of it.

    Checking the checkout's root (no ``paths``, or the root itself) also
    requires ``progreg.json``. A bare registry is checked on the tree of its
    ``main`` (``fix`` is refused there: save again with progreg instead).
    """
    cwd = (cwd or Path.cwd()).resolve()
    targets = [cwd / path for path in paths] or [cwd]
    report = Report()
    for target in targets:
        checkout = find_checkout(target)
        if checkout.repo is not None and checkout.repo.is_bare:
            _validate_bare(checkout.repo, report, fix, max_program_bytes)
            continue
        if not target.exists() and not target.is_symlink():
            report.problems.append(Problem(f"{target} does not exist", path=str(target)))
            continue
        if target.resolve() == checkout.root and not (checkout.root / MARKER).is_file():
            report.problems.append(
                Problem(
                    f'{MARKER} is missing at {checkout.root}: a registry keeps {{"format_version":'
                    f" 1}} there; is this a registry checkout?",
                    path=MARKER,
                )
            )
        for path in _files(target, checkout):
            _check_path(path, checkout, report, fix, max_program_bytes)
    return report


def _validate_bare(repo: pygit2.Repository, report: Report, fix: bool, limit: int) -> None:
    if fix:
        raise InvalidInputError(
            f"{repo.path} is a bare registry: --fix edits files in a checkout; clone it,"
            " fix and push, or re-save the programs with progreg"
        )
    reference = repo.references.get("refs/heads/main")
    if reference is None:
        report.problems.append(Problem(f"{repo.path} has no main branch", ref="refs/heads/main"))
        return
    commit = reference.peel(pygit2.Commit)
    report.problems += validate_tree(
        repo, commit.tree, max_program_bytes=limit, commit=str(commit.id)
    )
    report.checked += 1


def _files(target: Path, checkout: Checkout) -> Iterator[Path]:
    if not target.is_dir() or target.is_symlink():
        yield target
        return
    for directory, subdirectories, files in os.walk(target):
        base = Path(directory)
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if name != ".git" and not _ignored(base / name, checkout, directory=True)
        )
        links = [name for name in subdirectories if (base / name).is_symlink()]
        subdirectories[:] = [name for name in subdirectories if name not in links]
        for name in sorted([*files, *links]):
            path = base / name
            if not _ignored(path, checkout):
                yield path


def _ignored(path: Path, checkout: Checkout, directory: bool = False) -> bool:
    try:
        relative = path.resolve().relative_to(checkout.root).as_posix()
    except ValueError:
        return False
    return checkout.ignored(relative + ("/" if directory else ""))


def _check_path(path: Path, checkout: Checkout, report: Report, fix: bool, limit: int) -> None:
    absolute = path.parent.resolve() / path.name
    try:
        relative = absolute.relative_to(checkout.root).as_posix()
    except ValueError:
        report.problems.append(
            Problem(f"{path} is outside the registry checkout {checkout.root}", path=str(path))
        )
        return
    info = absolute.lstat()
    if stat.S_ISLNK(info.st_mode):
        mode, data = int(FileMode.LINK), b""
    else:
        executable = bool(info.st_mode & stat.S_IXUSR)
        mode = int(FileMode.BLOB_EXECUTABLE if executable else FileMode.BLOB)
        data = absolute.read_bytes()
    verdict = check_file(relative, data, mode=mode, kind="checkout", max_program_bytes=limit)
    report.checked += 1
    if fix and verdict.canonical is not None and len(verdict.problems) == 1:
        absolute.write_bytes(verdict.canonical)
        report.fixed.append(relative)
        return
    report.problems += [Problem(message, path=relative) for message in verdict.problems]


def validate_index(
    paths: Sequence[Path] = (),
    *,
    cwd: Path | None = None,
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
) -> Report:
    """Check what the index of the checkout holding ``cwd`` stages, as the next commit's files.

    What is staged is what a commit records, whatever the work tree holds now
    (``git add`` a file, then restore it: the staged blob is checked). With
    ``paths``, only the staged files under them are checked (the pre-commit
    framework passes the staged names); without, every staged file, and
    ``progreg.json`` must be among them.
    """
    cwd = (cwd or Path.cwd()).resolve()
    checkout = find_checkout(cwd)
    repo = checkout.repo
    if repo is None or repo.is_bare:
        raise InvalidInputError(
            f"{checkout.root} is not a Git checkout: --cached checks the files a checkout's"
            " index stages"
        )
    wanted = [_relative(cwd / path, checkout.root) for path in paths]
    index = repo.index
    index.read()
    report = Report()
    conflicts = sorted(
        str(side.path) for sides in (index.conflicts or ()) for side in sides if side is not None
    )
    report.problems += [
        Problem(
            f"{path} is not merged (the index holds both sides of a conflict): resolve it"
            " and git add it",
            path=path,
        )
        for path in dict.fromkeys(conflicts)
    ]
    entries = [
        (entry.path, int(entry.mode), entry.id)
        for entry in index
        if entry.path not in conflicts
        and (not wanted or any(_under(entry.path, prefix) for prefix in wanted))
    ]
    if wanted:
        problems = [
            problem
            for problem in validate_entries(repo, entries, max_program_bytes=max_program_bytes)
            if problem.path != MARKER or any(_under(MARKER, prefix) for prefix in wanted)
        ]
    else:
        problems = validate_entries(repo, entries, max_program_bytes=max_program_bytes)
    report.problems += problems
    report.checked += len(entries)
    return report


def _relative(path: Path, root: Path) -> str:
    absolute = path.parent.resolve() / path.name
    try:
        relative = absolute.relative_to(root).as_posix()
    except ValueError:
        raise InvalidInputError(f"{path} is outside the registry checkout {root}") from None
    return "" if relative == "." else relative


def _under(path: str, prefix: str) -> bool:
    return not prefix or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def validate_range(
    spec: str, *, cwd: Path | None = None, max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES
) -> Report:
    """Check the commits of ``spec`` (``A..B``, or a commit and its ancestors) as main's commits."""
    checkout = find_checkout((cwd or Path.cwd()).resolve())
    repo = checkout.repo
    if repo is None:
        raise InvalidInputError(f"{checkout.root} is not in a Git repository; cannot read {spec}")
    start, end = resolve_range(repo, spec)
    checked, problems = validate_commits(repo, start, end, max_program_bytes=max_program_bytes)
    return Report(problems=problems, checked=checked)
