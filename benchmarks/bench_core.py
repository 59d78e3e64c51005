"""Save and load timings of ProgramStorage against file-based baselines, in one run.

Usage: .venv/bin/python benchmarks/bench_core.py [--programs 1000]

Baselines measured in the same run on the same documents:
- floor: write the same canonical JSON to a file with an atomic rename (and read it back);
- files store: the reference design's store (a file per program plus a history.json
  rewritten on every save), from ../shared/bench/files_store.py.
Medians per operation; ratios are progreg / baseline (lower is better).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from progreg import ProgramStorage

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench"
sys.path.insert(0, str(SHARED))
import files_store  # noqa: E402
import workload  # noqa: E402


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    count = parser.parse_args().programs
    docs = [(workload.program_state(i), workload.optimization_result(i)) for i in range(count)]
    metas = [{"signature_class": workload.signature_of(i)} for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        storage = ProgramStorage(root / "registry")
        saves, ids = [], []
        for (state, result), meta in zip(docs, metas, strict=True):
            start = time.perf_counter()
            ids.append(storage.save_program(state, result, meta).program_id)
            saves.append(time.perf_counter() - start)
        storage.load_program(ids[0])  # builds the in-memory log index once
        loads = [timed(lambda i=i: storage.load_program(i)) for i in ids]  # type: ignore[misc]

        floor_dir = root / "floor"
        floor_dir.mkdir()
        floor_saves, floor_loads = [], []
        for n, (state, result) in enumerate(docs):
            data = orjson.dumps({"program": state, "result": result}, option=orjson.OPT_INDENT_2)
            path = floor_dir / f"{n:016x}.json"

            def write(path: Path = path, data: bytes = data) -> None:
                tmp_path = path.with_suffix(".tmp")
                tmp_path.write_bytes(data)
                os.replace(tmp_path, path)

            floor_saves.append(timed(write))
        for n in range(count):
            path = floor_dir / f"{n:016x}.json"
            floor_loads.append(timed(lambda path=path: orjson.loads(path.read_bytes())))  # type: ignore[misc]

        store = files_store.FilesStore(str(root / "files"))
        file_ids: list[str] = []
        file_saves = [
            timed(lambda s=s, r=r, m=m: file_ids.append(store.save_program(s, r, m)))  # type: ignore[misc]
            for (s, r), m in zip(docs, metas, strict=True)
        ]
        file_loads = [timed(lambda i=i: store.load_program(i)) for i in file_ids]  # type: ignore[misc]

    def ms(samples: list[float]) -> float:
        return statistics.median(samples) * 1000

    def tail(samples: list[float]) -> float:
        """Median of the last tenth: the cost once the registry is full."""
        return statistics.median(samples[-max(1, len(samples) // 10) :]) * 1000

    print(f"{count} programs of ~{len(orjson.dumps(docs[0][0])) // 1024} KB")
    print(f"{'operation':<34}{'median ms':>10}{'last 10% ms':>13}{'progreg ratio':>15}")
    rows = [
        ("progreg save", saves, None),
        ("floor: atomic JSON file write", floor_saves, saves),
        ("files store save (history.json)", file_saves, saves),
        ("progreg load", loads, None),
        ("floor: read + parse JSON file", floor_loads, loads),
        ("files store load", file_loads, loads),
    ]
    for name, samples, ours in rows:
        ratio = "" if ours is None else f"{ms(ours) / ms(samples):>14.2f}x"
        print(f"{name:<34}{ms(samples):>10.3f}{tail(samples):>13.3f}{ratio:>15}")


if __name__ == "__main__":
    main()
