"""The progreg command line: through click's runner and as the installed executable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import progreg as package
from progreg import GcReport, ProgramStorage, StorageConfig, StorageManager
from progreg.cli import cli
from progreg.cli.main import COMMANDS, load_command
from support.gitcli import assert_fsck_clean, commit_file, git


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


def progreg(*args: str, cwd: Path, stdout: int | None = subprocess.PIPE) -> tuple[int, str, str]:
    """Run the installed ``progreg`` executable; its exit code, stdout and stderr."""
    executable = Path(sys.executable).with_name("progreg")
    done = subprocess.run(
        [str(executable), *args], stdout=stdout, stderr=subprocess.PIPE, cwd=cwd, check=False
    )
    out = done.stdout.decode() if done.stdout is not None else ""
    return done.returncode, out, done.stderr.decode()


def test_a_large_demo_prints_a_screenful(tmp_path: Path) -> None:
    code, out, err = progreg("--registry", "reg", "demo", "--count", "40", cwd=tmp_path)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) < 40, out
    assert out.count("saved ") == 10 and "... and 30 more saves" in out
    assert "40 programs, average score" in out
    assert "the whole log: git -C" in out
    assert len(git(tmp_path / "reg", "log", "--format=%s").splitlines()) == 40


def test_a_full_or_closed_output_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    assert progreg("--registry", "reg", "demo", "--count", "2", cwd=tmp_path)[0] == 0
    with open("/dev/full", "wb") as full:
        for args in (["log"], ["list", "--json"], ["history"]):
            code, _, err = progreg("--registry", "reg", *args, cwd=tmp_path, stdout=full.fileno())
            assert code == 1, err
            assert err == "error: No space left on device (standard output)\n"
    # A reader that goes away (| head) ends the command quietly.
    executable = Path(sys.executable).with_name("progreg")
    reader = subprocess.Popen(
        [str(executable), "--registry", "reg", "log"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()
    assert reader.wait(timeout=60) == 1
    assert b"Traceback" not in reader.stderr.read()


def test_global_options_after_the_subcommand(tmp_path: Path) -> None:
    """``progreg list --registry X`` is ``progreg --registry X list``."""
    assert progreg("--registry", "reg", "demo", "--count", "2", cwd=tmp_path)[0] == 0
    before = progreg("--registry", "reg", "list", "--json", cwd=tmp_path)
    after = progreg("list", "--json", "--registry", "reg", cwd=tmp_path)
    equals = progreg("list", "--registry=reg", "--json", "--no-durable", cwd=tmp_path)
    assert before[0] == 0 and before == after == equals
    code, _, err = progreg("list", "--registry", cwd=tmp_path)
    assert code == 2 and err.strip() == "error: Option '--registry' requires an argument"
    # Nothing after -- is taken for an option.
    code, _, err = progreg("show", "--", "--registry", cwd=tmp_path)
    assert code == 2 and "--registry" in err


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_importing_progreg_and_asking_its_version_load_no_dependency() -> None:
    """``import progreg`` and ``progreg --version`` cost no more than Python's start-up."""
    heavy = {"pygit2", "pydantic", "orjson", "progreg.storage", "progreg.git"}
    assert not heavy & loaded_after("import progreg")
    version = "from progreg.cli import main\nimport sys\nsys.argv = ['progreg', '--version']\n"
    assert not heavy & loaded_after(f"{version}try:\n    main()\nexcept SystemExit:\n    pass")
    # Asking for a name imports its module, once.
    assert "progreg.storage" in loaded_after("from progreg import ProgramStorage")


def test_every_public_name_and_command_loads() -> None:
    assert set(package._EXPORTS) == set(package.__all__) - {"__version__"}
    for name in package.__all__:
        assert getattr(package, name) is not None
    for name in COMMANDS:
        command = load_command(name)
        assert command.name == name, (name, command.name)


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


def test_log_and_gc_print_the_public_models_from_the_installed_command(tmp_path: Path) -> None:
    assert progreg("--registry", "reg", "demo", "--count", "3", cwd=tmp_path)[0] == 0
    storage = ProgramStorage(tmp_path / "reg")
    code, out, err = progreg("--registry", "reg", "log", "--limit", "0", "--json", cwd=tmp_path)
    assert code == 0, err
    printed = json.loads(out)
    assert printed == [entry.model_dump(mode="json") for entry in storage.log()]
    assert [e["commit"] for e in printed] == git(tmp_path / "reg", "log", "--format=%H").split()
    code, out, err = progreg("--registry", "reg", "log", "-n", "2", "--json", cwd=tmp_path)
    assert code == 0, err
    assert [e["commit"] for e in json.loads(out)] == [e["commit"] for e in printed[:2]]
    code, out, err = progreg("--registry", "reg", "gc", "--json", cwd=tmp_path)
    assert code == 0, err
    report = GcReport.model_validate_json(out)
    assert report.packs_after == 1
    counts = git(tmp_path / "reg", "count-objects", "-v")
    assert "packs: 1" in counts.splitlines() and "count: 0" in counts.splitlines()
    assert_fsck_clean(tmp_path / "reg")


def test_a_damaged_program_can_be_deleted_and_its_versions_fail_on_one_line(
    tmp_path: Path,
) -> None:
    """delete checks presence without reading program files; a damaged version is an error."""
    storage = ProgramStorage(tmp_path / "reg")
    first = storage.save_program({"instructions": "one"})
    storage.save_program({"instructions": "two"}, program_id=first.program_id)
    program_id = first.program_id
    path = f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"
    damage = commit_file(tmp_path / "reg", path, b"{not json", "Damage by hand")
    assert program_id in storage.program_ids()
    code, out, err = progreg("--registry", "reg", "show", f"{program_id}~1", cwd=tmp_path)
    assert code == 1 and out == "", err
    assert err.startswith(f"error: {path} (commit {damage[:12]}") and "not valid JSON" in err
    assert len(err.splitlines()) == 1
    code, out, err = progreg("--registry", "reg", "delete", program_id, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith(f"deleted {program_id}")
    assert storage.program_ids() == []
    assert git(tmp_path / "reg", "log", "-1", "--format=%s").startswith("Delete program")
    assert_fsck_clean(tmp_path / "reg")
