"""StorageManager: what optimization code calls during and after a run.

It builds on :class:`~progreg.ProgramStorage` and adds discovery
(``find_programs``, ``get_best_program``), tags (annotated Git tags),
checkpoints (branches), analytics from the commit log, comparisons with real
diffs and cleanup, plus a process-wide default instance.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from itertools import compress, repeat
from operator import attrgetter, eq
from typing import Any, ClassVar

from progreg import events
from progreg.core.document import decode_document
from progreg.core.ids import check_program_id, program_path
from progreg.core.layout import MAIN
from progreg.core.models import CleanupPlan, CleanupResult, ProgramSummary, SavedProgram
from progreg.core.results import normalize_result, optimized_program_of
from progreg.errors import InvalidInputError, ProgramNotFoundError
from progreg.registry.analytics import OptimizationHistory, cleanup_plan, optimization_history
from progreg.registry.checkpoints import CheckpointInfo, Checkpoints
from progreg.registry.compare import ProgramComparison, compare_documents
from progreg.registry.config import StorageConfig
from progreg.registry.history import ProgramRecord
from progreg.registry.messages import cleanup_message
from progreg.registry.tags import all_tags, check_tags, create_tags, delete_tags, tagged
from progreg.storage import ProgramStorage


class StorageManager:
    """The registry as an optimization run uses it; see the module docstring."""

    _instance: ClassVar[StorageManager | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        config: StorageConfig | str | os.PathLike[str] | None = None,
        *,
        storage: ProgramStorage | None = None,
        storage_path: str | os.PathLike[str] | None = None,
    ) -> None:
        """A manager of the registry that ``config`` describes.

        ``config`` is a :class:`~progreg.StorageConfig` or the registry's path
        (``StorageManager("./registry")`` is ``StorageManager(StorageConfig(
        storage_path="./registry"))``); ``storage_path=`` says the same by name.
        Without either, the registry comes from the environment (``PROGREG_PATH``).
        """
        if isinstance(config, str | os.PathLike):
            if storage_path is not None:
                raise InvalidInputError(
                    "give the registry's path once: as the first argument or as storage_path="
                )
            config, storage_path = None, config
        if config is not None and not isinstance(config, StorageConfig):
            raise InvalidInputError(
                f"StorageManager takes a StorageConfig or a registry path, not"
                f" {type(config).__name__}"
            )
        if config is None:
            config = (
                StorageConfig()
                if storage_path is None
                else StorageConfig(storage_path=storage_path)
            )
        elif storage_path is not None:
            raise InvalidInputError(
                "give the registry's path in the StorageConfig or as storage_path=, not both"
            )
        self.config = config
        if storage is None:
            storage = ProgramStorage(self.config.storage_path, durable=self.config.durable)
        self.storage = storage
        self._checkpoints = Checkpoints(self.storage.registry)
        self._history: tuple[str, OptimizationHistory] | None = None

    def __repr__(self) -> str:
        return f"StorageManager({str(self.storage.path)!r})"

    # -- saving ------------------------------------------------------------------

    def save_optimization_result(
        self,
        result: object,
        tags: Iterable[str] | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        derived_from: str | SavedProgram | None = None,
    ) -> SavedProgram | None:
        """Save ``result.optimized_program`` with the result, tagged with ``tags``.

        ``result`` may also be a :class:`~progreg.SavedProgram` (a version loaded or a
        checkpoint restored): it is saved as a new version of its program, with
        its result and metadata. Returns ``None`` (and saves nothing) when
        ``auto_save`` is off or the result has no optimized program.
        ``derived_from`` is as for :meth:`ProgramStorage.save_program` (an
        optimized program whose student was loaded from the registry is derived
        from that program without it).
        """
        if not self.config.auto_save:
            return None
        tag_names = check_tags(tags or [])
        item = _result_item(result, tag_names, description, metadata)
        if item is None:
            return None
        return self.storage.save_program(
            *item, tags=tag_names, secrets=self.config.secrets, derived_from=derived_from
        )

    def save_optimization_results(
        self,
        results: Iterable[object],
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[SavedProgram]:
        """Save many results (intermediate ones, say) as one commit, as :meth:`save_programs`.

        Results without an optimized program are skipped; returns ``[]`` (and
        saves nothing) when ``auto_save`` is off.
        """
        if not self.config.auto_save:
            return []
        tag_names = check_tags(tags or [])
        items = [_result_item(result, tag_names, None, metadata) for result in results]
        return self.storage.save_programs(
            [item for item in items if item is not None],
            tags=tag_names,
            secrets=self.config.secrets,
        )

    # -- discovery ---------------------------------------------------------------

    def find_programs(
        self,
        optimizer: str | None = None,
        min_score: float | None = None,
        max_age_days: float | None = None,
        signature_class: str | None = None,
        tags: Iterable[str] | None = None,
    ) -> list[ProgramSummary]:
        """Programs matching every given filter, in the order ``main`` recorded them.

        A program's place is that of the commit that wrote its current version
        (a restored program counts from its restore).

        ``optimizer`` and ``signature_class`` match exactly; ``min_score``
        drops programs scoring below it (no score counts as 0);
        ``max_age_days`` drops older saves; ``tags`` keeps programs carrying
        at least one of them.
        """
        matches = self._find_records(optimizer, min_score, max_age_days, signature_class, tags)
        return self.storage.registry.summaries(record.program_id for record in matches)

    def _find_records(
        self,
        optimizer: str | None,
        min_score: float | None,
        max_age_days: float | None,
        signature_class: str | None,
        tags: Iterable[str] | None,
    ) -> list[ProgramRecord]:
        _check_number("min_score", min_score)
        _check_number("max_age_days", max_age_days)
        wanted = tagged(self.storage.registry.git, check_tags(tags)) if tags is not None else None
        oldest = (
            datetime.now(UTC) - timedelta(days=max_age_days) if max_age_days is not None else None
        )
        records = self.storage.registry.records()
        found = list(records.values())
        if wanted is not None:
            found = list(compress(found, map(wanted.__contains__, records)))
        if optimizer is not None:
            found = _equal(found, "optimizer", optimizer)
        if signature_class is not None:
            found = _equal(found, "signature_class", signature_class)
        if min_score is not None:
            found = [record for record in found if (record.best_score or 0.0) >= min_score]
        if oldest is not None:
            found = [record for record in found if record.saved_at >= oldest]
        found.sort(key=attrgetter("position"))
        return found

    def get_best_program(self, signature_class: str, *, into: object = None) -> SavedProgram | None:
        """The highest-scoring program for ``signature_class`` (ties go to the newest).

        ``into`` is as for :meth:`~progreg.ProgramStorage.load_program`: a fresh
        DSPy module (or a class) the program is loaded into.
        """
        candidates = [
            record
            for record in self._find_records(None, None, None, signature_class, None)
            if record.best_score is not None
        ]
        if not candidates:
            return None
        best = max(candidates, key=lambda record: (record.best_score, record.position))
        return self.storage.load_program(best.program_id, into=into)

    # -- tags --------------------------------------------------------------------

    def tag_program(self, program_id: str, *tags: str) -> list[str]:
        """Tag a live program; returns the tags newly created (existing ones are kept)."""
        names = check_tags(tags)
        record = self._record(program_id)
        _, committer = self.storage.registry.identity()
        created = create_tags(
            self.storage.registry.git, program_id, record.commit, names, committer
        )
        if created:
            events.emit("progreg.tag.add", program_id=program_id, tags=created)
        return created

    def untag_program(self, program_id: str, *tags: str) -> list[str]:
        """Remove tags from a program; returns the tags that were removed."""
        check_program_id(program_id)
        removed = delete_tags(self.storage.registry.git, program_id, check_tags(tags))
        if removed:
            events.emit("progreg.tag.remove", program_id=program_id, tags=removed)
        return removed

    def get_tags(self, program_id: str) -> list[str]:
        """The program's tags, sorted."""
        return self.storage.tags_of(program_id)

    def _record(self, program_id: str) -> ProgramRecord:
        check_program_id(program_id)
        record = self.storage.registry.records().get(program_id)
        if record is None:
            raise ProgramNotFoundError(f"program {program_id} is not in the registry")
        return record

    # -- checkpoints -------------------------------------------------------------

    def create_checkpoint(
        self, result: object, name: str, metadata: Mapping[str, Any] | None = None
    ) -> SavedProgram:
        """Record ``result.optimized_program`` as the newest checkpoint of run ``name``.

        With ``save_intermediate_results`` (and ``auto_save``) the checkpoint is
        also saved on ``main``, under the same program id.
        """
        program = optimized_program_of(result)
        if program is None:
            raise InvalidInputError("the result has no optimized_program to checkpoint")
        data = normalize_result(result)
        secrets = self.config.secrets
        saved = self._checkpoints.create(program, data, name, metadata, secrets=secrets)
        if self.config.save_intermediate_results and self.config.auto_save:
            meta = {**(metadata or {}), "checkpoint": name}
            self.storage.save_program(
                program, data, meta, program_id=saved.program_id, secrets=secrets
            )
        return saved

    def restore_checkpoint(self, name: str, *, into: object = None) -> SavedProgram | None:
        """The newest checkpoint of ``name`` (or ``name~N``, N steps older); ``None`` if none."""
        return self._checkpoints.restore(name, into=into)

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """The newest checkpoint of every run."""
        return self._checkpoints.latest()

    def checkpoint_history(self, name: str) -> list[CheckpointInfo]:
        """Every checkpoint of run ``name``, newest first."""
        return self._checkpoints.history(name)

    def delete_checkpoint(self, name: str) -> bool:
        """Delete run ``name``'s checkpoint branch; ``False`` if it did not exist."""
        return self._checkpoints.delete(name)

    # -- analytics, comparison, cleanup -------------------------------------------

    def get_optimization_history(self) -> OptimizationHistory:
        """Summary, per-optimizer statistics and trends, computed from the commit log.

        The records are a function of the commit ``main`` points at, and so is
        the history: it is computed again only when ``main`` moved.
        """
        tip = self._main_id()
        known = self._history
        if known is not None and tip is not None and known[0] == tip:
            return known[1].model_copy(deep=True)
        history = optimization_history(list(self.storage.registry.records().values()))
        if tip is not None and self._main_id() == tip:  # not moved while computing
            self._history = (tip, history.model_copy(deep=True))
        return history

    def _main_id(self) -> str | None:
        target = self.storage.registry.git.tip_id(MAIN)
        return None if target is None else str(target)

    def compare_programs(self, program_id_1: str, program_id_2: str) -> ProgramComparison:
        """Compare two live programs: scores, ages, a structural summary and a unified diff."""
        docs = []
        git = self.storage.registry.git
        tip = self.storage.registry.reread("the tip of main", lambda: git.tip(MAIN))
        for program_id in (program_id_1, program_id_2):
            check_program_id(program_id)
            path = program_path(program_id)
            data = None
            if tip is not None:
                read = functools.partial(git.read, tip.tree, path)
                data = self.storage.registry.reread(f"program {program_id}", read)
            if data is None:
                raise ProgramNotFoundError(f"program {program_id} is not in the registry")
            docs.append((decode_document(data, program_path(program_id), program_id), data))
        comparison = compare_documents(docs[0][0], docs[0][1], docs[1][0], docs[1][1])
        events.emit(
            "progreg.compare",
            program_id_1=program_id_1,
            program_id_2=program_id_2,
            added_lines=comparison.diff.added_lines,
            removed_lines=comparison.diff.removed_lines,
        )
        return comparison

    def plan_cleanup(self) -> CleanupPlan:
        """What :meth:`cleanup_old_programs` would remove now; changes nothing (a dry run)."""
        records = self.storage.registry.records()
        protected_tags = set(self.config.protected_tags)
        protected = sorted(
            {
                program_id
                for program_id, tags in all_tags(self.storage.registry.git).items()
                if tags & protected_tags and program_id in records
            }
            | {  # a label names a live program: cleanup never leaves it dangling
                program_id
                for labels in self.storage.labels().values()
                for program_id in labels.values()
                if program_id in records
            }
        )
        keep = self.config.max_stored_programs
        doomed = cleanup_plan(records.values(), keep, set(protected))
        return CleanupPlan(
            keep=keep,
            protected_tags=list(self.config.protected_tags),
            protected=protected,
            remove=doomed,
            remaining=len(records) - len(doomed),
        )

    def cleanup_old_programs(self) -> CleanupResult:
        """Keep the ``max_stored_programs`` best unprotected programs; remove the rest.

        Programs are ranked by 70% normalised score and 30% normalised recency;
        programs tagged with a ``protected_tags`` tag, and programs a label names,
        are always kept. Removal is
        one commit; removed programs stay in history and can be restored.
        Returns the commit, the ids removed and how many programs remain
        (``result.removed_count`` is the count earlier versions returned);
        :meth:`plan_cleanup` says which first.
        """
        plan = self.plan_cleanup()
        removed: list[str] = []
        commit = None
        if plan.remove:
            message = cleanup_message(plan.remove, plan.remaining, plan.keep)
            removed, commit = self.storage.registry.delete_programs(plan.remove, message)
        remaining = plan.remaining + len(plan.remove) - len(removed)
        events.emit("progreg.storage.cleanup", removed=len(removed), remaining=remaining)
        return CleanupResult(commit=commit, removed=removed, remaining=remaining)

    # -- the process-wide instance -------------------------------------------------

    @classmethod
    def instance(cls) -> StorageManager:
        """The process-wide manager, created from ``StorageConfig()`` on first use."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @classmethod
    def configure(cls, config: StorageConfig) -> StorageManager:
        """Replace the process-wide manager with one using ``config``."""
        manager = cls(config)
        with cls._instance_lock:
            cls._instance = manager
        return manager

    @classmethod
    def save(cls, result: object, metadata: Mapping[str, Any] | None = None) -> SavedProgram | None:
        """``instance().save_optimization_result(result, metadata=metadata)``."""
        return cls.instance().save_optimization_result(result, metadata=metadata)

    @classmethod
    def load(cls, program_id: str, *, into: object = None) -> SavedProgram | None:
        """``instance().storage.load_program(program_id, into=into)``."""
        return cls.instance().storage.load_program(program_id, into=into)

    @classmethod
    def best(cls, signature_class: str, *, into: object = None) -> SavedProgram | None:
        """``instance().get_best_program(signature_class, into=into)``."""
        return cls.instance().get_best_program(signature_class, into=into)


def _result_item(
    result: object,
    tag_names: list[str],
    description: str | None,
    metadata: Mapping[str, Any] | None,
) -> tuple[object, dict[str, Any], dict[str, Any], str | None] | None:
    """``(program, optimization_result, metadata, program_id)`` to save for ``result``.

    ``None`` when it has no program. A :class:`SavedProgram` (a version loaded
    or a checkpoint restored) is saved again as a new version of its program,
    keeping its result and metadata.
    """
    if isinstance(result, SavedProgram):
        program: object = result.program
        data = dict(result.optimization_result)
        base: dict[str, Any] = dict(result.metadata)
        program_id: str | None = result.program_id
    else:
        program = optimized_program_of(result)
        if program is None:
            return None
        data = normalize_result(result)
        base = {}
        program_id = None
    if description is not None and not isinstance(description, str):
        raise InvalidInputError("description must be a string")
    result_meta = data.get("metadata") or {}
    meta: dict[str, Any] = {**base, **(metadata or {})}
    meta.update(
        tags=tag_names,
        description=description if description is not None else base.get("description"),
        optimizer_class=result_meta.get("optimizer"),
        saved_by="progreg.StorageManager",
    )
    if "timestamp" in result_meta:
        meta["optimization_timestamp"] = result_meta["timestamp"]
    return program, data, meta, program_id


def _equal(records: list[ProgramRecord], field: str, value: str) -> list[ProgramRecord]:
    """The records whose ``field`` equals ``value``, in order (compared in C)."""
    return list(compress(records, map(eq, map(attrgetter(field), records), repeat(value))))


def _check_number(name: str, value: object) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or (name == "max_age_days" and value < 0)
    ):
        raise InvalidInputError(f"{name} must be a finite number (>= 0 for ages), got {value!r}")
