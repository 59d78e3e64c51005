"""Program files merged and diffed by Git through progreg's drivers, in real clones.

Each test clones a registry into a work tree, runs `progreg hooks install` in
it (the drivers in the clone's config, the pre-commit hook) and then plain
`git merge`, `git diff` and `git commit`, as people on a team do.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from progreg import ConflictError, ProgramStorage
from progreg.cli import cli
from progreg.core.canonical import encode
from progreg.core.docmerge import merge_documents
from progreg.core.ids import program_path
from progreg.core.layout import ATTRIBUTES, ATTRIBUTES_TEXT
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, git

PROGRAM = "1a2b3c4d5e6f7a8b"
PATH = program_path(PROGRAM)
INSTRUCTIONS = (
    "Classify the sentiment of a customer message. Possible values: positive, negative,"
    " neutral. Quote order numbers exactly as written."
)


def state(instructions: str = INSTRUCTIONS, demo: str = "My parcel is late.") -> dict[str, Any]:
    return {
        "predict": {
            "signature": {"instructions": instructions},
            "demos": [{"text": demo, "label": "negative"}],
        }
    }


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, check=False, env=CLI_IDENTITY
    )


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone of a registry holding PROGRAM, with progreg's drivers and hook installed."""
    registry = ProgramStorage(tmp_path / "registry")
    registry.save_program(state(), {"best_score_value": 0.8}, program_id=PROGRAM)
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(registry.path), str(work))
    done = CliRunner().invoke(cli, ["hooks", "install", str(work)])
    assert done.exit_code == 0, done.output
    assert "installed" in done.output and "warning" not in done.output
    return work


def document(work: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((work / PATH).read_bytes())
    return value


def edit(work: Path, branch: str, change: dict[str, Any], message: str) -> None:
    """On a new branch from main, rewrite PATH (canonical) with ``change`` applied, commit."""
    git(work, "switch", "-q", "-c", branch, "main")
    value = document(work)
    for dotted, new in change.items():
        *parents, last = dotted.split(".")
        target = value
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = new
    (work / PATH).write_bytes(encode(value))
    git(work, "commit", "-q", "-am", message, env=CLI_IDENTITY)


def resave(tmp_path: Path, work: Path, branch: str, score: float, instructions: str) -> str:
    """On a new branch, commit a new version of PROGRAM as progreg saves it; its saved_at."""
    scratch = ProgramStorage(tmp_path / f"scratch-{branch}")
    saved = scratch.save_program(
        state(instructions), {"best_score_value": score}, program_id=PROGRAM
    )
    data = subprocess.run(
        ["git", "-C", str(scratch.path), "show", f"main:{PATH}"], capture_output=True, check=True
    ).stdout
    git(work, "switch", "-q", "-c", branch, "main")
    (work / PATH).write_bytes(data)
    git(work, "commit", "-q", "-am", f"Re-save at {score}", env=CLI_IDENTITY)
    return saved.saved_at.isoformat()


INSTRUCTIONS_KEY = "program_data.state.predict.signature.instructions"
DEMO_KEY = "program_data.state.predict.demos"


# -- merges ----------------------------------------------------------------------------


def test_edits_to_different_fields_merge_cleanly(clone: Path) -> None:
    """A demo's label and its text are adjacent lines: Git's line merge calls that a
    conflict, the driver merges the two values."""
    edit(clone, "label", {f"{DEMO_KEY}.0.label": "neutral"}, "Relabel the demo")
    edit(clone, "text", {f"{DEMO_KEY}.0.text": "Where is my parcel?"}, "Reword the demo")
    plain = clone.parent / "plain"  # the same merge in a clone without the drivers
    git(clone.parent, "clone", "-q", str(clone), str(plain))
    git(plain, "branch", "-q", "label", "origin/label")  # plain is on "text", as the clone
    assert run("git", "merge", "--no-edit", "label", cwd=plain).returncode != 0

    merged = run("git", "merge", "-q", "--no-edit", "label", cwd=clone)
    assert merged.returncode == 0, merged.stderr
    demo = document(clone)["program_data"]["state"]["predict"]["demos"][0]
    assert demo == {"label": "neutral", "text": "Where is my parcel?"}
    assert (clone / PATH).read_bytes() == encode(document(clone))  # canonical, as the hook wants
    checked = CliRunner().invoke(cli, ["validate", str(clone)])
    assert checked.exit_code == 0, checked.output
    assert_fsck_clean(clone / ".git")


def test_the_same_field_changed_on_both_sides_is_a_conflict_naming_it(clone: Path) -> None:
    edit(clone, "ours", {INSTRUCTIONS_KEY: "Answer in one word."}, "Ours")
    edit(clone, "theirs", {INSTRUCTIONS_KEY: "Answer politely."}, "Theirs")
    merged = run("git", "merge", "--no-edit", "ours", cwd=clone)
    assert merged.returncode != 0
    said = merged.stdout + merged.stderr
    assert f"progreg: {PATH}: 1 field(s) changed on both sides" in said
    assert f'{INSTRUCTIONS_KEY}: "Answer politely." (ours) / "Answer in one word." (theirs)' in said
    text = (clone / PATH).read_text()
    assert "<<<<<<< ours" in text and ">>>>>>> theirs" in text
    assert git(clone, "diff", "--name-only", "--diff-filter=U").split() == [PATH]


@pytest.mark.parametrize("direction", ["later into earlier", "earlier into later"])
def test_two_resaves_keep_both_versions_and_the_later_is_live(
    clone: Path, tmp_path: Path, direction: str
) -> None:
    first = resave(tmp_path, clone, "first", 0.81, "Classify, first version.")
    second = resave(tmp_path, clone, "second", 0.85, "Classify, second version.")
    assert second > first
    into, other = ("first", "second") if direction == "later into earlier" else ("second", "first")
    git(clone, "switch", "-q", into)
    merged = run("git", "merge", "--no-edit", other, cwd=clone)
    assert merged.returncode == 0, merged.stderr
    assert "two re-saves: the later save is the live version" in merged.stdout + merged.stderr
    value = document(clone)
    assert value["saved_at"] == second
    assert value["optimization_result"]["best_score_value"] == 0.85
    versions = git(clone, "log", "--full-history", "--format=%s", "--", PATH).splitlines()
    assert {"Re-save at 0.81", "Re-save at 0.85"} <= set(versions)  # both stay in history


def test_a_registry_has_the_attributes_and_gains_them_at_its_next_save(tmp_path: Path) -> None:
    storage = ProgramStorage(tmp_path / "registry")
    storage.save_program(state(), program_id=PROGRAM)
    shown = git(storage.path, "show", f"main:{ATTRIBUTES}")
    assert shown == ATTRIBUTES_TEXT
    checked = subprocess.run(
        ["git", "-C", str(storage.path), "check-attr", "merge", "diff", "--", PATH],
        capture_output=True,
        text=True,
        check=True,
    )
    assert checked.stdout == "" or "unspecified" in checked.stdout  # bare: no work tree
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(storage.path), str(work))
    assert git(work, "check-attr", "merge", "diff", "--", PATH).splitlines() == [
        f"{PATH}: merge: progreg",
        f"{PATH}: diff: progreg",
    ]
    git(work, "rm", "-q", ATTRIBUTES)  # a registry written before progreg wrote the file
    git(work, "commit", "-q", "-m", "Without attributes", env=CLI_IDENTITY)
    git(work, "push", "-q", "origin", "main")
    ProgramStorage(storage.path).save_program(state("Other."), program_id="00ff00ff00ff00ff")
    assert git(storage.path, "show", f"main:{ATTRIBUTES}") == ATTRIBUTES_TEXT
    assert_fsck_clean(storage.path)


# -- diffs -----------------------------------------------------------------------------


def test_git_diff_shows_a_prompt_edit_as_the_sentence_that_changed(clone: Path) -> None:
    edit(clone, "prompt", {INSTRUCTIONS_KEY: INSTRUCTIONS.replace("exactly", "verbatim")}, "Edit")
    diff = git(clone, "diff", "main", "prompt", "--", PATH)
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == [
        "-    Quote order numbers exactly as written.",
        "+    Quote order numbers verbatim as written.",
    ]
    plain = git(clone, "diff", "--no-textconv", "main", "prompt", "--", PATH)
    assert '"instructions": "Classify the sentiment' in plain  # the stored line, whole


# -- the pre-commit hook ---------------------------------------------------------------


def test_the_pre_commit_hook_refuses_a_staged_file_that_is_not_canonical(clone: Path) -> None:
    program = clone / PATH
    original = program.read_bytes()
    program.write_text(json.dumps(json.loads(original)))
    git(clone, "add", PATH)
    program.write_bytes(original)  # the work tree looks fine; the index is what is committed
    refused = run("git", "commit", "-m", "Sneak it in", cwd=clone)
    assert refused.returncode != 0
    assert f"{PATH} is not canonical JSON" in refused.stderr
    git(clone, "add", PATH)
    accepted = run("git", "commit", "-m", "Nothing wrong", "--allow-empty", cwd=clone)
    assert accepted.returncode == 0, accepted.stderr


def test_install_refuses_to_replace_a_different_pre_commit_hook(clone: Path) -> None:
    hook = clone / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 0\n")
    refused = CliRunner().invoke(cli, ["hooks", "install", str(clone)])
    assert isinstance(refused.exception, ConflictError)
    assert "already exists and is a different hook" in str(refused.exception)
    assert hook.read_text() == "#!/bin/sh\nexit 0\n"
    forced = CliRunner().invoke(cli, ["hooks", "install", "--force", str(clone)])
    assert forced.exit_code == 0, forced.output
    assert "validate" in hook.read_text()


# -- the merge itself ------------------------------------------------------------------


def test_merge_documents_agrees_whichever_side_is_ours(tmp_path: Path) -> None:
    storage = ProgramStorage(tmp_path / "r")
    data = []
    for score in (0.5, 0.6, 0.7):
        storage.save_program(state(f"v{score}"), {"best_score_value": score}, program_id=PROGRAM)
        data.append(git(storage.path, "show", f"main:{PATH}").encode())
    base, ours, theirs = data
    one, two = merge_documents(base, ours, theirs, PATH), merge_documents(base, theirs, ours, PATH)
    assert one.data == two.data == theirs  # the later save
    assert merge_documents(None, ours, ours, PATH).data == ours
