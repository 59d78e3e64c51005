"""Contention: many processes and threads writing at once, and clones syncing while saving.

Every call either returns or raises a progreg error that says why (a writer
that waits past its lock timeout raises ``RegistryBusyError``); no program is
lost or duplicated, ids are unique, ``git fsck --strict`` is clean, main's
history is linear and holds every commit a save returned. Two registries
syncing through a real ``git daemon`` on 127.0.0.1 while both keep saving
end with every program saved on either side.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from progreg import ProgramStorage, PushRejectedError, StorageConfig, StorageManager
from support.gitcli import assert_fsck_clean, git
from support.workers import TESTS, WORKERS
from support.workers.crash_driver import digest

if TYPE_CHECKING:
    from support.servers import GitServer

WORKER = WORKERS / "contention_worker.py"


def run_workers(
    registry: Path, processes: int, threads: int, calls: int, timeouts: list[float]
) -> list[dict[str, Any]]:
    """Start every process, let them go at once, and gather what each call reported."""
    children = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(registry),
                str(k),
                str(threads),
                str(calls),
                str(timeouts[k % len(timeouts)]),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=WORKER.parent,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        )
        for k in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"ready\n", line + (child.stderr.read() if child.stderr else b"")
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
    records = []
    for child in children:
        out, err = child.communicate(timeout=600)
        assert child.returncode == 0, err.decode(errors="replace")
        records += [json.loads(line) for line in out.splitlines()]
    return records


def check_registry(registry: Path, records: list[dict[str, Any]]) -> Counter[str]:
    """Everything the calls that returned did is there; returns the count of each error."""
    crashes = [r["crash"] for r in records if "crash" in r]
    assert not crashes, crashes[0]
    errors = Counter(r["error"] for r in records if not r["ok"])
    assert set(errors) <= {"RegistryBusyError"}, [r for r in records if not r["ok"]][:3]
    saves = [r for r in records if r["ok"] and r["op"] == "save"]
    ids = [r["id"] for r in saves]
    assert len(ids) == len(set(ids)), "a program id was handed out twice"

    storage = ProgramStorage(registry)
    manager = StorageManager(StorageConfig(storage_path=registry), storage=storage)
    on_main = {s.program_id for s in storage.list_programs()}
    assert on_main == set(ids), "programs lost, or saved by calls that failed"
    for record in saves:
        loaded = storage.load_program(record["id"])
        assert loaded is not None and digest(loaded) == record["digest"]

    history = git(registry, "rev-list", "--first-parent", "refs/heads/main").split()
    assert {r["commit"] for r in saves} <= set(history)
    assert git(registry, "rev-list", "--min-parents=2", "refs/heads/main") == ""
    assert len(git(registry, "rev-list", "--max-parents=0", "refs/heads/main").split()) == 1
    actions = git(
        registry,
        "log",
        "--format=%(trailers:key=Progreg-Action,valueonly,separator=)",
        "refs/heads/main",
    ).split()
    assert actions.count("save") == len(saves), "one commit per save that returned, no other"

    refs = set(git(registry, "for-each-ref", "--format=%(refname)").split())
    for record in records:
        if record["ok"] and record["op"] == "tag":
            assert f"refs/tags/{record['tag']}/{record['id']}" in refs
    for record in records:
        if record["ok"] and record["op"] == "checkpoint":
            history_ids = [c.program_id for c in manager.checkpoint_history(record["checkpoint"])]
            assert record["id"] in history_ids
    assert_fsck_clean(registry)
    return errors


def contention(tmp_path: Path, processes: int, threads: int, calls: int) -> None:
    registry = tmp_path / "registry"
    ProgramStorage(registry)
    # a quarter of the processes give up soon: their calls may fail, and must fail cleanly
    records = run_workers(registry, processes, threads, calls, [30.0, 30.0, 30.0, 0.3])
    assert len(records) == processes * threads * calls
    errors = check_registry(registry, records)
    done = Counter(r["op"] for r in records if r["ok"])
    print(
        f"\ncontention: {processes} processes x {threads} threads, {len(records)} calls;"
        f" returned {dict(done)}; failed {dict(errors)}; lost 0"
    )


def test_processes_and_threads_save_tag_and_checkpoint_at_once(tmp_path: Path) -> None:
    contention(tmp_path, processes=8, threads=8, calls=6)


@pytest.mark.slow
def test_processes_and_threads_save_tag_and_checkpoint_at_once_longer(tmp_path: Path) -> None:
    contention(tmp_path, processes=8, threads=8, calls=60)


# -- two clones syncing through git daemon ----------------------------------------------------


def sync_while_saving(git_daemon: GitServer, tmp_path: Path, saves: int) -> None:
    """Each side saves ``saves`` programs, one every few ms, and syncs meanwhile, in a loop."""
    served = git_daemon.create()
    url = git_daemon.url("registry.git")
    sides = {name: ProgramStorage(tmp_path / name) for name in ("alice", "bob")}
    for storage in sides.values():
        storage.add_remote("origin", url)
    saved: dict[str, list[str]] = {name: [] for name in sides}
    syncs: Counter[str] = Counter()
    failures: list[BaseException] = []
    saving = threading.Event()
    saving.set()

    def saver(name: str) -> None:
        storage = ProgramStorage(tmp_path / name)
        try:
            for n in range(saves):
                program = {"instructions": f"{name} {n}"}
                saved[name].append(storage.save_program(program).program_id)
                time.sleep(0.01)  # a pace at which the other side's syncs interleave
        except BaseException as exc:
            failures.append(exc)

    def syncer(name: str) -> None:
        storage = ProgramStorage(tmp_path / name)
        while saving.is_set():
            try:
                storage.sync()
                syncs[f"{name} synced"] += 1
            except PushRejectedError:  # the other side pushed first: pull again, later
                syncs[f"{name} push refused"] += 1
                time.sleep(random.uniform(0, 0.05))
            except BaseException as exc:
                failures.append(exc)
                return

    savers = [threading.Thread(target=saver, args=(name,)) for name in sides]
    syncers = [threading.Thread(target=syncer, args=(name,)) for name in sides]
    for thread in savers + syncers:
        thread.start()
    for thread in savers:
        thread.join(timeout=600)
    saving.clear()
    for thread in syncers:
        thread.join(timeout=600)
    assert not failures, failures
    for name in sides:  # syncs really happened while saving
        assert syncs[f"{name} synced"] + syncs[f"{name} push refused"] >= 1
    for _ in range(4):  # settle: each side pulls what the other pushed last
        for storage in sides.values():
            storage.sync()
    everything = set(saved["alice"]) | set(saved["bob"])
    total = len(saved["alice"]) + len(saved["bob"])
    assert len(everything) == total == 2 * saves
    for name, storage in sides.items():
        assert {s.program_id for s in storage.list_programs()} == everything, name
        assert_fsck_clean(tmp_path / name)
    served_ids = {
        Path(p).stem
        for p in git(served, "ls-tree", "-r", "--name-only", "main", "programs/").split()
    }
    assert served_ids == everything
    assert_fsck_clean(served)
    print(f"\nsync while saving: {total} saves, {dict(syncs)}, lost 0")


def test_two_clones_sync_through_git_daemon_while_saving(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    sync_while_saving(git_daemon, tmp_path, saves=40)


@pytest.mark.slow
def test_two_clones_sync_through_git_daemon_while_saving_longer(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    sync_while_saving(git_daemon, tmp_path, saves=500)
