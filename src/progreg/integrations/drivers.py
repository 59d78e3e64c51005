"""Git's merge and diff drivers for program files, and their setup in a clone.

A registry's tree holds a ``.gitattributes`` that gives program files the
attributes ``merge=progreg diff=progreg`` (see docs/format.md). Git runs a
driver only where a clone's own configuration defines it (a repository
cannot make its clones run commands), so each clone opts in:
:func:`configure_clone` (``progreg hooks install`` in a clone) defines

* ``merge.progreg.driver``: :func:`merge_driver`, which merges program
  documents value by value (:mod:`progreg.core.docmerge`) and, on a
  conflict, leaves Git's usual conflict markers in the file and names each
  field that differs, with both values;
* ``diff.progreg.textconv``: :func:`readable`, which shows a document one
  value per line and long strings (instructions, demos) one sentence per
  line, so that ``git diff`` of a prompt edit reads like prose;

and installs a ``pre-commit`` hook running ``progreg validate --cached``.
Without the drivers Git merges and diffs program files as text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pygit2

from progreg.core import canonical
from progreg.core.docmerge import ABSENT, FieldConflict, merge_documents
from progreg.core.layout import ATTRIBUTES, DRIVER, MAIN
from progreg.errors import InvalidInputError, ProgregError
from progreg.integrations.hooks import hook_script, write_hook

#: The Git configuration a clone gets (``{key: value}``); ``{command}`` is how to run progreg.
_CONFIG = {
    f"merge.{DRIVER}.name": "progreg: program documents merged value by value",
    f"merge.{DRIVER}.driver": "{command} hooks merge-driver %O %A %B %P",
    f"diff.{DRIVER}.textconv": "{command} hooks textconv",
}
#: Strings longer than this (prompts, demos; not names or ids) are shown one sentence
#: per line, so that adding or editing a sentence changes one line.
_LONG = 40
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
#: A value shown in a conflict report is cut to this many characters.
_SHOWN = 200

_PRE_COMMIT = '''\
"""progreg's pre-commit check: the staged program files must be valid and canonical.

Installed by `progreg hooks install` in a clone of a registry. It checks what the
commit records (the index), whatever the work tree holds.
"""

import sys

try:
    from progreg.cli.main import main
except ImportError as exc:
    sys.stderr.write(
        f"progreg: cannot import progreg with {sys.executable} ({exc}); commit refused."
        " Install progreg, or run `progreg hooks install` again.\\n"
    )
    sys.exit(1)

main(["validate", "--cached"])
'''


# -- the merge driver ------------------------------------------------------------------


def merge_driver(
    base: Path, ours: Path, theirs: Path, path: str, *, report: TextIO | None = None
) -> int:
    """Merge ``theirs`` into ``ours`` (a file Git rewrites with the result); 0 when clean.

    ``base`` is the common ancestor's version (empty when both sides added
    the file); ``path`` the file's path in the tree, for messages. On a
    conflict, ``ours`` gets Git's conflict markers (``git merge-file``) and
    each field that differs is reported, with both values, on ``report``.
    """
    err = report if report is not None else sys.stderr
    base_data, our_data, their_data = base.read_bytes(), ours.read_bytes(), theirs.read_bytes()
    try:
        merged = merge_documents(base_data or None, our_data, their_data, path)
    except ProgregError as exc:  # not program documents on every side: merge them as text
        err.write(f"progreg: {path}: merged as text ({exc})\n")
        return _text_merge(base, ours, theirs, path)
    if merged.data is not None:
        ours.write_bytes(merged.data)
        if merged.rule is not None:
            err.write(f"progreg: {path}: {merged.rule}\n")
        return 0
    err.write(f"progreg: {path}: {len(merged.conflicts)} field(s) changed on both sides:\n")
    for conflict in merged.conflicts:
        err.write(f"progreg:   {_described(conflict)}\n")
    _text_merge(base, ours, theirs, path)
    return 1


def _described(conflict: FieldConflict) -> str:
    return f"{conflict.path}: {_shown(conflict.ours)} (ours) / {_shown(conflict.theirs)} (theirs)"


def _shown(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


def _text_merge(base: Path, ours: Path, theirs: Path, path: str) -> int:
    """Git's own line merge into ``ours``, with its conflict markers; 0 when clean."""
    done = subprocess.run(
        ["git", "merge-file", "-L", "ours", "-L", "base", "-L", "theirs", "--", ours, base, theirs],
        capture_output=True,
        check=False,
    )
    if done.returncode < 0 or done.returncode > 127:
        raise InvalidInputError(
            f"git merge-file failed on {path}: {done.stderr.decode(errors='replace')}"
        )
    return 0 if done.returncode == 0 else 1


# -- the diff driver --------------------------------------------------------------------


def readable(data: bytes, where: str = "program file") -> Iterator[str]:
    """The lines ``git diff`` shows for a program file: ``path: value``, one per value.

    A long or multi-line string is shown one line (and one sentence) per
    line below its path, indented, so that an edit of one sentence is one
    changed line. Text that is not JSON is shown as it is.
    """
    try:
        value = canonical.decode(data, where)
    except ProgregError:
        yield from data.decode("utf-8", errors="replace").splitlines()
        return
    yield from _lines(value, "")


def _lines(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from _lines(value[key], f"{path}.{key}" if path else key)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _lines(item, f"{path}[{index}]")
    elif isinstance(value, str) and (len(value) > _LONG or "\n" in value):
        yield f"{path}:"
        for line in value.split("\n"):
            for sentence in _SENTENCE_END.split(line) if line else [""]:
                yield f"    {sentence}"
    else:
        yield f"{path}: {json.dumps(value, ensure_ascii=False)}"


# -- a clone's setup ---------------------------------------------------------------------


def configure_clone(
    clone: str | os.PathLike[str], *, force: bool = False, interpreter: str | None = None
) -> tuple[Path, bool]:
    """Define the drivers in the clone's configuration and install its pre-commit hook.

    Returns the hook's path and whether ``main``'s tree (else ``HEAD``'s) has
    the ``.gitattributes`` that assigns the drivers. ``interpreter`` runs
    progreg (default: this Python). A different existing pre-commit hook is
    only replaced with ``force`` (else :class:`ConflictError`, nothing changed).
    """
    repo = _open_clone(Path(clone))
    python = interpreter or sys.executable
    hook = write_hook(repo, "pre-commit", hook_script(python, _PRE_COMMIT), force)
    command = f"{shlex.quote(python)} -m progreg.cli"
    for key, value in _CONFIG.items():
        repo.config[key] = value.format(command=command)
    return hook, _has_attributes(repo)


def _open_clone(path: Path) -> pygit2.Repository:
    found = pygit2.discover_repository(str(path))
    if found is None:
        raise InvalidInputError(f"{path} is not in a Git repository")
    repo = pygit2.Repository(found)
    if repo.is_bare:
        raise InvalidInputError(
            f"{path} is a bare repository: its clones merge and diff, so install the drivers"
            " in a clone (the pre-receive hook is what a bare server gets)"
        )
    return repo


def _has_attributes(repo: pygit2.Repository) -> bool:
    for name in (MAIN, "HEAD"):
        try:
            commit = repo.revparse_single(name).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            continue
        return ATTRIBUTES in commit.tree
    return False


__all__ = ["configure_clone", "merge_driver", "readable"]
