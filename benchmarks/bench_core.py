"""Save and load timings of ProgramStorage against file-based baselines, in one run.

Usage: .venv/bin/python benchmarks/bench_core.py [--programs 1000] [--durable-saves 200]
       [--files-store]

Baselines measured in the same run, interleaved with the saves they are
compared with (the machine's speed drifts):
- floor: the same canonical JSON written to a file with an atomic rename;
- durable floor: the same, with fsync of the file and of its directory;
- files store (``--files-store``): the reference design's store (a file per
  program plus a history.json rewritten on every save), from
  tests/support/reference_store.py; slow, it is quadratic.
Saves are timed with ``durable=False`` while N programs are saved (the mean
and the maximum include automatic maintenance: merges of packs), then
``--durable-saves`` more with ``durable=True`` on the full registry.
Medians per operation; ratios are progreg / baseline (lower is better).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import ReferenceStore, workload

from progreg import ProgramStorage, events


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def floor_write(path: Path, data: bytes, durable: bool) -> None:
    """Write ``data`` to ``path`` atomically (and durably: fsync file, rename, fsync directory)."""
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def document(i: int) -> tuple[dict[str, object], dict[str, object], dict[str, str]]:
    return (
        workload.program_state(i),
        workload.optimization_result(i),
        {"signature_class": workload.signature_of(i)},
    )


def ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def tail(samples: list[float]) -> list[float]:
    """The last tenth: the cost once the registry is full."""
    return samples[-max(1, len(samples) // 10) :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--durable-saves", type=int, default=200)
    parser.add_argument("--files-store", action="store_true")
    args = parser.parse_args()
    count = args.programs
    merges: list[float] = []
    events.subscribe(
        lambda event: (
            merges.append(event.fields["seconds"])
            if event.name == "progreg.maintenance.merge"
            else None
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        storage = ProgramStorage(root / "registry", durable=False)
        floor_dir = root / "floor"
        floor_dir.mkdir()
        saves, floors, ids = [], [], []
        for i in range(count):
            state, result, meta = document(i)
            start = time.perf_counter()
            saved = storage.save_program(state, result, meta)
            saves.append(time.perf_counter() - start)
            ids.append(saved.program_id)
            data = storage.registry.document_for(state, result, meta, saved.program_id).encode()
            floors.append(timed(lambda d=data, n=i: floor_write(floor_dir / f"{n}.json", d, False)))  # type: ignore[misc]

        durable = ProgramStorage(root / "registry", durable=True)
        durable_saves, durable_floors = [], []
        for i in range(count, count + args.durable_saves):
            state, result, meta = document(i)
            start = time.perf_counter()
            saved = durable.save_program(state, result, meta)
            durable_saves.append(time.perf_counter() - start)
            data = durable.registry.document_for(state, result, meta, saved.program_id).encode()
            durable_floors.append(
                timed(lambda d=data, n=i: floor_write(floor_dir / f"{n}.json", d, True))  # type: ignore[misc]
            )

        storage.load_program(ids[0])  # builds the in-memory log index once
        loads = [timed(lambda i=i: storage.load_program(i)) for i in ids]  # type: ignore[misc]
        floor_loads = [
            timed(lambda n=n: (floor_dir / f"{n}.json").read_bytes())  # type: ignore[misc]
            for n in range(count)
        ]
        file_saves: list[float] = []
        if args.files_store:
            store = ReferenceStore(root / "files")
            file_saves = [
                timed(lambda i=i: store.save_program(*document(i)))  # type: ignore[misc]
                for i in range(count)
            ]

    print(f"{count} programs of ~{len(data) // 1024} KB")
    print(f"{'operation':<40}{'median ms':>10}{'last 10% ms':>13}{'ratio':>9}")
    rows: list[tuple[str, list[float], list[float] | None]] = [
        ("progreg save (durable=False)", saves, None),
        ("floor: atomic JSON file write", floors, saves),
        ("progreg save (durable=True)", durable_saves, None),
        ("durable floor: write+fsync+rename+fsync", durable_floors, durable_saves),
        ("progreg load", loads, None),
        ("floor: read JSON file", floor_loads, loads),
    ]
    if file_saves:
        rows.insert(2, ("files store save (history.json)", file_saves, saves))
    for name, samples, ours in rows:
        ratio = "" if ours is None else f"{ms(ours) / ms(samples):>8.2f}x"
        print(f"{name:<40}{ms(samples):>10.3f}{ms(tail(samples)):>13.3f}{ratio:>9}")
    print(
        f"save at {count} (last 10%) / save at the start (first 100):"
        f" {ms(tail(saves)) / ms(saves[:100]):.2f}x"
    )
    print(
        f"non-durable saves: mean {statistics.mean(saves) * 1000:.3f} ms,"
        f" max {max(saves) * 1000:.1f} ms; {len(merges)} merges of packs took"
        f" {sum(merges):.2f} s ({sum(merges) / len(saves) * 1000:.3f} ms a save),"
        f" the longest {max(merges, default=0) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
