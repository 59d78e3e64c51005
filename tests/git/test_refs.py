"""Tag refs at scale: listing them from packed-refs and loose files, and packing them.

Every answer is compared with ``git for-each-ref``; packing is compared
byte for byte with ``git pack-refs --all`` and run against concurrent
writers (progreg and git processes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from progreg import ProgramStorage, RegistryError, StorageManager
from progreg.git import CommitPlan, Tip, maintenance
from progreg.git.locking import write_lock
from progreg.git.objects.identity import Identity
from progreg.git.refs import reflist, refpack
from progreg.git.refs.reflist import names_under
from progreg.git.refs.reflog import RefLogEntry
from progreg.git.refs.refwrite import RefSwap, swap_refs
from progreg.registry.checkpoints import Checkpoints
from progreg.registry.tags import all_tags, tagged
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, git

PACKED = "packed-refs"


def refs(registry: Path, prefix: str = "refs/") -> set[str]:
    """Names under ``prefix`` (without it), as ``git for-each-ref`` lists them."""
    out = git(registry, "for-each-ref", "--format=%(refname)", prefix)
    return {line[len(prefix) :] for line in out.splitlines()}


def ref_values(registry: Path) -> str:
    """Every ref with its object and peeled object."""
    return git(registry, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)")


@pytest.fixture
def tagged_registry(registry_path: Path) -> tuple[StorageManager, list[str]]:
    """Programs with tags whose names sort around each other (a, a-b, a0, ab, b)."""
    manager = StorageManager(storage=ProgramStorage(registry_path))
    ids = []
    for i in range(12):
        saved = manager.storage.save_program({"i": i}, {"best_score_value": i / 10})
        ids.append(saved.program_id)
        names = ["a", "a-b", "a0", "ab", "b"][i % 5 :][:2]
        manager.tag_program(saved.program_id, *names)
    return manager, ids


def assert_listing_matches_git(registry: Path) -> None:
    tags = ["a", "a-b", "a0", "ab", "b", "c", "zz"]
    for prefix in ["refs/", "refs/tags/", "refs/heads/", *(f"refs/tags/{tag}/" for tag in tags)]:
        assert names_under(registry, prefix) == refs(registry, prefix), prefix


def test_listing_from_loose_packed_and_mixed_refs(
    tagged_registry: tuple[StorageManager, list[str]],
) -> None:
    manager, ids = tagged_registry
    registry = manager.storage.path
    assert_listing_matches_git(registry)  # all loose (automatic packing is not due yet)
    git(registry, "pack-refs", "--all")
    assert (registry / PACKED).is_file()
    assert not list((registry / "refs" / "tags").rglob(ids[0]))
    assert_listing_matches_git(registry)  # all packed
    manager.tag_program(ids[0], "a0", "c")  # loose refs beside packed ones
    git(registry, "tag", "-d", f"a/{ids[5]}")  # a packed ref deleted by git
    manager.untag_program(ids[1], "a-b")  # and one by progreg
    head = git(registry, "rev-parse", "main").strip()
    git(registry, "update-ref", f"refs/tags/a0/{ids[1]}", head)  # a loose ref over a packed one
    assert_listing_matches_git(registry)
    lock = registry / "refs" / "tags" / "a" / f"{ids[2]}.lock"  # a writer's lock file
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    assert_listing_matches_git(registry)


def test_an_unsorted_packed_refs_file_is_scanned(
    tagged_registry: tuple[StorageManager, list[str]],
) -> None:
    manager, _ = tagged_registry
    registry = manager.storage.path
    git(registry, "pack-refs", "--all")
    lines = (registry / PACKED).read_text().splitlines(keepends=True)
    body = lines[1:]
    records: list[str] = []
    for line in body:  # keep each peel line after its ref
        if line.startswith("^"):
            records[-1] += line
        else:
            records.append(line)
    (registry / PACKED).write_text("".join(reversed(records)))  # no header, not sorted
    assert_listing_matches_git(registry)
    (registry / PACKED).write_text("")
    assert names_under(registry, "refs/tags/") == refs(registry, "refs/tags/") == set()


def test_a_ref_prefix_must_name_a_directory_of_refs(registry_path: Path) -> None:
    ProgramStorage(registry_path)
    for prefix in ["refs/tags", "tags/", "refs/tags/a"]:
        with pytest.raises(ValueError, match="must start with"):
            names_under(registry_path, prefix)


def test_tag_queries_agree_whatever_the_refs_storage(
    tagged_registry: tuple[StorageManager, list[str]],
) -> None:
    manager, ids = tagged_registry
    git_ = manager.storage.registry.git

    def answers() -> tuple[object, ...]:
        by_program: dict[str, set[str]] = {}
        for name in refs(git_.path, "refs/tags/"):
            tag, _, program_id = name.rpartition("/")
            by_program.setdefault(program_id, set()).add(tag)
        assert all_tags(git_) == by_program
        found = [s.program_id for s in manager.find_programs(tags=["a0", "b"])]
        assert set(found) == tagged(git_, ["a0", "b"])
        assert found == [i for i in ids if i in set(found)]  # in the order of main
        assert manager.find_programs(tags=[]) == []
        return (all_tags(git_), found, [manager.get_tags(i) for i in ids])

    loose = answers()
    git(git_.path, "pack-refs", "--all")
    assert answers() == loose


# -- packing ---------------------------------------------------------------------------------


def test_packing_writes_what_git_pack_refs_writes(
    tagged_registry: tuple[StorageManager, list[str]], tmp_path: Path
) -> None:
    manager, ids = tagged_registry
    registry = manager.storage.path
    git(registry, "branch", "checkpoints/run-1", "main")
    git(registry, "tag", "lightweight", "main")
    git(registry, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    before = ref_values(registry)
    reference = tmp_path / "reference"
    shutil.copytree(registry, reference)
    git(reference, "pack-refs", "--all")
    removed = refpack.pack_refs(registry)
    assert removed is not None and removed >= len(ids)
    assert (registry / PACKED).read_bytes() == (reference / PACKED).read_bytes()
    assert ref_values(registry) == before
    loose = [p for p in (registry / "refs").rglob("*") if p.is_file()]
    assert loose == [registry / "refs" / "heads" / "alias"]  # a symbolic ref stays loose
    written = (registry / PACKED).stat()
    assert refpack.pack_refs(registry) == 0  # nothing left to pack: not rewritten
    assert (registry / PACKED).stat().st_ino == written.st_ino
    assert not (registry / f"{PACKED}.lock").exists()
    manager.tag_program(ids[3], "after")
    assert refpack.pack_refs(registry) == 1
    assert ref_values(registry) != before
    assert_listing_matches_git(registry)
    assert_fsck_clean(registry)


def test_packing_leaves_refs_being_written_alone(
    tagged_registry: tuple[StorageManager, list[str]],
) -> None:
    manager, ids = tagged_registry
    registry = manager.storage.path
    before = ref_values(registry)
    lock = registry / f"{PACKED}.lock"
    lock.write_text("")
    assert refpack.pack_refs(registry) is None  # another process is rewriting packed-refs
    assert not (registry / PACKED).exists()
    lock.unlink()
    ref_lock = registry / "refs" / "tags" / "a" / f"{ids[0]}.lock"
    ref_lock.write_text("")  # a writer is updating this ref
    refpack.pack_refs(registry)
    assert (registry / "refs" / "tags" / "a" / ids[0]).is_file()  # left loose
    assert ref_lock.is_file()
    assert ref_values(registry) == before
    ref_lock.unlink()
    assert_fsck_clean(registry)


def test_packing_is_due_once_enough_loose_refs_pile_up(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refpack, "MIN_LOOSE_REFS", 6)
    monkeypatch.setattr(maintenance, "CHECK_EVERY", 1)
    storage = ProgramStorage(registry_path)
    for i in range(4):
        storage.save_program({"i": i}, tags=["best"])
    assert not (registry_path / PACKED).exists()  # main and 4 tags: 5 loose refs
    assert not refpack.packing_due(registry_path)
    storage.save_program({"i": 4}, tags=["best"])  # the 6th loose ref, then maintenance
    assert (registry_path / PACKED).is_file()
    assert refpack.loose_ref_count(registry_path, 100) == 0
    storage.save_program({"i": 5}, tags=["best"])
    assert refpack.loose_ref_count(registry_path, 100) == 2  # main and the new tag
    assert len(refs(registry_path, "refs/tags/best/")) == 6
    assert_fsck_clean(registry_path)


def test_gc_packs_refs_too(tagged_registry: tuple[StorageManager, list[str]]) -> None:
    manager, _ = tagged_registry
    registry = manager.storage.path
    before = ref_values(registry)
    manager.storage.gc()
    assert refpack.loose_ref_count(registry, 1000) == 0
    assert ref_values(registry) == before
    assert_fsck_clean(registry)


TAGGER = """
import sys
from progreg import ProgramStorage, RegistryError, StorageManager
from progreg.registry.checkpoints import Checkpoints

manager = StorageManager(storage=ProgramStorage(sys.argv[1]))
for i in range(int(sys.argv[2])):
    saved = manager.storage.save_program({"w": sys.argv[3], "i": i}, tags=["t" + sys.argv[3]])
    manager.tag_program(saved.program_id, "shared", "gone")
    manager.untag_program(saved.program_id, "gone")
    print(saved.program_id, flush=True)
"""

PACKER = """
import sys, time
from pathlib import Path
from progreg.git.refs import refpack
from progreg.git.locking import write_lock

deadline = time.monotonic() + float(sys.argv[2])
runs = 0
while time.monotonic() < deadline:
    with write_lock(Path(sys.argv[1]), 30):  # as maintenance does
        if refpack.pack_refs(sys.argv[1]) is not None:
            runs += 1
    time.sleep(0.01)
print(runs)
"""


def test_packing_while_others_tag_loses_nothing(registry_path: Path) -> None:
    ProgramStorage(registry_path).save_program({"first": True})
    packer = subprocess.Popen(
        [sys.executable, "-c", PACKER, str(registry_path), "8"], stdout=subprocess.PIPE, text=True
    )
    taggers = [
        subprocess.Popen(
            [sys.executable, "-c", TAGGER, str(registry_path), "15", str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    cli_tags = []
    for k in range(15):  # and plain git, which takes the same locks
        name = f"refs/tags/cli/{k:016x}"
        git(registry_path, "update-ref", name, "main", env=CLI_IDENTITY)
        cli_tags.append(name)
    saved: dict[str, list[str]] = {}
    for n, tagger in enumerate(taggers):
        out, err = tagger.communicate(timeout=300)
        assert tagger.returncode == 0, err
        saved[str(n)] = out.split()
    runs, _ = packer.communicate(timeout=300)
    assert int(runs) > 0
    refpack.pack_refs(registry_path)
    for writer, program_ids in saved.items():
        assert refs(registry_path, f"refs/tags/t{writer}/") == set(program_ids)
    assert refs(registry_path, "refs/tags/shared/") == {p for ids in saved.values() for p in ids}
    assert refs(registry_path, "refs/tags/gone/") == set()
    assert {f"refs/tags/cli/{name}" for name in refs(registry_path, "refs/tags/cli/")} == set(
        cli_tags
    )
    assert_fsck_clean(registry_path)


def age(registry: Path) -> None:
    """Date packed-refs and every refs directory a minute back, as if written long ago."""
    old = time.time() - 60
    for path in [registry / PACKED, registry / "refs", *(registry / "refs").rglob("*")]:
        if path.is_dir() or path.name == PACKED:
            os.utime(path, (old, old))


def test_a_remembered_listing_is_used_only_while_its_files_are_unchanged(
    tagged_registry: tuple[StorageManager, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, ids = tagged_registry
    registry = manager.storage.path
    scans: list[str] = []
    scan = reflist._loose_names

    def spy(gitdir: Path, prefix: str) -> object:
        scans.append(prefix)
        return scan(gitdir, prefix)

    monkeypatch.setattr(reflist, "_loose_names", spy)
    git(registry, "pack-refs", "--all")
    manager.tag_program(ids[0], "a")  # one loose ref beside the packed ones
    names_under(registry, "refs/tags/a/")
    names_under(registry, "refs/tags/a/")
    assert scans == ["refs/tags/a/"] * 2  # just written: not remembered
    age(registry)
    steps: list[Callable[[], object]] = [
        lambda: manager.tag_program(ids[1], "a"),  # a new loose file
        lambda: manager.untag_program(ids[0], "a"),  # a loose file removed
        lambda: git(registry, "tag", "-d", f"a/{ids[5]}"),  # packed-refs rewritten
        lambda: git(registry, "pack-refs", "--all"),
        lambda: manager.tag_program(ids[2], "new"),  # a directory that did not exist
    ]
    for step in steps:
        scans.clear()
        for prefix in ("refs/tags/a/", "refs/tags/new/"):
            assert names_under(registry, prefix) == refs(registry, prefix)
            assert names_under(registry, prefix) == refs(registry, prefix)
        assert scans == ["refs/tags/a/", "refs/tags/new/"]  # the second listings were remembered
        step()
        for prefix in ("refs/tags/a/", "refs/tags/new/"):
            assert names_under(registry, prefix) == refs(registry, prefix)
        age(registry)


def test_untagging_waits_for_the_write_lock_packing_holds(
    tagged_registry: tuple[StorageManager, list[str]],
) -> None:
    """libgit2 deletes the loose file before packed-refs: a pack in between would revive it."""
    manager, ids = tagged_registry
    registry = manager.storage.path
    done = threading.Event()

    def untag() -> None:
        manager.untag_program(ids[0], "a")
        done.set()

    with write_lock(registry, 30):
        worker = threading.Thread(target=untag)
        worker.start()
        assert not done.wait(0.5)
        assert f"a/{ids[0]}" in refs(registry, "refs/tags/")
    worker.join(30)
    assert done.is_set()
    assert f"a/{ids[0]}" not in refs(registry, "refs/tags/")


def test_deleting_a_checkpoint_waits_for_the_write_lock_packing_holds(
    registry_path: Path,
) -> None:
    """As for untagging: a pack between the loose file's deletion and packed-refs revives it."""
    storage = ProgramStorage(registry_path)
    checkpoints = Checkpoints(storage.registry)
    checkpoints.create({"predict": {"demos": []}}, None, "run")
    refpack.pack_refs(registry_path)
    done = threading.Event()

    def delete() -> None:
        checkpoints.delete("run")
        done.set()

    with write_lock(registry_path, 30):
        worker = threading.Thread(target=delete)
        worker.start()
        assert not done.wait(0.5)
        assert "run" in refs(registry_path, "refs/heads/checkpoints/")
    worker.join(30)
    assert done.is_set()
    assert refs(registry_path, "refs/heads/checkpoints/") == set()


def test_an_import_writes_its_many_tags_into_packed_refs(
    tmp_path: Path, tagged_registry: tuple[StorageManager, list[str]]
) -> None:
    manager, _ = tagged_registry
    bundle = tmp_path / "all.bundle"
    manager.storage.export_registry(bundle)
    target = ProgramStorage(tmp_path / "target")
    theirs = target.save_program({"mine": 1}, tags=["a"])  # a loose tag of its own
    result = target.import_programs(bundle)
    assert len(result.tags_created) == len(refs(manager.storage.path, "refs/tags/")) == 22
    loose = [p.relative_to(target.path) for p in (target.path / "refs" / "tags").glob("*/*")]
    assert loose == [Path("refs/tags/a") / theirs.program_id]  # the imported tags are packed
    packed = (target.path / PACKED).read_text()
    assert packed.startswith("# pack-refs with: peeled fully-peeled sorted")
    source_values = ref_values(manager.storage.path)
    target_values = ref_values(target.path)
    for line in source_values.splitlines():
        if line.startswith("refs/tags/"):
            assert line in target_values.splitlines()  # the same tag objects, peeled the same
    assert names_under(target.path, "refs/tags/a/") == refs(target.path, "refs/tags/a/")
    assert theirs.program_id in refs(target.path, "refs/tags/a/")
    again = target.import_programs(bundle)
    assert again.tags_created == [] and len(again.tags_kept) == 0  # identical: nothing to do
    assert_fsck_clean(target.path)


def test_packed_ref_creation_keeps_existing_refs_and_gives_way_on_a_clash(
    registry_path: Path,
) -> None:
    storage = ProgramStorage(registry_path)
    saved = storage.save_program({"a": 1})
    commit = saved.commit
    git(registry_path, "update-ref", "refs/tags/plain", commit)  # a tag made with plain git
    wanted = {f"refs/tags/t{n:02d}/{saved.program_id}": commit for n in range(20)}
    wanted["refs/tags/plain"] = commit  # exists already: left as it is
    made = storage.registry.git.create_refs(wanted)
    assert sorted(made) == sorted(name for name in wanted if name != "refs/tags/plain")
    assert not (registry_path / "refs" / "tags" / "t00").exists()  # packed, not loose
    assert git(registry_path, "rev-parse", f"refs/tags/t07/{saved.program_id}").strip() == commit
    clash = {f"refs/tags/plain/{n:02d}": commit for n in range(20)}  # under an existing ref
    with pytest.raises(RegistryError):
        storage.registry.git.create_refs(clash)
    assert "refs/tags/plain/00" not in ref_values(registry_path)
    assert_fsck_clean(registry_path)


def test_one_packed_ref_is_found_by_binary_search_as_git_finds_it(
    tagged_registry: tuple[StorageManager, list[str]],
) -> None:
    manager, ids = tagged_registry
    path = manager.storage.path
    git(path, "tag", "-a", "-m", "x", "v1", "main", env=CLI_IDENTITY)
    git(path, "tag", "v10", "main")  # v1's name is the start of v10's
    git(path, "pack-refs", "--all")
    names = git(path, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    for line in names:
        name, oid = line.split()
        assert reflist.packed_value(path, name) == oid, name
    assert reflist.packed_value(path, "refs/tags/a") is None  # only a directory of refs
    assert reflist.packed_value(path, f"refs/tags/zz/{ids[0]}") is None
    packed = path / PACKED
    lines = packed.read_text().splitlines()
    packed.write_text("\n".join([lines[0].replace(" sorted", ""), *reversed(lines[1:])]) + "\n")
    name, oid = names[0].split()
    assert reflist.packed_value(path, name) == oid  # an unsorted file is scanned


def test_ref_values_read_loose_over_packed_and_resolve_symbolic_refs_as_git_does(
    tagged_registry: tuple[StorageManager, list[str]],
) -> None:
    manager, ids = tagged_registry
    path = manager.storage.path
    git(path, "pack-refs", "--all")
    main = git(path, "rev-parse", "main").strip()
    git(path, "update-ref", f"refs/tags/best/{ids[0]}", main)  # loose now, over its packed line
    git(path, "symbolic-ref", "refs/tags/best/alias", "refs/heads/main")
    git(path, "update-ref", "refs/tags/other/x", main)  # outside the prefix
    expected = {
        line.split()[0][len("refs/tags/best/") :]: line.split()[1]
        for line in git(
            path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/tags/best/"
        ).splitlines()
    }
    assert expected[ids[0]] == main and expected["alias"] == main
    assert manager.storage.registry.git.ref_values("refs/tags/best/") == expected
    raw = reflist.values_under(path, "refs/tags/best/")
    assert raw["alias"] is None  # symbolic: left to libgit2
    assert manager.storage.registry.git.ref_values("refs/tags/none/") == {}
    every = dict(
        line.split()
        for line in git(path, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    )
    wanted = [f"refs/tags/best/{i}" for i in ids] + ["refs/tags/other/x", "refs/tags/best/gone"]
    many = wanted * 40  # past the count looked up one by one
    assert manager.storage.registry.git.values_of(many) == {
        n: every[n] for n in wanted if n in every
    }
    assert manager.storage.registry.git.values_of(wanted[:3]) == {
        n: every[n] for n in wanted[:3] if n in every
    }


def test_update_ref_returns_the_decision_of_the_plan_that_won(storage: ProgramStorage) -> None:
    # The first plan loses the race (main moves under it) and is called again on the new tip:
    # what comes back is what the second call decided, and nothing of the first remains.
    first = storage.save_program({"a": 1})
    repo = storage.registry.git
    tree = git(storage.path, "rev-parse", f"{first.commit}^{{tree}}").strip()
    elsewhere = git(
        storage.path, "commit-tree", tree, "-p", first.commit, "-m", "elsewhere", env=CLI_IDENTITY
    ).strip()
    author, committer = storage.registry.identity()
    seen: list[str] = []

    def plan(tip: Tip | None) -> tuple[CommitPlan | None, str]:
        assert tip is not None
        seen.append(str(tip.id))
        if str(tip.id) == elsewhere:
            return None, "nothing to do on the new tip"
        return CommitPlan({"note": b"x"}, "note\n", author, committer), "commit a note"

    def move_main() -> None:
        repo.before_ref_update = None
        git(storage.path, "update-ref", "refs/heads/main", elsewhere)

    repo.before_ref_update = move_main
    assert repo.update_ref_returning("refs/heads/main", plan) == (
        None,
        "nothing to do on the new tip",
    )
    assert seen == [first.commit, elsewhere]
    assert git(storage.path, "rev-parse", "main").strip() == elsewhere


# -- several refs at once: all or none ----------------------------------------------------


def two_branches(tmp_path: Path) -> tuple[Path, str, str]:
    """A bare repository with branches a and b on one commit, reflogs on; and a second commit."""
    repo = tmp_path / "repo.git"
    git(tmp_path, "init", "-q", "--bare", str(repo))
    git(repo, "config", "core.logAllRefUpdates", "always")
    tree = git(repo, "mktree", input=b"").strip()
    first = git(repo, "commit-tree", tree, "-m", "first", env=CLI_IDENTITY).strip()
    second = git(repo, "commit-tree", tree, "-p", first, "-m", "second", env=CLI_IDENTITY).strip()
    for branch in ("a", "b"):
        git(repo, "update-ref", f"refs/heads/{branch}", first)
    return repo, first, second


def swaps_to(new: str, old: str) -> list[RefSwap]:
    entry = RefLogEntry(Identity("Ref Test", "ref@example.com"), "push")
    return [RefSwap(f"refs/heads/{branch}", old, new, entry) for branch in ("a", "b")]


def test_swapping_several_refs_moves_them_all_and_logs_each(tmp_path: Path) -> None:
    repo, first, second = two_branches(tmp_path)
    assert swap_refs(repo, swaps_to(second, first), durable=True, log_refs="always") == {}
    assert ref_values(repo).split() == ["refs/heads/a", second, "refs/heads/b", second]
    for branch in ("a", "b"):
        assert (
            git(repo, "reflog", "show", "--format=%gs", f"refs/heads/{branch}").split("\n")[0]
            == "push"
        )
    assert_fsck_clean(repo)


def test_a_lock_on_one_ref_moves_none_of_them(tmp_path: Path) -> None:
    repo, first, second = two_branches(tmp_path)
    before = ref_values(repo)
    (repo / "refs/heads/b.lock").write_text("another writer\n")
    reasons = swap_refs(repo, swaps_to(second, first), durable=False, log_refs="always")
    assert list(reasons) == ["refs/heads/b"] and "another Git process" in reasons["refs/heads/b"]
    assert ref_values(repo) == before
    assert not (repo / "refs/heads/a.lock").exists()  # ours is gone, theirs stays
    assert (repo / "refs/heads/b.lock").exists()


def test_a_failed_reflog_write_moves_no_ref_and_leaves_the_reflogs_as_they_were(
    tmp_path: Path,
) -> None:
    repo, first, second = two_branches(tmp_path)
    before = ref_values(repo)
    log_a = (repo / "logs/refs/heads/a").read_bytes()
    (repo / "logs/refs/heads/b").unlink()
    (repo / "logs/refs/heads/b").mkdir()  # appending to it fails as a full disk would
    with pytest.raises(IsADirectoryError):
        swap_refs(repo, swaps_to(second, first), durable=False, log_refs="always")
    assert ref_values(repo) == before
    assert (repo / "logs/refs/heads/a").read_bytes() == log_a
    assert not list(repo.glob("refs/heads/*.lock"))
