"""A fleet of optimization workers, each with its own clone, saving and syncing through one server.

Every worker is a process (:mod:`support.workers.fleet_worker`) with its own
registry whose remote ``origin`` is the same bare repository, served at once
by ``git daemon`` (half the workers) and ``git http-backend`` (the other
half), with progreg's pre-receive hook installed. Meanwhile a reviewer edits
one program by hand in a plain ``git`` clone and pushes, pulling with
``--rebase`` whenever main moved first. Afterwards every save a worker's sync
acknowledged is on the server's main, with its content, in its history; no
program is lost or doubled; the reviewer's last edit is there; ``git fsck
--strict`` is clean everywhere; and the hook refused nothing valid (every
refusal was a race for ``main``, none was for content).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from progreg import ProgramStorage
from progreg.core.canonical import decode, encode
from progreg.core.ids import program_id_of_path, program_path
from progreg.integrations.hooks import install
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, git
from support.servers import GitServer
from support.workers import TESTS, WORKERS
from support.workload import optimization_result, program_state

WORKER = WORKERS / "fleet_worker.py"
#: The program on the server before the fleet starts: the one the reviewer edits.
SEED = "5eed000000000001"
INSTRUCTIONS = ("program_data", "state", "predict", "signature", "instructions")
#: What ``git push`` prints when the pre-receive hook refused a push (a content refusal).
HOOK_DECLINED = "pre-receive hook declined"
#: The longest pause between two saves of a worker, in seconds (an optimizer's trial).
PACE = 0.3


def served_by_both(git_daemon: GitServer, http_server: GitServer) -> tuple[Path, dict[str, str]]:
    """One bare repository, with progreg's hook, served by the daemon and by http-backend.

    It is created under the daemon's base path; the HTTP server's root gets a
    symbolic link to it of the same name, which ``git http-backend`` follows
    (the HTTP workers push through it: the checks below would miss their
    saves otherwise). Returns its path and each URL.
    """
    served = git_daemon.create("registry.git")
    (http_server.root / "registry.git").symlink_to(served, target_is_directory=True)
    install(served)
    urls = {"daemon": git_daemon.url("registry.git"), "http": http_server.url("registry.git")}
    return served, urls


def seed_server(tmp_path: Path, url: str) -> None:
    """Push a first program to the server through progreg, so main exists for everyone."""
    seeder = ProgramStorage(tmp_path / "seeder")
    seeder.save_program(program_state(0), optimization_result(0), program_id=SEED)
    seeder.add_remote("origin", url)
    seeder.push()


@dataclass
class Reviewer:
    """A person with a plain ``git`` clone, editing SEED's instructions and pushing to main."""

    url: str
    work: Path
    edits: int
    pushes: int = 0
    refused_moved: int = 0
    refused_content: list[str] = field(default_factory=list)
    last_instructions: str = ""
    failure: BaseException | None = None

    def run_git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(self.work), *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **CLI_IDENTITY},
        )

    def edit(self, number: int) -> None:
        path = self.work / program_path(SEED)
        document = decode(path.read_bytes())
        target = document
        for key in INSTRUCTIONS[:-1]:
            target = target[key]
        self.last_instructions = f"Reviewed by hand, edit {number}: " + target[INSTRUCTIONS[-1]]
        target[INSTRUCTIONS[-1]] = self.last_instructions
        path.write_bytes(encode(document))
        git(self.work, "commit", "-q", "-am", f"Review edit {number}", env=CLI_IDENTITY)

    def push(self) -> None:
        """Push main; when refused because main moved, ``git pull --rebase`` and push again."""
        for _ in range(100):
            self.pushes += 1
            done = self.run_git("push", "-q", "origin", "main")
            if done.returncode == 0:
                return
            if HOOK_DECLINED in done.stderr or "progreg:" in done.stderr:
                self.refused_content.append(done.stderr)
                return
            self.refused_moved += 1
            pulled = self.run_git("pull", "-q", "--rebase", "origin", "main")
            assert pulled.returncode == 0, pulled.stderr
        raise AssertionError("the reviewer's push was refused 100 times in a row")

    def run(self, rng: random.Random) -> None:
        try:
            git(self.work.parent, "clone", "-q", self.url, str(self.work))
            for number in range(self.edits):
                time.sleep(rng.uniform(0.0, 0.5))  # spread the edits over the fleet's run
                self.run_git("pull", "-q", "--rebase", "origin", "main")
                self.edit(number)
                self.push()
        except BaseException as exc:
            self.failure = exc


def start_workers(
    tmp_path: Path, urls: dict[str, str], http: GitServer, workers: int, saves: int
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Start every worker process (half through the daemon, half over HTTP); wait until ready."""
    children = []
    for number in range(workers):
        over_http = number % 2 == 1
        job: dict[str, Any] = {
            "registry": str(tmp_path / f"worker-{number}"),
            "url": urls["http" if over_http else "daemon"],
            "worker": number,
            "saves": saves,
            "pace": PACE,
            "result": str(tmp_path / f"result-{number}.json"),
            **({"username": http.username, "password": http.password} if over_http else {}),
        }
        job_file = tmp_path / f"job-{number}.json"
        job_file.write_text(json.dumps(job))
        child = subprocess.Popen(
            [sys.executable, str(WORKER), str(job_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=WORKER.parent,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        )
        children.append((child, Path(job["result"])))
    for child, _ in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"ready\n", line + (child.stderr.read() if child.stderr else b"")
    return children


def server_programs(served: Path) -> list[str]:
    """The program ids on the server's main, one per program file (a repeat would show twice)."""
    paths = git(served, "ls-tree", "-r", "--name-only", "main", "--", "programs").split()
    ids = [program_id_of_path(path) for path in paths]
    assert None not in ids, paths
    return [program_id for program_id in ids if program_id is not None]


def server_documents(served: Path, ids: list[str]) -> dict[str, Any]:
    """The documents of ``ids`` on the server's main, read with ``git cat-file --batch``."""
    request = "".join(f"main:{program_path(program_id)}\n" for program_id in ids).encode()
    out = subprocess.run(
        ["git", "-C", str(served), "cat-file", "--batch"],
        input=request,
        capture_output=True,
        check=True,
    ).stdout
    documents: dict[str, Any] = {}
    for program_id in ids:
        header, _, out = out.partition(b"\n")
        size = int(header.split()[2])
        documents[program_id] = decode(out[:size])
        out = out[size + 1 :]
    return documents


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def fleet(
    tmp_path: Path, git_daemon: GitServer, http_server: GitServer, workers: int, saves: int
) -> None:
    served, urls = served_by_both(git_daemon, http_server)
    seed_server(tmp_path, urls["daemon"])
    children = start_workers(tmp_path, urls, http_server, workers, saves)
    reviewer = Reviewer(urls["daemon"], tmp_path / "reviewer", edits=3)
    reviewing = threading.Thread(target=reviewer.run, args=(random.Random(7),))

    started = time.monotonic()
    for child, _ in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
    reviewing.start()
    reports = []
    for child, result in children:
        _, err = child.communicate(timeout=900)
        assert child.returncode == 0, err.decode(errors="replace")
        reports.append(json.loads(result.read_text()))
    reviewing.join(timeout=900)
    seconds = time.monotonic() - started

    crashes = [r["crash"] for r in reports if "crash" in r]
    assert not crashes, crashes[0]
    assert reviewer.failure is None, reviewer.failure
    # The hook refused nothing valid: every refusal was a race for main.
    content_refusals = [c for r in reports for c in r["content_refusals"]]
    assert not content_refusals, content_refusals[:3]
    assert not reviewer.refused_content, reviewer.refused_content[:1]
    errors = [e for r in reports for e in r["errors"]]
    assert not errors, errors[:3]

    saved = [s for r in reports for s in r["saves"]]
    assert len(saved) == workers * saves
    ids = [s["id"] for s in saved]
    assert len(set(ids)) == len(ids), "a program id was handed out twice"
    acknowledged = [s for s in saved if s["latency"] is not None]
    assert len(acknowledged) == len(saved), "a worker's saves were never synced"

    on_main = server_programs(served)
    assert len(on_main) == len(set(on_main)), "a program appears twice on the server"
    assert set(on_main) == {SEED, *ids}, "programs lost on the server, or unknown ones there"
    documents = server_documents(served, on_main)
    for record in acknowledged:
        document = documents[record["id"]]
        assert document["program_data"]["state"] == program_state(record["index"])
        expected = optimization_result(record["index"])["best_score_value"]
        assert document["optimization_result"]["best_score_value"] == expected
    history = set(git(served, "rev-list", "main").split())
    assert {s["commit"] for s in acknowledged} <= history, "a save's commit is not in main"
    actions = git(
        served, "log", "--format=%(trailers:key=Progreg-Action,valueonly,separator=)", "main"
    ).split()
    assert actions.count("save") == len(saved) + 1, "one save commit per save (and the seed's)"
    seed = documents[SEED]
    for key in INSTRUCTIONS:
        seed = seed[key]
    assert seed == reviewer.last_instructions, "the reviewer's edit is not on main"

    assert_fsck_clean(served)
    for number in range(workers):
        assert_fsck_clean(tmp_path / f"worker-{number}")

    latencies = [s["latency"] for s in acknowledged]
    counts = [r["counts"] for r in reports]
    per_worker = ", ".join(
        f"w{r['worker']}({'http' if r['url'].startswith('http') else 'git'})"
        f" {c['synced']}/{c['syncs']} syncs {c['rounds']} rounds {c['refusals']} refused"
        f" ({c['refused_before_sending']} before sending, {c['refused_after_sending']} after)"
        for r, c in zip(reports, counts, strict=True)
    )
    print(
        f"\nfleet: {workers} workers x {saves} saves = {len(saved)} saves in {seconds:.1f} s;"
        f" {len(acknowledged) / seconds:.1f} acknowledged saves/s on the server;"
        f" save->visible median {statistics.median(latencies) * 1000:.0f} ms,"
        f" p90 {percentile(latencies, 0.9) * 1000:.0f} ms;"
        f" reviewer {reviewer.pushes} pushes, {reviewer.refused_moved} refused (main moved);"
        f" lost 0, duplicated 0, content refusals 0\n  per worker: {per_worker}"
    )


def test_a_fleet_of_workers_saves_and_syncs_through_one_server(
    tmp_path: Path, git_daemon: GitServer, http_server: GitServer
) -> None:
    fleet(tmp_path, git_daemon, http_server, workers=8, saves=10)


@pytest.mark.slow
def test_a_fleet_of_workers_saves_and_syncs_through_one_server_longer(
    tmp_path: Path, git_daemon: GitServer, http_server: GitServer
) -> None:
    fleet(tmp_path, git_daemon, http_server, workers=16, saves=30)
