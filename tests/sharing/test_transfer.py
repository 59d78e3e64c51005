"""Export and import: Git bundles checked against the real git command line, and migration
from the reference system's JSON export and ``dspy_storage/`` folder.

Programs come from ``workload.py``; reference folders are made with
``reference_store.py``, the reference design's own store.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest
from click.testing import CliRunner

from progreg import (
    BundleError,
    ConflictError,
    CorruptProgramError,
    InvalidProgramIdError,
    ProgramNotFoundError,
    ProgramStorage,
    StorageConfig,
    StorageManager,
    UnsupportedFormatError,
    subscribe,
)
from progreg.cli import cli
from progreg.events import Event
from progreg.git.bundle import format as bundles
from progreg.git.bundle import unbundle
from progreg.git.objects import delta as deltas
from progreg.git.objects import encoding as objects
from progreg.git.pack import format as packs
from progreg.integrations.hooks import install
from progreg.registry.checkpoints import Checkpoints
from progreg.sharing.merging import _check_program
from progreg.sharing.transfer import ImportResult
from support import workload
from support.gitcli import (
    CLI_IDENTITY,
    assert_fsck_clean,
    commit_file,
    git,
    git_status,
    registry_state,
)
from support.reference_store import ReferenceStore

IDENTITY = "Ada Lovelace <ada@example.com>"


def program_file(program_id: str) -> str:
    return f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


def new_storage(path: Path) -> ProgramStorage:
    return ProgramStorage(path, author=IDENTITY, committer=IDENTITY)


def save(storage: ProgramStorage, i: int, **kwargs: Any) -> str:
    return storage.save_program(
        workload.program_state(i),
        workload.optimization_result(i),
        {"signature_class": workload.signature_of(i)},
        **kwargs,
    ).program_id


@pytest.fixture
def source(tmp_path: Path) -> tuple[ProgramStorage, list[str]]:
    """A registry with five programs, two tags and a checkpoint run of two steps."""
    storage = new_storage(tmp_path / "source")
    ids = [save(storage, i, tags=["prod"] if i in (1, 3) else ()) for i in range(5)]
    checkpoints = Checkpoints(storage.registry)
    checkpoints.create(workload.program_state(10), workload.optimization_result(10), "run-1")
    checkpoints.create(workload.program_state(11), workload.optimization_result(11), "run-1")
    return storage, ids


def refs_of(repo: Path) -> dict[str, str]:
    lines = git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return dict(tuple(line.split(" ", 1)) for line in lines)  # type: ignore[misc]


def blob_bytes(repo: Path, revision: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "cat-file", "blob", f"{revision}:{path}"],
        capture_output=True,
        check=True,
    ).stdout


def trailers(repo: Path, revision: str = "main") -> dict[str, str]:
    text = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", revision)
    return dict(line.split(": ", 1) for line in text.splitlines() if line)


# -- export_programs ------------------------------------------------------------------


def test_export_programs_is_a_bundle_git_verifies_and_clones(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    before = registry_state(storage.path)
    bundle = tmp_path / "picked.bundle"
    result = storage.export_programs([ids[0], ids[2]], bundle)
    assert registry_state(storage.path) == before  # an export writes nothing into the registry
    assert result.kind == "programs"
    assert result.program_ids == [ids[0], ids[2]]
    assert result.prerequisites == []
    assert result.refs == {"HEAD": result.commit, "refs/heads/main": result.commit}
    assert result.size_bytes == bundle.stat().st_size
    assert (
        "is okay"
        in subprocess.run(
            ["git", "-C", str(storage.path), "bundle", "verify", str(bundle)],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
    )

    subprocess.run(["git", "clone", "-q", str(bundle), str(tmp_path / "co")], check=True)
    checkout = tmp_path / "co"
    assert sorted(git(checkout, "ls-files").splitlines()) == sorted(
        [program_file(ids[0]), program_file(ids[2]), "progreg.json"]
    )
    for program_id in (ids[0], ids[2]):
        assert (checkout / program_file(program_id)).read_bytes() == blob_bytes(
            storage.path, "main", program_file(program_id)
        )
    assert git(checkout, "rev-list", "--count", "HEAD") == "1\n"  # parentless
    assert git(checkout, "log", "-1", "--format=%s") == "Export 2 programs from source\n"
    assert git(checkout, "log", "-1", "--format=%an <%ae>") == f"{IDENTITY}\n"
    found = trailers(checkout, "HEAD")
    assert found == {
        "Exported-Count": "2",
        "Source": str(storage.path),
        "Source-Commit": git(storage.path, "rev-parse", "main").strip(),
        "Progreg-Action": "export",
    }
    assert_fsck_clean(checkout)


def test_export_programs_refuses_unknown_and_invalid_ids(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    bundle = tmp_path / "x.bundle"
    with pytest.raises(ProgramNotFoundError, match="0123456789abcdef"):
        storage.export_programs([ids[0], "0123456789abcdef"], bundle)
    with pytest.raises(InvalidProgramIdError):
        storage.export_programs(["../etc/passwd"], bundle)
    assert not bundle.exists()
    assert list(tmp_path.glob("*.bundle*")) == []


# -- export_registry ------------------------------------------------------------------


def test_export_registry_bundles_every_ref_and_git_fetches_it(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    bundle = tmp_path / "all.bundle"
    result = storage.export_registry(bundle)
    ours = refs_of(storage.path)
    assert {name: oid for name, oid in result.refs.items() if name != "HEAD"} == ours
    assert result.refs["HEAD"] == ours["refs/heads/main"]
    assert sorted(result.program_ids) == sorted(ids)
    assert git_status(storage.path, "bundle", "verify", str(bundle)) == 0

    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    git(empty, "fetch", "-q", str(bundle), "refs/*:refs/*")
    assert refs_of(empty) == ours
    assert_fsck_clean(empty)


def test_incremental_export_needs_its_prerequisites(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    full = storage.export_registry(tmp_path / "full.bundle")
    added = save(storage, 40)
    by_bundle = storage.export_registry(
        tmp_path / "inc.bundle", since=str(tmp_path / "full.bundle")
    )
    by_commit = storage.export_registry(tmp_path / "inc2.bundle", since=full.commit)
    for inc in (by_bundle, by_commit):
        assert full.commit in inc.prerequisites
        assert inc.object_count < full.object_count
        assert added in inc.program_ids

    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    assert git_status(empty, "bundle", "verify", str(tmp_path / "inc.bundle")) != 0
    git(empty, "fetch", "-q", str(tmp_path / "full.bundle"), "refs/*:refs/*")
    assert git_status(empty, "bundle", "verify", str(tmp_path / "inc.bundle")) == 0
    git(empty, "fetch", "-q", str(tmp_path / "inc.bundle"), "refs/heads/main:refs/heads/main")
    assert git(empty, "rev-parse", "main") == git(storage.path, "rev-parse", "main")
    assert_fsck_clean(empty)


# -- round trips ----------------------------------------------------------------------


def test_round_trip_keeps_ids_tags_checkpoints_and_bytes(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    storage.export_registry(tmp_path / "all.bundle")
    target = new_storage(tmp_path / "target")
    result = target.import_programs(tmp_path / "all.bundle")

    assert result.source_kind == "bundle"
    assert sorted(result.imported) == sorted(ids)
    assert result.identical == []
    ours = refs_of(storage.path)
    theirs = refs_of(target.path)
    assert {n: o for n, o in theirs.items() if n != "refs/heads/main"} == {
        n: o for n, o in ours.items() if n != "refs/heads/main"
    }
    assert sorted(result.tags_created) == sorted(n for n in ours if n.startswith("refs/tags/"))
    assert result.checkpoints_created == ["refs/heads/checkpoints/run-1"]
    for program_id in ids:
        assert blob_bytes(target.path, "main", program_file(program_id)) == blob_bytes(
            storage.path, "main", program_file(program_id)
        )
        loaded = target.load_program(program_id)
        original = storage.load_program(program_id)
        assert loaded is not None and original is not None
        assert loaded.saved_at == original.saved_at
    assert target.list_programs() == storage.list_programs()
    # The target was empty: main is fast-forwarded to the exported main, no commit of its own.
    assert result.fast_forward
    assert git(target.path, "rev-parse", "main") == git(storage.path, "rev-parse", "main")
    assert result.commit == git(storage.path, "rev-parse", "main").strip()
    assert git(target.path, "log", "--merges", "--format=%H", "main") == ""
    restored = Checkpoints(target.registry).restore("run-1~1")
    assert restored is not None and restored.state == workload.program_state(10)
    assert_fsck_clean(target.path)


def test_identical_reimport_is_a_no_op(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    storage.export_registry(tmp_path / "all.bundle")
    target = new_storage(tmp_path / "target")
    target.import_programs(tmp_path / "all.bundle")
    before = registry_state(target.path)
    again = target.import_programs(tmp_path / "all.bundle")
    assert again.commit is None
    assert again.imported == []
    assert sorted(again.identical) == sorted(ids)
    assert again.tags_created == again.checkpoints_created == again.checkpoints_updated == []
    assert registry_state(target.path) == before


def test_incremental_bundles_follow_each_other(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    storage.export_registry(tmp_path / "full.bundle")
    target = new_storage(tmp_path / "target")
    target.import_programs(tmp_path / "full.bundle")

    new = save(storage, 50, tags=["prod"])
    Checkpoints(storage.registry).create(workload.program_state(12), None, "run-1")
    storage.export_registry(tmp_path / "inc.bundle", since=str(tmp_path / "full.bundle"))
    result = target.import_programs(tmp_path / "inc.bundle")
    assert result.imported == [new]
    assert result.tags_created == [f"refs/tags/prod/{new}"]
    assert result.checkpoints_updated == ["refs/heads/checkpoints/run-1"]
    assert git(target.path, "rev-parse", "checkpoints/run-1") == git(
        storage.path, "rev-parse", "checkpoints/run-1"
    )
    assert {p.program_id for p in target.list_programs()} == {*ids, new}
    assert_fsck_clean(target.path)


def test_exported_programs_import_into_another_registry(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    storage.export_programs(ids[:2], tmp_path / "two.bundle")
    target = new_storage(tmp_path / "target")
    mine = save(target, 30)
    result = target.import_programs(tmp_path / "two.bundle")
    assert sorted(result.imported) == sorted(ids[:2])
    assert {p.program_id for p in target.list_programs()} == {mine, *ids[:2]}
    assert_fsck_clean(target.path)


def test_exported_programs_carry_their_tags_on_those_versions(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source  # prod is on ids[1] and ids[3]
    manager = StorageManager(StorageConfig(storage_path=storage.path), storage=storage)
    manager.tag_program(ids[1], "beta")
    storage.save_program(  # a new version of ids[3]: its prod tag labels the old one
        workload.program_state(33), workload.optimization_result(33), program_id=ids[3]
    )
    bundle = tmp_path / "picked.bundle"
    result = storage.export_programs([ids[1], ids[3]], bundle)
    carried = {f"refs/tags/beta/{ids[1]}", f"refs/tags/prod/{ids[1]}"}
    assert set(result.refs) == {"HEAD", "refs/heads/main", *carried}
    assert result.tags_left_out == [f"refs/tags/prod/{ids[3]}"]
    heads = git(storage.path, "bundle", "list-heads", str(bundle))
    assert all(ref in heads for ref in carried)
    assert git_status(storage.path, "bundle", "verify", "-q", str(bundle)) == 0

    # Each carried tag is the original's name, tagger, time and message, on the export commit.
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", str(bundle), str(checkout))
    for ref in carried:
        name = ref.removeprefix("refs/tags/")
        assert git(checkout, "rev-parse", f"{name}^{{commit}}").strip() == result.commit
        ours = git(storage.path, "cat-file", "tag", name).split("\n")
        theirs = git(checkout, "cat-file", "tag", name).split("\n")
        assert theirs[0] == f"object {result.commit}" and theirs[2:] == ours[2:]

    target = new_storage(tmp_path / "target")
    mine = save(target, 80)
    imported = target.import_programs(bundle)
    assert sorted(imported.tags_created) == sorted(carried)
    assert sorted(imported.imported) == sorted([ids[1], ids[3]])
    assert {p.program_id for p in target.list_programs()} == {mine, ids[1], ids[3]}
    assert target.verify().ok
    assert push_all(target.path, hooked_server(tmp_path)).returncode == 0
    assert_fsck_clean(target.path)


def header_lines(bundle: Path) -> list[str]:
    """The lines of a bundle's header, read as bytes (not by progreg's parser)."""
    data = bundle.read_bytes()
    return data[: data.index(b"\n\n")].decode().splitlines()[1:]


def prerequisites_in(bundle: Path) -> list[str]:
    return sorted(line[1:].split(" ", 1)[0] for line in header_lines(bundle) if line[0] == "-")


def git_bundle(repo: Path, bundle: Path, *revisions: str) -> list[str]:
    """The prerequisites of the bundle `git bundle create` writes for ``revisions``."""
    git(repo, "bundle", "create", "-q", str(bundle), *revisions)
    return prerequisites_in(bundle)


def test_incremental_prerequisites_are_git_bundle_create_s(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    """Linear history, tags and an unmoved checkpoint: the boundary, as git computes it."""
    storage, _ = source
    full = storage.export_registry(tmp_path / "full.bundle")
    for i in range(40, 44):
        save(storage, i, tags=["prod"] if i == 41 else ())
    since = git(storage.path, "rev-parse", "main~3").strip()
    boundary = git(storage.path, "rev-list", "--boundary", f"{since}..main").split()
    assert [line[1:] for line in boundary if line.startswith("-")] == [since]
    by_commit = storage.export_registry(tmp_path / "inc.bundle", since=since)
    assert by_commit.prerequisites == [since]
    assert prerequisites_in(tmp_path / "inc.bundle") == [since]
    assert git_bundle(storage.path, tmp_path / "git.bundle", f"{since}..main") == [since]
    assert git_bundle(storage.path, tmp_path / "all.bundle", "--all", f"^{since}") == [since]
    # Since a bundle: what that bundle carried is excluded, as `^<each of its refs>`.
    by_bundle = storage.export_registry(
        tmp_path / "inc2.bundle", since=str(tmp_path / "full.bundle")
    )
    excluded = [f"^{oid}" for oid in set(full.refs.values())]
    assert git_bundle(storage.path, tmp_path / "git2.bundle", "--all", *excluded) == [full.commit]
    # The checkpoint run did not move and is not on main: git leaves its branch out of
    # the bundle; progreg keeps it, so it lists its commit, which nothing else implies.
    checkpoint = git(storage.path, "rev-parse", "checkpoints/run-1").strip()
    heads = git(storage.path, "bundle", "list-heads", str(tmp_path / "git2.bundle"))
    assert "refs/heads/checkpoints/run-1" not in heads
    assert "refs/heads/checkpoints/run-1" in by_bundle.refs
    assert by_bundle.prerequisites == prerequisites_in(tmp_path / "inc2.bundle")
    assert by_bundle.prerequisites == sorted([full.commit, checkpoint])
    # The reader that has the prerequisites verifies and imports it.
    target = new_storage(tmp_path / "target")
    target.import_programs(tmp_path / "full.bundle")
    assert git_status(target.path, "bundle", "verify", "-q", str(tmp_path / "inc2.bundle")) == 0
    assert target.import_programs(tmp_path / "inc2.bundle").fast_forward
    assert refs_of(target.path) == {
        name: oid for name, oid in refs_of(storage.path).items() if not name.startswith("refs/rem")
    }
    assert_fsck_clean(target.path)


def test_incremental_prerequisites_across_a_merge_are_git_s(tmp_path: Path) -> None:
    alice = new_storage(tmp_path / "alice")
    bob = new_storage(tmp_path / "bob")
    save(alice, 1, tags=["prod"])
    alice.export_registry(tmp_path / "a1.bundle")
    bob.import_programs(tmp_path / "a1.bundle")
    fork = git(bob.path, "rev-parse", "main").strip()
    save(alice, 2, tags=["beta"])
    save(alice, 3)
    save(bob, 4, tags=["prod"])  # tags before and inside each range: never prerequisites
    mine = save(bob, 5)
    before_merge = git(bob.path, "rev-parse", "main").strip()
    alice.export_registry(tmp_path / "a2.bundle")
    merged = bob.import_programs(tmp_path / "a2.bundle")
    assert not merged.fast_forward and mine not in merged.imported
    save(bob, 6)
    assert len(git(bob.path, "log", "--merges", "--format=%H").split()) == 1
    for since in (before_merge, f"{before_merge}~1", fork):
        commit = git(bob.path, "rev-parse", since).strip()
        bundle = tmp_path / f"since-{commit[:8]}.bundle"
        result = bob.export_registry(bundle, since=commit)
        expected = git_bundle(bob.path, tmp_path / f"git-{commit[:8]}.bundle", f"{commit}..main")
        boundary = git(bob.path, "rev-list", "--boundary", f"{commit}..main").split()
        assert expected == sorted(line[1:] for line in boundary if line.startswith("-"))
        assert result.prerequisites == prerequisites_in(bundle) == expected
        assert git_status(bob.path, "bundle", "verify", "-q", str(bundle)) == 0
    # Since the commit before the merge, alice's side is cut at the fork: two prerequisites.
    assert bob.export_registry(tmp_path / "x.bundle", since=before_merge).prerequisites == sorted(
        [before_merge, fork]
    )


def test_an_incremental_export_with_nothing_new_lists_what_nothing_else_implies(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    """git refuses an empty bundle; progreg's lists main's tip (which implies the tags)
    and the unmoved checkpoint run, which is not on main."""
    storage, _ = source
    storage.export_registry(tmp_path / "full.bundle")
    checkpoint = git(storage.path, "rev-parse", "checkpoints/run-1").strip()
    nothing = storage.export_registry(tmp_path / "none.bundle", since=str(tmp_path / "full.bundle"))
    main = git(storage.path, "rev-parse", "main").strip()
    assert nothing.prerequisites == sorted([main, checkpoint])  # the run is not on main
    done = subprocess.run(
        [
            "git",
            "-C",
            str(storage.path),
            "bundle",
            "create",
            "-q",
            str(tmp_path / "g.bundle"),
            "main",
            f"^{main}",
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode != 0  # "Refusing to create empty bundle."
    assert git_status(storage.path, "bundle", "verify", "-q", str(tmp_path / "none.bundle")) == 0


# -- fast-forward, and tags on main ----------------------------------------------------


def merges(repo: Path) -> list[str]:
    return git(repo, "log", "--merges", "--format=%H", "main").split()


def test_a_bundle_that_extends_main_is_a_fast_forward(tmp_path: Path) -> None:
    storage = new_storage(tmp_path / "source")
    first = [save(storage, i) for i in range(3)]
    storage.export_registry(tmp_path / "one.bundle")
    target = new_storage(tmp_path / "target")
    one = target.import_programs(tmp_path / "one.bundle")
    assert one.fast_forward and sorted(one.imported) == sorted(first)
    assert git(target.path, "rev-parse", "main") == git(storage.path, "rev-parse", "main")

    later = [save(storage, i) for i in (3, 4)]
    storage.export_registry(tmp_path / "two.bundle")  # a full bundle: target's main is behind
    assert git_status(target.path, "bundle", "verify", "-q", str(tmp_path / "two.bundle")) == 0
    two = target.import_programs(tmp_path / "two.bundle")
    assert two.fast_forward and sorted(two.imported) == sorted(later)
    assert two.commit == git(storage.path, "rev-parse", "main").strip()

    newest = save(storage, 5)
    storage.export_registry(tmp_path / "three.bundle", since=str(tmp_path / "two.bundle"))
    three = target.import_programs(tmp_path / "three.bundle")
    assert three.fast_forward and three.imported == [newest]
    assert git(target.path, "rev-parse", "main") == git(storage.path, "rev-parse", "main")
    assert merges(target.path) == []
    assert_fsck_clean(target.path)

    # Both sides saved: that is still a merge, recorded by one commit with two parents.
    mine = save(target, 6)
    theirs = save(storage, 7)
    storage.export_registry(tmp_path / "four.bundle")
    four = target.import_programs(tmp_path / "four.bundle")
    assert not four.fast_forward and four.imported == [theirs]
    assert merges(target.path) == [four.commit]
    assert git(target.path, "rev-parse", "main^2") == git(storage.path, "rev-parse", "main")
    assert trailers(target.path)["Progreg-Action"] == "import"
    assert {p.program_id for p in target.list_programs()} == {*first, *later, newest, mine, theirs}
    assert_fsck_clean(target.path)


def test_a_bundle_behind_main_whose_commits_change_no_file_still_fast_forwards(
    tmp_path: Path,
) -> None:
    storage = new_storage(tmp_path / "source")
    kept = save(storage, 1)
    storage.export_registry(tmp_path / "one.bundle")
    target = new_storage(tmp_path / "target")
    target.import_programs(tmp_path / "one.bundle")
    gone = save(storage, 2)
    storage.delete_program(gone)  # two commits whose changes cancel out
    storage.export_registry(tmp_path / "two.bundle")
    result = target.import_programs(tmp_path / "two.bundle")
    assert result.fast_forward and result.imported == [] and result.removed == []
    assert git(target.path, "rev-parse", "main") == git(storage.path, "rev-parse", "main")
    assert [p.program_id for p in target.list_programs()] == [kept]
    assert merges(target.path) == []


def hooked_server(tmp_path: Path) -> Path:
    server = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", str(server))
    install(server)
    return server


def push_all(registry: Path, server: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(registry), "push", "--porcelain", str(server), "main", "refs/tags/*"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_tags_only_bundle_needs_the_programs_on_main(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    tags_only = tmp_path / "tags.bundle"
    git(storage.path, "bundle", "create", "-q", str(tags_only), "--tags")
    tag_refs = sorted(n for n in refs_of(storage.path) if n.startswith("refs/tags/"))
    assert len(tag_refs) == 2

    target = new_storage(tmp_path / "target")
    mine = save(target, 40)
    before = registry_state(target.path)
    with pytest.raises(BundleError) as refused:
        target.import_programs(tags_only)
    message = str(refused.value)
    assert all(ref.removeprefix("refs/tags/") in message for ref in tag_refs)
    assert "not in this registry's main" in message and "Export main with the tags" in message
    assert "nothing was imported" in message
    assert registry_state(target.path) == before
    # What the import refuses, the server's hook refuses too.
    for ref in tag_refs:
        git(target.path, "fetch", "-q", str(storage.path), f"{ref}:{ref}")
    assert not target.verify().ok  # the same registry, as verify sees it
    git(target.path, "tag", "-d", *(ref.removeprefix("refs/tags/") for ref in tag_refs))
    git(target.path, "gc", "-q", "--prune=now")
    assert registry_state(target.path)[0] == before[0]

    # With main in the same bundle (or imported first) the tags are accepted.
    both = tmp_path / "both.bundle"
    git(storage.path, "bundle", "create", "-q", str(both), "main", "--tags")
    result = target.import_programs(both)
    assert sorted(result.tags_created) == tag_refs
    assert {p.program_id for p in target.list_programs()} == {*ids, mine}
    assert target.verify().ok
    server = hooked_server(tmp_path)
    pushed = push_all(target.path, server)
    assert pushed.returncode == 0, pushed.stderr
    assert_fsck_clean(target.path)


def test_tags_whose_commits_only_the_bundle_brings_join_its_main(tmp_path: Path) -> None:
    """Their main changes no file here, but their tags need its history: it joins ours."""
    storage = new_storage(tmp_path / "source")
    program = save(storage, 1)
    target = new_storage(tmp_path / "target")
    storage.export_registry(tmp_path / "one.bundle")
    target.import_programs(tmp_path / "one.bundle")
    save(target, 2)  # ours moves on: the histories diverge
    manager = StorageManager(StorageConfig(storage_path=storage.path), storage=storage)
    manager.tag_program(program, "prod")  # a tag on a commit that target already has
    gone = save(storage, 3, tags=["beta"])
    storage.delete_program(gone)  # their main ends as it began: no file changes here
    storage.export_registry(tmp_path / "two.bundle")
    result = target.import_programs(tmp_path / "two.bundle")
    assert sorted(result.tags_created) == [f"refs/tags/beta/{gone}", f"refs/tags/prod/{program}"]
    assert result.commit is not None and not result.fast_forward
    assert git(target.path, "rev-parse", "main^2") == git(storage.path, "rev-parse", "main")
    assert target.verify().ok
    assert push_all(target.path, hooked_server(tmp_path)).returncode == 0
    assert_fsck_clean(target.path)


def test_verify_reports_tags_the_hook_refuses(storage: ProgramStorage, tmp_path: Path) -> None:
    program = save(storage, 1)
    registry = storage.path
    # A commit holding the program but not on main, tagged as progreg tags.
    tree = git(registry, "rev-parse", "main^{tree}").strip()
    who = ("-c", "user.name=Ada", "-c", "user.email=ada@example.com")
    stray = git(registry, *who, "commit-tree", tree, "-m", "Not on main").strip()
    git(registry, *who, "tag", "-a", f"prod/{program}", stray, "-m", "prod")
    report = storage.verify()
    assert not report.ok
    assert [(t.ref, t.commit) for t in report.tag_problems] == [
        (f"refs/tags/prod/{program}", stray)
    ]
    assert "not in main's history" in report.tag_problems[0].message
    shown = CliRunner().invoke(cli, ["--registry", str(registry), "verify"])
    assert shown.exit_code == 1 and f"refs/tags/prod/{program}" in shown.output
    server = hooked_server(tmp_path)
    pushed = push_all(registry, server)
    assert pushed.returncode != 0 and "not in main's history" in pushed.stderr
    git(registry, "tag", "-d", f"prod/{program}")
    git(registry, *who, "tag", "-a", f"prod/{program}", "main", "-m", "prod")
    assert storage.verify().ok
    assert push_all(registry, server).returncode == 0


# -- bundles made by git ---------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", "3"])
def test_imports_bundles_made_by_git(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path, version: str
) -> None:
    storage, ids = source
    bundle = tmp_path / "git.bundle"
    git(storage.path, "bundle", "create", "-q", f"--version={version}", str(bundle), "--all")
    assert bundle.read_bytes().startswith(f"# v{version} git bundle\n".encode())
    target = new_storage(tmp_path / "target")
    result = target.import_programs(bundle)
    assert sorted(result.imported) == sorted(ids)
    assert len(result.tags_created) == 2
    assert result.checkpoints_created == ["refs/heads/checkpoints/run-1"]
    assert_fsck_clean(target.path)


def test_imports_an_incremental_thin_bundle_made_by_git(tmp_path: Path) -> None:
    storage = new_storage(tmp_path / "source")
    state = workload.program_state(1, demos=40)  # large enough for git to delta it
    program_id = storage.save_program(state, {"best_score_value": 0.5}).program_id
    for i in range(3):
        save(storage, i)
    old = git(storage.path, "rev-parse", "main").strip()
    git(storage.path, "bundle", "create", "-q", str(tmp_path / "base.bundle"), "main")
    state["predict"]["signature"]["instructions"] += " Be brief."
    storage.save_program(state, {"best_score_value": 0.6}, program_id=program_id)
    git(storage.path, "bundle", "create", "-q", str(tmp_path / "inc.bundle"), "main", f"^{old}")

    target = new_storage(tmp_path / "target")
    target.import_programs(tmp_path / "base.bundle")
    header = bundles.read_header(tmp_path / "inc.bundle")
    assert [oid for oid, _ in header.prerequisites] == [old]
    # The pack is thin: a delta's base is the previous version, which only the target has.
    pack = memoryview((tmp_path / "inc.bundle").read_bytes())[header.pack_offset :]
    repo = target.registry.git.repo

    def external(oid: bytes) -> tuple[int, bytes] | None:
        if pygit2.Oid(raw=oid) not in repo.odb:
            return None
        kind, data = repo.odb.read(pygit2.Oid(raw=oid))
        return int(kind), data

    indexed = packs.index_pack(
        pack, external=external, visit=lambda *_: None, max_object_size=1 << 24
    )
    assert indexed.external, "git made no thin delta; the test lost its point"

    result = target.import_programs(tmp_path / "inc.bundle")
    assert result.updated == [program_id]
    loaded = target.load_program(program_id)
    assert loaded is not None and loaded.state == state
    assert_fsck_clean(target.path)


# -- refusals: nothing written ----------------------------------------------------------


def test_conflicting_program_is_refused_with_nothing_written(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    storage.export_registry(tmp_path / "all.bundle")
    target = new_storage(tmp_path / "target")
    target.save_program({"different": True}, None, program_id=ids[2])
    before = registry_state(target.path)
    with pytest.raises(ConflictError, match=ids[2]):
        target.import_programs(tmp_path / "all.bundle")
    assert registry_state(target.path) == before


def test_diverged_checkpoint_is_refused_and_other_tags_kept(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    storage.export_registry(tmp_path / "all.bundle")
    target = new_storage(tmp_path / "target")
    Checkpoints(target.registry).create({"mine": 1}, None, "run-1")
    before = registry_state(target.path)
    with pytest.raises(ConflictError, match="run-1"):
        target.import_programs(tmp_path / "all.bundle")
    assert registry_state(target.path) == before

    other = new_storage(tmp_path / "other")
    mine = save(other, 0)  # the same program, saved by someone else: a different commit
    git(other.path, "tag", "-m", "x", f"prod/{ids[1]}", "main", env=CLI_IDENTITY)
    del mine
    result = other.import_programs(tmp_path / "all.bundle")
    assert result.tags_kept == [f"refs/tags/prod/{ids[1]}"]
    assert f"refs/tags/prod/{ids[3]}" in result.tags_created


def _corrupt_copies(bundle: Path, tmp_path: Path) -> dict[str, Path]:
    data = bundle.read_bytes()
    header = bundles.read_header(bundle)
    middle = header.pack_offset + (len(data) - header.pack_offset) // 2
    flipped = bytearray(data)
    flipped[middle] ^= 0xFF
    variants = {
        "truncated-pack": data[:middle],
        "truncated-trailer": data[:-7],
        "truncated-header": data[: header.pack_offset - 3],
        "flipped-byte": bytes(flipped),
        "no-pack": data[: header.pack_offset],
    }
    paths = {}
    for name, content in variants.items():
        path = tmp_path / f"{name}.bundle"
        path.write_bytes(content)
        paths[name] = path
    return paths


def test_truncated_or_corrupt_bundles_change_nothing(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    storage.export_registry(tmp_path / "all.bundle")
    target = new_storage(tmp_path / "target")
    save(target, 20)
    before = registry_state(target.path)
    for name, path in _corrupt_copies(tmp_path / "all.bundle", tmp_path).items():
        with pytest.raises(BundleError) as caught:
            target.import_programs(path)
        assert str(path) in str(caught.value) or name == "truncated-header"
        assert registry_state(target.path) == before, name


def test_corrupt_git_made_bundle_changes_nothing(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    git(storage.path, "bundle", "create", "-q", str(tmp_path / "git.bundle"), "--all")
    target = new_storage(tmp_path / "target")
    before = registry_state(target.path)
    for name, path in _corrupt_copies(tmp_path / "git.bundle", tmp_path).items():
        with pytest.raises(BundleError):
            target.import_programs(path)
        assert registry_state(target.path) == before, name


def test_missing_prerequisites_are_refused(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    full = storage.export_registry(tmp_path / "full.bundle")
    save(storage, 60)
    storage.export_registry(tmp_path / "inc.bundle", since=full.commit)
    target = new_storage(tmp_path / "target")
    save(target, 61)
    before = registry_state(target.path)
    with pytest.raises(BundleError, match="lacks"):
        target.import_programs(tmp_path / "inc.bundle")
    assert registry_state(target.path) == before


def _bundle_with_refs(storage: ProgramStorage, path: Path, refs: list[str]) -> Path:
    """A valid bundle of main whose header lists ``refs`` (all pointing at main)."""
    tip = git(storage.path, "rev-parse", "main").strip()
    good = path.with_suffix(".good")
    git(storage.path, "bundle", "create", "-q", str(good), "main")
    header = bundles.read_header(good)
    pack = good.read_bytes()[header.pack_offset :]
    lines = "".join(f"{tip} {name}\n" for name in refs)
    path.write_bytes(f"# v2 git bundle\n{lines}\n".encode() + pack)
    return path


@pytest.mark.parametrize(
    "ref",
    [
        "refs/heads/evil",
        "refs/tags/x/../../y",
        "refs/tags/prod",
        "refs/tags/prod/not-an-id",
        "refs/heads/checkpoints/a/b",
        "refs/remotes/origin/main",
        "refs/heads/main.lock",
    ],
)
def test_refs_outside_the_namespaces_are_refused(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path, ref: str
) -> None:
    storage, _ = source
    bundle = _bundle_with_refs(storage, tmp_path / "evil.bundle", ["refs/heads/main", ref])
    target = new_storage(tmp_path / "target")
    before = registry_state(target.path)
    with pytest.raises(BundleError):
        target.import_programs(bundle)
    assert registry_state(target.path) == before


def test_git_bundle_with_a_foreign_branch_is_refused(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    git(storage.path, "branch", "evil", "main")
    git(storage.path, "bundle", "create", "-q", str(tmp_path / "b.bundle"), "--all")
    target = new_storage(tmp_path / "target")
    before = registry_state(target.path)
    with pytest.raises(BundleError, match="refs/heads/evil"):
        target.import_programs(tmp_path / "b.bundle")
    assert registry_state(target.path) == before


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"# v4 git bundle\n", "unsupported version"),
        (b"# v2 git bundle\nnot a line\n\n", "malformed reference"),
        (b"# v2 git bundle\n-xyz comment\n\n", "malformed prerequisite"),
        (b"# v2 git bundle\n" + b"a" * 40 + b" refs/heads/main", "truncated"),
        (b"# v3 git bundle\n@object-format=sha256\n\n", "SHA-1"),
        (b"# v3 git bundle\n@filter=blob:none\n\n", "partial"),
        (b"# v3 git bundle\n@frobnicate\n\n", "unknown"),
        (b"# v2 git bundle\n@object-format=sha1\n\n", "not allowed"),
        (b"# v2 git bundle\n" + b"a" * 40 + b" refs/heads/main\x01\n\n", "control"),
        (
            b"# v2 git bundle\n"
            + b"a" * 40
            + b" refs/heads/main\n"
            + b"b" * 40
            + b" refs/tags/x\n"
            + b"c" * 40
            + b" refs/heads/main\n\n",
            "refs/heads/main is listed twice",
        ),
    ],
)
def test_malformed_headers_are_refused_clearly(
    tmp_path: Path, storage: ProgramStorage, header: bytes, message: str
) -> None:
    path = tmp_path / "bad.bundle"
    path.write_bytes(header + b"PACK")
    before = registry_state(storage.path)
    with pytest.raises(BundleError, match=message):
        storage.import_programs(path)
    assert registry_state(storage.path) == before


def test_huge_header_is_refused(
    tmp_path: Path, storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundles, "MAX_HEADER_BYTES", 4096)
    path = tmp_path / "huge.bundle"
    line = b"a" * 40 + b" refs/heads/main\n"
    path.write_bytes(b"# v2 git bundle\n" + line * 1000)
    with pytest.raises(BundleError, match="larger than"):
        storage.import_programs(path)


def test_oversized_objects_are_refused(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    storage.export_registry(tmp_path / "all.bundle")
    target = ProgramStorage(tmp_path / "target", max_program_bytes=1024)
    header = bundles.read_header(tmp_path / "all.bundle")
    with pytest.raises(BundleError, match="over the limit"):
        unbundle.unpack(
            target.registry.git.repo, tmp_path / "all.bundle", header, max_object_size=1024
        )
    assert list((target.path / "objects").glob("incoming-*")) == []


def test_bundle_whose_main_is_not_a_registry_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("hello\n")
    git(work, "add", "README.md")
    git(work, "-c", "user.name=A", "-c", "user.email=a@x", "commit", "-q", "-m", "init")
    git(work, "bundle", "create", "-q", str(tmp_path / "plain.bundle"), "main")
    target = new_storage(tmp_path / "target")
    before = registry_state(target.path)
    with pytest.raises(BundleError, match="not a progreg registry"):
        target.import_programs(tmp_path / "plain.bundle")
    assert registry_state(target.path) == before


def test_newer_registry_format_is_refused(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    commit_file(storage.path, "progreg.json", b'{\n  "format_version": 9\n}\n')
    git(storage.path, "bundle", "create", "-q", str(tmp_path / "new.bundle"), "main")
    target = new_storage(tmp_path / "target")
    before = registry_state(target.path)
    with pytest.raises(UnsupportedFormatError):
        target.import_programs(tmp_path / "new.bundle")
    assert registry_state(target.path) == before


# -- the reference formats ---------------------------------------------------------------


def reference_document(program_id: str, i: int, saved_at: str) -> dict[str, Any]:
    """A document as the reference system writes it."""
    return {
        "program_id": program_id,
        "saved_at": saved_at,
        "program_data": {"class_name": "DSPy::ChainOfThought", "state": workload.program_state(i)},
        "optimization_result": workload.optimization_result(i),
        "metadata": {
            "signature_class": workload.signature_of(i),
            "tags": ["prod"],
            "saved_with": "dspy.rb",
            "language_version": "3.3.0",
        },
    }


def test_reference_json_export_keeps_ids_and_saved_at(tmp_path: Path) -> None:
    export = tmp_path / "export_backup.json"
    docs = [
        reference_document("00000000000000a1", 1, "2025-03-01T10:00:00Z"),
        reference_document("00000000000000b2", 2, "2025-03-02T11:30:15+02:00"),
        reference_document("00000000000000c3", 3, "2025-03-03T09:15:00.123456+00:00"),
    ]
    export.write_text(
        json.dumps({"exported_at": "2025-03-04T00:00:00Z", "programs": docs}, indent=2)
    )
    storage = new_storage(tmp_path / "registry")
    result = storage.import_programs(export)
    assert result.source_kind == "json-export"
    assert result.imported == ["00000000000000a1", "00000000000000b2", "00000000000000c3"]
    for doc in docs:
        loaded = storage.load_program(doc["program_id"])
        assert loaded is not None
        expected = datetime.fromisoformat(doc["saved_at"].replace("Z", "+00:00"))
        assert loaded.saved_at == expected
        assert loaded.state == doc["program_data"]["state"]
        assert loaded.program_type == "DSPy::ChainOfThought"
        assert loaded.optimization_result == doc["optimization_result"]
        assert loaded.metadata == doc["metadata"]  # provenance kept as the source wrote it
    assert git(storage.path, "rev-list", "--count", "main") == "1\n"
    assert git(storage.path, "log", "-1", "--format=%s") == (
        "Import 3 programs from export_backup.json\n"
    )
    assert trailers(storage.path) == {
        "Source": "export_backup.json",
        "Source-Kind": "json-export",
        "Imported-Count": "3",
        "Identical-Count": "0",
        "Progreg-Action": "import",
    }
    before = registry_state(storage.path)
    again = storage.import_programs(export)
    assert again.commit is None and again.imported == []
    assert len(again.identical) == 3
    assert registry_state(storage.path) == before
    assert_fsck_clean(storage.path)


def make_reference_folder(root: Path, count: int) -> tuple[Path, list[str], dict[str, str]]:
    """A dspy_storage/ folder written by the reference design's store."""
    store = ReferenceStore(root)
    ids = []
    for i in range(count):
        program = {"class_name": "DSPy::Predict", "state": workload.program_state(i)}
        ids.append(
            store.save_program(
                program,
                workload.optimization_result(i),
                {"signature_class": workload.signature_of(i)},
            )
        )
    documents = [store.load_program(pid) for pid in ids]
    saved_at = {document["program_id"]: document["saved_at"] for document in documents if document}
    assert len(saved_at) == count
    return root, ids, saved_at


def test_reference_folder_migrates_and_reports_history_drift(tmp_path: Path) -> None:
    folder, ids, saved_at = make_reference_folder(tmp_path / "dspy_storage", 4)
    # The reference lets the index and the files drift apart: one file lost, one not indexed.
    (folder / "programs" / f"{ids[0]}.json").unlink()
    extra = reference_document("0123456789abcdef", 9, "2025-01-01T00:00:00+00:00")
    (folder / "programs" / "0123456789abcdef.json").write_text(json.dumps(extra, indent=2))

    storage = new_storage(tmp_path / "registry")
    result = storage.import_programs(folder)
    assert result.source_kind == "dspy-storage"
    assert sorted(result.imported) == sorted([*ids[1:], "0123456789abcdef"])
    assert result.history_missing == [ids[0]]
    assert result.history_unlisted == ["0123456789abcdef"]
    assert any("no file" in warning for warning in result.warnings)
    for program_id in ids[1:]:
        loaded = storage.load_program(program_id)
        assert loaded is not None
        assert loaded.saved_at == datetime.fromisoformat(saved_at[program_id])
        assert loaded.state == workload.program_state(ids.index(program_id))
    assert trailers(storage.path)["Imported-Count"] == "4"
    assert_fsck_clean(storage.path)


@pytest.mark.parametrize("hostile", ["../x", "../../etc/passwd", "ABCDEF0123456789", "", None, 7])
def test_hostile_ids_in_an_export_file_are_refused(tmp_path: Path, hostile: object) -> None:
    export = tmp_path / "export.json"
    good = reference_document("00000000000000a1", 1, "2025-03-01T10:00:00Z")
    bad = {
        **reference_document("00000000000000a2", 2, "2025-03-01T10:00:00Z"),
        "program_id": hostile,
    }
    export.write_text(json.dumps({"exported_at": "x", "programs": [good, bad]}))
    storage = new_storage(tmp_path / "registry")
    before = registry_state(storage.path)
    with pytest.raises(BundleError, match="program_id"):
        storage.import_programs(export)
    assert registry_state(storage.path) == before
    assert not (tmp_path / "x").exists()


def test_hostile_files_in_a_folder_are_refused(tmp_path: Path) -> None:
    folder, ids, _ = make_reference_folder(tmp_path / "dspy_storage", 2)
    storage = new_storage(tmp_path / "registry")
    save(storage, 7)
    before = registry_state(storage.path)

    evil = reference_document("../../evil", 1, "2025-01-01T00:00:00Z")
    (folder / "programs" / "evil.json").write_text(json.dumps(evil))
    with pytest.raises(BundleError, match="evil"):
        storage.import_programs(folder)
    (folder / "programs" / "evil.json").unlink()

    misplaced = reference_document(ids[0], 1, "2025-01-01T00:00:00Z")
    (folder / "programs" / "00000000000000ff.json").write_text(json.dumps(misplaced))
    with pytest.raises(BundleError, match="inconsistent"):
        storage.import_programs(folder)
    (folder / "programs" / "00000000000000ff.json").unlink()

    (folder / "programs" / "aaaaaaaaaaaaaaaa.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        storage.import_programs(folder)
    assert registry_state(storage.path) == before


def test_reference_conflicts_and_duplicates_are_refused(tmp_path: Path) -> None:
    storage = new_storage(tmp_path / "registry")
    storage.save_program({"mine": True}, None, program_id="00000000000000a1")
    before = registry_state(storage.path)
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            {"programs": [reference_document("00000000000000a1", 1, "2025-03-01T10:00:00Z")]}
        )
    )
    with pytest.raises(ConflictError, match="00000000000000a1"):
        storage.import_programs(export)
    twice = [
        reference_document("00000000000000b1", 1, "2025-03-01T10:00:00Z"),
        reference_document("00000000000000b1", 2, "2025-03-01T10:00:00Z"),
    ]
    export.write_text(json.dumps({"programs": twice}))
    with pytest.raises(BundleError, match="twice"):
        storage.import_programs(export)
    assert registry_state(storage.path) == before


def test_unknown_sources_are_refused(tmp_path: Path, storage: ProgramStorage) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    (tmp_path / "array.json").write_text("[1, 2]")
    for path, message in (
        (tmp_path / "notes.txt", "neither"),
        (tmp_path / "folder", "not a reference storage folder"),
        (tmp_path / "missing.bundle", "does not exist"),
        (tmp_path / "array.json", "neither"),
    ):
        with pytest.raises(BundleError, match=message):
            storage.import_programs(path)


# -- events, command line, no git binary -----------------------------------------------------


def test_events_report_counts_and_sizes(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    try:
        exported = storage.export_registry(tmp_path / "all.bundle")
        new_storage(tmp_path / "target").import_programs(tmp_path / "all.bundle")
    finally:
        unsubscribe()
    export = next(e for e in seen if e.name == "progreg.export")
    assert export.fields["objects"] == exported.object_count
    assert export.fields["size_bytes"] == exported.size_bytes
    assert export.fields["programs"] == len(ids)
    done = [e for e in seen if e.name == "progreg.import" and "source_kind" in e.fields]
    assert len(done) == 1
    assert done[0].fields["imported"] == len(ids)
    assert done[0].fields["size_bytes"] == exported.size_bytes


def test_command_line_export_and_import(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    runner = CliRunner()
    bundle = tmp_path / "cli.bundle"
    done = runner.invoke(
        cli, ["--registry", str(storage.path), "export", str(bundle), ids[0], "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["program_ids"] == [ids[0]]
    done = runner.invoke(cli, ["--registry", str(storage.path), "export", str(bundle), "--all"])
    assert done.exit_code == 0, done.output
    assert "exported the registry" in done.output
    done = runner.invoke(cli, ["--registry", str(storage.path), "export", str(bundle)])
    assert done.exit_code == 2
    done = runner.invoke(
        cli, ["--registry", str(tmp_path / "target"), "import", str(bundle), "--json"]
    )
    assert done.exit_code == 0, done.output
    result = ImportResult.model_validate_json(done.output)
    assert sorted(result.imported) == sorted(ids)
    done = runner.invoke(cli, ["--registry", str(tmp_path / "target"), "import", str(bundle)])
    assert done.exit_code == 0
    assert "registry unchanged" in done.output
    garbage = tmp_path / "garbage.bundle"
    garbage.write_bytes(b"# v2 git bundle\nnonsense\n\n")
    done = runner.invoke(cli, ["--registry", str(tmp_path / "target"), "import", str(garbage)])
    assert done.exit_code == 1
    assert done.output.startswith("error: ") and done.output.count("\n") == 1
    for command in ("export", "import"):
        done = runner.invoke(cli, [command, "--help"])
        assert "Example" in done.output


def test_export_and_import_work_without_the_git_binary(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path, python: str
) -> None:
    storage, ids = source
    script = (
        "import shutil, sys\n"
        "from progreg import ProgramStorage\n"
        "assert shutil.which('git') is None\n"
        "s = ProgramStorage(sys.argv[1])\n"
        "s.export_registry(sys.argv[2])\n"
        "r = ProgramStorage(sys.argv[3]).import_programs(sys.argv[2])\n"
        "print(len(r.imported))\n"
    )
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    done = subprocess.run(
        [python, "-c", script, str(storage.path), str(tmp_path / "b.bundle"), str(tmp_path / "t")],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(empty_bin)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(ids))
    assert_fsck_clean(tmp_path / "t")


# -- the pack layer --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "target"),
    [
        (b"", b"abc"),
        (b"abc", b""),
        (b"hello world", b"hello there world"),
        (b"x" * 100_000, b"x" * 50_000 + b"y" * 300 + b"x" * 50_000),
        (bytes(range(256)) * 10, bytes(range(256)) * 9 + b"tail"),
    ],
)
def test_deltas_round_trip(base: bytes, target: bytes) -> None:
    delta = deltas.make_delta(base, target)
    if delta is not None:
        assert deltas.apply_delta(base, delta, len(target)) == target


def test_written_pack_and_index_are_read_by_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    git(tmp_path, "init", "-q", "--bare", str(repo))
    blobs = [b"first\n" * 100, b"first\n" * 100 + b"second\n", b"other\n"]
    pack_path = tmp_path / "p.pack"
    with open(pack_path, "w+b") as out:
        writer = packs.PackWriter(out)
        oids = [objects.object_id(objects.OBJ_BLOB, data) for data in blobs]
        writer.add(oids[0], objects.OBJ_BLOB, blobs[0])
        delta = deltas.make_delta(blobs[0], blobs[1])
        assert delta is not None
        writer.add_delta(oids[1], oids[0], delta)
        writer.add(oids[2], objects.OBJ_BLOB, blobs[2])
        checksum = writer.finish()
    data = pack_path.read_bytes()
    indexed = packs.index_pack(
        memoryview(data), external=lambda _: None, visit=lambda *_: None, max_object_size=1 << 20
    )
    assert indexed.checksum == checksum
    target = repo / "objects" / "pack" / f"pack-{checksum.hex()}"
    target.with_suffix(".pack").write_bytes(data)
    with open(target.with_suffix(".idx"), "wb") as out:
        packs.write_index(out, indexed.entries, checksum)
    git(repo, "verify-pack", str(target.with_suffix(".idx")))
    for oid, blob in zip(oids, blobs, strict=True):
        shown = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "blob", oid.hex()], capture_output=True, check=True
        ).stdout
        assert shown == blob


def test_export_of_a_gc_packed_registry_reuses_its_pack(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    git(storage.path, "gc", "-q")
    pack = next((storage.path / "objects" / "pack").glob("*.pack"))
    result = storage.export_registry(tmp_path / "all.bundle")
    data = (tmp_path / "all.bundle").read_bytes()
    assert data.endswith(pack.read_bytes())  # the pack as it is, after the header
    assert git_status(storage.path, "bundle", "verify", str(tmp_path / "all.bundle")) == 0
    target = new_storage(tmp_path / "target")
    imported = target.import_programs(tmp_path / "all.bundle")
    assert sorted(imported.imported) == sorted(ids)
    assert result.object_count == imported.object_count
    assert_fsck_clean(target.path)

    git(storage.path, "branch", "elsewhere", "main")  # a foreign ref: walk instead of copying
    again = storage.export_registry(tmp_path / "walked.bundle")
    assert "refs/heads/elsewhere" not in again.refs
    assert not (tmp_path / "walked.bundle").read_bytes().endswith(pack.read_bytes())
    assert git_status(storage.path, "bundle", "verify", str(tmp_path / "walked.bundle")) == 0


def test_the_bundle_layer_writes_v3_bundles(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    tip = git(storage.path, "rev-parse", "main").strip()
    written = bundles.write_bundle(
        storage.registry.git.repo, tmp_path / "v3.bundle", [("refs/heads/main", tip)], version=3
    )
    assert written.version == 3
    assert (
        (tmp_path / "v3.bundle").read_bytes().startswith(b"# v3 git bundle\n@object-format=sha1\n")
    )
    header = bundles.read_header(tmp_path / "v3.bundle")
    assert header.capabilities == {"object-format": "sha1"}
    assert header.refs == {"refs/heads/main": tip}
    assert git_status(storage.path, "bundle", "verify", str(tmp_path / "v3.bundle")) == 0


def test_importing_only_identical_programs_writes_nothing(tmp_path: Path) -> None:
    """An export of programs the registry already has (another history) changes nothing."""
    storage = ProgramStorage(tmp_path / "registry")
    ids = [storage.save_program({"instructions": f"v{i}"}).program_id for i in range(3)]
    bundle = tmp_path / "same.bundle"
    storage.export_programs(ids, bundle)  # a new, parentless commit: unrelated history
    before = registry_state(storage.path)
    result = storage.import_programs(bundle)
    assert result.commit is None
    assert result.imported == []
    assert sorted(result.identical) == sorted(ids)
    assert registry_state(storage.path) == before  # not even the bundle's objects


def test_export_and_import_report_progress(tmp_path: Path) -> None:
    storage = ProgramStorage(tmp_path / "registry")
    for i in range(5):
        storage.save_program({"instructions": f"v{i}"}, tags=["first"] if i == 0 else ())
    bundle = tmp_path / "all.bundle"
    exported: list[tuple[int, int]] = []
    # A registry that is exactly one pack is exported by copying that pack: one step.
    storage.export_registry(bundle, progress=lambda done, total: exported.append((done, total)))
    assert exported == [(1, 1)]
    # A loose object (as plain git writes them) means the objects are read and packed anew.
    git(storage.path, "hash-object", "-w", "--stdin", input=b"written by git")
    exported.clear()
    storage.export_registry(bundle, progress=lambda done, total: exported.append((done, total)))
    assert exported[-1][0] == exported[-1][1] == 5  # one step per commit
    imported: list[tuple[int, int]] = []
    target = ProgramStorage(tmp_path / "target")
    target.import_programs(bundle, progress=lambda done, total: imported.append((done, total)))
    assert imported
    assert [done for done, _ in imported] == sorted(done for done, _ in imported)
    assert imported[-1][0] == imported[-1][1]  # every object of the pack was checked


def test_the_cli_draws_a_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    storage = ProgramStorage(tmp_path / "registry")
    # A loose object: the registry is not exactly one pack, so export reads and packs.
    storage.save_program({"instructions": "hello"}, tags=["first"])
    git(storage.path, "hash-object", "-w", "--stdin", input=b"written by git")
    executable = Path(sys.executable).with_name("progreg")
    env = {**os.environ, "PROGREG_PATH": str(storage.path)}
    command = [str(executable), "export", str(tmp_path / "a.bundle"), "--all"]
    piped = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert "exporting" not in piped.stderr
    main, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [*command[:2], str(tmp_path / "b.bundle"), "--all"],
            stdout=subprocess.PIPE,
            stderr=secondary,
            env=env,
            check=True,
        )
        os.close(secondary)
        drawn = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(main, 4096):
                drawn += chunk
    finally:
        os.close(main)
    assert b"exporting" in drawn
    assert done.returncode == 0


def test_incoming_program_files_are_read_as_raw_blobs(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    """The merge's check of each incoming program: a file, within the limit, a document."""
    storage, ids = source
    repo = storage.registry.git.repo
    path = program_file(ids[0])
    blob_id = repo.revparse_single("main").tree[path].id
    _check_program(repo, blob_id, path, ids[0], 1 << 20)  # a valid program passes
    tree_id = repo.revparse_single("main").tree.id
    missing = pygit2.Oid(hex="1" * 40)  # a submodule's commit: not in the repository
    for not_a_file in (tree_id, missing):
        with pytest.raises(CorruptProgramError, match="on the other side is not a file"):
            _check_program(repo, not_a_file, path, ids[0], 1 << 20)
    with pytest.raises(CorruptProgramError, match="over the limit of 100"):
        _check_program(repo, blob_id, path, ids[0], 100)
    other = repo.create_blob(b'{"not": "a program"}\n')
    with pytest.raises(CorruptProgramError):
        _check_program(repo, other, path, ids[0], 1 << 20)


def progreg_command(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``progreg`` command."""
    executable = Path(sys.executable).with_name("progreg")
    return subprocess.run([str(executable), *args], capture_output=True, text=True, check=False)


def hinted(stderr: str, label: str) -> str:
    """The command the CLI suggests after ``label``."""
    line = next(line for line in stderr.splitlines() if line.startswith(label))
    return line[len(label) :].strip()


def test_the_export_hints_are_git_commands_that_work_outside_a_repository(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, ids = source
    outside = tmp_path / "nowhere"  # not a repository, and git may not look above it
    outside.mkdir()
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path)}

    def run_here(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            shlex.split(command), cwd=outside, env=env, capture_output=True, text=True, check=False
        )

    folder = tmp_path / "with space"  # the hints quote paths for a shell
    folder.mkdir()
    full, picked, weekly = folder / "full.bundle", folder / "picked.bundle", folder / "w.bundle"
    done = progreg_command("--registry", str(storage.path), "export", str(full), "--all")
    assert done.returncode == 0, done.stderr
    # What the hint used to say fails outside a repository.
    assert run_here(f"git bundle verify {shlex.quote(str(full))}").returncode != 0
    done_picked = progreg_command("--registry", str(storage.path), "export", str(picked), ids[0])
    save(storage, 60)
    done_weekly = progreg_command(
        "--registry", str(storage.path), "export", str(weekly), "--since", str(full)
    )
    target = new_storage(tmp_path / "target")
    target.import_programs(full)  # a reader that has what the weekly bundle builds on
    for result, bundle in ((done, full), (done_picked, picked), (done_weekly, weekly)):
        assert result.returncode == 0, result.stderr
        verify = hinted(result.stderr, "check it with:")
        assert "bundle verify" in verify and shlex.split(verify)[-1] == str(bundle)
        checked = run_here(verify)
        assert checked.returncode == 0, checked.stderr
        assert "is okay" in checked.stderr
        heads = run_here(hinted(result.stderr, "list its refs anywhere with:"))
        assert heads.returncode == 0, heads.stderr
        assert "refs/heads/main" in heads.stdout
    reader = hinted(done_weekly.stderr, "incremental:")
    command = reader.split(": ", 1)[1].replace("<that registry>", shlex.quote(str(target.path)))
    checked = run_here(command)
    assert checked.returncode == 0 and "is okay" in checked.stderr
    assert "incremental:" not in done.stderr


def test_a_refused_import_leaves_no_registry_it_created(
    source: tuple[ProgramStorage, list[str]], tmp_path: Path
) -> None:
    storage, _ = source
    tags_only = tmp_path / "tags.bundle"
    git(storage.path, "bundle", "create", "-q", str(tags_only), "--tags")
    garbage = tmp_path / "garbage.bundle"
    garbage.write_bytes(b"# v2 git bundle\nnonsense\n\n")
    places = tmp_path / "places"
    places.mkdir()
    (places / "empty").mkdir()
    (places / "keep.txt").write_text("not ours\n")

    def listing() -> list[str]:
        return sorted(str(p.relative_to(places)) for p in places.rglob("*"))

    before = listing()
    for bundle in (tags_only, garbage):
        for registry in (places / "new" / "deeper" / "registry", places / "empty"):
            done = progreg_command("--registry", str(registry), "import", str(bundle))
            assert done.returncode == 1 and done.stderr.startswith("error: "), done.stderr
            assert listing() == before  # the new directories, or the files in "empty", are gone
    assert (places / "empty").is_dir()

    # An existing registry is left exactly as it was, and never removed.
    existing = new_storage(places / "existing")
    save(existing, 70)
    state = registry_state(existing.path)
    done = progreg_command("--registry", str(existing.path), "import", str(tags_only))
    assert done.returncode == 1 and registry_state(existing.path) == state

    # A successful import keeps the registry it created.
    full = tmp_path / "full.bundle"
    storage.export_registry(full)
    done = progreg_command("--registry", str(places / "new" / "registry"), "import", str(full))
    assert done.returncode == 0, done.stderr
    assert_fsck_clean(places / "new" / "registry")
    assert (places / "keep.txt").read_text() == "not ours\n"
