"""The pre-receive hook, ``progreg validate`` and the pre-commit entry, with the real git CLI.

Each test builds a registry with progreg, makes a bare "server" clone of it
(``git clone --bare``), installs the hook with ``progreg hooks install`` and
pushes with real ``git push``: from the registry itself, or from an ordinary
work-tree clone edited by hand. A refused push must show the hook's reason as
``remote: progreg: ...`` and leave the server as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO, StringIO
from pathlib import Path

import pygit2
import pytest
from click.testing import CliRunner

from progreg import ProgramStorage, StorageConfig, StorageManager
from progreg.cli import cli, main
from progreg.errors import ConflictError, NotARegistryError
from progreg.integrations.hooks import (
    hook_script,
    install,
    open_repository,
    pre_receive,
    split_alternates,
)
from progreg.registry.validation import check_file
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, git

ROOT = Path(__file__).resolve().parents[2]
PROGREG = Path(sys.executable).with_name("progreg")
FIRST = "1a2b3c4d5e6f7a8b"
SECOND = "00ff00ff00ff00ff"
THIRD = "abcdef0123456789"


def path_of(program_id: str) -> str:
    """Where a program lives in the tree."""
    return f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


def state(text: str) -> dict[str, object]:
    """A small DSPy-shaped program state."""
    return {"predict": {"signature": {"instructions": text, "fields": []}, "demos": []}}


def result(score: float) -> dict[str, object]:
    """An optimization result with a score and an optimizer."""
    return {
        "best_score_name": "accuracy",
        "best_score_value": score,
        "metadata": {"optimizer": "MIPROv2"},
    }


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command (never failing the test by itself) and capture its text output."""
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **CLI_IDENTITY, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git push`` from ``repo``."""
    return run(["git", "-C", str(repo), "push", *args])


def assert_refused(done: subprocess.CompletedProcess[str], *reasons: str) -> None:
    """The push failed because the hook said no, and git showed each reason as ``remote:``."""
    assert done.returncode != 0, done.stderr
    assert "pre-receive hook declined" in done.stderr, done.stderr
    remote = [line for line in done.stderr.splitlines() if line.startswith("remote: progreg: ")]
    for reason in reasons:
        assert any(reason in line for line in remote), f"{reason!r} not in:\n{done.stderr}"


def assert_accepted(done: subprocess.CompletedProcess[str]) -> None:
    """The push went through."""
    assert done.returncode == 0, done.stderr
    assert "remote: progreg" not in done.stderr


def commit_all(work: Path, message: str) -> str:
    """Stage everything in the work tree and commit it; return the commit id."""
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message, env=CLI_IDENTITY)
    return git(work, "rev-parse", "HEAD").strip()


def refs(repo: Path) -> str:
    """Every ref and what it points at."""
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


@dataclass
class Written:
    """A program file written by progreg, and the message of the commit that saved it."""

    data: bytes
    message: str


def written_by_progreg(
    tmp_path: Path, program_id: str, score: float, text: str = "Classify."
) -> Written:
    """Save a program with progreg in a scratch registry; return its file and commit message."""
    scratch = tmp_path / f"scratch-{program_id}-{score}"
    storage = ProgramStorage(scratch)
    storage.save_program(
        state(text), result(score), metadata={"signature_class": "Classify"}, program_id=program_id
    )
    data = subprocess.run(
        ["git", "-C", str(scratch), "show", f"main:{path_of(program_id)}"],
        capture_output=True,
        check=True,
    ).stdout
    return Written(data, git(scratch, "log", "-1", "--format=%B"))


@dataclass
class Site:
    """A registry, its bare server clone with the hook installed, and a work-tree clone."""

    registry: Path
    storage: ProgramStorage
    server: Path
    work: Path


def make_site(tmp_path: Path, server_name: str = "server.git") -> Site:
    """Build a registry (one program, tagged ``prod``), serve it and clone it."""
    registry = tmp_path / "registry"
    storage = ProgramStorage(registry)
    storage.save_program(
        state("Classify the text."),
        result(0.91),
        metadata={"signature_class": "Classify"},
        program_id=FIRST,
        tags=["prod"],
    )
    server = tmp_path / server_name
    git(tmp_path, "clone", "-q", "--bare", str(registry), str(server))
    done = CliRunner().invoke(cli, ["hooks", "install", str(server)])
    assert done.exit_code == 0, done.output
    assert done.output == f"installed {server / 'hooks' / 'pre-receive'}\n"
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(server), str(work))
    return Site(registry, storage, server, work)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A fresh registry, server and work tree."""
    return make_site(tmp_path)


# -- the hook file and its installation ---------------------------------------------


def test_committed_hook_is_the_template_and_executable() -> None:
    hook = ROOT / "hooks" / "pre-receive"
    assert hook.read_text() == hook_script()
    assert hook.read_text().startswith("#!/usr/bin/env python3\n")
    assert hook.stat().st_mode & stat.S_IXUSR


def test_install_uses_this_interpreter_and_guards_other_hooks(tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(server))
    done = run([str(PROGREG), "hooks", "install", str(server)])
    assert done.returncode == 0, done.stderr
    hook = server / "hooks" / "pre-receive"
    text = hook.read_text()
    # the interpreter of the progreg that installed it (the console script's own)
    interpreter = PROGREG.read_text().splitlines()[0].removeprefix("#!")
    assert Path(interpreter).resolve() == Path(sys.executable).resolve()
    assert text == hook_script(interpreter)
    assert os.access(hook, os.X_OK)
    assert run([str(PROGREG), "hooks", "install", str(server)]).returncode == 0  # identical: kept

    hook.write_text("#!/bin/sh\nexit 0\n")
    refused = run([str(PROGREG), "hooks", "install", str(server)])
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: {hook} already exists and is a different hook; keep it, or replace it"
        " with --force (force=True)"
    ]
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
    forced = run([str(PROGREG), "hooks", "install", "--force", str(server)])
    assert forced.returncode == 0, forced.stderr
    assert hook.read_text() == text

    hook.write_text("other\n")
    with pytest.raises(ConflictError):
        install(server)
    assert install(server, force=True) == hook


def test_install_refuses_what_is_not_a_bare_registry(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", str(work))
    with pytest.raises(NotARegistryError, match="is a work tree"):
        install(work)
    with pytest.raises(NotARegistryError, match="is not a Git repository"):
        install(tmp_path)
    foreign = tmp_path / "foreign.git"
    git(tmp_path, "init", "-q", "--bare", str(foreign))
    git(work, "commit", "-q", "--allow-empty", "-m", "x", env=CLI_IDENTITY)
    git(work, "push", "-q", str(foreign), "HEAD:refs/heads/main")
    with pytest.raises(NotARegistryError, match=r"no progreg\.json on main"):
        install(foreign)
    done = run([str(PROGREG), "hooks", "install", str(tmp_path / "missing")])
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: ")


def test_help_shows_examples() -> None:
    for command in (["hooks", "install", "--help"], ["validate", "--help"]):
        done = CliRunner().invoke(cli, command)
        assert done.exit_code == 0
        assert "Example:" in done.output
    assert (
        "progreg hooks install /srv/git/registry.git"
        in CliRunner().invoke(cli, ["hooks", "install", "--help"]).output
    )


def test_hook_with_an_interpreter_path_holding_a_space(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    folder = tmp_path / "python dir"
    folder.mkdir()
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    wrapper.chmod(0o755)
    install(site.server, force=True, interpreter=str(wrapper))
    assert (site.server / "hooks" / "pre-receive").read_text().startswith("#!/bin/sh\n")
    (site.work / "notes.txt").write_text("hello\n")
    commit_all(site.work, "Add notes")
    assert_refused(push(site.work, "origin", "main"), "notes.txt is not part of a registry")


# -- accepted pushes ----------------------------------------------------------------


def test_saves_tags_and_checkpoints_pushed_from_a_registry_are_accepted(site: Site) -> None:
    manager = StorageManager(StorageConfig(storage_path=site.registry))
    storage = manager.storage
    storage.save_program(state("Route."), result(0.7), program_id=SECOND, tags=["candidate"])
    storage.save_program(state("Answer."), result(0.8), program_id=THIRD)
    storage.delete_program(THIRD)
    storage.restore_program(THIRD)
    manager.tag_program(THIRD, "prod")
    run_result = {"optimized_program": state("Step."), "best_score_value": 0.5}
    manager.create_checkpoint(run_result, "run-1", {"step": 1})
    manager.create_checkpoint({**run_result, "best_score_value": 0.6}, "run-1", {"step": 2})
    everything = [
        "refs/heads/main:refs/heads/main",
        "refs/tags/*:refs/tags/*",
        "refs/heads/checkpoints/*:refs/heads/checkpoints/*",
    ]
    assert_accepted(push(site.registry, str(site.server), *everything))
    assert refs(site.server) == refs(site.registry)
    assert_fsck_clean(site.server)
    served = ProgramStorage(site.server)
    assert {p.program_id for p in served.list_programs()} == {FIRST, SECOND, THIRD}

    manager.config.max_stored_programs = 2
    assert manager.cleanup_old_programs().removed_count == 1
    assert git(site.registry, "log", "-1", "--format=%s").startswith("Cleanup: remove 1 program")
    assert_accepted(push(site.registry, str(site.server), "main"))
    manager.create_checkpoint({**run_result, "best_score_value": 0.7}, "run-1", {"step": 3})
    assert_accepted(push(site.registry, str(site.server), "refs/heads/checkpoints/run-1"))
    assert_accepted(push(site.registry, str(site.server), ":refs/heads/checkpoints/run-1"))
    assert "checkpoints/run-1" not in refs(site.server)


def test_first_push_into_an_empty_server(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    storage = ProgramStorage(registry)
    for program_id in (FIRST, SECOND):
        storage.save_program(state("Go."), result(0.5), program_id=program_id, tags=["v1"])
    server = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(server))
    install(server)
    assert_accepted(push(registry, str(server), "main", "refs/tags/*:refs/tags/*"))
    assert refs(server) == refs(registry)

    other = tmp_path / "other"
    git(tmp_path, "init", "-q", str(other))
    (other / "data.csv").write_text("a,b\n")
    commit_all(other, "Not a registry")
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    install(empty)
    assert_refused(
        push(other, str(empty), "HEAD:refs/heads/main"),
        "progreg.json is missing",
        "data.csv is not part of a registry",
    )
    assert refs(empty) == ""


def test_a_program_file_copied_into_a_checkout_is_accepted(site: Site, tmp_path: Path) -> None:
    written = written_by_progreg(tmp_path, SECOND, 0.8)
    target = site.work / path_of(SECOND)
    target.parent.mkdir(parents=True)
    target.write_bytes(written.data)
    (site.work / "README.md").write_text("# Our programs\n")
    (site.work / ".github" / "workflows").mkdir(parents=True)
    (site.work / ".github" / "workflows" / "validate.yml").write_text("on: pull_request\n")
    commit_all(site.work, "Add a router program and a README")
    # progreg's own message (trailers included) on a hand-made commit is accepted too
    better = written_by_progreg(tmp_path, SECOND, 0.85)
    (site.work / path_of(SECOND)).write_bytes(better.data)
    commit_all(site.work, better.message)
    assert_accepted(push(site.work, "origin", "main"))
    assert git(site.server, "rev-parse", "main") == git(site.work, "rev-parse", "HEAD")
    loaded = ProgramStorage(site.server).load_program(SECOND)
    assert loaded is not None and loaded.best_score == 0.85


# -- refused pushes -------------------------------------------------------------------


def _canonical_first(site: Site) -> bytes:
    return (site.work / path_of(FIRST)).read_bytes()


Edits = Callable[[bytes], dict[str, bytes | None]]
BAD_FILES: dict[str, tuple[Edits, list[str]]] = {
    "invalid JSON": (
        lambda first: {path_of(FIRST): b'{"program_id": "1a2b'},
        [f"{path_of(FIRST)} is not valid JSON"],
    ),
    "non-canonical JSON": (
        lambda first: {path_of(FIRST): json.dumps(json.loads(first)).encode()},
        [f"{path_of(FIRST)} is not canonical JSON", "run `progreg validate --fix`"],
    ),
    "path does not match the id": (
        lambda first: {path_of(SECOND): first},
        [f"{path_of(SECOND)} holds program {FIRST}, but its path says {SECOND}"],
    ),
    "program in the wrong directory": (
        lambda first: {f"programs/ff/ff/{FIRST}.json": first},
        [f"programs/ff/ff/{FIRST}.json is in the wrong directory", "git mv programs/ff/ff"],
    ),
    "file outside the allowed set": (
        lambda first: {"notes.txt": b"remember\n", "programs/1a/2b/notes.md": b"x\n"},
        ["notes.txt is not part of a registry", "programs/1a/2b/notes.md is not a program file"],
    ),
    "not a program document": (
        lambda first: {path_of(FIRST): b'{\n  "hello": 1\n}\n'},
        [f"{path_of(FIRST)} lacks program_id"],
    ),
    "marker removed": (lambda first: {"progreg.json": None}, ["progreg.json is missing"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_refused(site: Site, case: str) -> None:
    make, reasons = BAD_FILES[case]
    before = refs(site.server)
    for name, data in make(_canonical_first(site)).items():
        target = site.work / name
        if data is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    commit_all(site.work, f"Edit by hand: {case}")
    done = push(site.work, "origin", "main")
    assert_refused(done, *reasons)
    assert "every pushed commit is checked" in done.stderr
    assert refs(site.server) == before


def test_a_bad_commit_is_refused_even_when_a_later_one_fixes_it(site: Site) -> None:
    (site.work / "notes.txt").write_text("oops\n")
    commit_all(site.work, "Add notes")
    (site.work / "notes.txt").unlink()
    commit_all(site.work, "Remove notes")
    assert_refused(push(site.work, "origin", "main"), "notes.txt is not part of a registry")


def test_force_push_rewriting_main_is_refused(site: Site) -> None:
    before = refs(site.server)
    git(site.work, "commit", "-q", "--amend", "-m", "Rewritten", env=CLI_IDENTITY)
    assert_refused(push(site.work, "--force", "origin", "main"), "this push rewrites history")
    assert refs(site.server) == before


def test_rewinding_and_deleting_main_are_refused(site: Site, tmp_path: Path) -> None:
    (site.work / path_of(SECOND)).parent.mkdir(parents=True)
    (site.work / path_of(SECOND)).write_bytes(written_by_progreg(tmp_path, SECOND, 0.5).data)
    commit_all(site.work, "Add a program")
    assert_accepted(push(site.work, "origin", "main"))
    before = refs(site.server)
    assert_refused(push(site.work, "--force", "origin", "HEAD~1:main"), "rewrites history")
    assert_refused(push(site.work, "origin", ":main"), "refs/heads/main: deleting main is refused")
    assert refs(site.server) == before


def test_moving_or_deleting_a_tag_is_refused(site: Site, tmp_path: Path) -> None:
    tag = f"prod/{FIRST}"
    assert f"refs/tags/{tag}" in refs(site.server)
    (site.work / path_of(SECOND)).parent.mkdir(parents=True)
    (site.work / path_of(SECOND)).write_bytes(written_by_progreg(tmp_path, SECOND, 0.5).data)
    commit_all(site.work, "Add a program")
    assert_accepted(push(site.work, "origin", "main"))
    before = refs(site.server)
    git(site.work, "tag", "-f", "-a", "-m", "moved", tag, "HEAD", env=CLI_IDENTITY)
    assert_refused(
        push(site.work, "--force", "origin", f"refs/tags/{tag}"),
        f"refs/tags/{tag}: tags never move",
    )
    assert_refused(
        push(site.work, "origin", f":refs/tags/{tag}"),
        f"refs/tags/{tag}: deleting a tag is refused",
    )
    assert refs(site.server) == before


def test_new_tags_must_be_annotated_and_point_at_the_program(site: Site) -> None:
    git(site.work, "tag", f"light/{FIRST}")
    git(site.work, "tag", "-a", "-m", "x", f"wrong/{SECOND}", "HEAD", env=CLI_IDENTITY)
    git(site.work, "checkout", "-q", "--orphan", "elsewhere")
    commit_all(site.work, "Not on main")
    git(site.work, "tag", "-a", "-m", "x", f"stray/{FIRST}", "HEAD", env=CLI_IDENTITY)
    assert_refused(
        push(
            site.work,
            "origin",
            f"refs/tags/light/{FIRST}",
            f"refs/tags/wrong/{SECOND}",
            f"refs/tags/stray/{FIRST}",
        ),
        f"refs/tags/light/{FIRST}: a tag must be an annotated tag object",
        f"has no {path_of(SECOND)}: tag the commit that saved program {SECOND}",
        "is not in main's history",
    )
    git(site.work, "tag", "-a", "-m", "x", f"good/{FIRST}", "main", env=CLI_IDENTITY)
    assert_accepted(push(site.work, "origin", f"refs/tags/good/{FIRST}"))


def test_refs_outside_the_namespaces_are_refused(site: Site) -> None:
    git(site.work, "tag", "v1")
    before = refs(site.server)
    assert_refused(
        push(
            site.work,
            "origin",
            "refs/tags/v1",
            "HEAD:refs/notes/commits",
            "HEAD:refs/heads/checkpoints/a/b",
        ),
        "refs/tags/v1: this server holds a progreg registry",
        "refs/notes/commits: this server holds",
        "refs/heads/checkpoints/a/b: invalid checkpoint name 'a/b'",
    )
    assert refs(site.server) == before


# -- review branches ------------------------------------------------------------------


def a_review_commit(site: Site, tmp_path: Path, score: float) -> str:
    """Commit on a branch of the work tree a new version of FIRST, as progreg writes it."""
    written = written_by_progreg(tmp_path, FIRST, score, text=f"Classify, version {score}.")
    (site.work / path_of(FIRST)).write_bytes(written.data)
    git(site.work, "add", "-A")
    git(site.work, "commit", "-q", "-m", written.message, env=CLI_IDENTITY)
    return git(site.work, "rev-parse", "HEAD").strip()


def test_a_review_branch_is_accepted_rewritten_and_deleted(site: Site, tmp_path: Path) -> None:
    """A pull request from the same repository: any branch but main and checkpoints/*."""
    git(site.work, "switch", "-q", "-c", "review/shorter-prompt")
    first = a_review_commit(site, tmp_path, 0.93)
    assert_accepted(push(site.work, "origin", "review/shorter-prompt"))
    main_before = git(site.server, "rev-parse", "main").strip()
    git(site.work, "commit", "-q", "--amend", "-m", "Reworded", env=CLI_IDENTITY)
    assert_accepted(push(site.work, "--force", "origin", "review/shorter-prompt"))  # rebased
    assert git(site.server, "rev-parse", "review/shorter-prompt").strip() != first
    assert_accepted(push(site.work, "origin", ":review/shorter-prompt"))
    assert "review/shorter-prompt" not in refs(site.server)
    assert git(site.server, "rev-parse", "main").strip() == main_before
    assert_fsck_clean(site.server)


def test_a_review_branch_is_checked_as_main_is(site: Site) -> None:
    git(site.work, "switch", "-q", "-c", "feature")
    (site.work / path_of(FIRST)).write_bytes(
        json.dumps(json.loads(_canonical_first(site))).encode()
    )
    commit_all(site.work, "Edit by hand")
    before = refs(site.server)
    assert_refused(
        push(site.work, "origin", "feature"),
        f"refs/heads/feature commit {git(site.work, 'rev-parse', 'HEAD')[:12]}:"
        f" {path_of(FIRST)} is not canonical JSON",
    )
    assert refs(site.server) == before


def test_the_server_configuration_narrows_or_closes_review_branches(
    site: Site, tmp_path: Path
) -> None:
    git(site.work, "switch", "-q", "-c", "feature")
    a_review_commit(site, tmp_path, 0.92)
    git(site.server, "config", "--add", "progreg.reviewBranches", "review/*")
    git(site.server, "config", "--add", "progreg.reviewBranches", "pr-*")
    assert_refused(
        push(site.work, "origin", "feature"),
        "refs/heads/feature: this server accepts review branches matching review/*, pr-* only",
    )
    assert_accepted(push(site.work, "origin", "feature:pr-7"))
    git(site.server, "config", "--replace-all", "progreg.reviewBranches", "none")
    assert_refused(
        push(site.work, "origin", "feature:review/x"),
        "this server accepts no review branches",
        "git config --add progreg.reviewBranches",
    )
    assert_accepted(push(site.work, "origin", ":pr-7"))  # deleting stays allowed


def test_a_ref_named_with_a_credential_is_refused_without_echoing_it(site: Site) -> None:
    key = "ghp_" + "a1B2c3D4e5" * 4
    git(site.work, "tag", "-a", "-m", "x", f"{key}/{FIRST}", "main", env=CLI_IDENTITY)
    before = refs(site.server)
    done = push(
        site.work,
        "origin",
        f"refs/tags/{key}/{FIRST}",
        f"HEAD:refs/heads/checkpoints/{key}",
        f"HEAD:refs/heads/review/{key}",
    )
    assert_refused(
        done,
        f"refs/tags/[REDACTED]/{FIRST}:",
        "refs/heads/checkpoints/[REDACTED]:",
        "refs/heads/review/[REDACTED]: a branch name must not be a credential",
    )
    remote = [line for line in done.stderr.splitlines() if line.startswith("remote:")]
    assert not any(key in line for line in remote), remote
    assert refs(site.server) == before


def test_checkpoint_branches_hold_checkpoints(site: Site) -> None:
    manager = StorageManager(StorageConfig(storage_path=site.registry))
    manager.create_checkpoint({"optimized_program": state("Step.")}, "run-1")
    assert_refused(
        push(site.work, "origin", "HEAD:refs/heads/checkpoints/run-2"),
        "checkpoint.json is missing: a checkpoint commit holds checkpoint.json",
    )
    assert_refused(
        push(
            site.registry,
            str(site.server),
            "refs/heads/checkpoints/run-1:refs/heads/checkpoints/run-2",
        ),
        "checkpoint.json names checkpoint 'run-1', but this is the branch of checkpoint 'run-2'",
    )


LIES: dict[str, tuple[Callable[[str], str], list[str]]] = {
    "another program": (
        lambda message: f"Save Classify {SECOND}\n\nProgram-Id: {SECOND}\nProgreg-Action: save\n",
        [f"its trailers say 'Progreg-Action: save' of program {SECOND}, but it writes {FIRST}"],
    ),
    "a delete": (
        lambda message: f"Delete program {FIRST}\n\nProgram-Id: {FIRST}\nProgreg-Action: delete\n",
        [f"its trailers say 'Progreg-Action: delete' of program {FIRST}, but it writes {FIRST}"],
    ),
    "another score": (
        lambda message: message.replace("Score: 0.95", "Score: 0.99"),
        ["its Score trailer says '0.99' while the document says '0.95'"],
    ),
    "another save time": (
        lambda message: re.sub(r"Saved-At: .*", "Saved-At: 2020-01-01T00:00:00+00:00", message),
        ["its Saved-At trailer says '2020-01-01T00:00:00+00:00'"],
    ),
}


@pytest.mark.parametrize("case", list(LIES))
def test_commits_whose_trailers_lie_are_refused(site: Site, tmp_path: Path, case: str) -> None:
    make, reasons = LIES[case]
    written = written_by_progreg(tmp_path, FIRST, 0.95, "Classify better.")
    (site.work / path_of(FIRST)).write_bytes(written.data)
    commit_all(site.work, make(written.message))
    assert_refused(push(site.work, "origin", "main"), *reasons, "reword the commit")


# -- the quarantine environment ---------------------------------------------------------


def test_the_hook_sees_quarantined_objects_through_quoted_alternates(tmp_path: Path) -> None:
    """Git C-quotes alternates containing ':'; a server path with one must still work."""
    site = make_site(tmp_path, server_name="srv:1.git")
    (site.work / path_of(SECOND)).parent.mkdir(parents=True)
    (site.work / path_of(SECOND)).write_bytes(written_by_progreg(tmp_path, SECOND, 0.5).data)
    commit_all(site.work, "Add a program")
    assert_accepted(push(site.work, "origin", "main"))
    (site.work / "notes.txt").write_text("x\n")
    commit_all(site.work, "Add notes")
    assert_refused(push(site.work, "origin", "main"), "notes.txt is not part of a registry")


def test_open_repository_adds_the_quarantine_directories(site: Site, tmp_path: Path) -> None:
    quarantine = tmp_path / "incoming"
    (quarantine / "pack").mkdir(parents=True)
    blob = git(
        site.server,
        "hash-object",
        "-w",
        "--stdin",
        env={"GIT_OBJECT_DIRECTORY": str(quarantine)},
        input=b"only in quarantine\n",
    ).strip()
    assert blob not in pygit2.Repository(str(site.server))
    objects = str(site.server / "objects")
    env = {"GIT_OBJECT_DIRECTORY": str(quarantine), "GIT_ALTERNATE_OBJECT_DIRECTORIES": objects}
    repository = open_repository(site.server, env)
    assert blob in repository
    assert git(site.server, "rev-parse", "main").strip() in repository


def test_split_alternates_reads_git_quoting() -> None:
    assert split_alternates("") == []
    assert split_alternates("/a/objects:/b/objects") == ["/a/objects", "/b/objects"]
    assert split_alternates('"/srv/x:1.git/./objects":/b') == ["/srv/x:1.git/./objects", "/b"]
    assert split_alternates(r'"/a\"b\\c\303\251"') == ['/a"b\\cé']


def test_pre_receive_refuses_what_it_cannot_check(site: Site) -> None:
    err = StringIO()
    assert pre_receive(BytesIO(b"not three fields\n"), site.server, env={}, stderr=err) == 1
    assert err.getvalue().startswith("progreg: cannot check this push (")
    assert pre_receive(BytesIO(b""), site.server, env={}, stderr=StringIO()) == 0


# -- progreg validate and the pre-commit entry ---------------------------------------------


def validate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``progreg validate`` run in ``cwd`` (in process; the pre-commit test runs the executable)."""
    out, err, code = StringIO(), StringIO(), 0
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["validate", *args])
        except SystemExit as exit:
            code = int(exit.code or 0)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_validate_a_clean_checkout(site: Site) -> None:
    done = validate(site.work)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok: 3 checked, no problem\n"  # the program, progreg.json, .gitattributes
    assert validate(site.work / "programs").returncode == 0
    assert validate(site.work, path_of(FIRST), "progreg.json").returncode == 0
    bare = validate(site.work, str(site.registry))
    assert bare.returncode == 0, bare.stderr


def test_validate_reports_and_fixes(site: Site) -> None:
    original = _canonical_first(site)
    program = site.work / path_of(FIRST)
    program.write_text(json.dumps(json.loads(original), indent=4))
    (site.work / "notes.txt").write_text("x\n")
    misplaced = site.work / path_of(SECOND)
    misplaced.parent.mkdir(parents=True)
    misplaced.write_text(json.dumps(json.loads(original), indent=4))
    (site.work / ".gitignore").write_text("build/\n")
    (site.work / "build").mkdir()
    (site.work / "build" / "junk.bin").write_bytes(b"\0")

    done = validate(site.work)
    assert done.returncode == 1
    assert f"{path_of(FIRST)} is not canonical JSON" in done.stderr
    assert "notes.txt is not part of a registry" in done.stderr
    assert f"{path_of(SECOND)} holds program {FIRST}" in done.stderr
    assert "junk.bin" not in done.stderr  # ignored by Git, so not checked
    assert done.stderr.splitlines()[-1] == "error: 3 problems"

    report = json.loads(validate(site.work, "--json").stdout)
    assert report["ok"] is False
    assert {p["path"] for p in report["problems"]} == {path_of(FIRST), "notes.txt", path_of(SECOND)}

    fixed = validate(site.work, "--fix")
    assert fixed.returncode == 1
    assert f"fixed {path_of(FIRST)}: rewritten as canonical JSON" in fixed.stdout
    assert program.read_bytes() == original  # the bytes progreg wrote
    assert misplaced.read_text() == json.dumps(json.loads(original), indent=4)  # not "fixed"

    (site.work / "notes.txt").unlink()
    misplaced.unlink()
    assert validate(site.work).returncode == 0


def test_validate_a_commit_range(site: Site) -> None:
    program = site.work / path_of(FIRST)
    program.write_text(json.dumps(json.loads(program.read_bytes())))
    bad = commit_all(site.work, f"Lie\n\nProgram-Id: {SECOND}\nProgreg-Action: delete\n")
    done = validate(site.work, "--range", "origin/main..HEAD", "--json")
    assert done.returncode == 1
    problems = json.loads(done.stdout)["problems"]
    assert {p["commit"] for p in problems} == {bad}
    messages = " ".join(p["message"] for p in problems)
    assert "is not canonical JSON" in messages
    assert f"'Progreg-Action: delete' of program {SECOND}" in messages
    unknown = validate(site.work, "--range", "nope..HEAD")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: unknown commit range 'nope..HEAD'")


def test_validate_cached_checks_what_is_staged_not_the_work_tree(site: Site) -> None:
    """git add a non-canonical file, then restore the work tree: the commit would still
    record the staged blob, and --cached finds it."""
    program = site.work / path_of(FIRST)
    original = program.read_bytes()
    program.write_text(json.dumps(json.loads(original)))
    (site.work / "notes.txt").write_text("stray\n")
    git(site.work, "add", "-A")
    program.write_bytes(original)  # the work tree is clean again, the index is not
    assert validate(site.work).returncode == 1  # notes.txt is still in the work tree
    (site.work / "notes.txt").unlink()
    assert validate(site.work).returncode == 0
    staged = validate(site.work, "--cached", "--json")
    assert staged.returncode == 1
    messages = {p["path"]: p["message"] for p in json.loads(staged.stdout)["problems"]}
    assert "is not canonical JSON" in messages[path_of(FIRST)]
    assert "is not part of a registry" in messages["notes.txt"]
    only = validate(site.work, "--cached", path_of(FIRST))
    assert only.returncode == 1 and "notes.txt" not in only.stderr
    git(site.work, "reset", "-q")  # unstage: the index matches HEAD again
    assert validate(site.work, "--cached").returncode == 0
    fixing = validate(site.work, "--cached", "--fix")
    assert fixing.returncode == 2 and "--fix rewrites work-tree files" in fixing.stderr


def test_validate_cached_reports_an_unmerged_path(site: Site) -> None:
    git(site.work, "switch", "-q", "-c", "other")
    (site.work / "README.md").write_text("ours\n")
    commit_all(site.work, "README ours")
    git(site.work, "switch", "-q", "main")
    (site.work / "README.md").write_text("theirs\n")
    commit_all(site.work, "README theirs")
    merged = run(["git", "-C", str(site.work), "merge", "-q", "other"])
    assert merged.returncode != 0  # a conflict in README.md
    done = validate(site.work, "--cached")
    assert done.returncode == 1
    assert "README.md is not merged" in done.stderr


def read_pre_commit_hooks() -> list[dict[str, str]]:
    """The hooks in ``.pre-commit-hooks.yaml`` (its simple subset of YAML: ``key: value`` lines)."""
    hooks: list[dict[str, str]] = []
    for line in (ROOT / ".pre-commit-hooks.yaml").read_text().splitlines():
        match = re.fullmatch(r"(- |  )(\w+): (.*)", line)
        if match is None:
            continue
        if match.group(1) == "- ":
            hooks.append({})
        hooks[-1][match.group(2)] = match.group(3)
    return hooks


def test_pre_commit_entry(site: Site) -> None:
    (hook,) = read_pre_commit_hooks()
    assert hook["id"] == "progreg-validate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] == "true"
    files = re.compile(hook["files"])
    assert files.search(path_of(FIRST)) and files.search("progreg.json")
    assert not files.search("README.md") and not files.search("programs/ab/notes.txt")

    program = site.work / path_of(FIRST)
    original = program.read_bytes()
    program.write_text(json.dumps(json.loads(original)))
    (site.work / "README.md").write_text("# Programs\n")
    git(site.work, "add", "-A")
    staged = git(site.work, "diff", "--cached", "--name-only").split()
    # what pre-commit runs: the entry, then the staged files its pattern selects
    command = [*shlex.split(hook["entry"]), *[p for p in staged if files.search(p)]]
    env = {"PATH": f"{PROGREG.parent}{os.pathsep}{os.environ['PATH']}"}
    done = run(command, cwd=site.work, env=env)
    assert done.returncode == 1
    assert f"{path_of(FIRST)} is not canonical JSON" in done.stderr
    assert run([*command, "--fix"], cwd=site.work, env=env).returncode == 0
    assert program.read_bytes() == original


def test_check_file_rules() -> None:
    assert check_file("README.md", b"anything").problems == ()
    assert check_file(".github/workflows/ci.yml", b"x").problems == ()
    (checkpoint_on_main,) = check_file("checkpoint.json", b"{}\n").problems
    assert "belongs on checkpoint branches" in checkpoint_on_main
    manifest = b'{\n  "name": "run",\n  "program_id": "zz"\n}\n'
    problems = check_file("checkpoint.json", manifest, kind="checkout").problems
    assert any("program_id 'zz'" in p for p in problems)
    marker = check_file("progreg.json", b'{"format_version":1}')
    assert marker.canonical == b'{\n  "format_version": 1\n}\n'
    newer = check_file("progreg.json", b'{\n  "format_version": 2\n}\n').problems
    assert "upgrade progreg" in newer[0]
    duplicate = check_file("progreg.json", b'{"format_version": 1, "format_version": 1}')
    assert "repeats the key(s) 'format_version'" in duplicate.problems[0]
    assert duplicate.canonical is None
    (executable,) = check_file("progreg.json", b"", mode=0o100755).problems
    assert "git update-index --chmod=-x progreg.json" in executable
    (link,) = check_file(path_of(FIRST), b"", mode=0o120000).problems
    assert "is a symbolic link" in link
    (large,) = check_file(path_of(FIRST), b" " * 11, max_program_bytes=10).problems
    assert "over the registry's limit of 10 bytes" in large
