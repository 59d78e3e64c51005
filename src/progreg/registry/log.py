"""The log of ``main`` as the public API returns it: commits, and versions of a program.

Each commit's trailers (see :mod:`progreg.registry.messages`) say what it did;
commits made without progreg have none, and are entries ``merge`` or
``commit`` with their subject. A *version* of a program is a commit of the
first-parent log of ``main`` that changed the program's file and left it
present (a save, or a restore).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pygit2

from progreg.core.document import ProgramDocument, decode_document
from progreg.core.ids import check_program_id, program_path
from progreg.core.layout import MAIN
from progreg.core.models import LogEntry
from progreg.errors import InvalidInputError
from progreg.git import GitRepository
from progreg.registry.messages import ACTION, NONE, PROGRAM_ID, SAVED_AT, trailers_of


def check_limit(limit: int | None) -> int | None:
    """``limit`` when it is ``None`` or a whole number >= 0; else an ``InvalidInputError``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInputError(f"limit must be None or a whole number >= 0, got {limit!r}")
    return limit


def _value(trailers: dict[str, str], key: str) -> str | None:
    value = trailers.get(key)
    return None if value in (None, NONE) else value


def _score(text: str | None) -> float | None:
    try:
        score = float(text) if text is not None else None
    except ValueError:
        return None
    return score if score is not None and math.isfinite(score) else None


def _date(trailers: dict[str, str], author_time: int) -> datetime:
    """The save's own time (``Saved-At``, to the microsecond), else the author date."""
    text = trailers.get(SAVED_AT)
    if text is not None:
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is not None:
                return moment.astimezone(UTC)
    return datetime.fromtimestamp(author_time, UTC)


def log_entry(commit: pygit2.Commit) -> LogEntry:
    """The entry of one commit."""
    trailers = trailers_of(commit.message)
    fallback = "merge" if len(commit.parent_ids) > 1 else "commit"
    author = commit.author
    return LogEntry(
        commit=str(commit.id),
        date=_date(trailers, author.time),
        committed_at=datetime.fromtimestamp(commit.commit_time, UTC),
        action=trailers.get(ACTION, fallback),
        program_id=_value(trailers, PROGRAM_ID),
        signature_class=_value(trailers, "Signature"),
        optimizer=_value(trailers, "Optimizer"),
        score=_score(_value(trailers, "Score")),
        score_name=_value(trailers, "Score-Name"),
        author=author.name,
        author_email=author.email,
        subject=commit.message.splitlines()[0] if commit.message else "",
    )


def log_entries(git: GitRepository, limit: int | None) -> list[LogEntry]:
    """Up to ``limit`` commits reachable from ``main`` (all with ``None``), newest first."""
    entries: list[LogEntry] = []
    if limit == 0:
        return entries
    for commit in git.walk(MAIN):
        entries.append(log_entry(commit))
        if limit is not None and len(entries) >= limit:
            break
    return entries


def version_commits(git: GitRepository, program_id: str) -> Iterator[pygit2.Commit]:
    """The commits of ``main``'s first-parent log that wrote a version of the program."""
    path = program_path(check_program_id(program_id))
    commit = git.tip(MAIN)
    while commit is not None:
        parent = commit.parents[0] if commit.parents else None
        blob = git.blob(commit.tree, path)
        if blob is not None:
            before = git.blob(parent.tree, path) if parent is not None else None
            if before is None or before.id != blob.id:
                yield commit
        commit = parent


def program_versions(
    git: GitRepository, program_id: str, limit: int | None
) -> list[tuple[ProgramDocument, str]]:
    """Up to ``limit`` versions of the program (all with ``None``), newest first.

    Each is its decoded document and the hex id of the commit that wrote it.
    """
    versions: list[tuple[ProgramDocument, str]] = []
    if limit == 0:
        return versions
    path = program_path(check_program_id(program_id))
    for commit in version_commits(git, program_id):
        data = git.read(commit.tree, path)
        assert data is not None  # version_commits yields only commits holding the file
        where = f"{path} (commit {str(commit.id)[:12]} of {git.path})"
        versions.append((decode_document(data, where, program_id), str(commit.id)))
        if limit is not None and len(versions) >= limit:
            break
    return versions
