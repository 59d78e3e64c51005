"""Many writers at once, and the locks that killed writers leave behind.

Writers are real processes (``python -c`` children) and threads, all saving
into one registry; the result is checked with the git command line. Writers
killed at random moments are in ``test_crash.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from progreg import ProgramStorage, RegistryBusyError, StorageConfig, StorageManager
from progreg.git.locking import (
    RECORD_SIZE,
    LockGrant,
    LockRecord,
    lock_is_free,
    parse_record,
    read_record,
    write_lock,
)
from support import workload
from support.gitcli import assert_fsck_clean, git
from support.workers import TESTS

#: A writer process: argv = tests dir, registry, first index, count, writer name, mode.
#: It prints "ready" once it can save, waits for "go" on stdin (mode "wait") or starts
#: at once (mode "run"), then prints the id of every save that returned, flushed.
WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from support import workload
from progreg import ProgramStorage

storage = ProgramStorage(sys.argv[2])
first, count, name, mode = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
print("ready", flush=True)
if mode == "wait":
    sys.stdin.readline()
for i in range(first, first + count):
    saved = storage.save_program(
        workload.program_state(i % 997, demos=2),
        workload.optimization_result(i),
        metadata={"signature_class": workload.signature_of(i), "writer": name, "index": i},
    )
    print(saved.program_id, flush=True)
"""


def start_writer(
    registry: Path, first: int, count: int, name: str, mode: str
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(TESTS),
            str(registry),
            str(first),
            str(count),
            name,
            mode,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != b"ready\n":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"writer {name} did not start: {line!r}\n{err.decode(errors='replace')}")
    return proc


def complete_ids(output: bytes) -> list[str]:
    """Program ids of the complete lines of a writer's output (a killed writer may cut one)."""
    lines = output.split(b"\n")[:-1]  # the last piece has no newline: incomplete or empty
    return [line.decode() for line in lines]


def save_commits(registry: Path) -> list[tuple[str, str]]:
    """(Program-Id, Progreg-Action) of every commit on main."""
    out = git(
        registry,
        "log",
        "--format=%(trailers:key=Program-Id,valueonly,separator=)"
        "%x09%(trailers:key=Progreg-Action,valueonly,separator=)",
        "refs/heads/main",
    )
    return [tuple(line.split("\t")) for line in out.splitlines()]  # type: ignore[misc]


def assert_linear(registry: Path) -> None:
    merges = git(registry, "rev-list", "--min-parents=2", "refs/heads/main")
    assert merges == "", "progreg never makes merge commits"
    roots = git(registry, "rev-list", "--max-parents=0", "refs/heads/main").split()
    assert len(roots) == 1


def check_program(storage: ProgramStorage, program_id: str) -> None:
    loaded = storage.load_program(program_id)
    assert loaded is not None, f"saved program {program_id} is missing"
    index = loaded.metadata["index"]
    assert loaded.program == workload.program_state(index % 997, demos=2)
    assert loaded.optimization_result == workload.optimization_result(index)


# -- many writers at once --------------------------------------------------------------------


def test_processes_and_threads_saving_at_once(registry_path: Path) -> None:
    processes, threads, per_writer = 3, 4, 20
    ProgramStorage(registry_path)  # create it, empty: the first save races too
    children = [
        start_writer(registry_path, 1000 * (k + 1), per_writer, f"process-{k}", "wait")
        for k in range(processes)
    ]
    shared = ProgramStorage(registry_path)
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)
    stop_reading = threading.Event()
    reads = [0]

    def thread_writer(k: int) -> None:
        # two threads share one ProgramStorage, the others have their own
        storage = shared if k < 2 else ProgramStorage(registry_path)
        ids = []
        try:
            barrier.wait()
            for i in range(per_writer):
                index = 100 * k + i
                saved = storage.save_program(
                    workload.program_state(index % 997, demos=2),
                    workload.optimization_result(index),
                    metadata={"writer": f"thread-{k}", "index": index},
                )
                ids.append(saved.program_id)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        results[f"thread-{k}"] = ids

    def reader(storage: ProgramStorage) -> None:
        try:
            while not stop_reading.is_set():
                for summary in storage.list_programs():
                    assert summary.metadata["index"] >= 0
                storage.get_history()
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=thread_writer, args=(k,)) for k in range(threads)]
    readers = [
        threading.Thread(target=reader, args=(storage,))
        for storage in (shared, ProgramStorage(registry_path))
    ]
    for worker in workers + readers:
        worker.start()
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
    barrier.wait()
    for worker in workers:
        worker.join(timeout=120)
    stop_reading.set()
    for worker in readers:
        worker.join(timeout=120)
    for k, child in enumerate(children):
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode(errors="replace")
        results[f"process-{k}"] = complete_ids(out)
    assert not errors, errors
    assert reads[0] > 0

    total = (processes + threads) * per_writer
    returned = [program_id for ids in results.values() for program_id in ids]
    assert all(len(ids) == per_writer for ids in results.values())
    assert len(returned) == total
    assert len(set(returned)) == total, "program ids must be unique"

    storage = ProgramStorage(registry_path)
    listed = {s.program_id: s.metadata["writer"] for s in storage.list_programs()}
    assert set(listed) == set(returned)
    for writer, ids in results.items():
        assert {listed[program_id] for program_id in ids} == {writer}
    for program_id in returned:
        check_program(storage, program_id)

    commits = save_commits(registry_path)
    assert len(commits) == total, "exactly one commit per save"
    assert {action for _, action in commits} == {"save"}
    assert sorted(program_id for program_id, _ in commits) == sorted(returned)
    assert_linear(registry_path)
    assert_fsck_clean(registry_path)
    assert storage.get_history().summary.total_programs == total


# -- stale and live locks ----------------------------------------------------------------------


@contextmanager
def caught_events(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.set_level(logging.INFO, logger="progreg")
    caplog.clear()
    records: list[logging.LogRecord] = []
    yield records
    records += [r for r in caplog.records if hasattr(r, "event")]


def simulate_crash_in_critical_section(registry: Path, lock_age: float) -> Path:
    """Leave what a writer SIGKILLed between taking the lock and moving main leaves.

    Its record says ``held`` since a moment before it created ``main.lock``.
    ``lock_age`` is how long before now the ref lock was created.
    """
    lock = registry / "refs" / "heads" / "main.lock"
    tip = git(registry, "rev-parse", "refs/heads/main")
    lock.write_text(tip)
    created = time.time() - lock_age
    os.utime(lock, (created, created))
    (registry / "progreg.lock").write_text(f"held pid=99999 since={created - 0.5:.6f}\n")
    return lock


def test_stale_ref_lock_of_a_killed_writer_is_removed(
    storage: ProgramStorage, registry_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = storage.save_program(workload.program_state(0), workload.optimization_result(0))
    lock = simulate_crash_in_critical_section(registry_path, lock_age=2.0)
    with caught_events(caplog) as records:
        saved = ProgramStorage(registry_path, lock_timeout=5).save_program(
            workload.program_state(1), workload.optimization_result(1)
        )
    assert not lock.exists()
    assert git(registry_path, "rev-parse", "refs/heads/main").strip() == saved.commit
    assert git(registry_path, "log", "-1", "--format=%P", saved.commit).strip() == first.commit
    assert (registry_path / "progreg.lock").read_text() == "released".ljust(63) + "\n"
    recovered = [r for r in records if r.event == "progreg.lock.recovered"]  # type: ignore[attr-defined]
    assert [r.lock_path for r in recovered] == [str(lock)]  # type: ignore[attr-defined]
    assert recovered[0].levelno == logging.WARNING
    assert_fsck_clean(registry_path)


def test_a_lock_older_than_the_crashed_holder_is_not_removed(
    storage: ProgramStorage, registry_path: Path
) -> None:
    """A ref lock that predates the crashed writer's record belongs to someone else."""
    storage.save_program({"a": 1})
    lock = simulate_crash_in_critical_section(registry_path, lock_age=2.0)
    (registry_path / "progreg.lock").write_text(f"held pid=99999 since={time.time():.6f}\n")
    with pytest.raises(RegistryBusyError):
        ProgramStorage(registry_path, lock_timeout=0.3).save_program({"b": 2})
    assert lock.exists()


def test_a_live_ref_lock_makes_save_wait_then_fail(
    storage: ProgramStorage, registry_path: Path
) -> None:
    """A ``main.lock`` under a clean ``released`` record is another Git process at work."""
    storage.save_program({"a": 1})
    refs_before = git(registry_path, "for-each-ref")
    lock = registry_path / "refs" / "heads" / "main.lock"
    lock.write_text(git(registry_path, "rev-parse", "refs/heads/main"))
    (registry_path / "progreg.lock").write_text("released\n")
    busy = ProgramStorage(registry_path, lock_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RegistryBusyError) as info:
        busy.save_program(workload.program_state(3), workload.optimization_result(3))
    waited = time.monotonic() - started
    assert 0.5 <= waited < 10
    assert str(lock) in str(info.value)
    assert lock.exists()
    assert git(registry_path, "for-each-ref") == refs_before
    # once the other process is done, saving works again
    lock.unlink()
    saved = busy.save_program(workload.program_state(3), workload.optimization_result(3))
    assert busy.load_program(saved.program_id) is not None


def test_a_writer_holding_the_registry_lock_makes_others_wait(
    storage: ProgramStorage, registry_path: Path
) -> None:
    fcntl = pytest.importorskip("fcntl")
    storage.save_program({"a": 1})
    refs_before = git(registry_path, "for-each-ref")
    fd = os.open(registry_path / "progreg.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        busy = ProgramStorage(registry_path, lock_timeout=0.3)
        with pytest.raises(RegistryBusyError, match=r"progreg\.lock"):
            busy.save_program({"b": 2})
        assert git(registry_path, "for-each-ref") == refs_before
        # a writer that waits long enough gets the lock when it is released
        done: list[Any] = []
        waiting = ProgramStorage(registry_path, lock_timeout=30)
        thread = threading.Thread(target=lambda: done.append(waiting.save_program({"c": 3})))
        thread.start()
        time.sleep(0.2)
        assert done == []
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    thread.join(timeout=30)
    assert len(done) == 1
    assert waiting.load_program(done[0].program_id) is not None


# -- the lock record ---------------------------------------------------------------------------


def test_the_lock_record_is_one_fixed_size_line(
    storage: ProgramStorage, registry_path: Path
) -> None:
    lock_file = registry_path / "progreg.lock"
    storage.save_program({"a": 1})
    assert lock_file.read_bytes() == b"released".ljust(63) + b"\n"
    with write_lock(registry_path, 5):
        held = lock_file.read_bytes()
        assert len(held) == RECORD_SIZE
        record = read_record(registry_path)
        assert (record.state, record.pid) == ("held", os.getpid())
        assert record.since is not None and abs(record.since - time.time()) < 60
    assert read_record(registry_path) == LockRecord("released")
    assert lock_file.stat().st_size == RECORD_SIZE


def test_records_of_other_layouts_are_read_and_replaced(
    storage: ProgramStorage, registry_path: Path
) -> None:
    lock_file = registry_path / "progreg.lock"
    since = round(time.time() - 5, 6)
    lock_file.write_text(f"held pid=4242 since={since:.6f}\n" + "x" * 100)  # longer than a record
    assert read_record(registry_path) == LockRecord("held", 4242, since)
    with write_lock(registry_path, 5) as grant:
        assert grant == LockGrant(True, since)
        assert lock_file.stat().st_size == RECORD_SIZE
    lock_file.write_text("")  # an empty file: nobody held it
    with write_lock(registry_path, 5) as grant:
        assert not grant.previous_holder_crashed
    assert parse_record(b"released\n") == LockRecord("released")
    assert parse_record(b"something else") == LockRecord("unknown")


def test_the_lock_is_reentrant_within_a_thread_only(
    storage: ProgramStorage, registry_path: Path
) -> None:
    outcome: list[BaseException | None] = []

    def other_thread() -> None:
        try:
            with write_lock(registry_path, 0.2):
                outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with write_lock(registry_path, 5):
        with write_lock(registry_path, 5) as inner:
            assert not inner.previous_holder_crashed
            assert read_record(registry_path).state == "held"
        assert read_record(registry_path).state == "held"  # the inner exit released nothing
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=30)
        assert lock_is_free(registry_path) is False
    assert len(outcome) == 1 and isinstance(outcome[0], RegistryBusyError)
    assert lock_is_free(registry_path) is True
    assert read_record(registry_path).state == "released"


# -- tag locks ---------------------------------------------------------------------------------


def test_a_tag_lock_left_by_a_killed_writer_is_removed(
    storage: ProgramStorage, registry_path: Path
) -> None:
    manager = StorageManager(StorageConfig(storage_path=registry_path), storage=storage)
    saved = storage.save_program({"a": 1})
    since = time.time() - 2
    lock = registry_path / "refs" / "tags" / "best" / f"{saved.program_id}.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    (registry_path / "progreg.lock").write_text(f"held pid=99999 since={since:.6f}\n")
    assert manager.tag_program(saved.program_id, "best") == ["best"]
    assert not lock.exists()
    assert git(registry_path, "for-each-ref", "--format=%(refname)", "refs/tags/").split() == [
        f"refs/tags/best/{saved.program_id}"
    ]
    assert_fsck_clean(registry_path)


def test_a_tag_lock_of_another_git_process_is_refused_pointing_at_doctor(
    storage: ProgramStorage, registry_path: Path
) -> None:
    manager = StorageManager(
        StorageConfig(storage_path=registry_path),
        storage=ProgramStorage(registry_path, lock_timeout=0.5),
    )
    saved = storage.save_program({"a": 1})
    manager.tag_program(saved.program_id, "old")
    refs_before = git(registry_path, "for-each-ref")
    locks = [
        registry_path / "refs" / "tags" / tag / f"{saved.program_id}.lock" for tag in ("new", "old")
    ]
    for lock in locks:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("")
    with pytest.raises(RegistryBusyError) as tagging:
        manager.tag_program(saved.program_id, "new")
    with pytest.raises(RegistryBusyError) as untagging:
        manager.untag_program(saved.program_id, "old")
    for lock, raised in zip(locks, (tagging, untagging), strict=True):
        message = str(raised.value)
        assert str(lock) in message and "progreg doctor" in message
        assert lock.exists()
    assert git(registry_path, "for-each-ref") == refs_before
    for lock in locks:
        lock.unlink()
    assert manager.tag_program(saved.program_id, "new") == ["new"]
    assert manager.untag_program(saved.program_id, "old") == ["old"]
