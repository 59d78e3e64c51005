"""Analytics over log records: every number checked against a hand-computed fixture."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from progreg.core.models import HistorySummary
from progreg.registry.analytics import (
    OptimizationHistory,
    ProgramRef,
    age_difference_hours,
    better_program,
    cleanup_plan,
    history_summary,
    improvement_percentage,
    optimization_history,
    optimizer_stats,
    retention_weights,
    score_difference,
    trend_windows,
    trends,
)
from progreg.registry.history import ProgramRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pid(n: int) -> str:
    return f"{n:016x}"


def record(
    n: int,
    score: float | None,
    optimizer: str | None = None,
    *,
    position: int | None = None,
    saved_at: datetime | None = None,
    signature: str | None = "ClassifyText",
) -> ProgramRecord:
    return ProgramRecord(
        program_id=pid(n),
        commit=f"{n:040x}",
        position=n if position is None else position,
        saved_at=T0 + timedelta(hours=n) if saved_at is None else saved_at,
        best_score=score,
        score_name="accuracy" if score is not None else None,
        optimizer=optimizer,
        signature_class=signature,
    )


# position: (optimizer, score). Scores summed by hand in the comments below.
FIXTURE: list[tuple[str | None, float | None]] = [
    ("MIPROv2", 0.50),  # 0
    ("GEPA", 0.60),  # 1
    ("COPRO", None),  # 2
    ("MIPROv2", 0.70),  # 3
    (None, 0.40),  # 4
    ("GEPA", None),  # 5
    ("COPRO", None),  # 6
    ("MIPROv2", 0.80),  # 7
    ("GEPA", 0.90),  # 8
    (None, None),  # 9
    ("MIPROv2", 0.65),  # 10
    ("GEPA", 0.75),  # 11
    ("COPRO", None),  # 12
]
# The newest program (position 12) was saved on a machine whose clock is behind:
# its saved_at is earlier than position 11's, but the log says it is newer.
SKEWED_SAVED_AT = T0 + timedelta(hours=5)


def fixture_records() -> list[ProgramRecord]:
    records = [
        record(n, score, optimizer, saved_at=SKEWED_SAVED_AT if n == 12 else None)
        for n, (optimizer, score) in enumerate(FIXTURE)
    ]
    random.Random(3).shuffle(records)  # input order must not matter
    return records


# -- optimization_history on the fixture ---------------------------------------------


def test_summary_of_fixture() -> None:
    summary = history_summary(fixture_records())
    # non-null: .5 + .6 + .7 + .4 + .8 + .9 + .65 + .75 = 5.3 over 8
    assert summary.model_dump() == {
        "total_programs": 13,
        "avg_score": pytest.approx(0.6625),
        "latest_save": SKEWED_SAVED_AT,
    }


def test_optimizer_stats_of_fixture() -> None:
    stats = optimizer_stats(fixture_records())
    assert list(stats) == ["COPRO", "GEPA", "MIPROv2", "unknown"]

    mipro = stats["MIPROv2"]  # positions 0, 3, 7, 10: .5 + .7 + .8 + .65 = 2.65
    assert mipro.count == 4
    assert mipro.avg_score == pytest.approx(0.6625)
    assert mipro.best_score == 0.80
    assert mipro.latest.program_id == pid(10)

    gepa = stats["GEPA"]  # positions 1, 5, 8, 11: .6 + null + .9 + .75 = 2.25 over 3
    assert gepa.count == 4
    assert gepa.avg_score == pytest.approx(0.75)
    assert gepa.best_score == 0.90
    assert gepa.latest.program_id == pid(11)

    copro = stats["COPRO"]  # positions 2, 6, 12: all null (the reference said NaN)
    assert copro.count == 3
    assert copro.avg_score is None
    assert copro.best_score is None
    assert copro.latest == ProgramRef(
        program_id=pid(12),
        saved_at=SKEWED_SAVED_AT,
        best_score=None,
        optimizer="COPRO",
        signature_class="ClassifyText",
        commit=f"{12:040x}",
    )

    unknown = stats["unknown"]  # positions 4, 9: .4 + null
    assert unknown.count == 2
    assert unknown.avg_score == pytest.approx(0.40)
    assert unknown.best_score == 0.40
    assert unknown.latest.program_id == pid(9)
    assert unknown.latest.optimizer is None


def test_trends_of_fixture() -> None:
    result = trends(fixture_records())
    # n = 13, k = min(10, 6) = 6: recent = positions 7..12, older = positions 0..6
    assert result.recent_count == 6
    assert result.older_count == 7
    # recent: .8 + .9 + .65 + .75 = 3.1 over 4; older: .5 + .6 + .7 + .4 = 2.2 over 4
    assert result.recent_avg_score == pytest.approx(0.775)
    assert result.older_avg_score == pytest.approx(0.55)
    # (0.775 - 0.55) / 0.55 * 100 = 40.9090...
    assert result.improvement_percentage == 40.91


def test_optimization_history_combines_the_parts() -> None:
    records = fixture_records()
    history = optimization_history(records)
    assert isinstance(history, OptimizationHistory)
    assert history.summary == history_summary(records)
    assert history.optimizer_stats == optimizer_stats(records)
    assert history.trends == trends(records)
    with pytest.raises(ValueError, match="frozen"):
        history.trends.recent_count = 0


def test_optimization_history_of_an_empty_registry() -> None:
    history = optimization_history([])
    assert history.summary == HistorySummary(total_programs=0, avg_score=None, latest_save=None)
    assert history.optimizer_stats == {}
    assert history.trends.model_dump() == {
        "recent_avg_score": None,
        "older_avg_score": None,
        "improvement_percentage": None,
        "recent_count": 0,
        "older_count": 0,
    }


def test_summary_when_no_program_has_a_score() -> None:
    summary = history_summary([record(0, None), record(1, None)])
    assert summary.total_programs == 2
    assert summary.avg_score is None
    assert summary.latest_save == T0 + timedelta(hours=1)


def test_programs_written_by_one_commit_are_ordered_by_saved_at_then_id() -> None:
    late = record(1, 0.5, "A", position=7, saved_at=T0 + timedelta(seconds=2))
    early = record(2, 0.6, "A", position=7, saved_at=T0 + timedelta(seconds=1))
    assert optimizer_stats([late, early])["A"].latest.program_id == pid(1)
    same_a = record(3, 0.5, "B", position=7, saved_at=T0)
    same_b = record(4, 0.6, "B", position=7, saved_at=T0)
    assert optimizer_stats([same_b, same_a])["B"].latest.program_id == pid(4)


def test_empty_optimizer_name_counts_as_unknown() -> None:
    stats = optimizer_stats([record(0, 0.5, ""), record(1, 0.7, None)])
    assert list(stats) == ["unknown"]
    assert stats["unknown"].count == 2
    assert stats["unknown"].avg_score == pytest.approx(0.6)


# -- trend windows ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "older", "recent"),
    [(0, 0, 0), (1, 0, 0), (2, 1, 1), (3, 2, 1), (11, 6, 5), (20, 10, 10), (25, 15, 10)],
)
def test_trend_windows_never_overlap(n: int, older: int, recent: int) -> None:
    records = [record(i, 0.5) for i in range(n)]
    random.Random(n).shuffle(records)
    old_window, recent_window = trend_windows(records)
    assert (len(old_window), len(recent_window)) == (older, recent)
    assert [r.position for r in recent_window] == list(range(n - recent, n))
    assert [r.position for r in old_window] == list(range(older))
    result = trends(records)
    assert (result.older_count, result.recent_count) == (older, recent)


def test_trends_for_two_and_three_programs() -> None:
    two = trends([record(0, 0.5), record(1, 0.6)])
    assert two.older_avg_score == 0.5
    assert two.recent_avg_score == 0.6
    assert two.improvement_percentage == 20.0  # 0.1 / 0.5 * 100 = 19.999...96
    three = trends([record(0, 0.4), record(1, 0.8), record(2, 0.9)])
    assert three.older_avg_score == pytest.approx(0.6)
    assert three.recent_avg_score == 0.9
    assert three.improvement_percentage == 50.0


def test_trends_for_one_program_are_empty() -> None:
    result = trends([record(0, 0.9)])
    assert result.recent_avg_score is None
    assert result.older_avg_score is None
    assert result.improvement_percentage is None


def test_trends_with_25_programs_use_the_last_ten() -> None:
    records = [record(i, 0.5 if i < 15 else 1.0) for i in range(25)]
    result = trends(records)
    assert result.older_avg_score == 0.5
    assert result.recent_avg_score == 1.0
    assert result.improvement_percentage == 100.0


def test_trends_when_a_window_has_no_score() -> None:
    result = trends([record(0, None), record(1, None), record(2, 0.7), record(3, 0.9)])
    assert result.older_avg_score is None
    assert result.recent_avg_score == pytest.approx(0.8)
    assert result.improvement_percentage is None


def test_improvement_percentage_edge_cases() -> None:
    assert improvement_percentage(0.5, 0.0) is None
    assert improvement_percentage(None, 0.5) is None
    assert improvement_percentage(0.5, None) is None
    assert improvement_percentage(-0.5, -1.0) == 50.0  # less negative is better
    assert improvement_percentage(-1.5, -1.0) == -50.0
    assert improvement_percentage(0.3, 0.9) == -66.67
    assert improvement_percentage(0.9, 0.9) == 0.0


# -- cleanup ---------------------------------------------------------------------------


def day(n: int, score: float | None, *, days: float | None = None) -> ProgramRecord:
    """Program ``n`` saved ``days`` (default ``n``) days after T0, at position ``n``."""
    offset = timedelta(days=n if days is None else days)
    return record(n, score, "MIPROv2", saved_at=T0 + offset)


def five() -> list[ProgramRecord]:
    # ids 0..4 saved on days 0..4; scores: lo = 0.5, hi = 0.9
    return [day(0, 0.9), day(1, None), day(2, 0.5), day(3, 0.7), day(4, 0.5)]


def test_retention_weights_hand_computed() -> None:
    weights = retention_weights(five())
    # S: 1, 0 (null), 0, 0.5, 0;  R: 0, .25, .5, .75, 1
    assert weights == {
        pid(0): pytest.approx(0.7),
        pid(1): pytest.approx(0.075),
        pid(2): pytest.approx(0.15),
        pid(3): pytest.approx(0.575),
        pid(4): pytest.approx(0.3),
    }


@pytest.mark.parametrize(
    ("keep", "removed"),
    [
        (0, [0, 1, 2, 3, 4]),
        (1, [1, 2, 3, 4]),
        (2, [1, 2, 4]),
        (3, [1, 2]),
        (4, [1]),
        (5, []),
        (100, []),
    ],
)
def test_cleanup_keeps_the_heaviest(keep: int, removed: list[int]) -> None:
    records = five()
    random.Random(keep).shuffle(records)
    assert cleanup_plan(records, keep, set()) == [pid(n) for n in removed]


def test_cleanup_never_removes_protected_programs() -> None:
    protected = {pid(0)}
    # candidates 1..4: lo = 0.5, hi = 0.7 -> S: 0, 0, 1, 0; R over days 1..4: 0, 1/3, 2/3, 1
    # weights: 0, 0.1, 0.9, 0.3 -> keep 3 and 4
    weights = retention_weights([r for r in five() if r.program_id not in protected])
    assert weights == {
        pid(1): pytest.approx(0.0),
        pid(2): pytest.approx(0.1),
        pid(3): pytest.approx(0.9),
        pid(4): pytest.approx(0.3),
    }
    assert cleanup_plan(five(), 2, protected) == [pid(1), pid(2)]
    assert cleanup_plan(five(), 0, protected) == [pid(1), pid(2), pid(3), pid(4)]
    assert cleanup_plan(five(), 4, protected) == []
    everything = {pid(n) for n in range(5)}
    assert cleanup_plan(five(), 0, everything) == []
    # protected ids that are not live change nothing
    assert cleanup_plan(five(), 2, {pid(99)}) == cleanup_plan(five(), 2, set())


def test_cleanup_score_outweighs_days_of_age() -> None:
    # The reference's epoch-seconds/1e6 recency let ~2.7 days outweigh 0.1 of score.
    older_better = day(0, 0.6)
    newer_worse = day(1, 0.5, days=3)
    assert retention_weights([older_better, newer_worse]) == {
        pid(0): pytest.approx(0.7),
        pid(1): pytest.approx(0.3),
    }
    assert cleanup_plan([older_better, newer_worse], 1, set()) == [pid(1)]


def test_cleanup_with_all_scores_equal_keeps_the_newest() -> None:
    records = [day(0, 0.8), day(1, 0.8), day(2, 0.8)]
    assert retention_weights(records) == {
        pid(0): pytest.approx(0.7),
        pid(1): pytest.approx(0.85),
        pid(2): pytest.approx(1.0),
    }
    assert cleanup_plan(records, 1, set()) == [pid(0), pid(1)]
    nulls = [day(0, None), day(1, None), day(2, None)]
    assert retention_weights(nulls) == retention_weights(records)
    assert cleanup_plan(nulls, 2, set()) == [pid(0)]


def test_cleanup_null_scores_rank_lowest() -> None:
    # S: 1, 0 (null), 1 (hi == lo among scores); R: 0, 1, .5
    records = [day(0, 0.8), day(1, None, days=2), day(2, 0.8, days=1)]
    assert retention_weights(records) == {
        pid(0): pytest.approx(0.7),
        pid(1): pytest.approx(0.3),
        pid(2): pytest.approx(0.85),
    }
    assert cleanup_plan(records, 2, set()) == [pid(1)]


def test_cleanup_ties_go_to_the_newer_position() -> None:
    same = T0 + timedelta(days=1)
    records = [record(n, 0.7, saved_at=same) for n in range(4)]
    assert set(retention_weights(records).values()) == {1.0}
    assert cleanup_plan(records, 1, set()) == [pid(0), pid(1), pid(2)]
    assert cleanup_plan(records, 3, set()) == [pid(0)]
    # Equal weights made of different terms: 0.7 * 0.4 + 0.3 * 0.1 and 0.7 * 0.1 + 0.3 * 0.8
    # are 0.30999999999999994 and 0.31 in floats; rounding makes them tie, and the tie goes
    # to the newer position (x, whose clock was behind), not to the float noise (y).
    low = record(0, 0.0, saved_at=T0)
    y = record(1, 0.1, saved_at=T0 + timedelta(days=8))
    x = record(2, 0.4, saved_at=T0 + timedelta(days=1))
    high = record(3, 1.0, saved_at=T0 + timedelta(days=10))
    weights = retention_weights([low, y, x, high])
    assert weights == {pid(0): 0.0, pid(1): 0.31, pid(2): 0.31, pid(3): 1.0}
    assert cleanup_plan([low, y, x, high], 2, set()) == [pid(0), pid(1)]


def test_cleanup_ties_within_one_commit_go_by_saved_at_then_id() -> None:
    records = [record(n, 0.7, position=3, saved_at=T0) for n in (5, 9, 7)]
    assert cleanup_plan(records, 1, set()) == [pid(5), pid(7)]


def test_cleanup_rejects_negative_keep() -> None:
    with pytest.raises(ValueError, match="keep must be at least 0"):
        cleanup_plan(five(), -1, set())


def test_cleanup_of_nothing() -> None:
    assert cleanup_plan([], 0, set()) == []
    assert retention_weights([]) == {}


# -- comparison helpers ---------------------------------------------------------------


def test_score_difference() -> None:
    assert score_difference(0.9, 0.8) == pytest.approx(0.1)
    assert score_difference(0.8, 0.9) == pytest.approx(-0.1)
    assert score_difference(None, 0.9) is None
    assert score_difference(0.9, None) is None
    # Float noise and negative zero never reach what is shown.
    assert score_difference(0.73, 0.9) == -0.17
    assert str(score_difference(0.1, 0.1)) == "0.0"


def test_better_program() -> None:
    assert better_program("a", 0.9, "b", 0.8) == "a"
    assert better_program("a", 0.8, "b", 0.9) == "b"
    assert better_program("a", 0.8, "b", 0.8) is None  # the reference gave ties to "b"
    assert better_program("a", None, "b", None) is None
    assert better_program("a", None, "b", 0.1) == "b"
    assert better_program("a", 0.0, "b", None) == "a"


def test_age_difference_hours() -> None:
    assert age_difference_hours(T0 + timedelta(minutes=90), T0) == 1.5
    assert age_difference_hours(T0, T0 + timedelta(minutes=90)) == -1.5
    assert age_difference_hours(T0 + timedelta(minutes=20), T0) == 0.33
    assert age_difference_hours(T0, T0) == 0.0
    assert str(age_difference_hours(T0, T0 + timedelta(seconds=1))) == "0.0"
    other_zone = (T0 + timedelta(hours=2)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert age_difference_hours(other_zone, T0) == 2.0


def test_program_ref_of_record() -> None:
    ref = ProgramRef.of(record(3, 0.25, "GEPA"))
    assert ref.model_dump() == {
        "program_id": pid(3),
        "saved_at": T0 + timedelta(hours=3),
        "best_score": 0.25,
        "optimizer": "GEPA",
        "signature_class": "ClassifyText",
        "commit": f"{3:040x}",
    }
