"""A fleet of workers saving and syncing through one ``git daemon``: throughput and visibility.

Usage: .venv/bin/python benchmarks/bench_fleet.py [--workers 1,4,8] [--saves 10] [--pace 0.3]
[--no-hook]

For each fleet size, a fresh bare repository is served by ``git daemon`` on
127.0.0.1 with progreg's pre-receive hook installed (``--no-hook``: without
it), and one program is pushed to it first. Then that many worker processes
start at once, each with its own registry whose remote ``origin`` is the
server; each saves ``--saves`` realistic programs, one per trial of a random
length up to ``--pace`` seconds, while a second thread of the worker calls
``sync()`` in a loop (after a refused sync, a random pause of 10 to 100 ms),
and goes on syncing after its last save until a sync that began after it
succeeds. Prints, per fleet size: the seconds from the start to the last
worker done, the throughput (saves on the server's main per second, checked
with ``git ls-tree``), its ratio to the single writer's measured in the same
run, the median and p90 time from a save returning to the return of the
first sync that began after it and succeeded (the save is then on the
server's main), and the sync calls, rounds and refused rounds of the fleet.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from multiprocessing.synchronize import Semaphore as SemaphoreType
from pathlib import Path
from typing import Any

from common import start_git_daemon, wait_for_port, workload

from progreg import ProgramStorage, PushRejectedError
from progreg.integrations.hooks import install
from progreg.sharing.remotes import SYNC_ROUNDS

#: Tries of the last sync before a worker gives up (its unsynced saves then count as lost).
FINAL_ATTEMPTS = 60


def git(*args: str) -> str:
    """Run the git command line; raise with its stderr on failure."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr}")
    return done.stdout


def start_daemon(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``git daemon`` serving ``root`` on 127.0.0.1, with receive-pack enabled, once it listens."""
    process, port = start_git_daemon(root)
    wait_for_port(port)
    return process, port


class Worker:
    """A worker's registry, its saves not synced yet, and what it counts."""

    def __init__(self, number: int, registry: str, saves: int, pace: float) -> None:
        self.number, self.registry, self.saves, self.pace = number, registry, saves, pace
        self.lock = threading.Lock()
        self.pending: list[float] = []
        self.latencies: list[float] = []
        self.counts = {"syncs": 0, "rounds": 0, "refused": 0}
        self.done = threading.Event()

    def saver(self) -> None:
        """Save ``saves`` programs, one per trial of a random length up to ``pace`` seconds."""
        rng = random.Random(self.number)
        storage = ProgramStorage(self.registry)
        try:
            for n in range(self.saves):
                time.sleep(rng.uniform(0, self.pace))
                index = self.number * 100_000 + n
                state = workload.program_state(index)
                storage.save_program(state, workload.optimization_result(index))
                with self.lock:
                    self.pending.append(time.monotonic())
        finally:
            self.done.set()

    def sync(self, storage: ProgramStorage) -> bool:
        """One ``sync()``; True when it succeeded (the saves made before it are on the server)."""
        with self.lock:
            carried = len(self.pending)
        self.counts["syncs"] += 1
        try:
            rounds = storage.sync().rounds
        except PushRejectedError:  # every round refused: the others kept pushing first
            self.counts["rounds"] += SYNC_ROUNDS
            self.counts["refused"] += SYNC_ROUNDS
            return False
        now = time.monotonic()
        self.counts["rounds"] += rounds
        self.counts["refused"] += rounds - 1
        with self.lock:
            self.latencies.extend(now - saved for saved in self.pending[:carried])
            del self.pending[:carried]
        return True

    def syncer(self) -> None:
        """Sync in a loop while saving, then until every save is synced (or give up)."""
        rng = random.Random(-1 - self.number)
        storage = ProgramStorage(self.registry)
        while not self.done.is_set():
            with self.lock:
                waiting = bool(self.pending)
            if not waiting:
                time.sleep(0.02)
            elif not self.sync(storage):
                time.sleep(rng.uniform(0.01, 0.1))
        for _ in range(FINAL_ATTEMPTS):
            with self.lock:
                if not self.pending:
                    return
            if not self.sync(storage):
                time.sleep(rng.uniform(0.01, 0.1))


def worker(
    number: int,
    registry: str,
    url: str,
    saves: int,
    pace: float,
    ready: SemaphoreType,
    go: EventType,
    out: Any,
) -> None:
    """One worker process: a saving thread and a syncing thread on its own registry."""
    ProgramStorage(registry).add_remote("origin", url)
    state = Worker(number, registry, saves, pace)
    ready.release()
    go.wait()
    threads = [threading.Thread(target=state.saver), threading.Thread(target=state.syncer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put({"latencies": state.latencies, "unsynced": len(state.pending), **state.counts})


@dataclass
class FleetRun:
    """What one fleet size measured."""

    workers: int
    saves: int
    seconds: float
    latencies: list[float]
    syncs: int
    rounds: int
    refused: int
    lost: int

    @property
    def rate(self) -> float:
        return self.saves / self.seconds


def run_fleet(root: Path, workers: int, saves: int, pace: float, hook: bool) -> FleetRun:
    """Serve a fresh repository, run ``workers`` workers through it, check and measure."""
    served_root = root / f"served-{workers}"
    served_root.mkdir()
    served = served_root / "registry.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(served))
    if hook:
        install(served)
    daemon, port = start_daemon(served_root)
    url = f"git://127.0.0.1:{port}/registry.git"
    try:
        seeder = ProgramStorage(root / f"seeder-{workers}")
        seeder.save_program(workload.program_state(0), workload.optimization_result(0))
        seeder.add_remote("origin", url)
        seeder.push()
        context = multiprocessing.get_context("spawn")
        ready = context.Semaphore(0)
        go = context.Event()
        out = context.Queue()
        processes = [
            context.Process(
                target=worker,
                args=(n, str(root / f"fleet-{workers}-{n}"), url, saves, pace, ready, go, out),
            )
            for n in range(workers)
        ]
        for process in processes:
            process.start()
        for _ in processes:  # every registry made, its remote added: start the clock
            ready.acquire()
        start = time.monotonic()
        go.set()
        results = [out.get(timeout=1800) for _ in processes]
        seconds = time.monotonic() - start
        for process in processes:
            process.join()
    finally:
        daemon.terminate()
        daemon.wait()
    paths = git("-C", str(served), "ls-tree", "-r", "--name-only", "main", "--", "programs")
    on_main = len(paths.split()) - 1  # the seeder's program is not the fleet's
    total = workers * saves
    lost = total - sum(len(r["latencies"]) for r in results)  # never acknowledged by a sync
    if on_main < total - lost:
        raise RuntimeError(f"the server holds {on_main} of the {total - lost} programs synced")
    return FleetRun(
        workers=workers,
        saves=total - lost,
        seconds=seconds,
        latencies=[latency for r in results for latency in r["latencies"]],
        syncs=sum(r["syncs"] for r in results),
        rounds=sum(r["rounds"] for r in results),
        refused=sum(r["refused"] for r in results),
        lost=lost,
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,8", help="fleet sizes, comma-separated")
    parser.add_argument("--saves", type=int, default=10, help="saves per worker")
    parser.add_argument("--pace", type=float, default=0.3, help="longest pause between saves (s)")
    parser.add_argument("--no-hook", action="store_true", help="serve without progreg's hook")
    args = parser.parse_args()
    sizes = [int(size) for size in args.workers.split(",")]
    if 1 not in sizes:
        sizes.insert(0, 1)  # the single writer every ratio is against
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")
    runs: list[FleetRun] = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in sizes:
            print(f"fleet of {workers} ...", flush=True)
            runs.append(run_fleet(Path(tmp), workers, args.saves, args.pace, not args.no_hook))
    single = next(run for run in runs if run.workers == 1).rate
    hook = "without the hook" if args.no_hook else "with progreg's pre-receive hook"
    print(
        f"\nfleet through git daemon (127.0.0.1), {hook}: {args.saves} saves per worker,"
        f" a save every 0-{args.pace:g} s, sync() in a loop"
    )
    print(
        f"{'workers':>7}{'saves':>7}{'seconds':>9}{'saves/s':>9}{'ratio':>8}"
        f"{'median ms':>11}{'p90 ms':>9}{'syncs':>7}{'rounds':>8}{'refused':>9}{'lost':>6}"
    )
    for run in runs:
        print(
            f"{run.workers:>7}{run.saves:>7}{run.seconds:>9.1f}{run.rate:>9.2f}"
            f"{run.rate / single:>7.2f}x{statistics.median(run.latencies) * 1000:>11.0f}"
            f"{percentile(run.latencies, 0.9) * 1000:>9.0f}{run.syncs:>7}{run.rounds:>8}"
            f"{run.refused:>9}{run.lost:>6}"
        )


if __name__ == "__main__":
    main()
