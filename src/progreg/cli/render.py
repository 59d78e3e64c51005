"""Text rendering shared by subcommands."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from progreg import ProgramStorage, ProgramSummary, SavedProgram
from progreg.cli.terminal import visible

if TYPE_CHECKING:
    from progreg import OptimizationHistory

#: Metadata progreg adds on save; ``show`` leaves it out of the metadata line.
_PROVENANCE = frozenset({"progreg_version", "python_version", "saved_with", "signature_class"})


def format_score(score: float | None) -> str:
    """A score for display: four decimals, or ``-``."""
    return "-" if score is None else f"{score:.4f}"


def format_log(storage: ProgramStorage, limit: int) -> list[str]:
    """One line per commit of ``main``, like ``git log --oneline`` with dates."""
    return [
        f"{entry.commit[:10]} {entry.committed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        f" {visible(entry.subject)}"
        for entry in storage.log(limit)
    ]


def saved_json(saved: SavedProgram) -> dict[str, Any]:
    """The ``--json`` shape of a program: ``SavedProgram`` without the ``program`` object.

    ``program`` is left out because the command line rebuilds no objects: it
    would repeat ``state``.
    """
    return saved.model_dump(mode="json", exclude={"program"})


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def program_lines(
    saved: SavedProgram, tags: Iterable[str] = (), revision: str | None = None
) -> list[str]:
    """A program for people: its facts, its metadata, then its state as indented JSON."""
    score_name = saved.optimization_result.get("best_score_name")
    score = format_score(saved.best_score)
    if saved.best_score is not None and isinstance(score_name, str):
        score += f" ({score_name})"
    meta = {
        key: value
        for key, value in saved.metadata.items()
        if key not in _PROVENANCE and value is not None
    }
    facts = [
        ("program", saved.program_id + (f"  ({revision})" if revision else "")),
        ("signature", saved.signature_class or "-"),
        ("optimizer", saved.optimizer or "-"),
        ("score", score),
        ("saved", _when(saved.saved_at)),
        ("commit", saved.commit),
        ("type", saved.program_type or "-"),
        ("tags", ", ".join(sorted(tags)) or "-"),
        ("metadata", json.dumps(meta, ensure_ascii=False, sort_keys=True) if meta else "-"),
    ]
    lines = [f"{name:<10}{visible(value)}" for name, value in facts]
    lines.append("state:")
    state = json.dumps(saved.state, indent=2, ensure_ascii=False)
    lines.extend(visible(state).splitlines())
    return lines


def summary_rows(
    programs: Iterable[ProgramSummary], tags: Mapping[str, Iterable[str]]
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of a table of programs (id, saved, signature, optimizer, score, tags)."""
    headers = ["ID", "SAVED (UTC)", "SIGNATURE", "OPTIMIZER", "SCORE", "TAGS"]
    rows = [
        [
            p.program_id,
            _when(p.saved_at)[:-4],
            p.signature_class or "-",
            p.optimizer or "-",
            format_score(p.best_score),
            ",".join(sorted(tags.get(p.program_id, ()))) or "-",
        ]
        for p in programs
    ]
    return headers, rows


def optimizer_rows(history: OptimizationHistory) -> list[list[str]]:
    """One row per optimizer: name, programs, average, best, latest program id."""
    return [
        [
            name,
            str(stats.count),
            format_score(stats.avg_score),
            format_score(stats.best_score),
            stats.latest.program_id,
        ]
        for name, stats in history.optimizer_stats.items()
    ]
