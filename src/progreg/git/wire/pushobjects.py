"""The objects a push must send: what the new ref values reach and the remote lacks.

The remote is assumed to hold everything its branches reach (a Git server
checks that on every push). So the walk goes through the commits reachable
from the new values, hiding the remote's branches, and for each new commit
takes the commit and the part of its tree that differs from its parents'
trees, descending only into subtrees that changed: a parent the remote has
brings its whole tree. A root commit brings its whole tree. Annotated tags
bring themselves and what they point at.

The remote's *tags* are deliberately not hidden: marking the trees of
thousands of tagged commits as present costs reading all of them, on every
push, to save sending objects the branches already account for.
"""

from __future__ import annotations

from collections.abc import Iterable

import pygit2
from pygit2.enums import SortMode

from progreg.git.objects.encoding import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_TAG,
    OBJ_TREE,
    commit_tree,
    split_entry,
    tag_target,
    tree_entries,
)

_TREE_MODE = b"40000"
_GITLINK_MODE = b"160000"
#: ``(id, type, data)`` of one object to pack.
PackObject = tuple[bytes, int, bytes]


class _Collector:
    """Gathers the ids and types of the objects to send, each once, in the order they are found.

    Only commits and trees are read (to walk and diff them); blobs are known
    by their tree entries and not read at all, so that what is held is the
    list of ids, not the data: a pack is read again object by object as it is
    written.
    """

    def __init__(self, repo: pygit2.Repository) -> None:
        self.odb = repo.odb
        self.objects: dict[bytes, int] = {}

    def add(self, oid: bytes, kind: int) -> None:
        self.objects.setdefault(oid, kind)

    def tree(self, new: bytes, old: list[bytes]) -> None:
        """Add tree ``new`` and what of it none of the ``old`` trees (on the remote) hold."""
        if new in self.objects or new in old:
            return
        self.add(new, OBJ_TREE)
        data = self.odb.read(pygit2.Oid(raw=new))[1]
        previous: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for tree in old:
            for raw in tree_entries(self.odb.read(pygit2.Oid(raw=tree))[1]):
                mode, name, oid = split_entry(raw)
                previous.setdefault(name, []).append((mode, oid))
        for raw in tree_entries(data):
            mode, name, oid = split_entry(raw)
            if mode == _GITLINK_MODE:
                continue
            before = previous.get(name, [])
            if any(oid == known for _mode, known in before):
                continue
            if mode == _TREE_MODE:
                self.tree(oid, [known for m, known in before if m == _TREE_MODE])
            else:
                self.add(oid, OBJ_BLOB)


def missing_object_ids(
    repo: pygit2.Repository, new: Iterable[pygit2.Oid], remote_branches: Iterable[pygit2.Oid]
) -> list[tuple[bytes, int]]:
    """The ``(id, type)`` of every object reachable from ``new`` that a remote with
    ``remote_branches`` lacks, without their data (see :func:`missing_objects`).

    ``remote_branches`` are the remote's branch values; those this
    repository does not hold are ignored.
    """
    collector = _Collector(repo)
    commits: list[pygit2.Oid] = []
    for oid in new:
        kind, data = repo.odb.read(oid)
        raw = oid.raw
        while kind == OBJ_TAG:  # an annotated tag, perhaps of another tag
            collector.add(raw, OBJ_TAG)
            raw, _kind = tag_target(data)
            kind, data = repo.odb.read(pygit2.Oid(raw=raw))
        if kind == OBJ_COMMIT:
            commits.append(pygit2.Oid(raw=raw))
        elif kind == OBJ_TREE:
            collector.tree(raw, [])
        else:
            collector.add(raw, int(kind))
    if commits:
        walker = repo.walk(commits[0], SortMode.NONE)
        for tip in commits[1:]:
            walker.push(tip)
        for oid in remote_branches:
            if oid in repo.odb and repo.odb.read(oid)[0] == OBJ_COMMIT:
                walker.hide(oid)
        for commit in walker:
            collector.add(commit.id.raw, OBJ_COMMIT)
            parents = [repo.odb.read(parent)[1] for parent in commit.parent_ids]
            collector.tree(commit.tree_id.raw, [commit_tree(data) for data in parents])
    return list(collector.objects.items())


def missing_objects(
    repo: pygit2.Repository, new: Iterable[pygit2.Oid], remote_branches: Iterable[pygit2.Oid]
) -> list[PackObject]:
    """Every object reachable from ``new`` that a remote with ``remote_branches`` lacks,
    with its data (:func:`missing_object_ids`, each object read)."""
    odb = repo.odb
    return [
        (oid, kind, odb.read(pygit2.Oid(raw=oid))[1])
        for oid, kind in missing_object_ids(repo, new, remote_branches)
    ]
