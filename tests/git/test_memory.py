"""What progreg keeps in memory from libgit2: bounded windows, caches, releasable handles."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from progreg import ProgramStorage
from progreg.git.bundle import format as bundle
from progreg.git.pack import memory
from progreg.git.pack.objectread import BlobReader
from support.gitcli import assert_fsck_clean, git


def test_opening_a_registry_bounds_libgit2_windows_and_cache(registry_path: Path) -> None:
    ProgramStorage(registry_path)
    settings = pygit2.settings
    assert 0 < settings.mwindow_size <= memory.WINDOW_SIZE
    assert 0 < settings.mwindow_mapped_limit <= memory.MAPPED_LIMIT
    assert 0 < settings.cached_memory[1] <= memory.CACHE_LIMIT


def test_a_released_handle_and_blob_reader_read_on(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    first = storage.save_program({"n": 1}).program_id
    tip = storage.registry.git.tip("refs/heads/main")
    assert tip is not None
    blob_id = git(
        registry_path, "rev-parse", f"main:programs/{first[:2]}/{first[2:4]}/{first}.json"
    )
    reader = BlobReader(registry_path / "objects")
    before = reader.read(pygit2.Oid(hex=blob_id.strip()))
    assert before is not None
    storage.registry.git.release()
    reader.release()
    assert reader.read(pygit2.Oid(hex=blob_id.strip())) == before
    assert tip.tree is not None and storage.registry.git.repo[tip.id].id == tip.id
    second = storage.save_program({"n": 2}).program_id
    storage.registry.git.release()
    assert {s.program_id for s in storage.list_programs()} == {first, second}
    assert git(registry_path, "rev-list", "--count", "main").strip() == "2"


def test_bundles_and_packs_read_through_reopened_object_databases(
    registry_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle, "_READS_PER_ODB", 2)
    reads: list[bytes] = []
    original = bundle._Source.read

    def counted(self: bundle._Source, oid: bytes) -> tuple[int, bytes]:
        reads.append(oid)
        return original(self, oid)

    monkeypatch.setattr(bundle._Source, "read", counted)
    storage = ProgramStorage(registry_path)
    ids = [storage.save_program({"n": i}, tags=["production"]).program_id for i in range(6)]
    storage.gc()
    assert_fsck_clean(registry_path)
    storage.save_program({"n": 99})
    # one loose object: the registry is not exactly one pack, so export reads every object
    git(registry_path, "hash-object", "-w", "--stdin", input=b"loose, as git writes")
    out = tmp_path / "all.bundle"
    storage.export_registry(out)
    assert len(reads) > 2 * 4
    copy = tmp_path / "copy.git"
    git(tmp_path, "clone", "-q", "--bare", "--mirror", str(out), str(copy))
    assert_fsck_clean(copy)
    assert git(copy, "rev-parse", "main") == git(registry_path, "rev-parse", "main")
    listed = git(copy, "for-each-ref", "--format=%(refname)", "refs/tags/production/")
    assert sorted(listed.split()) == sorted(f"refs/tags/production/{i}" for i in ids)
