"""Checking every object of a repository, and saying where each damaged one is used.

Three passes, none of which hands libgit2 an object file it has not checked
first (libgit2 1.9 loops forever reading a *truncated* loose object):

- :func:`check_loose` reads every loose object file itself: a complete zlib
  stream, a ``<type> <size>`` header that matches the content, and the
  SHA-1 of the content equal to the file's name;
- :func:`check_packs` checks each pack's and index's trailing checksum and
  that the index belongs to the pack; :func:`check_pack_dir` checks what
  ``git fsck`` and ``git count-objects`` check of the files beside them: a
  multi-pack-index naming a pack that is gone, a pack without its index
  (and no ``.keep``: then it is being written), ``objects/info/packs``
  naming a pack that is gone;
- :func:`walk` reads every object reachable from the refs (commits, tags,
  trees, blobs) through libgit2, except the loose ones already found
  damaged, and records for each unreadable or missing object the ref and
  the tree path through which it was reached.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from progreg.git.pack import packdir

_KINDS = (b"commit", b"tree", b"blob", b"tag")
_READ_ERRORS = (pygit2.GitError, KeyError, ValueError)


@dataclass
class Damage:
    """An object (or a pack file) that cannot be read as it should."""

    object_id: str | None
    kind: str | None
    file: str | None  # relative to the repository: the loose file or the pack
    message: str
    refs: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def seen_at(self, ref: str, path: str | None) -> None:
        """Record that ``ref`` reaches this object, at ``path`` in a tree if it is one's entry."""
        if ref not in self.refs:
            self.refs.append(ref)
        if path and path not in self.paths:
            self.paths.append(path)


def _loose_problem(path: Path, name: str) -> tuple[str | None, str | None]:
    """(kind, problem) of one loose object file; problem ``None`` when it is sound."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    if not data:
        return None, "the file is empty"
    inflater = zlib.decompressobj()
    try:
        content = inflater.decompress(data)
    except zlib.error as exc:
        return None, f"not a valid compressed object ({exc})"
    if not inflater.eof:
        return None, f"truncated: its compressed data ends early ({len(data)} bytes)"
    header, nul, body = content.partition(b"\0")
    kind, _, size = header.partition(b" ")
    kind_name = kind.decode() if kind in _KINDS else None
    if not nul or kind_name is None or not size.isdigit():
        return None, "its header is not '<type> <size>'"
    if int(size) != len(body):
        return kind_name, f"its header says {int(size)} bytes, it holds {len(body)}"
    if hashlib.sha1(content).hexdigest() != name:
        return kind_name, "its content does not match its id"
    return kind_name, None


def check_loose(gitdir: Path) -> dict[str, Damage]:
    """Every damaged loose object file, by object id."""
    objects = gitdir / "objects"
    damaged: dict[str, Damage] = {}
    try:
        fans = sorted(entry.name for entry in os.scandir(objects))
    except OSError:
        return damaged
    for fan in fans:
        if len(fan) != 2 or not all(c in "0123456789abcdef" for c in fan):
            continue
        with os.scandir(objects / fan) as entries:
            names = sorted(e.name for e in entries if len(e.name) == 38)
        for rest in names:
            name = fan + rest
            if not all(c in "0123456789abcdef" for c in rest):
                continue
            kind, problem = _loose_problem(objects / fan / rest, name)
            if problem is not None:
                damaged[name] = Damage(name, kind, f"objects/{fan}/{rest}", problem)
    return damaged


def _pack_problem(pack: Path) -> str | None:
    index = pack.with_suffix(".idx")
    try:
        data = pack.read_bytes()
        index_data = index.read_bytes()
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if len(data) < 32 or data[:4] != b"PACK" or data[4:8] not in (b"\0\0\0\2", b"\0\0\0\3"):
        return "not a pack file (bad header or too short)"
    if hashlib.sha1(data[:-20]).digest() != data[-20:]:
        return "its checksum does not match its content (damaged or truncated)"
    if len(index_data) < 40 or hashlib.sha1(index_data[:-20]).digest() != index_data[-20:]:
        return f"its index {index.name} is damaged (checksum mismatch)"
    if index_data[-40:-20] != data[-20:]:
        return f"its index {index.name} belongs to another pack"
    return None


def check_packs(gitdir: Path) -> list[Damage]:
    """Every pack (with an index) whose pack or index file is damaged."""
    pack_dir = gitdir / "objects" / "pack"
    if not pack_dir.is_dir():
        return []
    damaged = []
    for pack in sorted(pack_dir.glob("pack-*.pack")):
        if not pack.with_suffix(".idx").is_file():
            continue  # being written, or left by a crash: not used by Git
        problem = _pack_problem(pack)
        if problem is not None:
            damaged.append(Damage(None, None, str(pack.relative_to(gitdir)), problem))
    return damaged


def check_pack_dir(gitdir: Path) -> list[Damage]:
    """Files of ``objects/pack`` (and ``objects/info/packs``) that Git would fail on."""
    pack_dir = gitdir / "objects" / "pack"
    try:
        names = set(os.listdir(pack_dir))
    except (FileNotFoundError, NotADirectoryError):
        names = set()
    damaged = []
    listed = packdir.midx_packs(pack_dir)
    for stem in sorted(listed or ()):
        if stem + ".pack" not in names or stem + ".idx" not in names:
            damaged.append(
                Damage(
                    None,
                    None,
                    f"objects/pack/{packdir.MIDX}",
                    f"the multi-pack-index lists {stem}.pack, which is gone (git fsck fails):"
                    f" remove the file or run `git multi-pack-index write`",
                )
            )
    for name in sorted(names):
        stem, dot, suffix = name.rpartition(".")
        if not stem.startswith("pack-") or not dot:
            continue
        # A kept pack without its index is being written (or its writer died: harmless);
        # an index without its pack is what an interrupted deletion leaves (git gc removes it).
        if suffix == "pack" and stem + ".idx" not in names and stem + ".keep" not in names:
            message = "a pack without its index (.idx): Git does not read its objects"
            damaged.append(Damage(None, None, f"objects/pack/{name}", message))
    damaged += [
        Damage(
            None,
            None,
            "objects/info/packs",
            f"names {name}, which is gone (dumb-HTTP clients fail): run `git update-server-info`",
        )
        for name in packdir.pack_info_problems(gitdir / "objects")
    ]
    return damaged


class _Walk:
    """One traversal of everything the refs reach; see :func:`walk`."""

    def __init__(self, repo: pygit2.Repository, skip: Mapping[str, Damage]) -> None:
        self.repo = repo
        self.skip = skip
        self.seen: set[str] = set()
        self.damage: dict[str, Damage] = {}
        self.commits: list[tuple[pygit2.Commit, str]] = []
        self.blob_paths: set[str] = set()

    def read(self, oid: pygit2.Oid, kind: str, ref: str, path: str | None) -> pygit2.Object | None:
        """The object, or ``None`` (recorded as damaged) when it cannot be read."""
        name = str(oid)
        if name in self.damage:
            self.damage[name].seen_at(ref, path)
            return None
        known = self.skip.get(name)
        if known is not None:
            self.damage[name] = known
            known.kind = known.kind or kind
            known.seen_at(ref, path)
            return None
        try:
            obj = self.repo[oid]
            if isinstance(obj, pygit2.Blob):
                obj.data  # noqa: B018 - inflating it is the check
        except _READ_ERRORS as exc:
            missing = isinstance(exc, KeyError) or "not found" in str(exc)
            message = "missing (no file holds it)" if missing else str(exc)
            self.damage[name] = Damage(name, kind, None, message)
            self.damage[name].seen_at(ref, path)
            return None
        return obj

    def ref(self, name: str, target: pygit2.Oid) -> None:
        first = "tag" if name.startswith("refs/tags/") else "commit"
        stack: list[tuple[pygit2.Oid, str]] = [(target, first)]
        while stack:
            oid, kind = stack.pop()
            if str(oid) in self.damage:
                self.damage[str(oid)].seen_at(name, None)
            if str(oid) in self.seen:
                continue
            self.seen.add(str(oid))
            obj = self.read(oid, kind, name, None)
            if isinstance(obj, pygit2.Tag):
                stack.append((obj.target, "commit"))
            elif isinstance(obj, pygit2.Commit):
                self.commits.append((obj, name))
                stack.extend((parent, "commit") for parent in obj.parent_ids)
                self.tree(obj.tree_id, name)

    def tree(self, root: pygit2.Oid, ref: str) -> None:
        stack: list[tuple[pygit2.Oid, str]] = [(root, "")]
        while stack:
            oid, path = stack.pop()
            if str(oid) in self.damage:
                self.damage[str(oid)].seen_at(ref, path)
            if str(oid) in self.seen:
                continue
            self.seen.add(str(oid))
            tree = self.read(oid, "tree", ref, path)
            if not isinstance(tree, pygit2.Tree):
                continue
            for entry in tree:
                entry_name = entry.name or ""
                entry_path = f"{path}/{entry_name}" if path else entry_name
                if entry.type_str == "tree":
                    stack.append((entry.id, entry_path))
                elif entry.type_str == "blob":
                    self.blob_paths.add(entry_path)
                    blob = str(entry.id)
                    if blob in self.damage:
                        self.damage[blob].seen_at(ref, entry_path)
                    elif blob not in self.seen:
                        self.seen.add(blob)
                        self.read(entry.id, "blob", ref, entry_path)


@dataclass
class WalkResult:
    """What :func:`walk` found: the damaged objects and the commits it could read."""

    damaged: list[Damage]
    commits: list[tuple[pygit2.Commit, str]]  # each readable commit, with the ref reaching it
    blob_paths: set[str]  # every path at which a file was met, in any tree


def walk(
    repo: pygit2.Repository, refs: Iterable[tuple[str, pygit2.Oid]], skip: Mapping[str, Damage]
) -> WalkResult:
    """Read everything ``refs`` reach; objects in ``skip`` (damaged files) are not read.

    Each damaged object is reported once, with every ref that reaches it
    and the tree paths at which it was met (the first path within each tree).
    """
    traversal = _Walk(repo, skip)
    for name, target in refs:
        traversal.ref(name, target)
    return WalkResult(list(traversal.damage.values()), traversal.commits, traversal.blob_paths)
