"""Git pack files, by hand: writing, indexing and thin-pack completion.

The formats are those of ``gitformat-pack``: a pack is ``PACK``, a version
(2 or 3), an object count, the entries and the SHA-1 of everything before it.
Each entry is a type-and-size header followed by zlib data; deltas are either
``OFS_DELTA`` (base given by a negative offset in the same pack) or
``REF_DELTA`` (base given by its id, possibly outside the pack: a *thin*
pack). An index (``.idx`` version 2) maps ids to offsets.

pygit2 exposes no pack indexer, and its ``PackBuilder`` recomputes every delta
and can only write a pack to a directory; this module does what progreg needs
in Python with ``zlib`` and ``hashlib`` doing the heavy work in C.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import mmap
import struct
import sys
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from progreg.git.errors import MalformedObjectError
from progreg.git.objects.delta import apply_delta
from progreg.git.objects.encoding import OBJ_TREE, TYPE_NAMES, object_id
from progreg.git.pack.mapped import FAULT_AROUND, RELEASE_STEP

OFS_DELTA = 6
REF_DELTA = 7

#: Longest delta chain the writer makes (``pack.depth`` in Git defaults to 50).
MAX_DELTA_DEPTH = 50
#: Objects smaller than this are stored whole: a delta would save little.
MIN_DELTA_SIZE = 256
#: zlib level of written entries (Git's default ``core.compression`` is 6, but
#: level 1 is 2-3x faster on program documents for a few percent more bytes).
DEFAULT_LEVEL = 1
_TRAILER = 20


def entry_header(kind: int, size: int) -> bytes:
    """The type-and-size header of a pack entry."""
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def offset_encoding(distance: int) -> bytes:
    """Git's encoding of an ``OFS_DELTA`` base distance."""
    out = bytearray([distance & 0x7F])
    distance >>= 7
    while distance:
        distance -= 1
        out.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(out)


# -- writing --------------------------------------------------------------------


class PackWriter:
    """Stream a pack into a seekable binary file.

    The object count is patched into the header and the SHA-1 trailer
    computed by :meth:`finish`, so objects can be written as they are found
    without holding them all in memory.
    """

    def __init__(self, out: BinaryIO, level: int = DEFAULT_LEVEL) -> None:
        self._out = out
        self._level = level
        self._start = out.tell()
        self._position = 0
        self.count = 0
        self.offsets: dict[bytes, int] = {}
        self._write(b"PACK" + struct.pack(">II", 2, 0))

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._position += len(data)

    def add(self, oid: bytes, kind: int, data: bytes) -> None:
        """Add a whole object."""
        self.offsets[oid] = self._position
        self._write(entry_header(kind, len(data)) + zlib.compress(data, self._level))
        self.count += 1

    def add_delta(self, oid: bytes, base: bytes, delta: bytes) -> None:
        """Add an object as ``delta`` against ``base`` (in this pack: OFS, else REF: thin)."""
        start = self._position
        self.offsets[oid] = start
        base_offset = self.offsets.get(base)
        if base_offset is not None:
            head = entry_header(OFS_DELTA, len(delta)) + offset_encoding(start - base_offset)
        else:
            head = entry_header(REF_DELTA, len(delta)) + base
        self._write(head + zlib.compress(delta, self._level))
        self.count += 1

    def finish(self) -> bytes:
        """Patch the object count, append the SHA-1 trailer; return the pack's checksum."""
        out = self._out
        out.flush()
        out.seek(self._start + 8)
        out.write(struct.pack(">I", self.count))
        out.flush()
        out.seek(self._start)
        digest = hashlib.sha1()
        remaining = self._position
        while remaining:
            chunk = out.read(min(remaining, 1 << 20))
            if not chunk:
                raise OSError("the pack being written was truncated underneath")
            digest.update(chunk)
            remaining -= len(chunk)
        checksum = digest.digest()
        out.seek(self._start + self._position)
        out.write(checksum)
        self._position += len(checksum)
        return checksum

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._position


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """``data`` as a zlib stream, with a window and memory sized to it.

    ``zlib.compress`` sets up 256 KB of state for any input, which costs more
    than compressing an object of a few hundred bytes; any zlib stream is
    valid in a pack or a loose object.
    """
    window = max(9, min(15, (len(data) - 1).bit_length()))
    deflate = zlib.compressobj(level, zlib.DEFLATED, window, max(1, min(8, window - 6)))
    return deflate.compress(data) + deflate.flush()


#: zlib level of a tree written whole by a commit: stored, not compressed. A
#: tree is mostly object ids, which do not compress (level 1 saves about 20%
#: of a directory of 256 entries and costs 17 times as long); merges re-delta
#: trees.
TREE_LEVEL = 0


def level_of(kind: int) -> int:
    """The zlib level a commit writes an object of type ``kind`` at."""
    return TREE_LEVEL if kind == OBJ_TREE else DEFAULT_LEVEL


def pack_bytes(objects: Iterable[tuple[bytes, int, bytes]]) -> tuple[bytes, list[IndexEntry]]:
    """A whole pack of ``(id, type, data)`` objects, each stored whole, and its index entries.

    For the few objects of one commit, built in memory; an id given twice is
    stored once, each at :func:`level_of` its type. The pack's checksum is
    its last 20 bytes.
    """
    body = bytearray(b"PACK\x00\x00\x00\x02\x00\x00\x00\x00")
    entries: list[IndexEntry] = []
    seen: set[bytes] = set()
    for oid, kind, data in objects:
        if oid in seen:
            continue
        seen.add(oid)
        entry = entry_header(kind, len(data)) + compress(data, level_of(kind))
        entries.append(IndexEntry(oid, len(body), zlib.crc32(entry)))
        body += entry
    body[8:12] = struct.pack(">I", len(entries))
    body += hashlib.sha1(body).digest()
    return bytes(body), entries


# -- reading --------------------------------------------------------------------


@dataclass
class IndexEntry:
    """One object of an indexed pack: its id, where it starts and the CRC-32 of its entry."""

    oid: bytes
    offset: int
    crc: int


class IndexedPack:
    """What :func:`index_pack` learnt: every object, and the external bases thin deltas used.

    The objects are held compactly, in pack order: their ids (20 bytes each, end
    to end), offsets and CRC-32s. :attr:`entries` lists them as :class:`IndexEntry`;
    :meth:`write_index` writes the ``.idx`` without building that list.
    """

    def __init__(
        self,
        oids: bytes,
        offsets: array[int],
        crcs: array[int],
        checksum: bytes,
        version: int,
        external: dict[bytes, tuple[int, bytes]] | None = None,
    ) -> None:
        self.oids = oids
        self.offsets = offsets
        self.crcs = crcs
        self.checksum = checksum
        self.version = version
        self.external = external if external is not None else {}

    def __len__(self) -> int:
        return len(self.offsets)

    def oid(self, index: int) -> bytes:
        """The id of the pack's ``index``-th object."""
        return self.oids[20 * index : 20 * index + 20]

    @property
    def entries(self) -> list[IndexEntry]:
        """Every object of the pack, in pack order."""
        return [IndexEntry(self.oid(i), self.offsets[i], self.crcs[i]) for i in range(len(self))]

    def write_index(
        self, out: BinaryIO, added: Iterable[IndexEntry] = (), checksum: bytes | None = None
    ) -> None:
        """Write what :func:`write_index` writes for :attr:`entries` and ``added``.

        ``checksum`` is the pack's (by default the indexed pack's; another one
        once the pack is completed with ``added``).
        """
        extra = list(added)
        oids = self.oids + b"".join(entry.oid for entry in extra)
        offsets = array("Q", self.offsets)
        offsets.extend(entry.offset for entry in extra)
        crcs = array("I", self.crcs)
        crcs.extend(entry.crc for entry in extra)
        write_sorted_index(out, oids, offsets, crcs, checksum or self.checksum)


#: ``external(oid)`` returns ``(type, data)`` of an object outside the pack, or ``None``.
ExternalReader = Callable[[bytes], tuple[int, bytes] | None]
#: ``visit(oid, type, data)`` is called once for every object of the pack.
Visitor = Callable[[bytes, int, bytes], None]
#: ``progress(done, total)``: how far a long pack operation is, in its own units.
Progress = Callable[[int, int], None]
#: ``release(start, end)``: the pack's bytes ``start`` to ``end`` need not stay in memory
#: (see :class:`~progreg.git.pack.mapped.MappedFile`); reading them again must still work.
Release = Callable[[int, int], None]

#: Bytes of memory one kept object costs besides its data (a ``bytes``, a dict slot).
_KEPT_OVERHEAD = 128


def _no_release(start: int, end: int) -> None:
    """Keep everything: the pack is in memory anyway."""


def _inflate(pack: memoryview, pos: int, size: int, limit: int) -> tuple[bytes, int]:
    """Inflate the zlib stream at ``pos`` that must give exactly ``size`` bytes."""
    inflater = zlib.decompressobj()
    chunk = size + (size >> 6) + 64
    end = min(limit, pos + chunk)
    try:
        out = inflater.decompress(pack[pos:end], size + 1)
        while not inflater.eof and len(out) <= size:
            if inflater.unconsumed_tail:
                out += inflater.decompress(inflater.unconsumed_tail, size + 1 - len(out))
                continue
            if end >= limit:
                break
            start, end = end, min(limit, end + max(chunk, 65536))
            out += inflater.decompress(pack[start:end], size + 1 - len(out))
    except zlib.error as exc:
        raise MalformedObjectError(
            f"the pack is corrupt: bad zlib data at offset {pos} ({exc})"
        ) from exc
    if not inflater.eof or len(out) != size:
        raise MalformedObjectError(
            f"the pack is truncated or corrupt: the entry at offset {pos} does not inflate"
            f" to its {size} announced bytes"
        )
    return out, end - len(inflater.unused_data)


def _delta_limit(max_object_size: int) -> int:
    return max_object_size + (max_object_size >> 2) + 64


class EntryHeader(NamedTuple):
    """The header of a pack entry."""

    kind: int
    size: int  # of the object, or of the delta
    size_end: int  # offset just after the type and size
    base_offset: int | None  # of an OFS_DELTA's base
    base_oid: bytes | None  # of a REF_DELTA's base
    data_start: int  # offset of the compressed data


def parse_entry_header(pack: memoryview | mmap.mmap, pos: int, limit: int) -> EntryHeader:
    """Parse the header of the entry at ``pos`` of a pack (which ends at ``limit``).

    Raises :class:`~progreg.MalformedObjectError` on a malformed or truncated header.
    """
    start = pos
    if pos >= limit:
        raise MalformedObjectError("the pack is truncated: fewer entries than announced")
    byte = pack[pos]
    pos += 1
    kind = (byte >> 4) & 7
    size = byte & 0x0F
    shift = 4
    while byte & 0x80:
        if pos >= limit or shift > 60:
            raise MalformedObjectError(f"the pack has a malformed entry header at offset {start}")
        byte = pack[pos]
        pos += 1
        size |= (byte & 0x7F) << shift
        shift += 7
    size_end = pos
    if kind == OFS_DELTA:
        distance = -1
        while distance < 0 or byte & 0x80:
            if pos >= limit or distance > 1 << 60:
                raise MalformedObjectError(f"the pack has a malformed delta at offset {start}")
            byte = pack[pos]
            pos += 1
            distance = (byte & 0x7F) if distance < 0 else ((distance + 1) << 7) | (byte & 0x7F)
        base_offset = start - distance
        if base_offset < 12 or base_offset >= start:
            raise MalformedObjectError(f"the delta at offset {start} names an invalid base offset")
        return EntryHeader(kind, size, size_end, base_offset, None, pos)
    if kind == REF_DELTA:
        if pos + 20 > limit:
            raise MalformedObjectError(f"the pack is truncated in the delta at offset {start}")
        return EntryHeader(kind, size, size_end, None, bytes(pack[pos : pos + 20]), pos + 20)
    if kind not in TYPE_NAMES:
        raise MalformedObjectError(
            f"the pack has an entry of unknown type {kind} at offset {start}"
        )
    return EntryHeader(kind, size, size_end, None, None, pos)


#: Delta bases :func:`index_pack` may need to hold at once (the bases of one delta
#: chain, as it rebuilds them): a pack that needs more is refused.
MAX_RETAINED_BYTES = 256 * 1024 * 1024
#: Inflated deltas and bases :func:`index_pack` keeps between its two passes at most;
#: beyond, it remembers where they are and inflates them again.
MAX_CACHED_BYTES = 32 * 1024 * 1024
#: Objects :func:`index_pack` may produce (inflated or rebuilt from deltas), in bytes
#: per byte of pack, above :data:`MIN_WORK_BYTES`: a registry's pack expands about
#: ten times, a zlib or delta bomb thousands of times.
MAX_EXPANSION = 256
MIN_WORK_BYTES = 1024 * 1024 * 1024


class _Budget:
    """What indexing one pack may hold in memory and produce, and what it used so far."""

    def __init__(self, pack_size: int, retained: int) -> None:
        self.held = 0
        self.produced = 0
        self.max_held = retained
        self.max_cached = min(retained, MAX_CACHED_BYTES)
        self.max_produced = MIN_WORK_BYTES + MAX_EXPANSION * pack_size

    def keep(self, size: int, limit: int) -> bool:
        """Whether ``size`` more bytes may stay in memory under ``limit`` (then counted)."""
        if self.held + size > limit:
            return False
        self.held += size
        return True

    def produce(self, size: int) -> None:
        """Count ``size`` bytes inflated or rebuilt; refuse a pack that expands too much."""
        self.produced += size
        if self.produced > self.max_produced:
            raise MalformedObjectError(
                f"the pack expands to more than {self.max_produced} bytes of objects"
                " (a compression or delta bomb?); refusing it"
            )


def index_pack(
    pack: memoryview,
    *,
    external: ExternalReader,
    visit: Visitor,
    max_object_size: int,
    max_retained_bytes: int = MAX_RETAINED_BYTES,
    release: Release = _no_release,
) -> IndexedPack:
    """Parse and check a whole pack; resolve its deltas; return what it holds.

    Checks the signature, version, object count and SHA-1 trailer, inflates
    every entry (refusing objects over ``max_object_size`` bytes before
    inflating them), resolves ``OFS_DELTA`` and ``REF_DELTA`` chains (bases
    missing from the pack are asked of ``external``: a thin pack), and
    computes every object's id. Raises :class:`MalformedObjectError` on any defect.

    Memory and work are bounded whatever the pack holds. The first pass
    keeps a few facts per object (offsets, sizes, CRC-32, id, base), and at
    most :data:`MAX_CACHED_BYTES` of inflated deltas and of the recent objects
    they build on; the second rebuilds each delta from its base, depth first,
    holding only the bases of the chain it is in (at most
    ``max_retained_bytes`` in all), and inflates again what was not kept. A
    pack that expands more than :data:`MAX_EXPANSION` times its size is
    refused. ``release`` is told of every range of the pack read (every
    :data:`RELEASE_STEP` bytes), so that a mapped pack need not stay resident.
    """
    total = len(pack)
    if total < 12 + _TRAILER or bytes(pack[:4]) != b"PACK":
        raise MalformedObjectError("the bundle's pack is missing or truncated (no PACK header)")
    version, count = struct.unpack(">II", pack[4:12])
    if version not in (2, 3):
        raise MalformedObjectError(f"the bundle's pack has unsupported version {version}")
    limit = total - _TRAILER
    if count > limit:
        raise MalformedObjectError(
            f"the pack announces {count} objects but is only {total} bytes long"
        )
    digest = hashlib.sha1()
    for start in range(0, limit, RELEASE_STEP):
        end = min(limit, start + RELEASE_STEP)
        digest.update(pack[start:end])
        release(start, end)
    if digest.digest() != bytes(pack[limit:]):
        raise MalformedObjectError(
            "the pack's SHA-1 checksum does not match: the bundle is truncated or corrupt"
        )
    budget = _Budget(total, max_retained_bytes)
    table = _Table(count)
    pos = released = 12
    for index in range(count):
        if pos - released >= RELEASE_STEP:
            release(released, pos)
            released = pos
        start = pos
        kind, size, _, base_offset, base_oid, data_start = parse_entry_header(pack, pos, limit)
        limit_for_kind = max_object_size if kind in TYPE_NAMES else _delta_limit(max_object_size)
        if size > limit_for_kind:
            raise MalformedObjectError(
                f"an object in the pack is {size} bytes, over the limit of {max_object_size}"
            )
        data, pos = _inflate(pack, data_start, size, limit)
        budget.produce(size)
        table.add(start, zlib.crc32(pack[start:pos]), kind, data_start, size)
        if base_offset is not None:
            table.cache_base(table.link_offset(index, base_offset), budget)
            table.cache(index, data, budget)
        elif base_oid is not None:
            table.link_oid(index, base_oid)
            table.cache(index, data, budget)
        else:
            oid = object_id(kind, data)
            table.set_oid(index, oid)
            table.remember(index, data, budget)
            visit(oid, kind, data)
        del data
    if pos != limit:
        raise MalformedObjectError(
            f"the pack has {limit - pos} unexpected bytes after its last entry"
        )
    release(released, pos)
    table.forget_recent(budget)
    resolver = _Resolver(pack, limit, table, external, visit, budget, release)
    resolver.resolve(max_object_size)
    release(0, limit)
    return IndexedPack(
        oids=bytes(table.oids),
        offsets=table.offsets,
        crcs=table.crcs,
        checksum=bytes(pack[limit:]),
        version=version,
        external=resolver.external_used,
    )


class _Table:
    """What the first pass of :func:`index_pack` learns, a few dozen bytes per object.

    Objects are numbered in pack order. A delta's base is another object's
    number (``OFS_DELTA``) or an id (``REF_DELTA``, in :attr:`ref_children`).
    Inflated data is kept in :attr:`cached` for deltas and for the bases of
    ``OFS_DELTA`` seen in the last few objects (:attr:`recent`), within the
    budget's cache limit.
    """

    def __init__(self, count: int) -> None:
        self.offsets = array("Q")
        self.crcs = array("I")
        self.kinds = bytearray()
        self.data_starts = array("Q")
        self.sizes = array("Q")
        self.bases = array("q")  # an OFS_DELTA's base number, else -1
        self.oids = bytearray(20 * count)
        self.ofs_children = 0
        self.ref_children: dict[bytes, list[int]] = {}
        self.cached: dict[int, bytes] = {}
        self.recent: OrderedDict[int, bytes] = OrderedDict()

    def add(self, offset: int, crc: int, kind: int, data_start: int, size: int) -> None:
        """Record the next entry of the pack."""
        self.offsets.append(offset)
        self.crcs.append(crc)
        self.kinds.append(kind)
        self.data_starts.append(data_start)
        self.sizes.append(size)
        self.bases.append(-1)

    def link_offset(self, index: int, base_offset: int) -> int:
        """Make object ``index`` a delta on the entry at ``base_offset``; return its number."""
        base = bisect.bisect_left(self.offsets, base_offset, 0, index)
        if base == index or self.offsets[base] != base_offset:
            raise MalformedObjectError(
                f"the delta at offset {self.offsets[index]} refers to offset {base_offset},"
                " which starts no entry"
            )
        self.bases[index] = base
        self.ofs_children += 1
        return base

    def link_oid(self, index: int, base_oid: bytes) -> None:
        """Make object ``index`` a delta on the object ``base_oid``."""
        self.ref_children.setdefault(base_oid, []).append(index)

    def set_oid(self, index: int, oid: bytes) -> None:
        self.oids[20 * index : 20 * index + 20] = oid

    def oid(self, index: int) -> bytes:
        return bytes(self.oids[20 * index : 20 * index + 20])

    def cache(self, index: int, data: bytes, budget: _Budget) -> None:
        """Keep the data of object ``index`` for the second pass, if the budget allows."""
        while not budget.keep(_KEPT_OVERHEAD + len(data), budget.max_cached):
            if not self.recent:
                return
            _, dropped = self.recent.popitem(last=False)
            budget.held -= _KEPT_OVERHEAD + len(dropped)
        self.cached[index] = data

    def remember(self, index: int, data: bytes, budget: _Budget) -> None:
        """Keep a whole object a while, in case a delta soon builds on it."""
        if budget.keep(_KEPT_OVERHEAD + len(data), budget.max_cached):
            self.recent[index] = data

    def cache_base(self, base: int, budget: _Budget) -> None:
        """A delta builds on object ``base``: keep it for the second pass if it is recent."""
        data = self.recent.pop(base, None)
        if data is not None:
            self.cached[base] = data

    def forget_recent(self, budget: _Budget) -> None:
        """Drop the whole objects no ``OFS_DELTA`` builds on."""
        for data in self.recent.values():
            budget.held -= _KEPT_OVERHEAD + len(data)
        self.recent.clear()

    def children(self) -> tuple[array[int], array[int]]:
        """The ``OFS_DELTA`` deltas on each object: ``firsts[n]:firsts[n + 1]`` of ``order``."""
        count = len(self.offsets)
        firsts = array("I", bytes(4 * (count + 1)))
        for base in self.bases:
            if base >= 0:
                firsts[base + 1] += 1
        for index in range(count):
            firsts[index + 1] += firsts[index]
        filled = array("I", firsts)
        order = array("I", bytes(4 * self.ofs_children))
        for index, base in enumerate(self.bases):
            if base >= 0:
                order[filled[base]] = index
                filled[base] += 1
        return firsts, order


class _Resolver:
    """The second pass of :func:`index_pack`: rebuild every delta from its base, depth first.

    Each base with deltas on it is read (or inflated again) once; the deltas
    on it are rebuilt, and those that are themselves bases descended into,
    so that only the bases of the current chain are held in memory.
    """

    def __init__(
        self,
        pack: memoryview,
        limit: int,
        table: _Table,
        external: ExternalReader,
        visit: Visitor,
        budget: _Budget,
        release: Release,
    ) -> None:
        self.pack = pack
        self.limit = limit
        self.table = table
        self.external = external
        self.visit = visit
        self.budget = budget
        self.release = release
        self.reread = 0  # bytes of the pack read since the last release
        self.external_used: dict[bytes, tuple[int, bytes]] = {}
        self.firsts, self.order = table.children()
        self.resolved = 0

    def _data(self, index: int) -> bytes:
        """The inflated data of object ``index``: kept by the first pass, or inflated again."""
        table = self.table
        data = table.cached.pop(index, None)
        if data is not None:
            self.budget.held -= _KEPT_OVERHEAD + len(data)
            return data
        size = table.sizes[index]
        start = table.data_starts[index]
        self.budget.produce(size)
        data, end = _inflate(self.pack, start, size, self.limit)
        self.reread += max(end - start, FAULT_AROUND)
        if self.reread >= RELEASE_STEP:
            self.release(0, self.limit)
            self.reread = 0
        return data

    def _children(self, index: int | None, oid: bytes) -> list[int]:
        """The deltas on object ``index`` (or on an object outside the pack) not yet rebuilt."""
        found = []
        if index is not None:
            found = list(self.order[self.firsts[index] : self.firsts[index + 1]])
        if self.table.ref_children:
            found += self.table.ref_children.pop(oid, [])
        return found

    def resolve(self, max_object_size: int) -> None:
        """Rebuild every delta (asking ``external`` for the bases of a thin pack)."""
        table = self.table
        kinds = table.kinds
        firsts = self.firsts
        for index in range(len(table.offsets)):
            kind = kinds[index]
            if kind in (OFS_DELTA, REF_DELTA):
                continue
            if firsts[index + 1] == firsts[index] and (
                not table.ref_children or table.oid(index) not in table.ref_children
            ):
                continue
            self._descend(index, table.oid(index), kind, self._data(index), max_object_size)
        while table.ref_children:
            missing = next(iter(table.ref_children))
            found = self.external(missing)
            if found is None:
                raise MalformedObjectError(
                    f"the pack is thin and its delta base {missing.hex()} is neither in the"
                    " pack nor in the repository"
                )
            self.external_used[missing] = found
            self._descend(None, missing, found[0], found[1], max_object_size)
        deltas = table.ofs_children + sum(kind == REF_DELTA for kind in kinds)
        if self.resolved != deltas:
            raise MalformedObjectError(
                f"{deltas - self.resolved} delta(s) of the pack build on each other in a"
                " cycle: they cannot be resolved"
            )

    def _descend(
        self, index: int | None, oid: bytes, kind: int, data: bytes, max_object_size: int
    ) -> None:
        """Rebuild the deltas on ``data`` (object ``index``, or outside the pack), and theirs."""
        budget = self.budget
        stack = [(kind, data, self._children(index, oid))]
        self._hold(len(data))
        while stack:
            kind, base, pending = stack[-1]
            if not pending:
                stack.pop()
                budget.held -= len(base)
                continue
            child = pending.pop()
            if not pending:  # the last delta on this base: the base is not needed after it
                stack.pop()
                budget.held -= len(base)
            rebuilt = apply_delta(base, self._data(child), max_object_size)
            budget.produce(len(rebuilt))
            child_oid = object_id(kind, rebuilt)
            self.table.set_oid(child, child_oid)
            self.resolved += 1
            self.visit(child_oid, kind, rebuilt)
            grandchildren = self._children(child, child_oid)
            if grandchildren:
                self._hold(len(rebuilt))
                stack.append((kind, rebuilt, grandchildren))

    def _hold(self, size: int) -> None:
        if not self.budget.keep(size, self.budget.max_held):
            raise MalformedObjectError(
                f"the pack holds more than {self.budget.max_held} bytes of delta bases"
                " at once; refusing it"
            )


def complete_thin(
    pack: bytes, external: dict[bytes, tuple[int, bytes]], level: int = DEFAULT_LEVEL
) -> tuple[bytes, list[IndexEntry]]:
    """Append the external delta bases to a thin pack; return the new pack and their entries.

    This is ``git index-pack --fix-thin``: the result is self-contained, so
    it can sit in a repository's ``objects/pack`` like any other pack.
    """
    if not external:
        return pack, []
    out = io.BytesIO()
    _, added = write_completed(out, memoryview(pack), external, level)
    return out.getvalue(), added


def write_completed(
    out: BinaryIO,
    pack: memoryview,
    external: dict[bytes, tuple[int, bytes]],
    level: int = DEFAULT_LEVEL,
    release: Release = _no_release,
) -> tuple[bytes, list[IndexEntry]]:
    """Write the (indexed) ``pack`` to ``out``, completed as :func:`complete_thin` does.

    The pack is copied :data:`RELEASE_STEP` bytes at a time (``release`` is
    told of each range copied), never whole in memory. Returns the checksum
    of the pack written and the entries of the bases appended.
    """
    limit = len(pack) - _TRAILER
    digest = hashlib.sha1()

    def write(data: bytes | bytearray | memoryview) -> None:
        out.write(data)
        digest.update(data)

    head = bytearray(pack[:12])
    head[8:12] = struct.pack(">I", struct.unpack(">I", head[8:12])[0] + len(external))
    write(head)
    for start in range(12, limit, RELEASE_STEP):
        end = min(limit, start + RELEASE_STEP)
        write(pack[start:end])
        release(start, end)
    if not external:  # the same bytes: the same checksum
        out.write(pack[limit:])
        return bytes(pack[limit:]), []
    position = limit
    added = []
    for oid, (kind, data) in external.items():
        entry = entry_header(kind, len(data)) + zlib.compress(data, level)
        added.append(IndexEntry(oid, position, zlib.crc32(entry)))
        write(entry)
        position += len(entry)
    checksum = digest.digest()
    out.write(checksum)
    return checksum, added


def write_index(out: BinaryIO, entries: Iterable[IndexEntry], pack_checksum: bytes) -> None:
    """Write a version-2 pack index (``.idx``) for ``entries``."""
    unique: dict[bytes, IndexEntry] = {}
    for entry in entries:
        unique.setdefault(entry.oid, entry)
    ordered = [unique[oid] for oid in sorted(unique)]
    write_ordered_index(
        out,
        len(ordered),
        lambda n: ordered[n].oid,
        [entry.crc for entry in ordered],
        [entry.offset for entry in ordered],
        pack_checksum,
    )


def write_sorted_index(
    out: BinaryIO, oids: bytes, offsets: array[int], crcs: array[int], pack_checksum: bytes
) -> None:
    """Write the ``.idx`` :func:`write_index` writes, for objects held in arrays.

    Object ``n`` has id ``oids[20n:20n + 20]``, offset ``offsets[n]`` and CRC-32
    ``crcs[n]``; an id given twice is indexed at its first offset. The objects
    are sorted one leading byte at a time, so that no list of them all is built.
    """
    buckets = [array("I") for _ in range(256)]
    for index in range(len(offsets)):
        buckets[oids[20 * index]].append(index)
    ordered = array("I")
    for bucket in buckets:
        previous = b""
        for index in sorted(bucket, key=lambda n: oids[20 * n : 20 * n + 20]):
            oid = oids[20 * index : 20 * index + 20]
            if oid != previous:
                ordered.append(index)
                previous = oid
    write_ordered_index(
        out,
        len(ordered),
        lambda n: oids[20 * ordered[n] : 20 * ordered[n] + 20],
        array("I", (crcs[index] for index in ordered)),
        array("Q", (offsets[index] for index in ordered)),
        pack_checksum,
    )


def write_ordered_index(
    out: BinaryIO,
    count: int,
    oid_at: Callable[[int], bytes],
    crcs: Sequence[int],
    offsets: Sequence[int],
    pack_checksum: bytes,
) -> None:
    """Write a version-2 ``.idx`` of ``count`` objects given in id order, each id once.

    The ``n``-th object has id ``oid_at(n)``, CRC-32 ``crcs[n]`` and offset
    ``offsets[n]``; the ids are joined a slice at a time, so that no list of
    them all is built.
    """
    digest = hashlib.sha1()

    def write(data: bytes) -> None:
        out.write(data)
        digest.update(data)

    fanout = array("I", bytes(4 * 256))
    for n in range(count):
        fanout[oid_at(n)[0]] += 1
    for byte in range(1, 256):
        fanout[byte] += fanout[byte - 1]
    write(b"\xfftOc" + struct.pack(">I", 2))
    write(big_endian(fanout))
    for start in range(0, count, 65536):
        write(b"".join(oid_at(n) for n in range(start, min(count, start + 65536))))
    write(big_endian(array("I", crcs)))
    small = array("I")
    large = array("Q")
    for offset in offsets:
        if offset < 0x80000000:
            small.append(offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(offset)
    write(big_endian(small))
    write(big_endian(large))
    write(pack_checksum)
    out.write(digest.digest())


def big_endian(values: array[int]) -> bytes:
    """The bytes of ``values`` in network order, as pack files and indexes hold numbers."""
    if sys.byteorder == "little":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()
