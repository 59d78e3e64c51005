"""Remotes against real servers on 127.0.0.1 (git daemon, git http-backend) and local paths.

Two registries saving independently then syncing, conflicts, concurrent
pushes, refusals by the server (a hook, a lost race) and by the fast-forward
rules, HTTP Basic auth from the environment, credentials kept out of the
registry and out of messages, safe pushes to a registry on a local path,
tags and checkpoints in both directions, hostile names and URLs, the CLI.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2
import pytest
from click.testing import CliRunner

from progreg import (
    AuthenticationError,
    ConflictError,
    Event,
    InvalidInputError,
    InvalidNameError,
    ProgramStorage,
    PushRejectedError,
    PushResult,
    RemoteError,
    subscribe,
)
from progreg.cli import cli
from progreg.core.ids import program_path
from progreg.git.wire.credentials import from_environment
from progreg.git.wire.localpush import push_local
from progreg.registry.checkpoints import Checkpoints
from progreg.registry.tags import all_tags
from support.gitcli import assert_fsck_clean, git, git_status

if TYPE_CHECKING:
    from support.servers import GitServer

MAIN = "refs/heads/main"


def save(storage: ProgramStorage, n: int, program_id: str | None = None, **kwargs: Any) -> str:
    """Save a small program numbered ``n``; return its id."""
    state = {"predict": {"signature": {"instructions": f"Instruction {n}"}, "demos": []}}
    result = {"best_score_name": "accuracy", "best_score_value": round(0.5 + n / 1000, 4)}
    saved = storage.save_program(
        state, result, {"signature_class": "ClassifyText"}, program_id, **kwargs
    )
    return saved.program_id


def ids(storage: ProgramStorage) -> set[str]:
    return {summary.program_id for summary in storage.list_programs()}


def clone(tmp_path: Path, name: str, url: str) -> ProgramStorage:
    """A new registry with ``origin`` at ``url``."""
    storage = ProgramStorage(tmp_path / name)
    storage.add_remote("origin", url)
    return storage


def rev(repo: Path, ref: str = MAIN) -> str:
    """The commit ``ref`` points at in ``repo``, or ``""`` when there is no such ref."""
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def clones_in_step(
    git_daemon: GitServer, tmp_path: Path
) -> tuple[Path, str, ProgramStorage, ProgramStorage]:
    """A served registry and two clones of it, alice and bob, both holding alice's first save."""
    served = git_daemon.create()
    url = git_daemon.url("registry.git")
    alice, bob = clone(tmp_path, "alice", url), clone(tmp_path, "bob", url)
    save(alice, 1)
    alice.push()
    bob.pull()
    return served, url, alice, bob


def served_ids(repo: Path) -> set[str]:
    names = git(repo, "ls-tree", "-r", "--name-only", MAIN, "programs").split()
    return {Path(name).stem for name in names}


@pytest.fixture
def recorded() -> Iterator[list[Event]]:
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    yield seen
    unsubscribe()


# -- two clones over git:// ---------------------------------------------------------


def test_two_clones_diverge_and_sync_through_git_daemon(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served = git_daemon.create()
    url = git_daemon.url("registry.git")
    alice, bob = clone(tmp_path, "alice", url), clone(tmp_path, "bob", url)
    first = {save(alice, 1), save(alice, 2)}
    assert alice.push().created == [MAIN]
    pulled = bob.pull()
    assert pulled.fast_forward and set(pulled.added) == first
    assert rev(tmp_path / "bob") == rev(served)

    from_bob = {save(bob, 3), save(bob, 4)}
    from_alice = {save(alice, 5), save(alice, 6)}
    assert alice.sync().pushed.updated == [MAIN]
    synced = bob.sync()  # bob's pull merges alice's saves, then pushes the merge
    assert not synced.pulled.fast_forward
    assert set(synced.pulled.added) == from_alice
    assert synced.pushed.updated == [MAIN]
    assert alice.sync().pulled.fast_forward

    everything = first | from_bob | from_alice
    assert ids(alice) == ids(bob) == everything == served_ids(served)
    assert rev(tmp_path / "alice") == rev(tmp_path / "bob") == rev(served)
    merges = git(served, "log", "--merges", "--format=%H").split()
    assert len(merges) == 1
    action = git(
        served, "log", "-1", "--format=%(trailers:key=Progreg-Action,valueonly)", merges[0]
    )
    assert action.strip() == "merge"
    for registry in (tmp_path / "alice", tmp_path / "bob", served):
        assert_fsck_clean(registry)
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", url, str(checkout))
    assert {p.stem for p in (checkout / "programs").rglob("*.json")} == everything


def test_pull_into_an_empty_registry_and_from_an_empty_remote(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    git_daemon.create()
    url = git_daemon.url("registry.git")
    alice = clone(tmp_path, "alice", url)
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    empty = alice.pull()
    assert (empty.commit, empty.added) == (None, [])
    assert alice.push().updated == []  # nothing to push yet
    saved = save(alice, 1)
    alice.push()
    bob = clone(tmp_path, "bob", url)
    assert bob.pull().added == [saved]
    assert bob.load_program(saved) is not None
    assert bob.pull().commit is None  # up to date
    unsubscribe()
    pushes = [e.fields for e in seen if e.name == "progreg.push"]
    assert [(p["updated"], p["created"], p["up_to_date"]) for p in pushes] == [(0, 0, 0), (1, 1, 0)]
    pulls = [e.fields for e in seen if e.name == "progreg.pull"]
    assert [(p["added"], p["fast_forward"]) for p in pulls] == [(0, False), (1, True), (0, False)]
    assert all(p["remote"] == "origin" and p["url"] == url for p in pushes + pulls)


def test_same_program_changed_on_both_sides_is_a_conflict_keeping_both(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served = git_daemon.create()
    alice, bob = (clone(tmp_path, n, git_daemon.url("registry.git")) for n in ("alice", "bob"))
    program_id = save(alice, 1)
    alice.push()
    bob.pull()
    save(alice, 2, program_id)  # a new version on each side
    alice.push()
    save(bob, 3, program_id)
    ours = rev(tmp_path / "bob")

    with pytest.raises(ConflictError) as raised:
        bob.pull()
    assert program_id in str(raised.value)
    assert "refs/remotes/origin/main" in str(raised.value)
    assert rev(tmp_path / "bob") == ours  # nothing merged
    theirs = git(tmp_path / "bob", "show", f"refs/remotes/origin/main:{program_path(program_id)}")
    mine = git(tmp_path / "bob", "show", f"main:{program_path(program_id)}")
    assert "Instruction 2" in theirs and "Instruction 3" in mine

    with pytest.raises(PushRejectedError) as refused:  # bob has alice's commit: not a fast-forward
        bob.push()
    assert refused.value.reasons[MAIN].startswith("non-fast-forward")
    assert rev(served) == rev(tmp_path / "alice")

    bob.delete_program(program_id)  # resolve: keep theirs
    with pytest.raises(ConflictError):  # deleting is a change too: still both sides changed it
        bob.pull()
    assert_fsck_clean(tmp_path / "bob")


def test_a_push_behind_the_remote_is_refused_with_fetch_first(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served = git_daemon.create()
    alice, bob = (clone(tmp_path, n, git_daemon.url("registry.git")) for n in ("alice", "bob"))
    save(alice, 1)
    alice.push()
    before = rev(served)
    save(bob, 2)
    with pytest.raises(PushRejectedError) as refused:
        bob.push()
    assert list(refused.value.reasons) == [MAIN]
    assert refused.value.reasons[MAIN].startswith("fetch first")
    assert "Nothing was updated" in str(refused.value)
    assert rev(served) == before
    bob.pull()
    assert bob.push().updated == [MAIN]
    assert served_ids(served) == ids(bob) == ids(alice) | ids(bob)


def test_pull_fast_forwards_a_main_that_is_behind(git_daemon: GitServer, tmp_path: Path) -> None:
    """As bundle imports do: a main the remote's extends moves to it, no merge commit."""
    served, _url, alice, bob = clones_in_step(git_daemon, tmp_path)
    assert rev(tmp_path / "bob") == rev(served)  # bob's main exists and is behind from here
    added = {save(alice, 2), save(alice, 3)}
    alice.push()
    pulled = bob.pull()
    assert pulled.fast_forward and set(pulled.added) == added
    assert pulled.commit == rev(served) == rev(tmp_path / "bob")
    assert git(tmp_path / "bob", "log", "--merges", "--format=%H", MAIN) == ""
    assert bob.push().updated == []  # nothing to send back: the histories are one
    assert_fsck_clean(tmp_path / "bob")


def test_remote_commits_that_change_no_program_still_join_the_history(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served, url, alice, bob = clones_in_step(git_daemon, tmp_path)
    work = tmp_path / "work"  # someone adds a README to the registry with plain git
    git(tmp_path, "clone", "-q", url, str(work))
    (work / "README.md").write_text("Programs of the support team.\n")
    git(work, "add", "README.md")
    git(work, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "Add a README")
    git(work, "push", "-q", "origin", "HEAD:main")

    assert bob.pull().fast_forward  # behind: main moves to the remote's
    assert rev(tmp_path / "bob") == rev(served)
    save(alice, 2)
    pulled = alice.pull()  # diverged, but no program changed on the remote: still a merge
    assert pulled.commit is not None and not pulled.fast_forward
    assert git(tmp_path / "alice", "rev-list", "--parents", "-1", "main").count(" ") == 2
    assert alice.push().updated == [MAIN]
    # The README the remote gained is carried through the merge, not dropped.
    readme = "Programs of the support team.\n"
    assert git(tmp_path / "alice", "show", "main:README.md") == readme
    assert git(served, "show", "main:README.md") == readme
    assert_fsck_clean(served)


# -- refusals by the server -----------------------------------------------------------


def test_a_pre_receive_hook_refusal_raises_with_the_hooks_message(
    git_daemon: GitServer, tmp_path: Path, recorded: list[Event]
) -> None:
    served = git_daemon.create()
    git_daemon.install_hook(
        "registry.git",
        "pre-receive",
        "#!/bin/sh\necho 'registry frozen for the audit: ask #ml-platform' >&2\nexit 1\n",
    )
    alice = clone(tmp_path, "alice", git_daemon.url("registry.git"))
    save(alice, 1)
    with pytest.raises(PushRejectedError) as refused:
        alice.push()
    assert refused.value.reasons == {MAIN: "pre-receive hook declined"}
    assert "registry frozen for the audit: ask #ml-platform" in str(refused.value)
    assert rev(served) == ""
    errors = [e for e in recorded if e.name == "progreg.push_error"]
    assert errors and errors[0].fields["rejected"] == 1


def test_a_race_lost_on_the_server_is_refused_by_its_compare_and_swap(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served = git_daemon.create()
    url = git_daemon.url("registry.git")
    seed = clone(tmp_path, "seed", url)
    save(seed, 0)
    seed.push()
    pushers = [clone(tmp_path, f"p{i}", url) for i in range(2)]
    for n, storage in enumerate(pushers):
        storage.pull()
        save(storage, n + 1)
    # Both see the same old main; the hook holds both pushes until both have sent it.
    git_daemon.install_hook("registry.git", "pre-receive", "#!/bin/sh\nsleep 1\n")
    barrier = threading.Barrier(2)
    outcomes: dict[int, object] = {}

    def push(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = pushers[index].push()
        except PushRejectedError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes.values() if isinstance(o, PushRejectedError)]
    assert len(refused) == 1, outcomes
    assert "failed to update ref" in refused[0].reasons[MAIN]
    assert "pull, then push again" in str(refused[0])
    assert_fsck_clean(served)


def test_concurrent_pushes_lose_nothing(git_daemon: GitServer, tmp_path: Path) -> None:
    served = git_daemon.create()
    url = git_daemon.url("registry.git")
    seed = clone(tmp_path, "seed", url)
    expected = {save(seed, 0)}
    seed.push()
    writers = [clone(tmp_path, f"w{i}", url) for i in range(4)]
    for index, storage in enumerate(writers):
        storage.pull()
        expected |= {save(storage, 10 * index + k) for k in (1, 2)}
    barrier = threading.Barrier(len(writers))
    refusals: list[PushRejectedError] = []
    attempts: list[int] = []
    failures: list[BaseException] = []

    def writer(storage: ProgramStorage) -> None:
        try:
            barrier.wait()
            for attempt in range(1, 30):
                try:
                    storage.push()
                    attempts.append(attempt)
                    return
                except PushRejectedError as exc:
                    refusals.append(exc)
                    time.sleep(0.01 * attempt)
                    storage.pull()
            raise AssertionError("never got its push through")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    assert len(attempts) == len(writers)
    assert refusals, "four simultaneous pushes onto one main cannot all fast-forward"
    for exc in refusals:
        assert set(exc.reasons) == {MAIN}
        assert any(
            word in exc.reasons[MAIN]
            for word in ("fetch first", "non-fast-forward", "failed to update ref")
        ), exc.reasons
    assert served_ids(served) == expected
    assert_fsck_clean(served)


#: A writer process: argv = registry, remote URL, first number. It saves two programs,
#: waits for "go" on stdin, then pushes (pulling after each refusal) until its push
#: goes through, and prints one line per refusal and the ids it saved.
PUSHER = """
import sys, time
from progreg import ProgramStorage, PushRejectedError

storage = ProgramStorage(sys.argv[1])
storage.add_remote("origin", sys.argv[2])
storage.pull()
first = int(sys.argv[3])
saved = [
    storage.save_program({"n": n}, {"best_score_value": 0.5}).program_id
    for n in (first, first + 1)
]
print("ready", flush=True)
sys.stdin.readline()
for attempt in range(1, 50):
    try:
        storage.push()
        break
    except PushRejectedError as exc:
        print("refused", exc.reasons["refs/heads/main"].split(":")[0], flush=True)
        time.sleep(0.01 * attempt)
        storage.pull()
else:
    sys.exit("never pushed")
print("saved", *saved, flush=True)
"""


def test_concurrent_pushes_from_processes(
    git_daemon: GitServer, tmp_path: Path, python: str
) -> None:
    served = git_daemon.create()
    url = git_daemon.url("registry.git")
    seed = clone(tmp_path, "seed", url)
    expected = {save(seed, 0)}
    seed.push()
    processes = [
        subprocess.Popen(
            [python, "-c", PUSHER, str(tmp_path / f"p{i}"), url, str(10 * i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for process in processes:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    for process in processes:  # all at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    refusals = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        lines = out.splitlines()
        refusals += [line.split(" ", 1)[1] for line in lines if line.startswith("refused")]
        expected |= set(lines[-1].split()[1:])
    assert refusals, "three simultaneous pushes onto one main cannot all fast-forward"
    assert set(refusals) <= {"fetch first", "non-fast-forward", "failed to update ref"}
    assert served_ids(served) == expected and len(expected) == 7
    assert_fsck_clean(served)


# -- HTTP with Basic auth ---------------------------------------------------------------


def _registry_files_text(path: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in path.rglob("*") if p.is_file() and p.stat().st_size
    )


def test_http_push_and_pull_with_credentials_from_the_environment(
    http_server: GitServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recorded: list[Event],
) -> None:
    served = http_server.create()
    monkeypatch.setenv("PROGREG_GIT_USERNAME", http_server.username)
    monkeypatch.setenv("PROGREG_GIT_PASSWORD", http_server.password)
    url = http_server.url("registry.git")
    alice, bob = clone(tmp_path, "alice", url), clone(tmp_path, "bob", url)
    tagged = save(alice, 2, tags=["prod"])
    saved = {save(alice, 1), tagged}
    assert set(alice.push().created) == {MAIN, f"refs/tags/prod/{tagged}"}
    assert bob.pull().added and ids(bob) == saved == served_ids(served)
    assert any(status == 401 for _, _, status in http_server.requests)  # auth was required
    for registry in (tmp_path / "alice", tmp_path / "bob"):
        config = (registry / "config").read_text()
        assert http_server.password not in config and http_server.username not in config
        assert http_server.password not in _registry_files_text(registry / "refs")
    assert recorded and not any(http_server.password in repr(e.fields) for e in recorded)
    assert {"progreg.push", "progreg.pull"} <= {e.name for e in recorded}


def test_http_credentials_passed_by_the_caller(http_server: GitServer, tmp_path: Path) -> None:
    http_server.create()
    alice = clone(tmp_path, "alice", http_server.url("registry.git"))
    save(alice, 1)
    calls: list[str] = []

    def callback(url: str, username: str | None, allowed: object) -> pygit2.UserPass:
        calls.append(url)
        return pygit2.UserPass(http_server.username, http_server.password)

    assert alice.push(credentials=callback).updated == [MAIN]
    assert len(calls) == 1
    assert (
        alice.pull(credentials=pygit2.UserPass(http_server.username, http_server.password)).commit
        is None
    )
    with pytest.raises(InvalidInputError, match="credentials must be"):
        alice.push(credentials="reviewer:password")


def test_wrong_credentials_fail_fast_without_leaking(
    http_server: GitServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recorded: list[Event],
) -> None:
    http_server.create()
    alice = clone(tmp_path, "alice", http_server.url("registry.git"))
    save(alice, 1)
    wrong = "not-the-Password-42"
    monkeypatch.setenv("PROGREG_GIT_USERNAME", http_server.username)
    monkeypatch.setenv("PROGREG_GIT_PASSWORD", wrong)
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as refused:
        alice.push()
    assert time.monotonic() - started < 5
    assert len(http_server.requests) <= 4  # one try with the credentials, not an endless loop
    assert wrong not in str(refused.value)
    assert "PROGREG_GIT_USERNAME/PROGREG_GIT_PASSWORD" in str(refused.value)
    with pytest.raises(AuthenticationError):
        alice.pull()
    monkeypatch.setenv("PROGREG_GIT_PASSWORD", "")
    monkeypatch.delenv("PROGREG_GIT_PASSWORD")
    monkeypatch.setenv("PROGREG_GIT_TOKEN", wrong)
    with pytest.raises(AuthenticationError) as by_token:
        alice.push()
    assert wrong not in str(by_token.value) and "PROGREG_GIT_TOKEN" in str(by_token.value)
    monkeypatch.delenv("PROGREG_GIT_TOKEN")
    with pytest.raises(AuthenticationError, match=r"none are set.*PROGREG_GIT_PASSWORD"):
        alice.push()
    assert not any(wrong in repr(e.fields) for e in recorded)
    assert wrong not in (tmp_path / "alice" / "config").read_text()


@pytest.mark.parametrize(
    "url",
    [
        "https://reviewer:hunter2-secret@git.example.com/team/registry.git",
        "http://reviewer:hunter2-secret@127.0.0.1:9/registry.git",
        "https://ghp_hunter2secretTokenValue@github.com/team/registry.git",
        "reviewer:hunter2-secret@git.example.com:team/registry.git",
        "https://git.example.com/team/registry.git?access_token=hunter2-secret",
        "https://git.example.com/team/registry.git?private_token=hunter2-secret&x=1",
        "https://git.example.com/team/registry.git#token=hunter2-secret",
        "http://reviewer%3Ahunter2-secret@127.0.0.1:9/registry.git",
        "https://glpat-hunter2secret@gitlab.example.com/team/registry.git",
        "https://git.example.com/team/registry.git?",
    ],
)
def test_urls_with_credentials_are_never_stored(storage: ProgramStorage, url: str) -> None:
    config_before = (storage.path / "config").read_text()
    with pytest.raises(InvalidInputError) as refused:
        storage.add_remote("origin", url)
    message = str(refused.value)
    assert "hunter2" not in message
    assert "PROGREG_GIT_PASSWORD" in message and "environment" in message
    assert (storage.path / "config").read_text() == config_before
    assert storage.remotes() == []
    # set-url checks the same way.
    storage.add_remote("origin", "https://git.example.com/team/registry.git")
    config_before = (storage.path / "config").read_text()
    with pytest.raises(InvalidInputError) as again:
        storage.set_remote_url("origin", url)
    assert "hunter2" not in str(again.value)
    assert (storage.path / "config").read_text() == config_before


@pytest.mark.parametrize(
    "url",
    [
        "https://me:hunter2-secret@127.0.0.1:9/x.git",
        "https://127.0.0.1:9/x.git?access_token=hunter2-secret",
        "https://127.0.0.1:9/x.git#hunter2-secret",
    ],
)
def test_a_password_configured_by_hand_is_refused_and_not_shown(
    storage: ProgramStorage, registry_path: Path, url: str
) -> None:
    git(registry_path, "remote", "add", "origin", url)
    assert [r.url for r in storage.remotes()] == ["https://127.0.0.1:9/x.git"]
    for action in (storage.push, storage.pull):
        with pytest.raises(RemoteError) as refused:
            action()
        assert "hunter2" not in str(refused.value) and "remote.origin.url" in str(refused.value)


def test_user_names_are_kept_in_the_url_but_never_shown(storage: ProgramStorage) -> None:
    info = storage.add_remote("origin", "https://reviewer@git.example.com/team/registry.git")
    assert info.url == "https://git.example.com/team/registry.git"
    assert git(storage.path, "config", "remote.origin.url").strip() == (
        "https://reviewer@git.example.com/team/registry.git"
    )


def test_ssh_credentials_come_from_the_key_variable_or_the_agent(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key")
    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAA")
    allowed = pygit2.enums.CredentialType.SSH_KEY
    from_key, source = from_environment("git", allowed, {"PROGREG_GIT_SSH_KEY": str(key)})
    assert isinstance(from_key, pygit2.Keypair) and source == "PROGREG_GIT_SSH_KEY"
    assert from_key.credential_tuple[:3] == ("git", key.with_name("id_ed25519.pub"), key)
    agent, source = from_environment(None, allowed, {"SSH_AUTH_SOCK": "/tmp/agent.sock"})
    assert isinstance(agent, pygit2.KeypairFromAgent) and source == "the SSH agent"
    assert from_environment("git", allowed, {}) == (None, "")
    userpass = pygit2.enums.CredentialType.USERPASS_PLAINTEXT
    token, source = from_environment(None, userpass, {"PROGREG_GIT_TOKEN": "t0ken"})
    assert isinstance(token, pygit2.UserPass) and token.credential_tuple == (
        "x-access-token",
        "t0ken",
    )


# -- local-path remotes -------------------------------------------------------------------


def test_local_path_remotes_push_and_pull(tmp_path: Path) -> None:
    shared = ProgramStorage(tmp_path / "shared")  # a registry on a shared disk
    alice = clone(tmp_path, "alice", str(tmp_path / "shared"))
    bob = clone(tmp_path, "bob", (tmp_path / "shared").as_uri())
    saved = save(alice, 1, tags=["prod"])
    result = alice.push()
    assert set(result.created) == {MAIN, f"refs/tags/prod/{saved}"}
    assert rev(tmp_path / "alice", "refs/remotes/origin/main") == rev(tmp_path / "shared")
    assert ids(shared) == {saved}
    assert bob.pull().added == [saved]
    assert all_tags(bob.registry.git) == {saved: {"prod"}}
    assert alice.push().updated == []
    assert_fsck_clean(tmp_path / "shared")


def test_tags_the_remote_is_known_to_have_are_not_pushed_again(tmp_path: Path) -> None:
    ProgramStorage(tmp_path / "shared")
    alice = clone(tmp_path, "alice", str(tmp_path / "shared"))
    tagged = save(alice, 1, tags=["prod"])
    tag = f"refs/tags/prod/{tagged}"
    assert tag in alice.push().created
    git(tmp_path / "shared", "update-ref", "-d", tag)  # an administrator removes it
    assert alice.push().updated == []  # as far as alice knows, the remote has it
    alice.pull()  # the fetch prunes refs/remotes/origin/tags/prod/<id>
    assert alice.push().created == [tag]
    assert rev(tmp_path / "shared", tag) == rev(tmp_path / "alice", tag)


def test_local_path_push_refuses_non_fast_forward(tmp_path: Path) -> None:
    ProgramStorage(tmp_path / "shared")
    alice = clone(tmp_path, "alice", str(tmp_path / "shared"))
    bob = clone(tmp_path, "bob", str(tmp_path / "shared"))
    save(alice, 1)
    alice.push()
    before = rev(tmp_path / "shared")
    save(bob, 2)
    with pytest.raises(PushRejectedError) as refused:
        bob.push()
    assert refused.value.reasons[MAIN].startswith("fetch first")
    assert rev(tmp_path / "shared") == before
    bob.pull()
    save(alice, 3)
    alice.sync()
    with pytest.raises(PushRejectedError) as diverged:  # bob has the old tip but not the new
        bob.push()
    assert diverged.value.reasons[MAIN].startswith("fetch first")
    bob.sync()
    assert ids(bob) == ids(ProgramStorage(tmp_path / "shared"))


def test_local_path_push_cannot_lose_a_concurrent_save(tmp_path: Path) -> None:
    shared = ProgramStorage(tmp_path / "shared")
    save(shared, 0)
    alice = clone(tmp_path, "alice", str(tmp_path / "shared"))
    alice.pull()
    saved_in_shared: list[str] = []
    pushed: list[str] = []
    done = threading.Event()

    def save_in_shared() -> None:  # another process's saves into the shared registry
        writer = ProgramStorage(tmp_path / "shared")
        for n in range(100, 140):
            saved_in_shared.append(save(writer, n))
            time.sleep(0.003)
        done.set()

    thread = threading.Thread(target=save_in_shared)
    thread.start()
    refused = 0
    try:
        n = 0
        while not done.is_set() or n < 3:
            n += 1
            pushed.append(save(alice, n))
            for _ in range(100):
                try:
                    alice.push()
                    break
                except PushRejectedError:
                    refused += 1
                    alice.pull()
    finally:
        thread.join()
    final = ids(ProgramStorage(tmp_path / "shared"))
    assert set(saved_in_shared) <= final, "a save into the shared registry was lost"
    assert set(pushed) <= final
    assert refused > 0, "the writer never raced the pushes: the test proves nothing"
    assert_fsck_clean(tmp_path / "shared")


def test_local_path_push_runs_the_targets_pre_receive_hook(tmp_path: Path) -> None:
    ProgramStorage(tmp_path / "shared")
    hook = tmp_path / "shared" / "hooks" / "pre-receive"
    hook.write_text('#!/bin/sh\nwhile read old new ref; do echo "no: $ref"; done\nexit 1\n')
    hook.chmod(0o755)
    alice = clone(tmp_path, "alice", str(tmp_path / "shared"))
    save(alice, 1)
    with pytest.raises(PushRejectedError) as refused:
        alice.push()
    assert refused.value.reasons == {MAIN: "pre-receive hook declined"}
    assert f"no: {MAIN}" in str(refused.value)
    assert rev(tmp_path / "shared") == ""


def test_local_path_push_needs_a_bare_repository(tmp_path: Path) -> None:
    alice = clone(tmp_path, "alice", str(tmp_path / "missing"))
    save(alice, 1)
    with pytest.raises(RemoteError, match="no repository at"):
        alice.push()
    work_tree = tmp_path / "work"
    git(tmp_path, "init", "-q", str(work_tree))
    with pytest.raises(RemoteError, match="work tree"):
        push_local(alice.registry.git.repo, work_tree, [MAIN])


# -- tags and checkpoints ---------------------------------------------------------------------


def test_tags_and_checkpoints_travel_both_ways(git_daemon: GitServer, tmp_path: Path) -> None:
    served = git_daemon.create()
    url = git_daemon.url("registry.git")
    alice, bob = clone(tmp_path, "alice", url), clone(tmp_path, "bob", url)
    state: dict[str, Any] = {"predict": {"demos": []}}
    program = save(alice, 1, tags=["candidate"])
    Checkpoints(alice.registry).create(state, {"best_score_value": 0.5}, "run1")
    alice.push()

    pulled = bob.pull()
    assert pulled.tags_created == [f"candidate/{program}"]
    assert pulled.checkpoints_updated == ["run1"]
    assert all_tags(bob.registry.git) == {program: {"candidate"}}
    Checkpoints(bob.registry).create(state, {"best_score_value": 0.6}, "run1")
    bob.registry.git.create_tag(
        f"prod/{program}", rev(tmp_path / "bob"), bob.registry.identity()[1], "prod\n"
    )
    assert set(bob.push().updated) == {
        "refs/heads/checkpoints/run1",
        f"refs/tags/prod/{program}",
    }

    back = alice.pull()
    assert back.tags_created == [f"prod/{program}"]
    assert back.checkpoints_updated == ["run1"]
    assert [c.best_score for c in Checkpoints(alice.registry).history("run1")] == [0.6, 0.5]
    assert all_tags(alice.registry.git) == {program: {"candidate", "prod"}}
    assert rev(tmp_path / "alice", "checkpoints/run1") == rev(served, "checkpoints/run1")

    # Both sides extend run2 and tag the same program "best": kept on each side, reported.
    Checkpoints(alice.registry).create(state, {"best_score_value": 0.1}, "run2")
    alice.push()
    Checkpoints(bob.registry).create(state, {"best_score_value": 0.2}, "run2")
    bob.registry.git.create_tag(
        f"best/{program}", rev(tmp_path / "bob"), bob.registry.identity()[1], "b\n"
    )
    alice.registry.git.create_tag(
        f"best/{program}", rev(tmp_path / "alice"), alice.registry.identity()[1], "a\n"
    )
    alice.push()
    synced = bob.sync()
    assert synced.pulled.checkpoints_diverged == ["run2"]
    assert synced.pulled.tags_kept == [f"best/{program}"]
    assert synced.pushed.skipped == ["refs/heads/checkpoints/run2", f"refs/tags/best/{program}"]
    assert [c.best_score for c in Checkpoints(bob.registry).history("run2")] == [0.2]
    with pytest.raises(PushRejectedError) as refused:  # push alone refuses both, sends nothing
        bob.push()
    assert refused.value.reasons == {
        "refs/heads/checkpoints/run2": refused.value.reasons["refs/heads/checkpoints/run2"],
        f"refs/tags/best/{program}": "already exists on the remote with another target"
        " (a tag never moves)",
    }
    assert refused.value.reasons["refs/heads/checkpoints/run2"].startswith("non-fast-forward")
    assert_fsck_clean(served)


# -- names, URLs and configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/b", "-x", "origin.lock", "", "a b", "a..b", "x" * 101, "@{u}", "é", "a:b", 3],
)
def test_hostile_remote_names_are_refused(storage: ProgramStorage, name: Any) -> None:
    with pytest.raises(InvalidNameError):
        storage.add_remote(name, "git://127.0.0.1:9/x.git")
    with pytest.raises(InvalidNameError):
        storage.push(name)
    assert storage.remotes() == []


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/pwned",
        "ftp://127.0.0.1/x.git",
        "",
        "git://127.0.0.1/x.git\n[core]",
        " git://127.0.0.1/x.git",
        "https:///no-host",
    ],
)
def test_hostile_urls_are_refused(storage: ProgramStorage, url: str) -> None:
    with pytest.raises(InvalidInputError):
        storage.add_remote("origin", url)
    assert storage.remotes() == []


def test_remotes_are_git_remotes(storage: ProgramStorage, tmp_path: Path) -> None:
    info = storage.add_remote("origin", "git://127.0.0.1:9/registry.git")
    relative = storage.add_remote("backup", "../elsewhere")
    assert relative.url == str(Path("../elsewhere").absolute())
    assert storage.remotes() == sorted([info, relative], key=lambda r: r.name)
    fetch = git(storage.path, "config", "--get-all", "remote.origin.fetch").split()
    assert fetch == [
        "+refs/heads/main:refs/remotes/origin/main",
        "+refs/heads/checkpoints/*:refs/remotes/origin/checkpoints/*",
        "+refs/tags/*:refs/remotes/origin/tags/*",
    ]
    with pytest.raises(ConflictError, match="already exists"):
        storage.add_remote("origin", "git://127.0.0.1:9/other.git")
    with pytest.raises(RemoteError, match="no remote named 'upstream'"):
        storage.pull("upstream")


def test_an_unreachable_remote_is_a_remote_error(storage: ProgramStorage) -> None:
    storage.add_remote("origin", "git://127.0.0.1:9/registry.git")  # port 9: nothing listens
    save(storage, 1)
    with pytest.raises(RemoteError) as failed:
        storage.push()
    assert not isinstance(failed.value, PushRejectedError)
    with pytest.raises(RemoteError):
        storage.pull()


def test_pulling_something_that_is_not_a_registry_is_refused(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served = git_daemon.create()
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", git_daemon.url("registry.git"), str(work))
    (work / "README.md").write_text("code, not programs\n")
    git(work, "add", "README.md")
    git(work, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "code")
    git(work, "push", "-q", "origin", "HEAD:main")
    storage = clone(tmp_path, "alice", git_daemon.url("registry.git"))
    with pytest.raises(RemoteError, match="is not a progreg registry"):
        storage.pull()
    assert rev(tmp_path / "alice") == ""
    assert rev(served) != ""


# -- the command line ------------------------------------------------------------------------------


def pushed_to_two_remotes(
    git_daemon: GitServer, tmp_path: Path, tags: list[str]
) -> tuple[Path, ProgramStorage, PushResult]:
    """``(second.git, alice, her push)``: alice saves a program per tag of ``tags`` (tagged
    so) and pushes to first.git; second.git gets the same refs from first.git, and alice
    knows it as remote "second" without ever having pushed to it or pulled from it."""
    first, second = git_daemon.create("first.git"), git_daemon.create("second.git")
    alice = clone(tmp_path, "alice", git_daemon.url("first.git"))
    for n, tag in enumerate(tags):
        save(alice, n, tags=[tag])
    pushed = alice.push()
    git(first, "push", "-q", str(second), "--all")  # the second remote has all of it too
    git(first, "push", "-q", str(second), "--tags")
    alice.add_remote("second", git_daemon.url("second.git"))
    return second, alice, pushed


def test_a_push_records_what_the_remote_already_had_and_leaves_it_out_next_time(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    second, alice, first_push = pushed_to_two_remotes(git_daemon, tmp_path, ["production"] * 3)
    assert len(first_push.created) == 4  # main and 3 tags
    pushed = alice.push("second")  # never pulled from: every ref is offered, all up to date
    assert (pushed.updated, pushed.up_to_date) == ([], 4)
    tracking = git(tmp_path / "alice", "for-each-ref", "refs/remotes/second/tags")
    assert len(tracking.splitlines()) == 3  # recorded, as git push records them
    save(alice, 9)
    pushed = alice.push("second")
    assert (pushed.updated, pushed.up_to_date) == ([MAIN], 0)  # the tags were not offered
    assert_fsck_clean(second)


def test_a_push_records_many_tags_in_one_packed_refs_rewrite_and_corrects_a_stale_one(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    tags_given = ["production" if n % 2 else "staging" for n in range(80)]  # more than are
    _, alice, _ = pushed_to_two_remotes(git_daemon, tmp_path, tags_given)  # looked up one by one
    path = tmp_path / "alice"
    tags = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/tags").split("\n")
    tags = [line for line in tags if line]
    stale_name = tags[0].split()[0].replace("refs/tags/", "refs/remotes/second/tags/", 1)
    git(path, "update-ref", stale_name, tags[1].split()[1])  # a tracking ref that is wrong
    pushed = alice.push("second")
    assert (pushed.updated, pushed.up_to_date) == ([], 81)
    recorded = git(
        path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/remotes/second/tags"
    ).split("\n")
    assert [
        line.replace("refs/remotes/second/tags/", "refs/tags/", 1) for line in recorded if line
    ] == tags
    loose = list((path / "refs" / "remotes" / "second" / "tags").rglob("*"))
    assert [p.relative_to(path).as_posix() for p in loose if p.is_file()] == [stale_name]
    save(alice, 99)
    pushed = alice.push("second")
    assert (pushed.updated, pushed.up_to_date) == ([MAIN], 0)  # no tag was offered again
    assert_fsck_clean(path)


def test_sync_pulls_again_when_another_writer_pushed_between_its_pull_and_push(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    served, _, alice, bob = clones_in_step(git_daemon, tmp_path)
    from_bob = save(bob, 2)
    races = [3, 4]  # alice saves and pushes these right after bob's first two pulls

    def alice_pushes_first(event: Event) -> None:
        if event.name == "progreg.pull" and races:
            save(alice, races.pop())
            alice.push()

    unsubscribe = subscribe(alice_pushes_first)
    try:
        synced = bob.sync()
    finally:
        unsubscribe()
    assert synced.rounds == 3  # two rounds refused ("fetch first"), the third went through
    assert synced.pushed.updated == [MAIN]
    assert from_bob in served_ids(served)
    assert ids(bob) == served_ids(served)


def test_sync_raises_a_refusal_that_is_not_a_race(git_daemon: GitServer, tmp_path: Path) -> None:
    git_daemon.create()
    git_daemon.install_hook("registry.git", "pre-receive", "#!/bin/sh\necho frozen >&2\nexit 1\n")
    bob = clone(tmp_path, "bob", git_daemon.url("registry.git"))
    save(bob, 1)
    pushes: list[str] = []
    unsubscribe = subscribe(
        lambda event: pushes.append(event.name) if event.name == "progreg.push_error" else None
    )
    try:
        with pytest.raises(PushRejectedError, match="frozen"):
            bob.sync()
    finally:
        unsubscribe()
    assert pushes == ["progreg.push_error"]  # tried once: a hook's refusal is not retried


def test_cli_remote_push_pull_sync(git_daemon: GitServer, tmp_path: Path) -> None:
    git_daemon.create()
    url = git_daemon.url("registry.git")
    runner = CliRunner()

    def run(registry: str, *args: str) -> str:
        result = runner.invoke(cli, ["--registry", str(tmp_path / registry), *args])
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    assert run("alice", "remote", "add", "origin", url) == f"added remote origin: {url}\n"
    assert run("alice", "remote", "list") == f"origin\t{url}\n"
    assert json.loads(run("alice", "remote", "list", "--json")) == [{"name": "origin", "url": url}]
    program = save(ProgramStorage(tmp_path / "alice"), 1)
    out = run("alice", "push")
    assert out.startswith(f"pushed to origin ({url}): 1 ref(s) updated (1 new)")
    assert f"new {MAIN}" in out
    run("bob", "remote", "add", "origin", url)
    pulled = json.loads(run("bob", "pull", "origin", "--json"))
    assert pulled["added"] == [program] and pulled["fast_forward"] is True
    assert "is up to date" in run("bob", "push")
    synced = run("bob", "sync")
    assert "main unchanged" in synced and "is up to date" in synced

    save(ProgramStorage(tmp_path / "bob"), 2)
    run("bob", "push")
    save(ProgramStorage(tmp_path / "alice"), 3)
    refused = runner.invoke(cli, ["--registry", str(tmp_path / "alice"), "push"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: push to {url} was refused: {MAIN} (fetch first")
    assert len(refused.stderr.splitlines()) == 1 and refused.stdout == ""
    assert "main merged" in run("alice", "sync")

    bad = runner.invoke(cli, ["--registry", str(tmp_path / "alice"), "remote", "add", "../x", url])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: invalid remote name '../x'")
    missing = runner.invoke(cli, ["--registry", str(tmp_path / "nobody"), "push"])
    assert missing.exit_code == 1 and "no registry at" in missing.stderr
    assert not (tmp_path / "nobody").exists()


def test_cli_help_has_examples() -> None:
    runner = CliRunner()
    for command in (
        ["remote"],
        ["remote", "add"],
        ["remote", "list"],
        ["push"],
        ["pull"],
        ["sync"],
    ):
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0
        assert "Example:" in result.output and "progreg " in result.output


def test_a_remote_can_be_pointed_elsewhere_and_removed(tmp_path: Path) -> None:
    """set-url and remove, from Python and the CLI, as git remote set-url / remove do."""
    ProgramStorage(tmp_path / "first")
    ProgramStorage(tmp_path / "second")
    alice = clone(tmp_path, "alice", str(tmp_path / "first"))
    save(alice, 1)
    alice.push()
    assert rev(tmp_path / "alice", "refs/remotes/origin/main") == rev(tmp_path / "first")
    moved = alice.set_remote_url("origin", str(tmp_path / "second"))
    assert moved.url == str(tmp_path / "second")
    assert git(alice.path, "config", "remote.origin.url").strip() == str(tmp_path / "second")
    alice.push()
    assert rev(tmp_path / "second") == rev(tmp_path / "alice")
    with pytest.raises(InvalidInputError):
        alice.set_remote_url("origin", "https://user:hunter2-password@example.com/r.git")
    assert git(alice.path, "config", "remote.origin.url").strip() == str(tmp_path / "second")
    tags_before = git(alice.path, "for-each-ref", "--format=%(refname)", "refs/tags", MAIN)
    removed = alice.remove_remote("origin")
    assert removed.url == str(tmp_path / "second")
    assert alice.remotes() == []
    assert git(alice.path, "for-each-ref", "refs/remotes") == ""
    assert git_status(alice.path, "config", "--get-regexp", r"^remote\.") == 1  # none left
    assert git(alice.path, "for-each-ref", "--format=%(refname)", "refs/tags", MAIN) == tags_before
    with pytest.raises(RemoteError, match=r"no remote named 'origin'.*configured: none"):
        alice.remove_remote("origin")
    with pytest.raises(RemoteError, match=r"no remote named 'origin'.*configured: none"):
        alice.set_remote_url("origin", "x")
    assert_fsck_clean(alice.path)


def test_cli_remote_set_url_and_remove(tmp_path: Path) -> None:
    ProgramStorage(tmp_path / "served")
    alice = clone(tmp_path, "alice", str(tmp_path / "elsewhere"))

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--registry", str(alice.path), "remote", *args])

    changed = run("set-url", "origin", str(tmp_path / "served"))
    assert changed.exit_code == 0, changed.output
    assert f"remote origin is now {tmp_path / 'served'}" in changed.stdout
    assert [r.url for r in alice.remotes()] == [str(tmp_path / "served")]
    removed = run("remove", "origin")
    assert removed.exit_code == 0 and "removed remote origin" in removed.stdout
    missing = run("remove", "origin")
    assert missing.exit_code == 3
    assert missing.stderr.strip() == "error: no remote named 'origin' (configured: none)"
    assert run("set-url", "origin", "x").exit_code == 3


def test_a_pull_logs_and_shares_what_it_writes_as_git_would(
    git_daemon: GitServer, tmp_path: Path, isolated_git_config: Path
) -> None:
    """In a ``--shared=group`` registry logging every ref: the tracking refs a fetch moves,
    the tags and checkpoints a pull creates get Git's modes and reflog entries."""
    isolated_git_config.write_text("[user]\n\tname = Bob Config\n\temail = bob@example.com\n")
    git_daemon.create()
    url = git_daemon.url("registry.git")
    alice = clone(tmp_path, "alice", url)
    saved = save(alice, 1, tags=["prod"])
    alice.push()
    path = tmp_path / "bob"
    previous = os.umask(0o022)
    try:
        subprocess.run(["git", "init", "-q", "--bare", "--shared=group", str(path)], check=True)
        git(path, "config", "core.logAllRefUpdates", "always")
        bob = ProgramStorage(path, committer="Bob Committer <bob.c@example.com>")
        bob.add_remote("origin", url)
        bob.pull()
    finally:
        os.umask(previous)
    tag = f"refs/tags/prod/{saved}"
    [line] = (path / "logs" / tag).read_text().splitlines()
    assert line.endswith("\tpull origin: storing tag")
    assert " Bob Committer <bob.c@example.com> " in line
    tracking = git(path, "reflog", "show", "--format=%gn <%ge> %gs", "refs/remotes/origin/main")
    assert tracking.splitlines() == ["Bob Config <bob@example.com> fetch origin"]
    for ref in (tag, "refs/remotes/origin/main", "refs/heads/main"):
        for top in (path, path / "logs"):
            assert stat.S_IMODE((top / ref).stat().st_mode) == 0o664, (top, ref)
            assert stat.S_IMODE((top / ref).parent.stat().st_mode) == 0o2775, (top, ref)
    for pack in (path / "objects" / "pack").iterdir():
        assert stat.S_IMODE(pack.stat().st_mode) == 0o444, pack


def diverged_program(
    git_daemon: GitServer, tmp_path: Path
) -> tuple[ProgramStorage, ProgramStorage, str]:
    """Alice and Bob each saved a new version of one program; Alice pushed hers."""
    git_daemon.create()
    alice, bob = (clone(tmp_path, n, git_daemon.url("registry.git")) for n in ("alice", "bob"))
    program_id = save(alice, 1)
    alice.push()
    bob.pull()
    save(alice, 2, program_id)
    alice.push()
    save(bob, 3, program_id)
    return alice, bob, program_id


def test_a_conflict_shows_the_fields_that_differ(git_daemon: GitServer, tmp_path: Path) -> None:
    _alice, bob, program_id = diverged_program(git_daemon, tmp_path)
    with pytest.raises(ConflictError) as raised:
        bob.pull()
    message = str(raised.value)
    assert f"{program_id} (" in message
    fields = (
        'state.predict.signature.instructions: "Instruction 3" (ours) / "Instruction 2" (theirs)'
    )
    assert fields in message
    assert "optimization_result.best_score_value: 0.503 (ours) / 0.502 (theirs)" in message
    assert "pull(resolve='ours' or 'theirs')" in message and "--theirs" in message


@pytest.mark.parametrize("side", ["ours", "theirs"])
def test_a_pull_settles_conflicts_as_asked_keeping_both_in_history(
    git_daemon: GitServer, tmp_path: Path, side: str
) -> None:
    alice, bob, program_id = diverged_program(git_daemon, tmp_path)
    mine = rev(tmp_path / "bob")
    pulled = bob.pull(resolve=side)  # type: ignore[arg-type]
    assert pulled.resolved == [program_id]
    loaded = bob.load_program(program_id)
    assert loaded is not None
    expected = "Instruction 3" if side == "ours" else "Instruction 2"
    assert loaded.state["predict"]["signature"]["instructions"] == expected
    # Both versions stay in history: the merge commit has both sides as parents.
    parents = git(bob.path, "log", "-1", "--format=%P", MAIN).split()
    assert parents == [mine, rev(tmp_path / "alice")]
    resolved = git(bob.path, "log", "-1", "--format=%(trailers:key=Resolved,valueonly)", MAIN)
    assert resolved.strip() == f"{side} 1"
    bob.push()  # the merge is a fast-forward for the server
    alice.pull()
    again = alice.load_program(program_id)
    assert again is not None
    assert again.state["predict"]["signature"]["instructions"] == expected
    assert_fsck_clean(bob.path)


def test_cli_pull_settles_with_ours_or_theirs(git_daemon: GitServer, tmp_path: Path) -> None:
    _alice, bob, program_id = diverged_program(git_daemon, tmp_path)

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--registry", str(bob.path), "pull", *args])

    refused = run()
    assert refused.exit_code == 1
    assert "state.predict.signature.instructions" in refused.stderr
    assert "--ours or --theirs" in refused.stderr
    settled = run("--theirs")
    assert settled.exit_code == 0, settled.output
    assert f"settled 1 change(s) made on both sides: {program_id}" in settled.stderr
    loaded = bob.load_program(program_id)
    assert loaded is not None
    assert loaded.state["predict"]["signature"]["instructions"] == "Instruction 2"
