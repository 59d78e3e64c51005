"""The CI recipes under ci/ run what they say, on a real branch of a registry clone.

Each recipe's progreg (and git fetch) commands are taken from its YAML file as
written, and run with bash in a clone whose branch changes a program, with the
variables the CI service would set: `progreg validate --range` passes on a
sound branch and fails on a broken one, and `progreg review` writes the
Markdown the recipe posts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from progreg import ProgramStorage
from progreg.core.canonical import encode
from progreg.core.ids import program_path
from support.gitcli import CLI_IDENTITY, git

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {
    "github": (ROOT / "ci" / "github" / "progreg.yml", {"BASE_REF": "main"}),
    "gitlab": (
        ROOT / "ci" / "gitlab" / "progreg.gitlab-ci.yml",
        {"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"},
    ),
}
PROGRAM = "1a2b3c4d5e6f7a8b"
_COMMAND = re.compile(r"^\s*(?:-\s*|run:\s*)((?:progreg|git fetch) .*)$")


def commands(recipe: Path) -> list[str]:
    """The progreg and git fetch command lines of a recipe, in order, as written."""
    return [m.group(1) for line in recipe.read_text().splitlines() if (m := _COMMAND.match(line))]


def branch(tmp_path: Path, sound: bool) -> Path:
    """A clone on a branch that edits a prompt (canonically, or not)."""
    storage = ProgramStorage(tmp_path / "registry")
    storage.save_program(
        {"predict": {"signature": {"instructions": "Classify the message."}}},
        {"best_score_value": 0.8},
        {"signature_class": "ClassifyText"},
        PROGRAM,
    )
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(storage.path), str(work))
    git(work, "switch", "-q", "-c", "proposal")
    path = work / program_path(PROGRAM)
    document = json.loads(path.read_bytes())
    document["program_data"]["state"]["predict"]["signature"]["instructions"] = (
        "Classify the message, briefly."
    )
    path.write_bytes(encode(document) if sound else json.dumps(document).encode())
    git(work, "commit", "-q", "-am", "Briefer", env=CLI_IDENTITY)
    return work


def run(command: str, cwd: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **CLI_IDENTITY,
        **variables,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("service", sorted(RECIPES))
def test_the_recipe_validates_and_reviews_a_sound_branch(service: str, tmp_path: Path) -> None:
    recipe, variables = RECIPES[service]
    lines = commands(recipe)
    assert any(line.startswith("progreg validate --range") for line in lines), lines
    assert any(line.startswith("progreg review") for line in lines), lines
    work = branch(tmp_path, sound=True)
    for line in lines:
        done = run(line, work, variables)
        assert done.returncode == 0, (line, done.stderr)
    review = (work / "review.md").read_text()
    assert review.startswith("### progreg review: 1 program(s) changed")
    assert "~~message.~~ **message, briefly.**" in review
    assert "would accept every commit" in review


@pytest.mark.parametrize("service", sorted(RECIPES))
def test_the_recipe_fails_a_branch_the_hook_would_refuse(service: str, tmp_path: Path) -> None:
    recipe, variables = RECIPES[service]
    work = branch(tmp_path, sound=False)
    (validate,) = [line for line in commands(recipe) if line.startswith("progreg validate")]
    done = run(validate, work, variables)
    assert done.returncode == 1
    assert "is not canonical JSON" in done.stderr
