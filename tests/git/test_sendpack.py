"""progreg's smart push (dulwich's client, progreg's objects and rules) against real
``git daemon`` and ``git http-backend`` servers.

What is sent (only what the remote lacks, as ``git rev-list --objects``
counts it, and nothing when it has everything), that the remote stays
``git fsck --strict`` clean through checkpoints and tags on old commits, and
per-ref refusals by a server hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pygit2
import pytest

from progreg import ProgramStorage, PushRejectedError, RemoteError
from progreg.git.wire.pushobjects import missing_objects
from progreg.git.wire.remote import smart_scheme
from progreg.registry.checkpoints import Checkpoints
from support.gitcli import assert_fsck_clean, git

if TYPE_CHECKING:
    from pathlib import Path

    from support.servers import GitServer

MAIN = "refs/heads/main"


def save(storage: ProgramStorage, n: int, **kwargs: Any) -> str:
    state = {"predict": {"signature": {"instructions": f"Instruction {n}"}, "demos": []}}
    result = {"best_score_name": "accuracy", "best_score_value": round(0.5 + n / 1000, 4)}
    saved = storage.save_program(state, result, {"signature_class": "Classify"}, **kwargs)
    return saved.program_id


def server(request: pytest.FixtureRequest, kind: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    found: GitServer = request.getfixturevalue(kind)
    if kind == "http_server":
        monkeypatch.setenv("PROGREG_GIT_USERNAME", found.username)
        monkeypatch.setenv("PROGREG_GIT_PASSWORD", found.password)
    return found


def target(repo: pygit2.Repository, ref: str) -> pygit2.Oid:
    """The object ``ref`` points at."""
    return pygit2.Oid(hex=str(repo.references[ref].target))


@pytest.mark.parametrize("kind", ["git_daemon", "http_server"])
def test_pushes_keep_the_remote_fsck_clean_with_checkpoints_and_old_tags(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served_by = server(request, kind, monkeypatch)
    served = served_by.create()
    alice = ProgramStorage(tmp_path / "alice")
    alice.add_remote("origin", served_by.url("registry.git"))
    first = save(alice, 1, tags=["candidate"])
    for n in range(2, 6):
        save(alice, n)
    assert set(alice.push().created) == {MAIN, f"refs/tags/candidate/{first}"}
    assert_fsck_clean(served)
    old = git(tmp_path / "alice", "rev-list", "--reverse", "main").split()[0]
    alice.registry.git.create_tag(f"prod/{first}", old, alice.registry.identity()[1], "prod\n")
    state: dict[str, Any] = {"predict": {"demos": []}}
    Checkpoints(alice.registry).create(state, {"best_score_value": 0.5}, "run1")
    save(alice, 6)
    pushed = alice.push()
    assert set(pushed.created) == {f"refs/tags/prod/{first}", "refs/heads/checkpoints/run1"}
    assert pushed.updated == sorted(pushed.updated, key=lambda r: r != MAIN) and MAIN in (
        pushed.updated
    )
    for ref in (MAIN, "refs/heads/checkpoints/run1", f"refs/tags/prod/{first}"):
        assert git(served, "rev-parse", ref) == git(tmp_path / "alice", "rev-parse", ref)
    assert git(tmp_path / "alice", "rev-parse", "refs/remotes/origin/main") == git(
        served, "rev-parse", MAIN
    )
    assert_fsck_clean(served)
    assert alice.push().updated == []  # everything is there: nothing moves


@pytest.mark.parametrize("kind", ["git_daemon", "http_server"])
def test_a_hook_refusing_one_ref_reaches_the_error_with_its_reasons(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served_by = server(request, kind, monkeypatch)
    served = served_by.create()
    served_by.install_hook(
        "registry.git",
        "update",
        '#!/bin/sh\ncase "$1" in refs/tags/*) echo "tags need a review: $1" >&2; exit 1;; esac\n',
    )
    alice = ProgramStorage(tmp_path / "alice")
    alice.add_remote("origin", served_by.url("registry.git"))
    program = save(alice, 1, tags=["prod"])
    with pytest.raises(PushRejectedError) as refused:
        alice.push()
    tag = f"refs/tags/prod/{program}"
    assert refused.value.reasons == {tag: "hook declined"}
    assert f"tags need a review: {tag}" in str(refused.value)
    assert "1 other ref(s) were updated: refs/heads/main" in str(refused.value)
    assert git(served, "rev-parse", MAIN) == git(tmp_path / "alice", "rev-parse", MAIN)
    assert git(served, "for-each-ref", "refs/tags") == ""
    assert_fsck_clean(served)


def test_a_push_of_what_the_remote_has_sends_no_pack(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served_by = server(request, "http_server", monkeypatch)
    served = served_by.create()
    alice = ProgramStorage(tmp_path / "alice")
    alice.add_remote("origin", served_by.url("registry.git"))
    save(alice, 1)
    alice.push()
    served_by.requests.clear()
    assert alice.push().updated == []
    assert {method for method, _, _ in served_by.requests} == {"GET"}  # no POST, no pack
    git(tmp_path / "alice", "branch", "checkpoints/again", "main")
    repo = alice.registry.git.repo
    head = target(repo, MAIN)
    assert missing_objects(repo, [head], [head]) == []
    assert alice.push().created == ["refs/heads/checkpoints/again"]
    assert git(served, "rev-parse", "checkpoints/again") == git(served, "rev-parse", MAIN)
    assert_fsck_clean(served)


def test_the_pack_holds_exactly_what_git_counts_as_missing(tmp_path: Path) -> None:
    storage = ProgramStorage(tmp_path / "registry")
    for n in range(30):
        save(storage, n, tags=["candidate"])
    repo = storage.registry.git.repo
    remote_main = target(repo, MAIN)
    for n in range(30, 33):
        program = save(storage, n)
    old_commit = git(tmp_path / "registry", "rev-list", "--reverse", "main").split()[3]
    storage.registry.git.create_tag(
        f"prod/{program}", old_commit, storage.registry.identity()[1], "prod\n"
    )
    tag = target(repo, f"refs/tags/prod/{program}")
    head = target(repo, MAIN)
    sent = {
        pygit2.Oid(raw=oid)
        for oid, _kind, _data in missing_objects(repo, [head, tag], [remote_main])
    }
    expected = git(
        tmp_path / "registry",
        "rev-list",
        "--objects",
        str(head),
        str(tag),
        "--not",
        str(remote_main),
    ).split("\n")
    expected_ids = {pygit2.Oid(hex=line.split()[0]) for line in expected if line}
    assert sent == expected_ids
    everything = git(tmp_path / "registry", "rev-list", "--objects", "main").split("\n")
    whole = {pygit2.Oid(hex=line.split()[0]) for line in everything if line}
    assert {pygit2.Oid(raw=o) for o, _k, _d in missing_objects(repo, [head], [])} == whole


def test_which_urls_use_progregs_send_pack() -> None:
    assert smart_scheme("git://h/r.git") and smart_scheme("HTTPS://h/r.git")
    assert smart_scheme("http://h:8080/r.git")
    assert not smart_scheme("ssh://git@h/r.git") and not smart_scheme("git@h:r.git")
    assert not smart_scheme("/srv/registry.git")


def test_a_daemon_refusing_the_repository_is_a_remote_error(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    alice = ProgramStorage(tmp_path / "alice")
    alice.add_remote("origin", git_daemon.url("missing.git"))
    save(alice, 1)
    with pytest.raises(RemoteError) as failed:
        alice.push()
    assert not isinstance(failed.value, PushRejectedError)
    assert "missing.git" in str(failed.value)
