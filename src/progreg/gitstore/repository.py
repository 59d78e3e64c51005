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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

import pygit2
from pygit2.enums import ObjectType, RepositoryOpenFlag, SortMode

from progreg import events
from progreg.errors import NotARegistryError, RegistryBusyError, RegistryError
from progreg.gitstore.failures import write_failure
from progreg.gitstore.identity import Identity
from progreg.gitstore.locking import ref_locked_error, remove_stale_ref_locks, write_lock
from progreg.gitstore.memory import bound_libgit2_memory
from progreg.gitstore.signing import Signer
from progreg.gitstore.trees import Edit, blob_at, edit_tree


@dataclass
class CommitPlan:
    """A commit to create on top of a ref's current tip."""

    edits: dict[str, Edit]
    message: str
    author: Identity
    committer: Identity
    when: datetime | None = None
    extra_parents: list[pygit2.Oid] = field(default_factory=list)


class GitRepository:
    """A bare Git repository at ``path``, created when ``create`` is true and it is missing."""

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, lock_timeout: float = 30.0
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self.lock_timeout = lock_timeout
        self._local = threading.local()
        bound_libgit2_memory()
        self._open_or_create(create)

    # -- opening -----------------------------------------------------------------

    def _open_or_create(self, create: bool) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise NotARegistryError(f"{path} is a file, not a registry directory")
        if not path.exists() or not any(path.iterdir()):
            if not create:
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
            raise NotARegistryError(
                f"{path} exists and is not a Git repository; progreg will not write into it"
            ) from exc
        if not repo.is_bare:
            raise NotARegistryError(
                f"{path} is a Git work tree; a registry is a bare repository"
                " (make one with: git clone --bare <this> <registry>)"
            )
        self._local.repo = repo
        self._local.pid = os.getpid()

    @property
    def repo(self) -> pygit2.Repository:
        """This thread's libgit2 handle on the repository."""
        local = self._local
        repo: pygit2.Repository | None = getattr(local, "repo", None)
        if repo is None or local.pid != os.getpid():
            repo = pygit2.Repository(str(self.path), RepositoryOpenFlag.NO_SEARCH)
            local.repo = repo
            local.pid = os.getpid()
        return repo

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

    def tip(self, ref: str) -> pygit2.Commit | None:
        """The commit ``ref`` points at, or ``None`` when the ref does not exist."""
        reference = self.repo.references.get(ref)
        if reference is None:
            return None
        commit = self.repo[reference.resolve().target]
        if not isinstance(commit, pygit2.Commit):
            raise RegistryError(f"{ref} does not point at a commit")
        return commit

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
        return self.repo.create_blob(data)

    def update_ref(
        self,
        ref: str,
        plan: Callable[[pygit2.Commit | None], CommitPlan | None],
        after: Callable[[pygit2.Oid], None] | None = None,
    ) -> pygit2.Oid | None:
        """Commit ``plan(tip)`` on top of ``ref`` and move ``ref`` to it atomically.

        ``plan`` is called with the current tip (``None`` for a new ref) and
        returns the commit to make, or ``None`` to change nothing. It is called
        again if the ref moved underneath, so it must not have side effects.
        ``after(new)``, if given, runs while the lock is still held, for refs
        that must be created together with the commit (tags given at save).
        Returns the new commit id, or ``None`` when the plan was empty.
        """
        deadline = time.monotonic() + self.lock_timeout
        with write_lock(self.path, self.lock_timeout) as grant:
            if grant.previous_holder_crashed:
                for removed in remove_stale_ref_locks(self.path, grant.previous_since):
                    events.emit(
                        "progreg.lock.recovered", level=logging.WARNING, lock_path=str(removed)
                    )
            delay = 0.001
            while True:
                tip = self.tip(ref)
                commit_plan = plan(tip)
                if commit_plan is None:
                    return None
                new = self._create_commit(tip, commit_plan)
                error = self._compare_and_swap(ref, tip, new)
                if error is None:
                    if after is not None:
                        after(new)
                    return new
                if "doesn't exist" in error:  # the commit was not written (disk full...)
                    raise write_failure(self.path, OSError(error), f"update {ref} in {self.path}")
                if time.monotonic() >= deadline:
                    raise ref_locked_error(self.path, ref, error)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.05)

    def fast_forward(self, ref: str, target: pygit2.Oid) -> pygit2.Oid | None:
        """Move ``ref`` to ``target`` if its tip is an ancestor of it; return the new tip.

        Returns ``None`` (and changes nothing) when the ref has moved so that it
        is no longer an ancestor of ``target``.
        """
        with write_lock(self.path, self.lock_timeout):
            tip = self.tip(ref)
            if tip is not None and not self.repo.descendant_of(target, tip.id):
                return None
            error = self._compare_and_swap(ref, tip, target)
            if error is not None:
                raise RegistryBusyError(f"could not fast-forward {ref}: {error}")
            return target

    def refs_under(self, prefix: str) -> list[str]:
        """The names of all refs starting with ``prefix`` (such as ``refs/tags/``)."""
        return [name for name in self.repo.listall_references() if name.startswith(prefix)]

    def create_tag(self, name: str, target: str, tagger: Identity, message: str) -> bool:
        """Create annotated tag ``refs/tags/<name>`` on commit ``target``; ``False`` if taken."""
        oid = pygit2.Oid(hex=target)
        repo = self.repo
        signer = Signer.from_config(repo.config, "tag")
        with write_lock(self.path, self.lock_timeout), self._ref_lock_errors(f"refs/tags/{name}"):
            return self._create_tag(repo, name, oid, signer, tagger, message)

    def _create_tag(
        self,
        repo: pygit2.Repository,
        name: str,
        oid: pygit2.Oid,
        signer: Signer | None,
        tagger: Identity,
        message: str,
    ) -> bool:
        try:
            if signer is None:
                repo.create_tag(name, oid, ObjectType.COMMIT, tagger.signature(), message)
                return True
            if repo.references.get(f"refs/tags/{name}") is not None:
                return False
            payload = (
                f"object {oid}\ntype commit\ntag {name}\n"
                f"tagger {tagger.raw(tagger.signature())}\n\n{message}"
            ).encode()
            signed = payload + signer.sign(payload).encode()
            tag_id = repo.odb.write(ObjectType.TAG, signed)
            repo.references.create(f"refs/tags/{name}", tag_id)
        except pygit2.AlreadyExistsError:
            return False
        return True

    def delete_ref(self, name: str) -> bool:
        """Delete ref ``name``; ``False`` if it did not exist."""
        with write_lock(self.path, self.lock_timeout), self._ref_lock_errors(name):
            reference = self.repo.references.get(name)
            if reference is None:
                return False
            reference.delete()
            return True

    @contextlib.contextmanager
    def _ref_lock_errors(self, ref: str) -> Iterator[None]:
        """Turn libgit2's failures to write ``ref`` into progreg errors (a held lock: busy)."""
        try:
            yield
        except (pygit2.GitError, OSError) as exc:
            if "failed to lock" not in str(exc):
                raise write_failure(self.path, exc, f"write {ref} in {self.path}") from exc
            raise ref_locked_error(self.path, ref, str(exc).rstrip(": ")) from exc

    def _create_commit(self, tip: pygit2.Commit | None, plan: CommitPlan) -> pygit2.Oid:
        repo = self.repo
        tree = edit_tree(repo, tip.tree if tip is not None else None, plan.edits)
        parents: list[str | pygit2.Oid] = [*([tip.id] if tip is not None else [])]
        parents += plan.extra_parents
        author = plan.author.signature(plan.when)
        committer = plan.committer.signature(plan.when)
        signer = Signer.from_config(repo.config, "commit")
        if signer is None:
            return repo.create_commit(None, author, committer, plan.message, tree, parents)
        # pygit2's stub says Oid; the call returns the commit's text (checked in tests).
        content = cast(
            str, repo.create_commit_string(author, committer, plan.message, tree, parents)
        )
        return repo.create_commit_with_signature(content, signer.sign(content.encode()))

    def _compare_and_swap(
        self, ref: str, expected: pygit2.Commit | None, new: pygit2.Oid
    ) -> str | None:
        """Move ``ref`` from ``expected`` to ``new``; return why not, or ``None`` on success."""
        references = self.repo.references
        try:
            if expected is None:
                references.create(ref, new)
                return None
            reference = references.get(ref)
            if reference is None or reference.target != expected.id:
                return "the ref moved"
            reference.set_target(new)
        except (pygit2.GitError, OSError) as exc:
            return str(exc)
        return None
