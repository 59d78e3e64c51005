"""StorageManager against real registries: discovery, tags, checkpoints, cleanup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from progreg import (
    CleanupResult,
    Event,
    InvalidInputError,
    InvalidNameError,
    OptimizationResult,
    ProgramNotFoundError,
    ProgramStorage,
    StorageConfig,
    StorageManager,
    subscribe,
)
from progreg.cli import cli
from progreg.core.ids import program_path
from support import workload
from support.gitcli import assert_fsck_clean, commit_file, git, registry_state

DEFAULT: Any = object()


def result_for(
    index: int, score: float | None = DEFAULT, optimizer: str | None = None
) -> OptimizationResult:
    """A realistic result around workload program ``index`` (its own score by default)."""
    data = workload.optimization_result(index)
    return OptimizationResult(
        optimized_program=workload.program_state(index),
        best_score_value=data["best_score_value"] if score is DEFAULT else score,
        best_score_name="pass_rate",
        scores=data["scores"],
        history=data["history"],
        metadata={**data["metadata"], "optimizer": optimizer or workload.optimizer_of(index)},
    )


@pytest.fixture
def manager(registry_path: Path) -> StorageManager:
    return StorageManager(StorageConfig(storage_path=registry_path, max_stored_programs=3))


def save(
    manager: StorageManager,
    index: int,
    score: float | None = DEFAULT,
    optimizer: str | None = None,
    signature: str | None = None,
    tags: list[str] | None = None,
) -> str:
    saved = manager.save_optimization_result(
        result_for(index, score, optimizer),
        tags=tags,
        metadata={"signature_class": signature or workload.signature_of(index)},
    )
    assert saved is not None
    return saved.program_id


def test_save_optimization_result_merges_metadata_and_tags(manager: StorageManager) -> None:
    saved = manager.save_optimization_result(
        result_for(0), tags=["production", "sentiment"], description="v2", metadata={"v": 2}
    )
    assert saved is not None
    assert saved.metadata["tags"] == ["production", "sentiment"]
    assert saved.metadata["description"] == "v2"
    assert saved.metadata["optimizer_class"] == workload.optimizer_of(0)
    assert saved.metadata["v"] == 2
    assert "optimized_program" not in saved.optimization_result
    assert manager.get_tags(saved.program_id) == ["production", "sentiment"]
    refs = git(manager.storage.path, "for-each-ref", "--format=%(refname) %(objecttype)")
    assert f"refs/tags/production/{saved.program_id} tag" in refs
    tag_target = git(manager.storage.path, "rev-parse", f"production/{saved.program_id}^{{commit}}")
    assert tag_target.strip() == saved.commit
    assert git(manager.storage.path, "tag", "-l").split() == [
        f"production/{saved.program_id}",
        f"sentiment/{saved.program_id}",
    ]
    assert_fsck_clean(manager.storage.path)


def test_auto_save_off_and_missing_program_save_nothing(registry_path: Path) -> None:
    manager = StorageManager(StorageConfig(storage_path=registry_path, auto_save=False))
    assert manager.save_optimization_result(result_for(0)) is None
    manager.config.auto_save = True
    assert manager.save_optimization_result({"best_score_value": 0.5}) is None
    assert manager.storage.list_programs() == []


def test_results_as_dicts_and_objects(manager: StorageManager) -> None:
    class Result:
        def __init__(self) -> None:
            self.optimized_program: dict[str, Any] = {"predict": {"demos": []}}
            self.best_score_value = 0.7
            self.best_score_name = "acc"
            self.scores = {"acc": 0.7}
            self.history: dict[str, Any] = {}
            self.metadata = {"optimizer": "GEPA"}

    from_object = manager.save_optimization_result(Result())
    from_dict = manager.save_optimization_result(
        {"optimized_program": {"x": 1}, "best_score_value": 0.2, "metadata": {"optimizer": "X"}}
    )
    assert from_object is not None and from_object.best_score == 0.7
    assert from_object.optimizer == "GEPA"
    assert from_dict is not None and from_dict.optimizer == "X"


def test_find_programs_each_filter_and_combinations(manager: StorageManager) -> None:
    a = save(manager, 0, 0.9, "MIPROv2", "ClassifyText", ["production"])
    b = save(manager, 1, 0.6, "MIPROv2", "ClassifyText", ["staging"])
    c = save(manager, 2, 0.8, "GEPA", "RouteIntent")
    d = save(manager, 3, None, "GEPA", "ClassifyText", ["staging", "nightly"])

    def ids(**filters: Any) -> list[str]:
        return [p.program_id for p in manager.find_programs(**filters)]

    assert ids() == [a, b, c, d]
    assert ids(optimizer="MIPROv2") == [a, b]
    assert ids(optimizer="mipro") == []
    assert ids(min_score=0.8) == [a, c]
    assert ids(min_score=0.0) == [a, b, c, d]  # no score counts as 0
    assert ids(signature_class="ClassifyText") == [a, b, d]
    assert ids(tags=["staging"]) == [b, d]
    assert ids(tags=["production", "nightly"]) == [a, d]
    assert ids(tags=["absent"]) == []
    assert ids(optimizer="GEPA", signature_class="ClassifyText") == [d]
    assert ids(optimizer="MIPROv2", min_score=0.7, tags=["production", "staging"]) == [a]
    assert ids(max_age_days=1) == [a, b, c, d]
    summaries = manager.find_programs(signature_class="RouteIntent")
    assert summaries[0].best_score == 0.8 and summaries[0].optimizer == "GEPA"


def test_find_programs_max_age_uses_saved_at(manager: StorageManager) -> None:
    recent = save(manager, 0)
    old_doc = manager.storage.registry.document_for(
        {"x": 1}, {"best_score_value": 0.5}, {"signature_class": "Old"}, "00000000000000aa"
    )
    aged = old_doc.__class__(
        **{**old_doc.__dict__, "saved_at": datetime.now(UTC) - timedelta(days=10)}
    )
    commit_file(manager.storage.path, program_path(aged.program_id), aged.encode())
    assert [p.program_id for p in manager.find_programs(max_age_days=5)] == [recent]
    assert len(manager.find_programs(max_age_days=11)) == 2


def test_find_programs_rejects_bad_filters(manager: StorageManager) -> None:
    with pytest.raises(InvalidInputError):
        manager.find_programs(min_score=float("nan"))
    with pytest.raises(InvalidInputError):
        manager.find_programs(max_age_days=-1)
    with pytest.raises(InvalidNameError):
        manager.find_programs(tags=["../x"])


def test_get_best_program_ties_go_to_newest(manager: StorageManager) -> None:
    assert manager.get_best_program("ClassifyText") is None
    save(manager, 0, 0.8, signature="ClassifyText")
    second = save(manager, 1, 0.9, signature="ClassifyText")
    third = save(manager, 2, 0.9, signature="ClassifyText")
    save(manager, 3, 0.99, signature="RouteIntent")
    save(manager, 4, None, signature="ClassifyText")
    best = manager.get_best_program("ClassifyText")
    assert best is not None and best.program_id == third
    manager.storage.delete_program(third)
    best = manager.get_best_program("ClassifyText")
    assert best is not None and best.program_id == second
    assert manager.get_best_program("Nothing") is None


def test_tags_added_later_need_no_commit(manager: StorageManager) -> None:
    program_id = save(manager, 0)
    head = git(manager.storage.path, "rev-parse", "main")
    assert manager.tag_program(program_id, "validated", "a_b_tested") == ["validated", "a_b_tested"]
    assert manager.tag_program(program_id, "validated") == []  # already there: immutable
    assert git(manager.storage.path, "rev-parse", "main") == head
    assert manager.get_tags(program_id) == ["a_b_tested", "validated"]
    out = git(manager.storage.path, "cat-file", "-p", f"refs/tags/validated/{program_id}")
    assert "tagger " in out and f"Tag program {program_id} as validated" in out
    assert manager.untag_program(program_id, "validated", "never") == ["validated"]
    assert manager.get_tags(program_id) == ["a_b_tested"]
    assert [p.program_id for p in manager.find_programs(tags=["validated"])] == []
    with pytest.raises(ProgramNotFoundError):
        manager.tag_program("0123456789abcdef", "x")


@pytest.mark.parametrize(
    "name",
    [
        "../escape",
        "a/b",
        "",
        " ",
        "-leading",
        ".hidden",
        "x.lock",
        "a..b",
        "with space",
        "tab\tname",
        "new\nline",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a@{1}",
        "back\\slash",
        "é",
        "x" * 101,
        "refs/heads/main",
    ],
)
def test_hostile_tag_and_checkpoint_names_are_refused(manager: StorageManager, name: str) -> None:
    program_id = save(manager, 0)
    before = registry_state(manager.storage.path)
    with pytest.raises(InvalidNameError):
        manager.tag_program(program_id, name)
    with pytest.raises(InvalidNameError):
        manager.create_checkpoint(result_for(1), name)
    with pytest.raises(InvalidNameError):
        manager.save_optimization_result(result_for(2), tags=[name])
    assert registry_state(manager.storage.path) == before


def test_checkpoints_are_branches_with_history(manager: StorageManager) -> None:
    path = manager.storage.path
    first = manager.create_checkpoint(result_for(0, 0.5), "run_1", {"iteration": 10})
    second = manager.create_checkpoint(result_for(1, 0.6), "run_1", {"iteration": 20})
    third = manager.create_checkpoint(result_for(2, 0.7), "run_1", {"iteration": 30})
    other = manager.create_checkpoint(result_for(3, 0.4), "run_2")
    assert git(path, "for-each-ref", "refs/heads/main") == ""  # checkpoints are not saves
    log = git(path, "log", "--format=%s", "checkpoints/run_1").splitlines()
    assert len(log) == 3 and log[0].startswith("Checkpoint run_1:")
    assert git(path, "rev-parse", "checkpoints/run_1").strip() == third.commit
    assert git(path, "rev-parse", "checkpoints/run_1~2").strip() == first.commit
    files = git(path, "ls-tree", "-r", "--name-only", "checkpoints/run_1").split()
    assert files == ["checkpoint.json", program_path(third.program_id), "progreg.json"]

    restored = manager.restore_checkpoint("run_1")
    assert restored is not None and restored.program_id == third.program_id
    assert restored.state == workload.program_state(2)
    older = manager.restore_checkpoint("run_1~1")
    assert older is not None and older.program_id == second.program_id
    assert manager.restore_checkpoint("run_1~3") is None
    assert manager.restore_checkpoint("missing") is None

    history = manager.checkpoint_history("run_1")
    assert [h.revision for h in history] == ["run_1", "run_1~1", "run_1~2"]
    assert [h.metadata["iteration"] for h in history] == [30, 20, 10]
    assert [h.best_score for h in history] == [0.7, 0.6, 0.5]
    assert [c.name for c in manager.list_checkpoints()] == ["run_1", "run_2"]
    assert manager.list_checkpoints()[1].program_id == other.program_id

    assert manager.delete_checkpoint("run_2") is True
    assert manager.delete_checkpoint("run_2") is False
    assert [c.name for c in manager.list_checkpoints()] == ["run_1"]
    assert manager.storage.list_programs() == []
    assert_fsck_clean(path)


def test_reused_checkpoint_name_restores_the_newest(manager: StorageManager) -> None:
    for score in (0.1, 0.3, 0.2):
        manager.create_checkpoint(result_for(0, score), "iteration_50")
    restored = manager.restore_checkpoint("iteration_50")
    assert restored is not None and restored.best_score == 0.2


def test_save_intermediate_results_records_checkpoints_on_main(registry_path: Path) -> None:
    manager = StorageManager(
        StorageConfig(storage_path=registry_path, save_intermediate_results=True)
    )
    manager.create_checkpoint(result_for(0), "run", {"iteration": 1})
    programs = manager.storage.list_programs()
    assert len(programs) == 1 and programs[0].metadata["checkpoint"] == "run"


def test_cleanup_keeps_best_weighted_and_protected(manager: StorageManager) -> None:
    low_old = save(manager, 0, 0.1)
    protected = save(manager, 1, 0.05, tags=["production"])
    high = save(manager, 2, 0.95)
    mid = save(manager, 3, 0.6)
    low_new = save(manager, 4, 0.2)
    newest = save(manager, 5, 0.5)
    before = registry_state(manager.storage.path)
    plan = manager.plan_cleanup()
    assert registry_state(manager.storage.path) == before  # a plan writes nothing
    assert (plan.remove, plan.protected, plan.remaining) == ([low_old, low_new], [protected], 4)
    result = manager.cleanup_old_programs()
    tip = git(manager.storage.path, "rev-parse", "main").strip()
    assert result == CleanupResult(commit=tip, removed=[low_old, low_new], remaining=4)
    assert result.removed_count == 2
    live = {p.program_id for p in manager.storage.list_programs()}
    assert live == {protected, high, mid, newest}
    assert low_old not in live and low_new not in live
    subject = git(manager.storage.path, "log", "-1", "--format=%s").strip()
    assert subject == "Cleanup: remove 2 programs, keep 4"
    trailers = git(manager.storage.path, "log", "-1", "--format=%(trailers)")
    assert "Progreg-Action: cleanup" in trailers
    nothing = manager.cleanup_old_programs()
    assert nothing == CleanupResult(commit=None, removed=[], remaining=4)
    assert git(manager.storage.path, "rev-parse", "main").strip() == tip  # no empty commit
    assert manager.plan_cleanup().remove == []
    restored = manager.storage.restore_program(low_old)
    assert restored.best_score == 0.1
    assert_fsck_clean(manager.storage.path)


def test_optimization_history_and_compare_end_to_end(manager: StorageManager) -> None:
    a = save(manager, 0, 0.5, "MIPROv2")
    b = save(manager, 1, 0.75, "GEPA")
    history = manager.get_optimization_history()
    assert history.summary.total_programs == 2
    assert history.summary.avg_score == pytest.approx(0.625)
    assert history.optimizer_stats["GEPA"].best_score == 0.75
    comparison = manager.compare_programs(b, a)
    assert comparison.comparison.score_difference == pytest.approx(0.25)
    assert comparison.comparison.better_program == b
    assert comparison.comparison.age_difference_hours >= 0
    assert comparison.diff.added_lines > 0 and comparison.diff.removed_lines > 0
    assert program_path(a) in comparison.diff.unified
    with pytest.raises(ProgramNotFoundError):
        manager.compare_programs(a, "0123456789abcdef")


def test_global_instance(registry_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StorageManager, "_instance", None)
    monkeypatch.setenv("PROGREG_PATH", str(registry_path))
    instance = StorageManager.instance()
    assert instance is StorageManager.instance()
    assert instance.storage.path == registry_path
    signature = workload.signature_of(0)
    saved = StorageManager.save(
        result_for(0), metadata={"version": "2.0", "signature_class": signature}
    )
    assert saved is not None and saved.metadata["version"] == "2.0"
    loaded = StorageManager.load(saved.program_id)
    assert loaded is not None and loaded.state == workload.program_state(0)
    best = StorageManager.best(signature)
    assert best is not None and best.program_id == saved.program_id
    other = StorageManager.configure(StorageConfig(storage_path=registry_path.parent / "other"))
    assert StorageManager.instance() is other
    assert StorageManager.load(saved.program_id) is None


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROGREG_STORAGE_PATH", str(tmp_path / "env"))
    monkeypatch.setenv("PROGREG_AUTO_SAVE", "false")
    monkeypatch.setenv("PROGREG_MAX_STORED_PROGRAMS", "7")
    monkeypatch.setenv("PROGREG_PROTECTED_TAGS", "production, pinned")
    config = StorageConfig()
    assert config.storage_path == tmp_path / "env"
    assert config.auto_save is False
    assert config.max_stored_programs == 7
    assert config.protected_tags == ["production", "pinned"]
    assert StorageConfig(max_stored_programs=3).max_stored_programs == 3
    monkeypatch.setenv("PROGREG_MAX_STORED_PROGRAMS", "-1")
    with pytest.raises(InvalidInputError):
        StorageConfig()
    config.max_stored_programs = 5
    with pytest.raises(InvalidInputError):
        config.max_stored_programs = -5
    assert config.max_stored_programs == 5


def test_storage_manager_accepts_existing_storage(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    manager = StorageManager(storage=storage)
    assert manager.storage is storage


def test_empty_registry_answers_every_query(manager: StorageManager) -> None:
    assert manager.find_programs() == []
    assert manager.find_programs(tags=["production"], min_score=0.5) == []
    assert manager.get_best_program("ClassifyText") is None
    history = manager.get_optimization_history()
    assert history.summary.total_programs == 0
    assert history.summary.avg_score is None
    assert history.optimizer_stats == {}
    assert history.trends.improvement_percentage is None
    assert manager.cleanup_old_programs().removed_count == 0
    assert manager.list_checkpoints() == []
    assert manager.checkpoint_history("run") == []
    assert manager.restore_checkpoint("run") is None
    assert manager.delete_checkpoint("run") is False
    assert manager.get_tags("0123456789abcdef") == []


def test_programs_removed_or_moved_by_hand_are_not_found(manager: StorageManager) -> None:
    kept = save(manager, 0, 0.9, signature="ClassifyText")
    removed = save(manager, 1, 0.95, signature="ClassifyText")
    moved = save(manager, 2, 0.99, signature="ClassifyText")
    path = manager.storage.path
    commit_file(path, program_path(removed), None, "Remove a program by hand")
    blob = git(path, "show", f"main:{program_path(moved)}").encode()
    commit_file(path, f"archive/{moved}.json", blob, "Move a program out of programs/")
    commit_file(path, program_path(moved), None, "Remove the moved program")
    assert [p.program_id for p in manager.find_programs()] == [kept]
    best = manager.get_best_program("ClassifyText")
    assert best is not None
    assert best.program_id == kept
    assert manager.get_optimization_history().summary.total_programs == 1
    assert manager.storage.load_program(moved) is None
    restored = manager.storage.restore_program(removed)
    assert restored.best_score == 0.95
    best = manager.get_best_program("ClassifyText")
    assert best is not None
    assert best.program_id == removed


def test_invalid_configuration_and_results_raise_progreg_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InvalidInputError, match="tag"):
        StorageConfig(protected_tags=["../escape"])
    monkeypatch.setenv("PROGREG_MAX_STORED_PROGRAMS", "many")
    with pytest.raises(InvalidInputError, match="PROGREG_MAX_STORED_PROGRAMS"):
        StorageConfig()
    with pytest.raises(InvalidInputError, match="best_score_value"):
        OptimizationResult(best_score_value="high")
    assert OptimizationResult(history=[{"trial": 1}]).history == [{"trial": 1}]


def test_intermediate_results_share_the_checkpoint_id_and_respect_auto_save(
    registry_path: Path,
) -> None:
    config = StorageConfig(storage_path=registry_path, save_intermediate_results=True)
    manager = StorageManager(config)
    saved = manager.create_checkpoint(result_for(0), "run")
    assert [p.program_id for p in manager.storage.list_programs()] == [saved.program_id]
    manager.config.auto_save = False
    manager.create_checkpoint(result_for(1), "run")
    assert len(manager.storage.list_programs()) == 1
    assert len(manager.checkpoint_history("run")) == 2


def test_tag_events_are_emitted_for_save_time_tags_only_when_created(
    manager: StorageManager,
) -> None:
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    try:
        program_id = save(manager, 0, tags=["production"])
        manager.tag_program(program_id, "production")
        manager.untag_program(program_id, "absent")
    finally:
        unsubscribe()
    tag_events = [(e.name, e.fields["tags"]) for e in seen if e.name.startswith("progreg.tag")]
    assert tag_events == [("progreg.tag.add", ["production"])]


@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "Path"])
def test_manager_takes_a_registry_path(tmp_path: Path, as_path: Any) -> None:
    """``StorageManager("path")`` and ``StorageManager(storage_path=...)`` open that registry."""
    by_position = StorageManager(as_path(tmp_path / "registry"))
    saved = by_position.save_optimization_result(result_for(0))
    assert saved is not None
    by_name = StorageManager(storage_path=as_path(tmp_path / "registry"))
    assert by_name.storage.path == tmp_path / "registry"
    assert by_name.config.storage_path == tmp_path / "registry"
    loaded = by_name.storage.load_program(saved.program_id)
    assert loaded is not None and loaded.state == workload.program_state(0)
    assert repr(by_name) == f"StorageManager({str(tmp_path / 'registry')!r})"


def test_manager_refuses_an_ambiguous_or_wrong_configuration(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="once"):
        StorageManager(tmp_path / "a", storage_path=tmp_path / "b")
    with pytest.raises(InvalidInputError, match="not both"):
        StorageManager(StorageConfig(storage_path=tmp_path / "a"), storage_path=tmp_path / "b")
    with pytest.raises(InvalidInputError, match="not int"):
        StorageManager(7)  # type: ignore[arg-type]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("variable", ["PROGREG_PATH", "PROGREG_STORAGE_PATH"])
def test_every_entry_point_reads_the_registry_from_one_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """PROGREG_PATH (or its alias PROGREG_STORAGE_PATH) names the registry everywhere."""
    monkeypatch.setenv(variable, str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    assert ProgramStorage().path == tmp_path / "env"
    assert StorageManager().storage.path == tmp_path / "env"
    assert StorageConfig().storage_path == tmp_path / "env"
    saved = ProgramStorage().save_program(workload.program_state(1), None)
    listed = CliRunner().invoke(cli, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["program_id"] for row in json.loads(listed.output)] == [saved.program_id]
    assert not (tmp_path / "dspy_storage").exists()


def test_progreg_path_wins_over_its_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGREG_PATH", str(tmp_path / "main"))
    monkeypatch.setenv("PROGREG_STORAGE_PATH", str(tmp_path / "alias"))
    assert StorageManager().storage.path == tmp_path / "main"
    assert ProgramStorage().path == tmp_path / "main"


def test_a_loaded_version_is_saved_again_with_its_result_and_metadata(
    manager: StorageManager, registry_path: Path
) -> None:
    """Re-saving what load_program returned is one call that keeps result, metadata and id."""
    first = manager.storage.save_program(
        workload.program_state(2),
        workload.optimization_result(2),
        {"signature_class": "RouteIntent", "team": "support"},
    )
    loaded = manager.storage.load_program(first.program_id)
    assert loaded is not None
    again = manager.storage.save_program(loaded)  # the same content: no new commit
    assert again.program_id == first.program_id and again.commit == first.commit
    assert again.unchanged
    forced = manager.storage.save_program(loaded, force=True)
    assert forced.commit != first.commit and not forced.unchanged
    assert again.state == workload.program_state(2)
    assert again.optimization_result == first.optimization_result
    assert again.metadata["team"] == "support" and again.signature_class == "RouteIntent"
    # Arguments given win over the record's own.
    rescored = manager.storage.save_program(loaded, {"best_score_value": 0.5})
    assert rescored.best_score == 0.5 and rescored.metadata["team"] == "support"
    through_manager = manager.save_optimization_result(loaded, tags=["candidate"])
    assert through_manager is not None
    assert through_manager.program_id == first.program_id
    assert through_manager.best_score == first.best_score
    assert through_manager.metadata["team"] == "support"
    assert manager.find_programs(tags=["candidate"])[0].program_id == first.program_id
    subjects = git(registry_path, "log", "--format=%s", "main").splitlines()
    assert sum(first.program_id in subject for subject in subjects) == 4
    assert_fsck_clean(registry_path)


def test_a_restored_checkpoint_is_saved_as_its_program(manager: StorageManager) -> None:
    checkpoint = manager.create_checkpoint(result_for(4), "run-a")
    restored = manager.restore_checkpoint("run-a")
    assert restored is not None
    saved = manager.storage.save_program(restored)
    assert saved.program_id == checkpoint.program_id
    assert saved.state == workload.program_state(4)
    assert saved.best_score == result_for(4).best_score_value
    assert saved.optimizer == workload.optimizer_of(4)
