"""The progreg side of the Git coexistence tests: saves, tags, checkpoints, imports, pulls and
gc in a loop.

``python coexistence_worker.py REGISTRY SEED [BUNDLE ...]`` opens the registry,
prints ``ready``, then for each line read from stdin (a path, the round's
stop file; an empty line ends the process) calls progreg until that file
exists, then saves once more (so that the round ends with a write that adds
a pack after the Git tool stopped: such a write rewrites
``objects/info/packs`` and removes a multi-pack-index naming a gone pack,
which a Git tool may have left), and prints ``done``. Each call prints one JSON line:
``{"op", "ok": true, "objects": [ids the call returned as written]}`` or
``{"op", "ok": false, "error", "message"}`` for a progreg error; anything
else is printed as ``{"crash": traceback}`` and ends the process. Bundles
are imported once each, in turn, between the other calls; pulls are from the
registry's remote ``origin`` (the test sets it up), and gc is ``progreg gc``.
"""

from __future__ import annotations

import json
import random
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from progreg import ProgramStorage, ProgregError, StorageConfig, StorageManager


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def call(
    op: str, n: int, storage: ProgramStorage, manager: StorageManager, mine: list[str], bundle: str
) -> list[str]:
    """Run one call; the ids of the objects it says it wrote (commits, tag objects)."""
    state = {"instructions": f"coexistence call {n} " * 6, "n": n}
    if op == "save":
        saved = storage.save_program(state, {"best_score_value": n / 1000})
        mine.append(saved.program_id)
        return [saved.commit]
    if op == "tag":
        program_id = mine[n % len(mine)]
        manager.tag_program(program_id, f"t{n}")
        ref = f"refs/tags/t{n}/{program_id}"
        return [storage.registry.git.values_of([ref])[ref]]
    if op == "checkpoint":
        outcome = SimpleNamespace(optimized_program=state, best_score_value=0.5)
        saved = manager.create_checkpoint(outcome, f"run-{n % 3}")
        return [saved.commit]
    if op == "pull":
        pulled = storage.pull("origin")
        return [pulled.commit] if pulled.commit else []
    if op == "gc":
        storage.gc()
        return []
    result = storage.import_programs(bundle)
    return [result.commit] if result.commit else []


def main() -> None:
    registry, seed, *bundles = sys.argv[1:]
    rng = random.Random(int(seed))
    storage = ProgramStorage(registry)
    manager = StorageManager(StorageConfig(storage_path=Path(registry)), storage=storage)
    mine: list[str] = []
    pending = list(bundles)
    storage.list_programs()  # opened and read: ready
    print("ready", flush=True)
    n = 0
    for line in sys.stdin:
        stop = line.strip()
        if not stop:
            return
        while True:
            last = Path(stop).exists()
            op = rng.choices(
                ("save", "tag", "checkpoint", "import", "pull", "gc"), (50, 12, 12, 8, 8, 10)
            )[0]
            if last or (op == "tag" and not mine) or (op == "import" and not pending):
                op = "save"
            bundle = pending.pop(0) if op == "import" else ""
            try:
                written = call(op, n, storage, manager, mine, bundle)
                emit({"op": op, "ok": True, "objects": written})
            except ProgregError as exc:
                emit({"op": op, "ok": False, "error": type(exc).__name__, "message": str(exc)})
            except BaseException:
                emit({"op": op, "crash": traceback.format_exc()})
                return
            n += 1
            if last:
                break
        print("done", flush=True)


if __name__ == "__main__":
    main()
