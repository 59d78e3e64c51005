"""Pulls from a hostile remote served by a real ``git daemon``: refused before any ref moves.

The remote first holds a sound registry that the puller has pulled; then a
commit, a tag or a checkpoint branch is written into it with Git's plumbing
(``git mktree``, ``git commit-tree``), as anyone with write access could.
Each pull must fail with a typed progreg error and leave every ref of the
registry (remote-tracking refs included) exactly as it was.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from progreg import ProgramStorage, ProgregError, RemoteError
from progreg.core.ids import program_path
from progreg.git.locking import write_lock
from progreg.registry.checkpoints import Checkpoints
from support.gitcli import CLI_IDENTITY, git

if TYPE_CHECKING:
    from support.servers import GitServer

SERVED = "registry.git"


def refs(registry: Path) -> str:
    """Every ref of ``registry`` with its value, as Git lists them."""
    return git(registry, "for-each-ref", "--format=%(refname) %(objectname)")


def put(repo: Path, tree: str, path: bytes, entry: bytes) -> str:
    """The id of ``tree`` with ``entry`` (``<mode> <type> <id>``) at ``path`` (git mktree)."""
    name, _, rest = path.partition(b"/")
    listing = git(repo, "ls-tree", "-z", tree).encode() if tree else b""
    entries = {}
    for line in filter(None, listing.split(b"\x00")):
        meta, _, entry_name = line.partition(b"\t")
        entries[entry_name] = meta
    if rest:
        sub = entries.get(name, b"").split(b" ")[-1].decode() if name in entries else ""
        entries[name] = b"040000 tree " + put(repo, sub, rest, entry).encode()
    else:
        entries[name] = entry
    data = b"".join(meta + b"\t" + n + b"\x00" for n, meta in entries.items())
    return git(repo, "mktree", "-z", input=data).strip()


def commit_on_main(repo: Path, path: bytes, entry: bytes) -> str:
    """Commit, on the served main, its tree with ``entry`` at ``path``; return the commit."""
    tree = put(repo, git(repo, "rev-parse", "main^{tree}").strip(), path, entry)
    commit = git(repo, "commit-tree", tree, "-p", "main", "-m", "hostile", env=CLI_IDENTITY)
    git(repo, "update-ref", "refs/heads/main", commit.strip())
    return commit.strip()


@pytest.fixture
def pulled(tmp_path: Path, git_daemon: GitServer) -> tuple[ProgramStorage, Path, str]:
    """A registry that pulled a sound remote (one program): (registry, served repo, program id)."""
    served = git_daemon.create(SERVED)
    alice = ProgramStorage(tmp_path / "alice")
    program_id = alice.save_program({"predict": {"demos": []}}).program_id
    alice.add_remote("origin", git_daemon.url(SERVED))
    alice.push("origin")
    bob = ProgramStorage(tmp_path / "bob")
    bob.add_remote("origin", git_daemon.url(SERVED))
    bob.pull("origin")
    return bob, served, program_id


def blob(repo: Path, data: bytes) -> str:
    return git(repo, "hash-object", "-w", "--stdin", input=data).strip()


def hostile_entries(served: Path, program_id: str) -> dict[str, tuple[bytes, bytes]]:
    """Paths and tree entries a registry's main may not hold."""
    json_blob = blob(served, b'{"a": 1}\n').encode()
    commit = git(served, "rev-parse", "main").strip().encode()
    return {
        "gitlink at a program path": (
            program_path(program_id).encode(),
            b"160000 commit " + commit,
        ),
        "symbolic link": (b"README.md", b"120000 blob " + blob(served, b"/etc/passwd").encode()),
        ".git directory": (b".git/config", b"100644 blob " + json_blob),
        "dot-dot entry": (b"programs/../x.json", b"100644 blob " + json_blob),
        "name not UTF-8": (b"programs/\xff\xfe.json", b"100644 blob " + json_blob),
        "file outside programs/": (b"notes.txt", b"100644 blob " + json_blob),
    }


@pytest.mark.parametrize(
    "case",
    [
        "gitlink at a program path",
        "symbolic link",
        ".git directory",
        "dot-dot entry",
        "name not UTF-8",
        "file outside programs/",
    ],
)
def test_a_hostile_main_is_refused_and_moves_no_ref(
    pulled: tuple[ProgramStorage, Path, str], case: str
) -> None:
    bob, served, program_id = pulled
    path, entry = hostile_entries(served, program_id)[case]
    commit_on_main(served, path, entry)
    before = refs(bob.path)
    with pytest.raises(RemoteError, match="is not a sound registry") as caught:
        bob.pull("origin")
    assert "nothing was pulled" in str(caught.value)
    assert refs(bob.path) == before
    assert [s.program_id for s in bob.list_programs()] == [program_id]


def test_a_hostile_sync_pushes_nothing(pulled: tuple[ProgramStorage, Path, str]) -> None:
    bob, served, program_id = pulled
    path, entry = hostile_entries(served, program_id)["symbolic link"]
    hostile = commit_on_main(served, path, entry)
    bob.save_program({"predict": {"demos": [1]}})
    before = refs(bob.path)
    with pytest.raises(RemoteError):
        bob.sync("origin")
    assert refs(bob.path) == before
    assert git(served, "rev-parse", "main").strip() == hostile


def test_a_tag_on_a_commit_without_its_program_is_refused(
    pulled: tuple[ProgramStorage, Path, str],
) -> None:
    bob, served, program_id = pulled
    root = git(served, "rev-list", "--max-parents=0", "main").split()[0]
    other = "0123456789abcdef"
    assert other != program_id
    git(served, "tag", "-a", "-m", "x", f"best/{other}", root, env=CLI_IDENTITY)
    before = refs(bob.path)
    with pytest.raises(RemoteError, match=f"refs/tags/best/{other}"):
        bob.pull("origin")
    assert refs(bob.path) == before


def test_a_tag_on_a_commit_off_main_is_refused(
    pulled: tuple[ProgramStorage, Path, str],
) -> None:
    """The hook's rule, as imports apply it: a tag labels a version saved on main."""
    bob, served, program_id = pulled
    tree = git(served, "rev-parse", "main^{tree}").strip()
    stray = git(served, "commit-tree", tree, "-m", "not on main", env=CLI_IDENTITY).strip()
    git(served, "tag", "-a", "-m", "x", f"best/{program_id}", stray, env=CLI_IDENTITY)
    before = refs(bob.path)
    with pytest.raises(RemoteError, match=f"refs/tags/best/{program_id}") as caught:
        bob.pull("origin")
    assert "not in main's history" in str(caught.value)
    assert refs(bob.path) == before
    assert bob.verify().ok
    git(served, "tag", "-d", f"best/{program_id}")  # tagged on main, it is pulled
    git(served, "tag", "-a", "-m", "x", f"best/{program_id}", "main", env=CLI_IDENTITY)
    assert bob.pull("origin").tags_created == [f"best/{program_id}"]
    assert bob.verify().ok


def test_a_checkpoint_branch_that_is_not_a_checkpoint_is_refused(
    pulled: tuple[ProgramStorage, Path, str],
) -> None:
    bob, served, _ = pulled
    git(
        served, "update-ref", "refs/heads/checkpoints/run", git(served, "rev-parse", "main").strip()
    )
    before = refs(bob.path)
    with pytest.raises(RemoteError, match="refs/heads/checkpoints/run"):
        bob.pull("origin")
    assert refs(bob.path) == before
    assert Checkpoints(bob.registry).latest() == []


def test_a_refused_pull_is_a_progreg_error_from_the_cli_path_too(
    pulled: tuple[ProgramStorage, Path, str],
) -> None:
    bob, served, program_id = pulled
    path, entry = hostile_entries(served, program_id)["gitlink at a program path"]
    commit_on_main(served, path, entry)
    with pytest.raises(ProgregError):
        bob.sync("origin")


def test_the_fetch_moves_tracking_refs_only_under_the_write_lock(
    pulled: tuple[ProgramStorage, Path, str], tmp_path: Path, git_daemon: GitServer
) -> None:
    """Tracking refs written (or pruned) while ref packing holds the lock could be revived."""
    bob, _, _ = pulled
    alice = ProgramStorage(tmp_path / "alice")
    alice.save_program({"predict": {"demos": [2]}})
    alice.push("origin")
    tracking = "refs/remotes/origin/main"
    before = git(bob.path, "rev-parse", tracking).strip()
    done = threading.Event()
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            bob.pull("origin")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        done.set()

    with write_lock(bob.path, 30):
        worker = threading.Thread(target=pull)
        worker.start()
        assert not done.wait(1.0)
        assert git(bob.path, "rev-parse", tracking).strip() == before
    worker.join(30)
    assert done.is_set() and not errors
    assert (
        git(bob.path, "rev-parse", tracking).strip() == git(alice.path, "rev-parse", "main").strip()
    )
