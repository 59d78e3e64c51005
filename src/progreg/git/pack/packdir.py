"""What Git's own tools expect of ``objects/pack``: keep files, the multi-pack-index, info/packs.

progreg shares ``objects/pack`` with ``git gc``, ``git repack``, ``git
multi-pack-index`` and ``git update-server-info``; this module holds the
rules it follows there, taken from Git's sources (Git 2.39):

- **keep files** (``builtin/index-pack.c``, ``builtin/receive-pack.c``):
  ``git repack -a -d`` deletes at its end every ``pack-*.pack`` it listed at
  its start that had no ``.keep`` then (``collect_pack_filenames`` reads the
  directory: a pack without its ``.idx`` yet is listed too), whether or not
  the objects were reachable. So a writer creates ``pack-<sha>.keep`` before
  its pack appears under a ``pack-`` name, and removes it only once the refs
  that make its objects reachable are written (:class:`PackKeep`);
- **deleting a pack** (``packfile.c`` ``unlink_pack_path``): ``.pack``,
  ``.idx``, ``.rev``, ``.bitmap``, ``.mtimes``, in that order; never a pack
  with a ``.keep`` the deleter did not create, nor a ``.promisor`` pack
  (:func:`delete_packs`);
- **the multi-pack-index** (``midx.c``): ``objects/pack/multi-pack-index``
  lists packs by name; Git fails (``git fsck``, ``git multi-pack-index
  verify``) when one of them is gone. A pack it lists is only deleted after
  the file is removed, under ``multi-pack-index.lock`` (Git's lock for it),
  together with its ``multi-pack-index-*.bitmap`` and ``.rev``
  (``clear_midx_file``); Git then reads every pack through its ``.idx``.
  Packs it does not list are deleted without the lock, as ``git repack -d``
  deletes them;
- **objects/info/packs** (``server-info.c``): what dumb-HTTP clients read to
  find packs; when it exists it is written again, in
  ``git update-server-info``'s format, whenever packs are added or removed
  (:func:`update_pack_info`);
- **freshening** (``object-file.c``): a writer that reuses an object already
  stored updates the modification time of its file (loose object or pack),
  so that ``git prune`` / ``git gc --prune=<date>`` keep it (:func:`freshen`).

- **which copy the multi-pack-index takes** (``midx.c``, ``midx_oid_compare``):
  of an object stored in several packs, ``git multi-pack-index write`` keeps
  the copy in the pack modified last, in whole seconds, and on a tie the one
  in the pack whose name sorts first; ``git multi-pack-index expire`` (run by
  ``git maintenance``'s ``incremental-repack``) then deletes the packs it
  assigns no object, working from the file it read when it started. A merged
  pack that ties with the packs it merges may be assigned nothing, and
  deleted while the merge deletes those packs: then the objects are in no
  pack at all. So a pack that replaces others is made newer than each of
  them before it appears, and again before they are deleted
  (:func:`outrank`): every index that lists both assigns it the objects.

A ``git multi-pack-index write`` that listed a pack before progreg deleted it
and commits its file after progreg released the lock names a missing pack
(``git repack -d`` has the same race with it); :func:`heal_midx`, run by
every write that deletes or adds packs, by maintenance and by a read that
misses an object, removes such a file (Git's readers look for the objects
of a missing pack in the other packs; libgit2's do not).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from progreg.git.processes import parse_writer_label, process_gone, writer_label

MIDX = "multi-pack-index"
MIDX_LOCK = "multi-pack-index.lock"
#: Extensions removed with a pack, in the order of Git's ``unlink_pack_path``
#: (``.keep`` and ``.promisor`` excepted: such packs are never deleted here).
PACK_EXTENSIONS = (".pack", ".idx", ".rev", ".bitmap", ".mtimes")
_MIDX_SIGNATURE = b"MIDX"
_PNAM = b"PNAM"


# -- keep files -----------------------------------------------------------------------


class PackKeep:
    """The ``.keep`` file a writer holds on a pack until refs reach its objects."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, stem: str) -> PackKeep | None:
        """Create ``<stem>.keep``; ``None`` when it exists (another writer or a person holds it)."""
        path = stem + ".keep"
        message = f"{writer_label()}\n".encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return None
        try:
            os.write(fd, message)
        finally:
            os.close(fd)
        return cls(Path(path))

    def release(self) -> None:
        """Remove the keep file (the pack's objects are reachable, or nothing names them)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def stale_keeps(pack_dir: Path, before: float) -> list[Path]:
    """Keep files a progreg writer of this host left when it died, older than ``before``.

    Only those whose writer (named in the file) is no longer running.
    """
    found = []
    for path in pack_dir.glob("pack-*.keep"):
        try:
            if path.stat().st_mtime >= before:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        writer = parse_writer_label(text)
        if writer is not None and process_gone(*writer):
            found.append(path)
    return found


def temporary_name(pack_dir: Path, kind: str) -> str:
    """A new name ``tmp_<kind>_XXXXXX`` in ``pack_dir``, as Git's ``odb_mkstemp`` makes."""
    return os.path.join(pack_dir, f"tmp_{kind}_{secrets.token_hex(6)}")


# -- the multi-pack-index -------------------------------------------------------------


def _read(path: str) -> bytes | None:
    """The bytes of the file at ``path``, or ``None`` when there is none."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def midx_packs(pack_dir: str | Path) -> set[str] | None:
    """The stems (``pack-<sha>``) of the packs the multi-pack-index lists; ``None``: no file.

    An unreadable file lists nothing (Git ignores it too).
    """
    data = _read(os.path.join(pack_dir, MIDX))
    return None if data is None else _midx_names(data)


def _midx_names(data: bytes) -> set[str]:
    if len(data) < 12 or data[:4] != _MIDX_SIGNATURE:
        return set()
    chunks = data[6]
    table = data[12 : 12 + 12 * (chunks + 1)]
    entries = [table[i : i + 12] for i in range(0, len(table) - 11, 12)]
    for number, entry in enumerate(entries[:-1]):
        if entry[:4] != _PNAM:
            continue
        start = struct.unpack(">Q", entry[4:])[0]
        end = struct.unpack(">Q", entries[number + 1][4:])[0]
        names = data[start:end].split(b"\x00")
        return {_stem(name.decode(errors="replace")) for name in names if name}
    return set()


def _stem(name: str) -> str:
    for suffix in (".idx", ".pack"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@contextlib.contextmanager
def midx_lock(pack_dir: str | Path) -> Iterator[bool]:
    """Hold ``multi-pack-index.lock`` (Git's lock file for it); yield whether it was taken.

    Never waits: a Git process writing the file holds it for a moment only,
    and a caller that cannot take it leaves its packs for a later run.
    """
    path = os.path.join(pack_dir, MIDX_LOCK)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        yield False
        return
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            yield False
            return
        raise
    os.close(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_midx(pack_dir: str | Path) -> bool:
    """Remove the multi-pack-index and its bitmaps and reverse indexes (lock held by caller).

    Git's ``clear_midx_file``; Git then reads each pack through its ``.idx``.
    """
    removed = False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(pack_dir, MIDX))
        removed = True
    with contextlib.suppress(FileNotFoundError), os.scandir(pack_dir) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(MIDX + "-") and name.endswith((".bitmap", ".rev")):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
    return removed


def heal_midx(pack_dir: str | Path) -> bool:
    """Remove a multi-pack-index that lists a pack that is gone; whether it did."""
    listed = midx_packs(pack_dir)
    if not listed:
        return False
    if all(os.path.exists(os.path.join(pack_dir, stem + ".pack")) for stem in listed):
        return False
    with midx_lock(pack_dir) as taken:
        if not taken:
            return False
        listed = midx_packs(pack_dir) or set()
        if all(os.path.exists(os.path.join(pack_dir, stem + ".pack")) for stem in listed):
            return False
        return remove_midx(pack_dir)


# -- deleting packs -------------------------------------------------------------------


def deletable(pack: Path) -> bool:
    """Whether progreg may delete ``pack``: no ``.keep`` (nobody holds it), no ``.promisor``."""
    stem = str(pack)[:-5]
    return not (os.path.exists(stem + ".keep") or os.path.exists(stem + ".promisor"))


def outrank(pack: str | Path, others: Iterable[str | Path]) -> bool:
    """Make ``pack`` modified later than each of ``others``, in whole seconds; whether it is.

    Git compares packs' modification times in whole seconds (see the module),
    so ``pack`` gets one second more than the latest of ``others`` when it
    does not have it already: at most a second or two ahead of the clock,
    since merged packs are themselves made from packs written before. Packs
    of ``others`` that are gone do not count. ``False`` when ``pack`` cannot
    be changed (another user's file): then its writer must not delete
    ``others``.
    """
    latest = -1
    for other in others:
        with contextlib.suppress(FileNotFoundError):
            latest = max(latest, int(os.stat(other).st_mtime))
    try:
        found = os.stat(pack)
        if int(found.st_mtime) > latest:
            return True
        os.utime(pack, (found.st_atime, max(latest + 1, int(found.st_mtime) + 1)))
    except OSError:
        return False
    return True


def place_pack(
    temporary: str | Path,
    temporary_index: str | Path,
    final: str | Path,
    *,
    replaces: Iterable[Path] = (),
) -> tuple[PackKeep | None, bool]:
    """Put a finished pack and its index in place, kept: ``(keep, whether it was there)``.

    The ``.keep`` is created, then the pack linked to ``final``, then the
    index renamed (the module's protocol). A pack of the same name holds the
    same objects (the name is its checksum); one that is there already may be
    on the list of a ``git repack -d`` that listed it unkept, and that repack
    deletes whatever file has the name, the keep taken since included, while
    its ``pack-objects`` skips the objects of a kept pack. So such a pack gets
    no keep from progreg: it is left as it is (freshened, Git's rule for an
    object written twice), the new copy is dropped, ``(None, True)`` is
    returned, and the caller must not count on the pack to hold the objects
    (a merge keeps its sources, a save writes its objects loose as well).
    The keep is ``None`` too when someone else held one on the new pack.
    A pack that ``replaces`` others (a merge of them) is made newer than each
    of them before it appears (:func:`outrank`).
    """
    final = os.fspath(final)
    stem = final[: -len(".pack")]
    if not os.path.exists(final):
        outrank(temporary, replaces)
        keep = PackKeep.create(stem)
        try:
            os.link(temporary, final)  # never replaces a file of that name
        except FileExistsError:
            if keep is not None:
                keep.release()
        except BaseException:
            if keep is not None:
                keep.release()
            raise
        else:
            try:
                os.unlink(temporary)
                os.replace(temporary_index, stem + ".idx")
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(final)  # ours, without its index: nobody can be using it
                if keep is not None:
                    keep.release()
                raise
            return keep, False
    for path in (temporary, temporary_index):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.utime(final)
    return None, True


def delete_packs(
    pack_dir: str | Path,
    packs: Iterable[Path],
    *,
    force_midx: bool = True,
    replaced_by: Path | None = None,
) -> list[Path]:
    """Delete ``packs`` (``.pack`` paths) the way Git does; return those deleted.

    When they were merged into ``replaced_by``, that pack is first made newer
    than each of them again (:func:`outrank`: one may have been freshened
    since the merge began); nothing is deleted if it cannot be.

    Packs with a ``.keep`` or a ``.promisor`` are left alone. When the
    multi-pack-index lists one of them, it is removed first, under
    ``multi-pack-index.lock`` (``force_midx``; when a Git process holds the
    lock, those packs are left for a later run), or those packs are left
    alone. Other packs are deleted without the lock, as ``git repack -d``
    does. Then ``objects/info/packs`` is written again if it exists, and a
    multi-pack-index that a concurrent ``git multi-pack-index write`` based
    on the old packs is removed (:func:`heal_midx`).
    """
    wanted = [pack for pack in packs if deletable(pack)]
    if not wanted or (replaced_by is not None and not outrank(replaced_by, wanted)):
        return []
    listed = midx_packs(pack_dir)
    if listed and any(pack.stem in listed for pack in wanted):
        if force_midx:
            with midx_lock(pack_dir) as taken:
                if taken:
                    remove_midx(pack_dir)
                else:
                    wanted = [pack for pack in wanted if pack.stem not in listed]
        else:
            wanted = [pack for pack in wanted if pack.stem not in listed]
    deleted: list[Path] = []
    for pack in wanted:
        stem = str(pack)[:-5]
        for suffix in PACK_EXTENSIONS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stem + suffix)
        deleted.append(pack)
    if deleted:
        update_pack_info(os.path.dirname(pack_dir))
        if listed is not None:
            heal_midx(pack_dir)  # a file written meanwhile is seen by the next write
    return deleted


# -- objects/info/packs -----------------------------------------------------------------


def update_pack_info(objects_dir: str | Path, *, create: bool = False) -> bool:
    """Write ``objects/info/packs`` again if it exists (or ``create``); whether it changed.

    The format of ``git update-server-info``: a line ``P pack-<sha>.pack``
    per pack that has an index, then an empty line; packs listed before keep
    their order, new ones follow. Written to a temporary file and renamed.
    """
    found = _read(os.path.join(objects_dir, "info", "packs"))
    if found is None and not create:
        return False
    old = found or b""
    info = Path(objects_dir, "info", "packs")
    pack_dir = os.path.join(objects_dir, "pack")
    try:
        names = set(os.listdir(pack_dir))
    except FileNotFoundError:
        names = set()
    present = sorted(
        name
        for name in names
        if name.startswith("pack-") and name.endswith(".pack") and name[:-5] + ".idx" in names
    )
    before = [line[2:].decode() for line in old.splitlines() if line.startswith(b"P ")]
    ordered = [name for name in before if name in present]
    known = set(ordered)
    ordered += [name for name in present if name not in known]
    content = "".join(f"P {name}\n" for name in ordered).encode() + b"\n"
    if content == old:
        return False
    info.parent.mkdir(parents=True, exist_ok=True)
    temporary = info.parent / f"packs_{secrets.token_hex(6)}"
    try:
        with open(temporary, "xb") as out:
            out.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, info)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return True


def pack_info_problems(objects_dir: Path) -> list[str]:
    """The packs ``objects/info/packs`` names that are not in ``objects/pack``."""
    try:
        lines = (objects_dir / "info" / "packs").read_bytes().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    pack_dir = objects_dir / "pack"
    return [
        name
        for line in lines
        if line.startswith(b"P ")
        and not (pack_dir / (name := line[2:].decode(errors="replace"))).is_file()
    ]


# -- freshening -------------------------------------------------------------------------


def freshen(objects_dir: Path, oids: Iterable[bytes]) -> list[bytes]:
    """Update the modification time of the files holding ``oids``; return those not found.

    Git's rule (``freshen_loose_object`` / ``freshen_packed_object``): an
    object reused by a new write gets a fresh time, so that ``git prune`` and
    ``git gc``'s ``--prune=<date>`` do not remove it before a ref reaches it.
    Packs are looked up through their ``.idx`` (mapped, binary search).
    """
    missing: list[bytes] = []
    wanted = []
    for oid in oids:
        text = oid.hex()
        try:
            os.utime(objects_dir / text[:2] / text[2:])
        except FileNotFoundError:
            wanted.append(oid)
    if not wanted:
        return missing
    found: set[bytes] = set()
    with contextlib.suppress(FileNotFoundError), os.scandir(objects_dir / "pack") as entries:
        indexes = [e.path for e in entries if e.name.startswith("pack-") and e.name[-4:] == ".idx"]
    for index_path in indexes:
        holds = _index_holds(index_path, [oid for oid in wanted if oid not in found])
        if holds:
            with contextlib.suppress(FileNotFoundError):
                os.utime(index_path[:-4] + ".pack")
                found.update(holds)
        if len(found) == len(wanted):
            break
    return [oid for oid in wanted if oid not in found]


#: Up to this many ids are looked up in an index one binary search each; more, in a set.
_SEARCHES = 256


def _index_holds(index_path: str, oids: list[bytes]) -> list[bytes]:
    """Those of ``oids`` that the version-2 pack index at ``index_path`` lists."""
    held: list[bytes] = []
    try:
        with (
            open(index_path, "rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as index,
        ):
            if len(index) < 8 + 1024 or index[:8] != b"\xfftOc\x00\x00\x00\x02":
                return held
            start = 8 + 1024
            if len(oids) > _SEARCHES:  # many: one pass over the index's ids
                count = struct.unpack_from(">I", index, 8 + 4 * 255)[0]
                table = index[start : start + 20 * count]
                listed = {table[at : at + 20] for at in range(0, len(table), 20)}
                return [oid for oid in oids if oid in listed]
            for oid in oids:
                low = struct.unpack_from(">I", index, 8 + 4 * (oid[0] - 1))[0] if oid[0] else 0
                high = struct.unpack_from(">I", index, 8 + 4 * oid[0])[0]
                while low < high:
                    middle = (low + high) // 2
                    at = start + 20 * middle
                    current = index[at : at + 20]
                    if current == oid:
                        held.append(oid)
                        break
                    if current < oid:
                        low = middle + 1
                    else:
                        high = middle
    except (OSError, ValueError):
        return held
    return held
