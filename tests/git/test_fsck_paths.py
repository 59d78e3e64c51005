"""Objects ``git fsck --strict`` refuses are refused on every way into a registry.

A sound registry gets, on ``main``, one commit carrying one object Git's fsck
refuses (written with ``git hash-object --literally``, as anyone with write
access could): duplicate tree entries, a zero-padded ``040000`` mode,
``.github/GIT~1/``, ``.g\\u200cit``, ``.GIT ``, a NUL byte in a commit
message, a ``.gitattributes`` with a line Git will not parse, and a
``.gitmodules`` (which progreg refuses without parsing it). Each must be
refused by a bundle import, a pull from ``git daemon``, a local-path push
into a target that asks for fsck checks and the pre-receive hook, with a
typed error naming the object and Git's message id, and leave the receiving
registry as it was (refs, object files, and ``git fsck --strict`` still
clean).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from progreg import BundleError, ProgramStorage, PushRejectedError, RemoteError
from progreg.git.objects.encoding import parse_tree
from progreg.integrations.hooks import install
from support.gitcli import git

if TYPE_CHECKING:
    from support.servers import GitServer

IDENT = b"Mallory <mallory@example.com> 1700000000 +0000"


def write(repo: Path, kind: str, data: bytes) -> str:
    """Write a raw object as Git's plumbing would, unchecked; return its id."""
    return git(repo, "hash-object", "--literally", "-w", "-t", kind, "--stdin", input=data).strip()


def raw_tree(entries: list[tuple[bytes, bytes, str]]) -> bytes:
    """A tree of ``(mode, name, hex id)`` entries, exactly in the order given."""
    return b"".join(
        mode + b" " + name + b"\x00" + bytes.fromhex(oid) for mode, name, oid in entries
    )


def root_entries(repo: Path) -> list[tuple[bytes, bytes, str]]:
    """main's root tree, entry by entry."""
    data = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "tree", "main^{tree}"],
        capture_output=True,
        check=True,
    ).stdout
    return [(mode, name, oid.hex()) for mode, name, oid in parse_tree(data)]


def with_entry(repo: Path, entry: tuple[bytes, bytes, str]) -> bytes:
    """main's root tree with ``entry`` added (or put in place of its namesake), in Git's
    order (a tree's name sorts as if it ended in ``/``)."""
    entries = [existing for existing in root_entries(repo) if existing[1] != entry[1]]

    def key(item: tuple[bytes, bytes, str]) -> bytes:
        return item[1] + b"/" if item[0] == b"40000" else item[1]

    return raw_tree(sorted([*entries, entry], key=key))


def commit_on_main(repo: Path, tree: str, message: bytes = b"hostile\n") -> str:
    """A commit of ``tree`` on ``main``, made the new ``main``; return its id."""
    parent = git(repo, "rev-parse", "main").strip()
    data = (
        f"tree {tree}\nparent {parent}\n".encode()
        + b"author "
        + IDENT
        + b"\ncommitter "
        + IDENT
        + b"\n\n"
        + message
    )
    commit = write(repo, "commit", data)
    git(repo, "update-ref", "refs/heads/main", commit)
    return commit


def _subtree(repo: Path) -> str:
    blob = write(repo, "blob", b"name: ci\n")
    return write(repo, "tree", raw_tree([(b"100644", b"x.yml", blob)]))


def _extra_dir(name: bytes) -> Callable[[Path], tuple[str, str]]:
    def make(repo: Path) -> tuple[str, str]:
        bad = _subtree(repo)
        tree = write(repo, "tree", with_entry(repo, (b"40000", name, bad)))
        return commit_on_main(repo, tree), tree

    return make


def _duplicate(repo: Path) -> tuple[str, str]:
    entries = root_entries(repo)
    tree = write(repo, "tree", raw_tree([entries[0], *entries]))
    return commit_on_main(repo, tree), tree


def _zero_padded(repo: Path) -> tuple[str, str]:
    entries = [(b"040000" if m == b"40000" else m, n, o) for m, n, o in root_entries(repo)]
    tree = write(repo, "tree", raw_tree(entries))
    return commit_on_main(repo, tree), tree


def _github_git(repo: Path) -> tuple[str, str]:
    inner = write(repo, "tree", raw_tree([(b"40000", b"GIT~1", _subtree(repo))]))
    tree = write(repo, "tree", with_entry(repo, (b"40000", b".github", inner)))
    return commit_on_main(repo, tree), inner


def _nul_in_message(repo: Path) -> tuple[str, str]:
    commit = commit_on_main(repo, git(repo, "rev-parse", "main^{tree}").strip(), b"a\x00b\n")
    return commit, commit


def _dot_file(name: bytes, content: bytes, refused: str) -> Callable[[Path], tuple[str, str]]:
    """A top-level ``name`` holding ``content``; the refused object is its blob or the tree."""

    def make(repo: Path) -> tuple[str, str]:
        blob = write(repo, "blob", content)
        tree = write(repo, "tree", with_entry(repo, (b"100644", name, blob)))
        return commit_on_main(repo, tree), blob if refused == "blob" else tree

    return make


#: ``case: (Git's message id, make(repo) -> (new main, the object refused))``.
CASES: dict[str, tuple[str, Callable[[Path], tuple[str, str]]]] = {
    "duplicate entries": ("duplicateEntries", _duplicate),
    "zero-padded 040000": ("zeroPaddedFilemode", _zero_padded),
    ".github/GIT~1/": ("hasDotgit", _github_git),
    ".g\\u200cit": ("hasDotgit", _extra_dir(".g\u200cit".encode())),
    ".GIT with a trailing space": ("hasDotgit", _extra_dir(b".GIT ")),
    "NUL in a commit message": ("nulInCommit", _nul_in_message),
    ".gitattributes with a 4 KiB line": (
        "gitattributesLineLength",
        _dot_file(b".gitattributes", b"*.json " + b"x" * 4096 + b"\n", "blob"),
    ),
    ".gitmodules (progreg refuses it unread)": (
        ".gitmodules",
        _dot_file(b".gitmodules", b'[submodule "x"]\n\tpath = x\n', "tree"),
    ),
}


def registry(path: Path) -> ProgramStorage:
    """A sound registry holding one program."""
    storage = ProgramStorage(path)
    storage.save_program({"predict": {"demos": [{"q": "why?", "a": "because"}]}})
    return storage


def snapshot(repo: Path) -> tuple[str, list[str]]:
    """Every ref with its value and every file under ``objects/`` (but the lock files)."""
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    files = sorted(
        str(p.relative_to(repo))
        for p in (repo / "objects").rglob("*")
        if p.is_file() and not p.name.endswith(".lock")
    )
    return refs, files


def assert_fsck_clean(repo: Path) -> None:
    done = subprocess.run(
        ["git", "-C", str(repo), "fsck", "--strict", "--no-dangling"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def assert_names(message: str, message_id: str, object_id: str) -> None:
    assert message_id in message, message
    assert object_id in message, message


@pytest.mark.parametrize("case", list(CASES))
def test_a_bundle_carrying_it_is_refused_by_import(tmp_path: Path, case: str) -> None:
    message_id, make = CASES[case]
    alice = registry(tmp_path / "alice")
    _main, bad = make(alice.path)
    bundle = tmp_path / "hostile.bundle"
    git(alice.path, "bundle", "create", str(bundle), "refs/heads/main")
    bob = registry(tmp_path / "bob")
    before = snapshot(bob.path)
    with pytest.raises(BundleError) as caught:
        bob.import_programs(bundle)
    assert_names(str(caught.value), message_id, bad)
    assert "git fsck --strict" in str(caught.value)
    assert snapshot(bob.path) == before
    assert_fsck_clean(bob.path)


@pytest.mark.parametrize("case", list(CASES))
def test_a_pull_of_it_from_git_daemon_is_refused(
    tmp_path: Path, git_daemon: GitServer, case: str
) -> None:
    message_id, make = CASES[case]
    served = git_daemon.create("registry.git")
    alice = registry(tmp_path / "alice")
    alice.add_remote("origin", git_daemon.url("registry.git"))
    alice.push("origin")
    bob = ProgramStorage(tmp_path / "bob")
    bob.add_remote("origin", git_daemon.url("registry.git"))
    bob.pull("origin")
    sound = git(served, "rev-parse", "main").strip()
    _main, bad = make(served)
    before = snapshot(bob.path)
    with pytest.raises(RemoteError) as caught:
        bob.pull("origin")
    assert_names(str(caught.value), message_id, bad)
    assert snapshot(bob.path) == before  # no ref moved (tracking refs too), no pack left
    assert_fsck_clean(bob.path)
    # once the remote is put right, the same handle pulls again (the removed packs are gone)
    git(served, "update-ref", "refs/heads/main", sound)
    alice.save_program({"predict": {"demos": [{"q": "and now?", "a": "fine"}]}})
    alice.push("origin")
    assert len(bob.pull("origin").added) == 1
    assert_fsck_clean(bob.path)


def test_a_pull_of_it_from_a_path_is_refused(tmp_path: Path) -> None:
    alice = registry(tmp_path / "alice")
    bob = ProgramStorage(tmp_path / "bob")
    bob.add_remote("origin", str(alice.path))
    bob.pull("origin")
    _main, bad = _github_git(alice.path)
    before = snapshot(bob.path)
    with pytest.raises(RemoteError, match="is not a sound registry") as caught:
        bob.pull("origin")
    assert_names(str(caught.value), "hasDotgit", bad)
    assert snapshot(bob.path) == before
    assert_fsck_clean(bob.path)


def test_a_sound_pull_still_brings_everything(tmp_path: Path, git_daemon: GitServer) -> None:
    git_daemon.create("registry.git")
    alice = registry(tmp_path / "alice")
    alice.add_remote("origin", git_daemon.url("registry.git"))
    alice.push("origin")
    bob = ProgramStorage(tmp_path / "bob")
    bob.add_remote("origin", git_daemon.url("registry.git"))
    pulled = bob.pull("origin")
    assert len(pulled.added) == 1
    assert_fsck_clean(bob.path)


def _target(tmp_path: Path, settings: dict[str, str]) -> Path:
    target = tmp_path / "target.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(target))
    for key, value in settings.items():
        git(target, "config", key, value)
    return target


@pytest.mark.parametrize("case", list(CASES))
def test_a_local_push_into_a_checking_target_is_refused(tmp_path: Path, case: str) -> None:
    message_id, make = CASES[case]
    target = _target(tmp_path, {"receive.fsckObjects": "true"})
    alice = registry(tmp_path / "alice")
    alice.add_remote("target", str(target))
    alice.push("target")
    _main, bad = make(alice.path)
    before = snapshot(target)
    with pytest.raises(PushRejectedError) as caught:
        alice.push("target")
    assert_names(str(caught.value), message_id, bad)
    assert "refs/heads/main" in caught.value.reasons
    assert snapshot(target) == before  # not a single object copied
    assert_fsck_clean(target)


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({}, True),  # progreg checks when the target does not say
        ({"receive.fsckObjects": "true"}, True),
        ({"transfer.fsckObjects": "true"}, True),
        ({"receive.fsckObjects": "false"}, False),
        ({"transfer.fsckObjects": "false"}, False),
        ({"transfer.fsckObjects": "false", "receive.fsckObjects": "true"}, True),
        ({"transfer.fsckObjects": "true", "receive.fsckObjects": "false"}, False),
    ],
)
def test_a_local_push_honours_the_targets_fsck_settings(
    tmp_path: Path, settings: dict[str, str], refused: bool
) -> None:
    target = _target(tmp_path, settings)
    alice = registry(tmp_path / "alice")
    alice.add_remote("target", str(target))
    alice.push("target")
    main, _bad = _github_git(alice.path)
    if refused:
        with pytest.raises(PushRejectedError, match="hasDotgit"):
            alice.push("target")
        assert git(target, "rev-parse", "main").strip() != main
    else:  # as git receive-pack with the check turned off: accepted
        alice.push("target")
        assert git(target, "rev-parse", "main").strip() == main


def _hook_server(tmp_path: Path, alice: ProgramStorage) -> Path:
    server = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(alice.path), str(server))
    install(server)
    return server


@pytest.mark.parametrize("case", list(CASES))
def test_the_hook_refuses_it_from_git_push(tmp_path: Path, case: str) -> None:
    message_id, make = CASES[case]
    alice = registry(tmp_path / "alice")
    server = _hook_server(tmp_path, alice)
    _main, bad = make(alice.path)
    before = snapshot(server)
    done = subprocess.run(
        ["git", "-C", str(alice.path), "push", str(server), "main"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "pre-receive hook declined" in done.stderr
    assert_names(done.stderr, message_id, bad)
    assert snapshot(server)[0] == before[0]
    assert_fsck_clean(server)


def test_the_hook_refuses_it_without_a_quarantine(tmp_path: Path) -> None:
    """A progreg local push runs the hook after copying: the hook walks what is new."""
    alice = registry(tmp_path / "alice")
    server = _hook_server(tmp_path, alice)
    git(server, "config", "receive.fsckObjects", "false")  # progreg's own check is off
    alice.add_remote("server", str(server))
    _main, bad = _github_git(alice.path)
    before = git(server, "rev-parse", "main").strip()
    with pytest.raises(PushRejectedError, match="pre-receive hook declined") as caught:
        alice.push("server")
    assert_names(str(caught.value), "hasDotgit", bad)
    assert git(server, "rev-parse", "main").strip() == before
