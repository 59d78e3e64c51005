"""The progreg command line: through click's runner and as the installed executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from conftest import assert_fsck_clean, git
from progreg import StorageConfig, StorageManager
from progreg.cli import cli


def test_demo_saves_programs_and_shows_history_best_and_log(tmp_path: Path) -> None:
    registry = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["--registry", str(registry), "demo", "--count", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.count("saved ") == 5
    assert "5 programs, average score" in result.output
    assert "Best program per signature:" in result.output
    manager = StorageManager(StorageConfig(storage_path=registry))
    for signature in ("ClassifyText", "RouteIntent", "AnswerQuestion"):
        best = manager.get_best_program(signature)
        assert best is not None
        assert f"{signature:<15} {best.program_id}" in result.output
    subjects = git(registry, "log", "--format=%s").splitlines()
    assert len(subjects) == 5
    for subject in subjects:
        assert subject.split()[0] == "Save"
        assert subject.split()[1] in result.output
    assert_fsck_clean(registry)


def test_installed_executable_runs_the_demo(tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("progreg")
    assert executable.exists(), "the package's console script is not installed"
    env = {**os.environ, "PROGREG_PATH": str(tmp_path / "registry")}
    done = subprocess.run(
        [str(executable), "demo", "--count", "3"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "3 programs" in done.stdout
    assert len(git(tmp_path / "registry", "log", "--oneline").splitlines()) == 3


def test_errors_are_one_line_with_exit_code_1(tmp_path: Path) -> None:
    not_a_registry = tmp_path / "file"
    not_a_registry.write_text("x")
    executable = Path(sys.executable).with_name("progreg")
    done = subprocess.run(
        [str(executable), "--registry", str(not_a_registry), "demo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {not_a_registry} is a file, not a registry directory"
    ]
    assert "Traceback" not in done.stderr


def test_a_failed_save_removes_the_registry_it_created(tmp_path: Path) -> None:
    """Any command that creates its registry removes it again when it fails."""
    program = tmp_path / "program.json"
    key = "sk-proj-" + "Zq7" * 15
    program.write_text(json.dumps({"predict": {"lm": {"api_key": key}}}))
    registry = tmp_path / "made" / "registry"
    done = CliRunner().invoke(cli, ["--registry", str(registry), "save", str(program)])
    assert done.exit_code == 1 and "error: " in done.output
    assert not (tmp_path / "made").exists()
    done = CliRunner().invoke(
        cli, ["--registry", str(registry), "save", str(program), "--redact-secrets"]
    )
    assert done.exit_code == 0, done.output
    assert_fsck_clean(registry)
