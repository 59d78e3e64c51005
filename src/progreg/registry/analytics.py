"""Analytics over the live programs of a registry, computed from the commit log.

Every function here is pure: it takes the :class:`~progreg.registry.history.ProgramRecord`
of each live program (what the log of ``main`` says about it: score,
optimizer, signature, ``saved_at`` and ``position``, the index in the log of
the commit that wrote its live version; higher is newer) and reads nothing
else. The formulas, which fix the arithmetic defects of the reference system:

Order
    Programs are ordered oldest first by ``(position, saved_at, program_id)``.
    ``position`` is exact even for saves in the same microsecond or from
    machines whose clocks disagree; the other two only order the programs
    one commit wrote together. "Newest" means last in this order.

Summary (:class:`~progreg.core.models.HistorySummary`)
    ``total_programs`` = the number of live programs; ``avg_score`` = the
    mean of their non-null best scores, ``None`` when no program has one
    (the reference reported 0.0); ``latest_save`` = ``saved_at`` of the
    newest program, ``None`` for an empty registry.

Optimizer statistics (:class:`OptimizerStats`)
    Programs are grouped by ``optimizer``; programs without one (null or
    empty) are grouped under ``"unknown"`` (together with any optimizer
    literally named so).
    ``count`` = programs in the group; ``avg_score`` = mean of the group's
    non-null scores, ``None`` when all are null (the reference gave NaN);
    ``best_score`` = their maximum, ``None`` likewise; ``latest`` = the newest
    program of the group. Groups are listed by optimizer name.

Trends (:class:`Trends`)
    With ``n`` programs, the recent window is the newest ``k = min(10, n // 2)``
    programs and the older window is every program before it. The windows
    never overlap (the reference's did for 10 or fewer programs), and with
    ``n < 2`` both are empty. ``recent_count`` / ``older_count`` are the
    window sizes; ``recent_avg_score`` / ``older_avg_score`` the means of the
    windows' non-null scores (``None`` when a window has none);
    ``improvement_percentage = round((recent - older) / abs(older) * 100, 2)``,
    ``None`` when either mean is ``None`` or ``older == 0``. Dividing by
    ``abs(older)`` keeps the sign meaning "better" for negative scores.

Retention weight (:func:`retention_weights`, :func:`cleanup_plan`)
    For each candidate (a live program without a protected tag),
    ``weight = 0.7 * S + 0.3 * R``, rounded to 12 decimal places so that
    equal weights compare equal, where both terms are min-max normalised to
    0..1 across the candidates:

    - ``S`` (performance): ``(score - lo) / (hi - lo)`` with ``lo`` and ``hi``
      the lowest and highest non-null scores; a null score counts as the
      lowest, so ``S = 0``; when ``hi == lo`` every non-null score has
      ``S = 1``; when all candidates have the same score (or all are null),
      ``S = 1`` for all.
    - ``R`` (recency): ``(saved_at - oldest) / (newest - oldest)`` over the
      candidates' ``saved_at`` times, as exact time differences (the
      reference used epoch seconds / 1e6, so about 2.7 days of age outweighed
      0.1 of score); ``R = 1`` for all when every ``saved_at`` is the same.

    Candidates are ranked by weight, highest first, ties going to the newer
    program (by the order above). Cleanup keeps the first ``keep`` candidates
    and removes the rest; protected programs are never removed and do not
    count toward ``keep``.

Comparison of two programs (:func:`score_difference`, :func:`better_program`,
:func:`age_difference_hours`)
    ``score_difference = score1 - score2``, ``None`` if either is null.
    ``better_program`` = the id with the higher score; ``None`` on a tie or
    when neither has a score (the reference gave ties to the second id); if
    only one has a score, that one. ``age_difference_hours =
    round((saved_at1 - saved_at2) / 1 hour, 2)``, positive when program 1 is
    newer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from operator import attrgetter

from pydantic import BaseModel, ConfigDict, Field

from progreg.core.models import HistorySummary
from progreg.registry.history import ProgramRecord

#: The group of programs that record no optimizer.
UNKNOWN_OPTIMIZER = "unknown"
#: Size limit of the recent window of :class:`Trends`.
RECENT_WINDOW = 10
#: Share of performance in the retention weight.
SCORE_WEIGHT = 0.7
#: Share of recency in the retention weight.
RECENCY_WEIGHT = 0.3
_WEIGHT_DIGITS = 12


class ProgramRef(BaseModel):
    """A program as analytics refer to it: what the log says about it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    program_id: str
    saved_at: datetime
    best_score: float | None
    optimizer: str | None
    signature_class: str | None
    commit: str = Field(description="hex id of the commit that wrote this version")

    @classmethod
    def of(cls, record: ProgramRecord) -> ProgramRef:
        """The reference to a log record."""
        return cls(
            program_id=record.program_id,
            saved_at=record.saved_at,
            best_score=record.best_score,
            optimizer=record.optimizer,
            signature_class=record.signature_class,
            commit=record.commit,
        )


class OptimizerStats(BaseModel):
    """The programs one optimizer produced."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    count: int
    avg_score: float | None = Field(description="mean of non-null scores; None if all are null")
    best_score: float | None = Field(description="highest non-null score; None if all are null")
    latest: ProgramRef = Field(description="the newest program of this optimizer")


class Trends(BaseModel):
    """Recent programs against older ones (windows that never overlap)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    recent_avg_score: float | None
    older_avg_score: float | None
    improvement_percentage: float | None
    recent_count: int = Field(description="programs in the recent window")
    older_count: int = Field(description="programs in the older window")


class OptimizationHistory(BaseModel):
    """Summary, per-optimizer statistics and trends of a registry."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    summary: HistorySummary
    optimizer_stats: dict[str, OptimizerStats]
    trends: Trends


_ORDER = attrgetter("position", "saved_at", "program_id")


def ordered(records: Iterable[ProgramRecord]) -> list[ProgramRecord]:
    """The records oldest first: by ``(position, saved_at, program_id)``."""
    return sorted(records, key=_ORDER)


def mean_score(records: Iterable[ProgramRecord]) -> float | None:
    """The mean of the non-null best scores, ``None`` when there is none."""
    scores = [r.best_score for r in records if r.best_score is not None]
    return sum(scores) / len(scores) if scores else None


def history_summary(records: Iterable[ProgramRecord]) -> HistorySummary:
    """Totals: program count, mean non-null score, ``saved_at`` of the newest program."""
    return _history_summary(ordered(records))


def _history_summary(programs: Sequence[ProgramRecord]) -> HistorySummary:
    return HistorySummary(
        total_programs=len(programs),
        avg_score=mean_score(programs),
        latest_save=programs[-1].saved_at if programs else None,
    )


def optimizer_stats(records: Iterable[ProgramRecord]) -> dict[str, OptimizerStats]:
    """Statistics per optimizer (``"unknown"`` for none), keyed and listed by name."""
    return _optimizer_stats(ordered(records))


def _optimizer_stats(programs: Sequence[ProgramRecord]) -> dict[str, OptimizerStats]:
    groups: dict[str, list[ProgramRecord]] = {}
    for record in programs:
        groups.setdefault(record.optimizer or UNKNOWN_OPTIMIZER, []).append(record)
    stats: dict[str, OptimizerStats] = {}
    for name in sorted(groups):
        group = groups[name]
        scores = [r.best_score for r in group if r.best_score is not None]
        stats[name] = OptimizerStats(
            count=len(group),
            avg_score=sum(scores) / len(scores) if scores else None,
            best_score=max(scores) if scores else None,
            latest=ProgramRef.of(group[-1]),
        )
    return stats


def trend_windows(
    records: Iterable[ProgramRecord],
) -> tuple[list[ProgramRecord], list[ProgramRecord]]:
    """``(older, recent)``: the recent window is the newest ``min(10, n // 2)`` programs."""
    return _trend_windows(ordered(records))


def _trend_windows(
    programs: Sequence[ProgramRecord],
) -> tuple[list[ProgramRecord], list[ProgramRecord]]:
    size = min(RECENT_WINDOW, len(programs) // 2)
    if size == 0:
        return [], []
    split = len(programs) - size
    return list(programs[:split]), list(programs[split:])


def improvement_percentage(recent: float | None, older: float | None) -> float | None:
    """``round((recent - older) / abs(older) * 100, 2)``; ``None`` if undefined."""
    if recent is None or older is None or older == 0:
        return None
    return round((recent - older) / abs(older) * 100, 2)


def trends(records: Iterable[ProgramRecord]) -> Trends:
    """Mean scores of the recent and older windows and the improvement between them."""
    return _trends(ordered(records))


def _trends(programs: Sequence[ProgramRecord]) -> Trends:
    older, recent = _trend_windows(programs)
    recent_avg = mean_score(recent)
    older_avg = mean_score(older)
    return Trends(
        recent_avg_score=recent_avg,
        older_avg_score=older_avg,
        improvement_percentage=improvement_percentage(recent_avg, older_avg),
        recent_count=len(recent),
        older_count=len(older),
    )


def optimization_history(records: Iterable[ProgramRecord]) -> OptimizationHistory:
    """Summary, per-optimizer statistics and trends of the given live programs."""
    programs = ordered(records)
    return OptimizationHistory(
        summary=_history_summary(programs),
        optimizer_stats=_optimizer_stats(programs),
        trends=_trends(programs),
    )


# -- cleanup ----------------------------------------------------------------------


def _score_terms(programs: Sequence[ProgramRecord]) -> list[float]:
    values = [r.best_score for r in programs]
    if len(set(values)) <= 1:
        return [1.0] * len(programs)
    scores = [v for v in values if v is not None]
    lo, hi = min(scores), max(scores)
    terms: list[float] = []
    for value in values:
        if value is None:
            terms.append(0.0)
        elif hi == lo:
            terms.append(1.0)
        else:
            terms.append((value - lo) / (hi - lo))
    return terms


def _recency_terms(programs: Sequence[ProgramRecord]) -> list[float]:
    if not programs:
        return []
    oldest = min(r.saved_at for r in programs)
    span = max(r.saved_at for r in programs) - oldest
    if span == timedelta(0):
        return [1.0] * len(programs)
    return [(r.saved_at - oldest) / span for r in programs]


def retention_weights(records: Iterable[ProgramRecord]) -> dict[str, float]:
    """``0.7 * S + 0.3 * R`` per program id, normalised across the given records.

    See the module documentation for ``S`` and ``R``.
    """
    programs = ordered(records)
    weights: dict[str, float] = {}
    for record, score, recency in zip(
        programs, _score_terms(programs), _recency_terms(programs), strict=True
    ):
        weight = SCORE_WEIGHT * score + RECENCY_WEIGHT * recency
        weights[record.program_id] = round(weight, _WEIGHT_DIGITS)
    return weights


def cleanup_plan(records: Iterable[ProgramRecord], keep: int, protected: set[str]) -> list[str]:
    """The ids to remove so that ``keep`` unprotected programs remain, oldest first.

    Programs whose id is in ``protected`` are never removed and do not count
    toward ``keep``. The others are ranked by :func:`retention_weights`
    (computed across them only), ties going to the newer program, and all
    but the first ``keep`` are removed. Raises :class:`ValueError` when
    ``keep`` is negative.
    """
    if keep < 0:
        raise ValueError(f"keep must be at least 0, not {keep}")
    candidates = [r for r in ordered(records) if r.program_id not in protected]
    if len(candidates) <= keep:
        return []
    weights = retention_weights(candidates)
    # ``candidates`` is oldest first: a higher index is a newer program.
    ranked = sorted(
        range(len(candidates)),
        key=lambda index: (-weights[candidates[index].program_id], -index),
    )
    removed = {candidates[index].program_id for index in ranked[keep:]}
    return [r.program_id for r in candidates if r.program_id in removed]


# -- comparing two programs -------------------------------------------------------


#: Decimal places a score difference keeps: enough for any metric, none of the float noise
#: (``0.73 - 0.9`` is ``-0.17000000000000004`` before rounding).
SCORE_DIFFERENCE_PLACES = 10


def score_difference(score1: float | None, score2: float | None) -> float | None:
    """``score1 - score2`` without float noise; ``None`` if either is ``None``."""
    if score1 is None or score2 is None:
        return None
    return round(score1 - score2, SCORE_DIFFERENCE_PLACES) + 0.0  # + 0.0: never -0.0


def better_program(id1: str, score1: float | None, id2: str, score2: float | None) -> str | None:
    """The id with the higher score; ``None`` on a tie or when neither has a score."""
    if score1 is None and score2 is None:
        return None
    if score2 is None:
        return id1
    if score1 is None:
        return id2
    if score1 == score2:
        return None
    return id1 if score1 > score2 else id2


def age_difference_hours(saved_at1: datetime, saved_at2: datetime) -> float:
    """``saved_at1 - saved_at2`` in hours, rounded to 2 places (positive: 1 is newer)."""
    return round((saved_at1 - saved_at2) / timedelta(hours=1), 2) + 0.0  # + 0.0: never -0.0
