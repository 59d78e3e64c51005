"""A file read through a read-only memory mapping whose pages can be given back.

Every page of a mapped file that a read touches counts in the process's
resident set for as long as it stays mapped: reading a bundle of 250 MB once
through a plain mapping (or into a ``bytes``) makes the process 250 MB
larger. :meth:`MappedFile.release` tells the kernel that a range is not
needed any more (``madvise(MADV_DONTNEED)``): its pages leave the resident
set, and a later read of the range simply faults them in again from the
file (or the page cache). Releasing is only ever a hint: what a read returns
never depends on it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from types import TracebackType

#: Bytes of a mapped file that reads may touch before its pages are given back.
RELEASE_STEP = 16 * 1024 * 1024
#: Bytes a read of a few bytes of a mapped file can make resident (the kernel maps
#: the cached pages around a faulting one too, 64 KiB by default): what a
#: scattered read is counted as.
FAULT_AROUND = 64 * 1024


class MappedFile:
    """The bytes of a file as a :class:`memoryview` (:attr:`view`), mapped read-only."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.view = memoryview(self._map if self._map is not None else b"")

    def release(self, start: int = 0, end: int | None = None) -> None:
        """Drop the resident pages of bytes ``start`` to ``end`` (all by default); a hint."""
        mapping = self._map
        if mapping is None or mapping.closed or not hasattr(mmap, "MADV_DONTNEED"):
            return
        end = len(mapping) if end is None else min(end, len(mapping))
        start = max(0, start - start % mmap.PAGESIZE)
        if end > start:
            mapping.madvise(mmap.MADV_DONTNEED, start, end - start)

    def close(self) -> None:
        """Unmap the file (later, when the last view of it is gone, if one is still alive)."""
        self.view.release()
        if self._map is not None:
            # A slice of the view still referenced somewhere keeps the mapping alive.
            with contextlib.suppress(BufferError):
                self._map.close()

    def __enter__(self) -> MappedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
