"""Git bundles (``gitformat-bundle``): write them, read their header, unpack them safely.

A bundle is a text header followed by a pack::

    # v2 git bundle                     (or "# v3 git bundle" then "@key=value" lines)
    -<commit id> <comment>              prerequisites: commits the reader must have
    <object id> <refname>               references the reader can fetch
    <empty line>
    PACK...                             the objects (a thin pack when there are prerequisites)

:func:`write_bundle` writes one from a repository's objects (plus objects held
in memory), with deltas between consecutive versions of a tree or file.
:func:`read_header` parses a header strictly. Reading a bundle's objects into
a repository is :mod:`progreg.git.bundle.unbundle`'s job.

This module knows nothing about registries: which refs are acceptable is the
caller's decision.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pygit2

from progreg.errors import BundleError, UnsupportedObjectFormatError
from progreg.git.objects import encoding as objects
from progreg.git.objects.delta import make_delta
from progreg.git.objects.encoding import (
    GITLINK_MODE,
    OBJ_COMMIT,
    OBJ_TAG,
    OBJ_TREE,
    TREE_MODE,
    RawObject,
)
from progreg.git.pack import format as packs
from progreg.git.pack.format import PackWriter, Progress
from progreg.git.permissions import FILE_MODE, set_created_mode
from progreg.git.settings import repository_settings

SIGNATURES = {b"# v2 git bundle\n": 2, b"# v3 git bundle\n": 3}
#: Largest header accepted (refs and prerequisites); a registry with a million
#: tags has a header of about 80 MB, so this is generous, and bounds memory.
MAX_HEADER_BYTES = 128 * 1024 * 1024
MAX_LINE_BYTES = 8192
_HEX = re.compile(r"[0-9a-f]{40}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CAPABILITY = re.compile(r"([A-Za-z0-9-]+)(?:=(.*))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # control characters, refused in header lines
_SUPPORTED_FORMATS = {"sha1"}
#: A source reopens its object database after this many reads (see ``_Source``).
_READS_PER_ODB = 4096


# -- the header -------------------------------------------------------------------


@dataclass(frozen=True)
class BundleHeader:
    """A bundle's header: format version, capabilities, prerequisites and references."""

    version: int
    capabilities: dict[str, str | None]
    prerequisites: list[tuple[str, str]]  # (commit id, comment)
    references: list[tuple[str, str]]  # (refname, object id), in file order
    pack_offset: int

    @property
    def refs(self) -> dict[str, str]:
        """The references as ``{refname: object id}``."""
        return dict(self.references)


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True when the file at ``path`` starts with a bundle signature."""
    try:
        with open(path, "rb") as handle:
            return handle.read(16) in SIGNATURES
    except OSError:
        return False


def read_header(path: str | os.PathLike[str]) -> BundleHeader:
    """Read and check the header of the bundle at ``path``; raise :class:`BundleError`."""
    try:
        with open(path, "rb") as handle:
            data = bytearray()
            while True:
                chunk = handle.read(1 << 16)
                if chunk:
                    data += chunk
                end = data.find(b"\n\n")
                if end >= 0 or not chunk:
                    break
                if len(data) > MAX_HEADER_BYTES:
                    raise BundleError(
                        f"{path}: the bundle header is larger than {MAX_HEADER_BYTES} bytes"
                    )
    except OSError as exc:
        raise BundleError(f"cannot read the bundle {path}: {exc}") from exc
    return parse_header(bytes(data), str(path))


def parse_header(data: bytes, where: str = "bundle") -> BundleHeader:
    """Parse a bundle header from the start of ``data`` (strictly)."""
    version = SIGNATURES.get(data[:16])
    if version is None:
        first = data.split(b"\n", 1)[0][:60]
        raise BundleError(
            f"{where} is not a Git bundle: its first line is {first!r}, expected"
            " '# v2 git bundle' or '# v3 git bundle'"
        )
    end = data.find(b"\n\n", 15)
    if end < 0:
        if len(data) > MAX_HEADER_BYTES:
            raise BundleError(f"{where}: the bundle header is larger than {MAX_HEADER_BYTES} bytes")
        raise BundleError(
            f"{where}: the bundle header is truncated (no empty line before the pack)"
        )
    if end + 2 > MAX_HEADER_BYTES:
        raise BundleError(f"{where}: the bundle header is larger than {MAX_HEADER_BYTES} bytes")
    capabilities: dict[str, str | None] = {}
    prerequisites: list[tuple[str, str]] = []
    references: list[tuple[str, str]] = []
    listed: set[str] = set()
    lines = data[16:end].split(b"\n") if end > 15 else []
    for number, raw in enumerate(lines, start=2):
        line = _decode_line(raw, number, where)
        if line.startswith("@"):
            if version < 3 or prerequisites or references:
                raise BundleError(f"{where}: line {number}: a capability is not allowed here")
            match = _CAPABILITY.fullmatch(line[1:])
            if match is None:
                raise BundleError(f"{where}: line {number}: malformed capability {line[:80]!r}")
            capabilities[match.group(1)] = match.group(2)
            if match.group(1) == "object-format":  # before the ids, which it sizes
                _check_object_format(match.group(2), where)
        elif line.startswith("-"):
            if references:
                raise BundleError(f"{where}: line {number}: a prerequisite after the references")
            oid, _, comment = line[1:].partition(" ")
            if _HEX.fullmatch(oid) is None:
                raise BundleError(f"{where}: line {number}: malformed prerequisite {line[:80]!r}")
            prerequisites.append((oid, comment))
        else:
            oid, sep, name = line.partition(" ")
            if _SHA256_HEX.fullmatch(oid) is not None:  # a v2 bundle cannot say its format
                _check_object_format("sha256", where)
            if not sep or _HEX.fullmatch(oid) is None or not _valid_refname(name):
                raise BundleError(f"{where}: line {number}: malformed reference line {line[:80]!r}")
            if name in listed:
                raise BundleError(f"{where}: line {number}: reference {name} is listed twice")
            listed.add(name)
            references.append((name, oid))
    _check_capabilities(capabilities, where)
    return BundleHeader(version, capabilities, prerequisites, references, end + 2)


def _decode_line(raw: bytes, number: int, where: str) -> str:
    if len(raw) > MAX_LINE_BYTES:
        raise BundleError(f"{where}: line {number} of the bundle header is too long")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{where}: line {number} of the bundle header is not UTF-8") from exc
    if not line or _CONTROL.search(line) is not None:
        raise BundleError(
            f"{where}: line {number} of the bundle header is empty or has control characters"
        )
    return line


def _valid_refname(name: str) -> bool:
    return name == "HEAD" or (name.startswith("refs/") and pygit2.reference_is_valid_name(name))


def _check_object_format(value: str | None, where: str) -> None:
    """Raise :class:`~progreg.UnsupportedObjectFormatError` unless ``value`` is ``sha1``."""
    if value not in _SUPPORTED_FORMATS:
        name = "SHA-256" if value == "sha256" else repr(value)
        raise UnsupportedObjectFormatError(
            f"{where} is a bundle of {name} objects (@object-format={value}): {name} bundles"
            " are not supported; progreg imports bundles of SHA-1 repositories only"
        )


def _check_capabilities(capabilities: Mapping[str, str | None], where: str) -> None:
    for key, value in capabilities.items():
        if key == "object-format":
            _check_object_format(value, where)
        elif key == "filter":
            raise BundleError(
                f"{where}: the bundle is partial (filter={value}): it lacks objects and cannot"
                " be imported"
            )
        else:
            raise BundleError(f"{where}: the bundle needs capability {key!r}, which is unknown")


# -- writing ----------------------------------------------------------------------


@dataclass(frozen=True)
class WrittenBundle:
    """What :func:`write_bundle` wrote."""

    path: Path
    version: int
    references: list[tuple[str, str]]
    prerequisites: list[str]
    object_count: int
    size: int


class _Source:
    """Raw objects from memory first, then from the repository.

    Reading a whole history through one object database would leave libgit2's
    per-pack caches of delta bases full for as long as the packs stay open
    (they are shared by every handle of the process): the source reads
    through an object database of its own, reopened every
    :data:`_READS_PER_ODB` reads, after releasing ``repo``'s (which reopens
    it on its next read).
    """

    def __init__(self, repo: pygit2.Repository, extra: Mapping[bytes, RawObject]) -> None:
        self._objects = str(Path(repo.path) / "objects")
        repo.free()
        self._odb = pygit2.Odb(self._objects)
        self._reads = 0
        self._extra = extra

    def read(self, oid: bytes) -> RawObject:
        found = self._extra.get(oid)
        if found is not None:
            return found
        self._reads += 1
        if self._reads % _READS_PER_ODB == 0:
            self._odb = pygit2.Odb(self._objects)
        kind, data = self._odb.read(pygit2.Oid(raw=oid))
        return int(kind), data


_Entries = frozenset[bytes]


class _Collector:
    """Choose the objects of a bundle and write them, with deltas between versions.

    Commits are visited parents first; for each, only the trees and blobs that
    differ from its first parent's are new. A changed tree or blob is written
    as a delta against the previous version at the same path when that is
    smaller (at most ``MAX_DELTA_DEPTH`` deltas deep), so a registry's history,
    where each commit changes one file, packs small. Trees are compared as
    sets of raw entries, so only the entries that changed are looked at.

    With ``wanted`` (maintenance packing), only those objects are written, and
    deltas only against bases already in this pack, so the pack is
    self-contained (never thin) and can sit in ``objects/pack``.
    """

    def __init__(
        self, source: _Source, writer: PackWriter, wanted: set[bytes] | None = None
    ) -> None:
        self.source = source
        self.writer = writer
        self.wanted = wanted
        self.seen: set[bytes] = set()
        self.depth: dict[bytes, int] = {}
        self._trees: dict[bytes, tuple[bytes, _Entries]] = {}
        self._recent: dict[bytes, tuple[bytes, _Entries]] = {}

    def _tree(self, oid: bytes) -> tuple[bytes, _Entries]:
        cached = self._recent.get(oid) or self._trees.get(oid)
        if cached is None:
            kind, data = self.source.read(oid)
            if kind != OBJ_TREE:
                raise BundleError(f"object {oid.hex()} is not a tree")
            cached = (data, frozenset(objects.tree_entries(data)))
        self._recent[oid] = cached
        return cached

    def next_commit(self) -> None:
        """Forget trees parsed before the previous commit (bounded memory)."""
        self._trees, self._recent = self._recent, {}

    def emit(self, oid: bytes, kind: int, data: bytes, base: bytes | None = None) -> None:
        """Write an object once, as a delta against ``base`` when that pays."""
        if oid in self.seen or (self.wanted is not None and oid not in self.wanted):
            return
        self.seen.add(oid)
        if base is not None and (self.wanted is None or base in self.writer.offsets):
            depth = self.depth.get(base, 0) + 1
            if depth <= packs.MAX_DELTA_DEPTH:
                base_kind, base_data = self._base_data(base)
                if base_kind == kind:
                    delta = make_delta(base_data, data)
                    if delta is not None:
                        self.writer.add_delta(oid, base, delta)
                        self.depth[oid] = depth
                        return
        self.writer.add(oid, kind, data)

    def _base_data(self, oid: bytes) -> RawObject:
        cached = self._recent.get(oid) or self._trees.get(oid)
        if cached is not None:
            return OBJ_TREE, cached[0]
        return self.source.read(oid)

    def tree(self, new: bytes, old: bytes | None) -> None:
        """Emit tree ``new`` and what it holds that ``old`` (same path, parent) does not."""
        if new == old or new in self.seen:
            return
        if self.wanted is not None and new not in self.wanted:
            return  # already packed; what it holds was packed with it
        data, entries = self._tree(new)
        self.emit(new, OBJ_TREE, data, old)
        previous: dict[bytes, tuple[bytes, bytes]] = {}
        if old is not None:
            old_entries = self._tree(old)[1]
            changed = entries - old_entries
            for raw in old_entries - entries:
                mode, name, child = objects.split_entry(raw)
                previous[name] = (mode, child)
        else:
            changed = entries
        for raw in sorted(changed):
            mode, name, child = objects.split_entry(raw)
            before = previous.get(name)
            if mode == TREE_MODE:
                self.tree(child, before[1] if before and before[0] == TREE_MODE else None)
            elif mode != GITLINK_MODE and child not in self.seen:
                base = None
                if before is not None and before[0] not in (TREE_MODE, GITLINK_MODE):
                    base = before[1]
                kind, blob = self.source.read(child)
                self.emit(child, kind, blob, base)


def _walk_commits(
    source: _Source, tips: Iterable[bytes], excluded: set[bytes]
) -> tuple[list[tuple[bytes, bytes, list[bytes], bytes]], set[bytes]]:
    """Commits reachable from ``tips`` but not from ``excluded``, parents first.

    Returns ``[(id, tree, parents, raw)]`` and the boundary: excluded commits
    that are parents of included ones.
    """
    order: list[tuple[bytes, bytes, list[bytes], bytes]] = []
    boundary: set[bytes] = set()
    state: dict[bytes, int] = {}  # 1: being visited, 2: done
    for tip in tips:
        if tip in excluded or tip in state:
            continue
        stack: list[tuple[bytes, bytes, list[bytes], bytes, int]] = []
        kind, data = source.read(tip)
        stack.append((tip, objects.commit_tree(data), objects.commit_parents(data), data, 0))
        state[tip] = 1
        while stack:
            oid, tree, parents, data, index = stack.pop()
            if index < len(parents):
                stack.append((oid, tree, parents, data, index + 1))
                parent = parents[index]
                if parent in excluded:
                    boundary.add(parent)
                elif parent not in state:
                    state[parent] = 1
                    kind, raw = source.read(parent)
                    if kind != OBJ_COMMIT:
                        raise BundleError(f"parent {parent.hex()} of {oid.hex()} is not a commit")
                    stack.append(
                        (parent, objects.commit_tree(raw), objects.commit_parents(raw), raw, 0)
                    )
                continue
            state[oid] = 2
            order.append((oid, tree, parents, data))
    return order, boundary


def _reachable_commits(source: _Source, starts: Iterable[bytes]) -> set[bytes]:
    seen: set[bytes] = set()
    stack = list(starts)
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        kind, data = source.read(oid)
        if kind == OBJ_COMMIT:
            stack.extend(objects.commit_parents(data))
    return seen


def _ancestors_among(source: _Source, starts: Iterable[bytes], wanted: set[bytes]) -> set[bytes]:
    """The commits of ``wanted`` reachable from ``starts``; the walk stops once all are found."""
    found: set[bytes] = set()
    seen: set[bytes] = set()
    stack = list(starts)
    while stack and len(found) < len(wanted):
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if oid in wanted:
            found.add(oid)
        kind, data = source.read(oid)
        if kind == OBJ_COMMIT:
            stack.extend(objects.commit_parents(data))
    return found


def _peel(source: _Source, oid: bytes) -> tuple[list[tuple[bytes, bytes]], bytes, int]:
    """Follow annotated tags from ``oid``: the tag objects crossed, the final id and type."""
    tags: list[tuple[bytes, bytes]] = []
    kind, data = source.read(oid)
    while kind == OBJ_TAG:
        if len(tags) > 16:
            raise BundleError(f"tag {oid.hex()} nests too deeply")
        tags.append((oid, data))
        oid, _ = objects.tag_target(data)
        kind, data = source.read(oid)
    return tags, oid, kind


def _subject(data: bytes) -> str:
    message = data.split(b"\n\n", 1)[1] if b"\n\n" in data else b""
    line = message.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return "".join(char for char in line if ord(char) >= 32)[:200]


@dataclass
class _Plan:
    """What a bundle will hold: commits (parents first), tag objects, other tips."""

    commits: list[tuple[bytes, bytes, list[bytes], bytes]]
    trees: dict[bytes, bytes]
    tags: list[tuple[bytes, bytes]]
    others: list[tuple[bytes, int]]
    prerequisites: list[tuple[str, str]]


def _plan(source: _Source, references: Sequence[tuple[str, str]], exclude: Iterable[str]) -> _Plan:
    excluded_tips = []
    for oid in exclude:
        _, target, kind = _peel(source, bytes.fromhex(oid))
        if kind == OBJ_COMMIT:
            excluded_tips.append(target)
    excluded = _reachable_commits(source, excluded_tips)
    tips: list[bytes] = []
    tags: list[tuple[bytes, bytes]] = []
    others: list[tuple[bytes, int]] = []
    for _name, oid in references:
        crossed, target, kind = _peel(source, bytes.fromhex(oid))
        tags += crossed
        if kind == OBJ_COMMIT:
            tips.append(target)
        else:
            others.append((target, kind))
    commits, boundary = _walk_commits(source, tips, excluded)
    # The boundary is what `git rev-list --boundary` (and so `git bundle create`)
    # lists. A ref that did not move points at an excluded commit, which the
    # reader has when it is an ancestor of the boundary; only those that are
    # not (git would leave such a branch out, or refuse an empty bundle), and
    # are not ancestors of one another, are listed too.
    unmoved = {tip for tip in tips if tip in excluded} - boundary
    if unmoved:
        unmoved -= _ancestors_among(source, boundary, unmoved)
    if len(unmoved) > 1:
        parents = [p for tip in unmoved for p in objects.commit_parents(source.read(tip)[1])]
        unmoved -= _ancestors_among(source, parents, unmoved)
    boundary |= unmoved
    prerequisites = [
        (commit.hex(), _subject(source.read(commit)[1])) for commit in sorted(boundary)
    ]
    trees = {oid: tree for oid, tree, _, _ in commits}
    return _Plan(commits, trees, tags, others, prerequisites)


def _write_objects(
    source: _Source, plan: _Plan, writer: PackWriter, progress: Progress | None = None
) -> None:
    collector = _Collector(source, writer)
    total = len(plan.commits)
    for oid, _tree, _parents, data in plan.commits:
        collector.emit(oid, OBJ_COMMIT, data)
    for oid, data in plan.tags:
        collector.emit(oid, OBJ_TAG, data)
    for done, (_oid, tree, parents, _data) in enumerate(plan.commits, 1):
        if progress is not None and (done % 256 == 0 or done == total):
            progress(done, total)
        base = None
        if parents:
            base = plan.trees.get(parents[0])
            if base is None:
                base = objects.commit_tree(source.read(parents[0])[1])
        collector.tree(tree, base)
        collector.next_commit()
    for oid, kind in plan.others:
        if kind == OBJ_TREE:
            collector.tree(oid, None)
        else:
            collector.emit(oid, kind, source.read(oid)[1])


def _commits_parents_first(source: _Source, commits: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
    """``[(id, tree)]`` of ``commits`` ordered so that parents among them come first."""
    wanted = set(commits)
    info: dict[bytes, tuple[bytes, list[bytes]]] = {}
    for oid in wanted:
        data = source.read(oid)[1]
        info[oid] = (objects.commit_tree(data), objects.commit_parents(data))
    parents_of = {oid: parents for oid, (_, parents) in info.items()}
    return [(oid, info[oid][0]) for oid in objects.parents_first(parents_of, sorted(wanted))]


def write_objects(
    repo: pygit2.Repository, wanted: set[bytes], commits: Iterable[bytes], writer: PackWriter
) -> None:
    """Write exactly the objects ``wanted`` into ``writer``, with deltas between versions.

    ``commits`` are the commits among them. Trees and blobs reached by
    comparing each commit's tree with its first parent's are written as
    deltas against their previous version when that version is in this pack
    too (the same machinery as bundles); every other wanted object is then
    written whole. The pack is self-contained: it can go into ``objects/pack``.
    """
    source = _Source(repo, {})
    collector = _Collector(source, writer, wanted)
    order = _commits_parents_first(source, commits)
    trees = dict(order)
    for oid, _tree in order:
        collector.emit(oid, OBJ_COMMIT, source.read(oid)[1])
    for oid, tree in order:
        parents = objects.commit_parents(source.read(oid)[1])
        base = None
        if parents:
            base = trees.get(parents[0])
            if base is None:
                with contextlib.suppress(KeyError):
                    base = objects.commit_tree(source.read(parents[0])[1])
        collector.tree(tree, base)
        collector.next_commit()
    for oid in sorted(wanted - collector.seen):
        kind, data = source.read(oid)
        collector.emit(oid, kind, data)


def _signature_lines(version: int) -> bytes:
    return b"# v3 git bundle\n@object-format=sha1\n" if version == 3 else b"# v2 git bundle\n"


def _whole_pack(repo: pygit2.Repository, references: Sequence[tuple[str, str]]) -> Path | None:
    """The repository's only pack, when it holds every object and the refs are exactly these.

    That is the state ``git gc`` leaves: one pack of the reachable objects and
    no loose ones. A full bundle of every ref is then that pack as it is (Git
    reuses it the same way), with no object to read, walk or compress.
    """
    objects = Path(repo.path) / "objects"
    if (objects / "info" / "alternates").exists():
        return None
    names = {name for name, _ in references if name != "HEAD"}
    if set(repo.listall_references()) != names:
        return None
    packs_found = list((objects / "pack").glob("*.pack")) if (objects / "pack").is_dir() else []
    if len(packs_found) != 1 or not packs_found[0].with_suffix(".idx").is_file():
        return None
    with os.scandir(objects) as entries:
        for entry in entries:
            if len(entry.name) == 2 and entry.is_dir() and any(os.scandir(entry.path)):
                return None
    return packs_found[0]


@contextlib.contextmanager
def _atomic_file(destination: Path, shared: int) -> Iterator[BinaryIO]:
    """A file that appears at ``destination`` whole when the block succeeds, or not at all.

    It gets the mode ``git bundle create`` gives its file: ``0666`` less the
    umask, adjusted for the repository's ``core.sharedRepository`` (``shared``).
    """
    descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    try:
        with os.fdopen(descriptor, "w+b") as handle:
            yield handle
        set_created_mode(temporary, FILE_MODE, shared)
        os.replace(temporary, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _copy_pack(
    pack: Path,
    destination: Path,
    references: Sequence[tuple[str, str]],
    version: int,
    shared: int,
) -> WrittenBundle:
    header = _signature_lines(version) + b"".join(
        f"{oid} {name}\n".encode() for name, oid in references
    )
    with _atomic_file(destination, shared) as out, open(pack, "rb") as source:
        out.write(header + b"\n")
        start = source.read(12)
        if len(start) != 12 or start[:4] != b"PACK":
            raise OSError(f"{pack} is not a pack")
        out.write(start)
        shutil.copyfileobj(source, out, 1 << 20)
        size = out.tell()
    return WrittenBundle(
        path=destination,
        version=version,
        references=list(references),
        prerequisites=[],
        object_count=int.from_bytes(start[8:12], "big"),
        size=size,
    )


def write_bundle(
    repo: pygit2.Repository,
    path: str | os.PathLike[str],
    references: Sequence[tuple[str, str]],
    *,
    exclude: Iterable[str] = (),
    extra: Mapping[bytes, RawObject] | None = None,
    version: int = 2,
    level: int = packs.DEFAULT_LEVEL,
    progress: Progress | None = None,
) -> WrittenBundle:
    """Write a bundle of ``references`` (``(refname, object id)``) to ``path``, atomically.

    Objects reachable from the commits in ``exclude`` are left out, and the
    excluded commits the bundle builds on are listed as its prerequisites: the
    excluded parents of its commits, as ``git rev-list --boundary`` (and so
    ``git bundle create``) finds them, plus the commit of any reference that
    points at an excluded commit none of those reaches (where git would leave
    a branch out of the bundle, or refuse to write an empty one).
    ``extra`` holds objects that are not in the repository (``{raw id: (type,
    data)}``). ``version`` is 2 or 3 (v3 adds ``@object-format=sha1``).
    ``progress(done, total)`` is told how many commits have been written; a
    bundle copied whole from the repository's only pack is one step,
    ``progress(1, 1)`` once it is written.
    """
    if version not in (2, 3):
        raise ValueError(f"bundle version must be 2 or 3, not {version}")
    for name, oid in references:
        if not _valid_refname(name) or _HEX.fullmatch(oid) is None:
            raise ValueError(f"invalid bundle reference {name!r} -> {oid!r}")
    exclude = list(exclude)
    shared = repository_settings(Path(repo.path)).shared
    whole = None if exclude or extra else _whole_pack(repo, references)
    if whole is not None:
        copied = _copy_pack(whole, Path(path), references, version, shared)
        if progress is not None:
            progress(1, 1)
        return copied
    source = _Source(repo, extra or {})
    plan = _plan(source, references, exclude)
    lines = [_signature_lines(version)]
    lines += [f"-{oid} {comment}".rstrip().encode() + b"\n" for oid, comment in plan.prerequisites]
    lines += [f"{oid} {name}\n".encode() for name, oid in references]
    lines.append(b"\n")
    destination = Path(path)
    with _atomic_file(destination, shared) as handle:
        handle.write(b"".join(lines))
        writer = PackWriter(handle, level)
        _write_objects(source, plan, writer, progress)
        writer.finish()
        size = handle.tell()
    return WrittenBundle(
        path=destination,
        version=version,
        references=list(references),
        prerequisites=[oid for oid, _ in plan.prerequisites],
        object_count=writer.count,
        size=size,
    )
