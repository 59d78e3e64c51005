"""Merging packs into one new pack, reusing what they hold.

:func:`merge_packs` is what keeps the packs writers leave behind (see
:mod:`progreg.git.pack.tailpack`) few and compact. It copies the entries of
the packs it merges as they are, in runs: a whole object, or a delta whose
base is in the same pack, keeps its bytes as long as nothing between it and
its base changed; otherwise only its base offset is encoded anew. So the cost
is mostly copying bytes. Objects stored whole although an earlier version of
the same path is among the merged objects (the first version of a path in
the pack of a writer) are stored again as deltas against that version: the
history of each path is a delta chain (at most
:data:`~progreg.git.pack.format.MAX_DELTA_DEPTH` deep), as ``git gc`` makes.
Earlier versions come from the writer's hints (what each object it wrote
replaced) and, for ``progreg gc``, from comparing every merged commit's tree
with its first parent's, along the changed paths only.

The new pack is written under a temporary name, flushed to the disk, kept
(``pack-<sha>.keep``, so that a concurrent ``git repack -a -d`` leaves it),
made newer than the packs it merges (so that a multi-pack-index assigns it
their objects: :func:`~progreg.git.pack.packdir.outrank`), renamed into
place (pack first, index last) and checked, and only then are
the merged packs deleted as Git deletes packs
(:func:`~progreg.git.pack.packdir.delete_packs`: a multi-pack-index listing
them removed first, under its lock) and the keep released: a reader always
finds every object, in the old packs or in the new one (libgit2 and Git look
for new packs when an object is missing).

Memory stays bounded by a few bytes per merged object: objects are numbered
by their place in the sorted list of merged ids (their *rank*), and what the
merge knows of each (type, where it is read from, where it was written,
its earlier version) is kept in arrays by rank; the merged packs are read
through :class:`~progreg.git.pack.packsource.PackSource`, which drops the
pages it read from the resident set as it goes; objects libgit2 reads for
the merge come through an object database reopened every
:data:`READS_PER_ODB` reads, so that its caches of delta bases stay small.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import secrets
import shutil
import struct
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import BinaryIO

import pygit2

from progreg.git.durability import fsync_dir
from progreg.git.errors import MalformedObjectError
from progreg.git.objects import encoding as objects
from progreg.git.objects.delta import apply_delta, make_delta
from progreg.git.objects.encoding import GITLINK_MODE, OBJ_COMMIT, TREE_MODE, object_id
from progreg.git.pack import format as packs
from progreg.git.pack.basecache import BaseCache
from progreg.git.pack.objectread import packed_odb
from progreg.git.pack.packdir import (
    PACK_EXTENSIONS,
    PackKeep,
    delete_packs,
    place_pack,
    temporary_name,
)
from progreg.git.pack.packsource import (
    FANOUT_END,
    SATURATED,
    PackSource,
    Residency,
    index_count,
    read_index,
)
from progreg.git.permissions import READ_ONLY_MODE, set_created_mode
from progreg.git.settings import repository_settings

__all__ = [
    "CHECK_SAMPLE",
    "PackInfo",
    "PackMerge",
    "earlier_versions",
    "index_count",
    "merge_packs",
    "read_index",
    "remove_pack",
]

#: How many objects of a merged pack libgit2 reads back before the old packs go.
CHECK_SAMPLE = 32
#: Objects read through libgit2 before its object database is opened anew.
READS_PER_ODB = 4096
#: Bytes copied from a merged pack at once.
COPY_CHUNK = 1 << 20
#: Objects of the merged packs are trusted: any size a delta announces is accepted.
_TRUSTED_SIZE = 1 << 62
_NONE = -1
_IDS_PER_READ = 65536
_UNSET = (1 << 64) - 1


@dataclass(frozen=True)
class PackInfo:
    """A pack of the repository: its ``.pack`` path and how many objects it holds."""

    path: Path
    objects: int


class _Table:
    """Every merged object once, by rank (its place among the sorted ids).

    ``home`` says where an object is read from (the first merged pack that
    holds it: ``source << 32 | position``), ``kinds`` its type (a delta has its
    base's), ``whole`` whether some merged pack stores it whole.
    """

    def __init__(self, sources: list[PackSource]) -> None:
        everything = [source.oid(n) for source in sources for n in range(source.count)]
        everything.sort()
        self.oids = [oid for oid, _ in groupby(everything)]
        del everything
        count = len(self.oids)
        self.home = array("Q", [_UNSET]) * count
        self.kinds = bytearray(count)
        self.whole = bytearray(count)
        for number, source in enumerate(sources):
            source.ranks = array("I", (self.rank(source.oid(n)) for n in range(source.count)))
            source.ids = b""
            for position, rank in enumerate(source.ranks):
                if self.home[rank] == _UNSET:
                    self.home[rank] = number << 32 | position

    def __len__(self) -> int:
        return len(self.oids)

    def rank(self, oid: bytes) -> int:
        """The rank of ``oid``, or -1 when it is not merged."""
        found = bisect_left(self.oids, oid)
        return found if found < len(self.oids) and self.oids[found] == oid else _NONE


class _Reader:
    """Objects of the merge: whole entries straight from the merged packs, others via libgit2."""

    def __init__(self, table: _Table, sources: list[PackSource], repo: pygit2.Repository) -> None:
        self._table = table
        self._sources = sources
        self._objects = str(Path(repo.path) / "objects")
        repo.free()
        self._odb = pygit2.Odb(self._objects)
        self._reads = 0
        self._cache = BaseCache()

    def read(self, oid: bytes) -> tuple[int, bytes]:
        rank = self._table.rank(oid)
        if rank >= 0:
            return self.read_rank(rank)
        return self.read_libgit2(oid)

    def read_rank(self, rank: int) -> tuple[int, bytes]:
        """``(type, data)`` of the merged object ``rank``."""
        home = self._table.home[rank]
        return self._rebuild(home >> 32, home & 0xFFFFFFFF)

    def _rebuild(self, number: int, position: int) -> tuple[int, bytes]:
        """The object at ``position`` of source ``number``, its deltas applied here.

        Goes down the chain of bases (in the same pack) to one cached or stored
        whole, then applies the deltas back up, keeping each object rebuilt in
        the cache. A base given by id (``REF_DELTA``) is read through libgit2.
        """
        source = self._sources[number]
        chain: list[int] = []
        at = position
        while True:
            found = self._cache.get((number, at))
            if found is not None:
                break
            if source.is_whole(at):
                head = source.header(at)
                found = (head.kind, source.inflate(at, head))
                self._cache.put((number, at), found)
                break
            if source.bases[at] < 0:
                found = self.read_libgit2(self._table.oids[source.ranks[at]])
                self._cache.put((number, at), found)
                break
            chain.append(at)
            at = source.bases[at]
        kind, data = found
        for at in reversed(chain):
            head = source.header(at)
            data = apply_delta(data, source.inflate(at, head), _TRUSTED_SIZE)
            self._cache.put((number, at), (kind, data))
        return kind, data

    def read_libgit2(self, oid: bytes) -> tuple[int, bytes]:
        self._reads += 1
        if self._reads % READS_PER_ODB == 0:
            self._odb = pygit2.Odb(self._objects)
        kind, data = self._odb.read(pygit2.Oid(raw=oid))
        return int(kind), data

    def oid(self, rank: int) -> bytes:
        """The id of the merged object ``rank``."""
        return self._table.oids[rank]

    def header_kind(self, oid: bytes) -> int:
        """The type of an object outside the merge."""
        return int(self._odb.read_header(pygit2.Oid(raw=oid))[0])


# -- finding earlier versions -----------------------------------------------------------


class _Trees:
    """Trees read for the walk: the set of raw entries of each, by id."""

    def __init__(self, reader: _Reader) -> None:
        self._reader = reader
        self._recent: dict[bytes, frozenset[bytes]] = {}
        self._older: dict[bytes, frozenset[bytes]] = {}

    def get(self, oid: bytes) -> frozenset[bytes]:
        found = self._recent.get(oid) or self._older.get(oid)
        if found is None:
            kind, data = self._reader.read(oid)
            if kind != objects.OBJ_TREE:
                raise OSError(f"object {oid.hex()} is not a tree")
            found = frozenset(objects.tree_entries(data))
        self._recent[oid] = found
        return found

    def next_commit(self) -> None:
        """Keep the trees of the last commit only (what the next commit is compared with)."""
        self._older, self._recent = self._recent, {}


def earlier_versions(
    reader: _Reader,
    table: _Table,
    commits: Mapping[bytes, tuple[bytes, list[bytes]]],
    order: Iterable[bytes],
) -> array[int]:
    """The rank of the earlier version of each merged object stored whole that can become
    a delta, by rank (-1: none).

    ``commits`` are the merged commits (``{id: (tree, parents)}``), walked in
    ``order`` (parents first); along the paths each commit changes from its
    first parent, a tree or file stored whole whose previous version is merged
    gets that version (the first found). Below a tree whose previous version is
    not merged, nothing is looked at: it and what it holds were written before
    the merged packs.
    """
    found = array("i", [_NONE]) * len(table)
    trees = _Trees(reader)
    whole = table.whole

    def note(new: int, old: int) -> None:
        if whole[new] and found[new] == _NONE:
            found[new] = old

    def compare(new: bytes, old: bytes) -> None:
        if new == old:
            return
        new_rank, old_rank = table.rank(new), table.rank(old)
        if new_rank < 0 or old_rank < 0:
            return
        note(new_rank, old_rank)
        new_entries = trees.get(new)
        old_entries = trees.get(old)
        before: dict[bytes, tuple[bytes, bytes]] = {}
        for raw in old_entries - new_entries:
            mode, name, child = objects.split_entry(raw)
            before[name] = (mode, child)
        for raw in new_entries - old_entries:
            mode, name, child = objects.split_entry(raw)
            previous = before.get(name)
            if previous is None or GITLINK_MODE in (mode, previous[0]):
                continue
            if mode == TREE_MODE and previous[0] == TREE_MODE:
                compare(child, previous[1])
            elif TREE_MODE not in (mode, previous[0]):
                child_rank, old_child = table.rank(child), table.rank(previous[1])
                if child_rank >= 0 and old_child >= 0:
                    note(child_rank, old_child)

    for oid in order:
        tree, parents = commits[oid]
        parent = commits.get(parents[0]) if parents else None
        if parent is not None:
            compare(tree, parent[0])
        trees.next_commit()
    return found


def _parents_first(commits: Mapping[bytes, tuple[bytes, list[bytes]]]) -> Iterator[bytes]:
    """The ids of ``commits``, each after its parents among them."""
    return objects.parents_first({oid: parents for oid, (_, parents) in commits.items()})


def _resolve_kinds(table: _Table, sources: list[PackSource], reader: _Reader) -> None:
    """Parse every entry header; fill the table's ``kinds`` and ``whole``."""
    kinds, whole = table.kinds, table.whole
    pending: list[tuple[int, bytes]] = []
    for source in sources:
        source.scan()
        ranks, stored, bases = source.ranks, source.stored, source.bases
        for position, rank in enumerate(ranks):
            kind = stored[position]
            if kind in objects.TYPE_NAMES:
                kinds[rank] = kind
                whole[rank] = 1
            elif bases[position] >= 0:
                kinds[rank] = kinds[ranks[bases[position]]]
            else:
                pending.append((rank, source.ref_bases[position]))
    for rank, base in pending:
        base_rank = table.rank(base)
        known = kinds[base_rank] if base_rank >= 0 else 0
        kinds[rank] = known or reader.header_kind(base)


def _walk(
    table: _Table, sources: list[PackSource], reader: _Reader
) -> tuple[array[int], list[PackSource]]:
    """Earlier versions found by comparing every merged commit with its parent, and the
    packs ordered by their oldest commit (packs without commits first)."""
    commits: dict[bytes, tuple[bytes, list[bytes]]] = {}
    for rank, kind in enumerate(table.kinds):
        if kind == OBJ_COMMIT:
            data = reader.read_rank(rank)[1]
            commits[table.oids[rank]] = (objects.commit_tree(data), objects.commit_parents(data))
    order = list(_parents_first(commits))
    found = earlier_versions(reader, table, commits, order)
    del commits
    first = array("i", [_NONE]) * len(table)
    for number, oid in enumerate(order):
        first[table.rank(oid)] = number
    del order

    def oldest(source: PackSource) -> int:
        return min((first[rank] for rank in source.ranks if first[rank] >= 0), default=-1)

    return found, sorted(sources, key=oldest)


# -- writing the merged pack --------------------------------------------------------------


class _Output:
    """The merged pack as it is written: a temporary file, its SHA-1, and by rank where
    each object was written, how deep a delta it is and the CRC-32 of its entry."""

    def __init__(self, handle: BinaryIO, count: int) -> None:
        self.handle = handle
        self.digest = hashlib.sha1()
        self.position = 0
        self._buffer = bytearray()
        self.written = array("q", [_NONE]) * count
        self.depths = bytearray(count)
        self.crcs = array("I", [0]) * count
        #: The rank of the base of every delta written with a new base offset (else -1).
        self.bases = array("i", [_NONE]) * count
        self.redeltified: list[int] = []
        self.entries = 0

    def emit(self, data: bytes) -> None:
        self._buffer += data
        self.position += len(data)
        if len(self._buffer) >= COPY_CHUNK:
            self.flush()

    def flush(self) -> None:
        self.handle.write(self._buffer)
        self.digest.update(self._buffer)
        self._buffer.clear()

    def copy(self, source: PackSource, first: int, stop: int) -> None:
        """Copy the entries ``first`` to ``stop - 1`` of ``source`` as they are, as one block.

        Distances between them do not change, so neither do their bytes.
        """
        if first >= stop:
            return
        start = source.offsets[first]
        shift = self.position - start
        end = source.end(stop - 1)
        for chunk in range(start, end, COPY_CHUNK):
            self.emit(source.read(chunk, min(end, chunk + COPY_CHUNK)))
        written, depths, crcs = self.written, self.depths, self.crcs
        ranks, offsets = source.ranks, source.offsets
        for position in range(first, stop):
            rank = ranks[position]
            written[rank] = offsets[position] + shift
            depths[rank] = source.depths[position]
            crcs[rank] = source.crcs[position]
        self.entries += stop - first

    def write(self, rank: int, depth: int, parts: list[bytes]) -> None:
        """Write one entry (in ``parts``) for ``rank``, made here (its CRC-32 is computed)."""
        start = self.position
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
            self.emit(part)
        self.written[rank] = start
        self.depths[rank] = min(SATURATED, depth)
        self.crcs[rank] = crc
        self.entries += 1


@dataclass(frozen=True)
class PackMerge:
    """What :func:`merge_packs` made: the new pack, its object count, and the deltas it made."""

    pack: Path
    objects: int
    redeltified: frozenset[bytes]
    #: The hinted objects whose earlier version was among the merged ones.
    settled: frozenset[bytes]


def merge_packs(
    repo: pygit2.Repository,
    pack_paths: list[Path],
    *,
    hints: Callable[[Iterable[bytes]], Mapping[bytes, bytes]] | None = None,
    walk_all: bool = False,
    durable: bool = True,
) -> PackMerge:
    """Merge the packs ``pack_paths`` (``.pack`` files of ``repo``) into one.

    Earlier versions of whole objects come from ``hints`` (``hints(ids)``
    returns ``{id: id of the earlier version at the same path}`` for those of
    ``ids`` the writer of the objects knew) and, with ``walk_all``, from
    comparing every merged commit's tree with its parent's (slower; what
    ``progreg gc`` does). The packs are written oldest first (by commit with
    ``walk_all``, else by modification time), so that earlier versions come
    before the deltas on them. The merged packs are deleted once the new one
    is in place and checked. ``durable`` flushes the new pack to the disk first.
    """
    pack_dir = Path(repo.path) / "objects" / "pack"
    sources: list[PackSource] = []
    residency = Residency()
    try:
        for path in pack_paths:
            sources.append(PackSource(path, residency))
        table = _Table(sources)
        reader = _Reader(table, sources, repo)
        _resolve_kinds(table, sources, reader)
        if walk_all:
            previous, ordered = _walk(table, sources, reader)
        else:
            previous = array("i", [_NONE]) * len(table)
            ordered = sorted(sources, key=lambda source: source.mtime)  # older objects first
        settled = _apply_hints(table, previous, hints)
        final, out, keep, existed = _write(
            pack_dir, ordered, table, previous, reader, durable, pack_paths
        )
    finally:
        for source in sources:
            source.close()
    try:
        _check(pack_dir, final, table, out)
        if not existed:
            # A merged pack that was there already may be deleted by a `git repack -d`
            # that listed it (place_pack): then the sources still hold the objects.
            merged = [path for path in pack_paths if path != final]
            delete_packs(pack_dir, merged, replaced_by=final)
    finally:
        if keep is not None:
            keep.release()
    redeltified = frozenset(table.oids[rank] for rank in out.redeltified)
    return PackMerge(final, len(table), redeltified, settled)


def _apply_hints(
    table: _Table,
    previous: array[int],
    hints: Callable[[Iterable[bytes]], Mapping[bytes, bytes]] | None,
) -> frozenset[bytes]:
    """Put the earlier versions ``hints`` knows into ``previous`` (they win); which ones."""
    if hints is None:
        return frozenset()
    settled: set[bytes] = set()
    for oid, base in hints(table.oids).items():
        rank, base_rank = table.rank(oid), table.rank(base)
        if rank >= 0 and base_rank >= 0 and base_rank != rank:
            previous[rank] = base_rank
            settled.add(oid)
    return frozenset(settled)


def _write(
    pack_dir: Path,
    sources: list[PackSource],
    table: _Table,
    previous: array[int],
    reader: _Reader,
    durable: bool,
    replaces: list[Path],
) -> tuple[Path, _Output, PackKeep | None, bool]:
    """Write the merged pack (every object of ``table`` once) and its index, kept,
    newer than the packs it ``replaces``.

    Returns the pack, what was written (offsets, deltas made, bases), the
    keep to release once the merged packs are deleted, and whether the same
    pack was there already (:func:`~progreg.git.pack.packdir.place_pack`).
    """
    temporary = Path(temporary_name(pack_dir, "pack"))
    index_temporary = Path(temporary_name(pack_dir, "idx"))
    keep: PackKeep | None = None
    count = len(table)
    try:
        with open(temporary, "xb") as handle:
            out = _Output(handle, count)
            out.emit(b"PACK" + struct.pack(">II", 2, count))
            for source in sources:
                _copy(source, out, previous, reader)
            out.flush()
            if out.entries != count:
                raise OSError(f"merging packs wrote {out.entries} objects, not {count}")
            checksum = out.digest.digest()
            handle.write(checksum)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        with open(index_temporary, "xb") as index_handle:
            packs.write_ordered_index(
                index_handle,
                len(table.oids),
                table.oids.__getitem__,
                out.crcs,
                out.written,
                checksum,
            )
            index_handle.flush()
            if durable:
                os.fsync(index_handle.fileno())
        final = pack_dir / f"pack-{checksum.hex()}.pack"
        shared = repository_settings(pack_dir.parent.parent).shared
        for path in (temporary, index_temporary):
            set_created_mode(path, READ_ONLY_MODE, shared)  # as Git's packs, see permissions
        keep, existed = place_pack(temporary, index_temporary, final, replaces=replaces)
        if durable:
            fsync_dir(pack_dir)
        return final, out, keep, existed
    except BaseException:
        for path in (temporary, index_temporary):
            with contextlib.suppress(OSError):
                os.unlink(path)
        if keep is not None:
            keep.release()
        raise


def _needs_care(source: PackSource, out: _Output, previous: array[int]) -> bool:
    """Whether some entry of ``source`` is already written or may become a delta."""
    written = out.written
    ranks = set(source.ranks)
    for rank in source.ranks:
        if written[rank] >= 0:
            return True
        base = previous[rank]
        if base >= 0 and (written[base] >= 0 or base in ranks):
            return True
    return False


def _copy(source: PackSource, out: _Output, previous: array[int], reader: _Reader) -> None:
    """Copy ``source`` into ``out``, in runs of entries that stay as they are.

    An entry changes when it becomes a delta (``previous`` names its earlier
    version, already written) or when it is a delta whose base moved
    relative to it (a changed entry lies between them); an entry already
    written (the same object in an earlier pack) is left out. Everything
    else is copied byte for byte, many entries at a time.
    """
    if not _needs_care(source, out, previous):
        out.copy(source, 0, source.count)  # nothing changes: one block
        return
    written = out.written
    offsets, bases, ranks = source.offsets, source.bases, source.ranks
    run = 0  # the first entry not written yet
    changed = -1  # source offset of the last entry left out or rewritten (none yet)
    for position, rank in enumerate(ranks):
        if written[rank] >= 0:
            out.copy(source, run, position)  # the same object from an earlier pack
            run, changed = position + 1, offsets[position]
            continue
        base = previous[rank]
        if base >= 0 and written[base] >= 0 and source.is_whole(position):
            head = source.header(position)
            if head.size >= packs.MIN_DELTA_SIZE:
                out.copy(source, run, position)
                run = position + 1
                if _redelta(source, position, head, base, out, reader):
                    changed = offsets[position]
                else:
                    out.copy(source, position, position + 1)
                continue
        if changed < 0:
            continue  # nothing before it changed: copied as it is
        base_position = bases[position]
        if base_position < 0 or offsets[base_position] > changed:
            continue  # a whole object, or a delta whose base moved along with it
        base_rank = ranks[base_position]
        out.copy(source, run, position)
        run, changed = position + 1, offsets[position]
        head = source.header(position)
        start = offsets[position]
        parts = [
            source.read(start, head.size_end)
            + packs.offset_encoding(out.position - written[base_rank]),
            source.read(head.data_start, source.end(position)),
        ]
        out.bases[rank] = base_rank
        out.write(rank, out.depths[base_rank] + 1, parts)
    out.copy(source, run, source.count)


def _redelta(
    source: PackSource,
    position: int,
    head: packs.EntryHeader,
    base: int,
    out: _Output,
    reader: _Reader,
) -> bool:
    """Write an entry as a delta against ``base`` (a rank, already written) if that is
    allowed and pays."""
    where = out.written[base]
    if where < 0:
        return False
    depth = out.depths[base] + 1
    if depth + source.height(position) > packs.MAX_DELTA_DEPTH:
        return False
    target = source.inflate(position, head)
    base_kind, base_data = reader.read_rank(base)
    if base_kind != head.kind:
        return False
    delta = make_delta(base_data, target)
    if delta is None:
        return False
    rank = source.ranks[position]
    if apply_delta(base_data, delta, len(target)) != target:
        raise OSError(f"a delta made for {reader.oid(rank).hex()} does not rebuild it")
    header = packs.entry_header(packs.OFS_DELTA, len(delta)) + packs.offset_encoding(
        out.position - where
    )
    out.bases[rank] = base
    out.write(rank, depth, [header, packs.compress(delta)])
    out.redeltified.append(rank)
    return True


def _check(pack_dir: Path, final: Path, table: _Table, out: _Output) -> None:
    """Check the merged pack before the packs it replaces are deleted.

    Its index lists exactly the merged objects; every delta whose base offset
    was computed anew points at the base it was written against; and libgit2,
    reading the pack alone (through links in a scratch directory), reads back
    an evenly spread sample of :data:`CHECK_SAMPLE` objects with the right
    ids. Raises ``OSError`` (and removes the new pack) otherwise.
    """
    scratch = pack_dir / f"tmp_check_{secrets.token_hex(8)}"
    try:
        count = len(table)
        if not _index_lists(final.with_suffix(".idx"), table.oids):
            raise OSError(f"{final.name} does not hold exactly the merged objects")
        _check_bases(final, table, out)
        (scratch / "pack").mkdir(parents=True)
        for suffix in (".pack", ".idx"):
            os.link(final.with_suffix(suffix), scratch / "pack" / final.with_suffix(suffix).name)
        odb = packed_odb(scratch)
        step = max(1, count // CHECK_SAMPLE)
        for rank in [*range(0, count, step), count - 1]:
            oid = table.oids[rank]
            kind, raw = odb.read(pygit2.Oid(raw=oid))
            if object_id(int(kind), raw) != oid:
                raise OSError(f"object {oid.hex()} reads back wrong from {final.name}")
    except BaseException:
        remove_pack(final)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _index_lists(idx: Path, oids: list[bytes]) -> bool:
    """Whether the index ``idx`` lists exactly ``oids`` (sorted), read a slice at a time."""
    if index_count(idx) != len(oids):
        return False
    with open(idx, "rb") as handle:
        handle.seek(FANOUT_END)
        for start in range(0, len(oids), _IDS_PER_READ):
            expected = b"".join(oids[start : start + _IDS_PER_READ])
            if handle.read(len(expected)) != expected:
                return False
    return True


def _check_bases(final: Path, table: _Table, out: _Output) -> None:
    """Every delta written with a new base offset points at its base in ``final``."""
    with open(final, "rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        end = len(data) - 20
        checked = 0
        for rank, base in enumerate(out.bases):
            if base < 0:
                continue
            offset = out.written[rank]
            try:
                found = packs.parse_entry_header(data, offset, end).base_offset
            except MalformedObjectError as exc:
                raise OSError(
                    f"{final.name}: the entry at offset {offset} is damaged: {exc}"
                ) from None
            if found != out.written[base]:
                oid = table.oids[rank].hex()
                raise OSError(f"{final.name}: the delta {oid} has a wrong base offset")
            checked += 1
            if checked % 64 == 0:  # each check may map 64 KiB: keep the resident set small
                data.madvise(mmap.MADV_DONTNEED)
    finally:
        data.close()


def remove_pack(path: Path) -> None:
    """Delete a pack this process just wrote and no one else knows (Git's order of files)."""
    for suffix in PACK_EXTENSIONS:
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(suffix).unlink()
