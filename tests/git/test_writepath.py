"""The write path: trees and commits as libgit2 makes them, packs, refs, durability."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pygit2
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pygit2.enums import FileMode

from progreg import InvalidInputError, ProgramStorage, RegistryError, StorageConfig, StorageManager
from progreg.cli.main import cli
from progreg.core.ids import program_path
from progreg.git.objects.encoding import OBJ_TREE, object_id, parse_tree
from progreg.git.objects.trees import NewTrees, RawTree, edit_tree
from progreg.git.pack import packstore, tailpack
from progreg.git.repository import STALE_PACKS
from support.gitcli import assert_fsck_clean, git, registry_state


def _save(storage: ProgramStorage, i: int) -> str:
    return storage.save_program({"instructions": f"Version {i}. " * 30}, {"score": i}).program_id


# -- trees and commits are the ones libgit2 would make ------------------------------------

_NAMES = st.sampled_from(["a", "b", "a.json", "a-b", "ab", "z", "0"])
_PATHS = st.lists(_NAMES, min_size=1, max_size=3).map("/".join)


def _libgit2_tree(repo: pygit2.Repository, files: dict[str, bytes]) -> pygit2.Oid:
    """The tree of ``files`` built with libgit2's TreeBuilder, one directory at a time."""
    children: dict[str, dict[str, bytes]] = {}
    builder = repo.TreeBuilder()
    for path, data in files.items():
        head, _, rest = path.partition("/")
        if rest:
            children.setdefault(head, {})[rest] = data
        else:
            builder.insert(head, repo.create_blob(data), FileMode.BLOB)
    for name, below in children.items():
        builder.insert(name, _libgit2_tree(repo, below), FileMode.TREE)
    return builder.write()


def _consistent(files: dict[str, bytes]) -> dict[str, bytes]:
    """Drop paths that would need a file and a directory of the same name."""
    kept: dict[str, bytes] = {}
    for path in sorted(files, key=len):
        if not _below(path, kept) and not any(other.startswith(path + "/") for other in kept):
            kept[path] = files[path]
    return kept


def _below(path: str, files: dict[str, bytes]) -> bool:
    """Whether a file of ``files`` is a directory of ``path``."""
    parts = path.split("/")
    return any("/".join(parts[:n]) in files for n in range(1, len(parts)))


def _apply(files: dict[str, bytes], changes: dict[str, bytes | None]) -> dict[str, bytes]:
    """What editing ``files`` means: a path set replaces whatever was there or above it
    (a file where a directory is needed), a path removed takes what is below it along."""
    result = dict(files)
    for path, data in changes.items():
        if data is None and _below(path, result):
            continue  # nothing can be there
        gone = [key for key in result if key == path or key.startswith(path + "/")]
        if data is not None:
            parts = path.split("/")
            gone += ["/".join(parts[:n]) for n in range(1, len(parts))]
        for key in gone:
            result.pop(key, None)
        if data is not None:
            result[path] = data
    return result


@settings(max_examples=80, deadline=None)
@given(
    base=st.dictionaries(_PATHS, st.binary(max_size=8), max_size=8),
    changes=st.dictionaries(_PATHS, st.one_of(st.none(), st.binary(max_size=8)), max_size=6),
)
def test_edited_trees_are_those_libgit2_builds(
    tmp_path_factory: pytest.TempPathFactory,
    base: dict[str, bytes],
    changes: dict[str, bytes | None],
) -> None:
    if any(a != b and b.startswith(a + "/") for a in changes for b in changes):
        return  # one change inside another: not an edit progreg makes
    repo = pygit2.init_repository(str(tmp_path_factory.mktemp("trees")), bare=True)
    base = _consistent(base)
    expected = _apply(base, changes)
    base_tree = _libgit2_tree(repo, base).raw if base else None

    def read(oid: bytes) -> RawTree:
        return RawTree.of(parse_tree(repo.odb.read(pygit2.Oid(raw=oid))[1]))

    edits = {
        path: (None if data is None else repo.create_blob(data).raw)
        for path, data in changes.items()
    }
    new: NewTrees = []
    root = edit_tree(read, base_tree, edits, new)
    want = _libgit2_tree(repo, expected) if expected else None
    assert (root is None) == (want is None)
    if want is not None:
        assert root == want.raw
    for oid, data, tree in new:
        assert object_id(OBJ_TREE, data) == oid
        assert tree is not None and tree.encode() == data
    unparsed: NewTrees = []  # as a large edit makes them: the same trees, fewer kept parsed
    assert edit_tree(read, base_tree, edits, unparsed, parsed=False) == root
    assert [(oid, data) for oid, data, _ in unparsed] == [(oid, data) for oid, data, _ in new]
    if unparsed:  # the root is written last: kept parsed when an edit went below it
        assert (unparsed[-1][2] is not None) == any("/" in path for path in changes)


def test_commits_are_those_libgit2_writes(storage: ProgramStorage) -> None:
    for i in range(3):
        _save(storage, i)
    repo = storage.registry.git.repo
    for commit in storage.registry.git.walk("refs/heads/main"):
        again = repo.create_commit(
            None,
            commit.author,
            commit.committer,
            commit.message,
            commit.tree_id,
            [parent.id for parent in commit.parents],
        )
        assert again == commit.id


# -- packs ----------------------------------------------------------------------------------


def test_a_batch_too_large_for_the_open_pack_gets_a_pack_of_its_own(
    storage: ProgramStorage,
) -> None:
    _save(storage, 0)
    open_pack = storage.registry.git.tail.path
    storage.save_programs([({"n": i}, None, None) for i in range(tailpack.MAX_OBJECTS)])
    packs = sorted((storage.path / "objects" / "pack").glob("*.pack"))
    assert open_pack in packs and len(packs) == 2
    assert storage.registry.git.tail.path == open_pack  # still open for the next save
    assert len(storage.list_programs()) == tailpack.MAX_OBJECTS + 1
    assert_fsck_clean(storage.path)


def test_a_failed_pack_write_changes_nothing(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [_save(storage, i) for i in range(3)]
    before = registry_state(storage.path)
    original = packstore._write
    pack_dir = storage.path / "objects" / "pack"
    files_before = sorted(os.listdir(pack_dir))

    def disk_full(path: str, content: bytes, durable: bool) -> None:
        if os.path.basename(path).startswith("tmp_idx_"):  # the pack is written, not its index
            raise OSError(28, "No space left on device")
        original(path, content, durable)

    monkeypatch.setattr(packstore, "_write", disk_full)
    with pytest.raises(RegistryError, match="No space left"):
        _save(storage, 3)
    assert registry_state(storage.path) == before
    assert sorted(os.listdir(pack_dir)) == files_before  # no temporary file, no keep left
    monkeypatch.setattr(packstore, "_write", original)
    ids.append(_save(storage, 4))  # the open pack is as it was: the next save works
    assert_fsck_clean(storage.path)
    assert {p.program_id for p in ProgramStorage(storage.path).list_programs()} == set(ids)


# -- moving main ------------------------------------------------------------------------------


def test_main_moves_when_only_packed_refs_hold_it(storage: ProgramStorage) -> None:
    _save(storage, 0)
    git(storage.path, "pack-refs", "--all")
    assert not (storage.path / "refs" / "heads" / "main").exists()
    second = _save(storage, 1)
    assert (storage.path / "refs" / "heads" / "main").read_text().strip() == git(
        storage.path, "rev-parse", "main"
    ).strip()
    assert ProgramStorage(storage.path).load_program(second) is not None
    assert_fsck_clean(storage.path)


def test_a_reflog_is_kept_when_git_would_keep_one(storage: ProgramStorage) -> None:
    _save(storage, 0)
    git(storage.path, "config", "core.logAllRefUpdates", "true")
    _save(storage, 1)
    _save(storage, 2)
    entries = git(storage.path, "reflog", "show", "--format=%H", "refs/heads/main").split()
    assert entries[0] == git(storage.path, "rev-parse", "main").strip()
    assert len(entries) == 2
    assert_fsck_clean(storage.path)


def test_a_ref_lock_held_by_git_is_respected(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path, lock_timeout=0.3)
    _save(storage, 0)
    lock = registry_path / "refs" / "heads" / "main.lock"
    lock.write_text("")  # another Git process is updating main
    before = registry_state(registry_path)
    with pytest.raises(RegistryError, match=r"main\.lock"):
        _save(storage, 1)
    refs, head, _, _ = registry_state(registry_path)
    assert (refs, head) == before[:2]
    assert lock.exists()  # never removed: it is not ours
    lock.unlink()
    _save(storage, 2)
    assert_fsck_clean(registry_path)


# -- durability -------------------------------------------------------------------------------


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the files and directories fsynced, in order (the real fsync runs)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file a descriptor is")
    paths: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def _flushed(synced: list[str], prefix: str) -> int:
    """Where the one file named ``prefix...`` was flushed in ``synced``."""
    found = [n for n, p in enumerate(synced) if os.path.basename(p).startswith(prefix)]
    assert len(found) == 1, synced
    return found[0]


def test_a_durable_save_flushes_its_objects_then_the_ref(
    storage: ProgramStorage, synced: list[str]
) -> None:
    assert storage.registry.git.durable  # the default
    _save(storage, 0)
    synced.clear()
    _save(storage, 1)
    pack = storage.registry.git.tail.path
    assert pack is not None
    pack_dir = str(pack.parent)
    ref = str(storage.path / "refs" / "heads" / "main")
    # Git's protocol: pack and index flushed under temporary names, renamed, the directory
    # flushed; all of it before the ref.
    pack_write = _flushed(synced, "tmp_pack_")
    index_write = _flushed(synced, "tmp_idx_")
    assert pack_dir in synced
    ref_flush = synced.index(ref + ".lock")  # flushed before the rename that publishes it
    assert pack_write < index_write < synced.index(pack_dir) < ref_flush
    assert synced[ref_flush + 1] == str(storage.path / "refs" / "heads")


def test_a_tag_added_later_is_a_flushed_pack_and_ref(
    registry_path: Path, synced: list[str]
) -> None:
    manager = StorageManager(StorageConfig(storage_path=registry_path))
    saved = manager.storage.save_program({"x": 1})
    synced.clear()
    assert manager.tag_program(saved.program_id, "reviewed") == ["reviewed"]
    tag_ref = registry_path / "refs" / "tags" / "reviewed" / saved.program_id
    pack = manager.storage.registry.git.tail.path
    assert pack is not None
    assert _flushed(synced, "tmp_pack_") < synced.index(str(tag_ref) + ".lock")
    assert synced.index(str(pack.parent)) < synced.index(str(tag_ref) + ".lock")
    assert not list(registry_path.glob("objects/[0-9a-f][0-9a-f]/*"))  # nothing loose
    tag = git(registry_path, "rev-parse", f"refs/tags/reviewed/{saved.program_id}").strip()
    assert git(registry_path, "cat-file", "-t", tag).strip() == "tag"
    assert manager.tag_program(saved.program_id, "reviewed") == []  # already there
    assert_fsck_clean(registry_path)


def test_tags_deletes_and_imports_are_durable(
    tmp_path: Path, storage: ProgramStorage, synced: list[str]
) -> None:
    saved = storage.save_program({"x": 1}, tags=["production"])
    tag_ref = storage.path / "refs" / "tags" / "production" / saved.program_id
    tag_flush = synced.index(str(tag_ref) + ".lock")  # flushed before the rename
    assert str(tag_ref.parent) in synced[tag_flush:]  # then the rename itself
    tag = git(storage.path, "rev-parse", f"refs/tags/production/{saved.program_id}").strip()
    pack = storage.registry.git.tail.path  # the tag object went into the save's pack, flushed first
    assert pack is not None and _flushed(synced[:tag_flush], "tmp_pack_") >= 0
    assert tag in git(storage.path, "show-index", input=pack.with_suffix(".idx").read_bytes())
    synced.clear()
    assert storage.delete_program(saved.program_id)
    assert str(storage.path / "refs" / "heads") in synced

    other = ProgramStorage(tmp_path / "other", durable=False)
    other.save_program({"y": 2})
    other.export_registry(tmp_path / "all.bundle")
    target = ProgramStorage(tmp_path / "target")
    synced.clear()
    target.import_programs(tmp_path / "all.bundle")
    main = str(target.path / "refs" / "heads" / "main")
    imported = [p for p in synced if p.endswith(".pack") and "pack-" in p]
    assert imported and synced.index(imported[0]) < synced.index(main + ".lock")


def test_without_durability_a_save_flushes_nothing(registry_path: Path, synced: list[str]) -> None:
    storage = ProgramStorage(registry_path, durable=False)
    for i in range(5):
        _save(storage, i)
    assert synced == []


def test_durability_setting_precedence(
    registry_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ProgramStorage(registry_path).registry.git.durable
    git(registry_path, "config", "progreg.durable", "false")
    assert not ProgramStorage(registry_path).registry.git.durable
    monkeypatch.setenv("PROGREG_DURABLE", "1")
    assert ProgramStorage(registry_path).registry.git.durable  # the environment over Git config
    assert not ProgramStorage(
        registry_path, durable=False
    ).registry.git.durable  # the argument first
    monkeypatch.setenv("PROGREG_DURABLE", "sometimes")
    with pytest.raises(InvalidInputError, match="PROGREG_DURABLE"):
        ProgramStorage(registry_path)
    monkeypatch.delenv("PROGREG_DURABLE")
    git(registry_path, "config", "progreg.durable", "maybe")
    with pytest.raises(InvalidInputError, match=r"progreg\.durable"):
        ProgramStorage(registry_path)
    git(registry_path, "config", "--unset", "progreg.durable")
    config = StorageConfig(storage_path=registry_path, durable=False)
    assert not StorageManager(config).storage.registry.git.durable
    monkeypatch.setenv("PROGREG_DURABLE", "no")
    assert StorageConfig(storage_path=registry_path).durable is False


def test_the_command_line_turns_durability_off(registry_path: Path, synced: list[str]) -> None:
    ProgramStorage(registry_path).save_program({"x": 1})
    runner = CliRunner()
    synced.clear()
    result = runner.invoke(cli, ["--registry", str(registry_path), "--no-durable", "gc"])
    assert result.exit_code == 0, result.output
    program = registry_path.parent / "program.json"
    program.write_text('{"instructions": "hi"}')
    synced.clear()
    result = runner.invoke(
        cli, ["--registry", str(registry_path), "--no-durable", "save", str(program)]
    )
    assert result.exit_code == 0, result.output
    assert synced == []
    result = runner.invoke(cli, ["--registry", str(registry_path), "save", str(program)])
    assert result.exit_code == 0, result.output
    assert synced


def test_packs_replaced_by_later_saves_are_not_kept_mapped(registry_path: Path) -> None:
    """A long run of saves keeps a bounded number of deleted packs mapped, even without GC."""
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs /proc to list the process's mappings")
    storage = ProgramStorage(registry_path, durable=False)
    collecting = gc.isenabled()
    gc.disable()  # pygit2 handles are in reference cycles: what a late collection would hide
    try:
        for i in range(300):  # each save replaces the open pack and deletes the one before
            storage.save_program({"instructions": f"program {i} " * 40})
        pack_dir = str(registry_path / "objects" / "pack")
        held = [line for line in maps.read_text().splitlines() if pack_dir in line]
        deleted = [line for line in held if line.endswith("(deleted)")]
    finally:
        if collecting:
            gc.enable()
    assert len(deleted) <= 2 * STALE_PACKS, len(deleted)  # about 2 per save when handles leak


# -- the tip a plan starts from -------------------------------------------------------------


def test_plan_tip_matches_git_whoever_moved_the_ref(tmp_path: Path) -> None:
    """A plan's tip has the ids ``git`` reports, whether this handle, git or nobody wrote it."""
    storage = ProgramStorage(tmp_path / "reg")
    repo = storage.registry.git
    assert repo.plan_tip("refs/heads/main") is None
    first = _save(storage, 1)
    second = _save(storage, 2)

    def ids_by_git() -> tuple[str, str]:
        commit, tree = git(storage.path, "log", "-1", "--format=%H %T", "main").split()
        return commit, tree

    tip = repo.plan_tip("refs/heads/main")  # a commit this handle wrote: known without a lookup
    assert tip is not None
    assert (str(tip.id), str(tip.tree_id)) == ids_by_git()
    assert tip.commit.tree_id == tip.tree_id  # looked up on demand
    assert tip.tree.id == tip.tree_id
    assert repo.has_path(tip, program_path(second))

    # moved by another writer (git) to a commit this handle did not just write
    git(storage.path, "update-ref", "refs/heads/main", "main~1")
    tip = repo.plan_tip("refs/heads/main")
    assert tip is not None
    assert (str(tip.id), str(tip.tree_id)) == ids_by_git()
    assert repo.has_path(tip, program_path(first))
    assert not repo.has_path(tip, program_path(second))

    # a symbolic ref is read through libgit2
    git(storage.path, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    alias = repo.plan_tip("refs/heads/alias")
    assert alias is not None
    assert (str(alias.id), str(alias.tree_id)) == ids_by_git()

    # the next save starts from the tip git left
    _save(storage, 3)
    assert git(storage.path, "log", "-1", "--format=%P", "main").split() == [str(tip.id)]
    assert_fsck_clean(storage.path)
