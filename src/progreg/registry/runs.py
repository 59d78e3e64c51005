"""Optimization runs: a run's records on its checkpoint branch, and what they say.

A run named NAME keeps its trajectory on ``refs/heads/checkpoints/NAME``, one
checkpoint commit per record (:mod:`progreg.registry.checkpoints`). Each
record's ``checkpoint.json`` ``metadata`` holds a ``run`` object
(:data:`RUN_KEY`, the fields of :class:`RunRecord`); its commit adds the
trailers ``Run-Event``, ``Run-Status`` and, for a candidate, ``Run-Candidate``.
The records are:

- ``start``: the program the optimizer starts from;
- ``candidate``: one evaluated candidate program and its score;
- ``finish``: what the optimizer returned (status ``finished``), or the last
  program known when it raised (status ``failed`` or ``interrupted``).

The newest record says how the run stands; a ``running`` record whose writer
(``pid`` on ``host``) is gone belongs to a run that was killed: its status
reads ``interrupted``. The best candidate so far is also saved on ``main``,
each better one as a new version of one program (``best_program_id``), before
the record that names it is written: a run killed at any point leaves its best
program and its trajectory up to the last record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from progreg.core.layout import CHECKPOINTS_PREFIX
from progreg.core.models import SavedProgram
from progreg.core.secrets import SecretsPolicy
from progreg.errors import CorruptProgramError, ProgregError, RunNotFoundError
from progreg.git.processes import process_gone
from progreg.registry.checkpoints import CheckpointInfo, Checkpoints, checkpoint_ref
from progreg.registry.store import Registry

#: The key of a run's record in ``checkpoint.json``'s ``metadata``.
RUN_KEY = "run"
#: Trailers of a run's checkpoint commits.
RUN_EVENT = "Run-Event"
RUN_STATUS = "Run-Status"
RUN_CANDIDATE = "Run-Candidate"

RunEvent = Literal["start", "candidate", "finish"]
RunStatus = Literal["running", "finished", "failed", "interrupted"]


class RunRecord(BaseModel):
    """What one record of a run says (the ``run`` object of its ``checkpoint.json``)."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    event: RunEvent
    status: RunStatus
    candidate: int | None = None
    score: float | None = None
    minibatch: bool = False
    examples: int | None = None
    candidates: int = 0
    best_score: float | None = None
    best_candidate: int | None = None
    best_program_id: str | None = None
    optimizer: str | None = None
    started_at: str
    pid: int
    host: str
    error: str | None = None
    record_errors: int = 0


class RunSummary(BaseModel):
    """How a run stands: its newest record, with ``interrupted`` for a writer gone."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    status: RunStatus
    candidates: int
    best_score: float | None
    best_candidate: int | None
    best_program_id: str | None
    optimizer: str | None
    started_at: datetime
    updated_at: datetime
    pid: int
    host: str
    error: str | None
    record_errors: int
    commit: str


class RunPoint(BaseModel):
    """One evaluated candidate of a run: its score and the best so far."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    candidate: int
    score: float | None
    minibatch: bool
    examples: int | None
    best_score: float | None
    best_program_id: str | None
    program_id: str
    recorded_at: datetime
    revision: str
    commit: str


def record_of(info: CheckpointInfo) -> RunRecord | None:
    """The run record of a checkpoint; ``None`` for a checkpoint no run wrote."""
    return _record(info.metadata, info.revision, info.commit, info.name)


def _record(metadata: object, revision: str, commit: str, name: str) -> RunRecord | None:
    raw = metadata.get(RUN_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(raw, Mapping) or "event" not in raw:
        return None  # no record, or a caller's own "run" metadata
    try:
        return RunRecord.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise CorruptProgramError(
            f"checkpoint {revision} (commit {commit[:12]}): its run record is"
            f" damaged ({where}: {first['msg']}); delete the run's branch with"
            f" `progreg checkpoint delete {name}`"
        ) from exc


def status_of(record: RunRecord) -> RunStatus:
    """The record's status, ``interrupted`` when it says running and its writer is gone."""
    if record.status == "running" and process_gone(record.pid, record.host):
        return "interrupted"
    return record.status


def write_record(
    registry: Registry,
    name: str,
    program: object,
    optimization_result: object,
    record: RunRecord,
    *,
    secrets: SecretsPolicy = "refuse",
) -> SavedProgram:
    """Add ``record`` with ``program`` to run ``name``'s branch: one checkpoint commit."""
    trailers: list[tuple[str, str]] = [(RUN_EVENT, record.event), (RUN_STATUS, record.status)]
    if record.candidate is not None:
        trailers.append((RUN_CANDIDATE, str(record.candidate)))
    metadata = {RUN_KEY: record.model_dump(mode="json")}
    return Checkpoints(registry).create(
        program, optimization_result, name, metadata, secrets=secrets, trailers=trailers
    )


def has_run(registry: Registry, name: str) -> bool:
    """Whether run (or checkpoint) ``name`` has a branch already."""
    return registry.git.tip(checkpoint_ref(name)) is not None


def _summary(info: CheckpointInfo, record: RunRecord) -> RunSummary:
    return RunSummary(
        name=info.name,
        status=status_of(record),
        candidates=record.candidates,
        best_score=record.best_score,
        best_candidate=record.best_candidate,
        best_program_id=record.best_program_id,
        optimizer=record.optimizer,
        started_at=datetime.fromisoformat(record.started_at),
        updated_at=info.created_at,
        pid=record.pid,
        host=record.host,
        error=record.error,
        record_errors=record.record_errors,
        commit=info.commit,
    )


def list_runs(registry: Registry) -> list[RunSummary]:
    """Every run of the registry, by name (checkpoint branches no run wrote are left out)."""
    summaries = []
    for info in Checkpoints(registry).latest():
        record = record_of(info)
        if record is not None:
            summaries.append(_summary(info, record))
    return summaries


def run_summary(registry: Registry, name: str) -> RunSummary:
    """How run ``name`` stands; :class:`~progreg.RunNotFoundError` when there is no such run."""
    newest = Checkpoints(registry).newest(name)
    record = record_of(newest) if newest is not None else None
    if newest is None or record is None:
        raise _not_found(registry, name, newest is not None)
    return _summary(newest, record)


def run_trajectory(registry: Registry, name: str) -> list[RunPoint]:
    """The evaluated candidates of run ``name``, first first (only manifests are read)."""
    manifests = Checkpoints(registry).manifests(name)
    records = [
        (revision, commit, manifest, _record(manifest.get("metadata"), revision, commit, name))
        for revision, commit, manifest in manifests
    ]
    if not records or records[0][3] is None:
        raise _not_found(registry, name, bool(records))
    points = []
    for revision, commit, manifest, record in reversed(records):
        if record is None or record.event != "candidate" or record.candidate is None:
            continue
        try:
            point = RunPoint(
                candidate=record.candidate,
                score=record.score,
                minibatch=record.minibatch,
                examples=record.examples,
                best_score=record.best_score,
                best_program_id=record.best_program_id,
                program_id=manifest["program_id"],
                recorded_at=manifest.get("created_at"),
                revision=revision,
                commit=commit,
            )
        except ValidationError as exc:
            raise CorruptProgramError(
                f"checkpoint {revision} (commit {commit[:12]}): its checkpoint.json has no"
                " valid created_at; re-create the checkpoint with progreg"
            ) from exc
        points.append(point)
    return points


def _not_found(registry: Registry, name: str, is_checkpoint: bool) -> ProgregError:
    if is_checkpoint:
        return RunNotFoundError(
            f"checkpoint {name} was not written by an optimization run (it has no run"
            " record): `progreg checkpoint log` shows it"
        )
    return RunNotFoundError(
        f"{registry.path} has no run {name} (no branch {CHECKPOINTS_PREFIX}{name}):"
        " `progreg runs` lists the runs"
    )
