"""Optimization runs recorded with ``progreg.track_run``: real DSPy, a fake LM, no network.

The optimizers are DSPy's own (``BootstrapFewShotWithRandomSearch``,
``BootstrapFewShot``) and small scripted ones that evaluate given candidates
with ``dspy.Evaluate``; the LM is the deterministic fake of
:mod:`support.dspy_toy`. What a run wrote is checked with the ``git`` command
line and with progreg's readers; a run killed with SIGKILL in the middle of
``compile`` must leave its best program and its trajectory readable.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pygit2
import pytest

from support.gitcli import assert_fsck_clean, git, registry_state

pytest.importorskip("dspy", reason="the dspy extra is not installed")

import dspy
from dspy.teleprompt import BootstrapFewShot, BootstrapFewShotWithRandomSearch, Teleprompter
from dspy.utils.callback import BaseCallback

from progreg import (
    ConflictError,
    CorruptProgramError,
    Event,
    InvalidInputError,
    InvalidNameError,
    ProgramStorage,
    RunNotFoundError,
    StorageManager,
    UnsupportedProgramError,
    subscribe,
    track_run,
)
from progreg.cli import cli
from progreg.registry.validation import RefUpdate, validate_ref_update
from support.dspy_toy import exact_match, student, toy_lm, trainset, with_demos
from support.workers import TESTS, WORKERS

#: A key in the format of an OpenAI project key: a program holding it is refused.
API_KEY = "sk-proj-TESTKEY0123456789abcdefghijklmnopqrstuv"


class EvaluationCounter(BaseCallback):  # type: ignore[misc]
    """Counts the ``dspy.Evaluate`` calls that end with a result, and their scores."""

    def __init__(self) -> None:
        super().__init__()
        self.scores: list[float] = []

    def on_evaluate_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
        if exception is None and outputs is not None:
            self.scores.append(outputs.score / 100)


class Scripted(Teleprompter):  # type: ignore[misc]
    """Evaluates ``candidates`` in turn, then raises ``fail`` or returns the last one."""

    def __init__(self, candidates: list[Any], fail: BaseException | None = None) -> None:
        super().__init__()
        self.candidates = candidates
        self.fail = fail

    def compile(self, student: Any, *, trainset: list[Any], **kwargs: Any) -> Any:
        evaluate = dspy.Evaluate(devset=trainset, metric=exact_match, num_threads=1)
        for candidate in self.candidates:
            evaluate(candidate)
        if self.fail is not None:
            raise self.fail
        return self.candidates[-1]


class Minibatches(Teleprompter):  # type: ignore[misc]
    """Scores candidates as MIPROv2 and GEPA do: on samples, marked or not, and in full."""

    def compile(self, student: Any, *, trainset: list[Any], **kwargs: Any) -> Any:
        evaluate = dspy.Evaluate(devset=trainset, metric=exact_match, num_threads=1)
        marked = {"metric_key": "eval_minibatch"}
        evaluate(with_demos(6), devset=trainset[:2], callback_metadata=marked)  # 1.0, marked
        evaluate(with_demos(2), devset=trainset[:2])  # 1.0 on a sample: the best, for now
        evaluate(with_demos(1), devset=trainset[:2])  # 0.5 on the same sample
        evaluate(with_demos(3))  # 0.5 on all 6: supersedes the sample's 1.0
        evaluate(with_demos(6), devset=trainset[2:4])  # 1.0 on a sample: never a best now
        evaluate(with_demos(4), callback_metadata={"metric_key": "eval_full"})  # 4/6
        return with_demos(4)


def checkpoint_commits(storage: ProgramStorage, name: str) -> int:
    return int(git(storage.path, "rev-list", "--count", f"refs/heads/checkpoints/{name}"))


def trailer_values(storage: ProgramStorage, name: str, key: str) -> list[str]:
    out = git(
        storage.path,
        "log",
        "--reverse",
        f"--format=%(trailers:key={key},valueonly)",
        f"refs/heads/checkpoints/{name}",
    )
    return [line for line in out.splitlines() if line.strip()]


def test_random_search_records_every_candidate_and_saves_the_best(
    storage: ProgramStorage,
) -> None:
    counter = EvaluationCounter()
    optimizer = BootstrapFewShotWithRandomSearch(
        metric=exact_match,
        max_bootstrapped_demos=2,
        max_labeled_demos=3,
        num_candidate_programs=4,
        num_threads=1,
    )
    run = track_run(storage, "random-1")
    with dspy.context(lm=toy_lm(), callbacks=[counter]):
        compiled = run.compile(optimizer, student(), trainset=trainset())

    evaluations = len(counter.scores)
    assert evaluations >= 5  # DSPy evaluated several candidates
    assert len(set(counter.scores)) > 1  # and they scored differently
    # one commit per evaluation, plus the start and the finish
    assert checkpoint_commits(storage, "random-1") == evaluations + 2
    assert trailer_values(storage, "random-1", "Run-Event") == [
        "start",
        *["candidate"] * evaluations,
        "finish",
    ]
    assert trailer_values(storage, "random-1", "Run-Candidate") == [
        str(n) for n in range(1, evaluations + 1)
    ]
    points = storage.run_trajectory("random-1")
    assert [p.candidate for p in points] == list(range(1, evaluations + 1))
    assert [p.score for p in points] == pytest.approx(counter.scores, abs=1e-4)
    best_so_far = [max(counter.scores[: n + 1]) for n in range(evaluations)]
    assert [p.best_score for p in points] == pytest.approx(best_so_far, abs=1e-4)

    summary = storage.run("random-1")
    assert summary.status == "finished"
    assert summary.candidates == evaluations
    assert summary.best_score == pytest.approx(max(counter.scores), abs=1e-4)
    assert summary.best_candidate == counter.scores.index(max(counter.scores)) + 1
    assert summary.optimizer == "BootstrapFewShotWithRandomSearch"
    assert summary.pid == os.getpid()
    assert storage.runs() == [summary]

    # main holds one program: each better candidate, then the result, as its versions
    assert storage.program_ids() == [summary.best_program_id]
    versions = storage.versions(summary.best_program_id or "")
    improvements = len(set(best_so_far))
    assert len(versions) == improvements + 1
    scores = [v.optimization_result["best_score_value"] for v in reversed(versions[1:])]
    assert scores == pytest.approx(sorted(set(best_so_far)), abs=1e-4)
    # random search returns its best candidate: the result is scored with it
    assert versions[0].optimization_result["best_score_value"] == summary.best_score
    loaded = storage.load_program(summary.best_program_id or "", into=student())
    assert loaded is not None
    assert [d["question"] for d in loaded.program.demos] == [d["question"] for d in compiled.demos]
    assert run.errors == []
    assert_fsck_clean(storage.path)
    # a server's pre-receive checks accept the run's branch and main as pushed anew
    repo = pygit2.Repository(str(storage.path))
    main = str(repo.references["refs/heads/main"].target)
    for ref in ("refs/heads/main", "refs/heads/checkpoints/random-1"):
        update = RefUpdate(old="0" * 40, new=str(repo.references[ref].target), ref=ref)
        assert validate_ref_update(repo, update, main_tip=main) == [], ref


def test_mipro_v2_records_each_trial_and_saves_its_best(storage: ProgramStorage) -> None:
    pytest.importorskip("optuna", reason="MIPROv2 searches with optuna")
    counter = EvaluationCounter()
    lm = toy_lm()
    optimizer = dspy.MIPROv2(
        metric=exact_match,
        prompt_model=lm,
        task_model=lm,
        auto=None,
        num_candidates=2,
        max_bootstrapped_demos=2,
        max_labeled_demos=2,
        num_threads=1,
        verbose=False,
    )
    run = track_run(storage, "mipro-1")
    with dspy.context(lm=lm, callbacks=[counter]):
        compiled = run.compile(
            optimizer,
            student(),
            trainset=trainset(),
            valset=trainset(),
            num_trials=3,
            minibatch=False,
            requires_permission_to_run=False,
        )

    evaluations = len(counter.scores)
    assert evaluations >= 3  # the default program and the trials, each on the whole valset
    assert len(set(counter.scores)) > 1
    assert checkpoint_commits(storage, "mipro-1") == evaluations + 2
    points = storage.run_trajectory("mipro-1")
    assert [p.score for p in points] == pytest.approx(counter.scores, abs=1e-4)
    summary = storage.run("mipro-1")
    assert (summary.status, summary.candidates) == ("finished", evaluations)
    assert summary.optimizer == "MIPROv2"
    assert summary.best_score == pytest.approx(max(counter.scores), abs=1e-4)
    # MIPROv2 scores its best in percent: the same best as the run's
    assert compiled.score == pytest.approx(100 * max(counter.scores), abs=0.01)
    loaded = storage.load_program(summary.best_program_id or "", into=student())
    assert loaded is not None
    assert [d["question"] for d in loaded.program.demos] == [d["question"] for d in compiled.demos]
    assert run.errors == []
    assert_fsck_clean(storage.path)


def test_bootstrap_fewshot_evaluates_nothing_and_its_result_is_saved(
    storage: ProgramStorage,
) -> None:
    optimizer = BootstrapFewShot(metric=exact_match, max_bootstrapped_demos=2, max_labeled_demos=3)
    with dspy.context(lm=toy_lm()):
        compiled = track_run(storage, "bootstrap-1").compile(
            optimizer, student(), trainset=trainset()
        )
    summary = storage.run("bootstrap-1")
    assert (summary.status, summary.candidates, summary.best_score) == ("finished", 0, None)
    assert storage.run_trajectory("bootstrap-1") == []
    assert trailer_values(storage, "bootstrap-1", "Run-Event") == ["start", "finish"]
    saved = storage.load_program(summary.best_program_id or "", into=student())
    assert saved is not None and saved.best_score is None  # the optimizer gave no score
    assert saved.optimization_result["metadata"]["optimizer"] == "BootstrapFewShot"
    assert [d["question"] for d in saved.program.demos] == [d["question"] for d in compiled.demos]
    assert compiled.demos  # the result really has demos to compare
    assert_fsck_clean(storage.path)


def test_the_optimizer_exception_propagates_and_the_run_is_failed(
    storage: ProgramStorage,
) -> None:
    optimizer = Scripted([with_demos(2), with_demos(4)], fail=ValueError("out of budget"))
    run = track_run(storage, "failing")
    with dspy.context(lm=toy_lm()), pytest.raises(ValueError, match="out of budget"):
        run.compile(optimizer, student(), trainset=trainset())
    summary = storage.run("failing")
    assert summary.status == "failed"
    assert summary.error == "ValueError: out of budget"
    assert summary.best_score == pytest.approx(4 / 6, abs=1e-4)
    assert [p.score for p in storage.run_trajectory("failing")] == pytest.approx(
        [2 / 6, 4 / 6], abs=1e-4
    )
    # the best so far stays on main; the failure record holds the last candidate
    best = storage.load_program(summary.best_program_id or "", into=student())
    assert best is not None and len(best.program.demos) == 4
    assert trailer_values(storage, "failing", "Run-Status")[-1] == "failed"


def test_scores_on_samples_are_recorded_but_never_beat_a_score_on_more_examples(
    storage: ProgramStorage,
) -> None:
    with dspy.context(lm=toy_lm()):
        track_run(storage, "mini").compile(Minibatches(), student(), trainset=trainset())
    points = storage.run_trajectory("mini")
    assert [(p.minibatch, p.examples) for p in points] == [
        (True, 2),
        (False, 2),
        (False, 2),
        (False, 6),
        (False, 2),
        (False, 6),
    ]
    assert [p.score for p in points] == pytest.approx([1.0, 1.0, 0.5, 0.5, 1.0, 0.6667], abs=1e-4)
    assert [p.best_score for p in points] == pytest.approx(
        [None, 1.0, 1.0, 0.5, 0.5, 0.6667], abs=1e-4
    )
    summary = storage.run("mini")
    assert summary.best_candidate == 6
    versions = storage.versions(summary.best_program_id or "")
    # candidates 2, 4 and 6, then the result (scored as candidate 6, the same state)
    assert [v.best_score for v in reversed(versions)] == pytest.approx(
        [1.0, 0.5, 0.6667, 0.6667], abs=1e-4
    )


def test_a_run_given_a_program_id_adds_versions_to_that_program(
    storage: ProgramStorage,
) -> None:
    first = storage.save_program(with_demos(1), {"best_score_value": 0.1})
    run = track_run(storage, "continued", program_id=first.program_id)
    with dspy.context(lm=toy_lm()):
        run.compile(Scripted([with_demos(2), with_demos(4)]), student(), trainset=trainset())
    # no record names the program before the run saved a version of it
    start = json.loads(git(storage.path, "show", "checkpoints/continued~3:checkpoint.json"))
    assert start["metadata"]["run"]["event"] == "start"
    assert start["metadata"]["run"]["best_program_id"] is None
    assert [point.best_program_id for point in storage.run_trajectory("continued")] == [
        first.program_id,
        first.program_id,
    ]
    assert storage.program_ids() == [first.program_id]
    scores = [v.best_score for v in reversed(storage.versions(first.program_id))]
    assert scores == pytest.approx([0.1, 2 / 6, 4 / 6, 4 / 6], abs=1e-4)


def test_a_keyboard_interrupt_marks_the_run_interrupted(storage: ProgramStorage) -> None:
    optimizer = Scripted([with_demos(1)], fail=KeyboardInterrupt())
    with dspy.context(lm=toy_lm()), pytest.raises(KeyboardInterrupt):
        track_run(storage, "stopped").compile(optimizer, student(), trainset=trainset())
    assert storage.run("stopped").status == "interrupted"


def test_a_candidate_that_cannot_be_recorded_does_not_stop_the_optimization(
    storage: ProgramStorage,
) -> None:
    leaky = with_demos(5)
    leaky.signature = leaky.signature.with_instructions(f"Use the key {API_KEY}.")
    optimizer = Scripted([with_demos(1), leaky, with_demos(3)])
    seen: list[Event] = []
    unsubscribe = subscribe(seen.append)
    try:
        run = track_run(storage, "leaky")
        with dspy.context(lm=toy_lm()):
            compiled = run.compile(optimizer, student(), trainset=trainset())
    finally:
        unsubscribe()
    assert len(compiled.demos) == 3  # the optimization finished
    assert len(run.errors) == 1 and "SecretDetectedError" in run.errors[0]
    assert API_KEY not in run.errors[0]
    failures = [e for e in seen if e.name == "progreg.run.record_error"]
    assert [e.fields["candidate"] for e in failures] == [2]
    summary = storage.run("leaky")
    assert (summary.status, summary.candidates, summary.record_errors) == ("finished", 3, 1)
    assert [p.candidate for p in storage.run_trajectory("leaky")] == [1, 3]
    assert summary.best_score == pytest.approx(3 / 6, abs=1e-4)
    assert API_KEY not in git(storage.path, "log", "--all", "-p")
    assert_fsck_clean(storage.path)


def test_a_result_that_cannot_be_saved_is_still_returned(storage: ProgramStorage) -> None:
    leaky = with_demos(2)
    leaky.signature = leaky.signature.with_instructions(f"Use the key {API_KEY}.")
    run = track_run(storage, "leaky-result")
    with dspy.context(lm=toy_lm()):
        compiled = run.compile(Scripted([leaky]), student(), trainset=trainset())
    assert compiled is leaky  # the optimization's result reaches the caller
    assert [e.split(":")[0] for e in run.errors] == ["SecretDetectedError", "SecretDetectedError"]
    # neither the candidate nor the finish could be recorded: the start is the newest
    summary = storage.run("leaky-result")
    assert (summary.status, summary.candidates) == ("running", 0)  # this process still runs
    assert trailer_values(storage, "leaky-result", "Run-Event") == ["start"]
    assert API_KEY not in git(storage.path, "log", "--all", "-p")


def test_bad_calls_raise_typed_errors_and_write_nothing(storage: ProgramStorage) -> None:
    storage.save_program({"instructions": "keep the registry non-empty"})
    before = registry_state(storage.path)
    with pytest.raises(InvalidNameError):
        track_run(storage, "no/slashes")
    with pytest.raises(InvalidInputError, match="ProgramStorage"):
        track_run("./registry", "run")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="compile"):
        track_run(storage, "run").compile(object(), student(), trainset=trainset())
    with pytest.raises(UnsupportedProgramError, match=r"dspy\.Module"):
        track_run(storage, "run").compile(BootstrapFewShot(), {"not": "a module"})
    with pytest.raises(RunNotFoundError, match="progreg runs"):
        storage.run_trajectory("never-ran")
    with pytest.raises(RunNotFoundError):
        storage.run("never-ran")
    assert registry_state(storage.path) == before
    with dspy.context(lm=toy_lm()):
        track_run(storage, "once").compile(
            Scripted([with_demos(1)]), student(), trainset=trainset()
        )
    after_first = registry_state(storage.path)
    with pytest.raises(ConflictError, match="exists already"):
        track_run(storage, "once").compile(
            Scripted([with_demos(1)]), student(), trainset=trainset()
        )
    assert registry_state(storage.path) == after_first


def test_a_checkpoint_no_run_wrote_is_not_a_run(storage: ProgramStorage) -> None:
    manager = StorageManager(storage=storage)
    manager.create_checkpoint({"optimized_program": {"instructions": "x"}}, "plain")
    # a caller's own "run" metadata is not a run's record
    manager.create_checkpoint({"optimized_program": {"x": 1}}, "own", {"run": {"id": 3}})
    assert storage.runs() == []
    with pytest.raises(RunNotFoundError, match="not written by an optimization run"):
        storage.run("plain")
    with pytest.raises(RunNotFoundError, match="not written by an optimization run"):
        storage.run_trajectory("own")


def test_a_damaged_run_record_is_a_typed_error_naming_the_checkpoint(
    storage: ProgramStorage,
) -> None:
    with dspy.context(lm=toy_lm()):
        track_run(storage, "fine").compile(
            Scripted([with_demos(1)]), student(), trainset=trainset()
        )
    damaged = {"run": {"event": "candidate", "status": "exploded", "candidate": 1}}
    StorageManager(storage=storage).create_checkpoint(
        {"optimized_program": {"x": 1}}, "fine", damaged
    )
    for call in (storage.runs, lambda: storage.run("fine"), lambda: storage.run_trajectory("fine")):
        with pytest.raises(CorruptProgramError, match=r"checkpoint fine .*run record is damaged"):
            call()


def test_a_run_killed_in_the_middle_of_compile_leaves_its_best_and_trajectory(
    storage: ProgramStorage, python: str
) -> None:
    storage.save_program({"instructions": "created before the run"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    worker = subprocess.Popen(
        [python, str(WORKERS / "run_worker.py"), str(storage.path), "killed"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ref = "refs/heads/checkpoints/killed"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            assert time.monotonic() < deadline, "the run recorded no 2 candidates in 60 s"
            done = subprocess.run(
                ["git", "-C", str(storage.path), "rev-list", "--count", ref],
                capture_output=True,
                text=True,
                check=False,
            )
            # the start record and at least two candidates
            if done.returncode == 0 and int(done.stdout) >= 3:
                break
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()  # reaped: a zombie would still answer kill(pid, 0)
    assert worker.returncode == -signal.SIGKILL

    assert_fsck_clean(storage.path)
    summary = storage.run("killed")
    assert summary.status == "interrupted"
    assert summary.pid == worker.pid
    points = storage.run_trajectory("killed")
    assert len(points) >= 2
    assert summary.candidates == points[-1].candidate
    assert summary.best_score == max(p.score for p in points if p.score is not None)
    best = storage.load_program(summary.best_program_id or "", into=student())
    assert best is not None
    assert best.best_score == summary.best_score
    assert isinstance(best.program, dspy.Predict)
    with dspy.context(lm=toy_lm()):
        evaluation = dspy.Evaluate(devset=trainset(), metric=exact_match, num_threads=1)(
            best.program
        )
    assert evaluation.score / 100 == pytest.approx(summary.best_score, abs=1e-4)

    from click.testing import CliRunner  # noqa: PLC0415

    result = CliRunner().invoke(cli, ["--registry", str(storage.path), "runs"])
    assert result.exit_code == 0, result.output
    assert "killed  interrupted" in result.output
    # the registry is still writable where the run left it
    storage.save_program({"instructions": "after the kill"})
    assert_fsck_clean(storage.path)


def test_recording_a_candidate_costs_milliseconds(storage: ProgramStorage) -> None:
    candidates = [with_demos(n % 7) for n in range(12)]
    run = track_run(storage, "timed")
    with dspy.context(lm=toy_lm()):
        run.compile(Scripted(candidates), student(), trainset=trainset())
    assert len(run.record_seconds) == 12
    median = statistics.median(run.record_seconds)
    print(
        f"recording a candidate: median {median * 1000:.1f} ms,"
        f" max {max(run.record_seconds) * 1000:.1f} ms"
    )
    assert median < 0.5  # one or two commits each; a generous bound on a loaded machine


def test_progreg_imports_no_dspy_for_runs(tmp_path: Path) -> None:
    code = (
        "import sys, progreg; from progreg import ProgramStorage, track_run;"
        f" s = ProgramStorage({str(tmp_path / 'r')!r}); print(s.runs());"
        " print('dspy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "False"]
