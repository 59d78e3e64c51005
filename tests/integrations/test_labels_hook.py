"""The pre-receive hook against label files pushed with plain ``git push`` to a ``git daemon``.

A registry with labels is pushed by progreg to a repository served by a real
``git daemon`` on 127.0.0.1 with progreg's hook installed; a work-tree clone
then edits ``labels/ClassifyText.json`` by hand. A label naming a program
that does not exist, or one of another signature, is refused with the hook's
reason and the server keeps its main; a sound move by hand goes through.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from progreg import ProgramStorage
from progreg.cli import main
from progreg.integrations.hooks import install
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, git

if TYPE_CHECKING:
    from support.servers import GitServer

SIG = "ClassifyText"


def save(storage: ProgramStorage, n: int, signature: str = SIG) -> str:
    state = {"predict": {"signature": {"instructions": f"Instruction {n}"}, "demos": []}}
    return storage.save_program(state, None, {"signature_class": signature}).program_id


def push(work: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(work), "push", "origin", "main"],
        env={**os.environ, **CLI_IDENTITY},
        capture_output=True,
        text=True,
        check=False,
    )


def write_labels(work: Path, labels: dict[str, str], message: str) -> None:
    """Write the label file in the work tree by hand (canonical JSON) and commit it."""
    path = work / "labels" / f"{SIG}.json"
    path.write_bytes(
        orjson.dumps(labels, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message, env=CLI_IDENTITY)


def test_hook_refuses_dangling_and_wrong_signature_labels(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served = git_daemon.create("labels-hook.git")
    install(served)
    storage = ProgramStorage(tmp_path / "registry")
    storage.add_remote("origin", git_daemon.url("labels-hook.git"))
    first, second = save(storage, 1), save(storage, 2)
    other = save(storage, 3, "Summarize")
    storage.set_label(SIG, "production", first)
    storage.push()  # progreg's own moves pass the hook
    tip = git(served, "rev-parse", "main").strip()

    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", git_daemon.url("labels-hook.git"), str(work))

    write_labels(work, {"production": "0123456789abcdef"}, "Point production at nothing")
    refused = push(work)
    assert refused.returncode != 0
    assert "pre-receive hook declined" in refused.stderr
    assert "names program 0123456789abcdef, which this commit's main does not hold" in (
        refused.stderr
    )
    assert git(served, "rev-parse", "main").strip() == tip

    git(work, "reset", "-q", "--hard", "origin/main")
    write_labels(work, {"production": other}, "Point production at a Summarize program")
    refused = push(work)
    assert refused.returncode != 0
    assert f"names program {other}, which solves Summarize" in refused.stderr
    assert git(served, "rev-parse", "main").strip() == tip

    git(work, "reset", "-q", "--hard", "origin/main")
    git(work, "rm", "-q", f"programs/{first[:2]}/{first[2:4]}/{first}.json")
    git(work, "commit", "-q", "-m", "Remove the labelled program", env=CLI_IDENTITY)
    refused = push(work)
    assert refused.returncode != 0
    assert f"names program {first}" in refused.stderr
    assert git(served, "rev-parse", "main").strip() == tip

    git(work, "reset", "-q", "--hard", "origin/main")
    write_labels(work, {"production": second}, "Move production by hand")
    accepted = push(work)
    assert accepted.returncode == 0, accepted.stderr
    storage.pull()
    assert storage.resolve_label(SIG, "production") == second
    assert_fsck_clean(served)


def test_validate_cached_refuses_a_staged_dangling_label(tmp_path: Path) -> None:
    storage = ProgramStorage(tmp_path / "registry")
    first = save(storage, 1)
    other = save(storage, 2, "Summarize")
    storage.set_label(SIG, "production", first)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(tmp_path / "registry"), str(work))
    assert validate_cached(work).returncode == 0

    path = work / "labels" / f"{SIG}.json"
    path.write_bytes(orjson.dumps({"production": other}, option=orjson.OPT_INDENT_2) + b"\n")
    git(work, "add", "-A")
    done = validate_cached(work)
    assert done.returncode == 1
    assert f"names program {other}, which solves Summarize" in done.stdout + done.stderr

    git(work, "rm", "-q", f"programs/{first[:2]}/{first[2:4]}/{first}.json")
    path.write_bytes(orjson.dumps({"production": first}, option=orjson.OPT_INDENT_2) + b"\n")
    git(work, "add", "-A")
    done = validate_cached(work)
    assert done.returncode == 1
    assert "which this commit's main does not hold" in done.stdout + done.stderr


def validate_cached(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``progreg validate --cached`` run in ``cwd``, in process."""
    out, err, code = StringIO(), StringIO(), 0
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["validate", "--cached"])
        except SystemExit as exit:
            code = int(exit.code or 0)
    return subprocess.CompletedProcess(
        ["validate", "--cached"], code, out.getvalue(), err.getvalue()
    )
