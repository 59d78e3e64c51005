"""Bulk save throughput: save_programs in batches against save_program one by one.

Usage: .venv/bin/python benchmarks/bench_bulk.py [--programs 2000] [--batch 100]

Both sides save the same realistic documents (tests/support/workload.py)
into a fresh registry each; throughput is programs per second over the whole
run (automatic maintenance included). The target is a ratio of 5x or more.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import workload

from progreg import ProgramStorage

TARGET = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    count, batch = args.programs, args.batch
    items: list[tuple[Any, Any, Any]] = [
        (
            workload.program_state(i),
            workload.optimization_result(i),
            {"signature_class": workload.signature_of(i)},
        )
        for i in range(count)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        single = ProgramStorage(Path(tmp) / "single")
        start = time.perf_counter()
        for program, result, meta in items:
            single.save_program(program, result, meta)
        single_s = time.perf_counter() - start

        bulk = ProgramStorage(Path(tmp) / "bulk")
        start = time.perf_counter()
        for first in range(0, count, batch):
            bulk.save_programs(items[first : first + batch])
        bulk_s = time.perf_counter() - start
        assert len(bulk.registry.records()) == len(single.registry.records()) == count

    single_rate, bulk_rate = count / single_s, count / bulk_s
    ratio = bulk_rate / single_rate
    print(f"bulk save, {count} programs ({count // batch + bool(count % batch)} commits)")
    print(f"{'operation':<34}{'programs/s':>12}{'total s':>10}")
    print(f"{'save_program, one by one':<34}{single_rate:>12.0f}{single_s:>10.2f}")
    print(f"{f'save_programs, batches of {batch}':<34}{bulk_rate:>12.0f}{bulk_s:>10.2f}")
    verdict = "ok" if ratio >= TARGET else "MISSED"
    print(f"ratio bulk/single: {ratio:.1f}x (target >= {TARGET:.0f}x: {verdict})")


if __name__ == "__main__":
    main()
