"""Registry size on disk: as saved (maintenance on), after ``progreg gc``, after ``git gc``.

Usage: .venv/bin/python benchmarks/bench_disk.py [--programs 10000] [--no-maintenance]

Builds a registry of N workload programs (tests/support/workload.py, saved
with ``durable=False``), then prints the size (bytes of every file, as ``du
--apparent-size`` counts them), file count and pack count of the directory:
as saved, after ``progreg gc`` (pack_loose_objects: every pack merged into
one), and after ``git gc`` on a copy of the registry as saved; and the time
of each gc. ``--no-maintenance`` sets ``gc.auto=0`` first: every pack a
writer closes then stays, as automatic maintenance would have merged them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import workload

from progreg import ProgramStorage
from progreg.git.maintenance import pack_loose_objects


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
    packs = len(list((path / "objects" / "pack").glob("*.pack")))
    timing = f"{seconds:8.2f} s" if seconds is not None else " " * 10
    print(f"{label:<22} {size / 1e6:10.1f} MB {files:9d} files {packs:5d} packs {timing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=10000)
    parser.add_argument("--no-maintenance", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        registry = Path(temporary) / "registry"
        storage = ProgramStorage(registry, author="Bench <bench@example.com>", durable=False)
        if args.no_maintenance:
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
        row("as saved", registry)
        start = time.perf_counter()
        report = pack_loose_objects(registry)
        row("after progreg gc", registry, time.perf_counter() - start)
        print(f"  ({report.packs_consolidated} packs merged, {report.objects_packed} loose packed)")
        start = time.perf_counter()
        subprocess.run(["git", "-C", str(copy), "gc", "--quiet"], check=True)
        row("after git gc (copy)", copy, time.perf_counter() - start)


if __name__ == "__main__":
    main()
