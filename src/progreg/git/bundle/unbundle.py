"""Unpacking a bundle safely: check everything in a quarantine, then make it visible.

:func:`unpack` reads a bundle's pack, indexes it (every object inflated,
every delta resolved, thin bases taken from the repository, every id
computed), checks that it is complete (every object its objects and
references refer to is in the pack or the repository) and writes it, with
an index, into a *quarantine*: a temporary object directory inside the
repository that Git and libgit2 do not look at. Nothing is visible until
:meth:`IncomingPack.migrate` moves the pack into ``objects/pack``; leaving the
``with`` block removes the quarantine. So a bundle refused at any step leaves
the repository exactly as it was. As ``git receive-pack`` does, the migrated
pack holds a ``.keep`` (created before it is renamed into place) until the
caller has written the refs that reach its objects and calls
:meth:`IncomingPack.release`: a concurrent ``git repack -a -d`` leaves it alone.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pygit2

from progreg.errors import BundleError
from progreg.git.bundle.format import BundleHeader
from progreg.git.durability import make_dirs
from progreg.git.errors import MalformedObjectError
from progreg.git.failures import write_failure
from progreg.git.objects import encoding as objects
from progreg.git.objects.encoding import OBJ_BLOB, OBJ_TREE, RawObject
from progreg.git.objects.fsck import IncomingObjects
from progreg.git.pack import format as packs
from progreg.git.pack.mapped import MappedFile
from progreg.git.pack.objectread import packed_odb, raw_reader
from progreg.git.pack.packdir import PackKeep, place_pack, update_pack_info
from progreg.git.permissions import READ_ONLY_MODE, set_created_mode
from progreg.git.settings import repository_settings

#: Why an object git fsck refuses is refused here too.
FSCK_REFUSED = (
    "git fsck --strict refuses this object, and a server with receive.fsckObjects would"
    " refuse every push of a registry holding it; nothing was imported"
)
#: Handles :meth:`IncomingPack.handles` gives before it opens a fresh one.
USES_PER_HANDLE = 1024
#: Names Git refuses in a tree (``git fsck``), in lower case.
_BAD_NAMES = frozenset({b".", b"..", b".git"})
_ENTRY = re.compile(rb"([0-7]{5,6}) ([^\x00/]+)\x00.{20}", re.DOTALL)


def tree_problem(
    data: bytes, forbidden_modes: frozenset[bytes] = frozenset(), max_entries: int | None = None
) -> str | None:
    """Why the (well-formed) tree ``data`` is unsafe, or ``None``.

    Unsafe: an entry named ``.``, ``..`` or ``.git`` (in any case, which Git
    refuses to check out), or one of ``forbidden_modes`` (``b"120000"`` for
    symbolic links, ``b"160000"`` for submodules). A quick look for the bytes
    that could make an entry unsafe comes first; only a tree that has them is
    parsed, so that the look costs a few microseconds per tree. With
    ``max_entries``, a tree of more entries is unsafe too.
    """
    # Every entry ends its name with a NUL: at least as many NULs as entries.
    if max_entries is not None and data.count(b"\x00") > max_entries:
        count = len(_ENTRY.findall(data))
        if count > max_entries:
            return f"a tree holds {count} entries, more than the {max_entries} allowed"
    # An unsafe name starts with a dot after its mode's space; a forbidden mode is
    # followed by one. Object ids can hold those bytes too: then the tree is parsed.
    if b" ." not in data and not any(mode + b" " in data for mode in forbidden_modes):
        return None
    for mode, name in _ENTRY.findall(data):
        if name.lower() in _BAD_NAMES:
            return f"a tree holds an entry named {name.decode(errors='replace')!r}"
        if mode in forbidden_modes:
            kind = {b"120000": "a symbolic link", b"160000": "a submodule"}.get(mode, "")
            what = kind or f"an entry of mode {mode.decode()}"
            return f"a tree holds {what} ({name.decode(errors='replace')!r}), which is refused"
    return None


@dataclass
class _Check:
    """Facts gathered while indexing: the ids the pack's objects refer to, flagged blobs."""

    forbidden_modes: frozenset[bytes] = frozenset()
    flag_blob: Callable[[bytes], bool] | None = None
    max_blob_size: int | None = None
    max_tree_entries: int | None = None
    referenced: set[bytes] = field(default_factory=set)
    flagged: list[bytes] = field(default_factory=list)
    fsck: IncomingObjects = field(default_factory=IncomingObjects)

    def visit(self, oid: bytes, kind: int, data: bytes) -> None:
        if kind == OBJ_BLOB:
            if self.max_blob_size is not None and len(data) > self.max_blob_size:
                raise BundleError(
                    f"file {oid.hex()} is {len(data)} bytes, over the limit of"
                    f" {self.max_blob_size} bytes"
                )
            if self.flag_blob is not None and self.flag_blob(data):
                self.flagged.append(oid)
        else:
            objects.add_references(kind, data, self.referenced)
            if kind == OBJ_TREE:
                problem = tree_problem(data, self.forbidden_modes, self.max_tree_entries)
                if problem is not None:
                    raise BundleError(f"{problem} (tree {oid.hex()})")
            refusal = self.fsck.refusal(oid, kind, data)
            if refusal is not None:
                raise BundleError(f"{refusal}; {FSCK_REFUSED}")


class IncomingPack:
    """A bundle's objects, checked and held in a quarantine until :meth:`migrate`.

    Use it as a context manager: on exit the quarantine is removed, so objects
    that were not migrated leave no trace in the repository.
    """

    def __init__(
        self,
        repo_path: Path,
        header: BundleHeader,
        quarantine: Path,
        files: list[Path],
        object_count: int,
        new_objects: bool,
        size: int,
        flagged: list[bytes] | None = None,
    ) -> None:
        self.repo_path = repo_path
        self.header = header
        self.quarantine = quarantine
        self.object_count = object_count
        #: False when the repository already held every object of the bundle.
        self.new_objects = new_objects
        self.size = size
        #: The blobs of the pack for which ``unpack``'s ``flag_blob`` returned True.
        self.flagged = list(flagged or [])
        self._files = files
        self._migrated = False
        self._keeps: list[PackKeep] = []

    def repository(self) -> pygit2.Repository:
        """A new handle on the repository that also sees the quarantined objects."""
        repo = pygit2.Repository(str(self.repo_path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        repo.odb.add_disk_alternate(str(self.quarantine))
        return repo

    def handles(self, every: int | None = None) -> Generator[pygit2.Repository, None, None]:
        """Handles as :meth:`repository` gives, a fresh one every ``every`` handles taken.

        libgit2 caches the commits, tags and small trees a handle reads, up to a
        process-wide limit counted in raw bytes, which their parsed form takes
        several times over: checking 100k tags through one handle fills it.
        Each handle left is emptied at once (``free()``), the last when the
        iterator is closed. ``every`` is :data:`USES_PER_HANDLE` by default.
        """
        every = USES_PER_HANDLE if every is None else max(1, every)
        repo = self.repository()
        uses = 0
        try:
            while True:
                if uses == every:
                    repo.free()
                    repo = self.repository()
                    uses = 0
                uses += 1
                yield repo
        finally:
            repo.free()

    def migrate(self) -> None:
        """Move the checked pack into the repository's object store, kept until :meth:`release`.

        Git's order: the ``.keep`` first, then the pack, the index last.
        """
        if self._migrated:
            return
        target = self.repo_path / "objects" / "pack"
        make_dirs(target, self.repo_path, repository_settings(self.repo_path).shared)
        if any((target / file.name).exists() for file in self._files if file.suffix == ".pack"):
            # The same pack is there, and may go with a git repack that listed it
            # (place_pack): the objects are written loose as well.
            self._write_loose()
        for pack in [file for file in self._files if file.suffix == ".pack"]:
            keep, _ = place_pack(pack, pack.with_suffix(".idx"), target / pack.name)
            if keep is not None:
                self._keeps.append(keep)
        for file in self._files:  # what else Git writes beside a pack (.rev...)
            if file.suffix not in (".pack", ".idx") and file.exists():
                os.replace(file, target / file.name)
        self._migrated = True
        update_pack_info(self.repo_path / "objects")

    def _write_loose(self) -> None:
        """Write every quarantined object into the repository as a loose object."""
        quarantined = packed_odb(self.quarantine)
        repo = pygit2.Repository(str(self.repo_path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        try:
            for oid in quarantined:
                kind, data = quarantined.read(oid)
                repo.odb.write(kind, data)
        finally:
            repo.free()

    def release(self) -> None:
        """Release the migrated pack's keep: call once refs reach its objects (or on failure)."""
        keeps, self._keeps = self._keeps, []
        for keep in keeps:
            keep.release()

    def close(self) -> None:
        """Remove the quarantine (and whatever was not migrated)."""
        shutil.rmtree(self.quarantine, ignore_errors=True)

    def __enter__(self) -> IncomingPack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def missing_prerequisites(repo: pygit2.Repository, header: BundleHeader) -> list[str]:
    """The prerequisite commits of ``header`` that ``repo`` lacks."""
    missing = []
    for oid, _comment in header.prerequisites:
        found = repo.get(oid)
        if not isinstance(found, pygit2.Commit):
            missing.append(oid)
    return missing


def unpack(
    repo: pygit2.Repository,
    path: str | os.PathLike[str],
    header: BundleHeader,
    *,
    max_object_size: int,
    accept_ref: Callable[[str], bool] | None = None,
    progress: packs.Progress | None = None,
    forbidden_modes: frozenset[bytes] = frozenset(),
    flag_blob: Callable[[bytes], bool] | None = None,
    max_blob_size: int | None = None,
    max_tree_entries: int | None = None,
) -> IncomingPack:
    """Check the bundle's pack completely and hold it in a quarantine; see :class:`IncomingPack`.

    Refused with :class:`BundleError`, leaving the repository untouched: a
    reference ``accept_ref`` rejects, missing prerequisites, a pack that is
    truncated or corrupt (checksum, zlib, deltas, sizes), objects over
    ``max_object_size`` bytes, a tree Git would refuse (see :func:`tree_problem`;
    ``forbidden_modes`` adds modes to refuse), or objects reachable from the
    bundle's references that are neither in the pack nor in the repository.
    ``flag_blob(data)`` is asked about every blob of the pack as it is read;
    the ids of those it flags are listed in :attr:`IncomingPack.flagged`.
    ``max_blob_size`` and ``max_tree_entries`` refuse larger blobs and trees.
    Every object is also judged as ``git fsck --strict`` judges it
    (:mod:`progreg.git.objects.fsck`); one it refuses refuses the bundle.
    ``progress(done, total)`` is told how many of the pack's objects are checked.
    """
    where = str(path)
    if accept_ref is not None:
        refused = [name for name, _ in header.references if not accept_ref(name)]
        if refused:
            raise BundleError(f"{where}: refusing references {', '.join(refused[:10])}")
    missing = missing_prerequisites(repo, header)
    if missing:
        raise BundleError(
            f"{where} builds on {len(missing)} commit(s) this repository lacks:"
            f" {', '.join(m[:12] for m in missing[:10])}. Import the bundle it continues first."
        )
    try:
        mapped = MappedFile(path)
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read the bundle {where}: {exc}") from exc
    check = _Check(forbidden_modes, flag_blob, max_blob_size, max_tree_entries)
    with mapped:
        return _unpack(repo, where, header, mapped, max_object_size, progress, check)


def _unpack(
    repo: pygit2.Repository,
    where: str,
    header: BundleHeader,
    mapped: MappedFile,
    max_object_size: int,
    progress: packs.Progress | None,
    check: _Check,
) -> IncomingPack:
    """:func:`unpack` once the bundle is mapped: index, check and quarantine its pack."""
    offset = header.pack_offset
    pack_data = mapped.view[offset:]

    def release(start: int, end: int) -> None:
        mapped.release(offset + start, offset + end)

    odb = repo.odb
    prerequisites = {bytes.fromhex(oid) for oid, _ in header.prerequisites}

    def external(oid: bytes) -> RawObject | None:
        key = pygit2.Oid(raw=oid)
        if key not in odb:
            return None
        kind, raw = odb.read(key)
        return int(kind), raw

    total = int.from_bytes(pack_data[8:12], "big") if len(pack_data) >= 12 else 0
    seen = 0

    def visit(oid: bytes, kind: int, raw: bytes) -> None:
        nonlocal seen
        check.visit(oid, kind, raw)
        seen += 1
        if progress is not None and (seen % 1024 == 0 or seen == total):
            progress(seen, total)

    try:
        indexed = packs.index_pack(
            pack_data,
            external=external,
            visit=visit,
            max_object_size=max_object_size,
            release=release,
        )
    except (BundleError, MalformedObjectError) as exc:
        raise BundleError(f"{where}: {exc}") from exc
    wanted = check.referenced
    check.referenced = set()
    wanted.discard(b"")
    wanted.update(bytes.fromhex(oid) for _, oid in header.references)
    new_objects = False
    for index in range(len(indexed)):  # what the pack holds is not wanted from elsewhere
        oid = indexed.oid(index)
        wanted.discard(oid)
        new_objects = new_objects or pygit2.Oid(raw=oid) not in odb
    absent = [
        oid
        for oid in wanted - indexed.external.keys() - prerequisites
        if pygit2.Oid(raw=oid) not in odb
    ]
    del wanted
    if absent:
        raise BundleError(
            f"{where} is incomplete: {len(absent)} object(s) it refers to are neither in the"
            f" bundle nor in the repository (such as {absent[0].hex()})"
        )
    repo_path = Path(repo.path)
    quarantine = repo_path / "objects" / f"incoming-{secrets.token_hex(6)}"
    try:
        files = _write_pack(quarantine / "pack", pack_data, indexed, release) if new_objects else []
    except OSError as exc:
        shutil.rmtree(quarantine, ignore_errors=True)
        raise write_failure(repo_path, exc, f"write the bundle's objects into {repo_path}") from exc
    if not files:
        quarantine.mkdir(parents=True, exist_ok=True)
    _finish_fsck(repo_path, quarantine, check.fsck, where)
    size = len(pack_data)
    pack_data.release()
    return IncomingPack(
        repo_path,
        header,
        quarantine,
        files,
        len(indexed),
        new_objects,
        size,
        check.flagged,
    )


def _finish_fsck(repo_path: Path, quarantine: Path, fsck: IncomingObjects, where: str) -> None:
    """Check the blobs the bundle's trees name ``.gitattributes``/``.gitmodules`` (Git's
    ``fsck_finish``), in the quarantine and the repository; remove the quarantine if refused."""
    repo = pygit2.Repository(str(repo_path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
    try:
        repo.odb.add_disk_alternate(str(quarantine))
        refusal = fsck.finish(raw_reader(repo.odb))
    finally:
        repo.free()
    if refusal is not None:
        shutil.rmtree(quarantine, ignore_errors=True)
        raise BundleError(f"{where}: {refusal}; {FSCK_REFUSED}")


def _write_pack(
    directory: Path, pack_data: memoryview, indexed: packs.IndexedPack, release: packs.Release
) -> list[Path]:
    """Write the pack (completed if thin) and its index into ``directory``."""
    directory.mkdir(parents=True)
    partial = directory / "incoming.pack"
    with open(partial, "wb") as out:
        checksum, added = packs.write_completed(out, pack_data, indexed.external, release=release)
    name = f"pack-{checksum.hex()}"
    pack_path = directory / f"{name}.pack"
    index_path = directory / f"{name}.idx"
    os.replace(partial, pack_path)
    with open(index_path, "wb") as out:
        indexed.write_index(out, added, checksum)
    shared = repository_settings(directory.parents[2]).shared  # <gitdir>/objects/incoming-*/pack
    for file in (pack_path, index_path):
        set_created_mode(file, READ_ONLY_MODE, shared)  # as Git's packs, see permissions
    return [pack_path, index_path]
