"""``ProgramStorage``: the registry's public class, over registry and sharing.

It is :class:`~progreg.registry.store.Registry` (save, load, list, delete,
restore, tags, gc) with the calls that move programs between registries:
bundles (:mod:`progreg.sharing.transfer`), remotes
(:mod:`progreg.sharing.remotes`), and :meth:`ProgramStorage.verify`. Each of
these is a one-line call into its module: the logic lives there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from progreg.core.secrets import SecretsPolicy
from progreg.registry import verify as _verify
from progreg.registry.store import Registry
from progreg.registry.verify import VerifyReport
from progreg.sharing import remotes as _remotes
from progreg.sharing import transfer as _transfer
from progreg.sharing.merging import Resolution
from progreg.sharing.remotes import PullResult, PushResult, RemoteInfo, SyncResult
from progreg.sharing.transfer import ExportResult, ImportResult


class ProgramStorage(Registry):
    """A registry of optimized programs in the bare Git repository at ``storage_path``.

    ``storage_path`` defaults to ``$PROGREG_PATH`` (or its other name
    ``$PROGREG_STORAGE_PATH``), else ``./dspy_storage``; the
    repository is created on first use. ``author``/``committer`` are
    ``"Name <email>"`` strings (default: ``GIT_AUTHOR_*``/``GIT_COMMITTER_*``,
    then ``user.name``/``user.email`` from Git config, then ``progreg``).
    Writers wait up to ``lock_timeout`` seconds for each other. With
    ``durable`` (the default: see :func:`~progreg.registry.config.resolve_durable` for
    ``PROGREG_DURABLE`` and the ``progreg.durable`` Git config), every write is
    on the disk (``fsync``) before the call returns, so it survives power loss.
    """

    # -- sharing -----------------------------------------------------------------

    def export_programs(
        self,
        program_ids: Iterable[str],
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> ExportResult:
        """Write a Git bundle at ``path`` holding exactly these programs (see transfer).

        Their tags on the exported versions come along; tags on other versions
        are listed in ``tags_left_out``. ``progress(done, total)``, if given,
        is called as the bundle is written.
        """

        return _transfer.export_programs(self, program_ids, path, progress)

    def export_registry(
        self,
        path: str | os.PathLike[str],
        since: str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> ExportResult:
        """Bundle the whole registry (main, tags, checkpoints), or only what is new since ``since``.

        ``since`` is a previous export's bundle file or a commit; the new bundle
        then lists what it builds on as prerequisites. ``progress(done, total)``,
        if given, is called as the bundle is written.
        """

        return _transfer.export_registry(self, path, since, progress)

    def import_programs(
        self,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
        secrets: SecretsPolicy = "refuse",
    ) -> ImportResult:
        """Import a Git bundle, a reference-format JSON export or a ``dspy_storage/`` folder.

        ``progress(done, total)``, if given, is called as a bundle's objects are checked.
        ``secrets="redact"`` redacts credentials in a reference export's programs
        instead of refusing them (see :mod:`progreg.core.secrets`).
        """

        return _transfer.import_programs(self, path, progress, secrets)

    def add_remote(self, name: str, url: str) -> RemoteInfo:
        """Add a Git remote (credentials are never stored: see remotes)."""

        return _remotes.add_remote(self, name, url)

    def set_remote_url(self, name: str, url: str) -> RemoteInfo:
        """Point remote ``name`` at ``url`` (checked as :meth:`add_remote` checks it)."""

        return _remotes.set_remote_url(self, name, url)

    def remove_remote(self, name: str) -> RemoteInfo:
        """Remove remote ``name`` and its tracking refs; return what it was."""

        return _remotes.remove_remote(self, name)

    def remotes(self) -> list[RemoteInfo]:
        """The configured remotes."""

        return _remotes.list_remotes(self)

    def push(self, remote: str = "origin", *, credentials: object = None) -> PushResult:
        """Push ``main``, tags and checkpoints; a refusal raises :class:`PushRejectedError`."""

        return _remotes.push(self, remote, credentials)

    def pull(
        self,
        remote: str = "origin",
        *,
        credentials: object = None,
        resolve: Resolution | None = None,
    ) -> PullResult:
        """Fetch ``remote`` and merge its programs, tags and checkpoints into this registry.

        A program changed differently on both sides raises
        :class:`~progreg.ConflictError` naming the fields, unless ``resolve``
        says which side's version to keep (``"ours"`` or ``"theirs"``).
        """

        return _remotes.pull(self, remote, credentials, resolve=resolve)

    def sync(
        self,
        remote: str = "origin",
        *,
        credentials: object = None,
        resolve: Resolution | None = None,
    ) -> SyncResult:
        """Pull (settling conflicts by ``resolve``, as :meth:`pull`), then push."""

        return _remotes.sync(self, remote, credentials, resolve=resolve)

    def verify(self) -> VerifyReport:
        """Check every program and object; report which commits are signed and by whom."""

        return _verify.verify(self)


__all__ = ["ProgramStorage"]
