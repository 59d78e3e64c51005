"""A pack read for merging: its entries as compact columns, its pages released as it goes.

A merge of every pack of a large registry touches each byte of each pack at
least twice (entry headers, then the copy), and every page of a mapped file
that a read touches counts in the process's resident set until it is
unmapped. :class:`PackSource` maps the pack but tells the kernel to drop the
pages it holds (``MADV_DONTNEED``; they stay in the page cache) each time
reads of the packs of one merge (a :class:`Residency`) have touched
:data:`RELEASE_STEP`. What the merge needs of each entry
is kept in columns (arrays and byte strings, a few bytes per entry) rather
than one Python object per entry.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from pathlib import Path

from progreg.git.errors import MalformedObjectError
from progreg.git.objects.encoding import TYPE_NAMES
from progreg.git.pack import format as packs
from progreg.git.pack.mapped import FAULT_AROUND, RELEASE_STEP, MappedFile

#: Depths and heights saturate here (far above any delta chain allowed).
SATURATED = 255
_IDX_MAGIC = b"\xfftOc\x00\x00\x00\x02"
#: Where the table of ids of a version-2 pack index starts.
FANOUT_END = 8 + 256 * 4


def _big_endian(data: bytes, code: str) -> array[int]:
    values = array(code, data)
    if sys.byteorder == "little":
        values.byteswap()
    return values


def read_index(idx: Path) -> tuple[bytes, array[int], array[int]]:
    """``(ids, CRC-32s, offsets)`` of a version-2 pack index, in index order.

    ``ids`` is the index's table of ids (20 bytes each), as it is.
    """
    data = idx.read_bytes()
    if data[:8] != _IDX_MAGIC or len(data) < FANOUT_END:
        raise OSError(f"{idx} is not a version-2 pack index")
    count = struct.unpack(">I", data[FANOUT_END - 4 : FANOUT_END])[0]
    start = FANOUT_END
    ids = data[start : start + 20 * count]
    start += 20 * count
    crcs = _big_endian(data[start : start + 4 * count], "I")
    start += 4 * count
    small = _big_endian(data[start : start + 4 * count], "I")
    start += 4 * count
    if len(ids) != 20 * count or len(small) != count:
        raise OSError(f"{idx} is truncated")
    offsets = array("Q", small)
    for n, value in enumerate(small):
        if value & 0x80000000:
            at = start + 8 * (value & 0x7FFFFFFF)
            offsets[n] = int(struct.unpack(">Q", data[at : at + 8])[0])
    return ids, crcs, offsets


def index_count(idx: Path) -> int:
    """How many objects a version-2 pack index lists (read from its fan-out table)."""
    with open(idx, "rb") as handle:
        head = handle.read(FANOUT_END)
    if len(head) != FANOUT_END or head[:8] != _IDX_MAGIC:
        raise OSError(f"{idx} is not a version-2 pack index")
    return int(struct.unpack(">I", head[-4:])[0])


class Residency:
    """Bytes that reads of a group of mapped packs touched since their pages were dropped.

    Past :data:`RELEASE_STEP`, every pack of the group drops its pages, so the
    group keeps that much resident at most, however many packs it has.
    """

    def __init__(self) -> None:
        self.touched = 0
        self.sources: list[PackSource] = []

    def touch(self, size: int) -> None:
        """Count a read of ``size`` bytes; release the group's pages past the bound."""
        self.touched += size + FAULT_AROUND
        if self.touched >= RELEASE_STEP:
            self.release()

    def release(self) -> None:
        """Drop the pages of every pack of the group from the resident set."""
        self.touched = 0
        for source in self.sources:
            source.release()


class PackSource:
    """A pack being merged, its entries in pack order (``position`` 0, 1, ...).

    Columns by position: ``offsets``, ``crcs``, ``stored`` (the type as
    stored: 1-4 whole, 6 ``OFS_DELTA``, 7 ``REF_DELTA``), ``bases`` (position
    of an ``OFS_DELTA``'s base, else -1), ``depths`` (deltas deep in this
    pack) and ``ranks`` (set by the merge: the entry's number among all merged
    objects). ``ids`` holds the ids, 20 bytes each, until the merge drops it.
    """

    def __init__(self, path: Path, residency: Residency | None = None) -> None:
        self.path = path
        self.residency = Residency() if residency is None else residency
        ids, crcs, offsets = read_index(path.with_suffix(".idx"))
        self._file = MappedFile(path)
        self.data = self._file.view
        self.mtime = path.stat().st_mtime
        self.count = len(offsets)
        order = sorted(range(self.count), key=offsets.__getitem__)
        self.ids = b"".join(ids[20 * i : 20 * i + 20] for i in order)
        self.offsets = array("Q", (offsets[i] for i in order))
        self.crcs = array("I", (crcs[i] for i in order))
        self.ranks = array("I")
        self.stored = bytearray(self.count)
        self.bases = array("i", [-1]) * self.count
        self.depths = bytearray(self.count)
        #: ``{position: id of the base}`` of ``REF_DELTA`` entries.
        self.ref_bases: dict[int, bytes] = {}
        self._heights: bytearray | None = None
        self.residency.sources.append(self)

    def oid(self, position: int) -> bytes:
        """The id of the entry at ``position`` (while ``ids`` is kept)."""
        return self.ids[20 * position : 20 * position + 20]

    def end(self, position: int) -> int:
        """Where the entry at ``position`` ends."""
        if position + 1 < self.count:
            return self.offsets[position + 1]
        return len(self.data) - 20

    def scan(self) -> None:
        """Parse every entry header once, filling ``stored``, ``bases`` and ``depths``."""
        offsets, stored, bases, depths = self.offsets, self.stored, self.bases, self.depths
        for position in range(self.count):
            head = self.header(position)
            stored[position] = head.kind
            if head.base_offset is not None:
                base = bisect_left(offsets, head.base_offset)
                if base >= position or offsets[base] != head.base_offset:
                    raise OSError(
                        f"{self.path}: the delta at offset {offsets[position]} has no base entry"
                    )
                bases[position] = base
                depths[position] = min(SATURATED, depths[base] + 1)
            elif head.base_oid is not None:
                self.ref_bases[position] = head.base_oid

    def header(self, position: int) -> packs.EntryHeader:
        """The parsed header of the entry at ``position``."""
        start = self.offsets[position]
        self.residency.touch(0)
        try:
            return packs.parse_entry_header(self.data, start, self.end(position))
        except MalformedObjectError as exc:
            raise OSError(f"{self.path}: the entry at offset {start} is damaged: {exc}") from None

    def read(self, start: int, stop: int) -> bytes:
        """The bytes ``start`` to ``stop - 1`` of the pack."""
        self.residency.touch(stop - start)
        return bytes(self.data[start:stop])

    def inflate(self, position: int, head: packs.EntryHeader) -> bytes:
        """The stored data of the entry at ``position`` (the object, or the delta), inflated."""
        return zlib.decompress(self.read(head.data_start, self.end(position)))

    def is_whole(self, position: int) -> bool:
        """Whether the entry at ``position`` is stored whole (not as a delta)."""
        return self.stored[position] in TYPE_NAMES

    def height(self, position: int) -> int:
        """The longest chain of deltas built on the entry at ``position`` in this pack."""
        if self._heights is None:
            heights = bytearray(self.count)
            bases = self.bases
            for each in range(self.count - 1, -1, -1):  # deltas come after their bases
                base = bases[each]
                if base >= 0:
                    heights[base] = max(heights[base], min(SATURATED, heights[each] + 1))
            self._heights = heights
        return self._heights[position]

    def release(self) -> None:
        """Drop the pages of the pack from the resident set (they stay in the page cache)."""
        self._file.release()

    def close(self) -> None:
        self._file.close()
        if self in self.residency.sources:
            self.residency.sources.remove(self)
