"""Editing nested trees: the new trees of a commit, from a base tree and path edits.

Only the trees on the edited paths are read and rewritten, so the cost of an
edit depends on the depth and fan-out of those paths, not on the size of the
whole tree. Directories left empty by a removal disappear, as in Git. Trees
are built as raw Git objects in memory (:func:`edit_tree`), so that a commit's
new objects can be written together (see :mod:`progreg.git.pack.packstore`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pygit2

from progreg.git.objects.encoding import OBJ_TREE, TREE_MODE, object_id

EMPTY_TREE = pygit2.Oid(hex="4b825dc642cb6eb9a060e54bf8d69288fbee4904")
BLOB_MODE = b"100644"

#: An edit: the blob id to place at a path, its content (a new blob), or ``None`` to remove it.
Edit = pygit2.Oid | bytes | None


@dataclass(frozen=True)
class RawTree:
    """A tree's entries ``(mode, name, raw id)`` in Git's order, their sort keys and raw bytes."""

    entries: tuple[tuple[bytes, bytes, bytes], ...]
    keys: tuple[bytes, ...]
    raws: tuple[bytes, ...]

    @classmethod
    def of(cls, entries: list[tuple[bytes, bytes, bytes]]) -> RawTree:
        """The tree of ``entries``, which must already be in Git's order."""
        return cls(
            tuple(entries),
            tuple(_key(mode, name) for mode, name, _ in entries),
            tuple(_raw(*entry) for entry in entries),
        )

    def encode(self) -> bytes:
        """The tree object's raw data."""
        return b"".join(self.raws)

    def find(self, name: bytes) -> tuple[bytes, bytes, bytes] | None:
        """The entry called ``name`` (a file or a directory), or ``None``."""
        keys = self.keys
        for key in (name, name + b"/"):
            index = bisect.bisect_left(keys, key)
            if index < len(keys) and keys[index] == key:
                return self.entries[index]
        return None


#: ``read(raw id)`` returns the tree with that id.
TreeReader = Callable[[bytes], RawTree]
#: New trees, as ``edit_tree`` makes them: ``(raw id, raw data, tree)`` (the parsed tree
#: left out, ``None``, for the deepest trees of a large edit).
NewTrees = list[tuple[bytes, bytes, RawTree | None]]


def _raw(mode: bytes, name: bytes, oid: bytes) -> bytes:
    """A tree entry as Git stores it: ``mode SP name NUL id``."""
    return mode + b" " + name + b"\x00" + oid


def _key(mode: bytes, name: bytes) -> bytes:
    """Git's sort key of a tree entry: directories sort as if their name ended with ``/``."""
    return name + b"/" if mode == TREE_MODE else name


def edit_tree(
    read: TreeReader,
    base: bytes | None,
    edits: Mapping[str, bytes | None],
    new: NewTrees,
    previous: dict[bytes, bytes] | None = None,
    *,
    parsed: bool = True,
) -> bytes | None:
    """Apply ``edits`` (``"a/b/c.json" -> raw blob id or None``) to tree ``base``.

    Returns the new root tree's raw id, or ``None`` when nothing is left
    (everything removed). Each tree written is appended to ``new``, parsed
    too unless ``parsed`` is false and no directory below it was edited (a
    merge of 100k programs writes 65k such trees, which the caller would not
    keep); nothing is stored. ``previous``, if given, receives ``{new id: id
    it replaces at the same path}`` for the new trees and files (what their
    deltas can be made against). Raises ``ValueError`` for an invalid path.
    """
    grouped: dict[bytes, dict[str, bytes | None]] = {}
    leaves: dict[bytes, bytes | None] = {}
    for path, value in edits.items():
        head, sep, rest = path.partition("/")
        name = head.encode()
        if not head or head in (".", "..") or head.lower() == ".git" or b"\x00" in name:
            raise ValueError(f"invalid path {path!r}")
        if sep:
            grouped.setdefault(name, {})[rest] = value
        else:
            leaves[name] = value
    tree = _Editing(read(base) if base is not None else RawTree((), (), ()))
    for name, value in leaves.items():
        replaced = tree.remove(name)
        if value is not None:
            tree.insert(BLOB_MODE, name, value)
            if previous is not None and replaced is not None and replaced[0] == BLOB_MODE:
                previous.setdefault(value, replaced[2])
    for name, sub_edits in grouped.items():
        existing = tree.remove(name)
        sub_base = existing[2] if existing is not None and existing[0] == TREE_MODE else None
        sub_tree = edit_tree(read, sub_base, sub_edits, new, previous, parsed=parsed)
        if sub_tree is not None:
            tree.insert(TREE_MODE, name, sub_tree)
        elif existing is not None and existing[0] != TREE_MODE:
            tree.insert(*existing)  # removing below a file: the file stays
    if not tree.entries:
        return None
    result = RawTree(tuple(tree.entries), tuple(tree.keys), tuple(tree.raws))
    data = result.encode()
    oid = object_id(OBJ_TREE, data)
    new.append((oid, data, result if parsed or grouped else None))
    if previous is not None and base is not None and base != oid:
        previous.setdefault(oid, base)
    return oid


class _Editing:
    """A tree being edited: the lists of a :class:`RawTree`, kept in Git's order."""

    def __init__(self, tree: RawTree) -> None:
        self.entries = list(tree.entries)
        self.keys = list(tree.keys)
        self.raws = list(tree.raws)

    def remove(self, name: bytes) -> tuple[bytes, bytes, bytes] | None:
        """Remove the entry called ``name`` (file or directory); return it, or ``None``."""
        keys = self.keys
        for key in (name, name + b"/"):
            index = bisect.bisect_left(keys, key)
            if index < len(keys) and keys[index] == key:
                del keys[index]
                del self.raws[index]
                return self.entries.pop(index)
        return None

    def insert(self, mode: bytes, name: bytes, oid: bytes) -> None:
        key = _key(mode, name)
        index = bisect.bisect_left(self.keys, key)
        self.keys.insert(index, key)
        self.entries.insert(index, (mode, name, oid))
        self.raws.insert(index, _raw(mode, name, oid))


def blob_at(tree: pygit2.Tree, path: str) -> pygit2.Blob | None:
    """The blob at ``path`` in ``tree``, or ``None`` when there is none."""
    try:
        obj = tree[path]
    except KeyError:
        return None
    return obj if isinstance(obj, pygit2.Blob) else None
