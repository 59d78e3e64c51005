"""Which files differ between two trees, read from raw tree objects.

A registry commit changes one file among thousands; so do its neighbours,
which share most of their trees. :class:`TreeDiffer` compares the raw
entries of two trees as sets, descends only into the subtrees that differ,
and remembers the trees it parsed, so that walking a history costs about
one parse per new tree: several times less than a libgit2 diff per commit.
"""

from __future__ import annotations

from collections import OrderedDict

import pygit2

from progreg.git.objects import encoding as objects

TREE_MODE = 0o40000

#: ``(path, mode, object id)`` of a file (any non-tree entry: blobs, links, gitlinks).
FileEntry = tuple[str, int, pygit2.Oid]


class TreeDiffer:
    """Compare trees of one repository, caching the parsed ones (``cache_size`` trees)."""

    def __init__(self, repo: pygit2.Repository, cache_size: int = 512) -> None:
        self._odb = repo.odb
        self._cache: OrderedDict[bytes, frozenset[bytes] | None] = OrderedDict()
        self._size = cache_size

    def _entries(self, tree: bytes) -> frozenset[bytes] | None:
        """The raw entries of tree ``tree``, or ``None`` if that object is not a tree."""
        if tree in self._cache:
            self._cache.move_to_end(tree)
            return self._cache[tree]
        kind, data = self._odb.read(pygit2.Oid(raw=tree))
        entries = frozenset(objects.tree_entries(data)) if kind == objects.OBJ_TREE else None
        self._cache[tree] = entries
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return entries

    def changes(self, old: pygit2.Oid | None, new: pygit2.Oid) -> tuple[list[FileEntry], list[str]]:
        """Files of ``new`` that are not in ``old`` as they are, and paths only ``old`` has.

        Both lists are sorted by path. An entry that claims to be a tree but is
        not one is reported as a file with the tree mode, for the caller to refuse.
        """
        files: list[FileEntry] = []
        deleted: list[str] = []
        self._compare(old.raw if old is not None else None, new.raw, "", files, deleted)
        files.sort()
        deleted.sort()
        return files, deleted

    def _compare(
        self,
        old: bytes | None,
        new: bytes | None,
        prefix: str,
        files: list[FileEntry],
        deleted: list[str],
    ) -> None:
        if old == new:
            return
        before = self._entries(old) if old is not None else frozenset()
        after = self._entries(new) if new is not None else frozenset()
        if before is None or after is None:  # not trees: the caller's entry is wrong
            if new is not None:
                files.append((prefix.rstrip("/"), TREE_MODE, pygit2.Oid(raw=new)))
            return
        gone: dict[bytes, tuple[int, bytes]] = {}
        for raw in before - after:
            gone_mode, gone_name, gone_oid = objects.split_entry(raw)
            gone[gone_name] = (int(gone_mode, 8), gone_oid)
        for raw in after - before:
            mode_text, name, oid = objects.split_entry(raw)
            mode = int(mode_text, 8)
            path = prefix + name.decode("utf-8", errors="surrogateescape")
            old_mode, old_oid = gone.pop(name, (0, b""))
            old_tree = old_oid if old_mode == TREE_MODE else None
            if old_oid and old_mode != TREE_MODE and mode == TREE_MODE:
                deleted.append(path)  # a file became a directory
            if mode == TREE_MODE:
                self._compare(old_tree, oid, path + "/", files, deleted)
            else:
                if old_tree is not None:  # a directory became a file
                    self._compare(old_tree, None, path + "/", files, deleted)
                files.append((path, mode, pygit2.Oid(raw=oid)))
        for name, (mode, oid) in gone.items():
            path = prefix + name.decode("utf-8", errors="surrogateescape")
            if mode == TREE_MODE:
                self._compare(oid, None, path + "/", files, deleted)
            else:
                deleted.append(path)
