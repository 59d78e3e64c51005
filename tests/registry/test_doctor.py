"""``progreg doctor``: stale locks, temporary files, cache and damage; what --fix removes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from progreg import ProgramStorage, RegistryBusyError
from progreg.cli import cli
from progreg.registry.doctor import diagnose
from progreg.registry.logcache import cache_path
from support.gitcli import assert_fsck_clean, git, registry_state, unpack_to_loose


def doctor(registry: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["--registry", str(registry), "doctor", "--json", *args])
    return result.exit_code, json.loads(result.output)


def aged(path: Path, seconds: float) -> Path:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))
    return path


def leave_crash_debris(registry: Path) -> list[Path]:
    """What a progreg writer SIGKILLed mid-save (and mid-gc, mid-import) leaves behind."""
    since = time.time() - 7200
    (registry / "progreg.lock").write_text(f"held pid=99999 since={since:.6f}\n")
    lock = registry / "refs" / "heads" / "main.lock"
    lock.write_text(git(registry, "rev-parse", "main"))
    aged(lock, 7000)
    debris = [
        registry / "objects" / "ab" / "tmp_object_git2_AbCdEf",
        registry / "objects" / "pack" / "tmp_pack_XyZ123",
        registry / "objects" / "incoming-0123456789ab" / "pack" / "pack-1.pack",
        registry / "progreg-cache" / ".log-index-v1.json.abc.tmp",
    ]
    for path in debris:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
        aged(path, 7000)
    aged(registry / "objects" / "incoming-0123456789ab", 7000)
    return [lock, *debris[:3], registry / "objects" / "incoming-0123456789ab", debris[3]]


def test_a_sound_registry_is_ok(storage: ProgramStorage, registry_path: Path) -> None:
    saved = storage.save_program({"a": 1})
    storage.registry.records()  # writes nothing yet: the cache is written after enough commits
    code, report = doctor(registry_path)
    assert code == 0 and report["ok"] is True
    assert report["problems"] == [] and report["ref_locks"] == [] and report["temp_files"] == []
    assert report["format_version"] == 1
    assert report["write_lock"] == {
        "record": "released",
        "pid": None,
        "since": None,
        "held_now": False,
        "holder_crashed": False,
    }
    assert report["objects"]["loose_objects"] == 0 and report["objects"]["packs"] > 0  # saves pack
    assert report["verify"] == {
        "programs_checked": 1,
        "program_problems": 0,
        "damaged_objects": 0,
        "bad_signatures": 0,
        "tag_problems": 0,
    }
    text = CliRunner().invoke(cli, ["--registry", str(registry_path), "doctor"])
    assert text.exit_code == 0 and text.output.splitlines()[-1] == "ok"
    assert storage.load_program(saved.program_id) is not None


def test_debris_of_a_killed_writer_is_reported_then_fixed(
    storage: ProgramStorage, registry_path: Path
) -> None:
    saved = storage.save_program({"a": 1})
    debris = leave_crash_debris(registry_path)
    before = registry_state(registry_path)
    code, report = doctor(registry_path)
    assert code == 1 and report["ok"] is False
    assert report["write_lock"]["holder_crashed"] is True and report["write_lock"]["pid"] == 99999
    [ref_lock] = report["ref_locks"]
    assert ref_lock["path"] == "refs/heads/main.lock"
    assert ref_lock["left_by"] == "crashed progreg writer" and not ref_lock["removed"]
    assert ref_lock["age_seconds"] >= 6999
    assert {t["path"] for t in report["temp_files"]} == {
        "objects/ab/tmp_object_git2_AbCdEf",
        "objects/pack/tmp_pack_XyZ123",
        "objects/incoming-0123456789ab",
        "progreg-cache/.log-index-v1.json.abc.tmp",
    }
    assert registry_state(registry_path) == before  # looking changes nothing

    code, report = doctor(registry_path, "--fix")
    assert code == 0, report["problems"]
    assert report["ref_locks"][0]["removed"] is True
    assert all(t["removed"] for t in report["temp_files"])
    for path in debris:
        assert not path.exists(), path
    assert (registry_path / "progreg.lock").read_text().split() == ["released"]
    assert_fsck_clean(registry_path)
    after = ProgramStorage(registry_path, lock_timeout=1).save_program({"b": 2})
    assert git(registry_path, "rev-parse", "main").strip() == after.commit
    assert storage.load_program(saved.program_id) is not None
    assert doctor(registry_path)[0] == 0


def test_young_temporary_files_are_left_alone(storage: ProgramStorage, registry_path: Path) -> None:
    storage.save_program({"a": 1})
    young = registry_path / "objects" / "cd" / "tmp_object_git2_young"
    old = registry_path / "objects" / "cd" / "tmp_object_git2_old"
    young.parent.mkdir(exist_ok=True)
    young.write_bytes(b"being written")
    old.write_bytes(b"abandoned")
    aged(old, 600)
    report = diagnose(registry_path, fix=True, grace=300)
    removed = {t.path: t.removed for t in report.temp_files}
    assert removed == {
        "objects/cd/tmp_object_git2_old": True,
        "objects/cd/tmp_object_git2_young": False,
    }
    assert young.exists() and not old.exists()
    assert report.ok  # a temporary file is a note, not a problem
    assert any("perhaps still being written" in note for note in report.notes)


def crashed_git(registry: Path, commands: str, lock: Path) -> None:
    """Run ``git update-ref --stdin`` until it holds its locks, then SIGKILL it."""
    process = subprocess.Popen(
        ["git", "-C", str(registry), "update-ref", "--stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(commands.encode())
    process.stdin.flush()
    assert process.stdout.readline() == b"start: ok\n"
    assert process.stdout.readline() == b"prepare: ok\n"  # the locks are taken
    assert lock.exists()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert lock.exists()


def test_locks_of_a_crashed_git_process_are_reported_never_removed(
    storage: ProgramStorage, registry_path: Path
) -> None:
    saved = storage.save_program({"a": 1})
    git(registry_path, "tag", "packed", "main")
    git(registry_path, "pack-refs", "--all")
    main_lock = registry_path / "refs" / "heads" / "main.lock"
    crashed_git(registry_path, "start\nupdate refs/heads/main HEAD\nprepare\n", main_lock)
    packed_lock = registry_path / "packed-refs.lock"
    crashed_git(registry_path, "start\ndelete refs/tags/packed\nprepare\n", packed_lock)
    refs_before = git(registry_path, "for-each-ref")

    with pytest.raises(RegistryBusyError) as busy:
        ProgramStorage(registry_path, lock_timeout=0.3).save_program({"b": 2})
    assert str(main_lock) in str(busy.value) and "progreg doctor" in str(busy.value)

    code, report = doctor(registry_path, "--fix", "--grace", "0")
    assert code == 1
    locks = {lock["path"]: lock for lock in report["ref_locks"]}
    # git also locked HEAD (main is its target) and the packed tag it was deleting
    assert set(locks) == {
        "HEAD.lock",
        "packed-refs.lock",
        "refs/heads/main.lock",
        "refs/tags/packed.lock",
    }
    assert {lock["left_by"] for lock in locks.values()} == {"other git process"}
    assert not any(lock["removed"] for lock in locks.values())
    assert main_lock.exists() and packed_lock.exists()
    assert any("if no Git process is using the registry" in p for p in report["problems"])
    assert git(registry_path, "for-each-ref") == refs_before

    # the person confirms no git is running and removes them: everything works again
    for name in locks:
        (registry_path / name).unlink()
    (registry_path / "packed-refs.new").unlink(missing_ok=True)
    assert ProgramStorage(registry_path, lock_timeout=1).save_program({"b": 2}).program_id
    assert storage.load_program(saved.program_id) is not None
    # git's plain tag "packed" is not a registry tag: a server's hook would refuse it
    code, report = doctor(registry_path)
    assert code == 1 and report["verify"]["tag_problems"] == 1
    git(registry_path, "tag", "-d", "packed")
    assert doctor(registry_path)[0] == 0
    assert_fsck_clean(registry_path)


def test_a_damaged_cache_is_reported_and_removed(
    storage: ProgramStorage, registry_path: Path
) -> None:
    for n in range(3):
        storage.save_program({"n": n})
    cache = cache_path(registry_path, "refs/heads/main")
    cache.parent.mkdir(exist_ok=True)
    cache.write_text('{"format": "progreg-log-index"}\nnot json')
    report = diagnose(registry_path)
    assert (report.cache.state, report.cache.removed) == ("damaged", False)
    assert report.ok
    report = diagnose(registry_path, fix=True)
    assert (report.cache.state, report.cache.removed) == ("damaged", True)
    assert not cache.exists()
    assert len(ProgramStorage(registry_path).registry.records()) == 3


def test_a_damaged_registry_is_reported(storage: ProgramStorage, registry_path: Path) -> None:
    saved = storage.save_program({"a": "b" * 100})
    tip = git(registry_path, "rev-parse", "main").strip()
    unpack_to_loose(registry_path)  # as plain git leaves objects
    path = registry_path / "objects" / tip[:2] / tip[2:]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:12])  # truncated: libgit2 would never return
    code, report = doctor(registry_path)
    assert code == 1
    assert report["format_version"] is None
    assert "main's tip commit is damaged" in report["problems"]
    assert report["verify"]["damaged_objects"] == 1
    code, quick = doctor(registry_path, "--quick")
    assert code == 1 and quick["verify"] is None
    assert saved.program_id


def test_doctor_on_something_that_is_not_a_registry(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--registry", str(tmp_path / "nothing"), "doctor"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no registry at")
