"""The child of the resource-fault tests: runs registry calls on a full or read-only disk.

``python fault_driver.py JOB.json`` runs inside a private mount namespace
(``unshare --mount``, as root or as the mapped root of a user namespace),
where it may mount what it likes: the mounts vanish with it. It prints one
JSON object on stdout: for each call, whether it returned or which error it
raised (type and message).

Jobs (``job["kind"]``):

- ``disk-full``: mount a tmpfs of ``size`` bytes at ``mount``, and for each
  call and each amount of free space (bytes): copy the registry ``source``
  onto it (and ``push_target``, the registry its remote ``backup`` names,
  beside it), fill the disk but for that much, make the call, copy the
  registry out to ``<out>/<call>-<leave>`` for the test to inspect, then free
  the space, make the call again and copy the result to ``...-retry``. The
  amounts are the multiples of ``step`` from 0 up to the first that lets
  the call succeed (at most ``points`` of them): a tmpfs hands out whole
  pages, so a step of one page tries every amount that can make a
  difference. Last, ``progreg gc`` on a full disk (``cli-gc``);
- ``read-only``: bind-mount ``source`` read-only onto itself, make each
  call, and also run the command line (``progreg list`` and ``progreg save``).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from progreg import ProgramStorage, StorageConfig, StorageManager

Call = Callable[[ProgramStorage, StorageManager], object]
#: Runs the command line with the arguments that follow.
CLI = "import sys; from progreg.cli.main import main; main(sys.argv[1:])"


def calls(job: dict[str, Any]) -> dict[str, Call]:
    """The calls to try, by name; ``job["program"]`` names an existing program."""
    program_id = job["program"]
    deleted = job["deleted"]
    bundle = job["bundle"]
    big = {"instructions": "x" * 20_000, "demos": [{"q": str(n)} for n in range(200)]}
    outcome = SimpleNamespace(optimized_program=big, best_score_value=0.5)
    return {
        "save": lambda s, m: s.save_program(big, {"best_score_value": 0.5}).program_id,
        "save_programs": lambda s, m: [
            p.program_id for p in s.save_programs([(big, None, None)] * 3)
        ],
        "version": lambda s, m: s.save_program(big, program_id=program_id).program_id,
        "tag": lambda s, m: m.tag_program(program_id, "full-disk"),
        "checkpoint": lambda s, m: m.create_checkpoint(outcome, "full-disk").program_id,
        "delete": lambda s, m: s.delete_program(program_id),
        "restore": lambda s, m: s.restore_program(deleted).program_id,
        "import": lambda s, m: s.import_programs(bundle).imported,
        "gc": lambda s, m: s.gc().objects_packed,
        "pull": lambda s, m: s.pull("origin").added,
        "push": lambda s, m: s.push("backup").updated,
        "export": lambda s, m: s.export_registry(s.path.parent / "all.bundle").object_count,
        "load": lambda s, m: s.load_program(program_id) is not None,
        "list": lambda s, m: len(s.list_programs()),
        "find": lambda s, m: len(m.find_programs()),
        "verify": lambda s, m: s.verify().ok,
    }


def attempt(registry: Path, call: Call) -> dict[str, Any]:
    """Open the registry and make the call; what happened, as JSON."""
    try:
        storage = ProgramStorage(registry, lock_timeout=5)
        manager = StorageManager(StorageConfig(storage_path=registry), storage=storage)
        return {"returned": call(storage, manager)}
    except Exception as exc:
        return {
            "error": type(exc).__name__,
            "module": type(exc).__module__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
    finally:
        gc.collect()  # close libgit2's files: space of deleted files is freed only then


def fill(directory: Path, leave: int) -> None:
    """Fill the file system of ``directory`` but for about ``leave`` bytes."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))


def amounts(job: dict[str, Any]) -> list[int]:
    """The amounts of free space to try a call with, until one succeeds."""
    return [job["step"] * n for n in range(job["points"])]


def disk_full(job: dict[str, Any]) -> dict[str, Any]:
    mount = Path(job["mount"])
    mount.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={job['size']}", "tmpfs", str(mount)], check=True
    )
    out = Path(job["out"])
    results: dict[str, Any] = {}
    for name, call in calls(job).items():
        if name not in job["calls"]:
            continue
        for leave in amounts(job):
            registry = mount / "registry"
            shutil.copytree(job["source"], registry, symlinks=True)
            target = mount / "target"  # where a push goes: on the full disk too
            shutil.copytree(job["push_target"], target, symlinks=True)
            fill(mount, leave)
            result = attempt(registry, call)
            shutil.copytree(registry, out / f"{name}-{leave}", symlinks=True)
            shutil.copytree(target, out / f"{name}-{leave}-target", symlinks=True)
            (mount / "filler").unlink()
            result["retry"] = attempt(registry, call)
            shutil.copytree(registry, out / f"{name}-{leave}-retry", symlinks=True)
            shutil.rmtree(registry)
            shutil.rmtree(target)
            results[f"{name}-{leave}"] = result
            if "returned" in result:
                break  # more space cannot make it fail
    registry = mount / "registry"
    shutil.copytree(job["source"], registry, symlinks=True)
    fill(mount, 0)
    results["cli-gc"] = command_line(registry, ["gc"])
    return results


def command_line(registry: Path, args: list[str]) -> dict[str, Any]:
    """Run ``progreg --registry REGISTRY ARGS``: exit code and output."""
    done = subprocess.run(
        [sys.executable, "-c", CLI, "--registry", str(registry), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return {"exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def read_only(job: dict[str, Any]) -> dict[str, Any]:
    source = job["source"]
    subprocess.run(["mount", "--bind", source, source], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", source, source], check=True)
    results = {name: attempt(Path(source), call) for name, call in calls(job).items()}
    for name, args in (("cli-list", ["list"]), ("cli-gc", ["gc"])):
        results[name] = command_line(Path(source), args)
    return results


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    kinds = {"disk-full": disk_full, "read-only": read_only}
    print(json.dumps(kinds[job["kind"]](job)))


if __name__ == "__main__":
    main()
