"""Earlier versions of a program: ``ID~N``, from the first-parent log of ``main``.

A *version* is a commit of that log that changed the program's file and left
it present (a save, or a restore). ``ID~0`` is the newest version, which for
a live program is the one on ``main``; ``ID~N`` is the version N before it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pygit2

from progreg.core.document import decode_document
from progreg.core.ids import program_path
from progreg.core.layout import MAIN
from progreg.core.models import SavedProgram
from progreg.storage import ProgramStorage


def _version_commits(storage: ProgramStorage, program_id: str) -> Iterator[pygit2.Commit]:
    git = storage.registry.git
    path = program_path(program_id)
    commit = git.tip(MAIN)
    while commit is not None:
        parent = commit.parents[0] if commit.parents else None
        blob = git.blob(commit.tree, path)
        if blob is not None:
            before = git.blob(parent.tree, path) if parent is not None else None
            if before is None or before.id != blob.id:
                yield commit
        commit = parent


def program_versions(storage: ProgramStorage, program_id: str, limit: int) -> list[SavedProgram]:
    """Up to ``limit`` versions of the program, newest first."""
    versions: list[SavedProgram] = []
    path = program_path(program_id)
    for commit in _version_commits(storage, program_id):
        if len(versions) >= limit:
            break
        data = storage.registry.git.read(commit.tree, path)
        assert data is not None
        where = f"{path} (commit {str(commit.id)[:12]} of {storage.path})"
        doc = decode_document(data, where, program_id)
        versions.append(storage.registry.saved_program(doc, doc.state, str(commit.id)))
    return versions


def program_version(storage: ProgramStorage, program_id: str, back: int) -> SavedProgram | None:
    """Version ``ID~back`` of the program, or ``None`` when history is not that long."""
    versions = program_versions(storage, program_id, back + 1)
    return versions[back] if len(versions) > back else None


def version_count(storage: ProgramStorage, program_id: str) -> int:
    """How many versions of the program the first-parent log of ``main`` holds."""
    return sum(1 for _ in _version_commits(storage, program_id))
