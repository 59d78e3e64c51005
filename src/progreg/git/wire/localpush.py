"""Safe pushes to a repository on this machine (a path or a ``file://`` URL).

libgit2's local transport writes the pushed refs into the target without an
old-value check, without running its hooks and without its ``receive.*``
settings: two people pushing into one shared directory (a network share, a
mounted volume) can silently overwrite each other, and a save made in the
target itself while a push runs can be lost. So progreg never uses it for
pushes; :func:`push_local` does what ``git receive-pack`` does instead:

1. **Judge** every ref against the target's current value with the rules of
   a server with ``receive.denyNonFastForwards``: branches (``main``,
   checkpoints) only move forward, tags never move, nothing is deleted
   (:func:`~progreg.git.refs.refupdates.refusal`). A refusal raises
   :class:`~progreg.PushRejectedError` and nothing is changed.
2. **Check the missing objects** as ``git fsck --strict`` does
   (:mod:`progreg.git.objects.fsck`) when the target asks for it as Git's
   ``receive-pack`` reads it (``receive.fsckObjects``, else
   ``transfer.fsckObjects``) and also when it sets neither (see
   :func:`fsck_objects_wanted`): one object refused raises
   :class:`~progreg.PushRejectedError` naming it, Git's message id and the
   entry, before anything is written.
3. **Copy the missing objects** straight into the target's object database,
   children before parents (blobs, then trees, then commits and tags), so
   that any object present in the target always has everything it points
   to. The walk stops at objects the target already has: pushing one new
   program into a registry of any size copies a handful of objects.
4. **Run the target's** ``pre-receive`` **hook**, if it has an executable one
   (``core.hooksPath`` is honoured), with the usual ``<old> <new> <ref>``
   lines on its standard input; a non-zero exit refuses the push and its
   output becomes the error's message, as ``remote:`` lines do over the wire.
5. **Update the refs under the target's own write lock** (the same
   ``progreg.lock`` that every progreg writer of that registry takes), each
   with a compare-and-swap against the value judged in step 1. If any ref
   moved in the meantime (a save into the target, another push), the whole
   push is refused before a single ref changes, so a concurrent writer's
   save can never be overwritten; writers that do not take the lock (a
   plain ``git`` command) are still caught by the compare-and-swap.

Objects copied for a push that is then refused stay in the target,
unreferenced, until ``git gc`` prunes them (Git without quarantine does the
same). ``update`` and ``post-receive`` hooks are not run.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import pygit2
from pygit2.enums import FileMode, RepositoryOpenFlag

from progreg import events
from progreg.errors import RemoteError
from progreg.git.failures import write_failure
from progreg.git.locking import remove_stale_ref_locks, write_lock
from progreg.git.objects.fsck import IncomingObjects
from progreg.git.objects.identity import resolve_identity
from progreg.git.pack.objectread import raw_reader
from progreg.git.permissions import PERM_UMASK, adjust_loose_object, adjust_ref_paths
from progreg.git.refs.reflog import RefLogEntry, wants_reflog
from progreg.git.refs.refupdates import (
    ZERO,
    PushOutcome,
    RefUpdate,
    plan,
    rejected,
    remote_lines,
)
from progreg.git.refs.refwrite import NeedsLibgit2, RefSwap, swap_ref, swap_refs
from progreg.git.settings import (
    RepositorySettings,
    check_object_format,
    repository_settings,
)

#: Variables that would point a hook's git commands at another repository.
_REPOSITORY_VARIABLES = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_QUARANTINE_PATH",
        "GIT_CEILING_DIRECTORIES",
    }
)
MOVED = "moved while the push ran (another push or save came first); pull, then push again"


def open_target(path: Path) -> pygit2.Repository:
    """The bare repository at ``path`` that a local push writes into."""
    if not path.is_dir():
        raise RemoteError(
            f"no repository at {path}: create one with `git init --bare {path}`"
            " (or ProgramStorage on that path), then push again"
        )
    try:
        target = pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)
    except pygit2.GitError as exc:
        check_object_format(path)
        raise RemoteError(f"{path} is not a Git repository: {exc}") from exc
    if not target.is_bare:
        raise RemoteError(
            f"{path} is a Git work tree; progreg pushes only to bare repositories"
            f" (make one with: git clone --bare {path} <new path>)"
        )
    return target


def _children(obj: pygit2.Object) -> list[pygit2.Oid]:
    if isinstance(obj, pygit2.Commit):
        return [obj.tree_id, *obj.parent_ids]
    if isinstance(obj, pygit2.Tree):
        return [entry.id for entry in obj if entry.filemode != FileMode.COMMIT]
    if isinstance(obj, pygit2.Tag):
        return [obj.target]
    return []


def missing_in_target(
    source: pygit2.Repository, target: pygit2.Repository, roots: Iterable[pygit2.Oid]
) -> list[pygit2.Oid]:
    """The objects reachable from ``roots`` that ``target`` lacks, children before parents.

    The walk does not enter an object the target already has (it has all
    that object reaches).
    """
    target_odb = target.odb
    expanded: set[pygit2.Oid] = set()
    stack: list[tuple[pygit2.Oid, bool]] = [(oid, False) for oid in roots]
    order: list[pygit2.Oid] = []
    while stack:
        oid, ready = stack.pop()
        if ready:
            order.append(oid)
            continue
        if oid in expanded or oid in target_odb:
            continue
        expanded.add(oid)
        stack.append((oid, True))
        stack.extend((child, False) for child in _children(source[oid]) if child not in expanded)
    return order


def copy_objects(
    source: pygit2.Repository,
    target: pygit2.Repository,
    oids: Sequence[pygit2.Oid],
    shared: int = PERM_UMASK,
) -> int:
    """Write the objects ``oids`` of ``source`` into ``target``, in order; return how many.

    Each gets the mode Git gives a loose object in the target (``shared``, its
    ``core.sharedRepository``).
    """
    objects_dir = Path(target.path) / "objects"
    source_odb, target_odb = source.odb, target.odb
    for oid in oids:
        kind, data = source_odb.read(oid)
        written = target_odb.write(kind, data)
        adjust_loose_object(objects_dir, str(written), shared)
    return len(oids)


def fsck_objects_wanted(target: pygit2.Repository) -> bool:
    """Whether a push into ``target`` judges the objects it brings as ``git fsck`` does.

    As ``git receive-pack``: ``receive.fsckObjects``, else
    ``transfer.fsckObjects``. When neither is set progreg checks anyway (Git
    would not): an object Git refuses would make the target unpushable to
    any server that checks. Only an explicit ``false`` turns the check off.
    """
    config = target.config
    for key in ("receive.fsckObjects", "transfer.fsckObjects"):
        if key in config:
            try:
                return bool(config.get_bool(key))
            except (pygit2.GitError, ValueError):
                return True  # an unreadable setting: stay safe
    return True


def fsck_refusal(
    source: pygit2.Repository, target: pygit2.Repository, oids: Sequence[pygit2.Oid]
) -> str | None:
    """The first of ``oids`` (objects of ``source``) git fsck --strict refuses, described."""
    incoming = IncomingObjects()
    source_odb = source.odb
    for oid in oids:
        kind, data = source_odb.read(oid)
        refusal = incoming.refusal(oid.raw, int(kind), data)
        if refusal is not None:
            return refusal
    return incoming.finish(raw_reader(source_odb, target.odb))


def _value(repo: pygit2.Repository, ref: str) -> str | None:
    reference = repo.references.get(ref)
    return None if reference is None else str(reference.target)


def _hook(target: pygit2.Repository, path: Path, name: str) -> Path | None:
    try:
        configured = target.config["core.hooksPath"]
    except KeyError:
        configured = None
    hooks = Path(configured).expanduser() if configured else path / "hooks"
    if not hooks.is_absolute():
        hooks = path / hooks
    hook = hooks / name
    return hook if hook.is_file() and os.access(hook, os.X_OK) else None


def run_pre_receive(
    target: pygit2.Repository, path: Path, updates: Sequence[RefUpdate], shown: str
) -> None:
    """Run the target's ``pre-receive`` hook on ``updates``; raise if it refuses them."""
    hook = _hook(target, path, "pre-receive")
    if hook is None:
        return
    lines = "".join(f"{u.old or ZERO} {u.new} {u.ref}\n" for u in updates)
    env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_VARIABLES}
    env["GIT_DIR"] = str(path)
    try:
        done = subprocess.run(
            [str(hook)], input=lines.encode(), cwd=path, env=env, capture_output=True, check=False
        )
    except OSError as exc:
        reasons = {u.ref: f"pre-receive hook failed to run: {exc}" for u in updates}
        raise rejected(shown, reasons) from None
    if done.returncode != 0:
        said = remote_lines((done.stdout + done.stderr).decode(errors="replace"))
        raise rejected(shown, {u.ref: "pre-receive hook declined" for u in updates}, said)


def push_local(
    source: pygit2.Repository, path: Path, refs: Sequence[str], *, lock_timeout: float = 30.0
) -> PushOutcome:
    """Push ``refs`` of ``source`` to the same names in the bare repository at ``path``.

    See the module's documentation for how the push is kept safe. Raises
    :class:`~progreg.PushRejectedError` (nothing changed) when a ref may not
    move, and :class:`~progreg.RemoteError` when ``path`` is not a bare repository.
    """
    path = path.absolute()
    target = open_target(path)
    shown = str(path)
    wanted = {ref: str(r.target) for ref in refs if (r := source.references.get(ref)) is not None}
    updates, up_to_date, reasons = plan(source, wanted, lambda ref: _value(target, ref))
    if reasons:
        raise rejected(shown, reasons)
    if not updates:
        return PushOutcome([], up_to_date)
    missing = missing_in_target(source, target, [pygit2.Oid(hex=u.new) for u in updates])
    if fsck_objects_wanted(target):
        refusal = fsck_refusal(source, target, missing)
        if refusal is not None:
            reason = f"git fsck --strict refuses an object of the push: {refusal}"
            raise rejected(shown, {u.ref: reason for u in updates})
    try:
        copy_objects(source, target, missing, repository_settings(path).shared)
    except (pygit2.GitError, OSError) as exc:  # the target's disk: full, or read-only
        raise write_failure(path, exc, f"push into {path}") from None
    run_pre_receive(target, path, updates, shown)
    return PushOutcome(_apply(target, path, updates, shown, lock_timeout), up_to_date)


def _apply(
    target: pygit2.Repository,
    path: Path,
    updates: list[RefUpdate],
    shown: str,
    lock_timeout: float,
) -> list[RefUpdate]:
    """Move every ref of ``updates`` under the target's write lock, or none if one moved."""
    with write_lock(path, lock_timeout) as grant:
        if grant.previous_holder_crashed:
            for removed in remove_stale_ref_locks(path, grant.previous_since):
                events.emit("progreg.lock.recovered", level=logging.WARNING, lock_path=str(removed))
        moved = {u.ref: MOVED for u in updates if _value(target, u.ref) != u.old}
        if moved:
            raise rejected(shown, moved)
        # the target's reflogs name its own committer, as receive-pack's do
        entry = RefLogEntry(resolve_identity("COMMITTER", None, target.config), "push")
        settings = repository_settings(path)
        swaps = [
            RefSwap(
                u.ref, u.old, u.new, entry if wants_reflog(path, u.ref, settings.log_refs) else None
            )
            for u in updates
        ]
        try:
            reasons = swap_refs(
                path, swaps, durable=False, shared=settings.shared, log_refs=settings.log_refs
            )
        except NeedsLibgit2:  # a symbolic ref among them: one by one, through libgit2 for it
            pass
        except OSError as exc:  # the target's disk, full or read-only: no ref moved
            raise write_failure(path, exc, f"push into {path}") from None
        else:
            if reasons:
                raise rejected(
                    shown,
                    {ref: MOVED if why == "the ref moved" else why for ref, why in reasons.items()},
                )
            return updates
        applied: list[RefUpdate] = []
        for update in updates:
            error = _compare_and_swap(target, path, update, entry, settings)
            if error is not None:
                raise rejected(shown, {update.ref: error}, accepted=applied)
            applied.append(update)
    return applied


def _compare_and_swap(
    target: pygit2.Repository,
    path: Path,
    update: RefUpdate,
    entry: RefLogEntry,
    settings: RepositorySettings,
) -> str | None:
    """Move ``update.ref`` with Git's lock-file protocol, logged as Git would."""
    wanted = wants_reflog(path, update.ref, settings.log_refs)
    try:
        reason = swap_ref(
            path,
            update.ref,
            update.old,
            update.new,
            durable=False,
            shared=settings.shared,
            reflog=entry if wanted else None,
            log_refs=settings.log_refs,
        )
    except NeedsLibgit2:  # a symbolic ref: libgit2 moves it
        target.set_ident(entry.who.name, entry.who.email)
        try:
            return _libgit2_swap(target, update)
        finally:
            target.set_ident(None, None)
            adjust_ref_paths(path, update.ref, settings.shared)
    except OSError as exc:
        return f"could not update the ref: {exc}"
    return MOVED if reason == "the ref moved" else reason


def _libgit2_swap(target: pygit2.Repository, update: RefUpdate) -> str | None:
    new = pygit2.Oid(hex=update.new)
    try:
        if update.old is None:
            target.create_reference_direct(update.ref, new, False, "push")
            return None
        reference = target.references.get(update.ref)
        if reference is None or str(reference.target) != update.old:
            return MOVED
        reference.set_target(new, "push")
    except pygit2.AlreadyExistsError:
        return MOVED
    except (pygit2.GitError, OSError) as exc:
        return f"could not update the ref: {exc}"
    return None
