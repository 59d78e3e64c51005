"""Editing nested trees: write a new root tree from a base tree and path edits.

Only the trees on the edited paths are read and rewritten, so the cost of an
edit depends on the depth and fan-out of those paths, not on the size of the
whole tree. Directories left empty by a removal disappear, as in Git.
"""

from __future__ import annotations

from collections.abc import Mapping

import pygit2
from pygit2.enums import FileMode

EMPTY_TREE = pygit2.Oid(hex="4b825dc642cb6eb9a060e54bf8d69288fbee4904")

#: An edit: the blob id to place at a path, or ``None`` to remove the path.
Edit = pygit2.Oid | None


def edit_tree(
    repo: pygit2.Repository, base: pygit2.Tree | None, edits: Mapping[str, Edit]
) -> pygit2.Oid:
    """Apply ``edits`` (``"a/b/c.json" -> blob id or None``) to ``base``; return the new tree id.

    The result may be :data:`EMPTY_TREE` when everything was removed.
    """
    return _edit(repo, base, edits) or EMPTY_TREE


def _edit(
    repo: pygit2.Repository, base: pygit2.Tree | None, edits: Mapping[str, Edit]
) -> pygit2.Oid | None:
    """Like :func:`edit_tree`, but ``None`` (and nothing written) for an empty result."""
    grouped: dict[str, dict[str, Edit]] = {}
    leaves: dict[str, Edit] = {}
    for path, value in edits.items():
        head, sep, rest = path.partition("/")
        if not head or head in (".", ".."):
            raise ValueError(f"invalid path {path!r}")
        if sep:
            grouped.setdefault(head, {})[rest] = value
        else:
            leaves[head] = value
    builder = repo.TreeBuilder(base) if base is not None else repo.TreeBuilder()
    removed = False
    for name, value in leaves.items():
        if value is None:
            if builder.get(name) is not None:
                builder.remove(name)
                removed = True
        else:
            builder.insert(name, value, FileMode.BLOB)
    for name, sub_edits in grouped.items():
        existing = builder.get(name)
        sub_base: pygit2.Tree | None = None
        if existing is not None and existing.filemode == FileMode.TREE:
            found = repo[existing.id]
            assert isinstance(found, pygit2.Tree)
            sub_base = found
        sub_tree = _edit(repo, sub_base, sub_edits)
        if sub_tree is None:
            if existing is not None:
                builder.remove(name)
                removed = True
        else:
            builder.insert(name, sub_tree, FileMode.TREE)
    if removed and not _has_entries(builder, base, leaves, grouped):
        return None
    return builder.write()


def _has_entries(
    builder: pygit2.TreeBuilder,
    base: pygit2.Tree | None,
    leaves: Mapping[str, Edit],
    grouped: Mapping[str, object],
) -> bool:
    names = {entry.name for entry in base} if base is not None else set()
    names |= set(leaves) | set(grouped)
    return any(builder.get(name) is not None for name in names if name is not None)


def blob_at(tree: pygit2.Tree, path: str) -> pygit2.Blob | None:
    """The blob at ``path`` in ``tree``, or ``None`` when there is none."""
    try:
        obj = tree[path]
    except KeyError:
        return None
    return obj if isinstance(obj, pygit2.Blob) else None
