"""The subcommands of ``progreg`` for the library's capabilities, through click's runner.

Each command is checked for its output, its ``--json`` shape, exit code 3
for what is not there, 1 or 2 for bad input, and one-line errors; a last
test drives the installed executable through a whole session.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from progreg import ProgramStorage, StorageConfig, StorageManager
from progreg.cli import cli
from progreg.cli.inputs import parse_program
from progreg.cli.output import progress, use_color
from progreg.cli.plot import nice_ticks
from progreg.errors import InvalidInputError, InvalidNameError
from support.gitcli import assert_fsck_clean, git, registry_state

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SAVED_KEYS = {
    "program_id",
    "program_type",
    "state",
    "optimization_result",
    "metadata",
    "saved_at",
    "commit",
    "unchanged",
}
SUMMARY_KEYS = {
    "program_id",
    "saved_at",
    "best_score",
    "score_name",
    "optimizer",
    "signature_class",
    "metadata",
}
CHECKPOINT_KEYS = {
    "name",
    "revision",
    "commit",
    "program_id",
    "created_at",
    "best_score",
    "optimizer",
    "signature_class",
    "metadata",
}


def program_state(instructions: str, demos: Sequence[str] = ("a",)) -> dict[str, Any]:
    """A ChainOfThought-shaped state."""
    return {
        "predict": {
            "signature": {
                "instructions": instructions,
                "fields": [
                    {"prefix": "Text:", "description": "${text}"},
                    {"prefix": "Label:", "description": "positive or negative"},
                ],
            },
            "demos": [{"text": text, "label": "positive"} for text in demos],
        }
    }


def save(
    storage: ProgramStorage,
    signature: str | None = "ClassifyText",
    score: float | None = 0.8,
    optimizer: str | None = "MIPROv2",
    instructions: str = "Classify the text.",
    tags: Sequence[str] = (),
) -> str:
    """Save a program through the library; return its id."""
    result: dict[str, Any] = {"best_score_value": score, "best_score_name": "accuracy"}
    if optimizer is not None:
        result["metadata"] = {"optimizer": optimizer}
    metadata = {"signature_class": signature} if signature else {}
    saved = storage.save_program(program_state(instructions), result, metadata, tags=tags)
    return saved.program_id


def run(
    registry: Path,
    *args: str,
    input: str | bytes | None = None,
    env: dict[str, str] | None = None,
    color: bool = False,
) -> Result:
    """``progreg --registry REGISTRY ARGS...`` through click's runner."""
    return CliRunner().invoke(
        cli, ["--registry", str(registry), *args], input=input, env=env, color=color
    )


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def fails(result: Result, code: int, message: str) -> None:
    """The command failed with ``code`` and one line ``error: ...`` holding ``message``."""
    assert result.exit_code == code, (result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


def as_json(result: Result) -> Any:
    return json.loads(ok(result).stdout)


@pytest.fixture
def seeded(storage: ProgramStorage) -> dict[str, str]:
    """Four programs over two signatures and three optimizers (one tagged production)."""
    return {
        "low": save(storage, score=0.6, optimizer="BootstrapFewShot"),
        "high": save(storage, score=0.9, instructions="Classify the sentiment of the text."),
        "route": save(storage, signature="RouteIntent", score=0.7, optimizer="GEPA"),
        "prod": save(storage, signature="RouteIntent", score=0.5, tags=["production"]),
    }


# -- init -------------------------------------------------------------------------------


def test_init_creates_the_registry_and_prints_its_path(tmp_path: Path) -> None:
    target = tmp_path / "new"
    result = ok(run(target, "init"))
    assert result.stdout == f"{target}\n"
    assert "created an empty registry" in result.stderr
    assert git(target, "rev-parse", "--is-bare-repository").strip() == "true"
    again = ok(run(target, "init"))
    assert again.stdout == f"{target}\n"
    assert "already exists" in again.stderr
    other = tmp_path / "other"
    assert ok(run(target, "init", str(other))).stdout == f"{other}\n"
    assert (other / "HEAD").exists()


def test_init_refuses_a_file_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    fails(run(path, "init"), 1, "is a file, not a registry directory")


def test_read_commands_never_create_a_registry(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for args in (["list"], ["log"], ["history"], ["best", "X"], ["checkpoint", "list"], ["verify"]):
        fails(run(missing, *args), 1, f"no registry at {missing}")
    assert not missing.exists()


# -- save -------------------------------------------------------------------------------


def test_save_reads_a_wrapper_file_and_the_options_win(tmp_path: Path, registry_path: Path) -> None:
    path = tmp_path / "program.json"
    path.write_text(
        json.dumps(
            {
                "program": program_state("Classify."),
                "optimization_result": {
                    "best_score_value": 0.5,
                    "best_score_name": "f1",
                    "metadata": {"optimizer": "Old", "trials": 3},
                },
                "metadata": {"dataset": "reviews", "signature_class": "Old"},
            }
        )
    )
    result = ok(
        run(
            registry_path,
            "save",
            str(path),
            "--score",
            "0.91",
            "--optimizer",
            "MIPROv2",
            "--signature",
            "ClassifyText",
            "--tag",
            "candidate",
            "--tag",
            "reviewed",
            "--description",
            "first try",
        )
    )
    match = re.fullmatch(
        r"saved ([0-9a-f]{16})  ClassifyText  0\.9100  commit [0-9a-f]{10}\n", result.stdout
    )
    assert match is not None, result.stdout
    manager = StorageManager(StorageConfig(storage_path=registry_path))
    loaded = manager.storage.load_program(match[1])
    assert loaded is not None
    assert loaded.state == program_state("Classify.")
    assert loaded.best_score == 0.91
    assert loaded.optimization_result["best_score_name"] == "f1"
    assert loaded.optimization_result["metadata"] == {"optimizer": "MIPROv2", "trials": 3}
    assert loaded.metadata["dataset"] == "reviews"
    assert loaded.metadata["description"] == "first try"
    assert loaded.signature_class == "ClassifyText"
    assert manager.get_tags(match[1]) == ["candidate", "reviewed"]
    assert_fsck_clean(registry_path)


@pytest.mark.parametrize("args", [["save"], ["save", "-"]])
def test_save_reads_a_bare_state_from_stdin(registry_path: Path, args: list[str]) -> None:
    state = program_state("From stdin.")
    saved = as_json(run(registry_path, *args, "--json", input=json.dumps(state)))
    assert set(saved) == SAVED_KEYS
    assert saved["state"] == state
    assert saved["optimization_result"] == {}
    loaded = ProgramStorage(registry_path).load_program(saved["program_id"])
    assert loaded is not None
    assert loaded.commit == saved["commit"]


def test_save_with_id_records_a_new_version(storage: ProgramStorage) -> None:
    program_id = save(storage, score=0.7)
    state = json.dumps(program_state("Better."))
    saved = as_json(
        run(
            storage.path,
            "save",
            "--id",
            program_id.upper(),
            "--score",
            "0.8",
            "--json",
            input=state,
        )
    )
    assert saved["program_id"] == program_id
    assert len(git(storage.path, "log", "--format=%H").split()) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "stdin is not valid JSON"),
        ("[1, 2]", "stdin must hold a JSON object, not list"),
        ('{"program": [1]}', "program must be a JSON object"),
        ('{"program": {}, "metadata": 3}', "metadata must be a JSON object"),
        ('{"a": 1}', ""),  # a bare state: valid
    ],
)
def test_save_rejects_bad_json_with_exit_1(registry_path: Path, content: str, message: str) -> None:
    result = run(registry_path, "save", input=content)
    if not message:
        ok(result)
        return
    fails(result, 1, message)


def test_save_usage_errors_exit_2(tmp_path: Path, registry_path: Path) -> None:
    fails(run(registry_path, "save", str(tmp_path / "nope.json")), 2, "No such file")
    fails(run(registry_path, "save", "--id", "xyz", input="{}"), 2, "'xyz' is not a program id")
    fails(
        run(registry_path, "save", "--score", "high", input="{}"), 2, "'high' is not a valid float"
    )
    fails(run(registry_path, "save", "--score", "nan", input="{}"), 1, "finite number")


# -- show -------------------------------------------------------------------------------


def test_show_prints_the_program_its_state_or_json(storage: ProgramStorage) -> None:
    program_id = save(storage, tags=["production"])
    text = ok(run(storage.path, "show", program_id)).stdout
    assert f"program   {program_id}\n" in text
    assert "signature ClassifyText\n" in text
    assert "score     0.8000 (accuracy)\n" in text
    assert "tags      production\n" in text
    assert json.loads(text.split("state:\n", 1)[1]) == program_state("Classify the text.")
    assert as_json(run(storage.path, "show", program_id, "--state")) == program_state(
        "Classify the text."
    )
    shown = as_json(run(storage.path, "show", program_id, "--json"))
    assert set(shown) == SAVED_KEYS
    assert shown["program_id"] == program_id


def test_show_id_tilde_n_walks_the_saves_of_that_program(storage: ProgramStorage) -> None:
    program_id = save(storage, instructions="Version 0.")
    save(storage, signature="Other")  # another program's save in between
    for version in (1, 2):
        storage.save_program(program_state(f"Version {version}."), {}, program_id=program_id)
    for back in range(3):
        state = as_json(run(storage.path, "show", f"{program_id}~{back}", "--state"))
        assert state["predict"]["signature"]["instructions"] == f"Version {2 - back}."
    text = ok(run(storage.path, "show", f"{program_id}~2")).stdout
    assert f"({program_id}~2)" in text
    fails(run(storage.path, "show", f"{program_id}~3"), 3, "has 3 version(s) on main")


def test_show_not_found_exits_3(storage: ProgramStorage) -> None:
    program_id = save(storage)
    fails(run(storage.path, "show", "0123456789abcdef"), 3, "is not in the registry")
    fails(run(storage.path, "show", "0123456789abcdef~1"), 3, "not in the registry's history")
    storage.delete_program(program_id)
    fails(run(storage.path, "show", program_id), 3, f"'progreg restore {program_id}'")
    fails(run(storage.path, "show", "nothex"), 2, "is not ID or ID~N")


# -- list, find, best -------------------------------------------------------------------


def test_list_prints_a_table_and_json(storage: ProgramStorage, seeded: dict[str, str]) -> None:
    lines = ok(run(storage.path, "list")).stdout.splitlines()
    assert lines[0].split() == ["ID", "SAVED", "(UTC)", "SIGNATURE", "OPTIMIZER", "SCORE", "TAGS"]
    assert [line.split()[0] for line in lines[1:]] == list(seeded.values())
    assert lines[-1].split()[-1] == "production"
    listed = as_json(run(storage.path, "list", "--json"))
    assert [p["program_id"] for p in listed] == list(seeded.values())
    assert all(set(p) == SUMMARY_KEYS | {"tags"} for p in listed)
    assert [p["tags"] for p in listed] == [[], [], [], ["production"]]


def test_list_of_an_empty_registry(registry_path: Path) -> None:
    ok(run(registry_path, "init"))
    result = ok(run(registry_path, "list"))
    assert result.stdout == ""
    assert "no programs" in result.stderr
    assert as_json(run(registry_path, "list", "--json")) == []


def test_find_applies_every_filter(storage: ProgramStorage, seeded: dict[str, str]) -> None:
    def found(*args: str) -> list[str]:
        return [p["program_id"] for p in as_json(run(storage.path, "find", *args, "--json"))]

    assert found() == list(seeded.values())
    assert found("--optimizer", "MIPROv2") == [seeded["high"], seeded["prod"]]
    assert found("--min-score", "0.7") == [seeded["high"], seeded["route"]]
    assert found("--signature", "RouteIntent") == [seeded["route"], seeded["prod"]]
    assert found("--tag", "production", "--tag", "nothing") == [seeded["prod"]]
    assert found("--max-age-days", "1") == list(seeded.values())
    assert found("--max-age-days", "0") == []
    assert found("--signature", "ClassifyText", "--min-score", "0.7") == [seeded["high"]]
    table = ok(run(storage.path, "find", "--signature", "RouteIntent")).stdout
    assert seeded["route"] in table
    assert seeded["low"] not in table
    none = ok(run(storage.path, "find", "--optimizer", "Nobody"))
    assert (none.stdout, none.stderr) == ("", "no program matches\n")
    fails(run(storage.path, "find", "--max-age-days", "-1"), 1, "max_age_days")
    fails(run(storage.path, "find", "--tag", "a/b"), 1, "invalid tag name")
    fails(run(storage.path, "find", "--min-score", "x"), 2, "not a valid float")


def test_best_shows_the_highest_scoring_program(
    storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    shown = as_json(run(storage.path, "best", "ClassifyText", "--json"))
    assert set(shown) == SAVED_KEYS
    assert shown["program_id"] == seeded["high"]
    text = ok(run(storage.path, "best", "RouteIntent")).stdout
    assert text.startswith(f"program   {seeded['route']}\n")
    state = as_json(run(storage.path, "best", "ClassifyText", "--state"))
    assert state == program_state("Classify the sentiment of the text.")
    fails(run(storage.path, "best", "Unknown"), 3, "no program with a score for signature Unknown")


# -- tags -------------------------------------------------------------------------------


def test_tag_untag_and_tags(storage: ProgramStorage, seeded: dict[str, str]) -> None:
    program_id = seeded["high"]
    result = ok(run(storage.path, "tag", program_id, "candidate", "reviewed"))
    assert result.stdout == f"tagged {program_id}: candidate, reviewed\n"
    again = ok(run(storage.path, "tag", program_id, "candidate"))
    assert (again.stdout, again.stderr) == ("", f"{program_id} already had: candidate\n")
    assert ok(run(storage.path, "tags", program_id)).stdout == "candidate\nreviewed\n"
    assert as_json(run(storage.path, "tags", program_id, "--json")) == {
        "program_id": program_id,
        "tags": ["candidate", "reviewed"],
    }
    assert as_json(run(storage.path, "tags", "--json")) == {
        "candidate": [program_id],
        "production": [seeded["prod"]],
        "reviewed": [program_id],
    }
    assert f"candidate: {program_id}\n" in ok(run(storage.path, "tags")).stdout
    removed = ok(run(storage.path, "untag", program_id, "reviewed", "absent"))
    assert removed.stdout == f"untagged {program_id}: reviewed\n"
    assert removed.stderr == f"{program_id} did not have: absent\n"
    assert git(storage.path, "tag", "-l").split() == [
        f"candidate/{program_id}",
        f"production/{seeded['prod']}",
    ]


def test_tag_commands_not_found_and_bad_names(storage: ProgramStorage) -> None:
    program_id = save(storage)
    unknown = "0123456789abcdef"
    fails(run(storage.path, "tag", unknown, "x"), 3, f"program {unknown} is not in the registry")
    fails(run(storage.path, "untag", unknown, "x"), 3, "is not in the registry")
    fails(run(storage.path, "tags", unknown), 3, "is not in the registry")
    fails(run(storage.path, "tag", program_id, "bad/name"), 1, "invalid tag name 'bad/name'")
    fails(run(storage.path, "tag", program_id), 2, "Missing argument 'TAG...'")
    empty = ok(run(storage.path, "tags"))
    assert (empty.stdout, empty.stderr) == ("", "no program is tagged\n")


# -- checkpoints ----------------------------------------------------------------------


def test_checkpoint_create_list_log_restore_delete(tmp_path: Path, registry_path: Path) -> None:
    path = tmp_path / "step.json"
    path.write_text(json.dumps({"program": program_state("Step 0."), "metadata": {"step": 0}}))
    first = ok(run(registry_path, "checkpoint", "create", "run-1", str(path), "--score", "0.5"))
    assert first.stdout.startswith("checkpoint run-1: program ")
    second = as_json(
        run(
            registry_path,
            "checkpoint",
            "create",
            "run-1",
            "-",
            "--score",
            "0.6",
            "--signature",
            "ClassifyText",
            "--json",
            input=json.dumps(program_state("Step 1.")),
        )
    )
    assert set(second) == SAVED_KEYS
    listed = as_json(run(registry_path, "checkpoint", "list", "--json"))
    assert [(cp["name"], cp["program_id"]) for cp in listed] == [("run-1", second["program_id"])]
    assert set(listed[0]) == CHECKPOINT_KEYS
    history = as_json(run(registry_path, "checkpoint", "log", "run-1", "--json"))
    assert [cp["revision"] for cp in history] == ["run-1", "run-1~1"]
    assert [cp["best_score"] for cp in history] == [0.6, 0.5]
    assert history[1]["metadata"] == {"step": 0}
    table = ok(run(registry_path, "checkpoint", "log", "run-1")).stdout.splitlines()
    assert [line.split()[0] for line in table] == ["REVISION", "run-1", "run-1~1"]
    state = as_json(run(registry_path, "checkpoint", "restore", "run-1~1", "--state"))
    assert state == program_state("Step 0.")
    text = ok(run(registry_path, "checkpoint", "restore", "run-1")).stdout
    assert "(run-1)" in text.splitlines()[0]
    assert "signature ClassifyText" in text
    assert ok(run(registry_path, "checkpoint", "delete", "run-1")).stdout == (
        "deleted checkpoint run-1\n"
    )
    assert as_json(run(registry_path, "checkpoint", "list", "--json")) == []
    assert ProgramStorage(registry_path).list_programs() == []  # main untouched
    assert_fsck_clean(registry_path)


def test_checkpoint_not_found_and_bad_input(registry_path: Path) -> None:
    ok(run(registry_path, "checkpoint", "create", "run", "-", input=json.dumps({"a": 1})))
    fails(run(registry_path, "checkpoint", "restore", "nope"), 3, "no checkpoint named nope")
    fails(run(registry_path, "checkpoint", "restore", "run~1"), 3, "has 1 checkpoint(s)")
    fails(run(registry_path, "checkpoint", "log", "nope"), 3, "no checkpoint named nope")
    fails(run(registry_path, "checkpoint", "delete", "nope"), 3, "no checkpoint named nope")
    fails(run(registry_path, "checkpoint", "create", "a/b", "-", input="{}"), 1, "invalid")
    fails(run(registry_path, "checkpoint", "restore", "a~b"), 1, "invalid checkpoint")
    fails(run(registry_path, "checkpoint", "create", "run"), 2, "Missing argument 'FILE|-'")
    result = run(registry_path, "checkpoint")
    assert result.exit_code == 2
    assert "checkpoint [OPTIONS] COMMAND [ARGS]..." in result.output


def test_usage_errors_of_the_root_command_are_one_line(registry_path: Path) -> None:
    fails(CliRunner().invoke(cli, ["--bogus"]), 2, "No such option '--bogus' (see '")
    fails(CliRunner().invoke(cli, ["nosuch"]), 2, "No such command 'nosuch' (see '")
    fails(CliRunner().invoke(cli, ["--durable=maybe"]), 2, "'--durable' does not take a value")
    result = CliRunner().invoke(cli, [])  # no command at all: the help, as git prints it
    assert "Usage: cli [OPTIONS] COMMAND [ARGS]..." in result.output


# -- history ----------------------------------------------------------------------------


def test_history_summary_optimizers_and_trends(
    storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    text = ok(run(storage.path, "history")).stdout
    assert text.startswith("4 programs, average score 0.6750, latest save ")
    assert "OPTIMIZER" in text
    assert re.search(r"MIPROv2\s+2\s+0\.7000\s+0\.9000\s+" + seeded["prod"], text)
    assert "trend: newest 2 average 0.6000, the 2 before 0.7500: -20.00%" in text
    data = as_json(run(storage.path, "history", "--json"))
    assert set(data) == {"summary", "optimizer_stats", "trends"}
    assert data["summary"]["total_programs"] == 4
    assert set(data["optimizer_stats"]) == {"BootstrapFewShot", "GEPA", "MIPROv2"}
    assert data["trends"]["improvement_percentage"] == -20.0


def test_history_plot_writes_an_html_report(
    tmp_path: Path, storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    save(storage, signature=None, score=0.4)
    save(storage, score=None)  # no score: not on the chart
    storage.delete_program(seeded["low"])  # removed saves stay on the chart
    plot = tmp_path / "report.html"
    result = ok(run(storage.path, "history", "--plot", str(plot)))
    assert result.stdout.startswith("5 programs")
    assert f"wrote {plot}: 3 signatures, 5 scored saves" in result.stderr
    html = plot.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>\n<html")
    assert html.rstrip().endswith("</html>")
    assert html.count("<svg") == 1
    assert html.count("</svg>") == 1
    assert html.count("<polyline") == 3
    for signature in ("ClassifyText", "RouteIntent", "(no signature)"):
        assert f'data-signature="{signature}"' in html
    assert html.count("<circle") == 5
    assert "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    polyline = re.search(r'data-signature="ClassifyText">\n<polyline [^>]*points="([^"]+)"', html)
    assert polyline is not None
    assert len(polyline[1].split()) == 2  # the removed save and the live one


def test_history_plot_follows_the_log_for_saves_in_the_same_second(
    tmp_path: Path, storage: ProgramStorage
) -> None:
    """Saves made within one second are plotted in the order they were made."""
    scores = [0.5, 0.9, 0.6, 0.8, 0.7]
    ids = [save(storage, score=score) for score in scores]
    times = {git(storage.path, "log", "-1", "--format=%at", "main").strip()}
    plot = tmp_path / "report.html"
    ok(run(storage.path, "history", "--plot", str(plot)))
    html = plot.read_text(encoding="utf-8")
    assert "5 saves, best 0.9000, latest 0.7000" in html
    polyline = re.search(r'data-signature="ClassifyText">\n<polyline [^>]*points="([^"]+)"', html)
    assert polyline is not None
    xs = [float(point.split(",")[0]) for point in polyline[1].split()]
    assert xs == sorted(xs), "the line goes back in time"
    circles = re.findall(r"<title>ClassifyText ([0-9a-f]{16}):", html)
    assert circles == ids, (circles, ids, times)
    logged = as_json(run(storage.path, "log", "--json"))
    assert [entry["program_id"] for entry in reversed(logged)] == ids
    assert all(entry["date"].count(".") == 1 for entry in logged)  # to the microsecond


def test_history_plot_of_an_empty_registry_and_bad_paths(
    tmp_path: Path, registry_path: Path
) -> None:
    ok(run(registry_path, "init"))
    plot = tmp_path / "empty.html"
    text = ok(run(registry_path, "history", "--plot", str(plot))).stdout
    assert text.startswith("0 programs, average score -")
    html = plot.read_text()
    assert "<svg" in html
    assert "<polyline" not in html
    assert "No scored saves yet." in html
    fails(run(registry_path, "history", "--plot", str(tmp_path / "x.png")), 2, "HTML report")
    missing_dir = tmp_path / "no" / "such" / "dir.html"
    fails(
        run(registry_path, "history", "--plot", str(missing_dir)), 1, f"cannot write {missing_dir}"
    )


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0.52, 0.94) == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert nice_ticks(0.8, 0.8)[0] < 0.8 < nice_ticks(0.8, 0.8)[-1]
    assert nice_ticks(-3.0, 12.0) == [-5.0, 0.0, 5.0, 10.0, 15.0]


# -- diff -------------------------------------------------------------------------------


def test_diff_prints_the_structural_summary_then_the_unified_diff(
    storage: ProgramStorage,
) -> None:
    first = save(storage, score=0.7, instructions="Classify the text.")
    second = save(
        storage, score=0.8, optimizer="GEPA", instructions="Classify the sentiment of the text."
    )
    text = ok(run(storage.path, "diff", first, second)).stdout
    summary, unified = text.split("\ndiff --git ", 1)
    lines = summary.splitlines()
    assert lines[0].startswith(f"program 1  {first}  ClassifyText  MIPROv2  score 0.7000")
    assert lines[1].startswith(f"program 2  {second}  ClassifyText  GEPA  score 0.8000")
    assert f"score change: +0.1000 ({second} is better)" in lines
    assert "optimizer: MIPROv2 -> GEPA" in lines
    assert "instructions of predict:" in lines
    assert lines[lines.index("instructions of predict:") + 1] == (
        "  Classify the {+sentiment of the+} text."
    )
    assert "\x1b[" not in text
    assert unified.startswith(f"a/programs/{first[:2]}/{first[2:4]}/{first}.json")
    assert '-          "instructions": "Classify the text."' in unified
    data = as_json(run(storage.path, "diff", first, second, "--json"))
    assert set(data) == {"program_1", "program_2", "comparison", "diff"}
    assert data["diff"]["instructions"][0]["new"] == "Classify the sentiment of the text."
    assert data["comparison"]["better_program"] == second


def test_diff_colours_lines_and_changed_words_only_when_asked(storage: ProgramStorage) -> None:
    first = save(storage, instructions="Classify the text.")
    second = save(storage, instructions="Classify the sentiment of the text.")
    colored = ok(run(storage.path, "diff", first, second, "--color")).stdout
    assert "\x1b[32m\x1b[1msentiment of the\x1b[0m" in colored  # the added words, green
    assert "\x1b[36m@@ " in colored
    instructions = [line for line in colored.splitlines() if '"instructions"' in line]
    assert instructions[0].startswith("\x1b[31m-")  # removed line red
    assert instructions[1].startswith("\x1b[32m+")  # added line green
    assert "\x1b[7m" in instructions[1]  # changed words highlighted
    plain = ANSI.sub("", colored)
    assert "sentiment of the" in plain
    forced_off = ok(run(storage.path, "diff", first, second, "--no-color", color=True)).stdout
    assert "\x1b[" not in forced_off
    assert "Classify the {+sentiment of the+} text." in forced_off
    with_no_color_env = ok(run(storage.path, "diff", first, second, env={"NO_COLOR": "1"}))
    assert "\x1b[" not in with_no_color_env.stdout


def test_diff_of_identical_programs_and_not_found(storage: ProgramStorage) -> None:
    program_id = save(storage)
    text = ok(run(storage.path, "diff", program_id, program_id)).stdout
    assert "no change to instructions, demos, fields or predictors" in text
    assert "the two program files are identical" in text
    fails(run(storage.path, "diff", program_id, "0123456789abcdef"), 3, "is not in the registry")
    fails(run(storage.path, "diff", program_id, "zz"), 2, "'zz' is not a program id")


# -- log --------------------------------------------------------------------------------


def test_log_lists_saves_deletes_and_cleanups(storage: ProgramStorage) -> None:
    first = save(storage, score=0.5)
    second = save(storage, signature="RouteIntent", score=0.9)
    storage.delete_program(first)
    lines = ok(run(storage.path, "log")).stdout.splitlines()
    assert lines[0].split() == [
        "DATE",
        "(UTC)",
        "ACTION",
        "PROGRAM",
        "SIGNATURE",
        "SCORE",
        "AUTHOR",
    ]
    assert [line.split()[2:4] for line in lines[1:]] == [
        ["delete", first],
        ["save", second],
        ["save", first],
    ]
    assert lines[2].split()[4:6] == ["RouteIntent", "0.9000"]
    records = as_json(run(storage.path, "log", "--json", "--limit", "2"))
    assert [r["action"] for r in records] == ["delete", "save"]
    assert set(records[0]) == {
        "commit",
        "date",
        "committed_at",
        "action",
        "program_id",
        "signature_class",
        "optimizer",
        "score",
        "score_name",
        "author",
        "author_email",
        "subject",
    }
    assert records[1]["score"] == 0.9
    assert records[1]["commit"] == git(storage.path, "rev-parse", "main~1").strip()
    assert len(as_json(run(storage.path, "log", "--json", "-n", "0"))) == 3
    colored = ok(run(storage.path, "log", "--color")).stdout
    assert "\x1b[31mdelete" in colored
    fails(run(storage.path, "log", "--limit", "-1"), 2, "--limit")


def test_log_of_an_empty_registry_and_hand_made_commits(registry_path: Path) -> None:
    ok(run(registry_path, "init"))
    result = ok(run(registry_path, "log"))
    assert (result.stdout, result.stderr) == ("", "no commits yet\n")
    save(ProgramStorage(registry_path))
    work = registry_path.parent / "work"
    git(registry_path.parent, "clone", "-q", str(registry_path), str(work))
    (work / "NOTES.md").write_text("notes\n")
    git(work, "add", "NOTES.md")
    git(work, "-c", "user.name=Ann", "-c", "user.email=ann@example.com", "commit", "-qm", "Notes")
    git(work, "push", "-q", "origin", "HEAD:main")
    line = ok(run(registry_path, "log")).stdout.splitlines()[1]
    assert re.fullmatch(r"\S+ \S+\s+commit\s+-\s+Notes\s+Ann", line), line


# -- cleanup and restore -------------------------------------------------------------------


def test_cleanup_dry_run_lists_and_changes_nothing(
    storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    before = registry_state(storage.path)
    text = ok(run(storage.path, "cleanup", "--keep", "1", "--dry-run")).stdout
    assert text.startswith("would remove 2 of 4 programs (keep 1 unprotected; 1 protected by")
    assert seeded["low"] in text
    assert seeded["route"] in text
    assert seeded["high"] not in text
    data = as_json(run(storage.path, "cleanup", "--keep", "1", "--dry-run", "--json"))
    assert data["dry_run"] is True
    assert data["keep"] == 1
    assert data["protected_tags"] == ["production"]
    assert data["protected"] == [seeded["prod"]]
    assert [ref["program_id"] for ref in data["removed"]] == [seeded["low"], seeded["route"]]
    assert data["remaining"] == 2
    assert data["commit"] is None
    low_path = f"programs/{seeded['low'][:2]}/{seeded['low'][2:4]}/{seeded['low']}.json"
    saved_low = git(storage.path, "log", "-1", "--format=%H", "main", "--", low_path).strip()
    assert data["removed"][0]["commit"] == saved_low
    assert registry_state(storage.path) == before


def test_cleanup_removes_in_one_commit_and_restore_brings_back(
    storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    data = as_json(run(storage.path, "cleanup", "--keep", "1", "--protect", "none", "--json"))
    assert data["dry_run"] is False
    assert data["protected"] == []
    removed = [ref["program_id"] for ref in data["removed"]]
    assert removed == [seeded["low"], seeded["route"], seeded["prod"]]
    assert data["commit"] == git(storage.path, "rev-parse", "main").strip()
    assert set(storage.registry.records()) == {seeded["high"]}
    assert git(storage.path, "log", "-1", "--format=%s").startswith("Cleanup: remove 3 programs")
    restored = ok(run(storage.path, "restore", seeded["low"])).stdout
    assert restored.startswith(f"restored {seeded['low']}  ClassifyText  0.6000  commit ")
    again = ok(run(storage.path, "restore", seeded["low"])).stdout
    assert again.startswith(f"{seeded['low']} is already in the registry")
    shown = as_json(run(storage.path, "restore", seeded["route"], "--json"))
    assert set(shown) == SAVED_KEYS
    assert set(storage.registry.records()) == {seeded["high"], seeded["low"], seeded["route"]}
    nothing = ok(run(storage.path, "cleanup", "--keep", "10")).stdout
    assert nothing.startswith("removed 0 of 3 programs")
    assert_fsck_clean(storage.path)


def test_cleanup_and_restore_errors(storage: ProgramStorage) -> None:
    save(storage)
    fails(run(storage.path, "restore", "0123456789abcdef"), 3, "not in the registry's history")
    fails(run(storage.path, "cleanup", "--keep", "-2"), 2, "--keep")
    fails(run(storage.path, "cleanup", "--protect", "a..b"), 1, "invalid tag name")
    fails(
        run(storage.path, "cleanup", env={"PROGREG_MAX_STORED_PROGRAMS": "many"}),
        1,
        "PROGREG_MAX_STORED_PROGRAMS",
    )
    result = ok(run(storage.path, "cleanup", "--dry-run", env={"PROGREG_MAX_STORED_PROGRAMS": "0"}))
    assert result.stdout.startswith("would remove 1 of 1 programs (keep 0 unprotected")


# -- conventions ------------------------------------------------------------------------

MY_COMMANDS = [
    ["init"],
    ["save"],
    ["show"],
    ["list"],
    ["find"],
    ["best"],
    ["tag"],
    ["untag"],
    ["tags"],
    ["checkpoint"],
    ["checkpoint", "create"],
    ["checkpoint", "restore"],
    ["checkpoint", "list"],
    ["checkpoint", "log"],
    ["checkpoint", "delete"],
    ["history"],
    ["diff"],
    ["log"],
    ["cleanup"],
    ["restore"],
    ["completion"],
]


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command and subcommand of the progreg command line."""
    found = []
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None, name
        found.append([*prefix, name])
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
    return found


def test_the_command_list_covers_these_commands() -> None:
    assert {" ".join(c) for c in MY_COMMANDS} <= {" ".join(c) for c in all_commands()}


@pytest.mark.parametrize("command", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(registry_path: Path, command: list[str]) -> None:
    text = ok(run(registry_path, *command, "--help")).stdout
    heading = "Examples:\n" if "Examples:\n" in text else "Example:\n"
    assert heading in text
    example = text.split(heading, 1)[1].splitlines()[0].split()
    if example[0] != "eval":  # completion's example installs the script
        words = example[example.index("progreg") + 1 :]
        # the command words, in order, possibly after global options
        positions = [words.index(word) for word in command]
        assert positions == sorted(positions)
    assert not registry_path.exists()


def test_debug_lets_the_traceback_through(storage: ProgramStorage) -> None:
    program_id = save(storage)
    result = CliRunner().invoke(
        cli, ["--registry", str(storage.path), "--debug", "tag", program_id, "a/b"]
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, InvalidNameError)
    plain = run(storage.path, "tag", program_id, "a/b")
    assert plain.exception is not None
    assert not isinstance(plain.exception, InvalidNameError)  # reported, not raised


def test_multi_line_messages_are_joined_on_one_line(storage: ProgramStorage) -> None:
    result = run(storage.path, "cleanup", env={"PROGREG_PROTECTED_TAGS": "ok,a/b"})
    fails(result, 1, "invalid storage configuration")


def test_colour_follows_the_flag_then_no_color_then_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert use_color(None) is False
    assert use_color(True) is True
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert use_color(None) is True
    assert use_color(False) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(None) is False
    assert use_color(True) is True


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    with progress(2, "cleanup") as advance:
        advance(2)
    assert quiet.getvalue() == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress(2, "cleanup") as advance:
        advance(1)
        advance(1)
    assert "cleanup" in terminal.getvalue()
    assert "100%" in terminal.getvalue()


def test_parse_program_tells_wrappers_from_bare_states() -> None:
    wrapped = parse_program(b'{"program": {"a": 1}, "metadata": {"m": 2}}', "f")
    assert (wrapped.program, wrapped.optimization_result, wrapped.metadata) == (
        {"a": 1},
        {},
        {"m": 2},
    )
    bare = parse_program(b'{"program": {"a": 1}, "other": 2}', "f")
    assert bare.program == {"program": {"a": 1}, "other": 2}
    with pytest.raises(InvalidInputError, match="f: optimization_result must be a JSON object"):
        parse_program(b'{"program": {}, "optimization_result": []}', "f")


# -- completion -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "#compdef progreg"), ("fish", "complete")],
)
def test_completion_prints_the_shell_script(registry_path: Path, shell: str, marker: str) -> None:
    script = ok(run(registry_path, "completion", shell)).stdout
    assert "_PROGREG_COMPLETE" in script
    assert marker in script
    fails(run(registry_path, "completion", "tcsh"), 2, "'tcsh' is not one of")


def test_completion_defaults_to_the_login_shell(registry_path: Path) -> None:
    script = ok(run(registry_path, "completion", env={"SHELL": "/usr/bin/zsh"})).stdout
    assert "#compdef progreg" in script


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for ``words`` (the last one is being typed)."""
    parts = words.split(" ")
    result = CliRunner().invoke(
        cli,
        [],
        prog_name="progreg",
        env={
            "_PROGREG_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
            **(env or {}),
        },
    )
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_completion_offers_commands_ids_checkpoints_tags_and_signatures(
    storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    registry = str(storage.path)
    assert "checkpoint" in complete("progreg che")
    assert complete(f"progreg --registry {registry} show {seeded['low'][:3]}") == [
        program_id for program_id in seeded.values() if program_id.startswith(seeded["low"][:3])
    ]
    assert sorted(complete("progreg diff ", {"PROGREG_PATH": registry})) == sorted(seeded.values())
    assert complete(f"progreg --registry {registry} best R") == ["RouteIntent"]
    assert complete(f"progreg --registry {registry} find --tag pro") == ["production"]
    ok(run(storage.path, "checkpoint", "create", "run-7", "-", input="{}"))
    assert complete(f"progreg --registry {registry} checkpoint log r") == ["run-7"]
    missing = storage.path.parent / "missing"
    assert complete(f"progreg --registry {missing} show ") == []
    assert not missing.exists()


# -- the installed executable ---------------------------------------------------------------


def test_installed_executable_session(tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("progreg")
    assert executable.exists(), "the package's console script is not installed"
    registry = tmp_path / "registry"
    env = {**os.environ, "PROGREG_PATH": str(registry)}

    def progreg(*args: str, input: str | None = None, code: int = 0) -> str:
        done = subprocess.run(
            [str(executable), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout

    ids = []
    for index, (signature, score) in enumerate(
        [("ClassifyText", "0.71"), ("ClassifyText", "0.86"), ("RouteIntent", "0.64")]
    ):
        state = json.dumps(program_state(f"Instructions, take {index}."))
        saved = json.loads(
            progreg(
                "save",
                "--signature",
                signature,
                "--score",
                score,
                "--optimizer",
                "MIPROv2",
                "--json",
                input=state,
            )
        )
        ids.append(saved["program_id"])
    listed = progreg("list").splitlines()
    assert [line.split()[0] for line in listed[1:]] == ids
    found = json.loads(
        progreg("find", "--signature", "ClassifyText", "--min-score", "0.8", "--json")
    )
    assert [p["program_id"] for p in found] == [ids[1]]
    assert progreg("best", "ClassifyText").startswith(f"program   {ids[1]}\n")
    progreg("best", "Nothing", code=3)
    assert progreg("tag", ids[1], "production") == f"tagged {ids[1]}: production\n"
    diff = progreg("diff", ids[0], ids[1])
    assert diff.startswith(f"program 1  {ids[0]}")
    assert "[-0.-]{+1.+}" in diff
    assert "\x1b[" not in diff  # not a terminal: no colour
    plot = tmp_path / "trend.html"
    progreg("history", "--plot", str(plot))
    assert plot.read_text().count("<polyline") == 2
    dry = progreg("cleanup", "--keep", "1", "--dry-run")
    assert dry.startswith("would remove 1 of 3 programs")
    assert ids[2] in dry  # the lower score outweighs being newer
    assert len(git(registry, "log", "--oneline").splitlines()) == 3
    completion = subprocess.run(
        [str(executable)],
        env={
            **env,
            "_PROGREG_COMPLETE": "bash_complete",
            "COMP_WORDS": "progreg sh",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert completion.stdout.splitlines() == ["plain,show"]
    assert_fsck_clean(registry)


# -- editing a saved program: show -> edit -> save ------------------------------------


def versions_of(registry: Path, program_id: str) -> list[str]:
    """Subjects of main's commits that wrote ``program_id``, newest first."""
    subjects = git(registry, "log", "--format=%s", "main").splitlines()
    return [subject for subject in subjects if program_id in subject]


def test_show_json_is_what_save_reads(storage: ProgramStorage, registry_path: Path) -> None:
    """show --json, edit the instructions, save: a new version keeping score and optimizer."""
    program_id = save(storage, score=0.83, optimizer="MIPROv2")
    record = as_json(run(registry_path, "show", program_id, "--json"))
    record["state"]["predict"]["signature"]["instructions"] = "Classify it, carefully."
    saved = as_json(run(registry_path, "save", "--json", input=json.dumps(record)))
    assert saved["program_id"] == program_id
    assert saved["commit"] != record["commit"]
    assert saved["optimization_result"] == record["optimization_result"]
    assert saved["metadata"]["signature_class"] == "ClassifyText"
    loaded = storage.load_program(program_id)
    assert loaded is not None
    assert loaded.state["predict"]["signature"]["instructions"] == "Classify it, carefully."
    assert (loaded.best_score, loaded.optimizer) == (0.83, "MIPROv2")
    assert len(versions_of(registry_path, program_id)) == 2
    assert_fsck_clean(registry_path)


def test_a_bare_state_saved_with_id_keeps_the_result(
    storage: ProgramStorage, registry_path: Path
) -> None:
    """show --state, edit, save --id: score, optimizer and signature stay; options still win."""
    program_id = save(storage, score=0.77, optimizer="GEPA")
    state = as_json(run(registry_path, "show", program_id, "--state"))
    state["predict"]["demos"].append({"text": "b", "label": "negative"})
    result = ok(run(registry_path, "save", "--id", program_id, input=json.dumps(state)))
    assert "kept the score" in result.stderr
    loaded = storage.load_program(program_id)
    assert loaded is not None and len(loaded.state["predict"]["demos"]) == 2
    assert (loaded.best_score, loaded.optimizer, loaded.signature_class) == (
        0.77,
        "GEPA",
        "ClassifyText",
    )
    ok(run(registry_path, "save", "--id", program_id, "--score", "0.8", input=json.dumps(state)))
    again = storage.load_program(program_id)
    assert again is not None and (again.best_score, again.optimizer) == (0.8, "GEPA")
    # A bare state under a new id has no result to keep.
    fresh = as_json(run(registry_path, "save", "--json", input=json.dumps(state)))
    assert fresh["optimization_result"].get("best_score_value") is None


def test_a_record_missing_its_state_is_not_taken_for_a_state(registry_path: Path) -> None:
    record = {"program_id": "0123456789abcdef", "state": [1], "commit": "0" * 40}
    fails(run(registry_path, "save", input=json.dumps(record)), 1, "state must be a JSON object")


def test_delete_removes_programs_and_restore_brings_them_back(
    storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    low, high = seeded["low"], seeded["high"]
    result = ok(run(storage.path, "delete", low, high))
    assert result.stdout.splitlines() == [
        f"deleted {low} (restore it with: progreg restore {low})",
        f"deleted {high} (restore it with: progreg restore {high})",
    ]
    assert [p.program_id for p in storage.list_programs()] == [seeded["route"], seeded["prod"]]
    subjects = git(storage.path, "log", "-2", "--format=%s").splitlines()
    assert all(subject.startswith("Delete ") for subject in subjects), subjects
    before = registry_state(storage.path)
    fails(run(storage.path, "delete", seeded["route"], low), 3, "'progreg restore")
    fails(run(storage.path, "delete", "0123456789abcdef"), 3, "is not in the registry")
    assert registry_state(storage.path) == before  # nothing removed
    ok(run(storage.path, "restore", low))
    assert low in {p.program_id for p in storage.list_programs()}
    assert_fsck_clean(storage.path)


def test_missing_output_directories_are_refused_alike(
    tmp_path: Path, storage: ProgramStorage, seeded: dict[str, str]
) -> None:
    """export and history --plot both refuse to write into a directory that is not there."""
    missing = tmp_path / "no" / "such"
    fails(
        run(storage.path, "export", str(missing / "all.bundle"), "--all"),
        1,
        f"its directory {missing} does not exist",
    )
    fails(
        run(storage.path, "history", "--plot", str(missing / "scores.html")),
        1,
        f"cannot write {missing / 'scores.html'}",
    )
    assert not (tmp_path / "no").exists()
    with pytest.raises(InvalidInputError, match="does not exist"):
        storage.export_registry(missing / "all.bundle")
    assert not (tmp_path / "no").exists()
    ok(run(storage.path, "export", str(tmp_path / "all.bundle"), "--all"))


HOSTILE_TEXT = "ok\x1b]0;pwned\x07\x1b[2J\rfake\u202etxt.exe\x9b31m\x7f"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_stored_control_characters_are_shown_not_obeyed(storage: ProgramStorage) -> None:
    """Escapes in stored text (a bundle from someone else, say) never reach the terminal raw."""
    state = program_state(f"Classify {HOSTILE_TEXT}")
    first = storage.save_program(
        state,
        {"best_score_value": 0.7, "metadata": {"optimizer": f"MIPRO{HOSTILE_TEXT}"}},
        {"signature_class": f"Sig{HOSTILE_TEXT}", "note": HOSTILE_TEXT},
    ).program_id
    second = save(storage, signature="Plain", instructions="Classify the text.")
    for args in (
        ["list"],
        ["show", first],
        ["log"],
        ["history"],
        ["find", "--min-score", "0"],
        ["diff", first, second],
        ["best", f"Sig{HOSTILE_TEXT}"],
    ):
        result = run(storage.path, *args)
        assert result.exit_code in (0, 3), (args, result.output)
        assert not RAW_CONTROLS.search(result.stdout), (args, result.stdout)
        assert not RAW_CONTROLS.search(result.stderr), (args, result.stderr)
    shown = ok(run(storage.path, "show", first)).stdout
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown and "\\x9b" in shown
    # JSON stays exact: the same strings, escaped as JSON escapes them.
    record = as_json(run(storage.path, "show", first, "--json"))
    assert record["metadata"]["note"] == HOSTILE_TEXT
    listed = as_json(run(storage.path, "list", "--json"))
    assert listed[0]["signature_class"] == f"Sig{HOSTILE_TEXT}"
