"""Registry: optimized programs kept in a bare Git repository.

Every save is one commit on ``refs/heads/main`` that writes one canonical JSON
file, ``programs/ab/cd/abcd....json``; every delete is a commit that removes
it. Nothing is ever lost: history keeps every version, and
:meth:`ProgramStorage.restore_program` brings a deleted program back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pygit2

from progreg import events
from progreg._version import __version__
from progreg.core import canonical
from progreg.core.document import (
    DEFAULT_MAX_PROGRAM_BYTES,
    FORMAT_VERSION,
    ProgramDocument,
    decode_document,
    now,
)
from progreg.core.dspy import DSPyProgram, is_dspy_module, remember_signature_class
from progreg.core.ids import check_program_id, new_program_id, program_id_of_path
from progreg.core.ids import program_path as path_of
from progreg.core.labels import LABEL_SEPARATOR, parse_label_reference
from progreg.core.layout import ATTRIBUTES, ATTRIBUTES_TEXT, CHECKPOINTS_PREFIX, MAIN, MARKER
from progreg.core.lineage import DERIVED_FROM, Origin, origin_of, stamp_origin
from progreg.core.models import (
    GcReport,
    HistorySummary,
    LogEntry,
    ProgramHistory,
    ProgramSummary,
    SavedProgram,
)
from progreg.core.programs import ProgramTypes, export_state, load_into, signature_name
from progreg.core.results import normalize_result
from progreg.core.secrets import SecretsPolicy, check_policy, screen_document
from progreg.errors import (
    ConflictError,
    InvalidInputError,
    LabelNotFoundError,
    NotARegistryError,
    ProgramNotFoundError,
    ProgramTooLargeError,
    ProgregError,
    RegistryError,
    UnsupportedFormatError,
    UnsupportedProgramError,
)
from progreg.git import CommitPlan, GitRepository, Identity, Tip, resolve_identity
from progreg.git.failures import read_failure, write_failure
from progreg.git.objects.trees import Edit, blob_at
from progreg.git.permissions import adjust_ref_paths
from progreg.registry.config import resolve_durable
from progreg.registry.history import LogEntry as IndexedCommit
from progreg.registry.history import LogIndex, ProgramRecord
from progreg.registry.labelfiles import dangling_message, labels_naming, resolve_label
from progreg.registry.locations import registry_path_from_environment
from progreg.registry.log import check_limit, log_entries, program_versions
from progreg.registry.messages import batch_message, delete_message, save_message
from progreg.registry.tags import (
    all_tags,
    check_tags,
    create_tags,
    created_by_program,
    tag_plans,
)

T = TypeVar("T")

#: One program of :meth:`ProgramStorage.save_programs`: a
#: ``(program, optimization_result, metadata[, program_id])`` tuple or a mapping.
BatchItem = tuple[Any, ...] | Mapping[str, Any]
_ITEM_KEYS = frozenset({"program", "optimization_result", "metadata", "program_id", "derived_from"})


class Registry:
    """The operations on one registry: the bare Git repository at ``storage_path``.

    :class:`~progreg.ProgramStorage` is this class with the calls that move
    programs between registries, and documents the arguments; the layers
    below it (sharing, checkpoints, validation) take a ``Registry``.
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
        path = storage_path if storage_path is not None else registry_path_from_environment()
        read_only = read_only or rev is not None
        self._git = GitRepository(path, lock_timeout=lock_timeout, read_only=read_only)
        self._git.durable = resolve_durable(durable, self._git.config)
        if rev is not None:
            self._git.pin(MAIN, rev)
        elif read_only and not self._git.repo.is_bare:
            self._git.pin(MAIN, "HEAD")  # a clone: what is checked out
        self.max_program_bytes = max_program_bytes
        self.types = ProgramTypes()
        self._author_arg = author
        self._committer_arg = committer
        self._identities: tuple[Identity, Identity] | None = None
        self._log = LogIndex(self._git, MAIN)
        self._check_registry()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # -- registry ----------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The registry's directory (the bare Git repository)."""
        return self._git.path

    @property
    def read_only(self) -> bool:
        """True for a registry opened to read only: at a revision, or a clone."""
        return self._git.read_only

    @property
    def git(self) -> GitRepository:
        """The underlying Git repository, for layers built on this one."""
        return self._git

    def _check_registry(self) -> None:
        repo = self._git.repo
        main = self.reread("the tip of main", lambda: self._git.tip(MAIN))
        ref = MAIN if main is not None else None
        if ref is None:
            ref = next((name for name in sorted(repo.references) if name.startswith("refs/")), None)
        if ref is None:
            # An empty repository made elsewhere (`git init --bare`) may have HEAD
            # on another unborn branch; a registry's HEAD names main, so that
            # `git clone` checks it out. Nothing can be lost: there are no refs.
            head = repo.references.get("HEAD")
            if head is not None and head.target != MAIN:
                with contextlib.suppress(pygit2.GitError, OSError):  # read-only: leave it
                    repo.set_head(MAIN)
                    adjust_ref_paths(self.path, "HEAD", self._git.settings.shared)
            return
        try:
            target = self._git.tip_id(ref)
            if target is None:
                raise KeyError(ref)
            commit = repo[target].peel(pygit2.Commit)
        except (pygit2.GitError, ValueError, KeyError) as exc:
            raise NotARegistryError(f"{self.path}: {ref} does not lead to a commit") from exc
        with self.reading(f"the tree of {ref}"):
            tree = commit.tree
            check_marker(tree, f"{self.path} is a Git repository but", ref, NotARegistryError)

    def register_type(
        self,
        cls: type,
        *,
        name: str | None = None,
        factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """The operation behind :meth:`progreg.ProgramStorage.register_type`."""
        self.types.register(cls, name=name, factory=factory)

    # -- saving ------------------------------------------------------------------

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
        """The operation behind :meth:`progreg.ProgramStorage.save_program`."""
        given = program
        if isinstance(program, SavedProgram):
            program, optimization_result, metadata, program_id = _resave(
                program, optimization_result, metadata, program_id
            )
        chosen_id = check_program_id(program_id) if program_id is not None else new_program_id()
        tag_names = check_tags(tags)
        _check_force(force)
        with events.operation("progreg.storage.save", program_id=chosen_id) as timer:
            origin = self.ancestor_of(given, derived_from, chosen_id, new=program_id is None)
            doc = self.document_for(
                program,
                optimization_result,
                metadata,
                chosen_id,
                secrets=secrets,
                where=f"program {chosen_id}" if program_id is not None else "the program to save",
                derived_from=origin,
            )
            data = doc.encode()
            self.check_size(len(data), chosen_id)
            commit = self._commit_document(
                doc, data, must_be_new=program_id is None, tags=tag_names, force=force
            )
        if commit is None:
            unchanged = self._unchanged(chosen_id, program, tag_names)
            events.emit(
                "progreg.storage.save_complete",
                program_id=chosen_id,
                commit=unchanged.commit,
                unchanged=True,
                size_bytes=len(data),
                duration_ms=timer.ms,
            )
            return unchanged
        events.emit(
            "progreg.storage.save_complete",
            program_id=chosen_id,
            commit=commit,
            size_bytes=len(data),
            duration_ms=timer.ms,
        )
        return self.saved_program(doc, program, commit)

    def save_programs(
        self,
        items: Iterable[BatchItem],
        *,
        tags: Iterable[str] | None = (),
        secrets: SecretsPolicy = "refuse",
        force: bool = False,
    ) -> list[SavedProgram]:
        """The operation behind :meth:`progreg.ProgramStorage.save_programs`."""
        tag_names = check_tags(tags)
        _check_force(force)
        given = list(items)
        if not given:
            return []
        with events.operation("progreg.storage.save_batch", count=len(given)) as timer:
            requested = [_batch_item(item, n) for n, item in enumerate(given)]
            ids = [
                check_program_id(pid) if pid is not None else new_program_id()
                for *_, pid in requested
            ]
            seen: set[str] = set()
            for program_id in ids:
                if program_id in seen:
                    raise InvalidInputError(
                        f"program id {program_id} appears more than once in one batch:"
                        " save each program once (or in separate calls)"
                    )
                seen.add(program_id)
            docs: list[ProgramDocument] = []
            encoded: list[bytes] = []
            for (program, result, metadata, given_id), program_id, item in zip(
                requested, ids, given, strict=True
            ):
                explicit = item.get("derived_from") if isinstance(item, Mapping) else None
                origin = self.ancestor_of(program, explicit, program_id, new=given_id is None)
                doc = self.document_for(
                    program, result, metadata, program_id, secrets=secrets, derived_from=origin
                )
                data = doc.encode()
                self.check_size(len(data), program_id)
                docs.append(doc)
                encoded.append(data)
            generated = [i for i, (*_, pid) in zip(ids, requested, strict=True) if pid is None]
            commit, unchanged = self._commit_batch(docs, encoded, generated, tag_names, force)
        events.emit(
            "progreg.storage.save_batch_complete",
            count=len(docs) - len(unchanged),
            unchanged=len(unchanged),
            commit=commit,
            size_bytes=sum(
                len(data)
                for doc, data in zip(docs, encoded, strict=True)
                if doc.program_id not in unchanged
            ),
            duration_ms=timer.ms,
        )
        saved: list[SavedProgram] = []
        for doc, item in zip(docs, requested, strict=True):
            if doc.program_id in unchanged:
                saved.append(self._unchanged(doc.program_id, item[0], tag_names))
            else:
                assert commit is not None
                saved.append(self.saved_program(doc, item[0], commit))
        return saved

    def _commit_batch(
        self,
        docs: list[ProgramDocument],
        encoded: list[bytes],
        generated: list[str],
        tags: list[str],
        force: bool,
    ) -> tuple[str | None, set[str]]:
        """Commit the documents that change something; ``(commit or None, ids left unchanged)``."""
        author, committer = self.identity()  # before any write: a bad identity changes nothing
        fresh = set(generated)

        def plan(tip: Tip | None) -> tuple[CommitPlan | None, set[str]]:
            if tip is not None:
                taken = [p for p in map(path_of, generated) if self._git.has_path(tip, p)]
                if taken:
                    raise ConflictError(
                        f"the generated program id {program_id_of_path(taken[0])} is already"
                        " taken; save again"
                    )
            unchanged = (
                set()
                if force
                else {
                    doc.program_id
                    for doc in docs
                    if doc.program_id not in fresh and self._same_as_live(tip, doc)
                }
            )
            pairs = [
                (doc, data)
                for doc, data in zip(docs, encoded, strict=True)
                if doc.program_id not in unchanged
            ]
            if not pairs:
                return None, unchanged
            written = [doc for doc, _ in pairs]
            edits: dict[str, Edit] = {path_of(doc.program_id): data for doc, data in pairs}
            tag_plan = [p for doc in written for p in tag_plans(doc.program_id, tags, committer)]
            when = max(doc.saved_at for doc in written)
            commit_plan = CommitPlan(
                self.with_marker(tip, edits),
                batch_message(written),
                author,
                committer,
                when,
                tags=tag_plan,
            )
            return commit_plan, unchanged

        commit, unchanged = self.write(
            lambda: self._git.update_ref_returning(MAIN, plan, _tags_added)
        )
        if commit is None:
            return None, unchanged
        self._maintain()
        return str(commit), unchanged

    def _same_as_live(self, tip: Tip | None, doc: ProgramDocument) -> bool:
        """True when ``doc`` holds what the live version of its program at ``tip`` holds.

        One tree lookup and one decode: the two documents' canonical bytes are
        compared without ``saved_at`` and progreg's provenance
        (:meth:`ProgramDocument.content_key`). A damaged live file is never the same.
        """
        if tip is None:
            return False
        path = path_of(doc.program_id)
        live = self._git.blob(tip.tree, path)
        if live is None:
            return False
        try:
            live_doc = decode_document(
                live.data, self._where(doc.program_id, tip.id), doc.program_id
            )
            return live_doc.content_key() == doc.content_key()
        except ProgregError:
            return False

    def _unchanged(self, program_id: str, program: object, tags: list[str]) -> SavedProgram:
        """The live version a no-op save returns (``unchanged``), after putting ``tags`` on it."""
        found = self.reread(f"program {program_id}", lambda: self._locate(program_id))
        if found is None:  # deleted since the save compared: nothing to return but an error
            raise ConflictError(f"program {program_id} was deleted while it was saved; save again")
        data, where, commit = found
        doc = decode_document(data, where, program_id)
        if tags:
            _, committer = self.identity()
            created = self.write(
                lambda: create_tags(self._git, program_id, commit, tags, committer)
            )
            if created:
                events.emit("progreg.tag.add", program_id=program_id, tags=created)
        return self.saved_program(doc, program, commit, unchanged=True)

    def ancestor_of(
        self, program: object, derived_from: object, program_id: str, *, new: bool = False
    ) -> Origin | None:
        """The version a program saved as ``program_id`` derives from, or ``None``.

        ``derived_from`` (a program id or a :class:`SavedProgram`) wins and must
        name a program on ``main`` or in its history. Otherwise a
        :class:`SavedProgram` of another id, or an object stamped by a load from
        another id (:func:`~progreg.core.lineage.origin_of`), is the ancestor when
        this registry knows it; else a new version keeps the ancestor of the
        live one (none for a ``new`` id). Deriving a program from itself is refused.
        """
        if derived_from is not None:
            if isinstance(derived_from, SavedProgram):
                wanted = Origin(check_program_id(derived_from.program_id), derived_from.commit)
            elif isinstance(derived_from, str):
                wanted = Origin(check_program_id(derived_from), "")
            else:
                raise InvalidInputError(
                    "derived_from must be a program id or a SavedProgram, not a"
                    f" {type(derived_from).__name__}"
                )
            if wanted.program_id == program_id:
                raise InvalidInputError(
                    f"program {program_id} cannot be derived from itself: name another program"
                    " in derived_from (a new version of the same program needs none)"
                )
            origin = self._known_origin(wanted)
            if origin is None:
                raise ProgramNotFoundError(
                    f"derived_from names program {wanted.program_id}, which is neither on main"
                    " nor in its history: give the id of a program this registry holds or held"
                )
            return origin
        if isinstance(program, SavedProgram):
            stamped: Origin | None = Origin(program.program_id, program.commit)
        else:
            stamped = origin_of(program)
        if stamped is not None and stamped.program_id != program_id:
            return self._known_origin(stamped)
        return None if new else self._live_ancestor(program_id)

    def _live_ancestor(self, program_id: str) -> Origin | None:
        """The ancestor the live version of ``program_id`` names: a new version keeps it.

        One tree lookup at the tip of ``main`` (a save does not consult the log index).
        """
        path = path_of(program_id)

        def read() -> Origin | None:
            tip = self._git.tip(MAIN)
            live = None if tip is None else self._git.blob(tip.tree, path)
            if live is None or tip is None:
                return None
            where = self._where(program_id, tip.id)
            return decode_document(live.data, where, program_id).derived_from

        try:
            return self.reread(f"program {program_id}", read)
        except ProgregError:
            return None  # a damaged live version: the new one fixes it, with no ancestor

    def _known_origin(self, wanted: Origin) -> Origin | None:
        """``wanted`` if its commit holds its program here; else the program's latest version.

        The latest version is the live one, or the last in the history of
        ``main``; ``None`` when the registry never held the program.
        """
        path = path_of(wanted.program_id)

        def find() -> Origin | None:
            if wanted.commit:
                found = self._git.repo.get(wanted.commit) if len(wanted.commit) == 40 else None
                if isinstance(found, pygit2.Commit) and self._git.has_path(found, path):
                    return wanted
            located = self._locate(wanted.program_id)
            if located is not None:
                return Origin(wanted.program_id, located[2])
            for commit in self._git.walk(MAIN):
                if path in commit.tree:
                    return Origin(wanted.program_id, str(commit.id))
            return None

        return self.reread(f"the history of program {wanted.program_id}", find)

    def document_for(
        self,
        program: object,
        optimization_result: object,
        metadata: Mapping[str, Any] | None,
        program_id: str,
        *,
        secrets: SecretsPolicy = "refuse",
        where: str | None = None,
        derived_from: Origin | None = None,
    ) -> ProgramDocument:
        """The validated document that saving ``program`` would write (nothing is written).

        It is encoded once here (which checks it is JSON) and screened for
        credentials: refused, or redacted with ``secrets="redact"`` (see
        :mod:`progreg.core.secrets`). ``where`` names the program in that refusal
        (default: ``program <id>``). ``derived_from`` names the version the
        program came from (the document's ``derived_from`` key).
        """
        policy = check_policy(secrets)
        if policy == "redact" and is_dspy_module(program):
            program = DSPyProgram(program, redact=True)
        try:
            class_name, state = export_state(program)
        except ProgregError:
            raise
        except Exception as exc:
            raise UnsupportedProgramError(
                f"exporting the state of a {type(program).__name__} failed: {exc}"
            ) from exc
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInputError(f"metadata must be a dict, got {type(metadata).__name__}")
        meta = dict(metadata or {})
        if meta.get("signature_class") is None:
            signature = signature_name(program)
            if signature is not None:
                meta["signature_class"] = signature
        elif not isinstance(meta["signature_class"], str):
            raise InvalidInputError("metadata.signature_class must be a string")
        meta.update(
            progreg_version=__version__,
            python_version=platform.python_version(),
            saved_with="progreg",
        )
        doc = ProgramDocument(
            program_id=program_id,
            saved_at=now(),
            class_name=class_name,
            state=state,
            optimization_result=normalize_result(optimization_result),
            metadata=meta,
            extra={} if derived_from is None else {DERIVED_FROM: derived_from.to_json()},
        )
        return screen_document(doc, policy, where)

    def check_size(self, size: int, program_id: str) -> None:
        """Raise :class:`ProgramTooLargeError` if ``size`` bytes exceed the registry's limit."""
        if size > self.max_program_bytes:
            raise ProgramTooLargeError(
                f"program {program_id} encodes to {size} bytes, over the registry's limit of"
                f" {self.max_program_bytes} bytes (max_program_bytes)"
            )

    def _commit_document(
        self,
        doc: ProgramDocument,
        data: bytes,
        *,
        must_be_new: bool,
        tags: list[str],
        force: bool = False,
    ) -> str | None:
        """Commit ``doc``; ``None`` (no commit) when it holds what its live version holds."""
        path = path_of(doc.program_id)
        author, committer = self.identity()  # before any write: a bad identity changes nothing
        message = save_message(doc)

        def plan(tip: Tip | None) -> CommitPlan | None:
            if must_be_new and tip is not None and self._git.has_path(tip, path):
                raise ConflictError(
                    f"the generated program id {doc.program_id} is already taken; save again"
                )
            if not must_be_new and not force and self._same_as_live(tip, doc):
                return None
            return CommitPlan(
                self.with_marker(tip, {path: data}),
                message,
                author,
                committer,
                doc.saved_at,
                tags=tag_plans(doc.program_id, tags, committer),
            )

        commit = self.write(lambda: self._git.update_ref(MAIN, plan, _tags_added))
        if commit is None:
            return None
        self._maintain()
        return str(commit)

    def with_marker(
        self, tip: Tip | None, edits: Mapping[str, Edit], *, main: bool = True
    ) -> dict[str, Edit]:
        """``edits`` plus the registry marker file when ``tip`` does not have it yet, and,
        on ``main``, the ``.gitattributes`` that gives program files progreg's merge and
        diff drivers (a changed one is left as it is)."""
        edits = dict(edits)
        if tip is None or not self._git.has_path(tip, MARKER):
            edits[MARKER] = canonical.encode({"format_version": FORMAT_VERSION}, MARKER)
        if (
            main
            and ATTRIBUTES not in edits
            and (tip is None or not self._git.has_path(tip, ATTRIBUTES))
        ):
            edits[ATTRIBUTES] = ATTRIBUTES_TEXT.encode()
        return edits

    def identity(self) -> tuple[Identity, Identity]:
        """The (author, committer) this registry writes as."""
        if self._identities is None:
            try:
                config = self._git.config
                author = resolve_identity("AUTHOR", self._author_arg, config)
                committer = resolve_identity("COMMITTER", self._committer_arg, config)
            except ValueError as exc:
                raise InvalidInputError(str(exc)) from exc
            self._identities = (author, committer)
        return self._identities

    def write(self, action: Callable[[], T]) -> T:
        """``action()``; a failed Git write is raised as the registry's error (disk full...)."""
        try:
            return action()
        except ProgregError:
            raise
        except (pygit2.GitError, OSError) as exc:
            raise self.write_error(exc) from exc

    def write_error(self, exc: Exception) -> RegistryError:
        """The error to raise when Git failed to write (disk full, permissions...)."""
        return write_failure(self.path, exc)

    def reading(self, what: str) -> _Reading:
        """Raise :class:`~progreg.DamagedObjectError` when Git finds an object damaged or gone."""
        return _Reading(self.path, what)

    def reread(self, what: str, read: Callable[[], T]) -> T:
        """``read()``, looking at the packs anew when an object is missing (see ``reading``)."""
        with self.reading(what):
            return self._git.reread(read)

    def rebuild(self, doc: ProgramDocument, into: object = None) -> Any:
        """The program object of ``doc``: loaded ``into`` an object, a registered type, or state.

        A DSPy module keeps ``doc``'s signature name for its next save (DSPy
        loses its signatures' class names when it loads a state).
        """
        program = (
            load_into(into, doc.state)
            if into is not None
            else self.types.build(doc.class_name, doc.state)
        )
        remember_signature_class(program, doc.signature_class)
        return program

    # -- reading -----------------------------------------------------------------

    def load_program(self, program_id: str, *, into: object = None) -> SavedProgram | None:
        """The operation behind :meth:`progreg.ProgramStorage.load_program`."""
        if isinstance(program_id, str) and LABEL_SEPARATOR in program_id:
            program_id = self.label_target(program_id)
        check_program_id(program_id)
        with events.operation("progreg.storage.load", program_id=program_id) as timer:
            found = self.reread(f"program {program_id}", lambda: self._locate(program_id))
            if found is None:
                events.emit(
                    "progreg.storage.load_complete",
                    program_id=program_id,
                    found=False,
                    duration_ms=timer.ms,
                )
                return None
            data, where, commit = found
            doc = decode_document(data, where, program_id)
            program = self.rebuild(doc, into)
            stamp_origin(program, Origin(program_id, commit))
        if events.listening():
            age_hours = (datetime.now(UTC) - doc.saved_at).total_seconds() / 3600
            events.emit(
                "progreg.storage.load_complete",
                program_id=program_id,
                found=True,
                size_bytes=len(data),
                age_hours=round(age_hours, 3),
                duration_ms=timer.ms,
            )
        return self.saved_program(doc, program, commit)

    def label_target(self, reference: str) -> str:
        """The program id ``Signature@label`` names on ``main``; else a LabelNotFoundError."""
        parsed = parse_label_reference(reference)
        assert parsed is not None
        signature, label = parsed
        found = self.reread(
            f"the labels of {signature}", lambda: resolve_label(self._git, signature, label)
        )
        if found is None:
            raise LabelNotFoundError(
                f"label {label!r} of {signature} is not set on main of {self.path}: set it"
                f" with `progreg label set {signature} {label} <program id>` (progreg label"
                f" list {signature} shows the labels there are)"
            )
        return found

    def _locate(self, program_id: str) -> tuple[bytes, str, str] | None:
        """``(file content, where it is, commit that wrote it)`` of a live program, or ``None``.

        The log index knows the blob and the commit of every live program at
        the tip it was refreshed to: one object read. The tree of the tip is
        consulted only when the index does not list the program.
        """
        located = self._log.locate(program_id)
        if located is not None:
            tip_id, live = located
            data = self._log.blob(live.blob)
            if data is not None:
                return data, self._where(program_id, tip_id), live.commit
        tip = self._git.tip(MAIN)
        found = None if tip is None else self._git.blob(tip.tree, path_of(program_id))
        if found is None or tip is None:
            return None
        commit = self._commit_of(program_id, found.id, tip)
        return found.data, self._where(program_id, tip.id), commit

    def _commit_of(self, program_id: str, blob_id: pygit2.Oid, tip: pygit2.Commit) -> str:
        """The commit, back along first parents from ``tip``, that wrote this blob of a program."""
        first = self._git.introducing_commit(path_of(program_id), blob_id, tip)
        return str(first.id if first is not None else tip.id)

    def _where(self, program_id: str, commit: pygit2.Oid | str) -> str:
        """How errors name a program's file: its path, the commit it was read at, the registry."""
        return f"{path_of(program_id)} (commit {str(commit)[:12]} of {self.path})"

    @staticmethod
    def saved_program(
        doc: ProgramDocument, program: object, commit: str, *, unchanged: bool = False
    ) -> SavedProgram:
        """The :class:`SavedProgram` record of ``doc`` as written by ``commit``."""
        return SavedProgram(
            program_id=doc.program_id,
            program=program,
            program_type=doc.class_name,
            state=doc.state,
            optimization_result=doc.optimization_result,
            metadata=doc.metadata,
            saved_at=doc.saved_at,
            commit=commit,
            unchanged=unchanged,
        )

    def list_programs(self) -> list[ProgramSummary]:
        """The operation behind :meth:`progreg.ProgramStorage.list_programs`."""
        return self.reread("the list of programs", self._log.by_time)

    def records(self) -> dict[str, ProgramRecord]:
        """What the commit log says about each live program (no program file is read).

        This is the fast path for queries: scores, optimizers, signatures,
        save times, the commit of each program and its position in the log.
        """
        return self.reread("the log of main", self._log.records)

    def program_ids(self) -> list[str]:
        """The operation behind :meth:`progreg.ProgramStorage.program_ids`."""
        records = self.records()
        return sorted(records, key=lambda program_id: records[program_id].position)

    def summaries(self, program_ids: Iterable[str]) -> list[ProgramSummary]:
        """Summaries of the given live programs (unknown ids are skipped), in the order given."""
        wanted = list(program_ids)
        return self.reread("the programs' summaries", lambda: self._log.summaries(wanted))

    def get_history(self) -> ProgramHistory:
        """The operation behind :meth:`progreg.ProgramStorage.get_history`."""
        programs = self.reread("the log of main", self._log.by_position)
        scores = [s.best_score for s in programs if s.best_score is not None]
        # built from checked values: no validation, so a command that only lists
        # builds no schema (and loads none of pydantic's plugin machinery)
        summary = HistorySummary.model_construct(
            total_programs=len(programs),
            avg_score=sum(scores) / len(scores) if scores else None,
            latest_save=programs[-1].saved_at if programs else None,
        )
        return ProgramHistory.model_construct(programs=programs, summary=summary)

    def log(self, limit: int | None = None) -> list[LogEntry]:
        """The operation behind :meth:`progreg.ProgramStorage.log`."""
        limit = check_limit(limit)
        return self.reread("the log of main", lambda: log_entries(self._git, limit))

    def indexed_commits(self) -> list[IndexedCommit]:
        """Every commit of the first-parent log of ``main``, oldest first, and what it changed."""
        return self.reread("the log of main", self._log.entries)

    def versions(self, program_id: str, limit: int | None = None) -> list[SavedProgram]:
        """The operation behind :meth:`progreg.ProgramStorage.versions`."""
        check_program_id(program_id)
        limit = check_limit(limit)
        found = self.reread(
            f"the history of program {program_id}",
            lambda: program_versions(self._git, program_id, limit),
        )
        saved = []
        for doc, commit in found:
            program = self.rebuild(doc)
            stamp_origin(program, Origin(program_id, commit))
            saved.append(self.saved_program(doc, program, commit))
        return saved

    # -- tags and checkpoints ------------------------------------------------------

    def all_tags(self) -> dict[str, list[str]]:
        """The operation behind :meth:`progreg.ProgramStorage.all_tags`."""
        return {
            program_id: sorted(tags) for program_id, tags in sorted(all_tags(self._git).items())
        }

    def tags_of(self, program_id: str) -> list[str]:
        """The operation behind :meth:`progreg.ProgramStorage.tags_of`."""
        check_program_id(program_id)
        return sorted(all_tags(self._git).get(program_id, set()))

    def checkpoint_names(self) -> list[str]:
        """The operation behind :meth:`progreg.ProgramStorage.checkpoint_names`."""
        refs = self._git.refs_under(CHECKPOINTS_PREFIX)
        return sorted(ref[len(CHECKPOINTS_PREFIX) :] for ref in refs)

    # -- deleting and restoring --------------------------------------------------

    def delete_program(self, program_id: str) -> bool:
        """The operation behind :meth:`progreg.ProgramStorage.delete_program`."""
        check_program_id(program_id)
        path = path_of(program_id)

        def plan(tip: Tip | None) -> CommitPlan | None:
            if tip is None or path not in tip.tree:
                return None
            naming = labels_naming(self._git.repo, tip.tree, [program_id])
            if naming:
                raise ConflictError(dangling_message(naming, f"deleting program {program_id}"))
            try:
                data = self._git.read(tip.tree, path) or b""
                signature = decode_document(data, path, program_id).signature_class
            except (ProgregError, pygit2.GitError, KeyError):  # a damaged program can go too
                signature = None
            message = delete_message(program_id, signature)
            return CommitPlan({path: None}, message, author, committer)

        with events.operation("progreg.storage.delete", program_id=program_id) as timer:
            author, committer = self.identity()
            commit = self.write(lambda: self._git.update_ref(MAIN, plan))
        self._maintain()
        events.emit(
            "progreg.storage.delete_complete",
            program_id=program_id,
            deleted=commit is not None,
            commit=None if commit is None else str(commit),
            duration_ms=timer.ms,
        )
        return commit is not None

    def delete_programs(
        self, program_ids: Iterable[str], message: str
    ) -> tuple[list[str], str | None]:
        """Remove several programs in one commit with ``message``.

        Returns those removed (the ones still on ``main``) and the commit's hex
        id; ``([], None)`` and no commit when none of them is there.
        """
        ids = [check_program_id(program_id) for program_id in program_ids]
        author, committer = self.identity()

        def plan(tip: Tip | None) -> tuple[CommitPlan | None, list[str]]:
            present = [i for i in ids if tip is not None and path_of(i) in tip.tree]
            if not present:
                return None, present
            assert tip is not None
            naming = labels_naming(self._git.repo, tip.tree, present)
            if naming:
                raise ConflictError(dangling_message(naming, "removing these programs"))
            edits = dict.fromkeys(map(path_of, present))
            return CommitPlan(edits, message, author, committer), present

        commit, removed = self.write(lambda: self._git.update_ref_returning(MAIN, plan))
        self._maintain()
        return removed, None if commit is None else str(commit)

    def restore_program(self, program_id: str) -> SavedProgram:
        """The operation behind :meth:`progreg.ProgramStorage.restore_program`."""
        check_program_id(program_id)
        path = path_of(program_id)
        what = f"the history of program {program_id}"

        def last_version() -> tuple[pygit2.Commit, pygit2.Oid, bytes] | None:
            for commit in self._git.walk(MAIN):
                if path in commit.tree:
                    blob = self._git.repo[commit.tree[path].id]
                    assert isinstance(blob, pygit2.Blob)
                    return commit, blob.id, blob.data  # read now: a damaged blob fails here
            return None

        found = self.reread(what, last_version)
        if found is None:
            raise ProgramNotFoundError(f"program {program_id} is not in the registry's history")
        source, blob_id, data = found
        doc = decode_document(data, self._where(program_id, source.id), program_id)
        author, committer = self.identity()
        body = f"Restored from commit {source.id}."
        message = save_message(doc, action="restore", body=body)

        def plan(tip: Tip | None) -> CommitPlan | None:
            if tip is not None and path in tip.tree:
                return None
            return CommitPlan(self.with_marker(tip, {path: blob_id}), message, author, committer)

        commit = self.write(lambda: self._git.update_ref(MAIN, plan))
        self._maintain()
        if commit is None:
            loaded = self.load_program(program_id)
            assert loaded is not None
            return loaded
        events.emit(
            "progreg.storage.restore",
            program_id=program_id,
            commit=str(commit),
            restored_from=str(source.id),
        )
        program = self.rebuild(doc)
        stamp_origin(program, Origin(program_id, str(commit)))
        return self.saved_program(doc, program, str(commit))

    # -- sharing -----------------------------------------------------------------

    def maintain(self) -> None:
        """Git's automatic maintenance after a write made by a layer built on this one."""
        self._maintain()

    def _maintain(self) -> None:
        """Git's automatic maintenance after a write (see :mod:`progreg.git.maintenance`)."""
        # imported at the first write: packing, repacking and bundles are no part of a read
        from progreg.git.maintenance import auto_maintenance  # noqa: PLC0415

        auto_maintenance(self._git)

    def gc(self, *, pack_limit: int | None = None) -> GcReport:
        """The operation behind :meth:`progreg.ProgramStorage.gc`."""
        if pack_limit is not None and (
            not isinstance(pack_limit, int) or isinstance(pack_limit, bool) or pack_limit < 0
        ):
            raise InvalidInputError(
                f"pack_limit must be a whole number of packs, 0 or more (0: never merge),"
                f" not {pack_limit!r}"
            )
        self._git.check_writable()
        from progreg.git.maintenance import pack_loose_objects  # noqa: PLC0415 (see _maintain)

        git = self._git
        report = self.write(
            lambda: pack_loose_objects(git, lock_timeout=git.lock_timeout, pack_limit=pack_limit)
        )
        return GcReport.model_validate(dataclasses.asdict(report))


class _Reading:
    """The context of :meth:`ProgramStorage.reading` (a class: loads are microseconds)."""

    __slots__ = ("_path", "_what")

    def __init__(self, path: Path, what: str) -> None:
        self._path = path
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, ProgregError):
            return
        # pygit2 raises an OSError for a pack that libgit2 listed and is gone.
        if isinstance(exc, (pygit2.GitError, KeyError)) or (
            isinstance(exc, OSError) and "invalid packfile" in str(exc)
        ):
            raise read_failure(self._path, self._what, exc) from exc


def check_marker(tree: pygit2.Tree, where: str, ref: str, error: type[ProgregError]) -> int:
    """The registry format of ``tree`` (the tip of ``ref``), from its ``progreg.json``.

    Raises ``error`` (phrased after ``where``) when the tree is not a
    registry's, and :class:`UnsupportedFormatError` when a newer progreg wrote it.
    """
    marker = blob_at(tree, MARKER)
    if marker is None:
        raise error(f"{where} not a progreg registry (no {MARKER} on {ref})")
    try:
        version = canonical.decode(marker.data, MARKER)["format_version"]
    except (ProgregError, KeyError, TypeError) as exc:
        raise error(f"{where} its {MARKER} is damaged (on {ref}: {exc})") from exc
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise error(f"{where} its {MARKER} has an invalid format_version {version!r} (on {ref})")
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"{where} written in registry format {version} (on {ref}); this progreg reads up"
            f" to {FORMAT_VERSION}: upgrade progreg"
        )
    return version


def _batch_item(item: object, index: int) -> tuple[object, object, Any, str | None]:
    """``(program, optimization_result, metadata, program_id)`` of one batch item."""
    if isinstance(item, Mapping):
        unknown = set(item) - _ITEM_KEYS
        if unknown or "program" not in item:
            problem = f"unknown keys {sorted(map(str, unknown))}" if unknown else "no 'program'"
            raise InvalidInputError(
                f"batch item {index}: {problem}; expected the keys program,"
                " optimization_result, metadata and optionally program_id and derived_from"
            )
        fields = (
            item["program"],
            item.get("optimization_result"),
            item.get("metadata"),
            item.get("program_id"),
        )
    elif isinstance(item, tuple) and len(item) in (3, 4):
        fields = (*item, None) if len(item) == 3 else item
    else:
        raise InvalidInputError(
            f"batch item {index} is a {type(item).__name__}: give a (program,"
            " optimization_result, metadata) tuple or a dict with those keys"
        )
    program, result, metadata, program_id = fields
    return program, result, metadata, program_id


def _check_force(force: object) -> None:
    if not isinstance(force, bool):
        raise InvalidInputError(f"force must be True or False, got {force!r}")


def _tags_added(commit: pygit2.Oid, created: list[str]) -> None:
    """Report the tags a save created with its commit (``<tag>/<program id>`` names)."""
    for program_id, tags in created_by_program(created).items():
        events.emit("progreg.tag.add", program_id=program_id, tags=tags)


def _resave(
    saved: SavedProgram,
    optimization_result: object,
    metadata: Mapping[str, Any] | None,
    program_id: str | None,
) -> tuple[object, object, Mapping[str, Any] | None, str | None]:
    """What saving ``saved`` again means: its program, result, metadata and id, unless given."""
    return (
        saved.program,
        saved.optimization_result if optimization_result is None else optimization_result,
        saved.metadata if metadata is None else metadata,
        saved.program_id if program_id is None else program_id,
    )
