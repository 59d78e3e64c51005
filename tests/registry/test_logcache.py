"""The log index's cache file: used when it can be trusted, ignored and rebuilt otherwise."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from progreg import ProgramStorage
from progreg.registry import logcache
from progreg.registry.history import LogIndex, ProgramRecord
from support.gitcli import assert_fsck_clean, commit_file, git

MAIN = "refs/heads/main"


@pytest.fixture(autouse=True)
def _persist_every_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the cache after every refresh that indexed something, small registries included."""
    monkeypatch.setattr(LogIndex, "persist_after", 1)


def result(score: float, optimizer: str = "MIPROv2") -> dict[str, object]:
    return {
        "scores": {"accuracy": score},
        "best_score_name": "accuracy",
        "best_score_value": score,
        "metadata": {"optimizer": optimizer},
    }


def save(storage: ProgramStorage, i: int) -> str:
    saved = storage.save_program(
        {"instructions": f"program {i}"},
        result(i / 100, "MIPROv2" if i % 2 else "BootstrapFewShot"),
        metadata={"signature_class": "ClassifyText" if i % 3 else "Summarize"},
    )
    return saved.program_id


def cache_file(registry: Path) -> Path:
    return logcache.cache_path(registry, MAIN)


def uncached(registry: Path) -> LogIndex:
    """A log index built from Git alone, the reference the cached one must match."""
    return LogIndex(ProgramStorage(registry).registry.git, MAIN, cache=None)


def assert_matches_rebuild(storage: ProgramStorage) -> None:
    reference = uncached(storage.path)
    assert storage.registry.records() == reference.records()
    assert storage.registry._log.entries() == reference.entries()
    for program_id in reference.records():
        assert storage.registry._log.last_change(program_id) == reference.last_change(program_id)


def loads_cache(registry: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[int]]:
    """Spy on a fresh index: what logcache.read returned and how many commits it walked."""
    reads: list[str] = []
    walked: list[int] = []
    read = logcache.read
    chain = LogIndex._first_parent_chain

    def spy_read(path: Path) -> dict[str, object] | None:
        data = read(path)
        reads.append("hit" if data is not None else "miss")
        return data

    def spy_chain(self: LogIndex, tip: object) -> object:
        result = chain(self, tip)  # type: ignore[arg-type]
        walked.append(len(result[0]))
        return result

    monkeypatch.setattr(logcache, "read", spy_read)
    monkeypatch.setattr(LogIndex, "_first_parent_chain", spy_chain)
    return reads, walked


@pytest.fixture
def built(registry_path: Path) -> Iterator[tuple[ProgramStorage, list[str]]]:
    storage = ProgramStorage(registry_path)
    ids = [save(storage, i) for i in range(6)]
    storage.delete_program(ids[1])
    storage.registry.records()  # builds the index and writes the cache
    assert cache_file(registry_path).is_file()
    yield storage, ids
    assert_fsck_clean(registry_path)


def test_a_fresh_instance_answers_from_the_cache(
    built: tuple[ProgramStorage, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, ids = built
    reads, walked = loads_cache(storage.path, monkeypatch)
    fresh = ProgramStorage(storage.path)
    records = fresh.registry.records()
    assert reads == ["hit"]
    assert walked == [0]  # nothing to walk: the cache is at the tip
    assert set(records) == set(ids) - {ids[1]}
    assert records == storage.registry.records()
    assert_matches_rebuild(fresh)
    assert [p.program_id for p in fresh.list_programs()] == [
        p.program_id for p in storage.list_programs()
    ]


def test_a_fresh_process_answers_from_the_cache(
    built: tuple[ProgramStorage, list[str]], python: str
) -> None:
    storage, _ = built
    script = (
        "import sys, json\n"
        "from progreg import ProgramStorage\nfrom progreg.registry import logcache\n"
        "from progreg.registry.history import LogIndex\n"
        "hits = []\n"
        "read = logcache.read\n"
        "logcache.read = lambda p: hits.append(1) or read(p)\n"
        "s = ProgramStorage(sys.argv[1])\n"
        "r = s.registry.records()\n"
        "print(json.dumps([len(hits), sorted((k, v.commit) for k, v in r.items())]))\n"
    )
    out = subprocess.run(
        [python, "-c", script, str(storage.path)], capture_output=True, check=True, text=True
    ).stdout
    hits, pairs = json.loads(out)
    assert hits == 1
    assert [tuple(p) for p in pairs] == sorted(
        (k, v.commit) for k, v in storage.registry.records().items()
    )


def test_saves_by_another_writer_are_picked_up(
    built: tuple[ProgramStorage, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = built
    before = cache_file(storage.path).read_bytes()
    other = ProgramStorage(storage.path)
    added = [save(other, i) for i in range(10, 13)]
    assert cache_file(storage.path).read_bytes() == before  # saves do not write the cache
    commit_file(storage.path, "notes.txt", b"not a program")  # a commit by hand
    reads, walked = loads_cache(storage.path, monkeypatch)
    fresh = ProgramStorage(storage.path)
    records = fresh.registry.records()
    assert reads == ["hit"]
    assert walked == [4]  # only the commits added since the cache was written
    assert set(added) <= set(records)
    assert_matches_rebuild(fresh)
    assert cache_file(storage.path).read_bytes() != before  # extended and written back
    reads.clear()
    walked.clear()
    again = ProgramStorage(storage.path)
    assert again.registry.records() == records
    assert (reads, walked) == (["hit"], [0])


def test_main_rewound_to_an_older_commit_rebuilds(
    built: tuple[ProgramStorage, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, ids = built
    older = git(storage.path, "rev-parse", "main~3").strip()
    git(storage.path, "update-ref", MAIN, older)
    after = save(ProgramStorage(storage.path), 99)  # main moves on from the older commit
    reads, walked = loads_cache(storage.path, monkeypatch)
    fresh = ProgramStorage(storage.path)
    records = fresh.registry.records()
    assert reads == ["hit"]
    assert walked == [len(git(storage.path, "rev-list", "--first-parent", "main").split())]
    assert after in records
    assert ids[5] not in records
    assert_matches_rebuild(fresh)
    assert ProgramStorage(storage.path).registry.records() == records


def test_main_replaced_by_an_unrelated_history_rebuilds(
    built: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = built
    other = ProgramStorage(tmp_path / "other")
    theirs = [save(other, i) for i in range(20, 23)]
    git(storage.path, "fetch", "-q", str(other.path), f"+{MAIN}:refs/theirs")
    git(storage.path, "update-ref", MAIN, "refs/theirs")  # a force-push of another history
    git(storage.path, "update-ref", "-d", "refs/theirs")
    fresh = ProgramStorage(storage.path)
    assert set(fresh.registry.records()) == set(theirs)
    assert not set(ids) & set(fresh.registry.records())
    assert_matches_rebuild(fresh)
    # and the same in the instance that held the old index in memory
    assert set(storage.registry.records()) == set(theirs)
    assert_matches_rebuild(storage)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: b"",
        lambda data: os.urandom(len(data)),
        lambda data: data[:-5] + b"xxxxx",
        lambda data: data.replace(b'"version": %d' % logcache.VERSION, b'"version": 99', 1),
        lambda data: b'{"format":"progreg-log-index"}\n{"ref":',
    ],
    ids=["truncated", "empty", "random", "body-changed", "unknown-version", "bad-header"],
)
def test_a_damaged_cache_is_ignored_and_rebuilt(
    built: tuple[ProgramStorage, list[str]], damage: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = built
    path = cache_file(storage.path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    reads, _ = loads_cache(storage.path, monkeypatch)
    fresh = ProgramStorage(storage.path)
    assert fresh.registry.records() == storage.registry.records()
    assert reads == ["miss"]
    assert_matches_rebuild(fresh)
    assert logcache.read(path) is not None  # rewritten whole


def test_a_well_formed_cache_that_does_not_hold_together_is_ignored(
    built: tuple[ProgramStorage, list[str]],
) -> None:
    storage, _ = built
    path = cache_file(storage.path)
    data = logcache.read(path)
    assert data is not None
    assert logcache.decode(data, MAIN) is not None
    ids, positions, commits = data["programs"], data["positions"], data["commits"]
    broken = [
        {**data, "positions": [data["count"], *positions[1:]]},  # past the end of the log
        {**data, "programs": [*ids[:-1], ids[0]]},  # a program listed twice
        {**data, "commits": [commits[0] + "0", *commits[1:]]},  # not a commit id
        {**data, "count": 0},
        {**data, "saved_at": ["yesterday", *data["saved_at"][1:]]},
        {**data, "scores": ["high", *data["scores"][1:]]},
        {**data, "optimizers": [7, *data["optimizers"][1:]]},
        {**data, "summaries": [len(data["metadata"]), *data["summaries"][1:]]},  # no such metadata
        {**data, "pending": {ids[0]: 1_700_000_000}},  # a program whose record is known
        {**data, "by_time": [0] * len(ids)},  # not an order of the programs
        {**data, "blobs": data["blobs"][1:]},  # a column too short
    ]
    assert all(logcache.decode(body, MAIN) is None for body in broken)
    for body in broken:
        assert logcache.write(path, body)
        assert ProgramStorage(storage.path).registry.records() == storage.registry.records()
        assert_matches_rebuild(ProgramStorage(storage.path))
    data = {"ref": MAIN, "head": "zz", "entries": "nope", "records": []}
    assert logcache.write(path, data)
    assert ProgramStorage(storage.path).registry.records() == storage.registry.records()


def test_stale_records_in_the_cache_are_recomputed(
    built: tuple[ProgramStorage, list[str]],
) -> None:
    storage, ids = built
    storage.registry._log.entries()  # records() of this instance already cached every record
    storage.save_program({"instructions": "again"}, result(0.99), program_id=ids[0])
    storage.registry._log.entries()  # writes the cache with ids[0]'s record now stale
    fresh = ProgramStorage(storage.path)
    record: ProgramRecord = fresh.registry.records()[ids[0]]
    assert record.best_score == 0.99
    assert_matches_rebuild(fresh)


@pytest.mark.skipif(
    sys.platform == "win32" or (hasattr(os, "geteuid") and os.geteuid() == 0),
    reason="needs POSIX permissions that apply to this user",
)
def test_a_read_only_registry_still_answers(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    ids = [save(storage, i) for i in range(3)]
    modes = {}
    for path in [registry_path, *registry_path.rglob("*")]:
        modes[path] = path.stat().st_mode
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        fresh = ProgramStorage(registry_path)
        assert set(fresh.registry.records()) == set(ids)
        assert fresh.load_program(ids[0]) is not None
        assert not (registry_path / logcache.CACHE_DIR).exists()
        assert_matches_rebuild(fresh)
    finally:
        for path, mode in sorted(modes.items(), reverse=True):
            path.chmod(mode)
    # writable again: the cache is written by the next query
    assert set(ProgramStorage(registry_path).registry.records()) == set(ids)
    assert cache_file(registry_path).is_file()


def test_a_read_only_cache_file_is_still_used(
    built: tuple[ProgramStorage, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _ = built
    directory = cache_file(storage.path).parent
    save(storage, 50)
    directory.chmod(0o555)
    try:
        reads, walked = loads_cache(storage.path, monkeypatch)
        fresh = ProgramStorage(storage.path)
        assert_matches_rebuild(fresh)
        assert reads == ["hit"]
        assert walked[0] == 1
    finally:
        directory.chmod(0o755)


def test_the_cache_is_written_only_after_enough_new_commits(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LogIndex, "persist_after", 3)
    storage = ProgramStorage(registry_path)
    save(storage, 0)
    save(storage, 1)
    storage.registry.records()
    assert not cache_file(registry_path).exists()  # 2 commits
    save(storage, 2)
    storage.registry.records()
    written = cache_file(registry_path).read_bytes()
    save(storage, 3)
    save(storage, 4)
    storage.registry.records()
    assert cache_file(registry_path).read_bytes() == written
    save(storage, 5)
    storage.registry.records()
    assert cache_file(registry_path).read_bytes() != written


@pytest.mark.parametrize("blocked", ["mkstemp", "replace", "cache-dir-is-a-file"])
def test_a_cache_that_cannot_be_written_is_not_an_error(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch, blocked: str
) -> None:
    storage = ProgramStorage(registry_path)
    ids = [save(storage, i) for i in range(3)]

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    if blocked == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    elif blocked == "replace":
        monkeypatch.setattr(os, "replace", refuse)
    else:
        (registry_path / logcache.CACHE_DIR).write_bytes(b"")
    fresh = ProgramStorage(registry_path)
    assert set(fresh.registry.records()) == set(ids)
    assert_matches_rebuild(fresh)
    assert not cache_file(registry_path).exists()
    if blocked != "cache-dir-is-a-file":
        assert not list((registry_path / logcache.CACHE_DIR).iterdir())  # no temp file left
