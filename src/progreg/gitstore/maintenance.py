"""Repository maintenance: pack loose objects, like ``git gc``, without the ``git`` binary.

libgit2 writes every object as a loose file and never packs on its own, so a
registry that saves often piles up files (about 6 per save). This module:

- :func:`pack_loose_objects` writes every loose object into one new pack
  (with deltas between consecutive versions of a tree or file, by the bundle
  writer's machinery), moves it into ``objects/pack`` atomically (temporary
  name, fsync, rename, index last), checks that libgit2 reads every object
  from it, and only then deletes the loose copies it packed; when there are
  more than ``gc.autoPackLimit`` packs it consolidates them into one;
- :func:`loose_object_estimate` counts loose objects the way
  ``git gc --auto`` does (one fan-out directory, times 256);
- :func:`auto_maintenance` is what the storage layer calls after a save: it
  looks at the disk at most once every :data:`CHECK_EVERY` saves of a process
  and packs when the estimate exceeds ``gc.auto`` (default 6700, 0 disables).

Concurrency: it runs under the registry's write lock, so commits and ref
updates wait for it, but blobs can still be written loose by other processes
meanwhile. Only the loose files seen by the initial scan are ever deleted,
and only once the same object is readable from a pack; objects are immutable
and content-addressed, so a reader that misses a loose file finds the packed
copy (libgit2 re-scans ``objects/pack`` on a miss).
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pygit2

from progreg import events
from progreg.gitstore import bundle, refpack
from progreg.gitstore import pack as packs
from progreg.gitstore.locking import write_lock
from progreg.gitstore.objects import OBJ_COMMIT, TYPE_NAMES, object_id

#: ``git gc --auto``'s default threshold of loose objects (``gc.auto``).
DEFAULT_AUTO_THRESHOLD = 6700
#: ``git gc --auto``'s default number of packs above which they are consolidated.
DEFAULT_PACK_LIMIT = 50
#: Automatic maintenance looks at the disk on the first save of a process and
#: then once every this many saves.
CHECK_EVERY = 256
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


def _idx_ids(idx: Path) -> list[bytes]:
    """The object ids listed in a version-2 pack index."""
    data = idx.read_bytes()
    if data[:8] != b"\xfftOc" + struct.pack(">I", 2):
        raise OSError(f"{idx} is not a version-2 pack index")
    count = struct.unpack(">I", data[8 + 255 * 4 : 8 + 256 * 4])[0]
    start = 8 + 256 * 4
    return [data[start + 20 * i : start + 20 * (i + 1)] for i in range(count)]


def _packed_odb(objects_dir: Path) -> pygit2.Odb:
    """A fresh object database that reads only the packs of ``objects_dir``."""
    odb = pygit2.Odb()
    odb.add_backend(pygit2.OdbBackendPack(str(objects_dir)), 1)
    return odb


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
) -> tuple[Path, int]:
    """Write ``wanted`` as one pack plus index into ``pack_dir``; return the pack and its count."""
    pack_dir.mkdir(parents=True, exist_ok=True)
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
        for path in (temporary, index_temporary):
            os.chmod(path, 0o444)
        os.replace(temporary, final)  # the pack first, the index last: then it is visible
        os.replace(index_temporary, pack_dir / f"{name}.idx")
        _fsync_dir(pack_dir)
        return final, writer.count
    except BaseException:
        for path in (temporary, index_temporary):
            with contextlib.suppress(OSError):
                os.unlink(path)
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
    odb = _packed_odb(objects_dir)
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


def pack_loose_objects(
    repo_path: str | os.PathLike[str],
    *,
    lock_timeout: float = 30.0,
    pack_limit: int | None = None,
) -> PackReport:
    """Pack every loose object into one new pack and delete the loose copies; see the module.

    When, afterwards, there are more than ``pack_limit`` packs (default:
    ``gc.autoPackLimit``, else 50; 0 never consolidates) they are rewritten
    as one.
    """
    start = time.perf_counter()
    gitdir = Path(repo_path)
    objects_dir = _objects_dir(gitdir)
    with write_lock(gitdir, lock_timeout):
        repo = pygit2.Repository(str(gitdir), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        if pack_limit is None:
            pack_limit = _config_int(repo, "gc.autoPackLimit", DEFAULT_PACK_LIMIT)
        size_before = _size(objects_dir)
        packs_before = len(_pack_files(objects_dir))
        loose = _loose_files(objects_dir)
        packed_odb = _packed_odb(objects_dir)
        already = {oid for oid in loose if pygit2.Oid(raw=oid) in packed_odb}
        wanted = set(loose) - already
        commits = [oid for oid in wanted if _loose_kind(loose[oid]) == OBJ_COMMIT]
        new_pack: Path | None = None
        count = 0
        if wanted:
            new_pack, count = _write_pack(repo, objects_dir / "pack", wanted, commits)
        _verify(objects_dir, loose)
        removed = _remove_loose(loose.values())
        refpack.pack_refs(gitdir)
        consolidated = 0
        existing = _pack_files(objects_dir)
        if pack_limit > 0 and len(existing) > pack_limit:
            new_pack, consolidated = _consolidate(repo, objects_dir, existing)
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


def _consolidate(
    repo: pygit2.Repository, objects_dir: Path, old: list[Path]
) -> tuple[Path | None, int]:
    """Rewrite the packs ``old`` as one (with deltas across all of history); delete them."""
    wanted: set[bytes] = set()
    for pack_path in old:
        wanted.update(_idx_ids(pack_path.with_suffix(".idx")))
    odb = repo.odb
    commits = [oid for oid in wanted if odb.read_header(pygit2.Oid(raw=oid))[0] == OBJ_COMMIT]
    new_pack, _count = _write_pack(repo, objects_dir / "pack", wanted, commits)
    _verify(objects_dir, wanted)
    for pack_path in old:
        if pack_path == new_pack:
            continue
        for suffix in (".idx", ".rev", ".bitmap", ".pack"):
            with contextlib.suppress(FileNotFoundError):
                pack_path.with_suffix(suffix).unlink()
    return new_pack, len(old)


# -- automatic maintenance ------------------------------------------------------------

_saves: dict[Path, int] = {}
_saves_lock = threading.Lock()


def auto_threshold(repo: pygit2.Repository) -> int:
    """``gc.auto`` from the repository's configuration, else 6700 (0 disables)."""
    return _config_int(repo, "gc.auto", DEFAULT_AUTO_THRESHOLD)


def auto_maintenance(repo: pygit2.Repository, *, every: int | None = None) -> PackReport | None:
    """Call after a save: pack loose objects when enough have piled up.

    Cheap when nothing is due: nothing at all but a counter on most saves;
    on the first save of a process and then every ``every`` (default
    :data:`CHECK_EVERY`) saves, one configuration read and one listing of one
    fan-out directory. Never raises: a failed run is reported as an event and
    leaves the loose objects in place.
    """
    gitdir = Path(repo.path)
    interval = CHECK_EVERY if every is None else every
    with _saves_lock:
        count = _saves.get(gitdir, 0)
        _saves[gitdir] = count + 1
    if interval <= 0 or count % interval:
        return None
    refpack.pack_refs_when_due(gitdir)
    try:
        threshold = auto_threshold(repo)
        if threshold <= 0 or loose_object_estimate(gitdir) <= threshold:
            return None
        return pack_loose_objects(gitdir)
    except Exception as exc:  # maintenance must never fail a save that succeeded
        events.emit("progreg.gc.failed", error=str(exc))
        return None
