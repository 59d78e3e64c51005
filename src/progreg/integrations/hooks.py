"""The server-side hook: refuse pushes that would break a registry.

``progreg hooks install <bare repo>`` writes :func:`hook_script` to
``<bare repo>/hooks/pre-receive`` with the current interpreter in its first
line, so the hook runs the progreg that installed it. Git runs the hook in
the repository receiving the push with one ``<old> <new> <ref>`` line per
ref on stdin; :func:`pre_receive` first judges every pushed object as ``git
fsck --strict`` does (:mod:`progreg.git.objects.fsck`, whatever the server's
``receive.fsckObjects``), then checks the updates with :mod:`progreg.registry.validation`
and prints each problem on stderr (which ``git push`` shows as ``remote:
...``). Exit status 1 refuses the whole push.

While the hook runs, the pushed objects are not in the repository yet: Git
keeps them in a quarantine directory named by ``GIT_OBJECT_DIRECTORY`` and
lists the repository's own object directory in
``GIT_ALTERNATE_OBJECT_DIRECTORIES``. libgit2 ignores both unless a
repository is opened with ``RepositoryOpenFlag.FROM_ENV`` (which would also
apply ``GIT_INDEX_FILE``, ``GIT_NAMESPACE`` and friends, and does not
unquote the C-quoted entries Git writes for paths containing ``:``), so
:func:`open_repository` adds them as alternates itself.

The size limit of program files is ``progreg.maxProgramBytes`` from the
repository's Git configuration, else 16 MiB. Branches other than ``main`` and
``checkpoints/*`` are review branches (pull requests from the same
repository): accepted when every commit they bring passes ``main``'s checks,
and free to be rewritten or deleted. ``progreg.reviewBranches`` (globs of
branch names, any number; ``none`` for none) narrows them; by default every
branch is one.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import pygit2
from pygit2.enums import RepositoryOpenFlag

from progreg.core.document import DEFAULT_MAX_PROGRAM_BYTES
from progreg.core.layout import MAIN, MARKER
from progreg.errors import ConflictError, InvalidInputError, NotARegistryError
from progreg.git.objects.fsck import IncomingObjects
from progreg.git.pack.objectread import raw_reader
from progreg.git.permissions import adjust_path
from progreg.git.settings import check_object_format, repository_settings
from progreg.git.wire.pushobjects import missing_objects
from progreg.registry.validation import (
    Problem,
    RefUpdate,
    parse_updates,
    review_branches_of,
    validate_push,
)

#: Problems printed before the hook stops listing them.
MAX_SHOWN = 50
#: The first line of the hook committed in the repository (``hooks/pre-receive``).
PORTABLE_SHEBANG = "#!/usr/bin/env python3"
_PREFIX = "progreg: "

_BODY = '''\
"""progreg's pre-receive hook: refuse pushes that would break a registry.

Install it with `progreg hooks install <bare repo>`. Git runs it in the
repository receiving a push, with one "<old> <new> <ref>" line per ref on
stdin; progreg checks the program files, commits and refs, prints what to fix
(git shows it as "remote: ...") and exits 1 to refuse the push.
"""

import os
import sys

try:
    from progreg.hooks import pre_receive
except ImportError as exc:
    sys.stderr.write(
        f"progreg: cannot import progreg with {sys.executable} ({exc}); the push is refused."
        " Install progreg on the server and run `progreg hooks install` again.\\n"
    )
    sys.exit(1)

sys.exit(pre_receive(sys.stdin.buffer, os.environ.get("GIT_DIR", ".")))
'''


def hook_script(interpreter: str | None = None, body: str = _BODY) -> str:
    """A hook running the Python ``body`` with ``interpreter`` (``None``: ``/usr/bin/env
    python3``); by default the pre-receive hook.

    An interpreter path that a ``#!`` line cannot hold (spaces, or too long
    for the kernel) is started through ``/bin/sh`` instead.
    """
    if interpreter is None:
        return f"{PORTABLE_SHEBANG}\n{body}"
    if not any(char.isspace() for char in interpreter) and len(interpreter) <= 120:
        return f"#!{interpreter}\n{body}"
    quoted = shlex.quote(interpreter)
    if "'''" in quoted or "\n" in interpreter:
        raise InvalidInputError(f"cannot start a hook with the interpreter {interpreter!r}")
    # A line both sh and Python accept: sh runs exec, Python sees a string.
    return f"#!/bin/sh\n''''exec {quoted} \"$0\" \"$@\" # '''\n{body}"


def install(
    repo: str | os.PathLike[str], *, force: bool = False, interpreter: str | None = None
) -> Path:
    """Install the pre-receive hook in the bare repository ``repo``; return the hook's path.

    The hook runs ``interpreter`` (default: this Python, ``sys.executable``).
    An identical hook is left as it is; a different existing hook is only
    replaced when ``force`` is true (else :class:`ConflictError`).
    """
    repository = _open_bare(Path(repo))
    return write_hook(repository, "pre-receive", hook_script(interpreter or sys.executable), force)


def write_hook(repository: pygit2.Repository, name: str, text: str, force: bool) -> Path:
    """Write the hook ``name`` of ``repository`` (executable, with Git's shared modes).

    An identical hook is left as it is; a different existing one is only
    replaced when ``force`` is true (else :class:`ConflictError`, nothing written).
    """
    directory = hooks_dir(repository)
    target = directory / name
    if target.exists() or target.is_symlink():
        current = target.read_bytes() if target.is_file() else b""
        if current == text.encode() and os.access(target, os.X_OK):
            return target
        if not force:
            raise ConflictError(
                f"{target} already exists and is a different hook; keep it, or replace it"
                " with --force (force=True)"
            )
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{name}.{os.getpid()}.tmp"
    temporary.write_text(text, encoding="utf-8")
    mode = temporary.stat().st_mode
    temporary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    adjust_path(temporary, repository_settings(Path(repository.path)).shared)  # as Git's hooks
    temporary.replace(target)
    return target


def _open_bare(path: Path) -> pygit2.Repository:
    try:
        repository = pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
    except pygit2.GitError as exc:
        check_object_format(path)
        raise NotARegistryError(f"{path} is not a Git repository") from exc
    if not repository.is_bare:
        raise NotARegistryError(
            f"{path} is a work tree; install the hook in the bare repository that receives pushes"
        )
    if list(repository.references):
        main = repository.references.get(MAIN)
        commit = main.peel(pygit2.Commit) if main is not None else None
        if commit is None or MARKER not in commit.tree:
            raise NotARegistryError(
                f"{path} is not a progreg registry (no {MARKER} on main); the hook would"
                " refuse every push to it"
            )
    return repository


def hooks_dir(repository: pygit2.Repository) -> Path:
    """Where Git looks for ``repository``'s hooks: ``core.hooksPath`` (relative to where
    hooks run: the work tree, or a bare repository itself), else ``hooks/`` in it."""
    try:
        configured = str(repository.config["core.hooksPath"])
    except KeyError:
        configured = ""
    if configured:
        base = Path(repository.workdir or repository.path)
        return (base / os.path.expanduser(configured)).resolve()
    return Path(repository.path) / "hooks"


def open_repository(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> pygit2.Repository:
    """Open the repository a hook runs in, seeing the objects of the push being received."""
    env = os.environ if env is None else env
    repository = pygit2.Repository(os.fspath(path), RepositoryOpenFlag.NO_SEARCH)
    own = os.path.realpath(os.path.join(repository.path, "objects"))
    directories = []
    if env.get("GIT_OBJECT_DIRECTORY"):
        directories.append(env["GIT_OBJECT_DIRECTORY"])
    directories += split_alternates(env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES", ""))
    for directory in directories:
        if os.path.realpath(directory) != own and os.path.isdir(directory):
            repository.odb.add_disk_alternate(directory)
    return repository


def split_alternates(value: str) -> list[str]:
    """Split ``GIT_ALTERNATE_OBJECT_DIRECTORIES`` as Git does (entries may be C-quoted)."""
    entries: list[str] = []
    position = 0
    while position < len(value):
        if value[position] == '"':
            text, position = _unquote(value, position + 1)
            entries.append(text)
            position += 1  # the separator, if any
        else:
            end = value.find(os.pathsep, position)
            end = len(value) if end < 0 else end
            if end > position:
                entries.append(value[position:end])
            position = end + 1
    return entries


_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquote(value: str, position: int) -> tuple[str, int]:
    """Read a C-quoted string starting after its opening quote; return it and the index after it."""
    out = bytearray()
    while position < len(value):
        char = value[position]
        if char == '"':
            return out.decode("utf-8", errors="surrogateescape"), position + 1
        if char == "\\" and position + 1 < len(value):
            code = value[position + 1]
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
                position += 2
                continue
            if value[position + 1 : position + 4].isdigit():
                out.append(int(value[position + 1 : position + 4], 8) & 0xFF)
                position += 4
                continue
        out += char.encode("utf-8", errors="surrogateescape")
        position += 1
    return out.decode("utf-8", errors="surrogateescape"), position


def pushed_objects(
    repository: pygit2.Repository, updates: list[RefUpdate], env: Mapping[str, str] | None = None
) -> Iterator[tuple[pygit2.Oid, int, bytes]]:
    """The objects the push brings: ``(id, type, raw data)``.

    Git's quarantine (``GIT_QUARANTINE_PATH``, else a ``GIT_OBJECT_DIRECTORY``
    other than the repository's own) holds exactly them. Without one (an
    older Git, or a progreg push into a path that runs this hook after
    copying the objects), they are the objects the new ref values reach and
    the repository's current refs do not.
    """
    env = os.environ if env is None else env
    own = os.path.realpath(os.path.join(repository.path, "objects"))
    quarantine = env.get("GIT_QUARANTINE_PATH") or env.get("GIT_OBJECT_DIRECTORY", "")
    if quarantine and os.path.realpath(quarantine) != own and os.path.isdir(quarantine):
        odb = pygit2.Odb(quarantine)
        for oid in odb:
            found, data = odb.read(oid)
            yield oid, int(found), data
        return
    new = [pygit2.Oid(hex=u.new) for u in updates if not u.deleted]
    present = [r.target for r in repository.references.objects if isinstance(r.target, pygit2.Oid)]
    for raw, its_kind, its_data in missing_objects(repository, new, present):
        yield pygit2.Oid(raw=raw), its_kind, its_data


def pushed_object_problems(
    repository: pygit2.Repository, updates: list[RefUpdate], env: Mapping[str, str] | None = None
) -> list[Problem]:
    """The pushed objects ``git fsck --strict`` refuses (as ``receive.fsckObjects`` would)."""
    incoming = IncomingObjects()
    problems = []
    for oid, kind, data in pushed_objects(repository, updates, env):
        refusal = incoming.refusal(oid.raw, kind, data)
        if refusal is not None:
            problems.append(Problem(f"{refusal}{_FSCK_FIX}"))
            if len(problems) >= MAX_SHOWN:
                break
    if problems:
        return problems
    refusal = incoming.finish(raw_reader(repository.odb))
    return [Problem(f"{refusal}{_FSCK_FIX}")] if refusal is not None else []


_FSCK_FIX = (
    ": git fsck --strict refuses this object (a server with receive.fsckObjects refuses any"
    " push holding it); rewrite the commit that brought it"
)


def max_program_bytes(repository: pygit2.Repository) -> int:
    """``progreg.maxProgramBytes`` from the repository's configuration, else 16 MiB."""
    config = repository.config
    if "progreg.maxProgramBytes" in config:
        try:
            return config.get_int("progreg.maxProgramBytes")
        except (pygit2.GitError, ValueError):
            pass
    return DEFAULT_MAX_PROGRAM_BYTES


def pre_receive(
    stdin: IO[bytes],
    repo_path: str | os.PathLike[str] = ".",
    *,
    env: Mapping[str, str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Check a push as Git's pre-receive hook does; return the exit code (0 accept, 1 refuse)."""
    err = stderr if stderr is not None else sys.stderr
    try:
        updates = parse_updates(stdin.read().decode("utf-8", errors="surrogateescape"))
        repository = open_repository(repo_path, env)
        problems = pushed_object_problems(repository, updates, env)
        if not problems:  # objects Git refuses may not even parse: judge them first
            problems = validate_push(
                repository,
                updates,
                max_program_bytes=max_program_bytes(repository),
                review=review_branches_of(repository.config),
            )
    except Exception as exc:  # refuse rather than let a broken push through
        err.write(f"{_PREFIX}cannot check this push ({type(exc).__name__}: {exc}); refused\n")
        return 1
    if not problems:
        return 0
    err.write(report(problems))
    err.flush()
    return 1


def report(problems: list[Problem]) -> str:
    """The text the hook prints for ``problems``: a header, then one line per problem."""
    count = len(problems)
    lines = [f"push refused: {count} problem{'s' if count != 1 else ''} to fix, then push again"]
    lines += [str(problem) for problem in problems[:MAX_SHOWN]]
    if count > MAX_SHOWN:
        lines.append(f"... and {count - MAX_SHOWN} more")
    if any(problem.commit is not None for problem in problems):
        lines.append(
            "every pushed commit is checked, not only the last one: fix the commit that"
            " brought a problem (git rebase -i, or squash) rather than adding a commit on top"
        )
    return "".join(f"{_PREFIX}{line}\n" for line in lines)
