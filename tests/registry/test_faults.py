"""Resource faults: a full disk, a read-only registry, a file where the registry should be,
damaged and missing objects.

Every call either works or raises a specific progreg error that names what is
wrong; a failed call leaves the registry as it was (refs, HEAD, ``git fsck
--strict`` clean; a write that failed half way may leave unreferenced
objects, which Git's garbage collection removes); a damaged registry is
reported by ``verify`` (which objects, which programs) and never silently
returns wrong data.

The full disk is a small tmpfs and the read-only registry a read-only bind
mount, both made by a child process (:mod:`fault_driver`) in a private mount
namespace (``unshare``), so nothing outside the test sees them.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from progreg import (
    DamagedObjectError,
    NotARegistryError,
    ProgramStorage,
    StorageConfig,
    StorageManager,
)
from progreg.cli import cli
from progreg.core.ids import program_path
from support.gitcli import assert_fsck_clean, git, registry_state, unpack_to_loose
from support.workers import WORKERS

DRIVER = WORKERS / "fault_driver.py"
#: Ways to get a private mount namespace in which this process may mount.
NAMESPACES = (
    ("unshare", "--mount", "--propagation", "private"),
    ("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"),
)
WRITES = (
    "save",
    "save_programs",
    "version",
    "tag",
    "checkpoint",
    "delete",
    "restore",
    "import",
    "gc",
    "pull",
    "push",
    "export",
)
READS = ("load", "list", "find", "verify")
#: What each read returns on the prepared registry, full disk or not.
READ_RESULTS = {"load": True, "list": 3, "find": 3, "verify": True}


@functools.cache
def namespace() -> tuple[tuple[str, ...] | None, str]:
    """A command prefix that runs a child in a mount namespace where it may mount, and why not."""
    if shutil.which("unshare") is None:
        return None, "the unshare command (util-linux) is not installed"
    reasons = []
    with tempfile.TemporaryDirectory() as scratch:
        for prefix in NAMESPACES:
            probe = subprocess.run(
                [*prefix, "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", scratch],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0:
                return prefix, ""
            reasons.append(f"{' '.join(prefix)}: {probe.stderr.strip()}")
    return None, "cannot mount in a private mount namespace (" + "; ".join(reasons) + ")"


def run_driver(tmp_path: Path, job: dict[str, Any]) -> dict[str, Any]:
    prefix, reason = namespace()
    if prefix is None:
        pytest.skip(f"needs a mount namespace to make a full disk or a read-only mount: {reason}")
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    done = subprocess.run(
        [*prefix, sys.executable, str(DRIVER), str(job_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def noise(seed: int, size: int) -> str:
    """Text that does not compress: what fills a disk."""
    return random.Random(seed).randbytes(size // 2).hex()


def prepared(tmp_path: Path) -> dict[str, Any]:
    """A registry with programs, a tag, a deleted program and a bundle to import."""
    source = tmp_path / "source" / "registry"
    storage = ProgramStorage(source)
    manager = StorageManager(StorageConfig(storage_path=source), storage=storage)
    saved = [
        storage.save_program({"instructions": noise(n, 4000)}, {"best_score_value": n})
        for n in range(4)
    ]
    manager.tag_program(saved[0].program_id, "production")
    storage.delete_program(saved[3].program_id)
    other = ProgramStorage(tmp_path / "other")
    bundled = [other.save_program({"instructions": noise(100 + n, 8000)}) for n in range(3)]
    bundle = tmp_path / "other.bundle"
    other.export_programs([s.program_id for s in bundled], bundle)
    storage.add_remote("origin", str(other.path))  # a pull brings its three programs
    push_target = tmp_path / "push-target"
    ProgramStorage(push_target)  # copied beside the registry, on the full disk: see fault_driver
    storage.add_remote("backup", str(tmp_path / "disk" / "target"))
    return {
        "source": str(source),
        "program": saved[1].program_id,
        "deleted": saved[3].program_id,
        "bundle": str(bundle),
        "push_target": str(push_target),
    }


def leftovers(registry: Path) -> list[str]:
    """Temporary files a failed write left behind in the object directory."""
    objects = registry / "objects"
    found = [*objects.glob("*/tmp_*"), *objects.glob("tmp_*"), *objects.glob("incoming-*")]
    return sorted(str(path.relative_to(registry)) for path in found)


def refs_and_head(registry: Path) -> tuple[str, str]:
    return registry_state(registry)[0], registry_state(registry)[1]


# -- a full disk -------------------------------------------------------------------------------


#: The free space is stepped up from none by one tmpfs page: every amount that can matter.
PAGE = 4096
#: The most amounts tried per call (each call here succeeds within about 40).
POINTS = 400


def sweep_full_disk(tmp_path: Path, points: int) -> dict[str, list[int]]:
    """Run every call at each amount of free space from none up to the first that lets it
    succeed, checking each failure; the amounts tried, by call."""
    job = prepared(tmp_path)
    source = Path(job["source"])
    before = refs_and_head(source)
    out = tmp_path / "out"
    results = run_driver(
        tmp_path,
        {
            **job,
            "kind": "disk-full",
            "mount": str(tmp_path / "disk"),
            "size": 4 * 1024 * 1024,
            "out": str(out),
            "calls": [*WRITES, *READS],
            "step": PAGE,
            "points": points,
        },
    )
    cli_gc = results.pop("cli-gc")
    assert cli_gc["exit"] == 1 and cli_gc["stderr"].startswith("error: "), cli_gc
    assert "is full" in cli_gc["stderr"]
    swept: dict[str, list[int]] = {}
    for key, result in results.items():
        name, _, leave = key.rpartition("-")
        swept.setdefault(name, []).append(int(leave))
        after = out / key
        if "error" in result:
            assert (result["module"], result["error"]) == ("progreg.errors", "DiskFullError"), (
                result
            )
            assert "is full" in result["message"], result["message"]
            written = {"export": "all.bundle", "push": "target"}.get(name, "registry")
            assert str(tmp_path / "disk" / written) in result["message"]
            assert refs_and_head(after) == before, f"{key} failed but changed refs"
            target = out / f"{key}-target"
            assert refs_and_head(target) == refs_and_head(Path(job["push_target"]))
        assert leftovers(after) == [], f"{key} left temporary files"
        assert_fsck_clean(after)
        retry = result["retry"]
        assert "error" not in retry, f"{key} still fails once there is space: {retry}"
        assert_fsck_clean(out / f"{key}-retry")
    for name in WRITES:
        assert "error" in results[f"{name}-0"], f"{name} on a full disk did not fail"
    for name in READS:
        assert swept[name] == [0]
        assert results[f"{name}-0"]["returned"] == READ_RESULTS[name]
    saved = results["save-0"]["retry"]["returned"]
    assert ProgramStorage(out / "save-0-retry").load_program(saved) is not None
    print(
        "\nfull disk, amounts of free space tried (pages) until the call succeeded: "
        + ", ".join(f"{name} {len(amounts)}" for name, amounts in swept.items())
    )
    return swept


def test_every_write_fails_cleanly_at_every_amount_of_free_space(tmp_path: Path) -> None:
    """Each write, with no free space, then one page more at a time until it succeeds: it
    either raises DiskFullError with no ref moved (the remote's and the tracking refs too)
    and nothing left behind, or succeeds; and it succeeds once the space is freed."""
    swept = sweep_full_disk(tmp_path, POINTS)
    for name, amounts in swept.items():
        assert len(amounts) < POINTS, f"{name} never succeeded within {POINTS} pages"


# -- a read-only registry ---------------------------------------------------------------------


def test_a_read_only_registry_reads_and_refuses_writes_by_name(tmp_path: Path) -> None:
    job = prepared(tmp_path)
    source = Path(job["source"])
    before = registry_state(source)
    results = run_driver(tmp_path, {**job, "kind": "read-only"})
    assert "returned" in results["export"], results["export"]  # it writes beside the registry
    for name in (write for write in WRITES if write not in ("export", "push")):  # push: elsewhere
        result = results[name]
        assert (result.get("module"), result.get("error")) == (
            "progreg.errors",
            "ReadOnlyRegistryError",
        ), result
        assert str(source) in result["message"] and "read-only" in result["message"]
    assert {name: results[name]["returned"] for name in READS} == READ_RESULTS
    assert results["cli-list"]["exit"] == 0 and job["program"] in results["cli-list"]["stdout"]
    assert results["cli-gc"]["exit"] == 1
    assert (
        results["cli-gc"]["stderr"].startswith("error: ")
        and "read-only" in (results["cli-gc"]["stderr"])
    )
    assert registry_state(source) == before
    assert_fsck_clean(source)


# -- not a directory ---------------------------------------------------------------------------


def test_a_registry_path_that_is_a_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "registry"
    path.write_text("not a registry")
    with pytest.raises(NotARegistryError, match=f"{path} is a file"):
        ProgramStorage(path)
    result = CliRunner().invoke(cli, ["--registry", str(path), "list"])
    assert result.exit_code == 1
    assert "is a file" in result.output
    assert path.read_text() == "not a registry"
    nested = path / "registry"
    with pytest.raises(NotARegistryError, match=str(path)):
        ProgramStorage(nested)


# -- damaged objects -----------------------------------------------------------------------------


def populated(tmp_path: Path, *, loose: bool = False) -> tuple[ProgramStorage, list[str]]:
    """A registry of 4 programs; with ``loose``, its objects are loose files (as git writes).

    Their ids start with distinct bytes, so that no tree of the history shares a
    directory of two programs (a test damaging one's directory relies on it).
    """
    storage = ProgramStorage(tmp_path / "registry")
    ids = [
        storage.save_program(
            {"instructions": f"program {n} " * 40},
            {"best_score_value": n / 10},
            {"signature_class": "QA"},
            f"{0x11 * (n + 1):02x}{n:014x}",
        ).program_id
        for n in range(4)
    ]
    if loose:
        unpack_to_loose(storage.path)
        storage = ProgramStorage(storage.path)
    return storage, ids


def loose_file(registry: Path, object_id: str) -> Path:
    path = registry / "objects" / object_id[:2] / object_id[2:]
    path.chmod(0o644)
    return path


def flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0xFF
    path.write_bytes(bytes(data))


def blob_of(registry: Path, program_id: str) -> str:
    return git(registry, "rev-parse", f"main:{program_path(program_id)}").strip()


def check_damage_reported(
    storage: ProgramStorage, object_id: str, programs: list[str], file: str | None
) -> None:
    report = storage.verify()
    assert not report.ok
    [damage] = [d for d in report.damaged_objects if d.object_id == object_id]
    assert damage.programs == programs
    assert damage.refs == ["refs/heads/main"]
    assert damage.file == file
    result = CliRunner().invoke(cli, ["--registry", str(storage.path), "verify", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    assert object_id in [d["object_id"] for d in data["damaged_objects"]]


def test_a_damaged_loose_program_raises_and_is_reported(tmp_path: Path) -> None:
    storage, ids = populated(tmp_path, loose=True)
    victim = ids[1]
    blob = blob_of(storage.path, victim)
    flip(loose_file(storage.path, blob))
    before = registry_state(storage.path)
    fresh = ProgramStorage(storage.path)
    manager = StorageManager(StorageConfig(storage_path=storage.path), storage=fresh)
    with pytest.raises(DamagedObjectError) as raised:
        fresh.load_program(victim)
    assert victim in str(raised.value) and blob in str(raised.value)
    assert raised.value.object_id == blob
    assert "progreg verify" in str(raised.value)
    for call in (fresh.list_programs, fresh.get_history, manager.find_programs):
        with pytest.raises(DamagedObjectError, match=blob):
            call()
    assert fresh.load_program(ids[0]) is not None  # the others still load, unchanged
    assert set(fresh.registry.records()) == set(ids)  # the log is intact: it is correct
    best = manager.get_best_program("QA")  # not the damaged one: it is correct
    assert best is not None and best.program_id == ids[3]
    assert registry_state(storage.path) == before
    check_damage_reported(fresh, blob, [victim], f"objects/{blob[:2]}/{blob[2:]}")
    problems = fresh.verify().problems
    assert [p.program_id for p in problems] == [victim]
    # a damaged program can still be deleted; history keeps the damaged version
    assert fresh.delete_program(victim)
    assert {s.program_id for s in fresh.list_programs()} == set(ids) - {victim}
    assert fresh.verify().problems == []


def test_a_truncated_loose_object_is_found_without_reading_it_through_git(
    tmp_path: Path,
) -> None:
    """libgit2 1.9 loops forever reading a truncated loose object: verify never hands it one."""
    storage, ids = populated(tmp_path, loose=True)
    victim = ids[2]
    blob = blob_of(storage.path, victim)
    tree = git(storage.path, "rev-parse", f"main:programs/{victim[:2]}").strip()
    for object_id in (blob, tree):
        path = loose_file(storage.path, object_id)
        path.write_bytes(path.read_bytes()[:10])
    report = storage.verify()
    found = {d.object_id: d for d in report.damaged_objects}
    assert found[tree].kind == "tree" and "truncated" in found[tree].message
    assert found[tree].paths == [f"programs/{victim[:2]}"]
    assert found[blob].refs == []  # under the damaged tree: nothing reaches it any more
    assert [p.path for p in report.problems] == [f"programs/{victim[:2]}"]
    result = CliRunner().invoke(cli, ["--registry", str(storage.path), "verify"])
    assert result.exit_code == 1
    assert f"tree {tree} (objects/{tree[:2]}/{tree[2:]}): truncated" in result.output


def test_a_missing_object_raises_and_is_reported(tmp_path: Path) -> None:
    storage, ids = populated(tmp_path, loose=True)
    victim = ids[0]
    blob = blob_of(storage.path, victim)
    loose_file(storage.path, blob).unlink()
    with pytest.raises(DamagedObjectError, match=victim):
        ProgramStorage(storage.path).load_program(victim)
    report = storage.verify()
    [damage] = report.damaged_objects
    assert (damage.object_id, damage.file, damage.programs) == (blob, None, [victim])
    assert "missing" in damage.message


def test_a_damaged_pack_raises_and_is_reported(tmp_path: Path) -> None:
    storage, ids = populated(tmp_path)
    victim = ids[3]
    blob = blob_of(storage.path, victim)
    storage.gc()
    [pack] = (storage.path / "objects" / "pack").glob("*.pack")
    listing = git(storage.path, "verify-pack", "-v", str(pack.with_suffix(".idx")))
    offset, size = next(
        (int(line.split()[4]), int(line.split()[3]))
        for line in listing.splitlines()
        if line.startswith(blob)
    )
    pack.chmod(0o644)
    flip(pack, offset + size // 2 + 2)
    fresh = ProgramStorage(storage.path)
    with pytest.raises(DamagedObjectError, match=victim):
        fresh.load_program(victim)
    assert fresh.load_program(ids[0]) is not None
    report = fresh.verify()
    files = {d.file: d for d in report.damaged_objects}
    assert "checksum" in files[str(pack.relative_to(storage.path))].message
    [damage] = [d for d in report.damaged_objects if d.object_id == blob]
    assert damage.programs == [victim] and damage.file is None


def test_a_truncated_pack_is_reported_and_reads_fail(tmp_path: Path) -> None:
    storage, _ = populated(tmp_path)
    storage.gc()
    [pack] = (storage.path / "objects" / "pack").glob("*.pack")
    pack.chmod(0o644)
    pack.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    with pytest.raises(DamagedObjectError):
        ProgramStorage(storage.path)
    result = CliRunner().invoke(cli, ["--registry", str(storage.path), "verify", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert any(d["file"] == str(pack.relative_to(storage.path)) for d in data["damaged_objects"])


def test_a_damaged_tip_commit_refuses_to_open_but_verify_reports_it(tmp_path: Path) -> None:
    storage, _ = populated(tmp_path, loose=True)
    tip = git(storage.path, "rev-parse", "main").strip()
    flip(loose_file(storage.path, tip))
    before = registry_state(storage.path)
    with pytest.raises(DamagedObjectError, match=tip):
        ProgramStorage(storage.path)
    result = CliRunner().invoke(cli, ["--registry", str(storage.path), "verify"])
    assert result.exit_code == 1
    assert f"commit {tip}" in result.output and "NOT OK" in result.output
    assert registry_state(storage.path) == before
