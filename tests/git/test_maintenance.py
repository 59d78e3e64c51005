"""Packs and maintenance: what saves write, automatic merges, loose objects and ``progreg gc``."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from progreg import InvalidInputError, ProgramStorage, events
from progreg.cli.main import cli
from progreg.git import maintenance
from progreg.git.objects.encoding import OBJ_BLOB, object_id
from progreg.git.pack import repack, tailpack
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, git
from support.packs import each_save_its_own_pack


def _save(storage: ProgramStorage, i: int, program_id: str | None = None) -> str:
    state = {
        "instructions": f"Answer question {i} briefly. " * 8,
        "demos": [{"q": i, "a": i * 2}],
    }
    return storage.save_program(state, {"score": i / 1000}, program_id=program_id).program_id


def _count_objects(path: Path) -> dict[str, int]:
    lines = git(path, "count-objects", "-v").splitlines()
    return {key: int(value) for key, value in (line.split(": ") for line in lines if line)}


def _packs(path: Path) -> list[Path]:
    return sorted((path / "objects" / "pack").glob("pack-*.pack"))


def _deltas(path: Path) -> int:
    """How many objects of the registry's packs are stored as deltas (``git verify-pack``)."""
    total = 0
    for pack in _packs(path):
        out = git(path, "verify-pack", "-v", str(pack.with_suffix(".idx")))
        delta = re.compile(r"^[0-9a-f]{40} +\w+ +\d+ +\d+ +\d+ +\d+ +[0-9a-f]{40}$")
        total += sum(1 for line in out.splitlines() if delta.match(line))
    return total


def _explode(path: Path) -> None:
    """Turn every packed object into a loose file, as libgit2 alone used to write registries."""
    moved = path.parent / f"{path.name}-packs"
    moved.mkdir()
    for pack in _packs(path):
        for suffix in (".pack", ".idx"):
            shutil.move(pack.with_suffix(suffix), moved / pack.with_suffix(suffix).name)
    for pack in sorted(moved.glob("*.pack")):
        git(path, "unpack-objects", "-q", input=pack.read_bytes())
    shutil.rmtree(moved)


# -- what a save writes ---------------------------------------------------------------


def test_saves_write_packs_never_loose_objects(storage: ProgramStorage) -> None:
    ids = [_save(storage, i) for i in range(30)]
    counts = _count_objects(storage.path)
    assert counts["count"] == 0
    assert counts["in-pack"] >= 30 * 6
    assert 1 <= counts["packs"] <= 3
    assert not [p for p in (storage.path / "objects").iterdir() if len(p.name) == 2]
    assert_fsck_clean(storage.path)
    for pack in _packs(storage.path):
        assert pack.name.endswith(".pack") and pack.with_suffix(".idx").is_file()
        git(storage.path, "verify-pack", str(pack.with_suffix(".idx")))
    # Consecutive versions of the large trees are deltas already.
    assert _deltas(storage.path) > 0
    assert len(git(storage.path, "log", "--format=%H", "main").split()) == 30
    fresh = ProgramStorage(storage.path)
    assert {p.program_id for p in fresh.list_programs()} == set(ids)


def test_the_open_pack_is_replaced_and_closed_when_full(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tailpack, "MAX_OBJECTS", 40)
    _save(storage, 0)
    first = storage.registry.git.tail.path
    assert first is not None and first.is_file()
    _save(storage, 1)
    assert not first.exists() and not first.with_suffix(".idx").exists()
    for i in range(2, 12):
        _save(storage, i)
    # Several packs were closed along the way; the open one holds the last saves.
    assert len(_packs(storage.path)) >= 2
    assert storage.registry.git.tail.path in _packs(storage.path)
    assert_fsck_clean(storage.path)


def test_a_plain_git_clone_and_gc_work_on_a_registry(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    ids = [_save(storage, i) for i in range(12)]
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(storage.path), str(clone))
    assert len(list((clone / "programs").rglob("*.json"))) == 12
    git(storage.path, "gc", "-q")
    assert_fsck_clean(storage.path)
    _save(storage, 99)  # the open pack was merged away by git gc: a new one starts
    assert_fsck_clean(storage.path)
    fresh = ProgramStorage(storage.path)
    assert all(fresh.load_program(program_id) is not None for program_id in ids)


def test_a_pack_without_index_is_ignored_and_cleaned_up(storage: ProgramStorage) -> None:
    _save(storage, 0)
    pack_dir = storage.path / "objects" / "pack"
    orphan = pack_dir / ("pack-" + "ab" * 20 + ".pack")
    orphan.write_bytes(b"PACK\x00\x00\x00\x02\x00\x00\x00\x05truncated by a crash")
    temporary = pack_dir / "tmp_pack_0123456789abcdef"
    temporary.write_bytes(b"half written")
    _save(storage, 1)
    assert_fsck_clean(storage.path)
    assert maintenance.remove_garbage(storage.path / "objects") == 0  # too recent
    old = time.time() - 2 * maintenance.GARBAGE_AGE
    for path in (orphan, temporary):
        os.utime(path, (old, old))
    assert maintenance.remove_garbage(storage.path / "objects") == 2
    assert not orphan.exists() and not temporary.exists()
    assert len(storage.list_programs()) == 2


# -- automatic merges -------------------------------------------------------------------


def test_automatic_merges_keep_few_packs_and_make_deltas(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "SMALL_PACKS", 4)
    monkeypatch.setattr(maintenance, "LEVEL_FACTOR", 3)
    monkeypatch.setattr(maintenance, "LEVEL_BASE", 16)
    merges: list[events.Event] = []
    unsubscribe = events.subscribe(
        lambda event: merges.append(event) if event.name == "progreg.maintenance.merge" else None
    )
    storage = ProgramStorage(registry_path)
    each_save_its_own_pack(storage)
    ids: list[str] = []
    most = 0
    try:
        for i in range(60):
            ids.append(_save(storage, i, ids[i % 5] if i >= 20 and i % 4 == 0 else None))
            most = max(most, len(_packs(registry_path)))
    finally:
        unsubscribe()
    assert merges, "automatic maintenance never merged"
    assert most <= 4 + 2 * 3
    assert len(_packs(registry_path)) < 10
    fields = merges[-1].fields
    assert fields["packs_merged"] >= 2 and fields["objects"] > 0 and fields["seconds"] >= 0
    assert sum(event.fields["deltas_made"] for event in merges) > 0
    assert _deltas(registry_path) > 0
    assert _count_objects(registry_path)["count"] == 0
    assert_fsck_clean(registry_path)
    fresh = ProgramStorage(registry_path)
    assert {p.program_id for p in fresh.list_programs()} == set(ids)
    for program_id in set(ids):
        assert fresh.load_program(program_id) is not None


def test_merged_packs_are_compact_and_normal(registry_path: Path, tmp_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    each_save_its_own_pack(storage)
    git(registry_path, "config", "gc.auto", "0")

    words = [
        "answer",
        "the",
        "question",
        "about",
        "refunds",
        "orders",
        "accounts",
        "billing",
        "shipping",
    ]

    def save(i: int) -> str:
        pick = random.Random(i).choice
        text = " ".join(pick(words) for _ in range(300))
        return storage.save_program({"instructions": text}, {"score": i}).program_id

    ids = [save(i) for i in range(30)]
    packs = _packs(registry_path)
    assert len(packs) == 30
    size_before = sum(p.stat().st_size for p in packs)
    copy = tmp_path / "copy"
    shutil.copytree(registry_path, copy)
    git(copy, "gc", "-q")
    (by_git,) = _packs(copy)
    result = repack.merge_packs(storage.registry.git.repo, packs, walk_all=True)
    assert _packs(registry_path) == [result.pack]
    assert result.objects == _count_objects(registry_path)["in-pack"]
    assert result.pack.stat().st_size < size_before
    assert result.pack.stat().st_size < by_git.stat().st_size * 1.3
    assert len(result.redeltified) >= 20  # the trees of programs/ became deltas
    git(registry_path, "verify-pack", str(result.pack.with_suffix(".idx")))
    assert_fsck_clean(registry_path)
    fresh = ProgramStorage(registry_path)
    assert {p.program_id for p in fresh.list_programs()} == set(ids)
    assert git(registry_path, "rev-list", "--count", "main").strip() == "30"


def test_no_automatic_maintenance_with_gc_auto_zero(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "SMALL_PACKS", 3)
    storage = ProgramStorage(registry_path)
    git(registry_path, "config", "gc.auto", "0")
    each_save_its_own_pack(storage)
    for i in range(10):
        _save(storage, i)
    assert len(_packs(registry_path)) == 10


def test_a_merge_waits_for_nobody_and_skips_when_another_runs(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "SMALL_PACKS", 3)
    storage = ProgramStorage(registry_path)
    each_save_its_own_pack(storage)
    with maintenance.maintenance_lock(registry_path, None) as taken:
        assert taken
        for i in range(6):
            _save(storage, i)  # saves go on; their merges are skipped
        assert len(_packs(registry_path)) == 6
    _save(storage, 6)
    assert len(_packs(registry_path)) <= 2
    assert_fsck_clean(registry_path)


# -- loose objects (older registries, other writers) and progreg gc -------------------------


def test_gc_packs_loose_objects_of_an_older_registry(storage: ProgramStorage) -> None:
    ids = [_save(storage, i) for i in range(20)]
    _explode(storage.path)
    assert _count_objects(storage.path)["count"] > 100
    assert _count_objects(storage.path)["packs"] == 0
    fresh = ProgramStorage(storage.path)
    more = [_save(fresh, i) for i in range(20, 25)]  # an older registry keeps working
    report = maintenance.pack_loose_objects(storage.path)
    assert report.objects_packed == report.loose_removed > 100
    assert report.size_after < report.size_before
    counts = _count_objects(storage.path)
    assert counts["count"] == 0
    assert counts["packs"] == 1
    assert report.packs_after == 1 and report.packs_consolidated == 2
    assert not [p for p in (storage.path / "objects").iterdir() if len(p.name) == 2]
    assert_fsck_clean(storage.path)
    (idx,) = (storage.path / "objects" / "pack").glob("*.idx")
    assert "ok" in git(storage.path, "verify-pack", "-v", str(idx))
    for program_id in ids + more:
        assert ProgramStorage(storage.path).load_program(program_id) is not None
    # Nothing loose, one pack: nothing to do.
    again = maintenance.pack_loose_objects(storage.path)
    assert again.objects_packed == 0 and again.packs_consolidated == 0


def test_gc_merges_packs_only_over_the_limit(storage: ProgramStorage) -> None:
    each_save_its_own_pack(storage)
    git(storage.path, "config", "gc.auto", "0")
    ids = [_save(storage, i) for i in range(4)]
    report = maintenance.pack_loose_objects(storage.path, pack_limit=4)
    assert report.packs_consolidated == 0 and report.packs_after == 4
    assert maintenance.pack_loose_objects(storage.path, pack_limit=0).packs_after == 4
    report = maintenance.pack_loose_objects(storage.path, pack_limit=3)
    assert report.packs_consolidated == 4 and report.packs_after == 1
    assert_fsck_clean(storage.path)
    for program_id in ids:
        assert ProgramStorage(storage.path).load_program(program_id) is not None


@pytest.mark.parametrize("limit", [-1, 1.5, True, "2"])
def test_gc_refuses_a_pack_limit_that_is_not_a_count(storage: ProgramStorage, limit: Any) -> None:
    each_save_its_own_pack(storage)
    _save(storage, 0)
    _save(storage, 1)
    before = sorted(p.name for p in (storage.path / "objects" / "pack").iterdir())
    with pytest.raises(InvalidInputError, match="pack_limit"):
        storage.gc(pack_limit=limit)
    assert sorted(p.name for p in (storage.path / "objects" / "pack").iterdir()) == before


def test_concurrent_saves_during_gc_lose_nothing(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    ids = [_save(storage, i) for i in range(30)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(offset: int) -> None:
        local = ProgramStorage(registry_path)
        try:
            for i in range(25):
                program_id = _save(local, offset + i)
                with lock:
                    ids.append(program_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(1000 * n,)) for n in range(1, 3)]
    for thread in threads:
        thread.start()
    for _ in range(4):
        maintenance.pack_loose_objects(registry_path)
    for thread in threads:
        thread.join()
    assert not errors
    maintenance.pack_loose_objects(registry_path)
    assert len(_packs(registry_path)) == 1
    assert_fsck_clean(registry_path)
    fresh = ProgramStorage(registry_path)
    assert len(fresh.list_programs()) == len(ids) == 80
    for program_id in ids:
        assert fresh.load_program(program_id) is not None


def test_automatic_maintenance_packs_loose_objects_over_the_threshold(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "CHECK_EVERY", 1)
    storage = ProgramStorage(registry_path)
    for i in range(20):
        _save(storage, i)
    _explode(registry_path)
    # One loose blob in the fan-out directory the estimate samples, 17/.
    data = next(
        text
        for n in range(100_000)
        if object_id(OBJ_BLOB, text := f"loose {n}\n".encode()).startswith(b"\x17")
    )
    git(registry_path, "hash-object", "-w", "--stdin", input=data)
    assert _count_objects(registry_path)["count"] > 100
    git(registry_path, "config", "gc.auto", "200")  # due: 1 entry in 17/ estimates 256
    sample = registry_path / "objects" / "17"
    saves = 20
    while _count_objects(registry_path)["count"]:
        _save(ProgramStorage(registry_path), saves)
        saves += 1
        assert saves < 25, "automatic maintenance never packed the loose objects"
    assert not sample.exists()
    assert_fsck_clean(registry_path)
    assert len(ProgramStorage(registry_path).list_programs()) == saves


def test_loose_object_estimate(storage: ProgramStorage) -> None:
    assert maintenance.loose_object_estimate(storage.path) == 0
    sample = storage.path / "objects" / "17"
    sample.mkdir(parents=True, exist_ok=True)
    (sample / ("0" * 38)).write_bytes(b"")
    (sample / "tmp_obj_x").write_bytes(b"")
    assert maintenance.loose_object_estimate(storage.path) == 256


def test_cli_gc(storage: ProgramStorage) -> None:
    each_save_its_own_pack(storage)
    git(storage.path, "config", "gc.auto", "0")
    for i in range(5):
        _save(storage, i)
    runner = CliRunner()
    result = runner.invoke(cli, ["--registry", str(storage.path), "gc"])
    assert result.exit_code == 0, result.output
    assert "merged 5 packs into one" in result.output and "MB" in result.output
    _save(storage, 99)
    git(storage.path, "tag", "-a", "-m", "by hand", "by-hand", "main", env=CLI_IDENTITY)
    result = runner.invoke(cli, ["--registry", str(storage.path), "gc", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["objects_packed"] == 1 and data["loose_removed"] == 1
    assert data["packs_consolidated"] == 3 and data["packs_after"] == 1
    assert _count_objects(storage.path)["count"] == 0
    assert_fsck_clean(storage.path)
