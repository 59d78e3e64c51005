"""A process of the contention tests: threads saving, tagging and checkpointing at once.

``python contention_worker.py REGISTRY PROCESS THREADS CALLS LOCK_TIMEOUT`` prints
``ready``, waits for a line on stdin (so that every process starts at once),
then runs THREADS threads of CALLS calls each and prints one JSON line per
call: ``{"op", "thread", "ok": true, ...what it returned}`` or ``{"op",
"thread", "ok": false, "error", "message"}``. Only progreg errors are caught:
anything else is printed as ``{"crash": traceback}``.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from progreg import ProgramStorage, ProgregError, StorageConfig, StorageManager
from support.workers.crash_driver import digest

_print_lock = threading.Lock()


def emit(record: dict[str, Any]) -> None:
    with _print_lock:
        print(json.dumps(record), flush=True)


def work(registry: Path, process: int, thread: int, calls: int, lock_timeout: float) -> None:
    rng = random.Random(process * 1000 + thread)
    storage = ProgramStorage(registry, lock_timeout=lock_timeout)
    manager = StorageManager(StorageConfig(storage_path=registry), storage=storage)
    mine: list[str] = []
    for n in range(calls):
        state = {"instructions": f"process {process} thread {thread} call {n}", "n": n}
        result = {"best_score_value": round(rng.random(), 3)}
        op = rng.choices(("save", "tag", "checkpoint"), (70, 15, 15))[0]
        if op == "tag" and not mine:
            op = "save"
        where = {"op": op, "thread": f"{process}.{thread}"}
        done: dict[str, Any]
        try:
            if op == "save":
                saved = storage.save_program(state, result, {"writer": where["thread"]})
                mine.append(saved.program_id)
                done = {"id": saved.program_id, "commit": saved.commit, "digest": digest(saved)}
            elif op == "tag":
                program_id = rng.choice(mine)
                done = {
                    "id": program_id,
                    "tag": f"t{process}",
                    "created": manager.tag_program(program_id, f"t{process}"),
                }
            else:
                name = f"run-{process}-{thread % 2}"
                outcome = SimpleNamespace(optimized_program=state, **result)
                saved = manager.create_checkpoint(outcome, name)
                done = {"id": saved.program_id, "checkpoint": name, "commit": saved.commit}
            emit({**where, "ok": True, **done})
        except ProgregError as exc:
            emit({**where, "ok": False, "error": type(exc).__name__, "message": str(exc)})
        except BaseException:
            emit({**where, "crash": traceback.format_exc()})
            return


def main() -> None:
    registry, process, threads, calls, timeout = sys.argv[1:6]
    print("ready", flush=True)
    sys.stdin.readline()
    workers = [
        threading.Thread(
            target=work, args=(Path(registry), int(process), k, int(calls), float(timeout))
        )
        for k in range(int(threads))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


if __name__ == "__main__":
    main()
