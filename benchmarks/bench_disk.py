"""Registry size on disk: loose objects, after ``progreg gc``, and after ``git gc``.

Usage: .venv/bin/python benchmarks/bench_disk.py [--programs 10000]

Builds a registry of N workload programs (../shared/bench/workload.py) with
automatic maintenance off (``gc.auto=0``), then prints the size (bytes of
every file, as ``du --apparent-size`` counts them) and file count of the
directory: as saved (loose), after ``progreg gc`` (pack_loose_objects), and
after ``git gc`` on a copy of the loose registry; and the time of each gc.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from progreg import ProgramStorage
from progreg.gitstore.maintenance import pack_loose_objects

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench"
sys.path.insert(0, str(SHARED))
import workload  # noqa: E402


def usage(path: Path) -> tuple[int, int]:
    """``(bytes, files)`` under ``path``."""
    size = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            size += os.lstat(os.path.join(root, name)).st_size
            files += 1
    return size, files


def row(label: str, path: Path, seconds: float | None = None) -> None:
    size, files = usage(path)
    timing = f"{seconds:8.2f} s" if seconds is not None else " " * 10
    print(f"{label:<22} {size / 1e6:10.1f} MB {files:9d} files {timing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        registry = Path(temporary) / "registry"
        storage = ProgramStorage(registry, author="Bench <bench@example.com>")
        subprocess.run(["git", "-C", str(registry), "config", "gc.auto", "0"], check=True)
        start = time.perf_counter()
        for i in range(args.programs):
            storage.save_program(
                workload.program_state(i),
                workload.optimization_result(i),
                {"signature_class": workload.signature_of(i)},
            )
        print(f"built {args.programs} programs in {time.perf_counter() - start:.1f} s")
        copy = Path(temporary) / "copy"
        shutil.copytree(registry, copy)
        row("loose", registry)
        start = time.perf_counter()
        report = pack_loose_objects(registry)
        row("after progreg gc", registry, time.perf_counter() - start)
        print(f"  ({report.objects_packed} objects packed)")
        start = time.perf_counter()
        subprocess.run(["git", "-C", str(copy), "gc", "--quiet"], check=True)
        row("after git gc (copy)", copy, time.perf_counter() - start)


if __name__ == "__main__":
    main()
