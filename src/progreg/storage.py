"""``ProgramStorage``: the registry's public class, a facade over registry and sharing.

Each call is one line into the layer that does the work: saving, loading,
listing, deleting and restoring into :class:`~progreg.registry.store.Registry`;
bundles into :mod:`progreg.sharing.transfer`; remotes into
:mod:`progreg.sharing.remotes`; :meth:`ProgramStorage.verify` into
:mod:`progreg.registry.verify`. The registry's helpers for the layers above
stay on the ``Registry`` (:attr:`ProgramStorage.registry`).

Sharing and verification are imported by the calls that use them, not with
this module: every command imports it, and a ``progreg list`` would
otherwise load bundles, packs, pushes, pulls and fsck for nothing (a third
of its start-up).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from progreg.core.document import DEFAULT_MAX_PROGRAM_BYTES
from progreg.core.labels import LabelMove
from progreg.core.models import (
    GcReport,
    Lineage,
    LogEntry,
    ProgramHistory,
    ProgramSummary,
    SavedProgram,
)
from progreg.core.secrets import SecretsPolicy
from progreg.registry import labels as _labels
from progreg.registry.store import BatchItem, Registry

if TYPE_CHECKING:
    from progreg.registry.runs import RunPoint, RunSummary
    from progreg.registry.verify import VerifyReport
    from progreg.sharing.merging import Resolution
    from progreg.sharing.remotes import PullResult, PushResult, RemoteInfo, SyncResult
    from progreg.sharing.transfer import ExportResult, ImportResult


class ProgramStorage:
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

    ``rev`` reads the registry as it was (or would be) at a revision: a
    branch under review, a tag, a commit, ``main~3``; such a registry, and one
    opened with ``read_only`` (which may also be a clone: its checked-out
    commit is read), refuses every write with
    :class:`~progreg.ReadOnlyRegistryError`.
    """

    def __init__(
        self,
        storage_path: str | os.PathLike[str] | None = None,
        *,
        author: str | None = None,
        committer: str | None = None,
        lock_timeout: float = 30.0,
        max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
        durable: bool | None = None,
        rev: str | None = None,
        read_only: bool = False,
    ) -> None:
        self._registry = Registry(
            storage_path,
            author=author,
            committer=committer,
            lock_timeout=lock_timeout,
            max_program_bytes=max_program_bytes,
            durable=durable,
            rev=rev,
            read_only=read_only,
        )

    def __repr__(self) -> str:
        return f"ProgramStorage({str(self.path)!r})"

    @property
    def path(self) -> Path:
        """The registry's directory (the bare Git repository)."""
        return self._registry.path

    @property
    def read_only(self) -> bool:
        """True when this registry was opened to read only (``rev=``, ``read_only=``, a clone)."""
        return self._registry.read_only

    @property
    def registry(self) -> Registry:
        """The registry layer underneath (:mod:`progreg.registry`): not a stable API.

        The manager and tests reach the registry's own operations through
        it; the command line does not (it uses the public calls only).
        """
        return self._registry

    # -- programs ----------------------------------------------------------------

    def register_type(
        self,
        cls: type,
        *,
        name: str | None = None,
        factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """Let :meth:`load_program` rebuild programs saved as ``cls`` into new objects.

        ``factory(state)`` builds the object; by default ``model_validate``
        (pydantic), ``from_dict`` or ``cls()`` followed by ``load_state``.
        """
        self._registry.register_type(cls, name=name, factory=factory)

    def save_program(
        self,
        program: object,
        optimization_result: object = None,
        metadata: Mapping[str, Any] | None = None,
        program_id: str | None = None,
        *,
        tags: Iterable[str] | None = (),
        secrets: SecretsPolicy = "refuse",
        derived_from: str | SavedProgram | None = None,
        force: bool = False,
    ) -> SavedProgram:
        """Save ``program`` with its optimization result as one commit; return the saved record.

        A new id is generated unless ``program_id`` is given; saving under an
        existing id records a new version of that program (the old one stays
        in history). ``tags`` are created as tag refs together with the commit.
        A program holding a credential is refused with a ``SecretDetectedError``
        error unless ``secrets="redact"`` is given: each credential is then
        replaced by ``[REDACTED]`` in what is saved.

        ``program`` may be a ``SavedProgram`` (a version loaded, or a
        checkpoint restored): it is saved as a new version of its own program,
        with its optimization result and metadata unless others are given.

        Lineage: ``derived_from`` names the program this one came from, as a
        program id or a ``SavedProgram`` of it. Without it, a program loaded from
        another id or an optimizer's copy of one, or a ``SavedProgram`` of another
        id, is derived from that version; a new version of a program keeps its
        ancestor. Content identity: when ``program_id`` is live with the same
        program, result, metadata and ancestor, no commit is made and the live
        version is returned with ``unchanged=True`` set, and ``tags`` are still
        put on it; ``force=True`` commits anyway.
        """
        return self._registry.save_program(
            program,
            optimization_result,
            metadata,
            program_id,
            tags=tags,
            secrets=secrets,
            derived_from=derived_from,
            force=force,
        )

    def save_programs(
        self,
        items: Iterable[BatchItem],
        *,
        tags: Iterable[str] | None = (),
        secrets: SecretsPolicy = "refuse",
        force: bool = False,
    ) -> list[SavedProgram]:
        """Save many programs as ONE commit; return their records, in the order given.

        Each item is a ``(program, optimization_result, metadata)`` tuple (a
        fourth element is a ``program_id``) or a mapping with those keys
        (``program_id`` optional). Every document is built and checked before
        anything is written: an invalid item, or an id given twice, raises
        and leaves the registry unchanged. ``tags`` are put on every program,
        created together with the commit. No items: no commit, ``[]``.
        ``secrets`` is as for :meth:`save_program`; a mapping may name its
        ``derived_from``. Items whose content is already live are not written
        and come back with ``unchanged=True``, unless ``force=True``; when none
        is written, no commit is made.
        """
        return self._registry.save_programs(items, tags=tags, secrets=secrets, force=force)

    def load_program(self, program_id: str, *, into: object = None) -> SavedProgram | None:
        """The program with ``program_id``, or ``None`` when the registry does not hold it.

        ``program_id`` may be a label reference, ``Signature@label``: the program
        the label names on ``main`` (:class:`~progreg.LabelNotFoundError` when the
        label is not set).

        ``into`` may be an object with ``load_state`` (a fresh DSPy module) or
        a class; the state is loaded into it. Without it, a registered type is
        rebuilt, else ``program`` is the state dict. A program file that exists
        but cannot be decoded raises :class:`~progreg.CorruptProgramError`.
        """
        return self._registry.load_program(program_id, into=into)

    def list_programs(self) -> list[ProgramSummary]:
        """Every program the registry holds, oldest save first."""
        return self._registry.list_programs()

    def program_ids(self) -> list[str]:
        """The ids of the programs on ``main``, in the order the log recorded them.

        No program file is read, so a damaged program is listed too (and
        :meth:`delete_program` removes it).
        """
        return self._registry.program_ids()

    def get_history(self) -> ProgramHistory:
        """The registry's programs in the order the log recorded them, with a summary.

        The order is that of the commits on ``main`` (the last commit that
        wrote each program), which is exact even for saves in the same
        microsecond or from machines whose clocks disagree.
        """
        return self._registry.get_history()

    def log(self, limit: int | None = None) -> list[LogEntry]:
        """The commits of ``main``, newest first: what each did, to which program, by whom.

        Merged histories are included. ``limit`` (a whole number >= 0) keeps
        the newest ``limit`` commits; ``None`` returns them all. What
        ``progreg log --json`` prints.
        """
        return self._registry.log(limit)

    def versions(self, program_id: str, limit: int | None = None) -> list[SavedProgram]:
        """The versions of a program on ``main``, newest first (up to ``limit``, if given).

        A version is a commit of the first-parent log of ``main`` that wrote
        the program's file (a save or a restore); ``commit`` says which. For a
        live program the first is the one :meth:`load_program` returns; a
        removed program still has its versions. ``[]`` when the registry
        never held the program. ``program`` is rebuilt as by
        :meth:`load_program` without ``into``. A version whose file cannot be
        decoded raises :class:`~progreg.CorruptProgramError` (naming its commit).
        """
        return self._registry.versions(program_id, limit)

    def lineage(self, program_id: str) -> Lineage:
        """Where a program came from and what was derived from it: ``progreg lineage``.

        ``ancestors`` is the chain of ``derived_from`` links, nearest first;
        ``descendants`` the programs derived from it, as a tree. Built from the
        log, so deleted programs are shown too, with ``live=False``; raises
        :class:`~progreg.ProgramNotFoundError` if the registry never held it.
        """
        from progreg.registry.lineage import lineage  # noqa: PLC0415 (a command loads what it uses)

        return lineage(self._registry, program_id)

    def tags_of(self, program_id: str) -> list[str]:
        """The tags on a program (live or removed), sorted."""
        return self._registry.tags_of(program_id)

    def all_tags(self) -> dict[str, list[str]]:
        """Every tagged program's tags: ``{program_id: [tag, ...]}``, both sorted."""
        return self._registry.all_tags()

    # -- labels ------------------------------------------------------------------

    def set_label(
        self, signature: str, label: str, program_id: str, *, reason: str | None = None
    ) -> LabelMove:
        """Point ``signature``'s ``label`` at ``program_id``: one commit on ``main``.

        The program must be on ``main`` and solve ``signature``
        (``metadata.signature_class``). Naming the program it already names
        makes no commit: the move returned is marked ``unchanged``. ``reason``
        (one line, no credentials) is recorded in the commit's trailers.
        """
        return _labels.set_label(self._registry, signature, label, program_id, reason=reason)

    def remove_label(self, signature: str, label: str, *, reason: str | None = None) -> LabelMove:
        """Remove ``signature``'s ``label`` (one commit); LabelNotFoundError if it is not set."""
        return _labels.remove_label(self._registry, signature, label, reason=reason)

    def labels(self, signature: str | None = None) -> dict[str, dict[str, str]]:
        """The labels on ``main``: ``{signature: {label: program id}}``, sorted."""
        return _labels.labels(self._registry, signature)

    def label_history(self, signature: str, label: str) -> list[LabelMove]:
        """Every move of ``signature``'s ``label`` in ``main``'s history, newest first."""
        return _labels.label_history(self._registry, signature, label)

    def resolve_label(self, signature: str, label: str) -> str | None:
        """The program id ``signature``'s ``label`` names on ``main``, or ``None``."""
        return _labels.resolve(self._registry, signature, label)

    def checkpoint_names(self) -> list[str]:
        """The names of the registry's checkpoint runs, sorted (see ``StorageManager``)."""
        return self._registry.checkpoint_names()

    def runs(self) -> list[RunSummary]:
        """The optimization runs recorded here (see ``progreg.track_run``), by name.

        Each says its status (``running``, ``finished``, ``failed``, or
        ``interrupted``: a run whose process died), how many candidates were
        evaluated, the best score and the program on ``main`` holding the best.
        """
        from progreg.registry import runs as _runs  # noqa: PLC0415 (see the module)

        return _runs.list_runs(self._registry)

    def run(self, name: str) -> RunSummary:
        """How run ``name`` stands; :class:`~progreg.RunNotFoundError` if there is none."""
        from progreg.registry import runs as _runs  # noqa: PLC0415 (see the module)

        return _runs.run_summary(self._registry, name)

    def run_trajectory(self, name: str) -> list[RunPoint]:
        """Run ``name``'s evaluated candidates in order: score, best so far, checkpoint."""
        from progreg.registry import runs as _runs  # noqa: PLC0415 (see the module)

        return _runs.run_trajectory(self._registry, name)

    def delete_program(self, program_id: str) -> bool:
        """Remove a program from ``main`` (one commit); ``False`` if it was not there.

        A program a label names is not removed: :class:`~progreg.ConflictError`
        says which label to move or remove first.

        The program stays in history: :meth:`restore_program` brings it back.
        """
        return self._registry.delete_program(program_id)

    def restore_program(self, program_id: str) -> SavedProgram:
        """Bring back the last version of a deleted program, as a new commit.

        Returns the program (unchanged, with no commit, if it is already
        present); raises :class:`~progreg.ProgramNotFoundError` if the registry
        never held it.
        """
        return self._registry.restore_program(program_id)

    def gc(self, *, pack_limit: int | None = None) -> GcReport:
        """Pack loose objects and merge the packs (``progreg gc``); see docs/format.md.

        When more than ``pack_limit`` packs are left (default 1; 0 never
        merges) they are merged into one. Returns what the run did.
        """
        return self._registry.gc(pack_limit=pack_limit)

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
        from progreg.sharing import transfer as _transfer  # noqa: PLC0415 (see the module)

        return _transfer.export_programs(self._registry, program_ids, path, progress)

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
        from progreg.sharing import transfer as _transfer  # noqa: PLC0415 (see the module)

        return _transfer.export_registry(self._registry, path, since, progress)

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
        from progreg.sharing import transfer as _transfer  # noqa: PLC0415 (see the module)

        return _transfer.import_programs(self._registry, path, progress, secrets)

    def add_remote(self, name: str, url: str) -> RemoteInfo:
        """Add a Git remote (credentials are never stored: see remotes)."""
        from progreg.sharing import remotes as _remotes  # noqa: PLC0415 (see the module)

        return _remotes.add_remote(self._registry, name, url)

    def set_remote_url(self, name: str, url: str) -> RemoteInfo:
        """Point remote ``name`` at ``url`` (checked as :meth:`add_remote` checks it)."""
        from progreg.sharing import remotes as _remotes  # noqa: PLC0415 (see the module)

        return _remotes.set_remote_url(self._registry, name, url)

    def remove_remote(self, name: str) -> RemoteInfo:
        """Remove remote ``name`` and its tracking refs; return what it was."""
        from progreg.sharing import remotes as _remotes  # noqa: PLC0415 (see the module)

        return _remotes.remove_remote(self._registry, name)

    def remotes(self) -> list[RemoteInfo]:
        """The configured remotes."""
        from progreg.sharing import remotes as _remotes  # noqa: PLC0415 (see the module)

        return _remotes.list_remotes(self._registry)

    def push(self, remote: str = "origin", *, credentials: object = None) -> PushResult:
        """Push ``main``, tags and checkpoints; a refusal raises :class:`PushRejectedError`."""
        from progreg.sharing import remotes as _remotes  # noqa: PLC0415 (see the module)

        return _remotes.push(self._registry, remote, credentials)

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
        from progreg.sharing import remotes as _remotes  # noqa: PLC0415 (see the module)

        return _remotes.pull(self._registry, remote, credentials, resolve=resolve)

    def sync(
        self,
        remote: str = "origin",
        *,
        credentials: object = None,
        resolve: Resolution | None = None,
    ) -> SyncResult:
        """Pull (settling conflicts by ``resolve``, as :meth:`pull`), then push."""
        from progreg.sharing import remotes as _remotes  # noqa: PLC0415 (see the module)

        return _remotes.sync(self._registry, remote, credentials, resolve=resolve)

    def verify(self) -> VerifyReport:
        """Check every program and object; report which commits are signed and by whom."""
        from progreg.registry import verify as _verify  # noqa: PLC0415 (see the module)

        return _verify.verify(self._registry)


__all__ = ["ProgramStorage"]
