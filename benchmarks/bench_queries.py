"""Query timings of StorageManager on a registry of N realistic programs.

Usage: .venv/bin/python benchmarks/bench_queries.py [--programs 10000]

Builds the registry with save_optimization_result (every fifth program tagged),
then times, in a fresh process state and warm (median of repeats):
find_programs, get_best_program, get_optimization_history, list_programs, and
`git log` over the same history as the baseline a first query is compared
with. A first query is timed twice: with the log index's cache file in place
(it is loaded, then extended by the commits added since) and without it (the
cache file is deleted first, so the index is built from Git and written back).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import workload

from progreg import OptimizationResult, StorageConfig, StorageManager
from progreg.registry.logcache import cache_path


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def build(path: Path, count: int) -> float:
    manager = StorageManager(StorageConfig(storage_path=path))
    start = time.perf_counter()
    for i in range(count):
        data = workload.optimization_result(i)
        manager.save_optimization_result(
            OptimizationResult(optimized_program=workload.program_state(i), **data),
            tags=["production"] if i % 5 == 0 else [],
            metadata={"signature_class": workload.signature_of(i)},
        )
    return (time.perf_counter() - start) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "registry"
        per_save = build(path, args.programs)
        git_log = timed(
            lambda: subprocess.run(
                ["git", "-C", str(path), "log", "--format=%H %(trailers)", "main"],
                check=True,
                capture_output=True,
            )
        )
        queries: dict[str, Callable[[StorageManager], object]] = {
            "find_programs(optimizer, min_score)": lambda m: m.find_programs(
                optimizer="MIPROv2", min_score=0.9
            ),
            "find_programs(tags=[production])": lambda m: m.find_programs(tags=["production"]),
            "get_best_program(ClassifyText)": lambda m: m.get_best_program("ClassifyText"),
            "get_optimization_history()": lambda m: m.get_optimization_history(),
            "storage.list_programs()": lambda m: m.storage.list_programs(),
        }
        print(f"{args.programs} programs, {per_save:.2f} ms per save while building")
        print(f"git log --format=%(trailers) over main: {git_log:.1f} ms")
        cache = cache_path(path, "refs/heads/main")
        print(
            f"{'query':<40}{'first ms':>10}{'vs git log':>12}"
            f"{'no cache':>10}{'vs git log':>12}{'warm ms':>10}"
        )
        for name, query in queries.items():
            cache.unlink(missing_ok=True)
            uncached = StorageManager(StorageConfig(storage_path=path))
            no_cache = timed(lambda: query(uncached))  # noqa: B023
            fresh = StorageManager(StorageConfig(storage_path=path))
            first = timed(lambda: query(fresh))  # noqa: B023
            warm = statistics.median(timed(lambda: query(fresh)) for _ in range(args.repeat))  # noqa: B023
            print(
                f"{name:<40}{first:>10.1f}{first / git_log:>11.2f}x"
                f"{no_cache:>10.1f}{no_cache / git_log:>11.2f}x{warm:>10.1f}"
            )


if __name__ == "__main__":
    main()
