"""`progreg review BASE..HEAD`: a pull request summarised in progreg's terms.

A registry is cloned; on a branch, one program's prompt is edited by hand,
another's score raised by a re-save, one program is added and one removed;
the review of ``main..branch`` must say exactly that, in the model, its
Markdown and the command's text, JSON and exit code.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from progreg import InvalidInputError, ProgramStorage, review_range
from progreg.cli import cli
from progreg.core.canonical import encode
from progreg.core.ids import program_path
from progreg.registry.review import word_diff
from support.gitcli import CLI_IDENTITY, git

PROMPTED = "1a2b3c4d5e6f7a8b"  # its prompt is edited by hand
RESAVED = "2b3c4d5e6f7a8b9c"  # saved again with a higher score
REMOVED = "3c4d5e6f7a8b9c0d"
ADDED = "4d5e6f7a8b9c0d1e"
OTHER = "5e6f7a8b9c0d1e2f"  # another signature, untouched
PROMPT = "Classify the sentiment of the message. Quote order numbers exactly as written."


def state(instructions: str, demos: int = 1) -> dict[str, Any]:
    demo = [{"text": f"example {n}", "label": "neutral"} for n in range(demos)]
    return {"predict": {"signature": {"instructions": instructions}, "demos": demo}}


def save(storage: ProgramStorage, program_id: str, score: float, signature: str, **kw: Any) -> None:
    storage.save_program(
        state(kw.get("prompt", PROMPT), kw.get("demos", 1)),
        {"best_score_value": score, "metadata": {"optimizer": "MIPROv2"}},
        {"signature_class": signature},
        program_id,
    )


def written(tmp_path: Path, program_id: str, score: float, **kw: Any) -> bytes:
    """A program file as progreg writes it (saved in a scratch registry)."""
    scratch = ProgramStorage(tmp_path / f"scratch-{program_id}-{score}")
    save(scratch, program_id, score, "ClassifyText", **kw)
    return subprocess.run(
        ["git", "-C", str(scratch.path), "show", f"main:{program_path(program_id)}"],
        capture_output=True,
        check=True,
    ).stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone whose branch ``proposal`` changes four programs of ClassifyText."""
    registry = ProgramStorage(tmp_path / "registry")
    save(registry, PROMPTED, 0.80, "ClassifyText")
    save(registry, RESAVED, 0.82, "ClassifyText")
    save(registry, REMOVED, 0.70, "ClassifyText")
    save(registry, OTHER, 0.95, "RouteTicket")
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(registry.path), str(work))
    git(work, "switch", "-q", "-c", "proposal")
    prompted = work / program_path(PROMPTED)
    document = json.loads(prompted.read_bytes())
    document["program_data"]["state"]["predict"]["signature"]["instructions"] = PROMPT.replace(
        "exactly", "verbatim"
    )
    prompted.write_bytes(encode(document))
    (work / program_path(RESAVED)).write_bytes(written(tmp_path, RESAVED, 0.88, demos=3))
    added = work / program_path(ADDED)
    added.parent.mkdir(parents=True, exist_ok=True)
    added.write_bytes(written(tmp_path, ADDED, 0.75))
    git(work, "rm", "-q", program_path(REMOVED))
    git(work, "add", "-A")
    git(
        work,
        "commit",
        "-q",
        "-m",
        "Sharper prompt, a better version, one in, one out",
        env=CLI_IDENTITY,
    )
    return work


def test_the_review_names_every_change_in_progregs_terms(clone: Path) -> None:
    report = review_range(clone, "main..proposal")
    assert report.commits == 1 and report.ok
    changes = {p.program_id: p for p in report.programs}
    assert {k: v.status for k, v in changes.items()} == {
        PROMPTED: "changed",
        RESAVED: "changed",
        REMOVED: "removed",
        ADDED: "added",
    }
    prompted = changes[PROMPTED]
    assert (prompted.score.before, prompted.score.after) == (0.80, 0.80)
    (text,) = prompted.texts
    assert text.path == "program_data.state.predict.signature.instructions"
    assert ("removed", "exactly") in text.words and ("added", "verbatim") in text.words
    resaved = changes[RESAVED]
    assert (resaved.score.before, resaved.score.after) == (0.82, 0.88)
    assert resaved.demos == {"program_data.state.predict.demos": (1, 3)}
    assert "saved_at" not in resaved.other_changes  # bookkeeping of a save is not a change
    assert (changes[ADDED].score.before, changes[ADDED].score.after) == (None, 0.75)
    (signature,) = report.signatures  # RouteTicket is untouched
    assert signature.signature_class == "ClassifyText"
    assert (signature.best_before, signature.best_after) == (RESAVED, RESAVED)
    assert (signature.score.before, signature.score.after) == (0.82, 0.88)
    assert not signature.best_changes


def test_markdown_is_a_comment_ready_to_post(clone: Path) -> None:
    markdown = review_range(clone, "main..proposal").to_markdown()
    assert markdown.startswith(
        "### progreg review: 4 program(s) changed (1 added, 2 changed, 1 removed)"
    )
    assert f"| `{RESAVED}` | ClassifyText | changed | 0.8200 → 0.8800 (+0.0600) | MIPROv2 |" in (
        markdown
    )
    assert f"| `{ADDED}` | ClassifyText | added | - → 0.7500 | MIPROv2 |" in markdown
    assert "~~exactly~~ **verbatim**" in markdown
    assert "Best ClassifyText stays" in markdown
    assert "`program_data.state.predict.demos`: 1 → 3 demos" in markdown
    assert "The server's hook would accept every commit." in markdown


def test_a_new_best_and_the_hooks_findings_are_reported(clone: Path, tmp_path: Path) -> None:
    (clone / program_path(ADDED)).write_bytes(written(tmp_path, ADDED, 0.99))
    program = clone / program_path(PROMPTED)
    program.write_text(json.dumps(json.loads(program.read_bytes())))  # not canonical
    git(clone, "commit", "-q", "-am", "A new best, and a file reformatted", env=CLI_IDENTITY)
    report = review_range(clone, "main..proposal")
    (signature,) = report.signatures
    assert (signature.best_before, signature.best_after) == (RESAVED, ADDED)
    assert signature.best_changes
    assert len(report.problems) == 1 and "is not canonical JSON" in report.problems[0]
    markdown = report.to_markdown()
    assert f"**Best ClassifyText** is now `{ADDED}` (0.8200 → 0.9900 (+0.1700))" in markdown
    assert "**The server's hook would refuse 1 thing(s):**" in markdown


def test_the_command_prints_text_markdown_and_json(clone: Path) -> None:
    runner = CliRunner()
    base = ["--registry", str(clone), "review", "main..proposal"]
    text = runner.invoke(cli, base)
    assert text.exit_code == 0, text.output
    assert "4 program(s) changed" in text.output
    assert f"changed  {RESAVED}  ClassifyText  score 0.8200 -> 0.8800" in text.output
    assert "[-exactly-]{+verbatim+}" in text.output
    markdown = runner.invoke(cli, [*base, "--format", "markdown"])
    assert markdown.output == review_range(clone, "main..proposal").to_markdown()
    data = json.loads(runner.invoke(cli, [*base, "--json"]).output)
    assert {p["program_id"] for p in data["programs"]} == {PROMPTED, RESAVED, REMOVED, ADDED}
    assert data["problems"] == []


def test_strict_fails_when_the_hook_would_refuse(clone: Path) -> None:
    (clone / "notes.txt").write_text("stray\n")
    git(clone, "add", "notes.txt")
    git(clone, "commit", "-q", "-m", "Notes", env=CLI_IDENTITY)
    done = CliRunner().invoke(
        cli, ["--registry", str(clone), "review", "main..proposal", "--strict"]
    )
    assert done.exit_code == 1
    assert "notes.txt is not part of a registry" in done.output


def test_a_bare_registry_and_one_revision_are_reviewed_too(tmp_path: Path) -> None:
    storage = ProgramStorage(tmp_path / "registry")
    save(storage, PROMPTED, 0.5, "ClassifyText")
    save(storage, PROMPTED, 0.6, "ClassifyText", prompt=PROMPT + " Be brief.")
    report = review_range(storage.path, "main")  # main~1..main
    (change,) = report.programs
    assert (change.score.before, change.score.after) == (0.5, 0.6)
    assert change.texts[0].words[-1] == ("added", " Be brief.")


@pytest.mark.parametrize("spec", ["", "nope..main", "main...main", 7])
def test_a_bad_range_is_refused_by_name(tmp_path: Path, spec: Any) -> None:
    storage = ProgramStorage(tmp_path / "registry")
    save(storage, PROMPTED, 0.5, "ClassifyText")
    save(storage, PROMPTED, 0.6, "ClassifyText")
    with pytest.raises(InvalidInputError, match=r"range|revision"):
        review_range(storage.path, spec)


def test_word_diff_keeps_spaces_and_marks_words() -> None:
    assert word_diff("a b c", "a x c") == [
        ("same", "a "),
        ("removed", "b"),
        ("added", "x"),
        ("same", " c"),
    ]
