"""Git-level remote operations: fetch and push, with refusals and failures made exceptions.

Pushes over ``git://`` and ``http(s)://`` are made by dulwich's send-pack
with progreg's object selection and rules (:mod:`progreg.git.wire.smartpush`):
libgit2's push marks the whole tree of every commit the remote advertises a
ref for as present, which reads nearly every tree of a registry whose
programs carry tags, on every push. The send-pack judges every ref with the
same rules before anything is sent and turns the server's refusals into
:class:`~progreg.PushRejectedError`.

Fetches, and pushes over ``ssh://`` and ``host:path``, go through libgit2,
with callbacks (:class:`Callbacks`) that

* judge every ref update before anything is sent (``push_negotiation``
  sees the remote's current value of each ref): a branch that would not
  fast-forward or a tag that would move is refused with the reason Git
  gives (``fetch first``, ``non-fast-forward``), and nothing is pushed;
* capture the server's verdict on each ref (``push_update_reference``:
  libgit2 reports a refusal there and returns success) and what the
  server printed (``sideband_progress``: a hook's reasons), and turn any
  refusal into :class:`~progreg.PushRejectedError` with ``reasons``;
* connect only to verified hosts (a valid TLS certificate; an SSH host key
  listed in ``~/.ssh/known_hosts``, which pygit2 would otherwise skip);
* answer credential requests from :mod:`progreg.git.wire.credentials`,
  raising :class:`~progreg.AuthenticationError` on the second request
  instead of letting libgit2 retry rejected credentials for ever (the
  HTTP transport of the send-pack asks the same source).

Local remotes (a path or ``file://`` URL) are fetched through libgit2 too,
which is read-only on the remote side and safe. They are *pushed* by
:func:`progreg.git.wire.localpush.push_local`, because libgit2's local
transport updates the target's refs blindly and runs none of its checks:
progreg copies the missing objects into the target itself and moves the
target's refs under the target registry's own write lock with a
compare-and-swap, refusing non-fast-forward updates and moved tags exactly
as a server with ``receive.denyNonFastForwards`` does (see that module).

URLs in every message are shown without user information, and messages
from libgit2 are scrubbed of URLs' user information and of the secrets
handed out (:func:`progreg.git.wire.urls.scrub`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import CredentialType, FetchPrune
from pygit2.ffi import C
from pygit2.refspec import Refspec
from pygit2.remotes import PushUpdate

from progreg.errors import (
    AuthenticationError,
    DiskFullError,
    ProgregError,
    PushRejectedError,
    ReadOnlyRegistryError,
    RemoteError,
)
from progreg.git.failures import write_failure
from progreg.git.locking import write_lock
from progreg.git.maintenance import maintenance_lock
from progreg.git.objects.fsck import IncomingObjects
from progreg.git.pack.objectread import raw_reader
from progreg.git.pack.packdir import heal_midx, update_pack_info
from progreg.git.pack.packsource import read_index
from progreg.git.refs.refupdates import (
    ZERO,
    PushOutcome,
    RefUpdate,
    hinted,
    refusal,
    rejected,
    remote_lines,
)
from progreg.git.repository import GitRepository
from progreg.git.wire.credentials import Credential, CredentialSource
from progreg.git.wire.localpush import push_local
from progreg.git.wire.urls import (
    CREDENTIALS_HELP,
    is_local,
    local_path,
    redact_url,
    scrub,
)

#: Fetch only what the refspecs name (no tag auto-following).
_DOWNLOAD_TAGS_NONE: int = C.GIT_REMOTE_DOWNLOAD_TAGS_NONE
#: A refspec that maps the remote's refs to local ones.
_DIRECTION_FETCH: int = C.GIT_DIRECTION_FETCH
#: Schemes pushed by progreg.git.wire.smartpush (dulwich); the others (ssh) go through libgit2.
_SMART_SCHEMES = frozenset({"git", "http", "https"})
_MAX_SIDEBAND = 64 * 1024


class Callbacks(pygit2.RemoteCallbacks):
    """libgit2 callbacks for one fetch or push that record what the remote said."""

    def __init__(self, repo: pygit2.Repository, url: str, credentials: object = None) -> None:
        super().__init__()
        self.repo = repo
        self.url = redact_url(url)
        self.source = CredentialSource(url, credentials)
        self.statuses: dict[str, str | None] = {}
        self.negotiated: list[RefUpdate] = []
        self.up_to_date: list[str] = []
        self.tips: list[RefUpdate] = []
        self._sideband: list[str] = []
        self._sideband_size = 0
        self._fetch_options: Any = None

    # libgit2 would also follow tags pointing into fetched history, writing
    # them straight to refs/tags/; progreg fetches exactly its refspecs.
    @property
    def fetch_options(self) -> Any:
        """The fetch options pygit2 fills in (tag auto-following turned off here)."""
        return self._fetch_options

    @fetch_options.setter
    def fetch_options(self, options: Any) -> None:
        if options is not None:
            options.download_tags = _DOWNLOAD_TAGS_NONE
        self._fetch_options = options

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> Credential:
        """Credentials for ``url`` (see :mod:`progreg.git.wire.credentials`)."""
        return self.source(url, username_from_url, allowed_types)

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        """Connect only to hosts libgit2 verified.

        That is a valid TLS certificate, or an SSH host key listed in
        ``~/.ssh/known_hosts`` (pygit2 alone would accept any SSH host key).
        """
        return valid

    def sideband_progress(self, string: str) -> None:
        """Keep what the remote prints (a hook's reasons), up to a limit."""
        if self._sideband_size < _MAX_SIDEBAND:
            self._sideband.append(string)
            self._sideband_size += len(string)

    def push_negotiation(self, updates: list[PushUpdate]) -> None:
        """Refuse the whole push, before anything is sent, if any ref may not move."""
        reasons: dict[str, str] = {}
        for update in updates:
            old = None if str(update.src) == ZERO else str(update.src)
            new = str(update.dst)
            if old == new:
                self.up_to_date.append(update.dst_refname)
                continue
            reason = refusal(self.repo, update.dst_refname, old, new)
            if reason is not None:
                reasons[update.dst_refname] = reason
            else:
                self.negotiated.append(RefUpdate(update.dst_refname, old, new))
        if reasons:
            raise rejected(self.url, reasons, self.said())

    def push_update_reference(self, refname: str, message: str | None) -> None:
        """Record the server's verdict on ``refname`` (``None`` means accepted)."""
        self.statuses[refname] = message

    def update_tips(self, refname: str, old: pygit2.Oid, new: pygit2.Oid) -> None:
        """Record a local ref (remote-tracking) that a fetch moved."""
        before = None if str(old) == ZERO else str(old)
        self.tips.append(RefUpdate(refname, before, str(new)))

    def said(self) -> list[str]:
        """What the remote printed, scrubbed, line by line."""
        return [
            scrub(line, self.source.secrets()) for line in remote_lines("".join(self._sideband))
        ]

    def failure(self, action: str, exc: Exception) -> RemoteError:
        """The progreg error for a libgit2 failure of ``action`` (``fetch``/``push``)."""
        message = scrub(str(exc), self.source.secrets())
        if isinstance(exc, pygit2.AuthError) or any(
            code in message for code in ("status code: 401", "status code: 403")
        ):
            return AuthenticationError(
                f"{self.url} refused to authenticate the {action}: {message}. {CREDENTIALS_HELP}"
            )
        where = "from" if action == "fetch" else "to"
        return RemoteError(f"{action} {where} {self.url} failed: {message}")


def remote_url(git: GitRepository, name: str, *, push: bool = False) -> str:
    """The URL of remote ``name`` (its push URL for ``push`` when one is set)."""
    try:
        remote = git.repo.remotes[name]
    except (KeyError, pygit2.GitError, ValueError):
        raise RemoteError(f"no remote named {name!r} (add it with add_remote)") from None
    url = (remote.push_url if push else None) or remote.url
    if not url:
        raise RemoteError(f"remote {name!r} has no URL")
    return url


def fetch(
    git: GitRepository,
    name: str,
    refspecs: Sequence[str],
    credentials: object = None,
    *,
    check_objects: bool = False,
) -> list[RefUpdate]:
    """Fetch ``refspecs`` from remote ``name`` (pruning stale ones); return the refs moved.

    libgit2 moves (and prunes) the remote-tracking refs at the end of the
    fetch, so the fetch runs under the registry's write lock, which ref
    packing holds too (a pack between a ref's deletion and the rewrite of
    ``packed-refs`` would bring the ref back). Undo it with :func:`restore_tips`.

    With ``check_objects``, every object of the packs the fetch wrote is
    judged as ``git fsck --strict`` judges it (:mod:`progreg.git.objects.fsck`)
    before the lock is released; if one is refused, the refs the fetch moved
    are put back, the new packs are removed and :class:`~progreg.RemoteError`
    names the object, Git's message id and the entry. The maintenance lock
    is held too, so that no pack merge copies the new packs meanwhile.
    """
    url = remote_url(git, name)
    repo = git.repo
    callbacks = Callbacks(repo, url, credentials)
    pack_dir = git.path / "objects" / "pack"
    try:
        with contextlib.ExitStack() as locks:
            if check_objects:
                locks.enter_context(maintenance_lock(git.path, git.lock_timeout))
            locks.enter_context(write_lock(git.path, git.lock_timeout))
            before = _pack_names(pack_dir)
            who = git.reflog_entry("").who  # the reflogs of the tracking refs name the committer
            repo.set_ident(who.name, who.email)
            try:
                repo.remotes[name].fetch(
                    list(refspecs),
                    message=f"fetch {name}",
                    callbacks=callbacks,
                    prune=FetchPrune.PRUNE,
                )
            finally:
                repo.set_ident(None, None)
                git.adopt_libgit2_files(f"refs/remotes/{name}")
            if check_objects:
                new_packs = sorted(_pack_names(pack_dir) - before)
                try:
                    refusal = _fsck_packs(repo, pack_dir, new_packs)
                except BaseException:  # unjudged objects are not kept either
                    restore_tips(git, callbacks.tips)
                    _remove_packs(pack_dir, new_packs)
                    raise
                if refusal is not None:
                    restore_tips(git, callbacks.tips)
                    _remove_packs(pack_dir, new_packs)
                    raise RemoteError(
                        f"{callbacks.url} is not a sound registry: it sent an object git fsck"
                        f" --strict refuses: {refusal}. A server with receive.fsckObjects would"
                        " refuse every push of a registry holding it, so nothing was pulled"
                        " (no ref moved, the fetched objects were removed); fix the remote's"
                        " history first"
                    )
            if heal_midx(pack_dir):  # it names packs deleted since: the handle has it too
                git.forget_packs()
            if _pack_names(pack_dir) != before:
                update_pack_info(git.path / "objects")  # dumb-HTTP clients see the new pack
    except ProgregError:
        raise
    except (pygit2.GitError, OSError) as exc:
        # A fetch that failed here (a full disk: the pack, a ref) may have moved some
        # tracking refs already: they go back, and a local write failure says so.
        with contextlib.suppress(ProgregError, pygit2.GitError, OSError):
            restore_tips(git, callbacks.tips)
        local = write_failure(git.path, exc, f"fetch from {callbacks.url} into {git.path}")
        if isinstance(local, DiskFullError | ReadOnlyRegistryError):
            raise local from None
        raise callbacks.failure("fetch", exc) from None
    return callbacks.tips


def _pack_names(pack_dir: Path) -> set[str]:
    """The names (without suffix) of the indexed packs in ``pack_dir``."""
    try:
        return {entry[:-4] for entry in os.listdir(pack_dir) if entry.endswith(".idx")}
    except FileNotFoundError:
        return set()


def _fsck_packs(repo: pygit2.Repository, pack_dir: Path, names: Sequence[str]) -> str | None:
    """Judge every object of the packs ``names`` as git fsck does; the first refusal or None."""
    incoming = IncomingObjects()
    odb = repo.odb
    for pack in names:
        ids = read_index(pack_dir / f"{pack}.idx")[0]
        for start in range(0, len(ids), 20):
            oid = pygit2.Oid(raw=ids[start : start + 20])
            kind, data = odb.read(oid)
            refusal = incoming.refusal(oid.raw, int(kind), data)
            if refusal is not None:
                return refusal
    return incoming.finish(raw_reader(odb))


def _remove_packs(pack_dir: Path, names: Sequence[str]) -> None:
    """Remove the packs ``names`` (index first, so no reader finds an index without its pack)."""
    for pack in names:
        for suffix in (".idx", ".rev", ".keep", ".pack"):
            with contextlib.suppress(FileNotFoundError):
                (pack_dir / f"{pack}{suffix}").unlink()


def restore_tips(git: GitRepository, tips: Sequence[RefUpdate]) -> None:
    """Put the refs a :func:`fetch` moved back where they were, under the write lock."""
    with write_lock(git.path, git.lock_timeout):
        for tip in reversed(tips):
            entry = git.reflog_entry(f"restore {tip.ref} after a failed pull")
            git.set_ref(tip.ref, pygit2.Oid(hex=tip.old) if tip.old is not None else None, entry)


def push(
    git: GitRepository, name: str, refs: Sequence[str], credentials: object = None
) -> PushOutcome:
    """Push each of ``refs`` to the same name on remote ``name``, never forcing.

    Raises :class:`~progreg.PushRejectedError` when the remote (or the
    fast-forward rules, judged first) refuses any ref, with the remote's
    reasons; :class:`~progreg.AuthenticationError` when it refuses the
    credentials; :class:`~progreg.RemoteError` when it cannot be reached.
    """
    url = remote_url(git, name, push=True)
    repo = git.repo
    if not refs:
        return PushOutcome()
    if is_local(url):
        outcome = push_local(repo, local_path(url), refs, lock_timeout=git.lock_timeout)
        return _tracked(git, name, outcome, outcome)
    if smart_scheme(url):
        outcome = _push_smart(git, name, url, git.values_of(refs), credentials)
        return _tracked(git, name, outcome, outcome)
    callbacks = Callbacks(repo, url, credentials)
    try:
        repo.remotes[name].push([f"{ref}:{ref}" for ref in refs], callbacks=callbacks)
    except ProgregError:
        raise
    except (pygit2.GitError, OSError) as exc:
        raise callbacks.failure("push", exc) from None
    refused = {
        ref: hinted(scrub(message, callbacks.source.secrets()))
        for ref, message in callbacks.statuses.items()
        if message
    }
    accepted = [u for u in callbacks.negotiated if u.ref not in refused]
    if refused:
        raise rejected(callbacks.url, refused, callbacks.said(), accepted)
    outcome = PushOutcome(accepted, callbacks.up_to_date)
    # libgit2 moved the others
    return _tracked(git, name, outcome, PushOutcome([], outcome.up_to_date))


def smart_scheme(url: str) -> bool:
    """True when ``url`` is pushed by :mod:`progreg.git.wire.smartpush` (``git://``, ``http(s)://``)."""
    return url.split("://", 1)[0].lower() in _SMART_SCHEMES if "://" in url else False


def _push_smart(
    git: GitRepository, name: str, url: str, wanted: dict[str, str], credentials: object
) -> PushOutcome:
    """Push the refs of ``wanted`` (``{ref: id}``) over ``git://`` or smart HTTP
    (:mod:`progreg.git.wire.smartpush`), through the proxy the configuration names."""
    source = CredentialSource(url, credentials)
    # dulwich and urllib3 load at the first push over the network: every command imports
    # this module, and they add about a third to what `progreg list` costs to start.
    from progreg.git.wire.smartpush import push_smart  # noqa: PLC0415

    return push_smart(git.repo, url, wanted, redact_url(url), source, configured_proxy(git, name))


def configured_proxy(git: GitRepository, name: str) -> str | None:
    """``remote.<name>.proxy``, else ``http.proxy``, as Git reads them (``None``: neither set)."""
    config = git.repo.config
    for key in (f"remote.{name}.proxy", "http.proxy"):
        try:
            return str(config[key])
        except KeyError:
            continue
    return None


def _tracked(
    git: GitRepository, name: str, outcome: PushOutcome, to_track: PushOutcome
) -> PushOutcome:
    """``outcome`` once the tracking refs of ``to_track`` are moved; a registry too full (or
    read-only) for that does not undo the push: the outcome says so, the next fetch fixes it."""
    try:
        _track(git, name, to_track)
    except (DiskFullError, ReadOnlyRegistryError) as exc:
        return dataclasses.replace(outcome, tracking_failure=str(exc))
    return outcome


def _track(git: GitRepository, name: str, outcome: PushOutcome) -> None:
    """Move remote-tracking refs after a push: to what it moved, and to what was up to date.

    Recording the refs the remote already had, as ``git push`` does, lets the
    next push leave them out (a registry that never pulled would otherwise
    offer every tag on every push). The first push of a registry with 100k
    tags records 100k refs: those that do not exist yet are written into
    ``packed-refs`` in one rewrite.
    """
    remote = git.repo.remotes[name]
    values = {update.ref: update.new for update in outcome.updated}
    for ref, value in git.values_of(outcome.up_to_date).items():
        values.setdefault(ref, value)
    specs = [
        _FetchSpec.of(spec)
        for spec in (remote.get_refspec(index) for index in range(remote.refspec_count))
        if spec.direction == _DIRECTION_FETCH
    ]
    wanted: dict[str, str] = {}
    for ref, value in values.items():
        for spec in specs:
            tracking = spec.destination_of(ref)
            if tracking is not None:
                wanted[tracking] = value
    with write_lock(git.path, git.lock_timeout):
        current = git.values_of(wanted)
        missing = {ref: value for ref, value in wanted.items() if ref not in current}
        entry = git.reflog_entry("update by push")  # what Git logs for tracking refs
        if missing:
            git.create_refs(missing, entry)
        for ref, value in wanted.items():
            if ref in current and current[ref] != value:
                git.set_ref(ref, pygit2.Oid(hex=value), entry)


@dataclass(frozen=True)
class _FetchSpec:
    """A fetch refspec, with its source and destination prefixes when it is a plain ``dir/*``."""

    spec: Refspec
    source: str | None
    destination: str | None

    @classmethod
    def of(cls, spec: Refspec) -> _FetchSpec:
        source, destination = spec.src, spec.dst
        if source.endswith("/*") and destination.endswith("/*") and source.count("*") == 1:
            return cls(spec, source[:-1], destination[:-1])
        return cls(spec, None, None)

    def destination_of(self, ref: str) -> str | None:
        """Where this refspec maps ``ref``, or ``None`` when it does not match it."""
        if self.source is None or self.destination is None:
            return self.spec.transform(ref) if self.spec.src_matches(ref) else None
        if not ref.startswith(self.source):
            return None
        return self.destination + ref[len(self.source) :]


__all__ = [
    "Callbacks",
    "PushOutcome",
    "PushRejectedError",
    "RefUpdate",
    "fetch",
    "push",
    "restore_tips",
]
