"""Batch saves: ProgramStorage.save_programs writes many programs as one commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygit2
import pytest

from progreg import (
    Event,
    InvalidInputError,
    OptimizationResult,
    ProgramStorage,
    StorageConfig,
    StorageManager,
    subscribe,
)
from progreg.core.ids import program_path
from progreg.errors import ConflictError, InvalidProgramIdError, NotJSONError, ProgramTooLargeError
from progreg.git import parse_trailers
from progreg.registry.messages import MAX_LISTED_IDS
from progreg.registry.validation import validate_commit
from support import workload
from support.gitcli import assert_fsck_clean, git, registry_state


def item(i: int, **extra: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    meta = {"signature_class": workload.signature_of(i), **extra}
    return workload.program_state(i), workload.optimization_result(i), meta


def commits(registry: Path) -> list[str]:
    return git(registry, "rev-list", "refs/heads/main").split()


def test_one_commit_for_many_programs(storage: ProgramStorage, registry_path: Path) -> None:
    storage.save_program(*item(0))
    before = len(commits(registry_path))
    saved = storage.save_programs(item(i) for i in range(1, 121))
    assert len(saved) == 120
    assert len(commits(registry_path)) == before + 1
    tip = git(registry_path, "rev-parse", "refs/heads/main").strip()
    assert {s.commit for s in saved} == {tip}
    assert len({s.program_id for s in saved}) == 120
    # the commit writes exactly those files, and git sees every one of them
    changed = git(registry_path, "diff-tree", "-r", "--name-only", "--no-commit-id", tip).split()
    assert sorted(changed) == sorted(program_path(s.program_id) for s in saved)
    for i, s in enumerate(saved, start=1):
        loaded = storage.load_program(s.program_id)
        assert loaded is not None
        assert loaded.state == workload.program_state(i)
        assert loaded.commit == tip
        assert loaded.metadata["signature_class"] == workload.signature_of(i)
    assert_fsck_clean(registry_path)


def test_message_subject_body_and_trailers(storage: ProgramStorage, registry_path: Path) -> None:
    count = MAX_LISTED_IDS + 5
    saved = storage.save_programs(item(i) for i in range(count))
    message = git(registry_path, "log", "-1", "--format=%B", "refs/heads/main")
    subject = message.splitlines()[0]
    assert subject.startswith(f"Save {count} programs: ")
    kinds = {workload.signature_of(i) for i in range(count)}
    for kind in kinds:
        n = sum(workload.signature_of(i) == kind for i in range(count))
        assert f"{kind} x{n}" in subject
    assert saved[0].program_id in message
    assert saved[MAX_LISTED_IDS - 1].program_id in message
    assert saved[-1].program_id not in message  # the body is capped
    assert "... and 5 more" in message
    trailers = git(registry_path, "log", "-1", "--format=%(trailers)", "refs/heads/main")
    assert trailers.split() == ["Saved-Count:", str(count), "Progreg-Action:", "save-batch"]


def test_first_save_of_a_registry_can_be_a_batch(
    storage: ProgramStorage, registry_path: Path
) -> None:
    saved = storage.save_programs([item(0), item(1)])
    assert len(commits(registry_path)) == 1
    assert git(registry_path, "show", "refs/heads/main:progreg.json").strip()
    reopened = ProgramStorage(registry_path)
    assert sorted(reopened.registry.records()) == sorted(s.program_id for s in saved)
    assert_fsck_clean(registry_path)


def test_queries_after_a_batch_use_the_tree_diff(
    storage: ProgramStorage, registry_path: Path
) -> None:
    manager = StorageManager(storage=storage)
    first = storage.save_program(*item(0))
    storage.registry.records()  # the index is warm before the batch: it must extend through it
    batch = storage.save_programs(item(i) for i in range(1, 11))
    last = storage.save_program(*item(11))
    for view in (storage, ProgramStorage(registry_path)):  # warm index, and a fresh one
        records = view.registry.records()
        assert len(records) == 12
        for i, s in enumerate(batch, start=1):
            record = records[s.program_id]
            assert record.commit == s.commit
            assert record.signature_class == workload.signature_of(i)
            assert record.optimizer == workload.optimization_result(i)["metadata"]["optimizer"]
            assert record.best_score == workload.optimization_result(i)["best_score_value"]
            assert record.saved_at == s.saved_at
        positions = {
            record.position
            for pid, record in records.items()
            if pid in {s.program_id for s in batch}
        }
        assert len(positions) == 1
        assert records[first.program_id].position < positions.pop()
        history = view.get_history()
        ids = [p.program_id for p in history.programs]
        assert ids[0] == first.program_id and ids[-1] == last.program_id
        assert set(ids[1:-1]) == {s.program_id for s in batch}
        assert history.summary.total_programs == 12
    signature = workload.signature_of(3)
    found = manager.find_programs(signature_class=signature)
    expected = {
        s.program_id for s in (first, *batch, last) if s.metadata["signature_class"] == signature
    }
    assert {p.program_id for p in found} == expected
    best = manager.get_best_program(signature)
    assert best is not None
    scores = {
        s.program_id: s.optimization_result["best_score_value"]
        for s in (first, *batch, last)
        if s.program_id in expected
    }
    assert scores[best.program_id] == max(scores.values())


def test_an_invalid_item_writes_nothing(storage: ProgramStorage, registry_path: Path) -> None:
    storage.save_program(*item(0))
    before = registry_state(registry_path)
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    try:
        bad_items: list[list[Any]] = [
            [item(1), (workload.program_state(2), None, {"x": float("nan")})],
            [item(1), (workload.program_state(2), None, None, "not-an-id")],
            [item(1), "not an item"],
            [item(1), {"program": {}, "metadta": {}}],
        ]
        errors = (NotJSONError, InvalidProgramIdError, InvalidInputError, InvalidInputError)
        for items, error in zip(bad_items, errors, strict=True):
            with pytest.raises(error):
                storage.save_programs(items)
            assert registry_state(registry_path) == before
        small = ProgramStorage(registry_path, max_program_bytes=100)
        with pytest.raises(ProgramTooLargeError):
            small.save_programs([({"a": 1}, None, None), item(3)])
        assert registry_state(registry_path) == before
    finally:
        unsubscribe()
    errors_seen = [e for e in seen if e.name == "progreg.storage.save_batch_error"]
    assert len(errors_seen) == 5
    assert all(e.fields["count"] == 2 for e in errors_seen)


def test_duplicate_ids_in_one_batch_are_refused(
    storage: ProgramStorage, registry_path: Path
) -> None:
    storage.save_program(*item(0))
    before = registry_state(registry_path)
    program_id = "0123456789abcdef"
    with pytest.raises(InvalidInputError, match="more than once"):
        storage.save_programs(
            [
                (*item(1), program_id),
                {"program": workload.program_state(2), "program_id": program_id},
            ]
        )
    assert registry_state(registry_path) == before


def test_dicts_explicit_ids_new_versions_and_tags(
    storage: ProgramStorage, registry_path: Path
) -> None:
    old = storage.save_program(*item(0))
    saved = storage.save_programs(
        [
            {
                "program": workload.program_state(5),
                "metadata": {"v": 2},
                "program_id": old.program_id,
            },
            {"program": workload.program_state(6), "optimization_result": None},
            (*item(7), "00000000000000aa"),
        ],
        tags=["import", "nightly"],
    )
    assert saved[0].program_id == old.program_id
    assert saved[2].program_id == "00000000000000aa"
    loaded = storage.load_program(old.program_id)
    assert loaded is not None and loaded.metadata["v"] == 2
    # the old version stays in history
    assert git(registry_path, "show", f"{old.commit}:{program_path(old.program_id)}")
    manager = StorageManager(storage=storage)
    for s in saved:
        assert manager.get_tags(s.program_id) == ["import", "nightly"]
        tag = git(registry_path, "rev-parse", f"import/{s.program_id}^{{commit}}").strip()
        assert tag == s.commit
    assert manager.get_tags(old.program_id) == ["import", "nightly"]
    assert storage.save_programs([]) == []
    assert_fsck_clean(registry_path)


def test_events(storage: ProgramStorage) -> None:
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    try:
        saved = storage.save_programs(item(i) for i in range(4))
    finally:
        unsubscribe()
    names = [e.name for e in seen if e.name.startswith("progreg.storage.save_batch")]
    assert names == ["progreg.storage.save_batch_start", "progreg.storage.save_batch_complete"]
    complete = next(e for e in seen if e.name == "progreg.storage.save_batch_complete")
    assert complete.fields["count"] == 4
    assert complete.fields["commit"] == saved[0].commit
    assert complete.fields["size_bytes"] > 4 * 1000
    assert complete.fields["duration_ms"] >= 0


def test_validation_accepts_a_batch_and_refuses_lying_trailers(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    storage.save_program(*item(0))
    saved = storage.save_programs(item(i) for i in range(1, 6))
    repo = storage.registry.git.repo
    commit = repo[saved[0].commit]
    assert isinstance(commit, pygit2.Commit)
    assert validate_commit(repo, commit) == []
    fresh = ProgramStorage(tmp_path / "fresh")  # a root commit is checked by its whole tree
    root = fresh.registry.git.repo[fresh.save_programs([item(7), item(8)])[0].commit]
    assert isinstance(root, pygit2.Commit) and not root.parents
    assert validate_commit(fresh.registry.git.repo, root) == []

    def forged(message: str) -> pygit2.Commit:
        oid = repo.create_commit(
            None, commit.author, commit.committer, message, commit.tree_id, commit.parent_ids
        )
        made = repo[oid]
        assert isinstance(made, pygit2.Commit)
        return made

    lying = forged(commit.message.replace("Saved-Count: 5", "Saved-Count: 6"))
    problems = validate_commit(repo, lying)
    assert len(problems) == 1
    assert "Saved-Count 6" in problems[0].message and "writes 5 program(s)" in problems[0].message
    named = forged(
        commit.message.replace(
            "Saved-Count: 5\n", f"Saved-Count: 5\nProgram-Id: {saved[0].program_id}\n"
        )
    )
    assert parse_trailers(named.message)["Program-Id"] == saved[0].program_id
    assert len(validate_commit(repo, named)) == 1
    # a single-program save claiming to be a batch, and a batch claiming to be a save
    single = repo[storage.save_program(*item(9)).commit]
    assert isinstance(single, pygit2.Commit)
    as_batch = repo.create_commit(
        None,
        single.author,
        single.committer,
        "Save 1 programs\n\nSaved-Count: 2\nProgreg-Action: save-batch\n",
        single.tree_id,
        single.parent_ids,
    )
    made = repo[as_batch]
    assert isinstance(made, pygit2.Commit)
    assert len(validate_commit(repo, made)) == 1
    as_save = forged(commit.message.replace("Progreg-Action: save-batch", "Progreg-Action: save"))
    assert validate_commit(repo, as_save)  # a save must write exactly one program


def test_manager_saves_results_in_one_commit(registry_path: Path) -> None:
    manager = StorageManager(StorageConfig(storage_path=registry_path, auto_save=True))
    results = [
        OptimizationResult(
            optimized_program=workload.program_state(i),
            best_score_value=workload.optimization_result(i)["best_score_value"],
            metadata={"optimizer": workload.optimizer_of(i)},
        )
        for i in range(5)
    ]
    saved = manager.save_optimization_results(
        [*results, {"best_score_value": 0.1}], tags=["sweep"], metadata={"run": "r1"}
    )
    assert len(saved) == 5
    assert len(commits(registry_path)) == 1
    assert all(s.metadata["run"] == "r1" and s.metadata["tags"] == ["sweep"] for s in saved)
    assert {p.program_id for p in manager.find_programs(tags=["sweep"])} == {
        s.program_id for s in saved
    }
    manager.config.auto_save = False
    assert manager.save_optimization_results(results) == []
    assert len(commits(registry_path)) == 1


def test_a_generated_id_already_taken_is_refused(
    storage: ProgramStorage, registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    existing = storage.save_program(*item(0))
    fresh = iter(["00000000000000f1", existing.program_id])
    monkeypatch.setattr("progreg.registry.store.new_program_id", lambda: next(fresh))
    refs = git(registry_path, "for-each-ref")
    with pytest.raises(ConflictError, match=existing.program_id):
        storage.save_programs([item(1), item(2)])
    assert git(registry_path, "for-each-ref") == refs
    loaded = storage.load_program(existing.program_id)
    assert loaded is not None and loaded.state == workload.program_state(0)
