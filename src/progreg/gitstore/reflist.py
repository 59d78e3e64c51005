"""The names of the refs under a prefix, read from Git's files directly.

libgit2 lists refs by loading all of them; a registry with 100k tag refs
needs only those under one prefix (``refs/tags/<tag>/``). This reads the two
places the files backend keeps refs:

- loose refs: the files under ``<gitdir>/<prefix>``, by name (never opened);
- ``packed-refs``: one ``<id> <name>`` line per ref (and ``^<id>`` lines
  after annotated tags). When its header says ``sorted`` (Git and libgit2
  always write it so) the block of names starting with the prefix is found
  by binary search in the memory-mapped file; otherwise the file is scanned.

Loose refs are listed before ``packed-refs`` is read, as Git does: ``git
pack-refs`` writes ``packed-refs`` before it deletes the loose files it
packed, so a ref being packed meanwhile is seen in one place or the other.
Nothing is cached: every call reads the files as they are.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path

PACKED_REFS = "packed-refs"
_HEADER = b"# pack-refs with:"


def names_under(gitdir: Path, prefix: str) -> set[str]:
    """The names of all refs starting with ``prefix``, without the prefix.

    ``prefix`` is a directory of refs such as ``refs/tags/best/``: it starts
    with ``refs/`` and ends with ``/``.
    """
    if not prefix.startswith("refs/") or not prefix.endswith("/"):
        raise ValueError(f"ref prefix {prefix!r} must start with 'refs/' and end with '/'")
    names = _loose_names(gitdir, prefix)
    names.update(_packed_names(gitdir / PACKED_REFS, prefix))
    return names


def _loose_names(gitdir: Path, prefix: str) -> set[str]:
    names: set[str] = set()
    pending = [""]
    while pending:
        directory = pending.pop()
        files = []
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            os.scandir(gitdir / prefix / directory) as entries,
        ):
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(f"{directory}{entry.name}/")
                else:
                    files.append(entry.name)
        kept = (name for name in files if not name.endswith(".lock"))
        names.update(map(directory.__add__, kept) if directory else kept)
    return names


def _packed_names(path: Path, prefix: str) -> list[str]:
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return []
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                text = _block(data, prefix.encode()).decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    # Every ref line is "<id> <name>" with ids of one length: slice them all at once.
    width = lines[0].find(" ")
    cut = width + 1 + len(prefix)
    marker = " " + prefix
    names = [line[cut:] for line in lines if line[width:cut] == marker]
    peeled = text.count("\n^") + text.startswith("^")
    if width > 0 and len(names) == len(lines) - peeled - lines.count(""):
        return names
    skip = len(prefix)
    names = []
    for line in lines:  # names of other prefixes (an unsorted file), or an odd line
        _, space, name = line.partition(" ")
        if space and name.startswith(prefix) and line[0] != "^":
            names.append(name[skip:])
    return names


def _block(data: mmap.mmap, prefix: bytes) -> bytes:
    """The lines of a ``packed-refs`` file that hold the names starting with ``prefix``.

    The whole body when the file is not sorted (the caller filters the names).
    """
    body = 0
    sorted_file = False
    if data[: len(_HEADER)] == _HEADER:
        end = data.find(b"\n")
        body = len(data) if end < 0 else end + 1
        sorted_file = b"sorted" in data[len(_HEADER) : body].split()
    if not sorted_file:
        return data[body:]
    upper = prefix[:-1] + bytes([prefix[-1] + 1])
    start = _first_at_or_after(data, body, prefix)
    return data[start : _first_at_or_after(data, start, upper)]


def _first_at_or_after(data: mmap.mmap, low: int, key: bytes) -> int:
    """Offset of the first record at or after ``low`` whose name is not below ``key``."""
    high = len(data)
    while low < high:
        record = _record_start(data, low, (low + high) // 2)
        if _name_at(data, record) < key:
            low = _record_end(data, record)
        else:
            high = record
    return low


def _record_start(data: mmap.mmap, low: int, offset: int) -> int:
    """Start of the record (ref line plus its peel line) holding ``offset``; ``low`` is one."""
    newline = data.rfind(b"\n", low, offset)
    line = low if newline < 0 else newline + 1
    if line > low and data[line] == ord("^"):
        newline = data.rfind(b"\n", low, line - 1)
        line = low if newline < 0 else newline + 1
    return line


def _record_end(data: mmap.mmap, record: int) -> int:
    end = data.find(b"\n", record)
    end = len(data) if end < 0 else end + 1
    while end < len(data) and data[end] == ord("^"):
        peel_end = data.find(b"\n", end)
        end = len(data) if peel_end < 0 else peel_end + 1
    return end


def _name_at(data: mmap.mmap, record: int) -> bytes:
    end = data.find(b"\n", record)
    line = data[record : len(data) if end < 0 else end]
    return line.partition(b" ")[2]
