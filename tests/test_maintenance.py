"""Packing loose objects: ``pack_loose_objects``, automatic maintenance and ``progreg gc``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import assert_fsck_clean, git
from progreg import ProgramStorage
from progreg.cli.main import cli
from progreg.gitstore import maintenance


def _save(storage: ProgramStorage, i: int) -> str:
    state = {"instructions": f"Answer question {i} briefly.", "demos": [{"q": i, "a": i * 2}]}
    return storage.save_program(state, {"score": i / 1000}).program_id


def _loose_count(path: Path) -> int:
    counts = dict(
        line.split(": ") for line in git(path, "count-objects", "-v").splitlines() if line
    )
    return int(counts["count"])


def _count_objects(path: Path) -> dict[str, int]:
    lines = git(path, "count-objects", "-v").splitlines()
    return {key: int(value) for key, value in (line.split(": ") for line in lines if line)}


def test_gc_packs_every_loose_object(storage: ProgramStorage) -> None:
    ids = [_save(storage, i) for i in range(40)]
    assert _loose_count(storage.path) > 100
    report = maintenance.pack_loose_objects(storage.path)
    assert report.objects_packed == report.loose_removed > 100
    assert report.size_after < report.size_before
    counts = _count_objects(storage.path)
    assert counts["count"] == 0
    assert counts["packs"] == 1
    assert counts["in-pack"] == report.objects_packed
    assert not [p for p in (storage.path / "objects").iterdir() if len(p.name) == 2]
    assert_fsck_clean(storage.path)
    (idx,) = (storage.path / "objects" / "pack").glob("*.idx")
    assert "ok" in git(storage.path, "verify-pack", "-v", str(idx))
    fresh = ProgramStorage(storage.path)
    for program_id in ids:
        assert fresh.load_program(program_id) is not None

    # Saves go on; a second run packs only the new objects.
    more = [_save(fresh, i) for i in range(40, 45)]
    loose = _loose_count(storage.path)
    second = maintenance.pack_loose_objects(storage.path)
    assert second.objects_packed == loose
    assert _count_objects(storage.path)["packs"] == 2
    assert _loose_count(storage.path) == 0
    assert_fsck_clean(storage.path)
    for program_id in ids + more:
        assert ProgramStorage(storage.path).load_program(program_id) is not None

    # Nothing loose: nothing to do.
    assert maintenance.pack_loose_objects(storage.path).objects_packed == 0


def test_packs_are_consolidated_over_the_limit(storage: ProgramStorage) -> None:
    ids = []
    for round_ in range(4):
        ids += [_save(storage, round_ * 10 + i) for i in range(10)]
        report = maintenance.pack_loose_objects(storage.path, pack_limit=3)
    assert report.packs_consolidated == 4
    assert _count_objects(storage.path)["packs"] == 1
    assert _loose_count(storage.path) == 0
    assert_fsck_clean(storage.path)
    for program_id in ids:
        assert ProgramStorage(storage.path).load_program(program_id) is not None


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
    assert_fsck_clean(registry_path)
    fresh = ProgramStorage(registry_path)
    assert len(fresh.list_programs()) == len(ids) == 80
    for program_id in ids:
        assert fresh.load_program(program_id) is not None


def test_automatic_maintenance_triggers_over_the_threshold(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "CHECK_EVERY", 1)
    storage = ProgramStorage(registry_path)
    git(registry_path, "config", "gc.auto", "256")  # due once objects/17 holds 2 entries
    sample = registry_path / "objects" / "17"
    saves = 0
    while not (registry_path / "objects" / "pack").is_dir() or not any(
        (registry_path / "objects" / "pack").glob("*.pack")
    ):
        _save(storage, saves)
        saves += 1
        assert saves < 500, "automatic maintenance never ran"
    assert _count_objects(registry_path)["packs"] == 1
    assert _loose_count(registry_path) == 0
    assert not sample.exists()
    assert_fsck_clean(registry_path)
    assert len(ProgramStorage(registry_path).list_programs()) == saves


@pytest.mark.parametrize("setting", [None, "0"])
def test_automatic_maintenance_stays_idle_under_the_threshold(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None
) -> None:
    monkeypatch.setattr(maintenance, "CHECK_EVERY", 1)
    storage = ProgramStorage(registry_path)
    if setting is not None:
        git(registry_path, "config", "gc.auto", setting)
    for i in range(12):
        _save(storage, i)
    assert _count_objects(registry_path)["packs"] == 0
    assert _loose_count(registry_path) > 12


def test_loose_object_estimate(storage: ProgramStorage) -> None:
    assert maintenance.loose_object_estimate(storage.path) == 0
    sample = storage.path / "objects" / "17"
    sample.mkdir(parents=True, exist_ok=True)
    (sample / ("0" * 38)).write_bytes(b"")
    (sample / "tmp_obj_x").write_bytes(b"")
    assert maintenance.loose_object_estimate(storage.path) == 256


def test_cli_gc(storage: ProgramStorage) -> None:
    for i in range(5):
        _save(storage, i)
    runner = CliRunner()
    result = runner.invoke(cli, ["--registry", str(storage.path), "gc"])
    assert result.exit_code == 0, result.output
    assert "packed" in result.output and "MB" in result.output
    _save(storage, 99)
    result = runner.invoke(cli, ["--registry", str(storage.path), "gc", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["objects_packed"] > 0 and data["packs_after"] == 2
    assert _loose_count(storage.path) == 0
    assert_fsck_clean(storage.path)
