"""A bare Git repository used as a store: reads, object writes and safe ref updates.

:class:`GitRepository` opens (or creates) a bare repository and offers the
few operations the registry needs. Ref updates go through
:meth:`GitRepository.update_ref`: under the registry's write lock, the caller's
plan is computed from the current tip and the ref is moved with a
compare-and-swap, retried when another process (a plain ``git`` command, say)
moved it in between. Each thread and each process gets its own libgit2
handle, as libgit2 requires.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pygit2
from pygit2.enums import RepositoryOpenFlag, SortMode

from progreg import events
from progreg.errors import (
    DamagedObjectError,
    InvalidInputError,
    NotARegistryError,
    ProgregError,
    ReadOnlyRegistryError,
    RegistryBusyError,
    RegistryError,
)
from progreg.git.durability import fsync_dir, fsync_dirs, fsync_file
from progreg.git.failures import write_failure
from progreg.git.locking import (
    git_maintenance_lock,
    ref_locked_error,
    remove_stale_ref_locks,
    write_lock,
)
from progreg.git.objects import encoding as objects
from progreg.git.objects.identity import Identity, resolve_identity
from progreg.git.objects.signing import Signer
from progreg.git.objects.trees import EMPTY_TREE, Edit, NewTrees, RawTree, blob_at, edit_tree
from progreg.git.pack.format import MIN_DELTA_SIZE
from progreg.git.pack.memory import bound_libgit2_memory
from progreg.git.pack.packdir import (
    PackKeep,
    delete_packs,
    freshen,
    heal_midx,
    update_pack_info,
)
from progreg.git.pack.packstore import InstalledPack, NewObject, store_objects
from progreg.git.pack.tailpack import TailPack
from progreg.git.permissions import (
    PERM_UMASK,
    adjust_loose_object,
    adjust_path,
    adjust_ref_paths,
    adjust_tree,
)
from progreg.git.refs.reflist import values_under
from progreg.git.refs.reflog import RefLogEntry, append_reflog, wants_reflog
from progreg.git.refs.refpack import PACKED_REFS, add_packed_refs
from progreg.git.refs.refwrite import NeedsLibgit2, read_ref, swap_ref
from progreg.git.settings import (
    RepositorySettings,
    check_object_format,
    repository_settings,
)

#: How many trees (by id) a repository handle keeps parsed for the next commits.
TREE_CACHE_SIZE = 4096
#: How many delta hints (object written -> earlier version) a handle keeps at most.
MAX_DELTA_HINTS = 1 << 20
T = TypeVar("T")
R = TypeVar("R")

#: How often (seconds) a libgit2 handle checks whether packs were added or removed.
PACKS_CHECK_SECONDS = 1.0
#: Handles are reopened once this many packs they may know were deleted.
STALE_PACKS = 32
#: From this many new refs at once, :meth:`GitRepository.create_refs` writes ``packed-refs``.
PACKED_CREATE_MIN = 16
#: From this many refs, :meth:`GitRepository.values_of` reads them a directory at a time.
MANY_REFS = 64
#: How many times a write reads its objects again (packs looked at anew) when one is missing.
READ_RETRIES = 8
#: How many of the commits it wrote last a handle remembers the tree of (see :class:`Tip`).
WRITTEN_TIPS = 16


@dataclass
class CommitPlan:
    """A commit to create on top of a ref's current tip.

    ``edits`` map paths to a blob id, to the content of a new blob (``bytes``,
    written with the commit), or to ``None`` (remove the path).
    """

    edits: dict[str, Edit]
    message: str
    author: Identity
    committer: Identity
    when: datetime | None = None
    extra_parents: list[pygit2.Oid] = field(default_factory=list)
    #: Annotated tags to create on the new commit, written in the same pack as it.
    tags: list[TagPlan] = field(default_factory=list)


@dataclass(frozen=True)
class TagPlan:
    """An annotated tag ``refs/tags/<name>``: who tags, and the tag's message."""

    name: str
    tagger: Identity
    message: str


class Tip:
    """The commit a ref points at, as a plan sees it: its ids at once, the commit on demand.

    A new commit needs only the tip's id and its tree's id. When the tip is a
    commit this handle wrote, both are known without libgit2, which would first
    have to find the pack that holds it (a scan of ``objects/pack``, about 70 µs
    a save). :attr:`commit` and :attr:`tree` look the commit up when asked.
    """

    __slots__ = ("_commit", "_repository", "id", "tree_id")

    def __init__(
        self,
        commit_id: pygit2.Oid,
        tree_id: pygit2.Oid,
        repository: GitRepository,
        commit: pygit2.Commit | None = None,
    ) -> None:
        self.id = commit_id
        self.tree_id = tree_id
        self._repository = repository
        self._commit = commit

    @property
    def commit(self) -> pygit2.Commit:
        """The commit itself (looked up once)."""
        if self._commit is None:
            found = self._repository.repo.get(self.id)
            if not isinstance(found, pygit2.Commit):
                raise DamagedObjectError(
                    f"commit {self.id} is missing from {self._repository.path}", str(self.id)
                )
            self._commit = found
        return self._commit

    @property
    def tree(self) -> pygit2.Tree:
        """The commit's tree."""
        return self.commit.tree


class GitRepository:
    """A bare Git repository at ``path``, created when ``create`` is true and it is missing.

    With ``durable``, every write is flushed to the disk (``fsync``) before the
    call that made it returns: objects before the ref that points at them, then
    the ref file and its directory (see docs/format.md, "Durability").
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        lock_timeout: float = 30.0,
        durable: bool = False,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        #: A read-only handle refuses every write; it may also read a clone (a work tree).
        self.read_only = read_only
        #: ``{ref: commit}`` read in place of the refs' own values (see :meth:`pin`).
        self._pins: dict[str, pygit2.Oid] = {}
        self.lock_timeout = lock_timeout
        self.durable = durable
        self._local = threading.local()
        self._trees: dict[bytes, RawTree] = {}
        self._trees_lock = threading.Lock()
        self._synced_packs: set[str] = set()
        #: ``{id: id of the earlier version at the same path}`` of the objects this
        #: handle wrote, for maintenance to store them as deltas (see repack).
        self.delta_hints: dict[bytes, bytes] = {}
        #: Packs this handle wrote without flushing them (``durable`` off).
        self.volatile_packs: set[str] = set()
        self.hints_lock = threading.Lock()
        self._generation = 0
        self._deleted_packs = 0
        #: How many packs this handle wrote that no later write replaced, and how
        #: many of them automatic maintenance has looked at.
        self.packs_left = 0
        self.packs_looked = 0
        self.tail = TailPack(self.path / "objects" / "pack")
        #: Open packs replaced while Git's maintenance ran: deleted by a later write.
        self._replaced_later: list[Path] = []
        self._objects_dir = os.path.join(self.path, "objects")
        self._pack_dir = os.path.join(self._objects_dir, "pack")
        #: ``{commit id: its tree's id}`` of the last :data:`WRITTEN_TIPS` commits written.
        self._written: dict[bytes, bytes] = {}
        #: Called (tests) once a write's objects are in place, before its ref moves.
        self.before_ref_update: Callable[[], None] | None = None
        bound_libgit2_memory()
        self._open_or_create(create)

    # -- opening -----------------------------------------------------------------

    def _open_or_create(self, create: bool) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise NotARegistryError(f"{path} is a file, not a registry directory")
        if not path.exists() or not any(path.iterdir()):
            if not create or self.read_only:
                raise NotARegistryError(f"no registry at {path}")
            blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
            if blocking is not None:
                raise NotARegistryError(f"cannot create a registry at {path}: {blocking} is a file")
            try:
                pygit2.init_repository(str(path), bare=True, initial_head="main")
            except (pygit2.GitError, OSError) as exc:
                raise RegistryError(f"cannot create a registry at {path}: {exc}") from exc
        try:
            repo = pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
        except pygit2.GitError as exc:
            check_object_format(path)
            raise NotARegistryError(
                f"{path} exists and is not a Git repository; progreg will not write into it"
            ) from exc
        if not repo.is_bare:
            if not self.read_only:
                raise NotARegistryError(
                    f"{path} is a Git work tree; a registry is a bare repository"
                    " (make one with: git clone --bare <this> <registry>; commands that only"
                    " read work on a clone)"
                )
            self.path = Path(repo.path).absolute()  # its .git directory
        self._adopt(repo)

    @property
    def repo(self) -> pygit2.Repository:
        """This thread's libgit2 handle on the repository.

        libgit2 keeps every pack it has seen in its list for as long as the
        handle lives, and looks through all of them when an object is
        missing; packs are merged and deleted all the time (see maintenance),
        so a handle is reopened after a merge here and, at most once every
        :data:`PACKS_CHECK_SECONDS`, when ``objects/pack`` has changed.
        """
        local = self._local
        repo: pygit2.Repository | None = getattr(local, "repo", None)
        if repo is None or local.pid != os.getpid() or local.generation != self._generation:
            return self._reopen()
        now = time.monotonic()
        if now >= local.next_check:
            local.next_check = now + PACKS_CHECK_SECONDS
            if self._packs_stamp() != local.packs_stamp:
                return self._reopen()
        return repo

    def _reopen(self) -> pygit2.Repository:
        local = self._local
        old: pygit2.Repository | None = getattr(local, "repo", None)
        if old is not None and local.pid == os.getpid():
            # pygit2 handles are in reference cycles (a handle and its ``references``),
            # which only the cyclic collector frees: until then the handle keeps every
            # pack it opened mapped, deleted ones included. Close them now.
            old.free()
        repo = pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
        self._adopt(repo)
        return repo

    def _adopt(self, repo: pygit2.Repository) -> None:
        """Make ``repo`` this thread's handle."""
        local = self._local
        local.packs_stamp = self._packs_stamp()
        local.next_check = time.monotonic() + PACKS_CHECK_SECONDS
        local.generation = self._generation
        local.repo = repo
        local.pid = os.getpid()

    def _packs_stamp(self) -> int:
        try:
            return os.stat(self.path / "objects" / "pack").st_mtime_ns
        except OSError:
            return 0

    def reread(self, read: Callable[[], T]) -> T:
        """``read()``; when it misses an object, again after looking at the packs anew.

        Git's rule: a reader that misses an object looks at the packs again
        before it says the object is missing, since a concurrent repack may
        have moved it. libgit2 needs a new handle for that when a
        multi-pack-index names packs that were deleted after the handle
        listed them (it trusts the file, where Git looks in the other
        packs): such a file is removed, as Git's next repack would.
        """
        delay = 0.001
        for _ in range(READ_RETRIES):
            try:
                return read()
            except (DamagedObjectError, KeyError, pygit2.GitError, OSError) as exc:
                if not _missing_object(exc):
                    raise
                delay = self._look_again(delay)
        return read()

    def _look_again(self, delay: float) -> float:
        """Heal the multi-pack-index, reopen the handles after ``delay``; the next delay."""
        # git multi-pack-index expire deletes packs before it rewrites the file, and a
        # racing write can name packs deleted meanwhile: libgit2 reads nothing of them.
        heal_midx(self.path / "objects" / "pack")
        self.forget_packs()
        time.sleep(delay * (0.5 + random.random()))
        return min(delay * 2, 0.05)

    def forget_packs(self, deleted: int | None = None) -> None:
        """Say that packs were deleted: handles are reopened at their next use.

        With a count, only once :data:`STALE_PACKS` deleted packs have added up
        (each costs a lookup that misses a little time; a reopen costs more).
        """
        self._deleted_packs += STALE_PACKS if deleted is None else deleted
        if self._deleted_packs >= STALE_PACKS:
            self._deleted_packs = 0
            self._generation += 1

    def release(self) -> None:
        """Close the packs this thread's handle holds open and empty its object cache.

        libgit2 shares an open pack between every handle of the process and
        keeps a cache of delta bases per pack (up to 16 MB each) for as long
        as any handle holds the pack open: a long read through other handles
        would otherwise fill those caches for good. The handle stays usable
        and reopens what it needs on its next read.
        """
        local = self._local
        repo: pygit2.Repository | None = getattr(local, "repo", None)
        if repo is not None and local.pid == os.getpid():
            repo.free()

    @property
    def config(self) -> pygit2.Config:
        """The repository's configuration (with the user's and system's beneath it)."""
        return self.repo.config

    # -- reading -----------------------------------------------------------------

    def pin(self, ref: str, revision: str) -> pygit2.Oid:
        """Read ``ref`` as the commit ``revision`` names (a branch, a tag, a commit id,
        ``main~3``...), on this read-only handle; return that commit's id."""
        if not self.read_only:
            raise InvalidInputError("only a read-only registry can be read at another revision")
        try:
            commit = self.repo.revparse_single(revision).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise InvalidInputError(
                f"unknown revision {revision!r} in {self.path}: name a branch, a tag or a commit"
            ) from exc
        self._pins[ref] = commit.id
        return commit.id

    def check_writable(self) -> None:
        """Raise :class:`~progreg.ReadOnlyRegistryError` on a read-only handle."""
        if self.read_only:
            raise ReadOnlyRegistryError(
                f"{self.path} is open read-only (a clone, or a registry read at another"
                " revision): write to the registry itself"
            )

    def tip_id(self, ref: str) -> pygit2.Oid | None:
        """The id of the commit ``ref`` points at (as pinned), or ``None`` without the ref."""
        pinned = self._pins.get(ref)
        if pinned is not None:
            return pinned
        reference = self.repo.references.get(ref)
        if reference is None:
            return None
        target = reference.resolve().target
        return target if isinstance(target, pygit2.Oid) else None

    def tip(self, ref: str) -> pygit2.Commit | None:
        """The commit ``ref`` points at, or ``None`` when the ref does not exist."""
        target = self.tip_id(ref)
        if target is None:
            return None
        commit = self.repo[target]
        if not isinstance(commit, pygit2.Commit):
            raise RegistryError(f"{ref} does not point at a commit")
        return commit

    def plan_tip(self, ref: str) -> Tip | None:
        """The :class:`Tip` of ``ref`` for a plan, or ``None`` when the ref does not exist."""
        try:
            value = read_ref(self.path, ref)
        except NeedsLibgit2:  # a symbolic or unusual ref: libgit2 reads it below
            value = ""
        if value is None:
            return None
        tree = self._written.get(bytes.fromhex(value)) if value else None
        if tree is not None:
            return Tip(pygit2.Oid(hex=value), pygit2.Oid(raw=tree), self)
        commit = self.tip(ref)  # read again through libgit2: it may have moved meanwhile
        return None if commit is None else Tip(commit.id, commit.tree_id, self, commit)

    def has_path(self, commit: pygit2.Commit | Tip, path: str) -> bool:
        """Whether ``commit``'s tree holds ``path`` (a file or a directory).

        Reads the trees through this handle's cache of parsed trees, which
        holds those of the commits it just wrote: a writer's checks cost no
        object read.
        """
        tree = self._read_tree(commit.tree_id.raw)
        *directories, name = path.encode().split(b"/")
        for part in directories:
            entry = tree.find(part)
            if entry is None or entry[0] != objects.TREE_MODE:
                return False
            tree = self._read_tree(entry[2])
        return tree.find(name) is not None

    def blob(self, tree: pygit2.Tree, path: str) -> pygit2.Blob | None:
        """The blob at ``path`` in ``tree``, or ``None``."""
        return blob_at(tree, path)

    def introducing_commit(
        self, path: str, blob_id: pygit2.Oid, start: pygit2.Commit
    ) -> pygit2.Commit | None:
        """The commit, back along first parents from ``start``, that put ``blob_id`` at ``path``."""
        commit = start
        while True:
            parent = commit.parents[0] if commit.parents else None
            previous = blob_at(parent.tree, path) if parent is not None else None
            if parent is None or previous is None or previous.id != blob_id:
                current = blob_at(commit.tree, path)
                return commit if current is not None and current.id == blob_id else None
            commit = parent

    def read(self, tree: pygit2.Tree, path: str) -> bytes | None:
        """The content of the file at ``path`` in ``tree``, or ``None``."""
        blob = blob_at(tree, path)
        return None if blob is None else blob.data

    def walk(self, ref: str) -> Iterator[pygit2.Commit]:
        """Commits reachable from ``ref``, newest first in topological order."""
        tip = self.tip(ref)
        if tip is None:
            return iter(())
        return iter(self.repo.walk(tip.id, SortMode.TOPOLOGICAL))

    # -- writing -----------------------------------------------------------------

    def write_blob(self, data: bytes) -> pygit2.Oid:
        """Store ``data`` as a blob (idempotent: same bytes, same id)."""
        self.check_writable()
        oid = self.repo.create_blob(data)
        adjust_loose_object(self.path / "objects", str(oid), self.settings.shared)  # libgit2's
        if self.durable:
            self._sync_loose(oid)
        return oid

    def update_ref(
        self,
        ref: str,
        plan: Callable[[Tip | None], CommitPlan | None],
        after: Callable[[pygit2.Oid, list[str]], None] | None = None,
    ) -> pygit2.Oid | None:
        """Commit ``plan(tip)`` on top of ``ref`` and move ``ref`` to it atomically.

        ``plan`` is called with the current :class:`Tip` (``None`` for a new ref) and
        returns the commit to make, or ``None`` to change nothing. It is called
        again if the ref moved underneath, so it must not have side effects.
        The plan's tags are created once the ref moved (a tag that exists is
        left as it is); ``after(new, created)``, if given, then runs while the
        lock is still held, with the names of the tags created. Returns the
        new commit id, or ``None`` when the plan was empty.
        """
        self.check_writable()
        new, _ = self.update_ref_returning(ref, lambda tip: (plan(tip), None), after)
        return new

    def update_ref_returning(
        self,
        ref: str,
        plan: Callable[[Tip | None], tuple[CommitPlan | None, R]],
        after: Callable[[pygit2.Oid, list[str]], None] | None = None,
    ) -> tuple[pygit2.Oid | None, R]:
        """:meth:`update_ref` for a plan that also says what it decided.

        ``plan(tip)`` returns ``(commit plan or None, decision)``; the decision
        of the call that won (the one made on the tip the ref moved from) is
        returned with the new commit id. No state outlives a discarded call.
        """
        self.check_writable()
        deadline = time.monotonic() + self.lock_timeout
        settings = self.settings
        with write_lock(self.path, self.lock_timeout, settings.shared) as grant, self._settling():
            if grant.previous_holder_crashed:
                for removed in remove_stale_ref_locks(self.path, grant.previous_since):
                    events.emit(
                        "progreg.lock.recovered", level=logging.WARNING, lock_path=str(removed)
                    )
            delay = 0.001
            rereads = READ_RETRIES
            while True:
                try:
                    tip = self.plan_tip(ref)
                    commit_plan, decision = plan(tip)
                    if commit_plan is None:
                        return None, decision
                    new, tags = self._write_commit(tip, commit_plan)
                except (DamagedObjectError, KeyError, pygit2.GitError, OSError) as exc:
                    if not _missing_object(exc) or rereads == 0:
                        raise
                    rereads -= 1
                    delay = self._look_again(delay)
                    continue
                if self.before_ref_update is not None:
                    self.before_ref_update()
                entry = _commit_entry(tip, commit_plan)
                error = self._compare_and_swap(
                    ref, tip.id if tip is not None else None, new, entry, settings
                )
                if error is None:
                    created = [
                        name
                        for name, tag in tags
                        if self._create_ref(
                            f"refs/tags/{name}",
                            tag,
                            _tag_entry(name, new, commit_plan, tags=commit_plan.tags),
                            settings,
                        )
                    ]
                    if after is not None:
                        after(new, created)
                    return new, decision
                if "doesn't exist" in error:  # the commit was not written (disk full...)
                    raise write_failure(self.path, OSError(error), f"update {ref} in {self.path}")
                if time.monotonic() >= deadline:
                    raise ref_locked_error(self.path, ref, error)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.05)

    def fast_forward(
        self, ref: str, target: pygit2.Oid, reflog: RefLogEntry | None = None
    ) -> pygit2.Oid | None:
        """Move ``ref`` to ``target`` if its tip is an ancestor of it; return the new tip.

        Returns ``None`` (and changes nothing) when the ref has moved so that it
        is no longer an ancestor of ``target``. ``reflog`` is the entry logged
        for the move (by default: the committer of the config, ``fast-forward``).
        """
        self.check_writable()
        settings = self.settings
        with write_lock(self.path, self.lock_timeout, settings.shared):
            tip = self.tip(ref)
            if tip is not None and not self.repo.descendant_of(target, tip.id):
                return None
            if self.durable:
                self.sync_object_store()
            entry = reflog or self.reflog_entry(f"fast-forward: {ref} to {str(target)[:12]}")
            error = self._compare_and_swap(
                ref, tip.id if tip is not None else None, target, entry, settings
            )
            if error is not None:
                raise RegistryBusyError(f"could not fast-forward {ref}: {error}")
            return target

    def refs_under(self, prefix: str) -> list[str]:
        """The names of all refs starting with ``prefix`` (such as ``refs/tags/``)."""
        return [name for name in self.repo.listall_references() if name.startswith(prefix)]

    def ref_values(self, prefix: str) -> dict[str, str]:
        """``{name without prefix: object id}`` of the refs under ``prefix`` (``refs/.../``).

        Read from Git's files (:func:`~progreg.git.refs.reflist.values_under`),
        which costs a fraction of listing every ref through libgit2 when a
        registry holds 100k tags; a symbolic ref is resolved by libgit2.
        """
        values: dict[str, str] = {}
        for name, plain in values_under(self.path, prefix).items():
            value = plain if plain is not None else self._resolved(prefix + name)
            if value is not None:
                values[name] = value
        return values

    def values_of(self, refs: Collection[str]) -> dict[str, str]:
        """``{ref: object id}`` of those of ``refs`` that exist (a symbolic ref resolved).

        Many refs are read a directory at a time from Git's files
        (:meth:`ref_values`) rather than one libgit2 lookup each.
        """
        if len(refs) < MANY_REFS:
            return {ref: value for ref in refs if (value := self._resolved(ref)) is not None}
        directories: dict[str, set[str]] = {}
        values: dict[str, str] = {}
        for ref in refs:
            directory = ref.rpartition("/")[0] + "/"
            if directory.startswith("refs/") and directory != "refs/":
                directories.setdefault(directory, set()).add(ref)
            elif (value := self._resolved(ref)) is not None:
                values[ref] = value
        for directory, wanted in directories.items():
            found = self.ref_values(directory)  # with its subdirectories: filtered
            values.update(
                (directory + name, value)
                for name, value in found.items()
                if directory + name in wanted
            )
        return values

    def _resolved(self, ref: str) -> str | None:
        """The object id ``ref`` leads to (through symbolic refs), or ``None``."""
        reference = self.repo.references.get(ref)
        try:
            return None if reference is None else str(reference.resolve().target)
        except (pygit2.GitError, KeyError):  # a symbolic ref to nothing
            return None

    def create_tag(self, name: str, target: str, tagger: Identity, message: str) -> bool:
        """Create annotated tag ``refs/tags/<name>`` on commit ``target``; ``False`` if taken.

        The tag object is written as a pack, as commits are.
        """
        self.check_writable()
        ref = f"refs/tags/{name}"
        settings = self.settings
        with (
            write_lock(self.path, self.lock_timeout, settings.shared),
            self._settling(),
            self._ref_lock_errors(ref),
        ):
            if self.repo.references.get(ref) is not None:
                return False
            self._freshen([bytes.fromhex(target)])
            new: list[NewObject] = []
            [(_, tag)] = self._tag_objects(target, [TagPlan(name, tagger, message)], new)
            self._store(new, {})
            if self.before_ref_update is not None:
                self.before_ref_update()
            entry = RefLogEntry(tagger, f"tag: tagging {target[:7]} ({self._subject(target)})")
            return self._create_ref(ref, tag, entry, settings)

    def _tag_objects(
        self, target: str, tags: list[TagPlan], new: list[NewObject]
    ) -> list[tuple[str, bytes]]:
        """``(name, id)`` of each tag of ``tags`` on commit ``target``, appended to ``new``."""
        signer = Signer.from_config(self.repo.config, "tag") if tags else None
        made = []
        for tag in tags:
            tagger = tag.tagger.raw(tag.tagger.signature())
            content = objects.encode_tag(target, b"commit", tag.name, tagger, tag.message)
            if signer is not None:
                content += signer.sign(content).encode()
            tag_id = objects.object_id(objects.OBJ_TAG, content)
            new.append((tag_id, objects.OBJ_TAG, content))
            made.append((tag.name, tag_id))
        return made

    def _create_ref(
        self,
        ref: str,
        target: bytes,
        reflog: RefLogEntry | None,
        settings: RepositorySettings,
    ) -> bool:
        """Create ``ref`` at ``target`` (the write lock held); ``False`` if it exists.

        ``reflog`` is logged if Git would log the creation (see
        :mod:`~progreg.git.refs.reflog`).
        """
        entry = reflog if wants_reflog(self.path, ref, settings.log_refs) else None
        try:
            reason = swap_ref(
                self.path,
                ref,
                None,
                target.hex(),
                durable=self.durable,
                shared=settings.shared,
                reflog=entry,
                log_refs=settings.log_refs,
            )
        except NeedsLibgit2:
            pass
        except OSError as exc:
            raise write_failure(self.path, exc, f"create {ref} in {self.path}") from exc
        else:
            if reason is not None and "exists:" in reason:  # another Git process's lock
                raise ref_locked_error(self.path, ref, reason)
            return reason is None
        with self._ref_lock_errors(ref), self._as_libgit2(ref, entry, settings) as message:
            try:
                self.repo.create_reference_direct(ref, pygit2.Oid(raw=target), False, message)
            except pygit2.AlreadyExistsError:
                return False
        if self.durable:
            self._sync_ref(ref)
        return True

    def create_refs(self, refs: Mapping[str, str], reflog: RefLogEntry | None = None) -> list[str]:
        """Create the refs of ``refs`` (``{name: hex id}``) that do not exist; return those made.

        Under the write lock. Many at once (an import's tags) are written into
        ``packed-refs`` in one rewrite rather than as a loose file each; refs
        whose names clash with others' paths are created one by one, with the
        error that gives. ``reflog`` is the entry logged for each ref Git would
        log (by default: the config's committer, ``created``).
        """
        self.check_writable()
        settings = self.settings
        with write_lock(self.path, self.lock_timeout, settings.shared):
            if self.durable:  # the objects they name may have come from a bundle or a fetch
                self.sync_object_store()
            entry = reflog or self.reflog_entry("created")
            if len(refs) >= PACKED_CREATE_MIN:
                packed = add_packed_refs(self.path, refs, durable=self.durable)
                if packed is not None:
                    self._log_created(packed[0], refs, entry, settings)
                    return packed[0]
            return [
                name
                for name, oid in refs.items()
                if self._create_ref(name, bytes.fromhex(oid), entry, settings)
            ]

    def _log_created(
        self,
        names: list[str],
        refs: Mapping[str, str],
        entry: RefLogEntry,
        settings: RepositorySettings,
    ) -> None:
        """Log the creation of the refs ``names`` written into ``packed-refs``, as Git would."""
        changed: list[Path] = []
        try:
            for name in names:
                if wants_reflog(self.path, name, settings.log_refs):
                    changed += append_reflog(
                        self.path,
                        name,
                        entry.line(None, refs[name]),
                        log_refs=settings.log_refs,
                        shared=settings.shared,
                        durable=self.durable,
                    )
        except OSError as exc:
            raise write_failure(self.path, exc, f"write the reflogs of {self.path}") from exc
        if self.durable:
            fsync_dirs(changed)

    def set_ref(
        self, name: str, target: pygit2.Oid | None, reflog: RefLogEntry | None = None
    ) -> None:
        """Point ref ``name`` at ``target`` (delete it for ``None``) under the write lock.

        For refs that mirror another repository (remote-tracking refs), never
        for the registry's own refs, which move only by compare-and-swap.
        ``reflog`` is the entry logged (by default: the config's committer, ``updated``).
        """
        self.check_writable()
        settings = self.settings
        with write_lock(self.path, self.lock_timeout, settings.shared):
            if target is None:
                self._delete(name, settings)
                return
            entry = reflog or self.reflog_entry(f"updated {name}")
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    current = read_ref(self.path, name)
                except NeedsLibgit2:
                    current = self._resolved(name)
                expected = pygit2.Oid(hex=current) if current is not None else None
                if expected == target:
                    return
                error = self._compare_and_swap(name, expected, target, entry, settings)
                if error is None:
                    return
                if time.monotonic() >= deadline:
                    raise ref_locked_error(self.path, name, error)
                time.sleep(0.001)

    def delete_ref(self, name: str) -> bool:
        """Delete ref ``name`` (and its reflog, as Git does); ``False`` if it did not exist."""
        self.check_writable()
        settings = self.settings
        with write_lock(self.path, self.lock_timeout, settings.shared):
            return self._delete(name, settings)

    def _delete(self, name: str, settings: RepositorySettings) -> bool:
        """Delete ``name`` through libgit2 (the write lock held); ``False`` if it was absent."""
        with self._ref_lock_errors(name):
            reference = self.repo.references.get(name)
            if reference is None:
                return False
            reference.delete()  # its reflog too
        self._share_ref_files(name, settings.shared)
        if self.durable:
            self._sync_deleted_ref(name)
        return True

    @property
    def settings(self) -> RepositorySettings:
        """The registry's ``core.sharedRepository`` and ``core.logAllRefUpdates`` (cached)."""
        return repository_settings(self.path)

    def reflog_entry(self, message: str) -> RefLogEntry:
        """A reflog entry by the committer Git would name (environment, config, default)."""
        return RefLogEntry(resolve_identity("COMMITTER", None, self.config), message)

    def _subject(self, target: str) -> str:
        """The subject of commit ``target`` (empty if it cannot be read)."""
        try:
            kind, data = self.repo.odb.read(pygit2.Oid(hex=target))
        except (KeyError, ValueError, pygit2.GitError):
            return ""
        if int(kind) != objects.OBJ_COMMIT:
            return ""
        return _subject_of(bytes(data).partition(b"\n\n")[2])

    @contextlib.contextmanager
    def _as_libgit2(
        self, ref: str, entry: RefLogEntry | None, settings: RepositorySettings
    ) -> Iterator[str | None]:
        """Around a ref write done by libgit2: the reflog identity set, Git's modes after.

        Yields the reflog message to give libgit2.
        """
        repo = self.repo
        if entry is not None:
            repo.set_ident(entry.who.name, entry.who.email)
        try:
            yield None if entry is None else " ".join(entry.message.split())
        finally:
            if entry is not None:
                repo.set_ident(None, None)
            self._share_ref_files(ref, settings.shared)

    def adopt_libgit2_files(self, ref_prefix: str) -> None:
        """Give what a libgit2 fetch wrote Git's modes: refs and reflogs under ``ref_prefix``,
        ``packed-refs``, ``FETCH_HEAD`` and the packs (libgit2 ignores ``core.sharedRepository``).
        """
        shared = self.settings.shared
        if shared == PERM_UMASK:
            return
        for top in (self.path, self.path / "logs"):
            adjust_tree(top / ref_prefix, shared)
        adjust_tree(self.path / "objects" / "pack", shared)
        for name in (PACKED_REFS, "FETCH_HEAD"):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                adjust_path(self.path / name, shared)

    def _share_ref_files(self, ref: str, shared: int) -> None:
        """Give the files libgit2 wrote for ``ref`` (and their directories) Git's modes."""
        adjust_ref_paths(self.path, ref, shared)

    @contextlib.contextmanager
    def _ref_lock_errors(self, ref: str) -> Iterator[None]:
        """Turn libgit2's failures to write ``ref`` into progreg errors (a held lock: busy)."""
        try:
            yield
        except (pygit2.GitError, OSError) as exc:
            if "failed to lock" not in str(exc):
                raise write_failure(self.path, exc, f"write {ref} in {self.path}") from exc
            raise ref_locked_error(self.path, ref, str(exc).rstrip(": ")) from exc

    def _write_commit(
        self, tip: Tip | None, plan: CommitPlan
    ) -> tuple[pygit2.Oid, list[tuple[str, bytes]]]:
        """Write the commit of ``plan`` on ``tip`` with its new blobs, trees and tags, as one
        pack; return the commit's id and each tag's ``(name, id)``."""
        new: list[NewObject] = []
        edits: dict[str, bytes | None] = {}
        outside = bool(plan.extra_parents)  # refers to objects this handle did not write
        reused = [parent.raw for parent in plan.extra_parents]
        for path, value in plan.edits.items():
            if isinstance(value, bytes):
                blob = objects.object_id(objects.OBJ_BLOB, value)
                new.append((blob, objects.OBJ_BLOB, value))
                edits[path] = blob
            elif value is None:
                edits[path] = None
            else:
                edits[path] = value.raw
                reused.append(value.raw)
                outside = True
        trees: NewTrees = []
        previous: dict[bytes, bytes] = {}
        base = tip.tree_id.raw if tip is not None else None
        parsed = len(edits) <= TREE_CACHE_SIZE  # else the cache could not keep them all
        root = edit_tree(self._read_tree, base, edits, trees, previous, parsed=parsed)
        if root is None:
            root = EMPTY_TREE.raw
            new.append((root, objects.OBJ_TREE, b""))
        new += [(oid, objects.OBJ_TREE, data) for oid, data, _ in trees]
        parents = ([tip.id.raw] if tip is not None else []) + [p.raw for p in plan.extra_parents]
        commit, content = self._commit_object(root, parents, plan)
        new.append((commit, objects.OBJ_COMMIT, content))
        tags = self._tag_objects(commit.hex(), plan.tags, new)
        if reused:
            self._freshen(reused)
        if outside and self.durable:
            self.sync_object_store()
        self._store(new, previous)
        self._remember(trees)
        with self._trees_lock:
            written = self._written
            written[commit] = root
            while len(written) > WRITTEN_TIPS:
                del written[next(iter(written))]
        return pygit2.Oid(raw=commit), tags

    def _commit_object(
        self, tree: bytes, parents: list[bytes], plan: CommitPlan
    ) -> tuple[bytes, bytes]:
        """``(id, raw data)`` of the commit of ``plan``, signed when the config asks for it."""
        author = _person(plan.author.signature(plan.when))
        committer = _person(plan.committer.signature(plan.when))
        content = objects.encode_commit(tree, parents, author, committer, plan.message.encode())
        signer = Signer.from_config(self.repo.config, "commit")
        if signer is not None:
            content = objects.with_signature(content, signer.sign(content).encode())
        return objects.object_id(objects.OBJ_COMMIT, content), content

    def _store(self, new: list[NewObject], previous: dict[bytes, bytes]) -> None:
        """Write ``new`` into the open pack (or a pack of their own when they are many).

        Within :meth:`_settling`: the new pack's keep is released, and the pack
        it replaces deleted, once the write's refs are written.
        """
        replaced = None
        installed: InstalledPack | None
        if self.tail.fits(new):
            installed, replaced = self.tail.write(new, previous, durable=self.durable)
        else:
            installed = store_objects(self.path / "objects", new, durable=self.durable)
        if installed is not None and installed.existed:
            # The same pack was there already, and a `git repack -d` that listed it may
            # delete it (packdir.place_pack): the objects are written loose as well, and
            # the pack it replaces stays for maintenance to merge.
            odb = self.repo.odb
            for _oid, kind, data in new:
                odb.write(kind, data)
            replaced = None
        written = installed.path if installed is not None else None
        pending = self._pending()
        if installed is not None:
            pending.added = True
            if installed.keep is not None:
                pending.keeps.append(installed.keep)
        if replaced is not None:
            pending.replaced.append(replaced)
        with self.hints_lock:
            if replaced is not None:
                self.volatile_packs.discard(replaced.name)
                self.forget_packs(1)
            elif written is not None:
                self.packs_left += 1  # a pack that stays: maintenance has work to look at
            if written is not None and self.durable:
                self._synced_packs.update((written.name, written.with_suffix(".idx").name))
            elif written is not None:
                self.volatile_packs.add(written.name)
            hints = self.delta_hints
            large = {oid for oid, _, data in new if len(data) >= MIN_DELTA_SIZE}
            hints.update((oid, base) for oid, base in previous.items() if oid in large)
            while len(hints) > MAX_DELTA_HINTS:
                del hints[next(iter(hints))]

    def _pending(self) -> _PendingWrite:
        """This thread's write in progress (see :meth:`_settling`)."""
        pending: _PendingWrite | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = _PendingWrite()
        return pending

    @contextlib.contextmanager
    def _settling(self) -> Iterator[None]:
        """End a write: release its packs' keeps, then delete the packs they replace.

        Runs when the block ends, its refs written or the write failed (then
        nothing names the new objects). Keeps go first: the replaced pack's
        objects are all in the new one, which Git must see as an ordinary pack
        once refs reach it. ``objects/info/packs`` is written again if it exists.
        """
        if getattr(self._local, "pending", None) is not None:
            yield  # within an outer write: that one settles
            return
        pending = self._pending()
        try:
            yield
        finally:
            self._local.pending = None
            for keep in pending.keeps:
                keep.release()
            deleted = []
            if pending.replaced:
                deleted = self._delete_replaced(pending.replaced)
                if any(pack not in deleted for pack in pending.replaced):
                    self.packs_left += 1  # one stays (a keep, the multi-pack-index): merged later
            if pending.added and not deleted:
                update_pack_info(self._objects_dir)
            if pending.added:
                self.tail.midx_names()  # removes a file naming a pack that is gone

    def _delete_replaced(self, packs: list[Path]) -> list[Path]:
        """Delete the open packs ``packs`` that later ones replaced; those deleted.

        Under Git's maintenance lock, without waiting: a ``git maintenance``
        run may be writing a multi-pack-index that lists them, which its
        ``incremental-repack`` would then act on, and that loses objects of a
        pack deleted meanwhile (:func:`~progreg.git.locking.git_maintenance_lock`). While it
        runs they stay, and a later write (or a merge) deletes them.
        """
        with self.hints_lock:
            packs = [*self._replaced_later, *packs]
            self._replaced_later = []
        try:
            with git_maintenance_lock(Path(self._objects_dir), None) as taken:
                if taken:
                    return self.delete_replaced_packs(packs)
        except OSError:
            pass  # left in place, as packs a multi-pack-index lists: merged later
        with self.hints_lock:
            self._replaced_later = [*packs, *self._replaced_later]
        return []

    def delete_replaced_packs(self, packs: list[Path] | None = None) -> list[Path]:
        """Delete ``packs`` (by default those left while Git's maintenance ran), which
        later open packs of this handle replaced; the caller holds Git's maintenance lock."""
        if packs is None:
            with self.hints_lock:
                packs, self._replaced_later = self._replaced_later, []
        return delete_packs(self._pack_dir, packs, force_midx=False) if packs else []

    def _freshen(self, oids: list[bytes]) -> None:
        """Refresh the files of objects a write reuses (Git's rule: prune keeps them)."""
        try:
            freshen(self.path / "objects", oids)
        except OSError as exc:
            raise write_failure(self.path, exc, f"refresh objects in {self.path}") from exc

    def _read_tree(self, oid: bytes) -> RawTree:
        cached = self._trees.get(oid)
        if cached is not None:
            with self._trees_lock:  # most recently used last: evicted last
                self._trees.pop(oid, None)
                self._trees[oid] = cached
            return cached
        try:
            kind, data = self.repo.odb.read(pygit2.Oid(raw=oid))
        except KeyError as exc:
            raise DamagedObjectError(
                f"tree {oid.hex()} is missing from {self.path}", oid.hex()
            ) from exc
        if int(kind) != objects.OBJ_TREE:
            raise RegistryError(f"object {oid.hex()} in {self.path} is not a tree")
        try:
            tree = RawTree.of(objects.parse_tree(data))
        except ProgregError as exc:
            raise RegistryError(f"tree {oid.hex()} in {self.path} is damaged: {exc}") from exc
        self._remember([(oid, data, tree)])
        return tree

    def _remember(self, trees: NewTrees) -> None:
        """Keep the parsed trees just read or written: the next commit starts from them."""
        with self._trees_lock:
            cache = self._trees
            for oid, _data, tree in trees:
                if tree is not None:
                    cache[oid] = tree
            while len(cache) > TREE_CACHE_SIZE:
                del cache[next(iter(cache))]

    def _compare_and_swap(
        self,
        ref: str,
        expected: pygit2.Oid | None,
        new: pygit2.Oid,
        reflog: RefLogEntry,
        settings: RepositorySettings,
    ) -> str | None:
        """Move ``ref`` from ``expected`` to ``new``; return why not, or ``None`` on success.

        ``reflog`` is logged if Git would log the move (see :mod:`~progreg.git.refs.reflog`).
        """
        entry = reflog if wants_reflog(self.path, ref, settings.log_refs) else None
        old = str(expected) if expected is not None else None
        try:
            return swap_ref(
                self.path,
                ref,
                old,
                str(new),
                durable=self.durable,
                shared=settings.shared,
                reflog=entry,
                log_refs=settings.log_refs,
            )
        except NeedsLibgit2:  # a symbolic ref: libgit2 moves the ref it names
            pass
        except OSError as exc:
            raise write_failure(self.path, exc, f"update {ref} in {self.path}") from exc
        references = self.repo.references
        try:
            with self._as_libgit2(ref, entry, settings) as message:
                if expected is None:
                    self.repo.create_reference_direct(ref, new, False, message)
                else:
                    reference = references.get(ref)
                    if reference is None or reference.resolve().target != expected:
                        return "the ref moved"
                    direct = reference.resolve()
                    if message is None:
                        direct.set_target(new)
                    else:
                        direct.set_target(new, message)
        except (pygit2.GitError, OSError) as exc:
            if "failed to lock" in str(exc) or "exists" in str(exc):  # another writer
                return str(exc)
            raise write_failure(self.path, exc, f"update {ref} in {self.path}") from exc
        if self.durable:
            self._sync_ref(ref)
        return None

    # -- durability ----------------------------------------------------------------

    def sync_object_store(self) -> None:
        """Flush every pack of the object store this handle has not flushed yet.

        Durable writers call it before moving a ref to objects that another
        writer brought in (an imported bundle, a fetch).
        """
        pack_dir = self.path / "objects" / "pack"
        try:
            names = os.listdir(pack_dir)
        except FileNotFoundError:
            return
        fresh = [
            name
            for name in names
            if name.startswith("pack-")
            and name.endswith((".pack", ".idx"))
            and name not in self._synced_packs
        ]
        for name in fresh:
            with contextlib.suppress(FileNotFoundError):  # merged away meanwhile
                fsync_file(pack_dir / name)
        if fresh:
            fsync_dir(pack_dir)
            self._synced_packs.update(fresh)

    def _sync_loose(self, oid: pygit2.Oid) -> None:
        """Flush a loose object just written (nothing when it was already in a pack)."""
        text = str(oid)
        directory = self.path / "objects" / text[:2]
        try:
            fsync_file(directory / text[2:])
        except FileNotFoundError:
            return
        fsync_dir(directory)
        fsync_dir(directory.parent)

    def _sync_ref(self, ref: str) -> None:
        """Flush a ref libgit2 just wrote, the directories above it, and its reflog."""
        for path in (self.path / ref, self.path / "logs" / ref):
            with contextlib.suppress(FileNotFoundError):
                fsync_file(path)
                directory = path.parent
                while directory != self.path:
                    fsync_dir(directory)
                    directory = directory.parent

    def _sync_deleted_ref(self, ref: str) -> None:
        """Flush the removal of a ref (its directory, and ``packed-refs`` if rewritten)."""
        with contextlib.suppress(FileNotFoundError):
            fsync_dir((self.path / ref).parent)
        with contextlib.suppress(FileNotFoundError):
            fsync_file(self.path / "packed-refs")
        fsync_dir(self.path)


def _subject_of(message: bytes) -> str:
    """The subject of a commit message (its first paragraph, on one line), as Git takes it."""
    return " ".join(message.decode("utf-8", "replace").split("\n\n", 1)[0].split())


def _commit_entry(tip: Tip | None, plan: CommitPlan) -> RefLogEntry:
    """The reflog entry of a commit, as ``git commit`` writes it: ``commit: <subject>``."""
    kind = (
        "commit (initial)" if tip is None else "commit (merge)" if plan.extra_parents else "commit"
    )
    return RefLogEntry(plan.committer, f"{kind}: {_subject_of(plan.message.encode())}", plan.when)


def _tag_entry(
    name: str, commit: pygit2.Oid, plan: CommitPlan, *, tags: list[TagPlan]
) -> RefLogEntry:
    """The reflog entry of tag ``name`` made with a commit, as ``git tag`` writes it."""
    tagger = next((tag.tagger for tag in tags if tag.name == name), plan.committer)
    subject = _subject_of(plan.message.encode())
    return RefLogEntry(tagger, f"tag: tagging {str(commit)[:7]} ({subject})", plan.when)


@dataclass
class _PendingWrite:
    """What a write in progress must settle once its refs are written (see ``_settling``)."""

    keeps: list[PackKeep] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)
    added: bool = False


def _missing_object(exc: BaseException) -> bool:
    """Whether ``exc`` says an object was not found, or its pack deleted (not damaged)."""
    text = str(exc)
    # libgit2 says "not found", or (pygit2 raises it as an OSError) "invalid packfile" for
    # a pack it knew that was deleted meanwhile.
    vanished = "not found" in text or "invalid packfile" in text
    if isinstance(exc, DamagedObjectError):
        return vanished or "missing" in text
    if isinstance(exc, ProgregError):  # ProgramNotFoundError is a KeyError too
        return False
    return (isinstance(exc, KeyError) and not isinstance(exc, OSError)) or vanished


def _person(signature: pygit2.Signature) -> bytes:
    """A signature as Git writes it in objects: ``Name <email> 1700000000 +0100``."""
    sign = b"-" if signature.offset < 0 else b"+"
    hours, minutes = divmod(abs(signature.offset), 60)
    return b"%s <%s> %d %s%02d%02d" % (
        signature.raw_name,
        signature.raw_email,
        signature.time,
        sign,
        hours,
        minutes,
    )
