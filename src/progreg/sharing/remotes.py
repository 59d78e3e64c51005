"""Remotes: push, pull and sync a registry with any Git remote.

A remote is configured as Git configures one (``remote.<name>.url`` and
fetch refspecs in the registry's ``config``), so ``git fetch <name>`` works
on the registry too. Its refs are fetched into ``refs/remotes/<name>/``:
``main``, ``checkpoints/<run>`` and ``tags/<tag>/<program id>``.

* :func:`push` sends ``main``, every tag and every checkpoint branch. It
  never forces: a ref the remote has moved on (``fetch first``,
  ``non-fast-forward``), a tag that would move, or a refusal by the server
  (a hook) raises :class:`~progreg.PushRejectedError` with the reasons.
* :func:`pull` fetches (every object fetched is judged as ``git fsck
  --strict`` judges it, :mod:`progreg.git.objects.fsck`: one it refuses
  refuses the pull, leaving no trace), then merges the remote's ``main`` into ours with
  :func:`~progreg.sharing.merging.merge_into_main` (fast-forward when ours is
  behind; a merge commit when both sides saved; a program changed
  differently on both sides is a :class:`~progreg.ConflictError` naming the
  ids, with ours on ``main`` and theirs on ``refs/remotes/<name>/main``).
  Missing tags are created (a tag that differs keeps ours); checkpoint
  branches fast-forward (a diverged one keeps ours and is reported).
* :func:`sync` pulls, then pushes everything but the checkpoints that
  diverged and the tags that differ (the pull reported them).

Credentials come from the ``credentials`` argument, the environment or the
SSH agent (:mod:`progreg.git.wire.credentials`); they are never written to
the registry, and URLs are shown without user information.
"""

from __future__ import annotations

import logging
import random
import time

import pygit2
from pydantic import BaseModel, ConfigDict, Field

from progreg import events
from progreg.core.layout import CHECKPOINTS_PREFIX, MAIN, REMOTES_PREFIX, TAGS_PREFIX
from progreg.core.names import check_name
from progreg.core.secrets import mask_credentials
from progreg.errors import (
    ConflictError,
    InvalidInputError,
    InvalidNameError,
    ProgregError,
    PushRejectedError,
    RegistryError,
    RemoteError,
)
from progreg.git import RefLogEntry
from progreg.git.locking import write_lock
from progreg.git.wire import remote as gitremote
from progreg.git.wire.urls import check_url, redact_url
from progreg.registry.store import Registry, check_marker
from progreg.sharing.incoming import check_incoming, is_registry_tag
from progreg.sharing.merging import MergeResult, Resolution, merge_into_main

#: How many pull-and-push rounds :func:`sync` makes when other writers keep pushing first.
SYNC_ROUNDS = 5
#: The longest pause (seconds) :func:`sync` makes between two rounds.
SYNC_PAUSE_MAX = 5.0
#: Reasons of a refused push that only mean the remote moved while we pulled.
_MOVED = ("fetch first", "non-fast-forward", "failed to update ref", "failed to lock")


class RemoteInfo(BaseModel):
    """A configured remote (its URL shown without user name or password)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    url: str


class PushResult(BaseModel):
    """What a push updated on the remote."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    remote: str
    url: str = Field(description="the remote's URL, without user information")
    updated: list[str] = Field(description="refs created or moved on the remote")
    created: list[str] = Field(description="the refs of `updated` that the remote lacked")
    up_to_date: int = Field(description="how many refs the remote already had as they are")
    skipped: list[str] = Field(
        default_factory=list,
        description="refs sync did not push: diverged checkpoints, tags that differ",
    )
    main: str | None = Field(description="the commit of main on the remote after the push")
    tracking_failure: str | None = Field(
        default=None,
        description="why the remote-tracking refs could not be moved after the push (a full"
        " or read-only registry); the push went through, and the next pull moves them",
    )


class PullResult(BaseModel):
    """What a pull brought into the registry."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    remote: str
    url: str = Field(description="the remote's URL, without user information")
    commit: str | None = Field(description="the new tip of main, or None when unchanged")
    fast_forward: bool = Field(description="main moved to the remote's main as it was")
    added: list[str] = Field(description="program ids new to this registry")
    updated: list[str] = Field(description="program ids whose newer version came in")
    removed: list[str] = Field(description="program ids deleted on the remote")
    identical: list[str] = Field(description="program ids both sides changed the same way")
    resolved: list[str] = Field(
        default_factory=list,
        description="program ids both sides changed differently, settled by pull(resolve=...)",
    )
    tags_created: list[str] = Field(description="tags created here, as '<tag>/<program id>'")
    tags_kept: list[str] = Field(description="tags that differ on the remote; ours were kept")
    checkpoints_updated: list[str] = Field(description="checkpoint runs created or advanced")
    checkpoints_diverged: list[str] = Field(
        description="checkpoint runs that diverged; ours were kept (rename or delete one side)"
    )
    ignored: list[str] = Field(description="remote refs that are not progreg tags or checkpoints")


class SyncResult(BaseModel):
    """A pull followed by a push."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    pulled: PullResult  # the last pull
    pushed: PushResult
    rounds: int = Field(default=1, description="pull-and-push rounds it took (see SYNC_ROUNDS)")


def tracking_prefix(name: str) -> str:
    """Where the refs of remote ``name`` are fetched to."""
    return f"{REMOTES_PREFIX}{name}/"


def fetch_refspecs(name: str) -> list[str]:
    """The fetch refspecs of remote ``name``: main, checkpoints and tags."""
    into = tracking_prefix(name)
    return [
        f"+{MAIN}:{into}main",
        f"+{CHECKPOINTS_PREFIX}*:{into}checkpoints/*",
        f"+{TAGS_PREFIX}*:{into}tags/*",
    ]


def add_remote(storage: Registry, name: str, url: str) -> RemoteInfo:
    """Add remote ``name`` at ``url`` (a Git URL or the path of another registry).

    A URL carrying a password or token is refused (credentials belong in the
    environment); a local path is stored as an absolute path. Raises
    :class:`~progreg.ConflictError` when ``name`` is taken.
    """
    storage.git.check_writable()
    check_name("remote", name, REMOTES_PREFIX)
    stored = check_url(url)
    repo = storage.git.repo
    shown = redact_url(stored)
    if name in set(repo.remotes.names()):
        existing = redact_url(repo.remotes[name].url or "")
        raise ConflictError(f"a remote named {name!r} already exists ({existing})")
    first, *others = fetch_refspecs(name)
    try:
        repo.remotes.create(name, stored, first)
        for refspec in others:
            repo.remotes.add_fetch(name, refspec)
        repo.config[f"remote.{name}.tagOpt"] = "--no-tags"
    except pygit2.AlreadyExistsError:
        raise ConflictError(f"a remote named {name!r} already exists") from None
    except (pygit2.GitError, OSError) as exc:
        raise RegistryError(f"cannot add remote {name!r} to {storage.path}: {exc}") from exc
    events.emit("progreg.remote.add", remote=name, url=shown)
    return RemoteInfo(name=name, url=shown)


def _existing_remote(storage: Registry, name: str) -> pygit2.Remote:
    """Remote ``name``; a :class:`~progreg.RemoteError` naming the configured ones if absent."""
    check_name("remote", name, REMOTES_PREFIX)
    repo = storage.git.repo
    names = sorted(n for n in repo.remotes.names() if n)
    if name not in names:
        raise RemoteError(
            f"no remote named {name!r} in {storage.path}"
            f" (configured: {', '.join(names) or 'none'}): add one with"
            f" storage.add_remote({name!r}, URL) or `progreg remote add {name} URL`"
        )
    return repo.remotes[name]


def set_remote_url(storage: Registry, name: str, url: str) -> RemoteInfo:
    """Point remote ``name`` at ``url``, checked as :func:`add_remote` checks it."""
    storage.git.check_writable()
    _existing_remote(storage, name)
    stored = check_url(url)
    try:
        storage.git.repo.remotes.set_url(name, stored)
    except (pygit2.GitError, OSError) as exc:
        raise RegistryError(f"cannot set the URL of remote {name!r}: {exc}") from exc
    shown = redact_url(stored)
    events.emit("progreg.remote.set_url", remote=name, url=shown)
    return RemoteInfo(name=name, url=shown)


def remove_remote(storage: Registry, name: str) -> RemoteInfo:
    """Remove remote ``name``: its configuration and its tracking refs, as ``git remote remove``.

    The tracking refs (``refs/remotes/<name>/``) go first, under the
    registry's write lock, so a pull of that remote cannot write one back
    half-way; the registry's own refs and objects are untouched.
    """
    storage.git.check_writable()
    removed = RemoteInfo(name=name, url=redact_url(_existing_remote(storage, name).url or ""))
    git = storage.git
    with write_lock(git.path, git.lock_timeout):
        for ref in git.refs_under(tracking_prefix(name)):
            git.delete_ref(ref)
        try:
            git.repo.remotes.delete(name)
        except (pygit2.GitError, OSError) as exc:
            raise RegistryError(f"cannot remove remote {name!r}: {exc}") from exc
    events.emit("progreg.remote.remove", remote=name, url=removed.url)
    return removed


def list_remotes(storage: Registry) -> list[RemoteInfo]:
    """The configured remotes, by name."""
    repo = storage.git.repo
    infos = []
    for name in sorted(n for n in repo.remotes.names() if n):
        infos.append(RemoteInfo(name=name, url=redact_url(repo.remotes[name].url or "")))
    return infos


def _remote(storage: Registry, remote: str, *, push: bool = False) -> tuple[str, str]:
    """Check that ``remote`` is configured with a safe URL; return its name and shown URL."""
    _existing_remote(storage, remote)
    name = remote
    url = gitremote.remote_url(storage.git, name, push=push)
    try:
        check_url(url)
    except InvalidInputError as exc:
        raise RemoteError(
            f"remote {name!r} is configured with an unusable URL (fix remote.{name}.url in"
            f" {storage.path / 'config'}): {exc}"
        ) from None
    return name, redact_url(url)


# -- push ------------------------------------------------------------------------


def _refs_to_push(storage: Registry, name: str) -> list[str]:
    """main, the checkpoint branches, and the tags the remote is not known to have.

    A tag whose remote-tracking ref (``refs/remotes/<name>/tags/...``, set by
    the last pull or push) already has the same value is left out: tags never
    move, and naming thousands of unchanged refs in every push would make each
    push cost time in proportion to the number of tags times the remote's refs.
    """
    git = storage.git
    tracked = git.ref_values(tracking_prefix(name) + "tags/")
    tags = [
        TAGS_PREFIX + label
        for label, target in git.ref_values(TAGS_PREFIX).items()
        if tracked.get(label) != target
    ]
    checkpoints = [CHECKPOINTS_PREFIX + label for label in git.ref_values(CHECKPOINTS_PREFIX)]
    main = [MAIN] if git.repo.references.get(MAIN) is not None else []
    return main + sorted(tags) + sorted(checkpoints)


def push(storage: Registry, remote: str, credentials: object = None) -> PushResult:
    """Push main, tags and checkpoints to ``remote``.

    Raises :class:`~progreg.PushRejectedError` (with the server's reasons)
    when the remote refuses any ref: pull first when it has moved on.
    """
    storage.git.check_writable()
    return _push(storage, remote, credentials, skip=frozenset())


def _push(storage: Registry, remote: str, credentials: object, skip: frozenset[str]) -> PushResult:
    name, shown = _remote(storage, remote, push=True)
    timer = events.Timer()
    refs = [ref for ref in _refs_to_push(storage, name) if ref not in skip]
    main = storage.git.tip(MAIN) if MAIN in refs else None
    try:
        outcome = gitremote.push(storage.git, name, refs, credentials)
    except ProgregError as exc:
        events.emit(
            "progreg.push_error",
            remote=name,
            url=shown,
            error=str(exc),
            error_type=type(exc).__name__,
            rejected=len(getattr(exc, "reasons", {})),
            duration_ms=timer.ms,
        )
        raise
    result = PushResult(
        remote=name,
        url=shown,
        updated=[u.ref for u in outcome.updated],
        created=[u.ref for u in outcome.updated if u.old is None],
        up_to_date=len(outcome.up_to_date),
        skipped=sorted(skip),
        main=str(main.id) if main is not None else None,
        tracking_failure=outcome.tracking_failure,
    )
    if outcome.tracking_failure is not None:
        events.emit(
            "progreg.push.tracking_failure",
            level=logging.WARNING,
            remote=name,
            url=shown,
            error=outcome.tracking_failure,
        )
    events.emit(
        "progreg.push",
        remote=name,
        url=shown,
        updated=len(result.updated),
        created=len(result.created),
        up_to_date=result.up_to_date,
        skipped=len(result.skipped),
        main=result.main,
        duration_ms=timer.ms,
    )
    return result


# -- pull ------------------------------------------------------------------------


def _check_their_main(commit: pygit2.Commit, source: str) -> None:
    """Refuse to merge a ``main`` that is not a registry this progreg can read."""
    where = f"{source}: its main (commit {str(commit.id)[:12]}) is"
    check_marker(commit.tree, where, MAIN, RemoteError)


def _pull_main(
    storage: Registry, name: str, source: str, resolve: Resolution | None
) -> MergeResult | None:
    git = storage.git
    theirs = git.tip(tracking_prefix(name) + "main")
    if theirs is None:
        return None
    _check_their_main(theirs, source)
    return merge_into_main(
        storage,
        str(theirs.id),
        action="merge",
        source=source,
        fast_forward=True,
        resolve=resolve,
        settle=(
            f"Ours is on main, theirs on {tracking_prefix(name)}main. Pull again keeping ours"
            " or taking theirs for every such program: pull(resolve='ours' or 'theirs'),"
            " progreg pull --ours or --theirs; the other version stays in history."
        ),
    )


def _pull_tags(storage: Registry, name: str) -> tuple[list[str], list[str], list[str]]:
    """Create the remote's tags missing here: (created, kept ours, ignored)."""
    repo = storage.git.repo
    prefix = tracking_prefix(name) + "tags/"
    missing: dict[str, str] = {}
    kept, ignored = [], []
    for ref in sorted(storage.git.refs_under(prefix)):
        label = ref[len(prefix) :]
        theirs = repo.references[ref].target
        ours = repo.references.get(TAGS_PREFIX + label)
        if ours is not None and ours.target == theirs:
            continue  # pulled before
        try:
            valid = is_registry_tag(label) and repo[theirs].peel(pygit2.Commit) is not None
        except (pygit2.GitError, ValueError, KeyError):
            valid = False
        if not valid or not isinstance(theirs, pygit2.Oid):
            ignored.append(mask_credentials(f"{TAGS_PREFIX}{label}"))
        elif ours is not None:
            kept.append(label)
        else:
            missing[TAGS_PREFIX + label] = str(theirs)
    entry = RefLogEntry(storage.identity()[1], f"pull {name}: storing tag")
    made = set(storage.git.create_refs(missing, entry))
    created = [ref[len(TAGS_PREFIX) :] for ref in missing if ref in made]
    kept += [ref[len(TAGS_PREFIX) :] for ref in missing if ref not in made]  # made meanwhile
    return created, sorted(kept), ignored


def _pull_checkpoints(storage: Registry, name: str) -> tuple[list[str], list[str], list[str]]:
    """Fast-forward checkpoint branches: (created or advanced, diverged, ignored)."""
    git, repo = storage.git, storage.git.repo
    prefix = tracking_prefix(name) + "checkpoints/"
    advanced, diverged, ignored = [], [], []
    for ref in sorted(git.refs_under(prefix)):
        run = ref[len(prefix) :]
        try:
            check_name("checkpoint", run, CHECKPOINTS_PREFIX)
            theirs = git.tip(ref)
        except (InvalidNameError, RegistryError):
            ignored.append(mask_credentials(CHECKPOINTS_PREFIX + run))
            continue
        if theirs is None:
            continue
        local = CHECKPOINTS_PREFIX + run
        mine = git.tip(local)
        if mine is not None and (mine.id == theirs.id or repo.descendant_of(mine.id, theirs.id)):
            continue
        ahead = mine is None or repo.descendant_of(theirs.id, mine.id)
        entry = RefLogEntry(storage.identity()[1], f"pull {name}: fast-forward")
        if ahead and git.fast_forward(local, theirs.id, entry) is not None:
            advanced.append(run)
        else:
            diverged.append(run)
    return advanced, diverged, ignored


def pull(
    storage: Registry,
    remote: str,
    credentials: object = None,
    *,
    resolve: Resolution | None = None,
) -> PullResult:
    """Fetch ``remote`` and merge its main, tags and checkpoints.

    Raises :class:`~progreg.ConflictError` (main unchanged, tags and
    checkpoints untouched) when a program differs on both sides, naming the
    fields that differ; ``resolve="ours"`` keeps our version of every such
    program and ``"theirs"`` takes theirs (both stay in history).
    """
    storage.git.check_writable()
    if resolve not in (None, "ours", "theirs"):
        raise InvalidInputError(f"resolve must be 'ours', 'theirs' or None, not {resolve!r}")
    name, shown = _remote(storage, remote)
    source = f"{name} ({shown})"
    timer = events.Timer()
    try:
        tips = gitremote.fetch(
            storage.git, name, fetch_refspecs(name), credentials, check_objects=True
        )

        def check() -> None:
            their_main = storage.git.tip(tracking_prefix(name) + "main")
            if their_main is not None:
                _check_their_main(their_main, source)
            check_incoming(storage, tracking_prefix(name), source)

        try:  # the checks come before any ref of the registry moves
            storage.reread(f"what {source} sent", check)
            merge = _pull_main(storage, name, source, resolve)
        except ConflictError:
            raise  # theirs stays on the tracking ref, for the person who resolves it
        except ProgregError:  # refused, or no space to write the merge: no ref moved
            gitremote.restore_tips(storage.git, tips)
            raise
        tags_created, tags_kept, tags_ignored = _pull_tags(storage, name)
        advanced, diverged, runs_ignored = _pull_checkpoints(storage, name)
    except ProgregError as exc:
        events.emit(
            "progreg.pull_error",
            remote=name,
            url=shown,
            error=str(exc),
            error_type=type(exc).__name__,
            duration_ms=timer.ms,
        )
        raise
    result = PullResult(
        remote=name,
        url=shown,
        commit=merge.commit if merge is not None else None,
        fast_forward=merge.fast_forward if merge is not None else False,
        added=merge.added if merge is not None else [],
        updated=merge.updated if merge is not None else [],
        removed=merge.removed if merge is not None else [],
        identical=merge.identical if merge is not None else [],
        resolved=merge.resolved if merge is not None else [],
        tags_created=tags_created,
        tags_kept=tags_kept,
        checkpoints_updated=advanced,
        checkpoints_diverged=diverged,
        ignored=tags_ignored + runs_ignored,
    )
    events.emit(
        "progreg.pull",
        remote=name,
        url=shown,
        commit=result.commit,
        fast_forward=result.fast_forward,
        added=len(result.added),
        updated=len(result.updated),
        removed=len(result.removed),
        identical=len(result.identical),
        tags_created=len(result.tags_created),
        tags_kept=len(result.tags_kept),
        checkpoints_updated=len(result.checkpoints_updated),
        checkpoints_diverged=len(result.checkpoints_diverged),
        duration_ms=timer.ms,
    )
    return result


def sync(
    storage: Registry,
    remote: str,
    credentials: object = None,
    *,
    resolve: Resolution | None = None,
) -> SyncResult:
    """Pull, then push all but what the pull reported as differing: diverged runs, kept tags.

    When another writer pushed between our pull and our push (a refusal that
    only says the remote moved), pull and push again, after a short random
    pause, up to :data:`SYNC_ROUNDS` rounds; any other refusal, and the last
    one, is raised.
    """
    storage.git.check_writable()
    for round_number in range(1, SYNC_ROUNDS + 1):
        started = time.monotonic()
        pulled = pull(storage, remote, credentials, resolve=resolve)
        skip = frozenset(
            [CHECKPOINTS_PREFIX + run for run in pulled.checkpoints_diverged]
            + [TAGS_PREFIX + label for label in pulled.tags_kept]
        )
        try:
            pushed = _push(storage, remote, credentials, skip)
        except PushRejectedError as exc:
            if round_number == SYNC_ROUNDS or not _only_moved(exc):
                raise
            # Exponential back-off with full jitter, in units of what a round costs here:
            # a server whose hook takes half a second per push needs longer pauses than
            # one that answers at once, or the writers that lost collide again.
            unit = max(0.02, time.monotonic() - started)
            time.sleep(random.uniform(0, min(SYNC_PAUSE_MAX, unit * 2 ** (round_number - 1))))
            continue
        return SyncResult(pulled=pulled, pushed=pushed, rounds=round_number)
    raise AssertionError("unreachable: the last round returns or raises")


def _only_moved(exc: PushRejectedError) -> bool:
    """Whether every ref the remote refused was refused only because it moved meanwhile."""
    return bool(exc.reasons) and all(
        any(marker in reason for marker in _MOVED) for reason in exc.reasons.values()
    )
