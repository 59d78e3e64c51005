"""Text rendering shared by subcommands."""

from __future__ import annotations

from datetime import UTC, datetime

from progreg.storage import MAIN, ProgramStorage


def format_score(score: float | None) -> str:
    """A score for display: four decimals, or ``-``."""
    return "-" if score is None else f"{score:.4f}"


def format_log(storage: ProgramStorage, limit: int) -> list[str]:
    """One line per commit of ``main``, like ``git log --oneline`` with dates."""
    lines = []
    for count, commit in enumerate(storage.git.walk(MAIN)):
        if count >= limit:
            break
        when = datetime.fromtimestamp(commit.commit_time, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{str(commit.id)[:10]} {when} {commit.message.splitlines()[0]}")
    return lines
