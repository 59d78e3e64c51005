"""What progreg keeps in memory from libgit2: bounded windows, caches, releasable handles."""

from __future__ import annotations

from pathlib import Path

import pygit2

from conftest import git
from progreg import ProgramStorage
from progreg.gitstore import memory
from progreg.gitstore.objectread import BlobReader


def test_opening_a_registry_bounds_libgit2_windows_and_cache(registry_path: Path) -> None:
    ProgramStorage(registry_path)
    settings = pygit2.settings
    assert 0 < settings.mwindow_size <= memory.WINDOW_SIZE
    assert 0 < settings.mwindow_mapped_limit <= memory.MAPPED_LIMIT
    assert 0 < settings.cached_memory[1] <= memory.CACHE_LIMIT


def test_a_released_handle_and_blob_reader_read_on(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    first = storage.save_program({"n": 1}).program_id
    tip = storage.git.tip("refs/heads/main")
    assert tip is not None
    blob_id = git(
        registry_path, "rev-parse", f"main:programs/{first[:2]}/{first[2:4]}/{first}.json"
    )
    reader = BlobReader(registry_path / "objects")
    before = reader.read(pygit2.Oid(hex=blob_id.strip()))
    assert before is not None
    storage.git.release()
    reader.release()
    assert reader.read(pygit2.Oid(hex=blob_id.strip())) == before
    assert tip.tree is not None and storage.git.repo[tip.id].id == tip.id
    second = storage.save_program({"n": 2}).program_id
    storage.git.release()
    assert {s.program_id for s in storage.list_programs()} == {first, second}
    assert git(registry_path, "rev-list", "--count", "main").strip() == "2"
