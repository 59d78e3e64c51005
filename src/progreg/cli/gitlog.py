"""The log of ``main`` as records: what each commit did, to which program, by whom.

Each commit's trailers (see :mod:`progreg.registry.messages`) say what it did; commits
made without progreg have none, and are listed as ``merge`` or ``commit``
with their subject.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime

import pygit2
from pydantic import BaseModel, ConfigDict, Field

from progreg.core.layout import MAIN
from progreg.registry.messages import ACTION, NONE, PROGRAM_ID, SAVED_AT, trailers_of
from progreg.storage import ProgramStorage


class LogRecord(BaseModel):
    """One commit of ``main``, as ``progreg log --json`` prints it."""

    model_config = ConfigDict(frozen=True)

    commit: str
    date: datetime = Field(description="author date, UTC (for a save: its saved_at)")
    action: str = Field(description="save, delete, restore, cleanup, merge, commit...")
    program_id: str | None
    signature_class: str | None
    optimizer: str | None
    score: float | None
    score_name: str | None
    author: str
    author_email: str
    subject: str


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


def log_record(commit: pygit2.Commit) -> LogRecord:
    """The record of one commit."""
    trailers = trailers_of(commit.message)
    fallback = "merge" if len(commit.parent_ids) > 1 else "commit"
    author = commit.author
    return LogRecord(
        commit=str(commit.id),
        date=_date(trailers, author.time),
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


def read_log(storage: ProgramStorage) -> Iterator[LogRecord]:
    """Every commit reachable from ``main``, newest first (merged histories included)."""
    for commit in storage.registry.git.walk(MAIN):
        yield log_record(commit)
