"""Bundle export and import timings of progreg against the git command line, in one run.

Usage: .venv/bin/python benchmarks/bench_bundles.py [--programs 10000] [--repeat 3]
       [--cache DIR] [--no-packed]

A registry of N programs from tests/support/workload.py (with a tag on every
500th program and a checkpoint run) is built once (kept in --cache if given).
Then, each measured --repeat times (medians are printed), on the registry as
progreg leaves it (as saved: the packs of its saves, merged by automatic
maintenance) and, unless --no-packed, on a copy packed by
``git gc``:

- export: ``storage.export_registry(path)`` vs ``git bundle create path --all``;
- import: ``import_programs`` of progreg's bundle into an empty registry (which
  also checks every program file and records the import as a commit) vs
  ``git fetch <bundle> 'refs/*:refs/*'`` into an empty bare repository; and the
  same for the bundle git made; "unpack only" is the Git layer alone
  (``progreg.git.bundle.unbundle``: header, pack, deltas, ids, completeness,
  quarantine, pack and index moved in), without the registry's checks and
  merge commit.

Ratios are progreg / git (lower is better; the target is at most 2).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pygit2
from common import workload

from progreg import ProgramStorage
from progreg.git.bundle import format as bundles
from progreg.git.bundle import unbundle
from progreg.registry.checkpoints import Checkpoints

# ProgramStorage imports its sharing modules on first use: imported here, before any timing,
# a timed export or import measures the operation, not loading the code that does it.
import progreg.sharing.transfer  # noqa: F401  # isort: skip


def build(path: Path, count: int) -> None:
    """A registry of ``count`` workload programs, tags and a checkpoint run."""
    storage = ProgramStorage(path, author="Bench <bench@example.com>")
    start = time.perf_counter()
    for i in range(count):
        storage.save_program(
            workload.program_state(i),
            workload.optimization_result(i),
            {"signature_class": workload.signature_of(i)},
            tags=["prod"] if i % 500 == 0 else (),
        )
    checkpoints = Checkpoints(storage.registry)
    for step in range(5):
        checkpoints.create(workload.program_state(step), workload.optimization_result(step), "run")
    print(f"built {count} programs in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def median_time(action: Callable[[], object], repeat: int, reset: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        reset()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def unpack(bundle: Path, target: Path) -> None:
    """The Git layer alone: check the bundle, index its pack, move it into a bare repository."""
    repo = pygit2.Repository(str(target))
    header = bundles.read_header(bundle)
    with unbundle.unpack(repo, bundle, header, max_object_size=16 << 20) as incoming:
        incoming.migrate()


def measure(
    registry: Path, work: Path, repeat: int, label: str, *, unpack_only: bool = True
) -> list[tuple[str, float, float]]:
    """(what, progreg seconds, git seconds) for export and import on ``registry``.

    With ``unpack_only``, each import row is followed by the Git layer's share of it.
    """
    storage = ProgramStorage(registry)
    ours, theirs = work / "progreg.bundle", work / "git.bundle"
    target = work / "target"

    def clean_target() -> None:
        shutil.rmtree(target, ignore_errors=True)

    def empty_bare() -> None:
        clean_target()
        git("init", "-q", "--bare", str(target))

    export_progreg = median_time(lambda: storage.export_registry(ours), repeat, lambda: None)
    export_git = median_time(
        lambda: git("-C", str(registry), "bundle", "create", "-q", str(theirs), "--all"),
        repeat,
        lambda: None,
    )
    rows = [(f"export ({label})", export_progreg, export_git)]
    for name, bundle in (("progreg", ours), ("git", theirs)):
        imported = median_time(
            lambda bundle=bundle: ProgramStorage(target).import_programs(bundle),  # type: ignore[misc]
            repeat,
            clean_target,
        )
        fetched = median_time(
            lambda bundle=bundle: git(  # type: ignore[misc]
                "-C", str(target), "fetch", "-q", str(bundle), "refs/*:refs/*"
            ),
            repeat,
            empty_bare,
        )
        rows.append((f"import {name}'s bundle ({label})", imported, fetched))
        if not unpack_only:
            continue
        unpacked = median_time(
            lambda bundle=bundle: unpack(bundle, target),  # type: ignore[misc]
            repeat,
            empty_bare,
        )
        rows.append((f"  of which unpack only ({name})", unpacked, fetched))
    sizes = f"bundle sizes: progreg {ours.stat().st_size:,} B, git {theirs.stat().st_size:,} B"
    print(f"{label}: {sizes}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, help="keep the built registry here")
    parser.add_argument("--no-packed", action="store_true", help="skip the git gc'd copy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = args.cache / f"registry-{args.programs}" if args.cache else root / "registry"
        if not (registry / "HEAD").exists():
            build(registry, args.programs)
        rows = measure(registry, root, args.repeat, "as saved")
        if not args.no_packed:
            packed = root / "packed"
            shutil.copytree(registry, packed)
            git("-C", str(packed), "gc", "-q")
            rows += measure(packed, root, args.repeat, "after git gc")
    print(f"\n{args.programs} programs, median of {args.repeat} runs")
    print(f"{'operation':<40} {'progreg':>9} {'git':>9} {'ratio':>7}")
    for what, ours, theirs in rows:
        print(f"{what:<40} {ours:>8.2f}s {theirs:>8.2f}s {ours / theirs:>6.2f}x")


if __name__ == "__main__":
    main()
