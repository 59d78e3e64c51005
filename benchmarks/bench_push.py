"""Push of one new program to a remote that already holds N programs: progreg vs ``git push``.

Usage: .venv/bin/python benchmarks/bench_push.py [--programs 10000] [--rounds 20] [--tags]

Builds a registry of N realistic programs (one save each, as in real use),
serves two identical bare copies of it with ``git daemon`` on 127.0.0.1,
then repeats: save one new program, push it with ``storage.push`` to the
first copy, and push the very same commit with ``git push`` (the command
line) to the second. The same is done against two bare copies on a local
path, where progreg uses its safe local push and ``git push`` runs its own
receive-pack. The copies are packed (``git gc``), as a server's would be;
the registry stays as progreg leaves it (its packs as saves left them). Prints the
median and the slowest round of each, and progreg's ratio to ``git push``.
With ``--tags`` every program carries one of five tags, so the remotes
advertise N tag refs, as a registry's do; a third ``git daemon`` copy is
then pushed with libgit2's own push (``pygit2``) of the same commit, the
transport progreg used before it had its own send-pack.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import start_git_daemon, wait_for_port, workload

from progreg import ProgramStorage


def git(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the git command line; raise with its stderr on failure."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr}")
    return done.stdout


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_daemon(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """``git daemon`` serving ``root`` on 127.0.0.1, with receive-pack enabled, once it listens."""
    process, port = start_git_daemon(root, env)
    wait_for_port(port)
    return process, port


TAGS = ("production", "staging", "candidate", "archived", "experiment")


def build(storage: ProgramStorage, count: int, tagged: bool) -> None:
    start = time.perf_counter()
    for i in range(count):
        storage.save_program(
            workload.program_state(i),
            workload.optimization_result(i),
            {"signature_class": workload.signature_of(i)},
            tags=[TAGS[i % len(TAGS)]] if tagged else [],
        )
        if (i + 1) % 2000 == 0:
            print(f"  saved {i + 1}/{count} ({time.perf_counter() - start:.0f} s)", flush=True)


def report(name: str, samples: list[float], baseline: list[float] | None) -> None:
    median = statistics.median(samples) * 1000
    ratio = "" if baseline is None else f"{median / (statistics.median(baseline) * 1000):>8.2f}x"
    print(f"{name:<44}{median:>10.1f}{max(samples) * 1000:>10.1f}{ratio:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tags", action="store_true", help="one of five tags per program")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        served = root / "served"
        served.mkdir()
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
        storage = ProgramStorage(root / "registry")
        print(f"building a registry of {args.programs} programs ...", flush=True)
        build(storage, args.programs, args.tags)
        names = ("progreg.git", "cli.git", "local-progreg.git", "local-cli.git", "libgit2.git")
        for name in names:  # four identical remotes holding the N programs, packed as
            # a server's would be (the registry itself stays as progreg leaves it)
            git("clone", "-q", "--bare", "--no-local", str(storage.path), str(served / name))
            git("-C", str(served / name), "gc", "-q", env=env)
        daemon, port = start_daemon(served, env)
        try:
            storage.add_remote("origin", f"git://127.0.0.1:{port}/progreg.git")
            storage.add_remote("shared", str(served / "local-progreg.git"))
            storage.add_remote("libgit2", f"git://127.0.0.1:{port}/libgit2.git")
            libgit2 = storage.registry.git.repo.remotes["libgit2"]
            registry = str(storage.path)
            cli_push = ["-C", registry, "push", "-q", f"git://127.0.0.1:{port}/cli.git", "main"]
            local_cli_push = ["-C", registry, "push", "-q", str(served / "local-cli.git"), "main"]
            kinds = ("daemon", "cli", "local", "cli-local", "libgit2")
            rows: dict[str, list[float]] = {k: [] for k in kinds}
            for i in range(args.programs, args.programs + args.rounds):
                storage.save_program(workload.program_state(i), workload.optimization_result(i))
                rows["daemon"].append(timed(lambda: storage.push("origin")))
                rows["cli"].append(timed(lambda: git(*cli_push, env=env)))
                rows["local"].append(timed(lambda: storage.push("shared")))
                rows["cli-local"].append(timed(lambda: git(*local_cli_push, env=env)))
                rows["libgit2"].append(
                    timed(lambda: libgit2.push(["refs/heads/main:refs/heads/main"]))
                )
        finally:
            daemon.terminate()
            daemon.wait()
        heads = {git("-C", str(served / n), "rev-parse", "main", env=env) for n in names}
        assert len(heads) == 1, "the remotes should all end at the same commit"
    tags = f" and {args.programs} tags" if args.tags else ""
    print(
        f"\npush of one new program onto {args.programs} programs{tags},"
        f" median of {args.rounds} rounds (ms)"
    )
    print(f"{'operation':<44}{'median':>10}{'max':>10}{'ratio':>10}")
    report("progreg push, git daemon (git://127.0.0.1)", rows["daemon"], rows["cli"])
    report("git push (command line), git daemon", rows["cli"], None)
    report("libgit2 push (pygit2), git daemon", rows["libgit2"], rows["cli"])
    report("progreg push, local path (safe local push)", rows["local"], rows["cli-local"])
    report("git push (command line), local path", rows["cli-local"], None)


if __name__ == "__main__":
    main()
