"""The child of the crash tests: works on a registry at random until it is SIGKILLed.

``python crash_driver.py serve`` imports progreg once, then reads jobs (one
JSON object per line on stdin) and forks one worker per job, so that a round
costs a fork rather than an interpreter start. For each job it prints the
worker's pid, and once the worker is dead ``exit <wait status>``.

A worker runs a random mix of registry calls, forever: saves (new programs,
new versions, several at once), tags, checkpoints, deletes, restores,
cleanups, bundle imports and ``gc``. Before each call it appends one line
``{"begin": ...}`` to the job's log file and, once the call returned,
``{"done": ...}`` with what the call did; each line is one ``write(2)``, so
a kill leaves whole lines only (and at most one call begun and not done).
An exception ends the worker with a line ``{"error": ...}``.

Program content is identified by :func:`digest`, which the tests compute
from what a load returns.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from progreg import ProgramStorage, StorageConfig, StorageManager
from progreg.core.models import SavedProgram

TAGS = ("best", "candidate", "reviewed", "production")
CHECKPOINTS = ("run-a", "run-b", "run-c")
OPTIMIZERS = ("MIPROv2", "BootstrapFewShot", "COPRO")
#: Relative weights of the calls a worker makes.
WEIGHTS = {
    "save": 26,
    "version": 10,
    "batch": 10,
    "tag": 10,
    "checkpoint": 8,
    "delete": 9,
    "restore": 7,
    "cleanup": 5,
    "import": 6,
    "gc": 1,
}
#: How many unprotected programs a cleanup keeps.
KEEP = 12


def digest(saved: SavedProgram) -> str:
    """What identifies a program's stored content: type, state, result, metadata, time."""
    content = [
        saved.program_type,
        saved.state,
        saved.optimization_result,
        saved.metadata,
        saved.saved_at.isoformat(),
    ]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class Worker:
    """One worker: a registry, a random generator and the log it reports to."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.rng = random.Random(job["seed"])
        self.seed = job["seed"]
        self.bundles: list[str] = job["bundles"]
        self.log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.storage = ProgramStorage(job["registry"], lock_timeout=job.get("lock_timeout", 30))
        config = StorageConfig(storage_path=Path(job["registry"]), max_stored_programs=KEEP)
        self.manager = StorageManager(config, storage=self.storage)
        self.live = sorted(self.storage.registry.records())
        self.deleted = [i for i in job.get("deleted", []) if i not in self.live]
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        os.write(self.log, (json.dumps(record) + "\n").encode())

    def program(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        self.count += 1
        rng = self.rng
        state = {
            "instructions": f"worker {self.seed}, call {self.count}",
            "demos": [{"question": f"q{rng.randrange(10**6)}", "answer": "a"}]
            * rng.randrange(0, 3),
            "temperature": round(rng.random(), 3),
        }
        result = {
            "best_score_value": round(rng.random(), 4),
            "best_score_name": "accuracy",
            "metadata": {"optimizer": rng.choice(OPTIMIZERS)},
        }
        metadata = {"signature_class": rng.choice(("QA", "Classify")), "call": self.count}
        return state, result, metadata

    def run(self) -> None:
        ops = list(WEIGHTS)
        weights = list(WEIGHTS.values())
        while True:
            op = self.rng.choices(ops, weights)[0]
            getattr(self, f"op_{op}")()

    # -- the calls -------------------------------------------------------------------

    def op_save(self) -> None:
        tags = [self.rng.choice(TAGS)] if self.rng.random() < 0.3 else []
        self.write({"begin": "save"})
        saved = self.storage.save_program(*self.program(), tags=tags)
        self.live.append(saved.program_id)
        self.write(
            {
                "done": "save",
                "programs": {saved.program_id: digest(saved)},
                "tags": [[tag, saved.program_id] for tag in tags],
            }
        )

    def op_version(self) -> None:
        if not self.live:
            return self.op_save()
        program_id = self.rng.choice(self.live)
        self.write({"begin": "version", "id": program_id})
        state, result, metadata = self.program()
        saved = self.storage.save_program(state, result, metadata, program_id)
        self.write({"done": "version", "programs": {program_id: digest(saved)}})
        return None

    def op_batch(self) -> None:
        size = self.rng.randrange(2, 5)
        tags = [self.rng.choice(TAGS)] if self.rng.random() < 0.3 else []
        self.write({"begin": "batch", "size": size})
        saved = self.storage.save_programs([self.program() for _ in range(size)], tags=tags)
        self.live += [s.program_id for s in saved]
        self.write(
            {
                "done": "batch",
                "programs": {s.program_id: digest(s) for s in saved},
                "tags": [[tag, s.program_id] for s in saved for tag in tags],
            }
        )

    def op_tag(self) -> None:
        if not self.live:
            return self.op_save()
        program_id, tag = self.rng.choice(self.live), self.rng.choice(TAGS)
        self.write({"begin": "tag", "tag": [tag, program_id]})
        self.manager.tag_program(program_id, tag)
        self.write({"done": "tag", "tags": [[tag, program_id]]})
        return None

    def op_checkpoint(self) -> None:
        name = self.rng.choice(CHECKPOINTS)
        state, result, _ = self.program()
        outcome = SimpleNamespace(optimized_program=state, **result)
        self.write({"begin": "checkpoint", "name": name})
        saved = self.manager.create_checkpoint(outcome, name, {"call": self.count})
        self.write({"done": "checkpoint", "checkpoint": [name, saved.program_id]})

    def op_delete(self) -> None:
        if not self.live:
            return self.op_save()
        program_id = self.rng.choice(self.live)
        self.write({"begin": "delete", "id": program_id})
        deleted = self.storage.delete_program(program_id)
        self.live.remove(program_id)
        self.deleted.append(program_id)
        self.write({"done": "delete", "programs": {program_id: None}, "returned": deleted})
        return None

    def op_restore(self) -> None:
        if not self.deleted:
            return self.op_delete()
        program_id = self.rng.choice(self.deleted)
        self.write({"begin": "restore", "id": program_id})
        saved = self.storage.restore_program(program_id)
        self.deleted.remove(program_id)
        self.live.append(program_id)
        self.write({"done": "restore", "programs": {program_id: digest(saved)}})
        return None

    def op_cleanup(self) -> None:
        before = set(self.storage.registry.records())
        self.write({"begin": "cleanup"})
        removed = self.manager.cleanup_old_programs().removed_count
        gone = sorted(before - set(self.storage.registry.records()))
        self.live = [i for i in self.live if i not in gone]
        self.deleted += gone
        self.write({"done": "cleanup", "programs": dict.fromkeys(gone), "removed": removed})

    def op_import(self) -> None:
        index = self.rng.randrange(len(self.bundles))
        self.write({"begin": "import", "bundle": index})
        result = self.storage.import_programs(self.bundles[index])
        self.live += [i for i in result.imported if i not in self.live]
        self.deleted = [i for i in self.deleted if i not in result.imported]
        self.write({"done": "import", "bundle": index, "imported": result.imported})

    def op_gc(self) -> None:
        self.write({"begin": "gc"})
        self.storage.gc()
        self.write({"done": "gc"})


def work(job: dict[str, Any]) -> None:
    """Run a worker until killed; report an exception in the log and exit 3."""
    try:
        Worker(job).run()
    except BaseException as exc:  # reported to the test through the log
        with open(job["log"], "a") as log:
            log.write(json.dumps({"error": repr(exc), "traceback": traceback.format_exc()}) + "\n")
        os._exit(3)


def serve() -> None:
    """Fork a worker per job read on stdin; report its pid, then how it ended."""
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.close(0)
            work(job)
            os._exit(4)  # pragma: no cover - work never returns
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {status}", flush=True)


if __name__ == "__main__":
    serve()
