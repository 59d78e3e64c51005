"""Queries served from the log index and the blob-keyed summary cache, checked against Git.

The oracle reads the registry with the git command line only (``ls-tree``,
``cat-file``, ``log --first-parent``) and builds what ``list_programs``,
``get_history`` and ``summaries`` must return. Every scenario is checked in
the instance that lived through it (incremental updates), in a fresh
instance (the persisted cache) and in an index built from Git alone.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from progreg import (
    CorruptProgramError,
    ProgramNotFoundError,
    ProgramStorage,
    ProgramSummary,
    StorageManager,
)
from progreg.core.summaries import SummaryCache, trusted_summary
from progreg.registry import history, logcache
from progreg.registry.history import LogIndex
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, commit_file, git

MAIN = "refs/heads/main"


@pytest.fixture(autouse=True)
def _persist_every_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the cache whenever a query derived something, small registries included."""
    monkeypatch.setattr(LogIndex, "persist_after", 1)


# -- the oracle: the registry as the git command line shows it ------------------------------


def git_documents(registry: Path) -> dict[str, dict[str, Any]]:
    """Every program file on main, parsed: ``{program_id: document}``."""
    listing = git(registry, "ls-tree", "-r", "main", "--", "programs/")
    documents = {}
    for line in listing.splitlines():
        meta, path = line.split("\t")
        _, kind, blob = meta.split()
        assert kind == "blob"
        program_id = path.rsplit("/", 1)[1].removesuffix(".json")
        documents[program_id] = json.loads(git(registry, "cat-file", "blob", blob))
    return documents


def expected_summary(doc: dict[str, Any]) -> ProgramSummary:
    result = doc["optimization_result"]
    score = result.get("best_score_value")
    finite = isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score)
    optimizer = (result.get("metadata") or {}).get("optimizer")
    name = result.get("best_score_name")
    signature = doc["metadata"].get("signature_class")
    return ProgramSummary(
        program_id=doc["program_id"],
        saved_at=datetime.fromisoformat(doc["saved_at"]),
        best_score=float(score) if finite else None,
        score_name=name if isinstance(name, str) else None,
        optimizer=optimizer if isinstance(optimizer, str) else None,
        signature_class=signature if isinstance(signature, str) else None,
        metadata=doc["metadata"],
    )


def last_changes(registry: Path) -> dict[str, int]:
    """The index, in main's first-parent log (oldest 0), of the last commit touching each path."""
    log = git(
        registry,
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--reverse",
        "--name-only",
        "--format=%x00%H",
        "main",
    )
    positions: dict[str, int] = {}
    for position, chunk in enumerate(log.split("\x00")[1:]):
        for path in chunk.splitlines()[1:]:
            if path.startswith("programs/"):
                positions[path] = position
    return positions


def expected_listing(registry: Path) -> list[ProgramSummary]:
    summaries = [expected_summary(doc) for doc in git_documents(registry).values()]
    return sorted(summaries, key=lambda s: (s.saved_at, s.program_id))


def expected_history(registry: Path) -> list[ProgramSummary]:
    positions = last_changes(registry)

    def position(summary: ProgramSummary) -> int:
        pid = summary.program_id
        return positions[f"programs/{pid[:2]}/{pid[2:4]}/{pid}.json"]

    listing = expected_listing(registry)
    return sorted(listing, key=lambda s: (position(s), s.saved_at, s.program_id))


def assert_queries_match_git(storage: ProgramStorage) -> None:
    """list_programs, get_history and summaries of ``storage``, a fresh instance and a rebuild."""
    listing = expected_listing(storage.path)
    history = expected_history(storage.path)
    rebuilt = ProgramStorage(storage.path)
    rebuilt.registry._log = LogIndex(rebuilt.registry.git, MAIN, cache=None)
    for instance in (storage, ProgramStorage(storage.path), rebuilt):
        assert instance.list_programs() == listing
        assert [s.model_dump() for s in instance.list_programs()] == [
            s.model_dump() for s in listing
        ]
        got = instance.get_history()
        assert got.programs == history
        assert got.summary.total_programs == len(listing)
        ids = [s.program_id for s in reversed(listing)]
        assert instance.registry.summaries([*ids, "0123456789abcdef"]) == listing[::-1]
        assert instance.registry.records() == rebuilt.registry.records()
        for summary in listing[:3]:
            loaded = instance.load_program(summary.program_id)
            assert loaded is not None
            assert loaded.metadata == summary.metadata
            assert loaded.commit == rebuilt.registry._log.last_change(summary.program_id)


# -- scenarios ----------------------------------------------------------------------------


def result(score: float | None, optimizer: str = "MIPROv2") -> dict[str, Any]:
    return {
        "best_score_name": "accuracy",
        "best_score_value": score,
        "metadata": {"optimizer": optimizer},
    }


def save(storage: ProgramStorage, i: int, program_id: str | None = None) -> str:
    saved = storage.save_program(
        {"instructions": f"program {i}"},
        result(round(i / 7 % 1, 4), "MIPROv2" if i % 2 else "GEPA"),
        metadata={"signature_class": "Classify" if i % 3 else "Summarize", "run": i % 4},
        program_id=program_id,
    )
    return saved.program_id


def hand_document(storage: ProgramStorage, program_id: str, i: int) -> bytes:
    """The bytes of a valid program document, to commit with plain git."""
    doc = storage.registry.document_for({"by": "hand", "i": i}, result(0.5), {"n": i}, program_id)
    return doc.encode()


def path_of(program_id: str) -> str:
    return f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


def merge_from_side(registry: Path, storage: ProgramStorage, i: int) -> None:
    """A merge commit on main (by git plumbing) whose second parent adds a program."""
    side_id = f"{i:04x}" + "ab" * 6
    tip = git(registry, "rev-parse", "main").strip()
    commit_file(registry, path_of(side_id), hand_document(storage, side_id, i), "Side commit")
    side = git(registry, "rev-parse", "main").strip()
    git(registry, "update-ref", MAIN, tip, side)
    tree = git(registry, "rev-parse", f"{side}^{{tree}}").strip()
    merge = git(
        registry, "commit-tree", tree, "-p", tip, "-p", side, "-m", "Merge side", env=CLI_IDENTITY
    ).strip()
    git(registry, "update-ref", MAIN, merge, tip)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_queries_follow_every_kind_of_change(registry_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    storage = ProgramStorage(registry_path)
    ids = [save(storage, i) for i in range(4)]
    assert_queries_match_git(storage)
    for step in range(14):
        live = [s.program_id for s in storage.list_programs()]
        action = rng.choice(
            ["save", "edit", "delete", "restore", "batch", "hand", "unlink", "merge", "rewind"]
        )
        if action == "save":
            ids.append(save(storage, 100 + step))
        elif action == "edit" and live:
            save(storage, 200 + step, program_id=rng.choice(live))
        elif action == "delete" and live:
            storage.delete_program(rng.choice(live))
        elif action == "restore":
            gone = [i for i in ids if i not in live]
            if gone:  # a program saved only on a rewound part of main is gone for good
                with contextlib.suppress(ProgramNotFoundError):
                    storage.restore_program(rng.choice(gone))
        elif action == "batch":
            items = [({"i": 300 + step * 10 + k}, result(0.1 * k), {"k": k}) for k in range(3)]
            ids += [s.program_id for s in storage.save_programs(items)]
        elif action == "hand":
            program_id = f"{step:04x}" + "cd" * 6
            commit_file(
                registry_path, path_of(program_id), hand_document(storage, program_id, step)
            )
            ids.append(program_id)
        elif action == "unlink" and live:
            commit_file(registry_path, path_of(rng.choice(live)), None, "Remove by hand")
        elif action == "merge":
            merge_from_side(registry_path, storage, step)
        elif action == "rewind":
            older = git(registry_path, "rev-parse", "main~2").strip()
            git(registry_path, "update-ref", MAIN, older)
            ids.append(save(storage, 400 + step))
        assert_queries_match_git(storage)
    assert_fsck_clean(registry_path)


def test_a_replaced_history_keeps_summaries_by_content(registry_path: Path, tmp_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    kept = [save(storage, i) for i in range(3)]
    storage.list_programs()
    other = ProgramStorage(tmp_path / "other")
    for i in range(2):
        save(other, 50 + i)
    git(registry_path, "fetch", "-q", str(other.path), f"+{MAIN}:refs/theirs")
    git(registry_path, "update-ref", MAIN, "refs/theirs")
    git(registry_path, "update-ref", "-d", "refs/theirs")
    assert_queries_match_git(storage)
    assert not {s.program_id for s in storage.list_programs()} & set(kept)


def test_a_damaged_program_file_is_an_error_not_a_gap(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    ids = [save(storage, i) for i in range(3)]
    before = {s.program_id: s for s in storage.list_programs()}  # cached and persisted
    commit_file(registry_path, path_of(ids[1]), b"{not json\n")
    for instance in (storage, ProgramStorage(registry_path)):
        with pytest.raises(CorruptProgramError, match=ids[1]):
            instance.list_programs()
        with pytest.raises(CorruptProgramError):
            instance.get_history()
        with pytest.raises(CorruptProgramError):
            instance.registry.summaries([ids[1]])
        with pytest.raises(CorruptProgramError):
            instance.load_program(ids[1])
        assert instance.registry.summaries([ids[0]]) == [before[ids[0]]]
        record = instance.registry.records()[ids[1]]  # from the commit: no trailers, no file
        assert record.best_score is None
    with pytest.raises(CorruptProgramError):
        StorageManager(storage=ProgramStorage(registry_path)).find_programs()


def test_a_valid_file_at_another_programs_path_is_refused(registry_path: Path) -> None:
    """Summaries are keyed by blob: the same bytes under another id must not pass for it."""
    storage = ProgramStorage(registry_path)
    first = save(storage, 1)
    before = storage.list_programs()
    other = "fedcba9876543210"
    data = git(registry_path, "cat-file", "blob", f"main:{path_of(first)}").encode()
    commit_file(registry_path, path_of(other), data, "Copy by hand")
    for instance in (storage, ProgramStorage(registry_path)):
        with pytest.raises(CorruptProgramError, match="misplaced"):
            instance.list_programs()
        with pytest.raises(CorruptProgramError, match="misplaced"):
            instance.registry.summaries([other])
        assert instance.registry.summaries([first]) == before


def test_commits_without_trailers_read_their_records_from_the_file(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    save(storage, 0)
    program_id = "00112233445566ab"
    commit_file(registry_path, path_of(program_id), hand_document(storage, program_id, 7))
    fresh = ProgramStorage(registry_path)
    record = fresh.registry.records()[program_id]
    assert record.best_score == 0.5
    assert record.commit == git(registry_path, "rev-parse", "main").strip()
    assert_queries_match_git(storage)


# -- the cache file, version 2 --------------------------------------------------------------


def test_the_cache_round_trips_and_answers_without_reading_program_files(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = ProgramStorage(registry_path)
    for i in range(5):
        save(storage, i)
    items = [({"b": k}, {"best_score_value": -0.0}, {"k": k}) for k in range(2)]
    storage.save_programs(items)  # records from the files, a negative zero score
    listing = storage.list_programs()
    records = storage.registry.records()
    path = logcache.cache_path(registry_path, MAIN)
    data = logcache.read(path)
    assert data is not None
    state = logcache.decode(data, MAIN)
    assert state is not None
    assert state.head == git(registry_path, "rev-parse", "main").strip()
    assert state.count == len(git(registry_path, "rev-list", "--first-parent", "main").split())
    assert sorted(state.programs) == sorted(records)
    assert len(state.summaries) == len(listing)
    assert [state.programs[row] for row in state.by_time] == [s.program_id for s in listing]
    assert data["metadata"] and len(data["metadata"]) <= len(listing)

    decoded: list[str] = []
    original = LogIndex._decode

    def spy(self: LogIndex, program_id: str, blob_id: str) -> object:
        decoded.append(program_id)
        return original(self, program_id, blob_id)

    monkeypatch.setattr(LogIndex, "_decode", spy)
    fresh = ProgramStorage(registry_path)
    assert fresh.list_programs() == listing
    assert [s.model_dump_json() for s in fresh.list_programs()] == [
        s.model_dump_json() for s in listing
    ]
    assert fresh.registry.records() == records
    assert fresh.get_history() == storage.get_history()
    assert decoded == []  # every answer came from the cache
    [zero] = [s.best_score for s in fresh.list_programs() if s.metadata.get("k") == 0]
    assert zero is not None
    assert math.copysign(1.0, zero) == -1.0


def test_a_cache_of_version_1_is_ignored(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    ids = [save(storage, i) for i in range(3)]
    path = logcache.cache_path(registry_path, MAIN)
    path.parent.mkdir()
    body = json.dumps({"ref": MAIN, "head": "0" * 40, "entries": [], "records": []}).encode()
    header = {"format": logcache.FORMAT, "version": 1, "size": len(body)}
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    old = registry_path / logcache.CACHE_DIR / "log-index-v1.json"
    old.write_bytes(path.read_bytes())
    assert logcache.read(path) is None
    assert set(ProgramStorage(registry_path).registry.records()) == set(ids)
    assert logcache.read(path) is not None  # rewritten in version 2
    assert_queries_match_git(storage)


def test_trusted_summaries_are_the_validated_model() -> None:
    fields = (datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), 0.5, "acc", "GEPA", None)
    built = trusted_summary("0123456789abcdef", fields, {"a": [1, 2]})
    validated = ProgramSummary(
        program_id="0123456789abcdef",
        saved_at=fields[0],
        best_score=0.5,
        score_name="acc",
        optimizer="GEPA",
        signature_class=None,
        metadata={"a": [1, 2]},
    )
    assert built == validated
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.model_fields_set == validated.model_fields_set
    assert pickle.loads(pickle.dumps(built)) == validated
    changed = built.model_copy(update={"best_score": 0.9})
    assert changed.best_score == 0.9
    assert built.best_score == 0.5
    assert built.model_fields_set == validated.model_fields_set
    with pytest.raises(ValueError, match="frozen"):
        built.best_score = 1.0


# -- several processes ------------------------------------------------------------------------

WORKER = """
import sys
from progreg import ProgramStorage, StorageManager
from progreg.registry.history import LogIndex

LogIndex.persist_after = 1
storage = ProgramStorage(sys.argv[1])
manager = StorageManager(storage=storage)
for i in range(int(sys.argv[2]), int(sys.argv[2]) + 12):
    storage.save_program({"i": i}, {"best_score_value": i / 100}, {"signature_class": "S"})
    storage.list_programs()
    manager.find_programs(min_score=0.05)
    manager.get_optimization_history()
    if i % 4 == 0:
        storage.delete_program(storage.list_programs()[0].program_id)
print("done")
"""


def test_processes_saving_and_querying_at_once(registry_path: Path) -> None:
    ProgramStorage(registry_path)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(registry_path), str(first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first in (0, 100, 200)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        assert out.strip() == "done"
    assert logcache.read(logcache.cache_path(registry_path, MAIN)) is not None
    assert_queries_match_git(ProgramStorage(registry_path))
    assert_fsck_clean(registry_path)


def test_an_index_interrupted_while_walking_starts_over(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = ProgramStorage(registry_path)
    save(storage, 0)
    storage.registry.records()
    for i in range(1, 4):
        save(storage, i)
    calls = []
    original = history._entry

    def failing(repo: object, commit: object) -> object:
        calls.append(commit)
        if len(calls) == 2:
            raise OSError("disk read error")
        return original(repo, commit)  # type: ignore[arg-type]

    monkeypatch.setattr(history, "_entry", failing)
    with pytest.raises(OSError, match="disk read error"):
        storage.registry.records()
    monkeypatch.setattr(history, "_entry", original)
    assert_queries_match_git(storage)  # not counted twice


def test_summaries_of_blobs_no_longer_live_can_be_forgotten() -> None:
    cache = SummaryCache()
    fields = (datetime(2026, 1, 1, tzinfo=UTC), None, None, None, None)
    cache.add("a" * 40, trusted_summary("0123456789abcdef", fields, {}))
    cache.add_rows(
        {"b" * 40: ("0123456789abcdee", fields, {}), "c" * 40: ("0123456789abcded", fields, {})}
    )
    assert len(cache) == 3
    cache.keep({"a" * 40, "c" * 40})
    assert len(cache) == 2
    assert cache.get("b" * 40) is None
    summary = cache.get("c" * 40)
    assert summary is not None and summary.program_id == "0123456789abcded"


def test_optimization_history_is_recomputed_when_main_moves(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    manager = StorageManager(storage=storage)
    for i in range(3):
        save(storage, i)
    first = manager.get_optimization_history()
    again = manager.get_optimization_history()
    assert again == first
    again.optimizer_stats.clear()  # what a caller does to its copy stays there
    assert manager.get_optimization_history() == first
    save(storage, 3)
    moved = manager.get_optimization_history()
    assert moved.summary.total_programs == 4
    commit_file(registry_path, path_of(save(ProgramStorage(registry_path), 4)), None)
    other = StorageManager(storage=ProgramStorage(registry_path))
    assert manager.get_optimization_history() == other.get_optimization_history()
    assert manager.get_optimization_history().summary.total_programs == 4


def test_long_walks_and_many_decodes_go_through_released_handles(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Walks longer than a handle's share and bulk decodes release handles as they go."""
    monkeypatch.setattr(history, "_HANDLE_COMMITS", 3)
    storage = ProgramStorage(registry_path)
    ids = [save(storage, i) for i in range(9)]
    storage.delete_program(ids[2])
    save(storage, 50, program_id=ids[4])
    commit_file(
        registry_path, path_of("00ff" + "cd" * 6), hand_document(storage, "00ff" + "cd" * 6, 1)
    )
    merge_from_side(registry_path, storage, 7)
    for i in range(9, 13):
        save(storage, i)
    assert_queries_match_git(storage)
    fresh = ProgramStorage(registry_path)
    fresh.registry._log = LogIndex(fresh.registry.git, MAIN, cache=None)
    chain = git(registry_path, "rev-list", "--first-parent", "--reverse", "main").split()
    assert [entry.commit for entry in fresh.registry._log.entries()] == chain
    assert len(chain) > 5 * 3


def test_summaries_built_from_files_share_equal_metadata(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    for i in range(3):
        storage.save_program({"i": i}, result(0.5), metadata={"signature_class": "Same"})
    storage.save_program({"i": 9}, result(0.5), metadata={"signature_class": "Other"})
    rebuilt = ProgramStorage(registry_path)
    rebuilt.registry._log = LogIndex(rebuilt.registry.git, MAIN, cache=None)
    listing = rebuilt.list_programs()
    assert listing == expected_listing(registry_path)
    same = [s.metadata for s in listing if s.signature_class == "Same"]
    assert len(same) == 3 and same[0] is same[1] is same[2]
    other = next(s.metadata for s in listing if s.signature_class == "Other")
    assert other is not same[0] and other["signature_class"] == "Other"
