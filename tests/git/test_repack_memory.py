"""Pack merges with bounded memory: compact tables, released pages, a bounded cache of bases."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from progreg import ProgramStorage
from progreg.git.pack import basecache, packsource, repack
from progreg.git.pack.basecache import BaseCache
from progreg.git.pack.packsource import PackSource, Residency
from support.gitcli import assert_fsck_clean, git
from support.packs import each_save_its_own_pack

_VERIFY_LINE = re.compile(
    r"^([0-9a-f]{40}) +(\w+) +\d+ +\d+ +(\d+)(?: +(\d+) +([0-9a-f]{40}))?$", re.MULTILINE
)


def _packs(path: Path) -> list[Path]:
    return sorted((path / "objects" / "pack").glob("pack-*.pack"))


def _history(storage: ProgramStorage, count: int) -> list[str]:
    """``count`` saves of a few programs, each a new version: long delta chains."""
    ids: list[str] = []
    for i in range(count):
        program_id = ids[i % 3] if i >= 3 else None
        state = {"instructions": f"Answer question {i} briefly. " * 20, "round": i}
        ids.append(storage.save_program(state, {"score": i}, program_id=program_id).program_id)
    return ids[:3]


def _contents(storage: ProgramStorage, ids: list[str]) -> list[object]:
    states: list[object] = []
    for program_id in ids:
        program = storage.load_program(program_id)
        assert program is not None
        states.append(program.state)
    return states


def test_cache_keeps_the_most_recently_used_within_its_budget() -> None:
    cache = BaseCache(10)
    cache.put("a", (3, b"aaaa"))
    cache.put("b", (3, b"bbbb"))
    assert cache.get("a") == (3, b"aaaa")  # "a" is now the most recent
    cache.put("c", (3, b"cccc"))  # 12 bytes: "b", the least recent, goes
    assert cache.get("b") is None
    assert cache.get("a") == (3, b"aaaa") and cache.get("c") == (3, b"cccc")
    assert cache.size == 8 and len(cache) == 2
    cache.put("a", (3, b"a"))  # replacing counts the new size only
    assert cache.size == 5
    cache.put("huge", (3, b"x" * 11))  # larger than the whole budget: not kept
    assert cache.get("huge") is None and cache.size == 5
    with pytest.raises(ValueError, match="0 or more"):
        BaseCache(-1)


def test_pack_source_reads_entries_as_git_does(registry_path: Path, tmp_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    _history(storage, 24)
    git(registry_path, "repack", "-a", "-d", "-f", "-q", "--depth=5")
    (pack,) = _packs(registry_path)
    listed = git(registry_path, "verify-pack", "-v", str(pack.with_suffix(".idx")))
    expected = {m[1]: m for m in _VERIFY_LINE.finditer(listed)}
    residency = Residency()
    source = PackSource(pack, residency)
    try:
        source.scan()
        by_offset = {source.offsets[n]: n for n in range(source.count)}
        deltas = 0
        for position in range(source.count):
            found = expected[source.oid(position).hex()]
            assert source.offsets[position] == int(found[3])
            base = source.bases[position]
            if found[4] is None:
                assert base == -1 and source.is_whole(position)
            else:
                deltas += 1
                assert source.depths[position] == int(found[4])
                assert source.oid(base).hex() == found[5]
                assert by_offset[source.offsets[base]] == base
        assert deltas > 10
        source.read(12, source.end(0))
        assert residency.touched > 0
        residency.release()
        assert residency.touched == 0
    finally:
        source.close()
    assert residency.sources == []


def test_merge_is_the_same_with_tiny_budgets(
    registry_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages dropped after every read and a cache of one object give the same pack."""
    storage = ProgramStorage(registry_path)
    git(registry_path, "config", "gc.auto", "0")
    each_save_its_own_pack(storage)
    ids = _history(storage, 40)
    before = _contents(storage, ids)
    copy = tmp_path / "copy"
    shutil.copytree(registry_path, copy)
    assert len(_packs(registry_path)) > 10

    roomy = ProgramStorage(registry_path).gc()
    monkeypatch.setattr(packsource, "RELEASE_STEP", 1)
    monkeypatch.setattr(basecache, "DEFAULT_BUDGET", 600)
    tight = ProgramStorage(copy).gc()

    (pack,) = _packs(copy)
    assert [p.name for p in _packs(registry_path)] == [pack.name] == [tight.pack]
    assert roomy.pack == tight.pack
    assert pack.read_bytes() == _packs(registry_path)[0].read_bytes()
    git(copy, "verify-pack", str(pack.with_suffix(".idx")))
    assert_fsck_clean(copy)
    assert _contents(ProgramStorage(copy), ids) == before


def test_merge_reads_deltas_by_id_through_libgit2(registry_path: Path) -> None:
    """Packs written by Git without offset deltas (``REF_DELTA``) merge into a correct pack."""
    storage = ProgramStorage(registry_path)
    git(registry_path, "config", "gc.auto", "0")
    ids = _history(storage, 30)
    git(registry_path, "-c", "repack.useDeltaBaseOffset=false", "repack", "-a", "-d", "-f", "-q")
    (old,) = _packs(registry_path)
    listed = git(registry_path, "verify-pack", "-v", str(old.with_suffix(".idx")))
    assert any(m[5] for m in _VERIFY_LINE.finditer(listed))  # some deltas, by id
    assert 7 in _scan_kinds(old)  # REF_DELTA entries
    each_save_its_own_pack(storage)
    for i in range(10):
        storage.save_program({"instructions": f"More {i} " * 40}, {"score": i}, program_id=ids[0])
    before = _contents(storage, ids)
    assert len(_packs(registry_path)) > 1
    report = ProgramStorage(registry_path).gc()
    (pack,) = _packs(registry_path)
    assert report.pack == pack.name
    git(registry_path, "verify-pack", str(pack.with_suffix(".idx")))
    assert_fsck_clean(registry_path)
    assert _contents(ProgramStorage(registry_path), ids) == before


def _scan_kinds(pack: Path) -> set[int]:
    source = PackSource(pack)
    try:
        source.scan()
        return set(source.stored)
    finally:
        source.close()


def test_read_index_gives_the_ids_crcs_and_offsets_git_wrote(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    _history(storage, 6)
    git(registry_path, "repack", "-a", "-d", "-q")
    (pack,) = _packs(registry_path)
    ids, crcs, offsets = repack.read_index(pack.with_suffix(".idx"))
    listed = git(registry_path, "verify-pack", "-v", str(pack.with_suffix(".idx")))
    expected = {m[1]: int(m[3]) for m in _VERIFY_LINE.finditer(listed)}
    got = {ids[20 * n : 20 * n + 20].hex(): offsets[n] for n in range(len(offsets))}
    assert got == expected and len(crcs) == len(offsets)
    assert repack.index_count(pack.with_suffix(".idx")) == len(offsets)


def test_the_check_compares_the_whole_table_of_ids(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    _history(storage, 6)
    git(registry_path, "repack", "-a", "-d", "-q")
    (pack,) = _packs(registry_path)
    idx = pack.with_suffix(".idx")
    ids = repack.read_index(idx)[0]
    oids = sorted(ids[n : n + 20] for n in range(0, len(ids), 20))
    assert repack._index_lists(idx, oids)
    assert not repack._index_lists(idx, oids[:-1])
    assert not repack._index_lists(idx, [*oids[:-1], b"\xff" * 20])
