"""Writers SIGKILLed at random moments: nothing that returned is ever lost.

A worker process (:mod:`crash_driver`) makes a random mix of registry calls
and logs each call it begins and each call that returned; the test kills it
after a random delay, then checks the wreck with progreg and the git command
line: the registry opens, ``git fsck --strict`` is clean, every returned call
is there (saved programs load with the exact content, tags and checkpoints
exist, deleted programs are gone, imported ones present), the one call in
flight either happened or did not, and the next writer is not wedged by
anything the dead one left. Each registry takes several kills in a row, so
each round starts from the previous wreck.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from progreg import ProgramStorage, StorageConfig, StorageManager
from progreg.git.locking import read_record, ref_lock_files
from progreg.registry.doctor import diagnose
from support.gitcli import assert_fsck_clean, git
from support.workers import WORKERS
from support.workers.crash_driver import digest

DRIVER = WORKERS / "crash_driver.py"


@dataclass
class Bundle:
    """A bundle prepared beforehand, and the digest of each program in it."""

    path: Path
    digests: dict[str, str]


@dataclass
class Expected:
    """What a registry must hold after the calls that returned."""

    present: dict[str, str] = field(default_factory=dict)  # program id -> digest
    deleted: set[str] = field(default_factory=set)
    last_digest: dict[str, str] = field(default_factory=dict)  # of every id ever present
    tags: set[tuple[str, str]] = field(default_factory=set)
    checkpoints: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class Tally:
    """What the kills did, for the report."""

    kills: int = 0
    calls_returned: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    died_holding_lock: int = 0
    locks_left: int = 0
    temp_files: int = 0


class Zygote:
    """The driver's fork server, started once per test."""

    def __init__(self, log_dir: Path) -> None:
        self.stderr = (log_dir / "driver-stderr.txt").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=DRIVER.parent,
        )

    def start(self, job: dict[str, Any]) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(job) + "\n").encode())
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line.strip().isdigit(), f"the driver did not fork a worker: {line!r}"
        return int(line)

    def wait(self) -> int:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line.startswith("exit "), f"the driver did not report the worker's end: {line!r}"
        return int(line.split()[1])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.stderr.close()


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    server = Zygote(tmp_path)
    yield server
    server.close()


def prepare_bundles(tmp_path: Path, count: int) -> list[Bundle]:
    """``count`` bundles of three programs each, from registries of their own."""
    bundles = []
    for k in range(count):
        source = ProgramStorage(tmp_path / f"source-{k}")
        saved = [
            source.save_program({"instructions": f"bundled {k}.{n}"}, {"best_score_value": n / 3})
            for n in range(3)
        ]
        path = tmp_path / f"bundle-{k}.bundle"
        source.export_programs([s.program_id for s in saved], path)
        loaded = [source.load_program(s.program_id) for s in saved]
        bundles.append(Bundle(path, {s.program_id: digest(s) for s in loaded if s is not None}))
    return bundles


def read_log(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The calls that returned, and the one begun but not returned (if any)."""
    lines = path.read_bytes().split(b"\n")[:-1] if path.exists() else []
    done: list[dict[str, Any]] = []
    begun: dict[str, Any] | None = None
    for line in lines:
        record = json.loads(line)
        if "error" in record:
            pytest.fail(f"the worker failed: {record['error']}\n{record['traceback']}")
        if "begin" in record:
            begun = record
        else:
            assert begun is not None and begun["begin"] == record["done"]
            done.append(record)
            begun = None
    return done, begun


def apply(expected: Expected, record: dict[str, Any], bundles: list[Bundle]) -> None:
    """Update what must hold after the returned call ``record``."""
    programs: dict[str, str | None] = dict(record.get("programs", {}))
    if record["done"] == "import":
        bundle = bundles[record["bundle"]]
        programs.update({i: bundle.digests[i] for i in record["imported"]})
    for program_id, content in programs.items():
        if content is None:
            expected.present.pop(program_id, None)
            expected.deleted.add(program_id)
        else:
            expected.present[program_id] = content
            expected.last_digest[program_id] = content
            expected.deleted.discard(program_id)
    expected.tags.update((tag, program_id) for tag, program_id in record.get("tags", []))
    if "checkpoint" in record:
        name, program_id = record["checkpoint"]
        expected.checkpoints.add((name, program_id))


def actual_programs(storage: ProgramStorage) -> dict[str, str]:
    """The digest of every program on main, loaded one by one."""
    found = {}
    for summary in storage.list_programs():
        loaded = storage.load_program(summary.program_id)
        assert loaded is not None, f"{summary.program_id} is listed but does not load"
        found[summary.program_id] = digest(loaded)
    return found


def check_programs(
    actual: dict[str, str], expected: Expected, begun: dict[str, Any] | None, bundles: list[Bundle]
) -> None:
    """Every returned call is in ``actual``; the call in flight happened or not, nothing else."""
    op = begun["begin"] if begun is not None else None
    target = begun.get("id") if begun is not None else None
    for program_id, content in expected.present.items():
        if program_id not in actual:
            assert op == "cleanup" or (op == "delete" and target == program_id), (
                f"program {program_id}, saved by a call that returned, is missing (in flight: {op})"
            )
        elif actual[program_id] != content:
            assert op == "version" and target == program_id, (
                f"program {program_id} does not hold what the last returned call wrote"
            )
    for program_id in expected.deleted & set(actual):
        if op == "restore" and target == program_id:
            assert actual[program_id] == expected.last_digest[program_id]
        elif op == "import" and program_id in bundles[begun["bundle"]].digests:  # type: ignore[index]
            assert actual[program_id] == bundles[begun["bundle"]].digests[program_id]  # type: ignore[index]
        else:
            pytest.fail(f"deleted program {program_id} is back (in flight: {op})")
    unknown = set(actual) - set(expected.present) - expected.deleted
    if unknown:
        assert begun is not None, f"programs nobody saved: {sorted(unknown)}"
        if op == "import":
            bundle = bundles[begun["bundle"]]
            assert {i: actual[i] for i in unknown} == {i: bundle.digests[i] for i in unknown}
        else:
            assert op in ("save", "batch"), f"programs nobody saved: {sorted(unknown)}"
            assert len(unknown) <= (begun["size"] if op == "batch" else 1)


def check_refs(
    registry: Path, manager: StorageManager, expected: Expected, begun: dict[str, Any] | None
) -> None:
    refs = set(git(registry, "for-each-ref", "--format=%(refname)").split())
    for tag, program_id in expected.tags:
        assert f"refs/tags/{tag}/{program_id}" in refs, f"tag {tag} of {program_id} is missing"
    for name, program_id in expected.checkpoints:
        history = [info.program_id for info in manager.checkpoint_history(name)]
        assert program_id in history, f"checkpoint {name} lost {program_id}"
    assert "refs/heads/main" in refs or not expected.present


def settle(registry: Path, expected: Expected, actual: dict[str, str]) -> None:
    """Take the registry as it is (the call in flight resolved) as the next round's start."""
    for program_id in set(expected.present) - set(actual):
        expected.deleted.add(program_id)
    expected.present = dict(actual)
    expected.last_digest.update(actual)
    expected.deleted -= set(actual)
    names = git(registry, "for-each-ref", "--format=%(refname)", "refs/tags/").split()
    expected.tags = {tuple(name.split("/")[2:4]) for name in names}  # type: ignore[misc]


def next_writer(registry: Path, expected: Expected, round_id: int) -> None:
    """A new writer saves, tags, checkpoints and deletes without waiting on the dead one."""
    storage = ProgramStorage(registry, lock_timeout=5)
    manager = StorageManager(StorageConfig(storage_path=registry), storage=storage)
    saved = storage.save_program({"after_kill": round_id}, {"best_score_value": 0.5})
    assert git(registry, "rev-parse", "refs/heads/main").strip() == saved.commit
    assert manager.tag_program(saved.program_id, "after-kill") == ["after-kill"]
    manager.create_checkpoint(
        SimpleNamespace(optimized_program={"k": 1}, best_score_value=1.0), "after-kill"
    )
    assert storage.delete_program(saved.program_id)
    assert ref_lock_files(registry) == [], "a ref lock outlived the next writer"
    expected.deleted.add(saved.program_id)
    expected.last_digest[saved.program_id] = digest(saved)
    expected.tags.add(("after-kill", saved.program_id))


def kill_round(
    zygote: Zygote,
    registry: Path,
    seed: int,
    expected: Expected,
    bundles: list[Bundle],
    tally: Tally,
) -> None:
    """One worker, killed after a random delay; then every check."""
    rng = random.Random(seed)
    log = registry.parent / f"log-{seed}.jsonl"
    job = {
        "registry": str(registry),
        "seed": seed,
        "bundles": [str(b.path) for b in bundles],
        "log": str(log),
        "deleted": sorted(expected.deleted),
    }
    pid = zygote.start(job)
    time.sleep(rng.uniform(0.0, 0.3))
    os.kill(pid, signal.SIGKILL)
    status = zygote.wait()
    done, begun = read_log(log)  # an error line fails here, with the worker's traceback
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    tally.kills += 1
    tally.calls_returned += len(done)
    flight = begun["begin"] if begun is not None else "none"
    tally.in_flight[flight] = tally.in_flight.get(flight, 0) + 1
    tally.died_holding_lock += read_record(registry).state == "held"
    tally.locks_left += bool(ref_lock_files(registry))

    for record in done:
        apply(expected, record, bundles)
    storage = ProgramStorage(registry, lock_timeout=5)  # it opens
    manager = StorageManager(StorageConfig(storage_path=registry), storage=storage)
    assert_fsck_clean(registry)
    actual = actual_programs(storage)
    check_programs(actual, expected, begun, bundles)
    check_refs(registry, manager, expected, begun)
    assert storage.verify().ok
    settle(registry, expected, actual)
    next_writer(registry, expected, seed)
    assert_fsck_clean(registry)


def run_kills(
    tmp_path: Path, zygote: Zygote, registries: int, kills_each: int, base_seed: int
) -> Tally:
    bundles = prepare_bundles(tmp_path, 4)
    tally = Tally()
    for r in range(registries):
        registry = tmp_path / f"registry-{r}" / "registry"
        registry.parent.mkdir()
        ProgramStorage(registry)
        expected = Expected()
        for k in range(kills_each):
            kill_round(zygote, registry, base_seed + 1000 * r + k, expected, bundles, tally)
        report = diagnose(registry, fix=True, grace=0.0)  # what the kills left, and the fix
        assert report.ok, report.problems
        tally.temp_files += sum(t.removed for t in report.temp_files)
        assert not [t for t in report.temp_files if not t.removed]
        assert_fsck_clean(registry)
        assert actual_programs(ProgramStorage(registry)) == expected.present
    print(
        f"\ncrash harness: {tally.kills} kills survived, {tally.calls_returned} calls returned"
        f" and checked; died holding the write lock: {tally.died_holding_lock}; left a ref lock"
        f" behind: {tally.locks_left}; temporary files doctor --fix removed: {tally.temp_files};"
        f" call in flight: {dict(sorted(tally.in_flight.items()))}"
    )
    return tally


def test_killed_at_random_moments(tmp_path: Path, zygote: Zygote) -> None:
    tally = run_kills(tmp_path, zygote, registries=4, kills_each=10, base_seed=1)
    assert tally.kills == 40
    assert tally.calls_returned > 100  # the workers really worked between kills


@pytest.mark.slow
def test_killed_at_random_moments_many_times(tmp_path: Path, zygote: Zygote) -> None:
    tally = run_kills(tmp_path, zygote, registries=50, kills_each=11, base_seed=100_000)
    assert tally.kills == 550
    # the point of the test: some workers really died inside their critical section
    assert tally.died_holding_lock > 0
    assert len(tally.in_flight) >= 8
