"""Repository maintenance without the ``git`` binary: few packs, no loose objects.

A save writes its objects as one small pack (see
:mod:`progreg.git.pack.packstore`); other writers (libgit2 for tags, plain
``git``) write loose objects. This module keeps both in check:

- :func:`merge_small_packs` merges packs of similar size, size-tiered: packs
  have a *level* by object count (below :data:`LEVEL_BASE` objects level 0,
  then one level per factor :data:`LEVEL_FACTOR`); when level 0 holds
  :data:`SMALL_PACKS` packs, or a higher level :data:`LEVEL_FACTOR`, they
  are merged (with every smaller pack) by :func:`~progreg.git.pack.repack.merge_packs`,
  so each object is copied about once per level and the number of packs
  stays small. Automatic merges stop at :data:`AUTO_MERGE_LIMIT` objects, to
  bound the pause; ``progreg gc`` merges everything;
- :func:`pack_loose_objects` (``progreg gc``) writes every loose object into
  one new pack (moved into ``objects/pack`` atomically: temporary name,
  fsync, rename, index last), checks that libgit2 reads every object from
  it, deletes the loose copies only then, and merges all packs into one;
- :func:`auto_maintenance` is what the storage layer calls after a save,
  once the write lock is released: at most one merge of small packs, and,
  once every :data:`CHECK_EVERY` saves, packing of loose objects when their
  estimate passes ``gc.auto`` (default 6700, 0 disables both).

Concurrency: merges hold ``progreg-maintenance.lock`` (an ``flock``; an
automatic merge that finds it taken does nothing), never the write lock, so
saves go on meanwhile. A merge only deletes packs after the pack replacing
them is in place and checked; objects are immutable and content-addressed,
so a reader that misses an object in a deleted pack finds it in the new one
(libgit2 and Git look for new packs on a miss). Packing loose objects runs
under the write lock; only the loose files seen by its initial scan are ever
deleted, and only once the same object reads back from a pack.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2

from progreg import events
from progreg.errors import RegistryBusyError
from progreg.git.bundle import format as bundle
from progreg.git.failures import write_failure
from progreg.git.locking import git_maintenance_lock, write_lock
from progreg.git.objects.encoding import OBJ_COMMIT, TYPE_NAMES, object_id
from progreg.git.pack import format as packs
from progreg.git.pack.objectread import packed_odb
from progreg.git.pack.packdir import PackKeep, heal_midx, place_pack, stale_keeps, update_pack_info
from progreg.git.pack.repack import PackInfo, PackMerge, index_count, merge_packs
from progreg.git.permissions import FILE_MODE, READ_ONLY_MODE, adjust_fd, set_created_mode
from progreg.git.refs import refpack
from progreg.git.repository import GitRepository
from progreg.git.settings import repository_settings

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: ``git gc --auto``'s default threshold of loose objects (``gc.auto``).
DEFAULT_AUTO_THRESHOLD = 6700
#: Automatic maintenance looks for loose objects on the first save of a process
#: and then once every this many saves.
CHECK_EVERY = 256
#: Packs of fewer objects than this are level 0 (a save's own pack has about 6).
LEVEL_BASE = 64
#: Each level holds packs this many times larger than the level below; this
#: many packs of one level are merged into one of the next.
LEVEL_FACTOR = 8
#: Level-0 packs are merged once there are this many.
SMALL_PACKS = 16
#: Saves look at the packs when theirs left one behind, and once every this many saves
#: (for the packs of other writers).
LOOK_EVERY = 16
#: Automatic merges of more objects than this are left to ``progreg gc``.
AUTO_MERGE_LIMIT = 200_000
#: The file whose ``flock`` merges hold, next to ``progreg.lock``.
MAINTENANCE_LOCK = "progreg-maintenance.lock"
#: Temporary and orphaned files of ``objects/pack`` older than this are removed.
GARBAGE_AGE = 3600.0
#: The fan-out directory sampled by :func:`loose_object_estimate` (as Git does).
_SAMPLE_DIR = "17"
_KIND_BY_NAME = {name: kind for kind, name in TYPE_NAMES.items()}


@dataclass(frozen=True)
class PackReport:
    """What one maintenance run did; sizes are bytes under ``objects/``."""

    objects_packed: int
    loose_removed: int
    packs_before: int
    packs_after: int
    packs_consolidated: int
    size_before: int
    size_after: int
    seconds: float
    pack: str | None


# -- looking at the object directory ------------------------------------------------


def _objects_dir(repo_path: str | os.PathLike[str]) -> Path:
    return Path(repo_path) / "objects"


def _loose_files(objects_dir: Path) -> dict[bytes, Path]:
    """Every loose object file: ``{raw id: path}``."""
    found: dict[bytes, Path] = {}
    with contextlib.suppress(FileNotFoundError), os.scandir(objects_dir) as top:
        for fan in top:
            if len(fan.name) != 2 or not fan.is_dir():
                continue
            try:
                prefix = bytes.fromhex(fan.name)
            except ValueError:
                continue
            with os.scandir(fan.path) as entries:
                for entry in entries:
                    if len(entry.name) != 38:
                        continue  # temporary files of a concurrent writer
                    try:
                        found[prefix + bytes.fromhex(entry.name)] = Path(entry.path)
                    except ValueError:
                        continue
    return found


def _pack_files(objects_dir: Path) -> list[Path]:
    pack_dir = objects_dir / "pack"
    if not pack_dir.is_dir():
        return []
    return sorted(p for p in pack_dir.glob("pack-*.pack") if p.with_suffix(".idx").is_file())


def _size(objects_dir: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(objects_dir):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def loose_object_estimate(repo_path: str | os.PathLike[str]) -> int:
    """About how many loose objects there are: one fan-out directory's count times 256.

    One directory listing, like ``git gc --auto``; ids are uniformly spread.
    """
    try:
        with os.scandir(_objects_dir(repo_path) / _SAMPLE_DIR) as entries:
            count = sum(1 for entry in entries if len(entry.name) == 38)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return count * 256


def _loose_kind(path: Path) -> int | None:
    """The type of a loose object, from the start of its header."""
    try:
        with open(path, "rb") as handle:
            head = zlib.decompressobj().decompress(handle.read(64), 16)
    except (OSError, zlib.error):
        return None
    return _KIND_BY_NAME.get(head.split(b" ", 1)[0])


# -- writing a pack -------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_pack(
    repo: pygit2.Repository, pack_dir: Path, wanted: set[bytes], commits: Iterable[bytes]
) -> tuple[Path, int, PackKeep | None, bool]:
    """Write ``wanted`` as one pack plus index into ``pack_dir``, kept (see packstore).

    Returns the pack, its count, the keep to release once done, and whether
    the same pack was there already (:func:`~progreg.git.pack.packdir.place_pack`).
    """
    pack_dir.mkdir(parents=True, exist_ok=True)
    keep: PackKeep | None = None
    fd, temporary = tempfile.mkstemp(dir=pack_dir, prefix="tmp_pack_")
    index_fd, index_temporary = tempfile.mkstemp(dir=pack_dir, prefix="tmp_idx_")
    try:
        with os.fdopen(fd, "w+b") as out:
            writer = packs.PackWriter(out)
            bundle.write_objects(repo, wanted, commits, writer)
            checksum = writer.finish()
            out.flush()
            os.fsync(out.fileno())
            out.seek(0)
            pack_data = out.read()
        with os.fdopen(index_fd, "wb") as index_out:
            packs.write_index(index_out, _index_entries(writer.offsets, pack_data), checksum)
            index_out.flush()
            os.fsync(index_out.fileno())
        name = f"pack-{checksum.hex()}"
        final = pack_dir / f"{name}.pack"
        shared = repository_settings(pack_dir.parent.parent).shared
        for path in (temporary, index_temporary):
            set_created_mode(path, READ_ONLY_MODE, shared)  # as Git's packs, see permissions
        # The keep before git repack can list it, the pack first, the index last.
        keep, existed = place_pack(temporary, index_temporary, final)
        _fsync_dir(pack_dir)
        return final, writer.count, keep, existed
    except BaseException:
        for path in (temporary, index_temporary):
            with contextlib.suppress(OSError):
                os.unlink(path)
        if keep is not None:
            keep.release()
        raise


def _index_entries(offsets: dict[bytes, int], pack_data: bytes) -> list[packs.IndexEntry]:
    """Index entries of a pack just written: its offsets, and each entry's CRC-32."""
    ordered = sorted(offsets.items(), key=lambda item: item[1])
    ends = [offset for _, offset in ordered[1:]] + [len(pack_data) - 20]
    view = memoryview(pack_data)
    return [
        packs.IndexEntry(oid, offset, zlib.crc32(view[offset:end]))
        for (oid, offset), end in zip(ordered, ends, strict=True)
    ]


def _verify(objects_dir: Path, expected: Iterable[bytes]) -> None:
    """Every id in ``expected`` reads back from the packs, with the right id."""
    odb = packed_odb(objects_dir)
    for oid in expected:
        kind, data = odb.read(pygit2.Oid(raw=oid))
        if object_id(int(kind), data) != oid:
            raise OSError(f"object {oid.hex()} reads back wrong from the new pack")


def _remove_loose(files: Iterable[Path]) -> int:
    removed = 0
    directories = set()
    for path in files:
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        directories.add(path.parent)
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only when empty
    return removed


# -- the operations -------------------------------------------------------------------


def _config_int(repo: pygit2.Repository, key: str, default: int) -> int:
    try:
        return int(repo.config.get_int(key)) if key in repo.config else default
    except (pygit2.GitError, ValueError):
        return default


@contextlib.contextmanager
def maintenance_lock(gitdir: Path, timeout: float | None) -> Iterator[bool]:
    """Hold ``progreg-maintenance.lock``, then Git's ``objects/maintenance.lock``; yield
    whether both were taken.

    ``timeout=None`` does not wait: the block runs with ``False`` when another
    process (or thread) holds either lock. Git's lock keeps ``git maintenance
    run`` from deleting packs while progreg merges them, and the other way round
    (:func:`~progreg.git.locking.git_maintenance_lock`).
    """
    path = gitdir / MAINTENANCE_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise write_failure(gitdir, exc, f"open the maintenance lock {path}") from exc
    try:
        with contextlib.suppress(PermissionError):  # another user's lock file: theirs to fix
            adjust_fd(fd, repository_settings(gitdir).shared)
        taken = _take(fd, path, timeout)
        try:
            if not taken:
                yield False
                return
            with contextlib.ExitStack() as held:
                try:
                    git_lock = git_maintenance_lock(_objects_dir(gitdir), timeout)
                    git_taken = held.enter_context(git_lock)
                except OSError as exc:
                    raise write_failure(gitdir, exc, "take Git's maintenance lock") from exc
                yield git_taken
        finally:
            if taken and fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _take(fd: int, path: Path, timeout: float | None) -> bool:
    if fcntl is None:  # pragma: no cover - Windows: merges are left to `progreg gc`
        return timeout is not None
    deadline = time.monotonic() + (timeout or 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if timeout is None:
                return False
            if time.monotonic() >= deadline:
                raise RegistryBusyError(
                    f"another process has been maintaining the registry ({path}) for more than"
                    f" {timeout:g} s; retry later"
                ) from None
            time.sleep(0.05)


def list_packs(
    objects_dir: Path, known: dict[str, PackInfo] | None = None, skip: str | None = None
) -> list[PackInfo]:
    """The packs that may be merged (those with an index and no ``.keep``), with their sizes.

    ``known`` caches what was learnt of each pack by name (packs never change);
    the pack named ``skip`` (a writer's open pack) is left out.
    """
    pack_dir = os.path.join(objects_dir, "pack")
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not name.startswith("pack-") or not name.endswith(".idx"):
            continue
        stem = name[:-4]
        if stem + ".pack" not in names or stem + ".pack" == skip:
            continue
        if stem + ".keep" in names or stem + ".promisor" in names:
            continue  # held by a writer or a person, or a partial clone's: never merged
        info = known.get(stem) if known is not None else None
        if info is None:
            try:
                info = PackInfo(Path(pack_dir, stem + ".pack"), index_count(Path(pack_dir, name)))
            except OSError:
                continue  # removed meanwhile, or not an index we read
            if known is not None:
                known[stem] = info
        found.append(info)
    if known is not None and len(known) > 4 * len(found) + 64:
        for stem in [stem for stem in known if stem + ".idx" not in names]:
            del known[stem]
    return found


def level(objects: int) -> int:
    """The level of a pack of ``objects`` objects (see the module)."""
    result = 0
    size = LEVEL_BASE
    while objects >= size:
        result += 1
        size *= LEVEL_FACTOR
    return result


def choose_merge(
    packs_found: list[PackInfo], limit: int | None = AUTO_MERGE_LIMIT
) -> list[PackInfo]:
    """The packs the next automatic merge takes, or ``[]``.

    The lowest level that is full (:data:`SMALL_PACKS` packs at level 0,
    :data:`LEVEL_FACTOR` above) is merged together with every smaller pack,
    unless that is more than ``limit`` objects.
    """
    by_level: dict[int, list[PackInfo]] = {}
    for info in packs_found:
        by_level.setdefault(level(info.objects), []).append(info)
    chosen: list[PackInfo] = []
    for current in sorted(by_level):
        chosen += by_level[current]
        if len(by_level[current]) >= (SMALL_PACKS if current == 0 else LEVEL_FACTOR):
            total = sum(info.objects for info in chosen)
            return chosen if limit is None or total <= limit else []
    return []


@dataclass(frozen=True)
class MergeReport:
    """What one merge of packs did."""

    packs_merged: int
    objects: int
    deltas_made: int
    packs_after: int
    seconds: float
    pack: str


def merge_small_packs(
    git: GitRepository, *, limit: int | None = AUTO_MERGE_LIMIT
) -> MergeReport | None:
    """Merge the packs :func:`choose_merge` picks, if another process is not already at it.

    Uses the delta hints ``git`` gathered while writing, flushes the new pack
    unless every merged pack is one this handle wrote without flushing, and
    emits ``progreg.maintenance.merge``. ``None`` when there was nothing to do.
    """
    objects_dir = git.path / "objects"

    def candidates() -> list[PackInfo]:
        # The open pack is still growing: it is merged once it is full.
        return list_packs(objects_dir, _counts(git.path), skip=git.tail.name)

    if len(choose_merge(candidates(), limit)) < 2:
        return None  # the usual case: one directory listing
    with maintenance_lock(git.path, None) as taken:
        if not taken:
            return None
        git.delete_replaced_packs()  # open packs replaced while Git's maintenance ran
        start = time.perf_counter()
        chosen = choose_merge(candidates(), limit)
        if len(chosen) < 2:
            return None
        result = _merge(git, [info.path for info in chosen], walk_all=False)
        report = MergeReport(
            packs_merged=len(chosen),
            objects=result.objects,
            deltas_made=len(result.redeltified),
            packs_after=len(list_packs(objects_dir, _counts(git.path))),
            seconds=time.perf_counter() - start,
            pack=result.pack.name,
        )
    events.emit(
        "progreg.maintenance.merge",
        packs_merged=report.packs_merged,
        objects=report.objects,
        deltas_made=report.deltas_made,
        packs_after=report.packs_after,
        seconds=round(report.seconds, 4),
    )
    return report


def _merge(git: GitRepository, paths: list[Path], *, walk_all: bool) -> PackMerge:
    """Merge ``paths`` with ``git``'s hints; keep the hints that are still useful."""
    with git.hints_lock:
        volatile = set(git.volatile_packs)
    durable = git.durable or any(path.name not in volatile for path in paths)

    def hints(oids: Iterable[bytes]) -> dict[bytes, bytes]:
        with git.hints_lock:
            known = git.delta_hints
            return {oid: known[oid] for oid in oids if oid in known}

    try:
        result = merge_packs(git.repo, paths, hints=hints, walk_all=walk_all, durable=durable)
    finally:
        git.forget_packs(len(paths))
    with git.hints_lock:
        for oid in result.settled:  # made a delta, or never will be against that version
            git.delta_hints.pop(oid, None)
        git.volatile_packs.difference_update(path.name for path in paths)
        if not durable:
            git.volatile_packs.add(result.pack.name)
    return result


_known_packs: dict[Path, dict[str, PackInfo]] = {}
#: How often ``progreg gc`` lists the packs again when Git's tools delete one it was merging;
#: after that the merge is left to them (nothing is lost: they hold the objects).
MERGE_ATTEMPTS = 3


def _counts(gitdir: Path) -> dict[str, PackInfo]:
    """What is known of ``gitdir``'s packs, by name (names are content hashes)."""
    with _saves_lock:
        return _known_packs.setdefault(gitdir, {})


def remove_garbage(objects_dir: Path, age: float = GARBAGE_AGE) -> int:
    """Remove what is older than ``age`` seconds of: temporary files, packs without an index
    (and no keep), indexes without a pack, and keep files of progreg writers that died
    (:func:`~progreg.git.pack.packdir.stale_keeps`)."""
    pack_dir = objects_dir / "pack"
    try:
        entries = list(os.scandir(pack_dir))
    except FileNotFoundError:
        return 0
    names = {entry.name for entry in entries}
    cutoff = time.time() - age
    removed = 0
    for keep in stale_keeps(pack_dir, cutoff):
        with contextlib.suppress(FileNotFoundError):
            keep.unlink()
            removed += 1
        names.discard(keep.name)  # its pack, if it has no index, goes below
    for entry in entries:
        name = entry.name
        orphan = name.startswith("pack-") and name.endswith(".pack")
        orphan = orphan and name[:-5] + ".idx" not in names and name[:-5] + ".keep" not in names
        orphan = (
            orphan
            or (  # what an interrupted deletion leaves (git gc removes it too)
                name.startswith("pack-")
                and name.endswith(".idx")
                and name[:-4] + ".pack" not in names
            )
        )
        if not (name.startswith("tmp_") or orphan):
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
    return removed


def pack_loose_objects(
    repo_path: str | os.PathLike[str] | GitRepository,
    *,
    lock_timeout: float = 30.0,
    pack_limit: int | None = None,
) -> PackReport:
    """Pack every loose object into one new pack, delete the loose copies, merge the packs.

    This is ``progreg gc``. When, afterwards, there are more than
    ``pack_limit`` packs (default 1; 0 never merges) they are merged into
    one, comparing every commit with its parent for the best deltas.
    """
    start = time.perf_counter()
    git = repo_path if isinstance(repo_path, GitRepository) else None
    gitdir = git.path if git is not None else Path(repo_path)  # type: ignore[arg-type]
    objects_dir = _objects_dir(gitdir)
    limit = 1 if pack_limit is None else pack_limit
    with maintenance_lock(gitdir, lock_timeout):
        with write_lock(gitdir, lock_timeout):
            repo = pygit2.Repository(str(gitdir), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
            size_before = _size(objects_dir)
            packs_before = len(_pack_files(objects_dir))
            loose = _loose_files(objects_dir)
            packed = packed_odb(objects_dir)
            already = {oid for oid in loose if pygit2.Oid(raw=oid) in packed}
            wanted = set(loose) - already
            commits = [oid for oid in wanted if _loose_kind(loose[oid]) == OBJ_COMMIT]
            new_pack: Path | None = None
            count = 0
            keep: PackKeep | None = None
            existed = False
            try:
                if wanted:
                    new_pack, count, keep, existed = _write_pack(
                        repo, objects_dir / "pack", wanted, commits
                    )
                _verify(objects_dir, loose)
                # A pack that was there already may go with a git repack that listed it
                # (place_pack): the loose copies stay, for the next run to pack.
                removed = 0 if existed else _remove_loose(loose.values())
            finally:
                if keep is not None:
                    keep.release()
            refpack.pack_refs(gitdir)
            # Close these packs: libgit2 keeps a cache of delta bases per open pack.
            repo.free()
            del repo, packed, loose, already, wanted
        merged, consolidated = _merge_all(git, gitdir, limit)
        new_pack = merged or new_pack
        remove_garbage(objects_dir)
        heal_midx(objects_dir / "pack")
        update_pack_info(objects_dir)
        report = PackReport(
            objects_packed=count,
            loose_removed=removed,
            packs_before=packs_before,
            packs_after=len(_pack_files(objects_dir)),
            packs_consolidated=consolidated,
            size_before=size_before,
            size_after=_size(objects_dir),
            seconds=time.perf_counter() - start,
            pack=new_pack.name if new_pack is not None else None,
        )
    events.emit(
        "progreg.gc",
        objects_packed=report.objects_packed,
        loose_removed=report.loose_removed,
        packs_after=report.packs_after,
        seconds=round(report.seconds, 3),
    )
    return report


def _merge_all(git: GitRepository | None, gitdir: Path, limit: int) -> tuple[Path | None, int]:
    """Merge every pack of ``gitdir`` into one when there are more than ``limit`` (0:
    never), under the maintenance locks; the new pack and how many were merged."""
    if git is not None:
        git.delete_replaced_packs()  # open packs replaced while Git's maintenance ran
    objects_dir = _objects_dir(gitdir)
    for _ in range(MERGE_ATTEMPTS):
        existing = list_packs(objects_dir)
        if limit <= 0 or len(existing) <= limit:
            break
        git = git if git is not None else GitRepository(gitdir, create=False)
        try:
            result = _merge(git, [info.path for info in existing], walk_all=True)
        except FileNotFoundError:
            # A pack listed a moment ago is gone: Git's own repack (or gc) merged it
            # meanwhile, and its objects are in Git's new pack. List the packs again.
            git.forget_packs()
            continue
        return result.pack, len(existing)
    return None, 0


# -- automatic maintenance ------------------------------------------------------------

_saves: dict[Path, int] = {}
_enabled: dict[Path, bool] = {}
_saves_lock = threading.Lock()


def auto_threshold(repo: pygit2.Repository) -> int:
    """``gc.auto`` from the repository's configuration, else 6700 (0 disables)."""
    return _config_int(repo, "gc.auto", DEFAULT_AUTO_THRESHOLD)


def auto_maintenance(git: GitRepository, *, every: int | None = None) -> None:
    """Call after a save, once the write lock is released; see the module.

    Cheap when nothing is due: a listing of ``objects/pack`` when the save
    left a pack behind or once every :data:`LOOK_EVERY` saves, and on the
    first save of a process and then every ``every`` (default
    :data:`CHECK_EVERY`) saves, one configuration read and one listing of one
    fan-out directory. Never raises: a failed run is reported as an event and
    leaves the objects as they were.
    """
    gitdir = git.path
    interval = CHECK_EVERY if every is None else every
    with _saves_lock:
        count = _saves.get(gitdir, 0)
        _saves[gitdir] = count + 1
    try:
        if count == 0 or (interval > 0 and count % interval == 0):
            threshold = auto_threshold(git.repo)
            _enabled[gitdir] = threshold > 0
            if threshold > 0:
                refpack.pack_refs_when_due(gitdir, lock_timeout=git.lock_timeout)
            if threshold > 0 and loose_object_estimate(gitdir) > threshold:
                pack_loose_objects(git, lock_timeout=git.lock_timeout, pack_limit=0)
        left = git.packs_left
        if _enabled.get(gitdir, True) and (git.packs_looked != left or count % LOOK_EVERY == 0):
            git.packs_looked = left
            merge_small_packs(git)
    except Exception as exc:  # maintenance must never fail a save that succeeded
        events.emit("progreg.gc.failed", level=logging.WARNING, error=str(exc))
