"""Optimization runs that survive a crash: a DSPy optimizer's trajectory recorded as it goes.

::

    run = track_run(storage, "mipro-1")
    compiled = run.compile(optimizer, student, trainset=trainset)

:meth:`OptimizationRun.compile` wraps the optimizer's ``compile``: it records
the student (a ``start`` record), installs a DSPy callback for the length of
the call (``dspy.context(callbacks=...)``) that records every evaluation
``dspy.Evaluate`` finishes (a ``candidate`` record: the program and its
score), saves each better candidate on ``main`` as a new version of the run's
program, and at the end saves and records what the optimizer returned (a
``finish`` record). The records and what they say are described in
:mod:`progreg.registry.runs`; each is one commit, written before the
optimizer goes on, so a process killed at any point leaves the best program
so far and the trajectory up to its last evaluation.

Errors. The optimizer's exceptions are never swallowed: the run is recorded
as ``failed`` (``interrupted`` for a ``KeyboardInterrupt``) and the exception
propagates. A registry error while recording a candidate does not stop the
optimization (DSPy would only log it, from a callback): it is logged and
emitted as the ``progreg.run.record_error`` event, kept in
:attr:`OptimizationRun.errors`, and counted in the run's later records
(``record_errors``, shown by ``progreg runs``). So is one while recording the
finish, and ``compile`` returns the optimizer's result all the same (the run
then reads ``interrupted`` once the process ends). A registry error while
recording the start raises: the optimizer has not run yet.

DSPy is imported when a run compiles, never with progreg.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from progreg import events
from progreg.core import canonical
from progreg.core.dspy import is_dspy_module, optimization_result_from, program_state
from progreg.core.ids import check_program_id
from progreg.core.models import SavedProgram
from progreg.core.secrets import SecretsPolicy, check_policy, mask_credentials
from progreg.errors import ConflictError, InvalidInputError, UnsupportedProgramError
from progreg.git.processes import this_host
from progreg.registry.checkpoints import checkpoint_ref
from progreg.registry.runs import RunEvent, RunRecord, RunStatus, has_run, write_record
from progreg.storage import ProgramStorage

#: ``callback_metadata`` of an ``Evaluate`` call that scores a sample of the data
#: (MIPROv2's minibatches; GEPA marks its samples ``disable_logging``): recorded,
#: never a best.
_MINIBATCH_KEY = "eval_minibatch"


class OptimizationRun:
    """One optimizer run recorded in ``storage`` as run ``name``; see the module docstring.

    ``program_id``: the program on ``main`` whose versions are the run's best
    candidates and its result (default: a new program). ``secrets`` is as for
    :meth:`~progreg.ProgramStorage.save_program`.
    """

    def __init__(
        self,
        storage: ProgramStorage,
        name: str,
        *,
        program_id: str | None = None,
        secrets: SecretsPolicy = "refuse",
    ) -> None:
        if not isinstance(storage, ProgramStorage):
            raise InvalidInputError(
                f"track_run needs a ProgramStorage, got a {type(storage).__name__}"
                " (a StorageManager's is its .storage)"
            )
        checkpoint_ref(name)  # a run's name is its checkpoint branch's
        self.storage = storage
        self.name = name
        self._program_id = check_program_id(program_id) if program_id is not None else None
        self._secrets = check_policy(secrets)
        self._lock = threading.Lock()
        self._optimizer: str | None = None
        self._started_at = ""
        self._started = False
        self._candidates = 0
        self._best_score: float | None = None
        self._best_candidate: int | None = None
        self._best_examples = 0
        #: The score of each evaluated state: on the most examples, the highest.
        self._scores_by_state: dict[str, tuple[int, float]] = {}
        self._last_program: object = None
        #: The best candidate's save on ``main`` (then the optimizer's result), if any.
        self.best: SavedProgram | None = None
        #: What went wrong recording candidates (the optimization went on).
        self.errors: list[str] = []
        #: Seconds each candidate's recording took (its save and checkpoint commits).
        self.record_seconds: list[float] = []

    def __repr__(self) -> str:
        return f"OptimizationRun({self.name!r}, candidates={self._candidates})"

    @property
    def candidates(self) -> int:
        """How many evaluated candidates were seen so far."""
        return self._candidates

    @property
    def best_score(self) -> float | None:
        """The best score of a candidate so far (a fraction, 0 to 1)."""
        return self._best_score

    @property
    def program_id(self) -> str | None:
        """The run's program on ``main`` (``None`` until something was saved)."""
        return self._program_id

    def compile(self, optimizer: Any, student: Any, **kwargs: Any) -> Any:
        """``optimizer.compile(student, **kwargs)``, recorded; returns what it returns.

        Raises :class:`~progreg.ConflictError` when run ``name`` exists already
        (a run compiles once; pick another name), and what the optimizer raises.
        """
        dspy = _import_dspy()
        if not callable(getattr(optimizer, "compile", None)):
            raise InvalidInputError(
                f"run {self.name}: a DSPy optimizer has a compile() method; got a"
                f" {type(optimizer).__name__}"
            )
        if not is_dspy_module(student):
            raise UnsupportedProgramError(
                f"run {self.name}: the student must be a dspy.Module, got a"
                f" {type(student).__name__}"
            )
        if self._started or has_run(self.storage.registry, self.name):
            raise ConflictError(
                f"run {self.name} exists already: a run records one compile; choose another"
                f" name, or delete it first (progreg checkpoint delete {self.name})"
            )
        self._optimizer = type(optimizer).__name__
        self._started_at = datetime.now(UTC).isoformat()
        self._write("start", "running", student, {"metadata": {"optimizer": self._optimizer}})
        self._started = True
        self._last_program = student
        events.emit("progreg.run.start", run=self.name, optimizer=self._optimizer)
        callbacks = [*dspy.settings.get("callbacks", []), _callback(self)]
        try:
            with dspy.context(callbacks=callbacks):
                compiled = optimizer.compile(student, **kwargs)
        except BaseException as exc:
            status: RunStatus = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            error = mask_credentials(f"{type(exc).__name__}: {exc}")[:500]
            try:
                with self._lock:
                    self._write("finish", status, self._last_program, None, error=error)
            except Exception as record_exc:  # the optimizer's exception is the one to see
                self._record_failed(record_exc, None)
            events.emit("progreg.run.finish", run=self.name, status=status)
            raise
        self._finish(compiled)
        return compiled

    # -- records --------------------------------------------------------------------

    def _record(self, **fields: Any) -> RunRecord:
        return RunRecord(
            candidates=self._candidates,
            best_score=self._best_score,
            best_candidate=self._best_candidate,
            best_program_id=None if self.best is None else self.best.program_id,
            optimizer=self._optimizer,
            started_at=self._started_at,
            pid=os.getpid(),
            host=this_host(),
            record_errors=len(self.errors),
            **fields,
        )

    def _write(
        self,
        event: RunEvent,
        status: RunStatus,
        program: object,
        result: object,
        **fields: Any,
    ) -> SavedProgram:
        record = self._record(event=event, status=status, **fields)
        return write_record(
            self.storage.registry, self.name, program, result, record, secrets=self._secrets
        )

    def _save(self, program: object, result: object, event: RunEvent) -> None:
        """Save ``program`` on ``main`` as the newest version of the run's program."""
        metadata = {"run": self.name, "run_event": event, "run_candidate": self._candidates}
        self.best = self.storage.save_program(
            program, result, metadata, self._program_id, secrets=self._secrets
        )
        self._program_id = self.best.program_id

    def candidate(self, program: object, evaluation: object, minibatch: bool) -> None:
        """Record one evaluated candidate (the callback calls this); never raises."""
        began = time.perf_counter()
        with self._lock:
            self._candidates += 1
            number = self._candidates
            try:
                result = optimization_result_from(program, evaluation, optimizer=self._optimizer)
                score = result.best_score_value
                examples = result.metadata.get("evaluated_examples")
                size = examples if isinstance(examples, int) else 0
                if not minibatch and score is not None and self._improves(score, size):
                    self._save(program, result, "candidate")
                    self._best_score, self._best_candidate = score, number
                    self._best_examples = size
                saved = self._write(
                    "candidate",
                    "running",
                    program,
                    result,
                    candidate=number,
                    score=score,
                    minibatch=minibatch,
                    examples=examples,
                )
                self._last_program = program
                if not minibatch and score is not None:
                    key = _state_key(saved.state)
                    known = self._scores_by_state.get(key, (size, score))
                    self._scores_by_state[key] = max(known, (size, score))
            except Exception as exc:  # the optimization goes on; see the module docstring
                self._record_failed(exc, number)
        self.record_seconds.append(time.perf_counter() - began)

    def _improves(self, score: float, size: int) -> bool:
        """Whether a candidate scored on ``size`` examples is the new best.

        A score on more examples than the best's supersedes it whatever its
        value (the best was scored on a sample); one on fewer never counts.
        """
        if self._best_score is None:
            return True
        if size != self._best_examples:
            return size > self._best_examples
        return score > self._best_score

    def _finish(self, compiled: object) -> None:
        """Save what the optimizer returned and record the run as finished.

        A registry error here is reported (see the module docstring) and the
        result still returned: the optimization succeeded, and its candidates
        are recorded.
        """
        with self._lock:
            try:
                score = self._score_of(compiled)
                result: dict[str, Any] = {
                    "best_score_value": score,
                    "best_score_name": "score" if score is not None else None,
                    "metadata": {"optimizer": self._optimizer},
                }
                self._save(compiled, result, "finish")
                self._write("finish", "finished", compiled, result, score=score)
            except Exception as exc:
                self._record_failed(exc, None)
                return
        events.emit(
            "progreg.run.finish",
            run=self.name,
            status="finished",
            candidates=self._candidates,
            program_id=self._program_id,
        )

    def _score_of(self, compiled: object) -> float | None:
        """The score of the evaluated candidate ``compiled`` is (the same state), if any."""
        if not is_dspy_module(compiled) or not self._scores_by_state:
            return None
        _, state, _ = program_state(compiled, redact=self._secrets == "redact")
        known = self._scores_by_state.get(_state_key(state))
        return None if known is None else known[1]

    def _record_failed(self, exc: BaseException, candidate: int | None) -> None:
        message = mask_credentials(f"{type(exc).__name__}: {exc}")[:500]
        self.errors.append(message)
        events.emit("progreg.run.record_error", run=self.name, candidate=candidate, error=message)


def track_run(
    storage: ProgramStorage,
    name: str,
    *,
    program_id: str | None = None,
    secrets: SecretsPolicy = "refuse",
) -> OptimizationRun:
    """A run named ``name`` to record in ``storage``: call its ``compile``.

    See :class:`OptimizationRun` for ``program_id`` and ``secrets``.
    """
    return OptimizationRun(storage, name, program_id=program_id, secrets=secrets)


def _better(score: float, best: float | None) -> bool:
    return best is None or score > best


def _state_key(state: Mapping[str, Any]) -> str:
    """A digest of a program's state without its metadata (dependency versions)."""
    body = {key: value for key, value in state.items() if key != "metadata"}
    return hashlib.sha256(canonical.encode(body, "program state")).hexdigest()


def _import_dspy() -> Any:
    try:
        import dspy  # noqa: PLC0415 (DSPy loads only when a run compiles)
    except ImportError as exc:
        raise UnsupportedProgramError(
            "recording an optimization run needs DSPy: pip install dspy"
        ) from exc
    return dspy


def _callback(run: OptimizationRun) -> Any:
    """A DSPy callback recording the evaluations that end while it is installed."""
    from dspy.utils.callback import BaseCallback  # noqa: PLC0415 (see _import_dspy)

    class RunCallback(BaseCallback):  # type: ignore[misc]  # DSPy has no type information
        """Hands each finished ``dspy.Evaluate`` call's program and result to the run."""

        def __init__(self) -> None:
            super().__init__()
            self._pending: dict[str, tuple[object, bool]] = {}

        def on_evaluate_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            meta = inputs.get("callback_metadata")
            minibatch = isinstance(meta, Mapping) and (
                meta.get("metric_key") == _MINIBATCH_KEY or bool(meta.get("disable_logging"))
            )
            self._pending[call_id] = (inputs.get("program"), minibatch)

        def on_evaluate_end(
            self, call_id: str, outputs: Any, exception: BaseException | None = None
        ) -> None:
            started = self._pending.pop(call_id, None)
            if started is None or exception is not None or outputs is None:
                return
            program, minibatch = started
            run.candidate(program, outputs, minibatch)

    return RunCallback()
