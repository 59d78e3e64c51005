"""Merging packs into one new pack, reusing what they hold.

:func:`merge_packs` is what keeps the packs writers leave behind (see
:mod:`progreg.gitstore.tailpack`) few and compact. It copies the entries of
the packs it merges as they are, in runs: a whole object, or a delta whose
base is in the same pack, keeps its bytes as long as nothing between it and
its base changed; otherwise only its base offset is encoded anew. So the cost
is mostly copying bytes. Objects stored whole although an earlier version of
the same path is among the merged objects (the first version of a path in
the pack of a writer) are stored again as deltas against that version: the
history of each path is a delta chain (at most
:data:`~progreg.gitstore.pack.MAX_DELTA_DEPTH` deep), as ``git gc`` makes.
Earlier versions come from the writer's hints (what each object it wrote
replaced) and, for ``progreg gc``, from comparing every merged commit's tree
with its first parent's, along the changed paths only.

The new pack is written under a temporary name, flushed to the disk,
renamed into place (pack first, index last) and checked, and only then are
the merged packs deleted (index first): a reader always finds every object,
in the old packs or in the new one (libgit2 and Git look for new packs when
an object is missing).
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pygit2

from progreg.errors import BundleError
from progreg.gitstore import objects
from progreg.gitstore import pack as packs
from progreg.gitstore.delta import apply_delta, make_delta
from progreg.gitstore.durability import fsync_dir
from progreg.gitstore.objects import GITLINK_MODE, OBJ_COMMIT, TREE_MODE, object_id

#: How many objects of a merged pack libgit2 reads back before the old packs go.
CHECK_SAMPLE = 32
_IDX_MAGIC = b"\xfftOc\x00\x00\x00\x02"
_FANOUT_END = 8 + 256 * 4


@dataclass(frozen=True)
class PackInfo:
    """A pack of the repository: its ``.pack`` path and how many objects it holds."""

    path: Path
    objects: int


@dataclass(slots=True)
class _Entry:
    """One entry of a pack being merged."""

    oid: bytes
    offset: int
    end: int
    crc: int
    kind: int  # as stored: 1-4 whole, 6 OFS_DELTA, 7 REF_DELTA
    size: int  # of the object, or of the delta
    size_end: int  # end of the type-and-size header
    body: int  # start of the zlib data
    base: int | None  # OFS_DELTA: offset of the base in the same pack
    base_oid: bytes | None  # REF_DELTA: id of the base


class _Source:
    """A pack being merged: its bytes (mapped) and its entries in pack order.

    The index gives every entry's id, offset, end and CRC-32; entry headers
    are parsed only when needed (a pack copied as one block never is).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        ids, crcs, offsets = read_index(path.with_suffix(".idx"))
        with open(path, "rb") as handle:
            self.data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.mtime = path.stat().st_mtime
        order = sorted(range(len(ids)), key=offsets.__getitem__)
        self.ids = [ids[i] for i in order]
        self.offsets = [offsets[i] for i in order]
        self.crcs = [crcs[i] for i in order]
        self.ends = [*self.offsets[1:], len(self.data) - 20]
        self.by_oid = dict(zip(self.ids, range(len(order)), strict=True))
        self._position = {offset: n for n, offset in enumerate(self.offsets)}
        self._parsed: dict[int, _Entry] = {}
        self._heights: dict[int, int] | None = None

    def entry(self, position: int) -> _Entry:
        """The entry at ``position`` (in pack order), parsed once."""
        found = self._parsed.get(position)
        if found is None:
            found = _parse(
                self.data,
                self.ids[position],
                self.offsets[position],
                self.ends[position],
                self.crcs[position],
            )
            if found.base is not None and found.base not in self._position:
                raise OSError(f"{self.path}: the delta at offset {found.offset} has no base entry")
            self._parsed[position] = found
        return found

    @property
    def entries(self) -> list[_Entry]:
        """Every entry, parsed, in pack order."""
        return [self.entry(position) for position in range(len(self.ids))]

    def base_of(self, entry: _Entry) -> _Entry:
        """The entry an ``OFS_DELTA`` entry is a delta against."""
        assert entry.base is not None
        return self.entry(self._position[entry.base])

    def depth(self, position: int) -> int:
        """How many deltas deep the entry at ``position`` is, in this pack."""
        depth = 0
        entry = self.entry(position)
        while entry.base is not None:
            depth += 1
            entry = self.base_of(entry)
        return depth

    def height(self, entry: _Entry) -> int:
        """The longest chain of deltas built on ``entry`` in this pack."""
        if self._heights is None:
            heights: dict[int, int] = {}
            for each in reversed(self.entries):  # bases come before the deltas on them
                if each.base is not None:
                    above = heights.get(each.offset, 0) + 1
                    heights[each.base] = max(heights.get(each.base, 0), above)
            self._heights = heights
        return self._heights.get(entry.offset, 0)

    def inflate(self, entry: _Entry) -> bytes:
        """The stored data of ``entry`` (the object, or the delta), inflated."""
        return zlib.decompress(self.data[entry.body : entry.end])

    def close(self) -> None:
        self.data.close()


def read_index(idx: Path) -> tuple[list[bytes], tuple[int, ...], list[int]]:
    """``(ids, CRC-32s, offsets)`` of a version-2 pack index, in index order."""
    data = idx.read_bytes()
    if data[:8] != _IDX_MAGIC:
        raise OSError(f"{idx} is not a version-2 pack index")
    count = struct.unpack(">I", data[_FANOUT_END - 4 : _FANOUT_END])[0]
    start = _FANOUT_END
    ids = [data[start + 20 * i : start + 20 * (i + 1)] for i in range(count)]
    start += 20 * count
    crcs = struct.unpack(f">{count}I", data[start : start + 4 * count])
    start += 4 * count
    small = struct.unpack(f">{count}I", data[start : start + 4 * count])
    start += 4 * count
    offsets = []
    for value in small:
        if value & 0x80000000:
            at = start + 8 * (value & 0x7FFFFFFF)
            offsets.append(int(struct.unpack(">Q", data[at : at + 8])[0]))
        else:
            offsets.append(value)
    return ids, crcs, offsets


def index_count(idx: Path) -> int:
    """How many objects a version-2 pack index lists (read from its fan-out table)."""
    with open(idx, "rb") as handle:
        head = handle.read(_FANOUT_END)
    if len(head) != _FANOUT_END or head[:8] != _IDX_MAGIC:
        raise OSError(f"{idx} is not a version-2 pack index")
    return int(struct.unpack(">I", head[-4:])[0])


def _parse(data: mmap.mmap, oid: bytes, start: int, stop: int, crc: int) -> _Entry:
    try:
        head = packs.parse_entry_header(data, start, stop)
    except BundleError as exc:
        raise OSError(f"a pack entry at offset {start} is damaged: {exc}") from None
    return _Entry(
        oid,
        start,
        stop,
        crc,
        head.kind,
        head.size,
        head.size_end,
        head.data_start,
        head.base_offset,
        head.base_oid,
    )


# -- finding earlier versions -----------------------------------------------------------


class _Reader:
    """Objects of the merge: whole entries straight from the merged packs, others via libgit2."""

    def __init__(self, sources: list[_Source], odb: pygit2.Odb) -> None:
        self._odb = odb
        self._sources = sources

    def read(self, oid: bytes) -> tuple[int, bytes]:
        for source in self._sources:
            position = source.by_oid.get(oid)
            if position is not None:
                entry = source.entry(position)
                if entry.kind in objects.TYPE_NAMES:
                    return entry.kind, source.inflate(entry)
                break
        kind, data = self._odb.read(pygit2.Oid(raw=oid))
        return int(kind), data


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
    commits: dict[bytes, bytes],
    walked: set[bytes],
    members: set[bytes],
    whole: set[bytes],
) -> dict[bytes, bytes]:
    """``{id: id of the earlier version}`` for objects of ``whole`` that can become deltas.

    ``commits`` are the merged commits (``{id: raw data}``); along the paths
    each commit of ``walked`` changes from its first parent, a tree or file of
    ``whole`` (stored whole) whose previous version is among ``members`` gets
    that version. Below a tree whose previous version is not merged, nothing
    is looked at: it and what it holds were written before the merged packs.
    """
    found: dict[bytes, bytes] = {}
    trees = _Trees(reader)

    def compare(new: bytes, old: bytes) -> None:
        if new == old or new not in members or old not in members:
            return
        if new in whole:
            found.setdefault(new, old)
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
            files = TREE_MODE not in (mode, previous[0])
            if mode == TREE_MODE and previous[0] == TREE_MODE:
                compare(child, previous[1])
            elif files and child in whole and previous[1] in members:
                found.setdefault(child, previous[1])

    for oid in _parents_first(commits):
        if oid not in walked:
            continue
        parents = objects.commit_parents(commits[oid])
        parent = commits.get(parents[0]) if parents else None
        if parent is not None:
            compare(objects.commit_tree(commits[oid]), objects.commit_tree(parent))
        trees.next_commit()
    return found


def _parents_first(commits: dict[bytes, bytes]) -> Iterator[bytes]:
    """The ids of ``commits`` (``{id: raw data}``), each after its parents among them."""
    return objects.parents_first(
        {oid: objects.commit_parents(data) for oid, data in commits.items()}
    )


# -- writing the merged pack --------------------------------------------------------------


class _Output:
    """The merged pack as it is written: a temporary file, its SHA-1 and its index entries."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha1()
        self.position = 0
        self._buffer = bytearray()
        self.offsets: dict[bytes, int] = {}
        self._depths: dict[bytes, int] = {}
        self._copied: dict[bytes, tuple[_Source, int]] = {}  # depth unknown until asked
        self.index: list[packs.IndexEntry] = []
        self.redeltified: set[bytes] = set()
        #: ``{id: id of its base}`` of every delta written with a new base offset.
        self.bases: dict[bytes, bytes] = {}

    def emit(self, data: bytes) -> None:
        self._buffer += data
        self.position += len(data)
        if len(self._buffer) >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        self.handle.write(self._buffer)
        self.digest.update(self._buffer)
        self._buffer.clear()

    def depth(self, oid: bytes) -> int:
        """How many deltas deep ``oid`` is in the new pack."""
        found = self._depths.get(oid)
        if found is None:
            source, position = self._copied[oid]
            found = self._depths[oid] = source.depth(position)
        return found

    def copy(self, source: _Source, first: int, stop: int) -> None:
        """Copy the entries ``first`` to ``stop - 1`` of ``source`` as they are, as one block.

        Distances between them do not change, so neither do their bytes.
        """
        if first >= stop:
            return
        start = source.offsets[first]
        shift = self.position - start
        self.emit(source.data[start : source.ends[stop - 1]])
        offsets, copied, index = self.offsets, self._copied, self.index
        for position in range(first, stop):
            oid = source.ids[position]
            offset = source.offsets[position] + shift
            offsets[oid] = offset
            copied[oid] = (source, position)
            index.append(packs.IndexEntry(oid, offset, source.crcs[position]))

    def write(self, oid: bytes, depth: int, parts: list[bytes]) -> None:
        """Write one entry (in ``parts``) for ``oid``, made here (its CRC-32 is computed)."""
        start = self.position
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
            self.emit(part)
        self.offsets[oid] = start
        self._depths[oid] = depth
        self.index.append(packs.IndexEntry(oid, start, crc))


def _kinds(sources: list[_Source], odb: pygit2.Odb) -> dict[bytes, int]:
    """The object type of every entry (a delta has its base's type)."""
    kinds: dict[bytes, int] = {}
    pending: list[_Entry] = []
    for source in sources:
        for entry in source.entries:
            if entry.kind in objects.TYPE_NAMES:
                kinds[entry.oid] = entry.kind
            elif entry.base is not None:
                kinds[entry.oid] = kinds[source.base_of(entry).oid]
            else:
                pending.append(entry)
    for entry in pending:
        assert entry.base_oid is not None
        kind = kinds.get(entry.base_oid)
        if kind is None:
            kind = int(odb.read_header(pygit2.Oid(raw=entry.base_oid))[0])
        kinds[entry.oid] = kind
    return kinds


def _walk(
    sources: list[_Source], reader: _Reader, odb: pygit2.Odb
) -> tuple[dict[bytes, bytes], list[_Source]]:
    """Earlier versions found by comparing every merged commit with its parent, and the
    packs ordered by their oldest commit (packs without commits first)."""
    kinds = _kinds(sources, odb)
    commits: dict[bytes, bytes] = {}
    whole: set[bytes] = set()
    for source in sources:
        for entry in source.entries:
            if entry.kind in objects.TYPE_NAMES:
                whole.add(entry.oid)
                if entry.kind == OBJ_COMMIT:
                    commits[entry.oid] = source.inflate(entry)
            elif kinds[entry.oid] == OBJ_COMMIT:
                commits[entry.oid] = odb.read(pygit2.Oid(raw=entry.oid))[1]
    found = earlier_versions(reader, commits, set(commits), set(kinds), whole)
    order = {oid: n for n, oid in enumerate(_parents_first(commits))}

    def oldest(source: _Source) -> int:
        return min((order[oid] for oid in source.ids if oid in order), default=-1)

    return found, sorted(sources, key=oldest)


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_packs` made: the new pack, its object count, and the deltas it made."""

    pack: Path
    objects: int
    redeltified: frozenset[bytes]
    #: The objects that had an earlier version among the merged ones.
    settled: frozenset[bytes]


def merge_packs(
    repo: pygit2.Repository,
    pack_paths: list[Path],
    *,
    hints: Callable[[Iterable[bytes]], Mapping[bytes, bytes]] | None = None,
    walk_all: bool = False,
    durable: bool = True,
) -> MergeResult:
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
    sources = [_Source(path) for path in pack_paths]
    try:
        odb = repo.odb
        members = {oid for source in sources for oid in source.ids}
        known = hints(members) if hints is not None else {}
        previous = {oid: base for oid, base in known.items() if base in members and base != oid}
        reader = _Reader(sources, odb)
        if walk_all:
            found, ordered = _walk(sources, reader, odb)
            previous = {**found, **previous}
        else:
            ordered = sorted(sources, key=lambda source: source.mtime)  # older objects first
        final, out = _write(pack_dir, ordered, len(members), previous, reader, durable)
    finally:
        for source in sources:
            source.close()
    _check(pack_dir, final, members, out)
    for path in pack_paths:
        if path != final:
            remove_pack(path)
    return MergeResult(final, len(members), frozenset(out.redeltified), frozenset(previous))


def _write(
    pack_dir: Path,
    sources: list[_Source],
    count: int,
    previous: dict[bytes, bytes],
    reader: _Reader,
    durable: bool,
) -> tuple[Path, _Output]:
    """Write the merged pack (``count`` distinct objects) and its index.

    Returns the pack and what was written (offsets, deltas made, bases).
    """
    temporary = pack_dir / f"tmp_pack_{secrets.token_hex(8)}"
    index_temporary = pack_dir / f"tmp_idx_{secrets.token_hex(8)}"
    try:
        with open(temporary, "xb") as handle:
            out = _Output(handle)
            out.emit(b"PACK" + struct.pack(">II", 2, count))
            for source in sources:
                _copy(source, out, previous, reader)
            out.flush()
            if len(out.index) != count:
                raise OSError(f"merging packs wrote {len(out.index)} objects, not {count}")
            checksum = out.digest.digest()
            handle.write(checksum)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        with open(index_temporary, "xb") as index_handle:
            packs.write_index(index_handle, out.index, checksum)
            index_handle.flush()
            if durable:
                os.fsync(index_handle.fileno())
        final = pack_dir / f"pack-{checksum.hex()}.pack"
        for path in (temporary, index_temporary):
            os.chmod(path, 0o444)
        os.replace(temporary, final)
        os.replace(index_temporary, final.with_suffix(".idx"))
        if durable:
            fsync_dir(pack_dir)
        return final, out
    except BaseException:
        for path in (temporary, index_temporary):
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise


def _copy(source: _Source, out: _Output, previous: dict[bytes, bytes], reader: _Reader) -> None:
    """Copy ``source`` into ``out``, in runs of entries that stay as they are.

    An entry changes when it becomes a delta (``previous`` names its earlier
    version, already written) or when it is a delta whose base moved
    relative to it (a changed entry lies between them); an entry already
    written (the same object in an earlier pack) is left out. Everything
    else is copied byte for byte, many entries at a time.
    """
    written = out.offsets
    ids = source.ids
    if written.keys().isdisjoint(ids) and not any(
        base in written or base in source.by_oid
        for base in (previous.get(oid) for oid in ids)
        if base is not None
    ):
        out.copy(source, 0, len(ids))  # nothing changes: one block
        return
    run = 0  # the first entry not written yet
    changed = -1  # source offset of the last entry left out or rewritten (none yet)
    for position, oid in enumerate(ids):
        if oid in written:
            out.copy(source, run, position)  # the same object from an earlier pack
            run, changed = position + 1, source.offsets[position]
            continue
        base = previous.get(oid)
        if base is not None and base in written:
            entry = source.entry(position)
            if entry.kind in objects.TYPE_NAMES and entry.size >= packs.MIN_DELTA_SIZE:
                out.copy(source, run, position)
                run = position + 1
                if _redelta(source, entry, base, out, reader):
                    changed = entry.offset
                else:
                    out.copy(source, position, position + 1)
                continue
        if changed < 0:
            continue  # nothing before it changed: copied as it is
        entry = source.entry(position)
        if entry.base is None or entry.base > changed:
            continue  # a whole object, or a delta whose base moved along with it
        base_oid = source.base_of(entry).oid
        out.copy(source, run, position)
        run, changed = position + 1, entry.offset
        head = source.data[entry.offset : entry.size_end] + packs.offset_encoding(
            out.position - written[base_oid]
        )
        out.bases[oid] = base_oid
        out.write(oid, out.depth(base_oid) + 1, [head, source.data[entry.body : entry.end]])
    out.copy(source, run, len(ids))


def _redelta(source: _Source, entry: _Entry, base: bytes, out: _Output, reader: _Reader) -> bool:
    """Write ``entry`` as a delta against ``base`` (already written) if that is allowed and pays."""
    where = out.offsets.get(base)
    if where is None:
        return False
    depth = out.depth(base) + 1
    if depth + source.height(entry) > packs.MAX_DELTA_DEPTH:
        return False
    target = source.inflate(entry)
    base_kind, base_data = reader.read(base)
    if base_kind != entry.kind:
        return False
    delta = make_delta(base_data, target)
    if delta is None:
        return False
    if apply_delta(base_data, delta, len(target)) != target:
        raise OSError(f"a delta made for {entry.oid.hex()} does not rebuild it")
    head = packs.entry_header(packs.OFS_DELTA, len(delta)) + packs.offset_encoding(
        out.position - where
    )
    out.bases[entry.oid] = base
    out.write(entry.oid, depth, [head, packs.compress(delta)])
    out.redeltified.add(entry.oid)
    return True


def _check(pack_dir: Path, final: Path, expected: set[bytes], out: _Output) -> None:
    """Check the merged pack before the packs it replaces are deleted.

    Its index lists exactly the merged objects; every delta whose base offset
    was computed anew points at the base it was written against; and libgit2,
    reading the pack alone (through links in a scratch directory), reads back
    an evenly spread sample of :data:`CHECK_SAMPLE` objects with the right
    ids. Raises ``OSError`` (and removes the new pack) otherwise.
    """
    scratch = pack_dir / f"tmp_check_{secrets.token_hex(8)}"
    try:
        ids = read_index(final.with_suffix(".idx"))[0]
        if len(ids) != len(expected) or not expected.issuperset(ids):
            raise OSError(f"{final.name} does not hold exactly the merged objects")
        with open(final, "rb") as handle:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            end = len(data) - 20
            for oid, base in out.bases.items():
                offset = out.offsets[oid]
                if _parse(data, oid, offset, end, 0).base != out.offsets[base]:
                    raise OSError(f"{final.name}: the delta {oid.hex()} has a wrong base offset")
        finally:
            data.close()
        (scratch / "pack").mkdir(parents=True)
        for suffix in (".pack", ".idx"):
            os.link(final.with_suffix(suffix), scratch / "pack" / final.with_suffix(suffix).name)
        odb = pygit2.Odb()
        odb.add_backend(pygit2.OdbBackendPack(str(scratch)), 1)
        step = max(1, len(ids) // CHECK_SAMPLE)
        for oid in [*ids[::step], ids[-1]]:
            kind, raw = odb.read(pygit2.Oid(raw=oid))
            if object_id(int(kind), raw) != oid:
                raise OSError(f"object {oid.hex()} reads back wrong from {final.name}")
    except BaseException:
        remove_pack(final)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def remove_pack(path: Path) -> None:
    """Delete a pack: its index first (so no reader starts using it), then the rest."""
    for suffix in (".idx", ".rev", ".bitmap", ".mtimes", ".pack"):
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(suffix).unlink()
