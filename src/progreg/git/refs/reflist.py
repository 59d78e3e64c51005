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

A listing is remembered with a stamp of what it was read from: the inode,
size and modification time of ``packed-refs`` and of every directory it
listed (or, for a prefix without a directory, of its nearest existing
parent). Adding, removing or renaming a ref file changes its directory's
modification time, and ``packed-refs`` is only ever replaced, so the stamp
changes whenever the names could have. A time stamp only tells changes
apart if they happen at different times: as in Git's "racy" index check, a
listing is kept only when everything it stamps was last modified at least
:data:`SETTLED` seconds before the listing began, so any later change gets
a later time (file systems stamp at most a clock tick behind).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time
from pathlib import Path

PACKED_REFS = "packed-refs"
#: A listing is remembered only if what it read was this many seconds old.
SETTLED = 2.0
_HEADER = b"# pack-refs with:"
_MAX_REMEMBERED = 64
_HEX = frozenset(b"0123456789abcdef")

#: ``(path, inode, size, mtime_ns)`` of each file a listing read (``None``s if missing).
Stamp = tuple[tuple[str, int | None, int | None, int | None], ...]
_remembered: dict[tuple[str, str], tuple[Stamp, frozenset[str]]] = {}
_remembered_lock = threading.Lock()


def names_under(gitdir: Path, prefix: str) -> set[str]:
    """The names of all refs starting with ``prefix``, without the prefix.

    ``prefix`` is a directory of refs such as ``refs/tags/best/``: it starts
    with ``refs/`` and ends with ``/``.
    """
    if not prefix.startswith("refs/") or not prefix.endswith("/"):
        raise ValueError(f"ref prefix {prefix!r} must start with 'refs/' and end with '/'")
    key = (str(gitdir), prefix)
    with _remembered_lock:
        known = _remembered.get(key)
    if known is not None and _restamp(known[0]) == known[0]:
        return set(known[1])
    began = time.time()
    names, directories = _loose_names(gitdir, prefix)
    packed = _stat(gitdir / PACKED_REFS)  # before reading it
    names.update(_packed_names(gitdir / PACKED_REFS, prefix))
    stamp = (*directories, packed)
    if all(mtime is None or mtime <= (began - SETTLED) * 1e9 for *_, mtime in stamp):
        with _remembered_lock:
            if len(_remembered) >= _MAX_REMEMBERED:
                _remembered.clear()
            _remembered[key] = (stamp, frozenset(names))
    return names


def values_under(gitdir: Path, prefix: str) -> dict[str, str | None]:
    """The object id of every ref starting with ``prefix``, by name without the prefix.

    Read as :func:`names_under` reads names, values included: the loose files
    (listed, then opened) before ``packed-refs``, a loose file winning over
    the packed line of the same name. A loose file that is not a plain ref
    (a symbolic ref) maps to ``None``: the caller asks libgit2 for it.
    """
    if not prefix.startswith("refs/") or not prefix.endswith("/"):
        raise ValueError(f"ref prefix {prefix!r} must start with 'refs/' and end with '/'")
    loose, _ = _loose_names(gitdir, prefix)
    values: dict[str, str | None] = {}
    for name in loose:
        try:
            values[name] = loose_value(gitdir / prefix / name)
        except (FileNotFoundError, IsADirectoryError):
            continue  # packed meanwhile: its packed line is read below
    try:
        with open(gitdir / PACKED_REFS, "rb") as file:
            block = b""
            if os.fstat(file.fileno()).st_size > 0:
                with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    block = _block(data, prefix.encode())
    except FileNotFoundError:
        block = b""
    skip = len(prefix)
    for line in block.decode("utf-8", "replace").split("\n"):
        oid, space, name = line.partition(" ")
        if space and name.startswith(prefix) and not line.startswith("^"):
            values.setdefault(name[skip:], oid)
    return values


def loose_value(path: Path | str) -> str | None:
    """The object id a loose ref file holds; ``None`` when it holds anything else.

    A symbolic ref (``ref: refs/heads/main``) or a malformed file is ``None``;
    a file that cannot be read raises its :class:`OSError`.
    """
    with open(path, "rb") as handle:
        content = handle.read(256).strip()
    if len(content) in (40, 64) and _HEX.issuperset(content):
        return content.decode("ascii")
    return None


def _stat(path: Path | str) -> tuple[str, int | None, int | None, int | None]:
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return (str(path), None, None, None)
    return (str(path), info.st_ino, info.st_size, info.st_mtime_ns)


def _restamp(stamp: Stamp) -> Stamp:
    return tuple(_stat(path) for path, *_ in stamp)


def _loose_names(gitdir: Path, prefix: str) -> tuple[set[str], Stamp]:
    """The loose names under ``prefix`` and the stamps of the directories listed."""
    names: set[str] = set()
    stamps = []
    top = gitdir / prefix
    parent = top
    while True:  # a missing directory appears in its parent: stamp up to an existing one
        stamps.append(_stat(parent))
        if stamps[-1][1] is not None or parent == gitdir:
            break
        parent = parent.parent
    pending = [""]
    while pending:
        directory = pending.pop()
        files = []
        if directory:
            stamps.append(_stat(top / directory))  # before listing it
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            os.scandir(top / directory) as entries,
        ):
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(f"{directory}{entry.name}/")
                else:
                    files.append(entry.name)
        kept = (name for name in files if not name.endswith(".lock"))
        names.update(map(directory.__add__, kept) if directory else kept)
    return names, tuple(stamps)


def packed_value(gitdir: Path, ref: str) -> str | None:
    """The object id ``packed-refs`` gives ``ref`` (``None`` if it has none).

    A binary search in a sorted file (as Git and libgit2 write it), so that a
    writer checking one ref does not read 100k lines.
    """
    key = ref.encode()
    try:
        with open(gitdir / PACKED_REFS, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                return None
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                block = _exact(data, key)
    except FileNotFoundError:
        return None
    for line in block.split(b"\n"):
        oid, space, name = line.partition(b" ")
        if space and name == key and not line.startswith(b"^"):
            return oid.decode("ascii", "replace")
    return None


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
    body, sorted_file = _body(data)
    if not sorted_file:
        return data[body:]
    upper = prefix[:-1] + bytes([prefix[-1] + 1])
    start = _first_at_or_after(data, body, prefix)
    return data[start : _first_at_or_after(data, start, upper)]


def _exact(data: mmap.mmap, name: bytes) -> bytes:
    """The record of ref ``name`` in a ``packed-refs`` file (empty if it has none).

    One binary search in a sorted file; the whole body when it is not sorted
    (the caller filters the names).
    """
    body, sorted_file = _body(data)
    if not sorted_file:
        return data[body:]
    start = _first_at_or_after(data, body, name)
    return data[start : _record_end(data, start)] if start < len(data) else b""


def _body(data: mmap.mmap) -> tuple[int, bool]:
    """Where the records of a ``packed-refs`` file start, and whether they are sorted."""
    if data[: len(_HEADER)] != _HEADER:
        return 0, False
    end = data.find(b"\n")
    body = len(data) if end < 0 else end + 1
    return body, b"sorted" in data[len(_HEADER) : body].split()


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
