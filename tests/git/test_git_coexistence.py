"""progreg's object, pack and ref writes beside Git's own maintenance tools.

A registry is a bare Git repository on which people run ``git gc``, ``git
repack``, ``git prune``, ``git maintenance``, ``git multi-pack-index`` and
``git update-server-info`` while progreg saves. The deterministic tests run
a Git tool at the exact point of progreg's write protocol where it once lost
data (the pack renamed but not its index; the objects written but the ref
not moved yet) through :attr:`GitRepository.before_ref_update` or by wrapping
the rename; the concurrent tests run a progreg process saving, tagging,
checkpointing and importing beside a loop of one Git tool, and check after
each round that every acknowledged call is readable by a fresh ``git
cat-file -e``, that ``git fsck --strict`` is clean and that ``git
multi-pack-index verify`` passes when there is a multi-pack-index.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from progreg import (
    DamagedObjectError,
    ProgramStorage,
    ProgregError,
    RegistryBusyError,
    RegistryError,
    StorageConfig,
    StorageManager,
)
from progreg.git import locking, maintenance, repository
from progreg.git.bundle import unbundle
from progreg.git.pack import packdir, packstore, repack
from progreg.git.repository import GitRepository
from progreg.registry.doctor import diagnose
from progreg.registry.verify import verify_repository
from support.gitcli import assert_fsck_clean, git
from support.workers import WORKERS

if TYPE_CHECKING:
    from support.servers import GitServer

WORKER = WORKERS / "coexistence_worker.py"


def _save(storage: ProgramStorage, i: int) -> str:
    state = {"instructions": f"Answer question {i} briefly. " * 8, "demos": [{"q": i}]}
    return storage.save_program(state, {"score": i / 1000}).commit


def _saves_with_a_pack_each(storage: ProgramStorage, count: int) -> list[str]:
    """``count`` saves, each left in a pack of its own (the open pack closed after it)."""
    commits = []
    for i in range(count):
        commits.append(_save(storage, i))
        storage.registry.git.tail.close()
    return commits


def _exists(path: Path, oid: str) -> bool:
    """Whether a fresh ``git cat-file -e`` finds ``oid``."""
    command = ["git", "-C", os.fspath(path), "cat-file", "-e", oid]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _main(path: Path) -> str:
    return git(path, "rev-parse", "refs/heads/main").strip()


def _pack_dir(storage: ProgramStorage) -> Path:
    return storage.path / "objects" / "pack"


def _assert_git_is_happy(path: Path) -> None:
    """``git fsck --strict`` clean, and ``git multi-pack-index verify`` when there is one."""
    assert_fsck_clean(path)
    if (path / "objects" / "pack" / packdir.MIDX).exists():
        git(path, "multi-pack-index", "verify")


def _run_at_ref_update(git_repository: GitRepository, *tool: str) -> list[int]:
    """Run ``git *tool`` each time ``git_repository`` has written objects, before the ref moves."""
    calls: list[int] = []

    def hook() -> None:
        keeps = list(git_repository.path.glob("objects/pack/pack-*.keep"))
        calls.append(len(keeps))
        git(git_repository.path, *tool)

    git_repository.before_ref_update = hook
    return calls


# -- the windows, one at a time ---------------------------------------------------------


REPACKS = [["repack", "-a", "-d", "-q"], ["repack", "-adk", "-q"], ["gc", "-q"]]


@pytest.mark.parametrize("tool", REPACKS, ids=" ".join)
def test_a_repack_between_the_pack_and_the_ref_loses_nothing(
    storage: ProgramStorage, tool: list[str]
) -> None:
    # The pack holding the new commit is in place, the ref not moved yet: before the keep
    # protocol, git repack -a -d deleted the pack (unreachable) and main pointed at nothing.
    _save(storage, 0)
    calls = _run_at_ref_update(storage.registry.git, *tool)
    commit = _save(storage, 1)
    assert calls == [1]  # the new pack was kept while the tool ran
    assert _exists(storage.path, commit) and _main(storage.path) == commit
    assert not list(_pack_dir(storage).glob("*.keep"))  # released once the ref moved
    _assert_git_is_happy(storage.path)


def test_a_repack_between_the_pack_and_its_index_loses_nothing(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # git repack lists every pack-*.pack, with an index or not, and deletes the unkept ones.
    _save(storage, 0)
    real_replace = os.replace
    ran: list[str] = []

    real_link = os.link

    def run_once(target: str) -> None:
        if str(target).endswith(".pack") and "objects/pack" in str(target) and not ran:
            ran.append(str(target))
            git(storage.path, "repack", "-a", "-d", "-q")

    def replace(source: str, target: str) -> None:
        real_replace(source, target)
        run_once(target)

    def link(source: str, target: str) -> None:  # how packdir.place_pack puts a pack in place
        real_link(source, target)
        run_once(target)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    commit = _save(storage, 1)
    monkeypatch.undo()
    assert ran and _exists(storage.path, commit)
    _assert_git_is_happy(storage.path)


def test_a_merge_that_makes_a_pack_already_there_keeps_its_sources(
    storage: ProgramStorage,
) -> None:
    # Seen under a loop of git repack -a -d: progreg merged the same objects twice into
    # the same pack name X; a git repack that had listed the first X (no keep then) deleted
    # "X" after the second merge had deleted its sources (one of them Git's own output),
    # and every object but the open pack's was gone. A pack that was there already may go
    # with such a repack at any time, so a merge into it keeps its sources.
    commits = _saves_with_a_pack_each(storage, 3)
    sources = {path.name: path.read_bytes() for path in _pack_dir(storage).glob("pack-*")}
    storage.gc()
    [merged] = list(_pack_dir(storage).glob("pack-*.pack"))
    assert len(sources) == 6 and merged.name not in sources
    inode = merged.stat().st_ino
    for name, data in sources.items():  # the same sources once more, as a racing tool left them
        (_pack_dir(storage) / name).write_bytes(data)
    storage.gc()
    assert merged.stat().st_ino == inode  # left in place, not replaced
    assert all((_pack_dir(storage) / name).exists() for name in sources)  # kept
    merged.unlink()  # what the repack that listed the first copy does
    merged.with_suffix(".idx").unlink()
    assert all(_exists(storage.path, commit) for commit in commits)
    _assert_git_is_happy(storage.path)
    storage.gc()  # the sources merge again, into a pack of a name nobody listed
    assert all(_exists(storage.path, commit) for commit in commits)
    _assert_git_is_happy(storage.path)


def test_installing_a_pack_twice_leaves_the_first_in_place(storage: ProgramStorage) -> None:
    data, index, checksum = _a_pack(storage)
    first = packstore.install_pack(_pack_dir(storage), data, index, checksum, durable=False)
    assert not first.existed and first.keep is not None
    first.keep.release()
    inode = first.path.stat().st_ino
    again = packstore.install_pack(_pack_dir(storage), data, index, checksum, durable=False)
    assert again.existed and again.path == first.path
    assert again.path.stat().st_ino == inode  # not replaced: a repack may have listed it
    # and no keep: a repack that listed it unkept deletes it anyway, while its pack-objects
    # would skip the objects of a kept pack
    assert again.keep is None and not list(_pack_dir(storage).glob("*.keep"))
    assert not list(_pack_dir(storage).glob("tmp_*"))


def _a_pack(storage: ProgramStorage) -> tuple[bytes, bytes, bytes]:
    """The bytes, index and checksum of one pack progreg wrote."""
    _save(storage, 0)
    storage.registry.git.tail.close()
    pack = next(_pack_dir(storage).glob("pack-*.pack"))
    data, index = pack.read_bytes(), pack.with_suffix(".idx").read_bytes()
    for suffix in (".pack", ".idx"):
        pack.with_suffix(suffix).chmod(0o644)
        pack.with_suffix(suffix).unlink()
    return data, index, data[-20:]


def test_a_repack_before_a_tag_ref_loses_nothing(registry_path: Path) -> None:
    manager = StorageManager(StorageConfig(storage_path=registry_path))
    saved = manager.storage.save_program({"x": 1})
    calls = _run_at_ref_update(manager.storage.registry.git, "repack", "-a", "-d", "-q")
    assert manager.tag_program(saved.program_id, "reviewed") == ["reviewed"]
    assert calls == [1]
    tag = git(registry_path, "rev-parse", f"refs/tags/reviewed/{saved.program_id}").strip()
    assert _exists(registry_path, tag)
    _assert_git_is_happy(registry_path)


def test_a_repack_during_an_import_loses_nothing(storage: ProgramStorage, tmp_path: Path) -> None:
    source = ProgramStorage(tmp_path / "source")
    for i in range(3):
        source.save_program({"source": i}, tags=["production"])
    bundle = tmp_path / "all.bundle"
    source.export_registry(bundle)
    _save(storage, 0)
    calls = _run_at_ref_update(storage.registry.git, "repack", "-a", "-d", "-q")
    result = storage.import_programs(bundle)
    assert calls and all(count >= 1 for count in calls)  # the bundle's pack was kept
    assert result.commit is not None and _exists(storage.path, result.commit)
    assert len(result.tags_created) == 3
    assert not list(_pack_dir(storage).glob("*.keep"))
    _assert_git_is_happy(storage.path)


def test_an_import_whose_objects_vanish_raises_a_progreg_error(
    storage: ProgramStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What git prune --expire=now or a tool ignoring .keep files would do: the migrated
    # pack disappears before the merge reads it.
    source = ProgramStorage(tmp_path / "source")
    source.save_program({"source": 1})
    bundle = tmp_path / "one.bundle"
    source.export_registry(bundle)
    _save(storage, 0)
    before = _main(storage.path)
    real_migrate = unbundle.IncomingPack.migrate

    def migrate_then_lose(self: unbundle.IncomingPack) -> None:
        real_migrate(self)
        for file in self._files:
            for suffix in (".pack", ".idx", ".keep"):
                (storage.path / "objects" / "pack" / file.name).with_suffix(suffix).unlink(
                    missing_ok=True
                )

    monkeypatch.setattr(unbundle.IncomingPack, "migrate", migrate_then_lose)
    storage.registry.git.forget_packs()
    with pytest.raises(ProgregError) as raised:
        storage.import_programs(bundle)
    assert isinstance(raised.value, DamagedObjectError), raised.value
    assert _main(storage.path) == before


def test_a_save_reusing_an_object_freshens_its_pack(registry_path: Path) -> None:
    manager = StorageManager(StorageConfig(storage_path=registry_path))
    saved = manager.storage.save_program({"x": 1})
    git(registry_path, "repack", "-a", "-d", "-q")
    [pack] = (registry_path / "objects" / "pack").glob("pack-*.pack")
    old = time.time() - 30 * 86400  # older than gc.pruneExpire's two weeks
    os.utime(pack, (old, old))
    manager.tag_program(saved.program_id, "reviewed")  # reuses the commit in that pack
    assert pack.stat().st_mtime > old + 86400


# -- the multi-pack-index, keep and promisor packs --------------------------------------


def test_saves_after_a_multi_pack_index_keep_it_valid(storage: ProgramStorage) -> None:
    for i in range(3):
        _save(storage, i)
    git(storage.path, "multi-pack-index", "write")
    listed = packdir.midx_packs(_pack_dir(storage))
    assert listed and storage.registry.git.tail.path is not None
    assert storage.registry.git.tail.path.stem in listed
    commits = [_save(storage, i) for i in range(3, 8)]
    # The open pack the file lists was not replaced: a new pack was started.
    assert all((_pack_dir(storage) / f"{stem}.pack").exists() for stem in listed)
    assert all(_exists(storage.path, commit) for commit in commits)
    _assert_git_is_happy(storage.path)


@pytest.mark.parametrize("how", ["progreg gc", "automatic merge"])
def test_merges_remove_a_multi_pack_index_that_lists_merged_packs(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(maintenance, "SMALL_PACKS", 3)
    git(storage.path, "config", "gc.auto", "0")  # no automatic merge before the file is written
    storage.registry.git.tail.close()
    _saves_with_a_pack_each(storage, 4)
    git(storage.path, "maintenance", "run", "--task=incremental-repack")
    git(storage.path, "multi-pack-index", "write", "--bitmap")
    assert (_pack_dir(storage) / packdir.MIDX).exists()
    if how == "progreg gc":
        storage.gc()
    else:
        storage.registry.git.tail.close()
        assert maintenance.merge_small_packs(storage.registry.git) is not None
    listed = packdir.midx_packs(_pack_dir(storage))
    assert listed is None or all((_pack_dir(storage) / f"{s}.pack").exists() for s in listed)
    assert not list(_pack_dir(storage).glob("multi-pack-index-*.bitmap")) or listed
    _assert_git_is_happy(storage.path)
    assert diagnose(storage.path, quick=True).ok


def test_packs_with_a_keep_or_promisor_are_never_merged_or_deleted(
    storage: ProgramStorage,
) -> None:
    _save(storage, 0)
    first = storage.registry.git.tail.path
    assert first is not None
    held = first.with_suffix(".keep")
    held.write_text("a person's keep\n")
    _save(storage, 1)  # the open pack is replaced: the kept one stays
    second = storage.registry.git.tail.path
    assert second is not None and second != first and first.exists()
    second.with_suffix(".promisor").write_bytes(b"")
    storage.registry.git.tail.close()
    _save(storage, 2)
    storage.gc()
    assert first.exists() and held.read_text() == "a person's keep\n"
    assert second.exists() and second.with_suffix(".idx").exists()
    _assert_git_is_happy(storage.path)


def test_stale_keeps_of_dead_progreg_writers_are_removed(storage: ProgramStorage) -> None:
    _save(storage, 0)
    pack = storage.registry.git.tail.path
    assert pack is not None
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    keep = packdir.PackKeep.create(str(pack.with_suffix("")))
    assert keep is not None
    keep.path.chmod(0o644)
    host = keep.path.read_text().split()[3]
    keep.path.write_text(f"progreg {dead} on {host}\n")
    live = _pack_dir(storage) / ("pack-" + "ab" * 20 + ".keep")
    live.write_text(f"progreg {os.getpid()} on {host}\n")
    old = time.time() - 2 * maintenance.GARBAGE_AGE
    for path in (keep.path, live):
        os.utime(path, (old, old))
    maintenance.remove_garbage(storage.path / "objects")
    assert not keep.path.exists() and live.exists()


# -- Git's maintenance lock and which copy a multi-pack-index takes ------------------------


def _git_maintenance_lock(storage: ProgramStorage) -> Path:
    return storage.path / "objects" / locking.GIT_MAINTENANCE_LOCK


def _dead_pid() -> int:
    """The id of a process that has ended."""
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def test_git_maintenance_skips_its_run_while_progreg_merges(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen in the loop below: git multi-pack-index expire, working from the file it read
    # at its start, deleted the pack a merge had just made, while the merge deleted the
    # packs the file gave the objects to. A merge now holds Git's own maintenance lock.
    commits = _saves_with_a_pack_each(storage, 3)
    runs: list[subprocess.CompletedProcess[str]] = []
    delete = packdir.delete_packs

    def git_maintenance_then_delete(*args: Any, **kwargs: Any) -> list[Path]:
        command = ["git", "-C", os.fspath(storage.path), "maintenance", "run", "--no-quiet"]
        command.append("--task=incremental-repack")
        runs.append(subprocess.run(command, check=False, capture_output=True, text=True))
        return delete(*args, **kwargs)

    monkeypatch.setattr(f"{repack.__name__}.delete_packs", git_maintenance_then_delete)
    storage.gc()
    [run] = runs
    assert run.returncode == 0 and "skipping maintenance" in run.stderr
    assert not (_pack_dir(storage) / packdir.MIDX).exists()  # it did nothing
    assert not _git_maintenance_lock(storage).exists()  # released
    assert len(list(_pack_dir(storage).glob("pack-*.pack"))) == 1
    assert all(_exists(storage.path, commit) for commit in commits)
    git(storage.path, "maintenance", "run", "--task=incremental-repack")  # its turn now
    _assert_git_is_happy(storage.path)


def test_progreg_leaves_packs_alone_while_git_maintenance_runs(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path, lock_timeout=0.3)
    _save(storage, 0)
    lock = _git_maintenance_lock(storage)
    lock.write_bytes(b"")  # what `git maintenance run` holds while it runs
    commits = [_save(storage, i) for i in range(1, 5)]  # saves go on
    packs = sorted(_pack_dir(storage).glob("pack-*"))
    assert len([p for p in packs if p.suffix == ".pack"]) == 5  # none replaced was deleted
    assert maintenance.merge_small_packs(storage.registry.git, limit=None) is None
    with pytest.raises(RegistryBusyError, match=r"objects/maintenance\.lock"):
        storage.gc()
    assert sorted(_pack_dir(storage).glob("pack-*")) == packs
    assert lock.read_bytes() == b""  # Git's, left to Git
    assert all(_exists(storage.path, commit) for commit in commits)
    lock.unlink()  # the run ended
    storage.gc()
    assert len(list(_pack_dir(storage).glob("pack-*.pack"))) == 1
    _assert_git_is_happy(storage.path)


def test_a_maintenance_lock_a_killed_progreg_left_is_removed(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path, lock_timeout=0.3)
    _saves_with_a_pack_each(storage, 2)
    lock = _git_maintenance_lock(storage)
    host = socket.gethostname()
    lock.write_text(f"progreg {os.getppid()} on {host}\n")  # a live holder: waited for
    with pytest.raises(RegistryBusyError):
        storage.gc()
    lock.write_text(f"progreg {_dead_pid()} on {host}\n")
    storage.gc()
    assert not lock.exists()
    assert len(list(_pack_dir(storage).glob("pack-*.pack"))) == 1
    git(storage.path, "maintenance", "run", "--task=incremental-repack")  # not stopped for good
    assert (_pack_dir(storage) / packdir.MIDX).exists()
    _assert_git_is_happy(storage.path)


def test_a_multi_pack_index_gives_a_merged_pack_the_objects_of_the_packs_it_merged(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # git multi-pack-index write takes each object from the pack modified last, in whole
    # seconds. A merged pack that is not newer than its sources (here they were freshened:
    # a second later, so that no tie can go the merged pack's way by its name) is given no
    # object; an expire that read that file deletes it once the merge deleted the sources.
    commits = _saves_with_a_pack_each(storage, 3)
    later = time.time() + 5
    for pack in _pack_dir(storage).glob("pack-*.pack"):
        os.utime(pack, (later, later))
    midx = _pack_dir(storage) / packdir.MIDX
    read_at_start: list[bytes] = []
    delete = packdir.delete_packs

    def multi_pack_index_then_delete(*args: Any, **kwargs: Any) -> list[Path]:
        git(storage.path, "multi-pack-index", "write")  # lists the merged pack and its sources
        read_at_start.append(midx.read_bytes())
        return delete(*args, **kwargs)

    monkeypatch.setattr(f"{repack.__name__}.delete_packs", multi_pack_index_then_delete)
    storage.gc()
    [merged] = _pack_dir(storage).glob("pack-*.pack")
    assert int(merged.stat().st_mtime) > int(later)
    midx.write_bytes(read_at_start[0])  # an expire that read the file before the deletion
    git(storage.path, "multi-pack-index", "expire")
    assert merged.exists()
    assert all(_exists(storage.path, commit) for commit in commits)
    storage.gc()  # removes the file naming the merged packs
    _assert_git_is_happy(storage.path)


def test_outrank_makes_a_pack_newer_in_whole_seconds(tmp_path: Path) -> None:
    new, old, newer = (tmp_path / name for name in ("new", "old", "newer"))
    for path in (new, old, newer):
        path.write_bytes(b"")
    now = int(time.time())
    os.utime(new, (now, now + 0.9))
    os.utime(old, (now, now + 0.1))  # the same second: not newer
    assert packdir.outrank(new, [old, tmp_path / "gone"])
    assert int(new.stat().st_mtime) == now + 1
    os.utime(newer, (now, now - 10))
    assert packdir.outrank(new, [newer])
    assert int(new.stat().st_mtime) == now + 1  # already newer: unchanged
    assert not packdir.outrank(tmp_path / "missing", [old])


# -- objects/info/packs -------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@contextlib.contextmanager
def _dumb_http(directory: Path) -> Iterator[str]:
    """A plain file server for ``directory`` on 127.0.0.1 (Git's dumb HTTP protocol)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_info_packs_stays_true_and_dumb_http_clones_work(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    _saves_with_a_pack_each(storage, 6)
    git(storage.path, "update-server-info")
    for i in range(6, 9):
        _save(storage, i)
    storage.gc()
    info = (storage.path / "objects" / "info" / "packs").read_text()
    listed = sorted(line[2:] for line in info.splitlines() if line.startswith("P "))
    present = sorted(p.name for p in _pack_dir(storage).glob("pack-*.pack"))
    assert listed == present and info.endswith("\n\n")
    git(storage.path, "update-server-info")  # Git writes the same list
    assert (storage.path / "objects" / "info" / "packs").read_text() == info
    with _dumb_http(storage.path) as url:
        git(tmp_path, "-c", "http.lowSpeedTime=10", "clone", "-q", url, "clone")
    assert git(tmp_path / "clone", "rev-parse", "HEAD").strip() == _main(storage.path)


def test_a_pull_lists_the_pack_it_fetched_for_dumb_http_clients(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    _save(storage, 0)
    git(storage.path, "update-server-info")
    git(tmp_path, "clone", "-q", "--bare", str(storage.path), "other")
    other = ProgramStorage(tmp_path / "other")
    _save(other, 1)
    storage.add_remote("other", str(other.path))
    assert storage.pull("other").commit is not None  # a fetch wrote a pack
    info = (storage.path / "objects" / "info" / "packs").read_text()
    listed = sorted(line[2:] for line in info.splitlines() if line.startswith("P "))
    assert listed == sorted(p.name for p in _pack_dir(storage).glob("pack-*.pack"))
    assert diagnose(storage.path, quick=True).ok


# -- verify and doctor see what git fsck sees ---------------------------------------------


def _problems(storage: ProgramStorage) -> tuple[list[str], list[str]]:
    report = diagnose(storage.path, quick=True)
    verified = verify_repository(GitRepository(storage.path, create=False), 1 << 20)
    return report.problems, [d.message for d in verified.damaged_objects]


def test_verify_and_doctor_see_what_git_fsck_sees(storage: ProgramStorage) -> None:
    _saves_with_a_pack_each(storage, 2)
    git(storage.path, "multi-pack-index", "write")
    saved_midx = (_pack_dir(storage) / packdir.MIDX).read_bytes()
    git(storage.path, "update-server-info")
    saved_info = (storage.path / "objects" / "info" / "packs").read_bytes()
    assert _problems(storage) == ([], [])
    # A pack the file lists is deleted behind its back (as a racing tool could).
    victim = sorted(_pack_dir(storage).glob("pack-*.pack"))[0]
    for suffix in (".pack", ".idx"):
        victim.with_suffix(suffix).unlink()
    storage.registry.git.forget_packs()
    doctor, verify = _problems(storage)
    assert any("multi-pack-index lists" in p and victim.name in p for p in doctor), doctor
    assert any("multi-pack-index lists" in p for p in verify), verify
    assert any("objects/info/packs" in p and victim.name in p for p in doctor), doctor
    assert any("which is gone" in p and "dumb-HTTP" in p for p in verify), verify
    # A pack without its index.
    (_pack_dir(storage) / packdir.MIDX).unlink()
    assert packdir.update_pack_info(storage.path / "objects")  # the victim is left out
    lone = _pack_dir(storage) / ("pack-" + "cd" * 20 + ".pack")
    lone.write_bytes(b"PACK\x00\x00\x00\x02\x00\x00\x00\x00")
    doctor, verify = _problems(storage)
    assert any("without its index" in p for p in doctor), doctor
    assert any("without its index" in p for p in verify), verify
    lone.unlink()
    # A ref pointing at an object that no file holds.
    (storage.path / "refs" / "heads" / "ghost").write_text("12" * 20 + "\n")
    doctor, verify = _problems(storage)
    assert any("refs/heads/ghost" in p for p in doctor), doctor
    assert any("missing" in p for p in verify), verify
    assert saved_midx and saved_info


# -- Git's tools running while progreg writes ------------------------------------------------

#: Every Git tool of the brief, as run beside the writer (``git prune`` with ``git gc``'s
#: expiry: ``--expire=now``, and plain ``git prune``, whose default is now, are unsafe beside
#: any writer, Git's own included; see docs/format.md).
GIT_TOOLS: dict[str, list[str]] = {
    "gc": ["gc", "-q"],
    "repack -a -d": ["repack", "-a", "-d", "-q"],
    "repack -adk": ["repack", "-adk", "-q"],
    "prune --expire=2.weeks.ago": ["prune", "--expire=2.weeks.ago"],
    "maintenance gc": ["maintenance", "run", "--task=gc", "--quiet"],
    "maintenance commit-graph": ["maintenance", "run", "--task=commit-graph", "--quiet"],
    "maintenance prefetch": ["maintenance", "run", "--task=prefetch", "--quiet"],
    "maintenance loose-objects": ["maintenance", "run", "--task=loose-objects", "--quiet"],
    "maintenance incremental-repack": [
        "maintenance",
        "run",
        "--task=incremental-repack",
        "--quiet",
    ],
    "maintenance pack-refs": ["maintenance", "run", "--task=pack-refs", "--quiet"],
    "multi-pack-index write": ["multi-pack-index", "write", "--no-progress"],
    "multi-pack-index write+expire+repack": ["multi-pack-index", "write", "--no-progress"],
    "commit-graph write": ["commit-graph", "write", "--reachable", "--no-progress"],
    "pack-refs --all": ["pack-refs", "--all"],
    "update-server-info": ["update-server-info"],
}
_AFTER = {
    "multi-pack-index write+expire+repack": [
        ["multi-pack-index", "expire", "--no-progress"],
        ["multi-pack-index", "repack", "--batch-size=0", "--no-progress"],
    ]
}


def _bundles(tmp_path: Path, count: int) -> list[str]:
    """``count`` bundles of a registry growing by one program each, for the writer to import."""
    source = ProgramStorage(tmp_path / "bundle-source", durable=False)
    found = []
    for i in range(count):
        source.save_program({"imported": i}, tags=["production"])
        bundle = tmp_path / f"import-{i}.bundle"
        source.export_registry(bundle)
        found.append(str(bundle))
    return found


def _git_loop(path: Path, commands: list[list[str]], until: float) -> tuple[int, int]:
    """Run ``commands`` one after the other until ``until``; (runs, runs that failed)."""
    runs = failed = 0
    while time.monotonic() < until:
        for command in commands:
            result = subprocess.run(
                ["git", "-C", os.fspath(path), *command], capture_output=True, check=False
            )
            runs += 1
            failed += result.returncode != 0  # a lock held by progreg (or Git) at that moment
    return runs, failed


class _Writer:
    """The progreg process of the concurrent tests (``coexistence_worker.py``)."""

    def __init__(self, path: Path, bundles: list[str]) -> None:
        self.path = path
        self.process = subprocess.Popen(
            [sys.executable, os.fspath(WORKER), os.fspath(path), "7", *bundles],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the writer process ended"
        return line.strip()

    def start(self, stop: Path) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{stop}\n")
        self.process.stdin.flush()

    def records(self) -> list[dict[str, object]]:
        """The round's calls, once the writer printed ``done`` (or crashed)."""
        found: list[dict[str, object]] = []
        while (line := self._line()) != "done":
            found.append(json.loads(line))
            if "crash" in found[-1]:
                break
        return found

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.write("\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def _round(writer: _Writer, tool: str, seconds: float) -> dict[str, object]:
    """The writer beside a loop of ``tool`` for ``seconds``; checks, and counts."""
    path = writer.path
    stop = path.parent / f"stop-{tool.replace(' ', '_')}"
    stop.unlink(missing_ok=True)
    writer.start(stop)
    try:
        commands = [GIT_TOOLS[tool], *_AFTER.get(tool, [])]
        runs, failed = _git_loop(path, commands, time.monotonic() + seconds)
    finally:
        stop.touch()  # the writer's last call comes after the tool's last run
    records = writer.records()
    crashes = [str(r["crash"]) for r in records if "crash" in r]
    assert not crashes, "\n".join(crashes)
    acknowledged = [r for r in records if r.get("ok")]
    written = [str(oid) for r in acknowledged for oid in r["objects"]]  # type: ignore[attr-defined]
    missing = [oid for oid in written if not _exists(path, oid)]
    assert not missing, f"{tool}: acknowledged objects missing: {missing}"
    _assert_git_is_happy(path)
    assert diagnose(path, quick=True).ok
    refused = [r for r in records if r.get("ok") is False]
    return {
        "acknowledged": len(acknowledged),
        "refused": len(refused),
        "errors": sorted({f"{r['op']} {r['error']}: {str(r['message'])[:300]}" for r in refused}),
        "git runs": runs,
        "git failed": failed,
    }


def _clones_work(server: GitServer, registry: Path, scratch: Path) -> None:
    """What others do with the registry right after a round works, with nothing refused.

    A dumb-HTTP clone (``git update-server-info`` and a static file server), a
    ``git daemon`` clone that checks every object it fetches, and a push of
    every ref to a server repository with ``receive.fsckObjects=true``.
    """
    main = _main(registry)
    git(registry, "update-server-info")
    with _dumb_http(registry) as url:
        git(scratch, "-c", "http.lowSpeedTime=10", "clone", "-q", url, "dumb")
    assert git(scratch / "dumb", "rev-parse", "HEAD").strip() == main
    mirror = scratch / "mirror.git"
    url = server.url(registry.name)
    git(scratch, "-c", "fetch.fsckObjects=true", "clone", "-q", "--mirror", url, str(mirror))
    target = server.create(f"{scratch.name}-target.git")
    git(target, "config", "receive.fsckObjects", "true")
    git(mirror, "push", "-q", "--mirror", server.url(target.name))
    assert git(target, "rev-parse", "refs/heads/main").strip() == main
    git(target, "fsck", "--strict", "--no-dangling")


def _coexist(tmp_path: Path, server: GitServer, seconds: float) -> None:
    registry = server.root / "registry"  # served by git daemon too
    ProgramStorage(registry).save_program({"first": True})
    bundles = _bundles(tmp_path, 3)
    ProgramStorage(registry).add_remote("origin", str(tmp_path / "bundle-source"))
    writer = _Writer(registry, bundles)
    counts: dict[str, dict[str, object]] = {}
    try:
        for number, tool in enumerate(GIT_TOOLS):
            counts[tool] = _round(writer, tool, seconds)
            scratch = tmp_path / f"after-{number}"
            scratch.mkdir()
            _clones_work(server, registry, scratch)
    finally:
        writer.close()
    print("\nprogreg calls beside each Git tool:")
    for tool, count in counts.items():
        print(f"  {tool:40} {count}")
    assert all(int(count["acknowledged"]) > 1 for count in counts.values())  # type: ignore[call-overload]


def test_progreg_and_git_tools_at_once(tmp_path: Path, git_daemon: GitServer) -> None:
    _coexist(tmp_path, git_daemon, seconds=0.8)


@pytest.mark.slow
def test_progreg_and_git_tools_at_once_for_longer(tmp_path: Path, git_daemon: GitServer) -> None:
    _coexist(tmp_path, git_daemon, seconds=15.0)


#: The tools that delete packs, in the order that once lost a registry (see docs/format.md,
#: "When pack-<sha>.pack exists already"): progreg and Git made packs of the same name.
REPACK_ROUNDS = ["gc", "repack -a -d", "repack -adk"]


@pytest.mark.slow
@pytest.mark.parametrize("registry_number", range(8))
def test_progreg_beside_repeated_repacks_loses_nothing(
    tmp_path: Path, registry_number: int
) -> None:
    # Each round checks every acknowledged call with a fresh git and runs git fsck --strict;
    # before place_pack, about one registry in five lost every object but its open pack.
    registry = tmp_path / f"registry-{registry_number}"
    ProgramStorage(registry).save_program({"first": True})
    bundles = _bundles(tmp_path, 3)
    ProgramStorage(registry).add_remote("origin", str(tmp_path / "bundle-source"))
    writer = _Writer(registry, bundles)
    try:
        for tool in REPACK_ROUNDS * 2:
            _round(writer, tool, 0.8)
    finally:
        writer.close()


def test_a_multi_pack_index_written_across_a_deletion_is_removed(storage: ProgramStorage) -> None:
    # The race Git's own repack -d has: git multi-pack-index write lists the open pack,
    # progreg replaces and deletes it, then git writes its file. Replayed in order: the file
    # is made while the pack exists, held aside while progreg deletes the pack, put back.
    _save(storage, 0)
    old = storage.registry.git.tail.path
    assert old is not None
    midx = _pack_dir(storage) / packdir.MIDX
    aside = storage.path / "midx.aside"

    def list_then_hold_aside() -> None:
        git(storage.path, "multi-pack-index", "write")
        midx.replace(aside)

    storage.registry.git.before_ref_update = list_then_hold_aside
    _save(storage, 1)
    storage.registry.git.before_ref_update = None
    assert not old.exists()  # replaced and deleted: no file listed it then
    aside.replace(midx)  # git's write lands now, naming the deleted pack
    assert old.stem in (packdir.midx_packs(_pack_dir(storage)) or set())
    assert not diagnose(storage.path, quick=True).ok  # what git fsck would say too
    commit = _save(storage, 2)  # the writer sees the file change and removes it
    assert not midx.exists() and _exists(storage.path, commit)
    _assert_git_is_happy(storage.path)


def test_a_write_heals_a_multi_pack_index_naming_deleted_packs(registry_path: Path) -> None:
    # What git multi-pack-index expire leaves for a moment (packs deleted, file not yet
    # rewritten), or a racing midx write for good: every object is in another pack.
    storage = ProgramStorage(registry_path)
    _saves_with_a_pack_each(storage, 2)
    git(registry_path, "multi-pack-index", "write")
    midx = registry_path / "objects" / "pack" / packdir.MIDX
    stale = midx.read_bytes()
    git(registry_path, "repack", "-a", "-d", "-q")  # one new pack; the file is cleared
    midx.write_bytes(stale)
    assert not diagnose(registry_path, quick=True).ok
    fresh = ProgramStorage(registry_path)
    commit = _save(fresh, 2)
    assert _exists(registry_path, commit) and not midx.exists()
    assert fresh.load_program(fresh.list_programs()[0].program_id) is not None
    _assert_git_is_happy(registry_path)


def test_reads_heal_a_multi_pack_index_naming_packs_this_handle_merged(
    storage: ProgramStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen under a `git multi-pack-index write` loop: the file lists packs that progreg's
    # gc merged and deleted a moment later. libgit2 trusts the file for every pack its
    # handle still knows (a handle keeps deleted packs in its list), and misses their
    # objects although the merged pack has them; Git itself looks in the other packs.
    monkeypatch.setattr(repository, "PACKS_CHECK_SECONDS", 3600.0)  # no timed reopen
    ids = []
    for i in range(3):  # three packs, that no handle of this process opens for reading
        ids.append(storage.save_program({"instructions": f"Answer {i}"}).program_id)
        storage.registry.git.tail.close()
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(storage.path), str(origin))
    late = ProgramStorage(origin).save_program({"late": True})
    storage.add_remote("origin", str(origin))
    git(storage.path, "multi-pack-index", "write")
    midx = _pack_dir(storage) / packdir.MIDX
    listed = midx.read_bytes()
    midx.unlink()
    reader = ProgramStorage(storage.path)  # knows every pack, has read few of them
    # Another process merges them into one and deletes them.
    code = "import sys, progreg; progreg.ProgramStorage(sys.argv[1]).gc()"
    subprocess.run([sys.executable, "-c", code, os.fspath(storage.path)], check=True)
    midx.write_bytes(listed)  # git's write lands now, naming the deleted packs
    for program_id in ids:
        assert reader.load_program(program_id) is not None
    assert not midx.exists()
    midx.write_bytes(listed)  # and once more, before a pull
    reader = ProgramStorage(storage.path)
    pulled = reader.pull("origin")  # new objects: the handle looks at the packs again
    assert pulled.added == [late.program_id]
    assert [s.program_id for s in reader.list_programs()] == [*ids, late.program_id]
    _assert_git_is_happy(storage.path)


def test_git_prune_now_during_a_write_fails_it_cleanly(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # git prune --expire=now (and plain git prune) deletes tmp_* files of any age: unsafe
    # beside any writer (docs/format.md). progreg's write then fails and changes nothing.
    _save(storage, 0)
    before = _main(storage.path)
    real_write = packstore._write

    def write_then_prune(path: str, content: bytes, durable: bool) -> None:
        real_write(path, content, durable)
        if os.path.basename(path).startswith("tmp_idx_"):
            git(storage.path, "prune", "--expire=now")

    monkeypatch.setattr(packstore, "_write", write_then_prune)
    with pytest.raises(RegistryError):
        _save(storage, 1)
    monkeypatch.undo()
    assert _main(storage.path) == before
    assert not list(_pack_dir(storage).glob("tmp_*")) and not list(
        _pack_dir(storage).glob("*.keep")
    )
    _save(storage, 2)
    _assert_git_is_happy(storage.path)


def test_progreg_gc_lists_the_packs_again_when_git_repacks_under_it(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack progreg gc was about to merge is deleted by git repack: gc still succeeds."""
    commits = _saves_with_a_pack_each(storage, 6)
    real_merge = maintenance._merge
    repacked: list[int] = []

    def merge_after_a_git_repack(*args: Any, **kwargs: Any) -> Any:
        if not repacked:  # the first time: Git's repack takes the packs progreg listed
            git(storage.path, "repack", "-a", "-d", "-q")
            repacked.append(1)
        return real_merge(*args, **kwargs)

    monkeypatch.setattr(maintenance, "_merge", merge_after_a_git_repack)
    report = storage.gc()
    assert repacked and report.packs_after == 1
    _assert_git_is_happy(storage.path)
    assert all(_exists(storage.path, commit) for commit in commits)
    assert len(storage.list_programs()) == 6
