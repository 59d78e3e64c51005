"""One optimization worker of the fleet test: its own registry, saving and syncing through a server.

``python fleet_worker.py JOB.json`` reads the job: ``registry`` (a path to
create the worker's registry at), ``url`` (the server, added as remote
``origin``), ``worker`` (its number), ``saves`` (how many programs to save),
``pace`` (the longest pause, in seconds, between two saves: an optimizer's
trial), optional ``username``/``password`` (HTTP Basic credentials) and
``result`` (where to write what happened). It prints ``ready``, waits for a
line on stdin (so that every worker starts at once), then runs two threads,
each with its own :class:`~progreg.ProgramStorage` on the registry, as
``sync_while_saving`` in the contention tests does: one saves realistic
workload programs under ids of its own, the other calls ``sync()`` in a
loop. A sync the server refused because other writers kept moving ``main``
is retried after a small random pause; once the last save is made, the
syncer goes on until a sync that began after it succeeds (at most
:data:`FINAL_ATTEMPTS` more tries).

The result (JSON) lists every save (``id``, ``index``, ``commit``) with the
seconds from the save returning to the return of the first sync that began
after it and succeeded (``latency``: by then the save is on the server's
main; ``null`` when no such sync did); the sync calls, the ones that
succeeded, their rounds and refusals, split into those the client saw in the
server's advertisement (``fetch first``) and those the server made after
taking the pack and running its hook (``failed to update ref`` and the
like); every refusal for a reason other than the remote having moved
(``content_refusals``, with the server's reasons) and every other progreg
error. Anything that is not a progreg error is reported as ``crash``.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pygit2

from progreg import Event, ProgramStorage, ProgregError, PushRejectedError, subscribe
from progreg.sharing.remotes import SYNC_ROUNDS
from support.workload import optimization_result, program_state

#: Tries of the last sync before the worker gives up and reports its saves unacknowledged.
FINAL_ATTEMPTS = 60
#: What a server says when it refused a ref only because someone else updated it first
#: (``git push`` words and receive-pack's own, for a ref lock taken or an old value gone).
RACE_MARKERS = ("fetch first", "non-fast-forward", "failed to update ref", "failed to lock")
#: Races the client sees in the server's advertisement, before sending anything.
SEEN_BEFORE_SENDING = ("fetch first", "non-fast-forward")


def program_id(worker: int, n: int) -> str:
    """The id of the ``n``-th program of ``worker``: 16 hex characters, unique in the fleet."""
    return f"f1ee{worker:04x}{n:08x}"


def workload_index(worker: int, n: int) -> int:
    """Which workload program the ``n``-th save of ``worker`` is."""
    return worker * 100_000 + n


def only_raced(exc: PushRejectedError) -> bool:
    """Whether every ref the server refused was refused because it moved, not for its content."""
    return bool(exc.reasons) and all(
        any(marker in reason for marker in RACE_MARKERS) for reason in exc.reasons.values()
    )


class Worker:
    """The worker's saves waiting for a sync, and the counts it reports."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.number = int(job["worker"])
        self.registry = Path(job["registry"])
        ProgramStorage(self.registry).add_remote("origin", job["url"])
        self.credentials = (
            pygit2.UserPass(job["username"], job["password"]) if job.get("username") else None
        )
        self.lock = threading.Lock()
        self.saving_done = threading.Event()
        self.saves: list[dict[str, Any]] = []
        self.pending: list[tuple[dict[str, Any], float]] = []
        self.counts = {
            "syncs": 0,
            "synced": 0,
            "rounds": 0,
            "refusals": 0,
            "gave_up": 0,
            "refused_before_sending": 0,
            "refused_after_sending": 0,
        }
        self.content_refusals: list[dict[str, str]] = []
        self.errors: list[dict[str, str]] = []
        self.crashes: list[str] = []
        self.seconds = 0.0

    def count_refusal(self, event: Event) -> None:
        """Count each refused push round: seen in the advertisement, or refused by the server."""
        if event.name != "progreg.push_error":
            return
        error = str(event.fields.get("error", ""))
        if any(marker in error for marker in SEEN_BEFORE_SENDING):
            self.counts["refused_before_sending"] += 1
        else:  # the server took the pack, ran its hook, then refused (or a content refusal)
            self.counts["refused_after_sending"] += 1

    def saver(self) -> None:
        """Save ``saves`` programs, one per trial of a random length up to ``pace`` seconds."""
        rng = random.Random(self.number)
        storage = ProgramStorage(self.registry)
        try:
            for n in range(int(self.job["saves"])):
                time.sleep(rng.uniform(0, float(self.job["pace"])))
                index = workload_index(self.number, n)
                saved = storage.save_program(
                    program_state(index),
                    optimization_result(index),
                    {"worker": self.number},
                    program_id=program_id(self.number, n),
                )
                record = {"id": saved.program_id, "index": index, "commit": saved.commit}
                with self.lock:
                    self.saves.append({**record, "latency": None})
                    self.pending.append((self.saves[-1], time.monotonic()))
        except BaseException:
            self.crashes.append(traceback.format_exc())
        finally:
            self.saving_done.set()

    def sync(self, storage: ProgramStorage) -> bool:
        """One ``sync()``; True when it succeeded (the saves made before it are on the server)."""
        with self.lock:
            carried = list(self.pending)
        self.counts["syncs"] += 1
        try:
            result = storage.sync(credentials=self.credentials)
        except PushRejectedError as exc:
            if only_raced(exc):  # every round refused: the others kept pushing first
                self.counts["rounds"] += SYNC_ROUNDS
                self.counts["refusals"] += SYNC_ROUNDS
                self.counts["gave_up"] += 1
            else:
                self.content_refusals.append(dict(exc.reasons) or {"": str(exc)})
            return False
        except ProgregError as exc:
            self.errors.append({"error": type(exc).__name__, "message": str(exc)})
            return False
        acknowledged = time.monotonic()
        self.counts["synced"] += 1
        self.counts["rounds"] += result.rounds
        self.counts["refusals"] += result.rounds - 1
        with self.lock:
            for record, saved_at in carried:
                record["latency"] = acknowledged - saved_at
            self.pending = self.pending[len(carried) :]
        return True

    def syncer(self) -> None:
        """Sync in a loop while saving, then until every save is acknowledged (or give up)."""
        rng = random.Random(-1 - self.number)
        storage = ProgramStorage(self.registry)
        try:
            while not self.saving_done.is_set():
                with self.lock:
                    waiting = bool(self.pending)
                if not waiting:  # nothing of ours to send yet
                    time.sleep(0.02)
                elif not self.sync(storage):
                    time.sleep(rng.uniform(0.01, 0.1))
            for _ in range(FINAL_ATTEMPTS):
                with self.lock:
                    if not self.pending:
                        return
                if not self.sync(storage):
                    time.sleep(rng.uniform(0.01, 0.1))
        except BaseException:
            self.crashes.append(traceback.format_exc())

    def run(self) -> None:
        started = time.monotonic()
        unsubscribe = subscribe(self.count_refusal)
        threads = [threading.Thread(target=self.saver), threading.Thread(target=self.syncer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        unsubscribe()
        self.seconds = round(time.monotonic() - started, 3)

    def report(self) -> dict[str, Any]:
        report = {
            "worker": self.number,
            "url": self.job["url"],
            "saves": self.saves,
            "counts": self.counts,
            "seconds": self.seconds,
            "content_refusals": self.content_refusals,
            "errors": self.errors,
        }
        if self.crashes:
            report["crash"] = self.crashes[0]
        return report


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    result = Path(job["result"])
    try:
        worker = Worker(job)
        print("ready", flush=True)
        sys.stdin.readline()
        worker.run()
        report = worker.report()
    except BaseException:
        report = {"worker": job.get("worker"), "crash": traceback.format_exc()}
    result.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
