"""Content identity: re-saving what is already live makes no commit; force=True makes one.

Counts of commits, refs and files are read with the ``git`` command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from progreg import (
    Event,
    InvalidInputError,
    ProgramStorage,
    StorageConfig,
    StorageManager,
    subscribe,
)
from progreg.core.ids import program_path
from support.gitcli import assert_fsck_clean, commit_file, git, registry_state

RESULT = {"best_score_name": "accuracy", "best_score_value": 0.8}
STATE = {"instructions": "Answer briefly.", "demos": [{"q": "2 + 2?", "a": "4"}]}


def commits(registry: Path) -> int:
    return int(git(registry, "rev-list", "--count", "main").strip())


def first_save(storage: ProgramStorage) -> Any:
    return storage.save_program(STATE, RESULT, {"team": "search"}, "00000000000000a1")


def test_an_identical_resave_makes_no_commit(storage: ProgramStorage, registry_path: Path) -> None:
    saved = first_save(storage)
    count, before = commits(registry_path), registry_state(registry_path)
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    try:
        again = storage.save_program({**STATE}, dict(RESULT), {"team": "search"}, saved.program_id)
    finally:
        unsubscribe()
    assert again.unchanged and not saved.unchanged
    assert again.commit == saved.commit and again.saved_at == saved.saved_at
    assert again.state == STATE and again.metadata == saved.metadata
    assert commits(registry_path) == count
    assert registry_state(registry_path) == before
    complete = [e for e in seen if e.name == "progreg.storage.save_complete"]
    assert [(e.fields["commit"], e.fields["unchanged"]) for e in complete] == [(saved.commit, True)]
    assert [e.name for e in seen if e.name.startswith("progreg.storage.save")] == [
        "progreg.storage.save_start",
        "progreg.storage.save_complete",
    ]
    # a loaded record saved back as it is: the same
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert storage.save_program(loaded).unchanged
    assert commits(registry_path) == count


@pytest.mark.parametrize(
    "change",
    [
        {"result": {**RESULT, "best_score_value": 0.81}},
        {"metadata": {"team": "ranking"}},
        {"state": {**STATE, "instructions": "Answer in one word."}},
    ],
    ids=["score", "metadata", "state"],
)
def test_any_change_of_content_is_a_new_commit(
    storage: ProgramStorage, registry_path: Path, change: dict[str, Any]
) -> None:
    saved = first_save(storage)
    count = commits(registry_path)
    again = storage.save_program(
        change.get("state", STATE),
        change.get("result", RESULT),
        change.get("metadata", {"team": "search"}),
        saved.program_id,
    )
    assert not again.unchanged and again.commit != saved.commit
    assert commits(registry_path) == count + 1


def test_a_new_ancestor_is_a_change(storage: ProgramStorage, registry_path: Path) -> None:
    saved = first_save(storage)
    other = storage.save_program({"x": 1})
    again = storage.save_program(
        STATE, RESULT, {"team": "search"}, saved.program_id, derived_from=other
    )
    assert not again.unchanged
    # and saving that again, without naming the ancestor, keeps it: unchanged
    same = storage.save_program(STATE, RESULT, {"team": "search"}, saved.program_id)
    assert same.unchanged and same.commit == again.commit


def test_force_commits_identical_content(storage: ProgramStorage, registry_path: Path) -> None:
    saved = first_save(storage)
    count = commits(registry_path)
    forced = storage.save_program(STATE, RESULT, {"team": "search"}, saved.program_id, force=True)
    assert not forced.unchanged and forced.commit != saved.commit
    assert commits(registry_path) == count + 1
    with pytest.raises(InvalidInputError, match="force"):
        storage.save_program(STATE, RESULT, None, saved.program_id, force="yes")  # type: ignore[arg-type]
    assert commits(registry_path) == count + 1


def test_tags_given_with_an_unchanged_save_are_applied(
    storage: ProgramStorage, registry_path: Path
) -> None:
    saved = first_save(storage)
    again = storage.save_program(
        STATE, RESULT, {"team": "search"}, saved.program_id, tags=["production"]
    )
    assert again.unchanged
    assert storage.tags_of(saved.program_id) == ["production"]
    target = git(registry_path, "rev-parse", f"production/{saved.program_id}^{{commit}}").strip()
    assert target == saved.commit
    assert_fsck_clean(registry_path)


def test_a_damaged_or_hand_edited_live_version_is_replaced(
    storage: ProgramStorage, registry_path: Path
) -> None:
    saved = first_save(storage)
    commit_file(registry_path, program_path(saved.program_id), b"{not json", "Break it")
    count = commits(registry_path)
    again = storage.save_program(STATE, RESULT, {"team": "search"}, saved.program_id)
    assert not again.unchanged and commits(registry_path) == count + 1


def test_a_batch_skips_unchanged_items(storage: ProgramStorage, registry_path: Path) -> None:
    one = storage.save_program({"n": 1}, None, None, "00000000000000b1")
    two = storage.save_program({"n": 2}, None, None, "00000000000000b2")
    count = commits(registry_path)
    saved = storage.save_programs(
        [
            ({"n": 1}, None, None, one.program_id),  # unchanged
            ({"n": 22}, None, None, two.program_id),  # changed
            ({"n": 3}, None, None),  # new
        ],
        tags=["batch"],
    )
    assert [s.unchanged for s in saved] == [True, False, False]
    assert saved[0].commit == one.commit and saved[1].commit == saved[2].commit
    assert commits(registry_path) == count + 1
    message = git(registry_path, "log", "-1", "--format=%B", "main")
    assert "Saved-Count: 2" in message and one.program_id not in message
    assert storage.tags_of(one.program_id) == ["batch"]  # tags applied to the unchanged one
    # all unchanged: no commit at all
    again = storage.save_programs([({"n": 1}, None, None, one.program_id)])
    assert again[0].unchanged and commits(registry_path) == count + 1
    # force: every item written
    forced = storage.save_programs([({"n": 1}, None, None, one.program_id)], force=True)
    assert not forced[0].unchanged and commits(registry_path) == count + 2
    assert_fsck_clean(registry_path)


def test_provenance_alone_is_no_change(storage: ProgramStorage, registry_path: Path) -> None:
    """A live version written by another progreg or Python version is still the same content."""
    saved = first_save(storage)
    path = program_path(saved.program_id)
    text = git(registry_path, "show", f"main:{path}")
    edited = text.replace('"python_version": "', '"python_version": "2.7-').encode()
    assert edited != text.encode()
    commit_file(registry_path, path, edited, "Another Python wrote it")
    count = commits(registry_path)
    assert storage.save_program(STATE, RESULT, {"team": "search"}, saved.program_id).unchanged
    assert commits(registry_path) == count


def test_a_diff_of_the_same_content_shows_no_bookkeeping_change(
    storage: ProgramStorage,
) -> None:
    """Two programs (or forced versions) that differ only in id, saved_at and provenance."""
    manager = StorageManager(StorageConfig(storage_path=str(storage.path)))
    one = storage.save_program(STATE, RESULT, {"team": "search"})
    two = storage.save_program(STATE, RESULT, {"team": "search"})
    same = manager.compare_programs(one.program_id, two.program_id)
    assert same.diff.unified and same.diff.bookkeeping_only
    other = storage.save_program({**STATE, "instructions": "Other."}, RESULT, {"team": "search"})
    changed = manager.compare_programs(one.program_id, other.program_id)
    assert changed.diff.unified and not changed.diff.bookkeeping_only
