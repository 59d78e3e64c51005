"""Packing loose refs into ``packed-refs``, as ``git pack-refs --all`` does.

Every ref libgit2 writes is a loose file (``refs/tags/<tag>/<id>``...), and
a registry that tags its saves ends up with one file, and one disk block,
per tag: 100k tags are 100k files that every full listing of refs opens.
Packing moves them into the one sorted ``packed-refs`` file that Git,
libgit2 and :mod:`progreg.git.refs.reflist` read.

:func:`pack_refs` follows Git's protocol, so concurrent writers (progreg or
``git``) lose nothing:

1. it takes ``packed-refs.lock`` (created exclusively; if it exists, another
   process is rewriting ``packed-refs`` and nothing is done);
2. it reads the packed refs and then every loose ref (symbolic refs, refs
   that do not parse and refs whose object is missing stay loose), peels
   each ref that points at an annotated tag, and writes them all, sorted,
   with the ``peeled fully-peeled sorted`` header, into the lock file,
   which is flushed to disk and renamed over ``packed-refs``;
3. only then it deletes each loose file it packed, while holding that ref's
   own ``<ref>.lock`` and only if the file still holds the value packed (a
   ref updated meanwhile stays loose, and a loose ref takes precedence).

Readers list loose refs before reading ``packed-refs``; they see every ref
in one or the other at any moment. (libgit2's own ``compress_references``
is not used: it reads the loose refs before taking the lock, and its time
grows with the square of their number, about 100 s for 100k.)

:func:`pack_refs_when_due` is the automatic variant: it packs when the loose
refs are at least :data:`MIN_LOOSE_REFS` and at least one
:data:`LOOSE_REFS_RATIO`-th of the packed ones, so that the cost of rewriting
``packed-refs`` stays proportional to the number of refs written since.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import pygit2
from pygit2.enums import ObjectType

from progreg import events
from progreg.git.durability import fsync_dir
from progreg.git.locking import write_lock
from progreg.git.permissions import FILE_MODE, adjust_fd
from progreg.git.refs.reflist import loose_value
from progreg.git.settings import repository_settings

#: Loose refs below this count are never packed automatically.
MIN_LOOSE_REFS = 256
#: Pack automatically when loose refs reach this fraction (1/n) of the packed ones.
LOOSE_REFS_RATIO = 8
PACKED_REFS = "packed-refs"
_HEADER = b"# pack-refs with: peeled fully-peeled sorted \n"
#: About how many bytes one packed annotated tag takes (its line and its peel line).
_PACKED_REF_BYTES = 110
#: Peeling follows at most this many tags pointing at tags.
_MAX_PEEL = 16

#: A ref as packed: its object id and, for an annotated tag, the object it peels to.
Packed = tuple[str, str | None]


def loose_ref_count(gitdir: Path, limit: int) -> int:
    """How many loose ref files there are under ``refs/``, counting no further than ``limit``."""
    count = 0
    pending = [gitdir / "refs"]
    while pending and count < limit:
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            os.scandir(pending.pop()) as entries,
        ):
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif not entry.name.endswith(".lock"):
                    count += 1
    return min(count, limit)


def packed_ref_estimate(gitdir: Path) -> int:
    """About how many refs ``packed-refs`` holds, from its size."""
    try:
        return (gitdir / PACKED_REFS).stat().st_size // _PACKED_REF_BYTES
    except OSError:
        return 0


def packing_due(gitdir: Path) -> bool:
    """True when there are enough loose refs for :func:`pack_refs_when_due` to pack them."""
    needed = max(MIN_LOOSE_REFS, packed_ref_estimate(gitdir) // LOOSE_REFS_RATIO)
    return loose_ref_count(gitdir, needed) >= needed


def pack_refs(gitdir: str | os.PathLike[str]) -> int | None:
    """Pack every loose ref of the repository at ``gitdir`` (see the module).

    Call it holding the registry's write lock: progreg deletes refs under
    that lock, and libgit2 deletes a ref's loose file before it rewrites
    ``packed-refs``, so a pack in between would bring the deleted ref back.
    (``git`` deletes under ``packed-refs.lock``, which this holds.)

    Returns how many loose files were removed, or ``None`` when another
    process holds ``packed-refs.lock`` (nothing was changed). Raises
    :class:`OSError` when the files cannot be read or written; the refs are
    then as they were.
    """
    path = Path(gitdir)
    with _rewriting(path) as out:
        if out is None:
            return None
        repo = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH)
        packed, fully_peeled = _read_packed(path / PACKED_REFS)
        loose = _read_loose(path, repo.odb)
        if not loose and fully_peeled:
            return 0  # nothing to pack: packed-refs stays as it is
        _write_packed(out, _merged(repo.odb, packed, fully_peeled, loose))
    shared = repository_settings(path).shared
    return sum(_prune(path, name, oid, shared) for name, oid in loose.items())


@contextlib.contextmanager
def _rewriting(path: Path) -> Iterator[BinaryIO | None]:
    """Hold ``packed-refs.lock``: yield the file the new ``packed-refs`` is written into.

    Yields ``None`` when another process holds the lock. When the block has
    written the file, it replaces ``packed-refs``; when it wrote nothing, or
    raised, the lock is removed and ``packed-refs`` stays as it was.
    """
    lock = path / (PACKED_REFS + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        yield None
        return
    try:
        adjust_fd(fd, repository_settings(path).shared)  # Git's mode, kept by the rename
        with os.fdopen(fd, "wb") as out:
            yield out
            written = out.tell() > 0
        if written:
            os.replace(lock, path / PACKED_REFS)
        else:
            os.unlink(lock)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        raise


def _write_packed(out: BinaryIO, refs: Mapping[str, Packed]) -> None:
    """Write ``refs`` as ``packed-refs``: the header, then sorted lines; flushed to the disk."""
    out.write(_HEADER)
    for name in sorted(refs, key=str.encode):
        oid, peeled = refs[name]
        out.write(f"{oid} {name}\n".encode())
        if peeled is not None:
            out.write(f"^{peeled}\n".encode())
    out.flush()
    os.fsync(out.fileno())


def add_packed_refs(
    gitdir: str | os.PathLike[str], new: Mapping[str, str], *, durable: bool
) -> tuple[list[str], list[str]] | None:
    """Create the refs of ``new`` (``{name: object id}``) directly in ``packed-refs``.

    For many new refs at once (the tags of an import): one rewrite of
    ``packed-refs`` under its lock instead of a loose file per ref. Call it
    holding the registry's write lock. Returns ``(created, existing)``: a
    ref that exists (loose or packed) is left as it is; or ``None``, with
    nothing changed, when another process holds ``packed-refs.lock`` or a
    name would clash with a ref's path (``refs/tags/a`` against
    ``refs/tags/a/b``), for the caller to create the refs one by one.
    """
    path = Path(gitdir)
    with _rewriting(path) as out:
        if out is None:
            return None
        packed, fully_peeled = _read_packed(path / PACKED_REFS)
        loose = _LooseDirectories(path)
        existing = [name for name in new if name in packed or loose.lexists(name)]
        wanted = {name: oid for name, oid in new.items() if name not in existing}
        if not wanted:
            return [], existing
        if _clashes(loose, packed, wanted):
            return None
        odb = pygit2.Repository(str(path), pygit2.enums.RepositoryOpenFlag.NO_SEARCH).odb
        _write_packed(out, _merged(odb, packed, fully_peeled, wanted))
    if durable:
        fsync_dir(path)
    return list(wanted), existing


def _clashes(
    loose: _LooseDirectories, packed: Mapping[str, Packed], new: Mapping[str, str]
) -> bool:
    """Whether a name of ``new`` is a directory of refs, or has a ref as one of its directories."""
    names = set(packed) | set(new)
    directories = {parent for name in names for parent in _parents(name)}
    parents = {parent for name in new for parent in _parents(name)}
    if any(parent in names or loose.is_file(parent) for parent in parents):
        return True
    return any(name in directories or loose.is_dir(name) for name in new)


class _LooseDirectories:
    """Questions about loose ref paths, asked of the file system only where they can exist.

    A ref's file (or a directory of refs) can only exist if its directory
    does: that is checked once per directory, so that many new names under a
    directory that is not there (an import's, a first push's) cost no call
    each.
    """

    def __init__(self, gitdir: Path) -> None:
        self._root = os.fspath(gitdir)
        self._present: dict[str, bool] = {}

    def _directory_exists(self, directory: str) -> bool:
        present = self._present.get(directory)
        if present is None:
            present = os.path.isdir(os.path.join(self._root, directory))
            self._present[directory] = present
        return present

    def _may_exist(self, name: str) -> bool:
        directory = name.rpartition("/")[0]
        return not directory or self._directory_exists(directory)

    def lexists(self, name: str) -> bool:
        """Whether a file or directory ``name`` exists under the Git directory."""
        return self._may_exist(name) and os.path.lexists(os.path.join(self._root, name))

    def is_dir(self, name: str) -> bool:
        """Whether ``name`` is a directory of loose refs."""
        return self._may_exist(name) and os.path.isdir(os.path.join(self._root, name))

    def is_file(self, name: str) -> bool:
        """Whether ``name`` is a loose ref file."""
        return self._may_exist(name) and os.path.isfile(os.path.join(self._root, name))


def _parents(name: str) -> list[str]:
    """The directories of ref ``name``: ``refs/tags/a/b`` -> ``[refs/tags, refs/tags/a]``."""
    parts = name.split("/")
    return ["/".join(parts[:end]) for end in range(2, len(parts))]


def pack_refs_when_due(gitdir: str | os.PathLike[str], *, lock_timeout: float = 30.0) -> bool:
    """Pack the loose refs, under the registry's write lock, if :func:`packing_due`.

    Never raises (maintenance must not fail the save that triggered it): a
    failure is reported as a ``progreg.gc.failed`` event. Returns whether
    refs were packed.
    """
    path = Path(gitdir)
    try:
        if not packing_due(path):
            return False
        with write_lock(path, lock_timeout):
            return pack_refs(path) is not None
    except Exception as exc:
        events.emit("progreg.gc.failed", error=f"packing refs: {exc}")
        return False


def _read_packed(path: Path) -> tuple[dict[str, Packed], bool]:
    """The refs of ``packed-refs`` and whether its header says they are fully peeled."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, True
    refs: dict[str, Packed] = {}
    fully_peeled = False
    last: str | None = None
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        if line.startswith("#"):
            fully_peeled = fully_peeled or "fully-peeled" in line.split()
        elif line.startswith("^"):
            if last is not None:
                refs[last] = (refs[last][0], line[1:])
        else:
            oid, _, name = line.partition(" ")
            if name:
                refs[name] = (oid, None)
                last = name
    return refs, fully_peeled


def _read_loose(gitdir: Path, odb: pygit2.Odb) -> dict[str, str]:
    """Every loose ref that can be packed: ``{name: object id}``."""
    refs: dict[str, str] = {}
    pending = ["refs/"]
    while pending:
        directory = pending.pop()
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            os.scandir(gitdir / directory) as entries,
        ):
            for entry in entries:
                name = directory + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append(name + "/")
                elif not entry.name.endswith(".lock"):
                    oid = _loose_value(Path(entry.path))
                    if oid is not None and _exists(odb, oid):
                        refs[name] = oid
    return refs


def _loose_value(path: Path) -> str | None:
    """The object id a loose ref file holds, or ``None`` (symbolic, unreadable, malformed)."""
    try:
        return loose_value(path)
    except OSError:
        return None


def _exists(odb: pygit2.Odb, oid: str) -> bool:
    try:
        return pygit2.Oid(hex=oid) in odb
    except ValueError:
        return False


def _merged(
    odb: pygit2.Odb, packed: dict[str, Packed], fully_peeled: bool, loose: dict[str, str]
) -> dict[str, Packed]:
    """Packed refs updated with the loose ones (which win), each peeled when it is a tag."""
    refs = dict(packed)
    if not fully_peeled:
        refs = {name: (oid, _peel(odb, oid)) for name, (oid, _) in refs.items()}
    peeled = dict(refs.values())  # the tag ids here are peeled already: reuse, not reread
    for name, oid in loose.items():
        refs[name] = (oid, peeled[oid] if oid in peeled else _peel(odb, oid))
    return refs


def _peel(odb: pygit2.Odb, oid: str) -> str | None:
    """The object an annotated tag ``oid`` finally points at; ``None`` if it is not a tag."""
    current = oid
    for _ in range(_MAX_PEEL):
        try:
            kind, data = odb.read(pygit2.Oid(hex=current))
        except (KeyError, ValueError, pygit2.GitError):
            return None
        if kind != ObjectType.TAG:
            return None if current == oid else current
        first = bytes(data).split(b"\n", 1)[0]
        if not first.startswith(b"object "):
            return None
        current = first[len(b"object ") :].decode("ascii", "replace")
    return None


def _prune(gitdir: Path, name: str, oid: str, shared: int) -> int:
    """Delete the loose ref ``name`` if it still holds ``oid``, under its lock; 1 if deleted."""
    path = gitdir / name
    lock = gitdir / (name + ".lock")
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError:
        return 0  # being updated by another writer: it stays loose, and wins
    try:
        adjust_fd(fd, shared)
        if _loose_value(path) != oid:
            return 0
        path.unlink()
        return 1
    except OSError:
        return 0
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(lock)
