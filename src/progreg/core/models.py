"""The records progreg returns: typed, immutable pydantic models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from progreg.core.results import best_score_of, optimizer_of, signature_class_of


class ProgramSummary(BaseModel):
    """One program as listed: what ``list_programs`` and histories return."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    program_id: str = Field(description="16 lowercase hex characters")
    saved_at: datetime = Field(description="when the program was saved (UTC, microseconds)")
    best_score: float | None = Field(description="optimization_result.best_score_value")
    score_name: str | None = Field(description="optimization_result.best_score_name")
    optimizer: str | None = Field(description="optimization_result.metadata.optimizer")
    signature_class: str | None = Field(description="the DSPy signature the program solves")
    metadata: dict[str, Any] = Field(description="the caller's metadata plus provenance")


class HistorySummary(BaseModel):
    """Totals over the programs in a registry."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    total_programs: int
    avg_score: float | None = Field(
        description="mean of the programs' non-null best scores; None when no program has one"
    )
    latest_save: datetime | None = Field(description="saved_at of the newest save, if any")


class ProgramHistory(BaseModel):
    """The programs of a registry in the order they were saved, with a summary."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    programs: list[ProgramSummary]
    summary: HistorySummary


class SavedProgram(BaseModel):
    """A program as saved in (or loaded from) a registry."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    program_id: str = Field(description="16 lowercase hex characters")
    program: Any = Field(
        description="the program object: the caller's object on save; on load, an object"
        " rebuilt from its state where the caller allowed it (into=, registered types),"
        " else the state dict"
    )
    program_type: str | None = Field(description="module.Class of the saved program, if any")
    state: dict[str, Any] = Field(description="the program's state as stored")
    optimization_result: dict[str, Any]
    metadata: dict[str, Any]
    saved_at: datetime
    commit: str = Field(description="hex id of the commit that recorded this version")
    unchanged: bool = Field(
        default=False,
        description="True when a save found this content already live and made no commit",
    )

    @field_serializer("program", when_used="json")
    def _program_in_json(self, program: Any) -> Any:
        """In JSON, a program object (a DSPy module...) is written as its stored state."""
        return program if isinstance(program, dict) else self.state

    @property
    def best_score(self) -> float | None:
        """``optimization_result["best_score_value"]``, if it is a finite number."""
        return best_score_of(self.optimization_result)

    @property
    def signature_class(self) -> str | None:
        """``metadata["signature_class"]``."""
        return signature_class_of(self.metadata)

    @property
    def optimizer(self) -> str | None:
        """``optimization_result["metadata"]["optimizer"]``."""
        return optimizer_of(self.optimization_result)


class CleanupPlan(BaseModel):
    """What ``cleanup_old_programs`` would remove now, and why the others stay."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    keep: int = Field(description="max_stored_programs: how many unprotected programs stay")
    protected_tags: list[str] = Field(description="the tags that protect a program")
    protected: list[str] = Field(
        description="ids of live programs kept for a protected tag or a label"
    )
    remove: list[str] = Field(description="ids cleanup would remove, oldest first")
    remaining: int = Field(description="how many programs the registry holds afterwards")


class CleanupResult(BaseModel):
    """What one ``cleanup_old_programs`` call did: its commit, what it removed, what is left."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    commit: str | None = Field(
        description="hex id of the cleanup commit on main; None when nothing was removed"
    )
    removed: list[str] = Field(description="ids of the programs the commit removed, oldest first")
    remaining: int = Field(description="how many programs main holds after the cleanup")

    @property
    def removed_count(self) -> int:
        """How many programs were removed (what ``cleanup_old_programs`` used to return)."""
        return len(self.removed)


class GcReport(BaseModel):
    """What one ``gc`` run did; sizes are bytes under the registry's ``objects/``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    objects_packed: int = Field(description="loose objects written into the new pack")
    loose_removed: int = Field(description="loose object files removed afterwards")
    packs_before: int = Field(description="packs before the run")
    packs_after: int = Field(description="packs after the run")
    packs_consolidated: int = Field(description="packs merged into one (0: no merge)")
    size_before: int = Field(description="bytes under objects/ before the run")
    size_after: int = Field(description="bytes under objects/ after the run")
    seconds: float = Field(description="how long the run took")
    pack: str | None = Field(description="name of the pack written, if any")


class LogEntry(BaseModel):
    """One commit of ``main``: what ``ProgramStorage.log`` returns, ``progreg log --json`` prints.

    A commit progreg made says in its trailers what it did; a commit made
    without progreg has none, and is an ``action`` ``merge`` or ``commit``
    with its subject.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    commit: str = Field(description="hex id of the commit")
    date: datetime = Field(description="author date, UTC (for a save: its saved_at)")
    committed_at: datetime = Field(description="committer date, UTC")
    action: str = Field(description="save, save-batch, delete, restore, cleanup, merge, commit...")
    program_id: str | None = Field(description="the program the commit is about, if it names one")
    signature_class: str | None
    optimizer: str | None
    score: float | None
    score_name: str | None
    author: str
    author_email: str
    subject: str = Field(description="the first line of the commit message")


class LineageNode(BaseModel):
    """One program in a lineage: a version of it, and where it sits in the family."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    program_id: str = Field(description="16 lowercase hex characters")
    commit: str | None = Field(
        description="for an ancestor, the commit of the version derived from; otherwise the"
        " commit of the program's latest version on main"
    )
    saved_at: datetime | None = Field(description="saved_at of that version, when known")
    score: float | None = Field(description="best_score_value of that version, if any")
    score_name: str | None = Field(description="best_score_name of that version, if any")
    live: bool = Field(description="whether the program is on main now (False: deleted)")
    derived_from: str | None = Field(
        description="the id of the program it was derived from, as far as this lineage goes"
    )
    generation: int = Field(
        description="0 for the program asked about, -1 its ancestor, -2 the one before,"
        " 1 a program derived from it, 2 one derived from that..."
    )


class Lineage(BaseModel):
    """Where a program came from and what came of it: ``ProgramStorage.lineage``.

    The tree is flat, so that a long line of programs needs no deep nesting:
    each node names its parent in ``derived_from``.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    program: LineageNode = Field(description="the program asked about")
    ancestors: list[LineageNode] = Field(
        description="the chain of ancestors, the program's own ancestor first"
    )
    descendants: list[LineageNode] = Field(
        description="the programs derived from it, depth first: each after its parent, and"
        " before its own descendants"
    )

    def children(self, program_id: str) -> list[LineageNode]:
        """The descendants derived directly from ``program_id``, in the order saved."""
        return [node for node in self.descendants if node.derived_from == program_id]
