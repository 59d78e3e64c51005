"""``progreg runs``: the table of runs, one run's trajectory, its JSON and its HTML plot.

The runs are recorded for real (``progreg.track_run`` around a scripted DSPy
optimizer that evaluates given candidates, with the fake LM of
:mod:`support.dspy_toy`), then read through click's runner.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

pytest.importorskip("dspy", reason="the dspy extra is not installed")

import dspy
from dspy.teleprompt import Teleprompter

from progreg import ProgramStorage, track_run
from progreg.cli import cli
from support.dspy_toy import exact_match, student, toy_lm, trainset, with_demos


class Scripted(Teleprompter):  # type: ignore[misc]
    """Evaluates ``candidates`` in turn and returns the last one."""

    def __init__(self, candidates: list[Any]) -> None:
        super().__init__()
        self.candidates = candidates

    def compile(self, student: Any, *, trainset: list[Any], **kwargs: Any) -> Any:
        evaluate = dspy.Evaluate(devset=trainset, metric=exact_match, num_threads=1)
        for candidate in self.candidates:
            evaluate(candidate)
        return self.candidates[-1]


def progreg(registry: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--registry", str(registry), *args])


@pytest.fixture
def recorded(storage: ProgramStorage) -> ProgramStorage:
    """A registry with run ``demos-1``: candidates scoring 1/6, 3/6 and 2/6."""
    with dspy.context(lm=toy_lm()):
        track_run(storage, "demos-1").compile(
            Scripted([with_demos(1), with_demos(3), with_demos(2)]), student(), trainset=trainset()
        )
    return storage


def test_runs_lists_each_run_with_its_status_and_best(recorded: ProgramStorage) -> None:
    result = progreg(recorded.path, "runs")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split()[:5] == ["RUN", "STATUS", "CANDIDATES", "BEST", "PROGRAM"]
    program_id = recorded.run("demos-1").best_program_id
    assert row.split()[:5] == ["demos-1", "finished", "3", "0.5000", program_id]

    listed = json.loads(progreg(recorded.path, "runs", "--json").stdout)
    assert [run["name"] for run in listed] == ["demos-1"]
    assert listed[0]["status"] == "finished"
    assert listed[0]["best_score"] == pytest.approx(0.5, abs=1e-4)
    assert listed[0]["best_candidate"] == 2


def test_runs_name_shows_the_trajectory(recorded: ProgramStorage) -> None:
    result = progreg(recorded.path, "runs", "demos-1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "run demos-1: finished, 3 candidates, best 0.5000 (candidate 2)"
    )
    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"[0-9]+ ", line)]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("1", "0.1667", "0.1667"),
        ("2", "0.5000", "0.5000"),
        ("3", "0.3333", "0.5000"),
    ]
    shown = json.loads(progreg(recorded.path, "runs", "demos-1", "--json").stdout)
    assert shown["run"]["name"] == "demos-1"
    assert [point["candidate"] for point in shown["trajectory"]] == [1, 2, 3]
    assert [point["revision"] for point in shown["trajectory"]] == [
        "demos-1~3",
        "demos-1~2",
        "demos-1~1",
    ]


def test_runs_plot_writes_the_trajectory_as_html(recorded: ProgramStorage, tmp_path: Path) -> None:
    report = tmp_path / "run.html"
    result = progreg(recorded.path, "runs", "demos-1", "--plot", str(report))
    assert result.exit_code == 0, result.output
    assert f"wrote {report}: run demos-1, 3 candidates" in result.stderr
    html = report.read_text()
    assert "<script" not in html
    assert ">recorded at (UTC)</text>" in html and "saved at (UTC)" not in html
    lines = dict(re.findall(r'data-signature="([^"]+)">\s*<polyline[^>]*points="([^"]+)"', html))
    assert set(lines) == {"candidate score", "best so far"}
    assert len(lines["candidate score"].split()) == 3
    assert len(lines["best so far"].split()) == 3
    assert html.count("<tr>") == 1 + 3  # the header and one row per candidate
    assert "candidate score &middot; 3 candidates, best 0.5000, latest 0.3333" in html


def test_runs_errors(recorded: ProgramStorage, tmp_path: Path) -> None:
    missing = progreg(recorded.path, "runs", "nope")
    assert missing.exit_code == 3
    assert missing.stderr.startswith("error: ") and "no run nope" in missing.stderr
    no_name = progreg(recorded.path, "runs", "--plot", str(tmp_path / "x.html"))
    assert no_name.exit_code == 2 and "NAME" in no_name.stderr
    not_html = progreg(recorded.path, "runs", "demos-1", "--plot", str(tmp_path / "x.png"))
    assert not_html.exit_code == 2
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.png").exists()
    bad_name = progreg(recorded.path, "runs", "a/b")
    assert bad_name.exit_code == 1 and "invalid checkpoint name" in bad_name.stderr


def test_runs_on_a_registry_without_runs_says_how_to_record_one(storage: ProgramStorage) -> None:
    storage.save_program({"instructions": "no runs here"})
    result = progreg(storage.path, "runs")
    assert result.exit_code == 0 and result.stdout == ""
    assert "track_run" in result.stderr
    assert json.loads(progreg(storage.path, "runs", "--json").stdout) == []
