"""Comparing two program versions: numbers, structural summary, and Git's unified diff."""

from __future__ import annotations

import ast
import copy
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import progreg.git.objects.diffs
from progreg.core.document import ProgramDocument
from progreg.core.ids import program_path
from progreg.git.objects.diffs import unified_diff
from progreg.registry.compare import (
    ComparedProgram,
    Comparison,
    DemoChange,
    FieldChange,
    InstructionChange,
    compare_documents,
    diff_states,
    find_predictors,
    word_diff,
)

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
ID1 = "0a1b2c3d4e5f6071"
ID2 = "f0e1d2c3b4a59687"

OLD_INSTRUCTIONS = (
    "Classify the sentiment of the customer message. Think about the tone and the"
    " product mentioned, then answer with one label."
)
NEW_INSTRUCTIONS = (
    "Classify the sentiment of the support ticket. Think about the tone and the"
    " product mentioned, then answer with exactly one label."
)
COT_PREFIX = "Reasoning: Let's think step by step in order to"


def demo(text: str, reasoning: str, label: str) -> dict[str, Any]:
    return {"augmented": True, "text": text, "reasoning": reasoning, "label": label}


DEMO_A = demo("My order arrived broken.", "The customer reports damage.", "negative")
DEMO_B = demo("Thanks, the upgrade works great!", "Praise for the upgrade.", "positive")
DEMO_C = demo("How do I reset my password?", "A neutral question.", "neutral")
DEMO_D = demo("The invoice is wrong again, fix it.", "Repeated billing error.", "negative")


def cot_state(instructions: str, demos: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """A ChainOfThought's dump_state(), as DSPy 3 writes it."""
    return {
        "predict": {
            "traces": [],
            "train": [],
            "demos": demos,
            "signature": {
                "instructions": instructions,
                "fields": [
                    {"prefix": "Text:", "description": "${text}"},
                    {"prefix": prefix, "description": "${reasoning}"},
                    {"prefix": "Label:", "description": "one of positive, negative, neutral"},
                ],
            },
            "lm": None,
        },
        "metadata": {"dependency_versions": {"python": "3.11", "dspy": "3.0.3"}},
    }


def document(
    program_id: str,
    state: dict[str, Any],
    *,
    score: float | None,
    optimizer: str | None,
    saved_at: datetime,
) -> ProgramDocument:
    result: dict[str, Any] = {
        "scores": {"accuracy": score},
        "history": {"total_trials": 12},
        "best_score_name": "accuracy",
        "best_score_value": score,
        "metadata": {"optimizer": optimizer} if optimizer is not None else {},
    }
    return ProgramDocument(
        program_id=program_id,
        saved_at=saved_at,
        class_name="dspy.predict.chain_of_thought.ChainOfThought",
        state=state,
        optimization_result=result,
        metadata={"signature_class": "ClassifyText", "tags": ["sentiment"]},
        extra={},
    )


def old_doc() -> ProgramDocument:
    state = cot_state(OLD_INSTRUCTIONS, [DEMO_A, DEMO_B, DEMO_C], COT_PREFIX)
    return document(ID1, state, score=0.72, optimizer="MIPROv2", saved_at=T0)


def new_doc() -> ProgramDocument:
    # DEMO_A removed, DEMO_D added, the others reordered; the reasoning prefix shortened
    state = cot_state(NEW_INSTRUCTIONS, [DEMO_C, DEMO_B, DEMO_D], "Reasoning:")
    return document(ID2, state, score=0.81, optimizer="GEPA", saved_at=T0 + timedelta(hours=26))


def git_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        pytest.skip("the git command line is not installed")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }
    return subprocess.run(
        [git, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def hunks(patch: str) -> list[str]:
    """The lines of a patch from its first hunk on (headers differ in paths)."""
    lines = patch.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("@@")]
    return lines[starts[0] :] if starts else []


# -- the realistic pair --------------------------------------------------------------


def test_compare_documents_numbers() -> None:
    doc1, doc2 = old_doc(), new_doc()
    result = compare_documents(doc1, doc1.encode(), doc2, doc2.encode())
    assert result.program_1 == ComparedProgram(
        program_id=ID1, score=0.72, optimizer="MIPROv2", saved_at=T0, signature_class="ClassifyText"
    )
    assert result.program_2.program_id == ID2
    assert result.program_2.score == 0.81
    assert result.program_2.saved_at == T0 + timedelta(hours=26)
    assert result.comparison.score_difference == pytest.approx(-0.09)
    assert result.comparison.better_program == ID2
    assert result.comparison.age_difference_hours == -26.0
    assert result.diff.score_change == pytest.approx(0.09)
    # One direction for "change" everywhere: from program 1 to program 2, new minus old.
    assert result.comparison.score_change == result.diff.score_change
    assert result.diff.optimizer_change == ("MIPROv2", "GEPA")


def test_compare_documents_structural_summary() -> None:
    doc1, doc2 = old_doc(), new_doc()
    diff = compare_documents(doc1, doc1.encode(), doc2, doc2.encode()).diff
    assert diff.instructions == [
        InstructionChange(
            predictor="predict",
            old=OLD_INSTRUCTIONS,
            new=NEW_INSTRUCTIONS,
            word_diff=(
                "Classify the sentiment of the [-customer message.-]{+support ticket.+} Think"
                " about the tone and the product mentioned, then answer with {+exactly+}"
                " one label."
            ),
        )
    ]
    assert diff.demos_added == 1
    assert diff.demos_removed == 1
    assert diff.demos == [DemoChange(predictor="predict", added=1, removed=1)]
    assert diff.fields == [
        FieldChange(
            predictor="predict",
            index=1,
            change="changed",
            old={"prefix": COT_PREFIX, "description": "${reasoning}"},
            new={"prefix": "Reasoning:", "description": "${reasoning}"},
            changed_keys=["prefix"],
        )
    ]
    assert diff.predictors_added == []
    assert diff.predictors_removed == []


def test_unified_diff_matches_git_diff_no_index(tmp_path: Path) -> None:
    doc1, doc2 = old_doc(), new_doc()
    data1, data2 = doc1.encode(), doc2.encode()
    diff = compare_documents(doc1, data1, doc2, data2).diff

    (tmp_path / "old.json").write_bytes(data1)
    (tmp_path / "new.json").write_bytes(data2)
    numstat = git_cli("diff", "--no-index", "--numstat", "old.json", "new.json", cwd=tmp_path)
    assert numstat.returncode == 1, numstat.stderr  # 1: the files differ
    added, removed, _name = numstat.stdout.split("\t")
    assert (diff.added_lines, diff.removed_lines) == (int(added), int(removed))

    patch = git_cli("diff", "--no-index", "--no-color", "old.json", "new.json", cwd=tmp_path)
    assert patch.returncode == 1, patch.stderr
    assert hunks(diff.unified) == hunks(patch.stdout)
    plus = sum(1 for line in hunks(diff.unified) if line.startswith("+"))
    minus = sum(1 for line in hunks(diff.unified) if line.startswith("-"))
    assert (plus, minus) == (diff.added_lines, diff.removed_lines)


def test_unified_diff_names_the_repository_paths() -> None:
    doc1, doc2 = old_doc(), new_doc()
    unified = compare_documents(doc1, doc1.encode(), doc2, doc2.encode()).diff.unified
    path1, path2 = program_path(ID1), program_path(ID2)
    assert path1 == "programs/0a/1b/0a1b2c3d4e5f6071.json"
    lines = unified.splitlines()
    assert lines[0] == f"diff --git a/{path1} b/{path2}"
    assert lines[2] == f"--- a/{path1}"
    assert lines[3] == f"+++ b/{path2}"


def test_comparing_a_program_with_itself() -> None:
    doc = old_doc()
    result = compare_documents(doc, doc.encode(), doc, doc.encode())
    assert result.comparison == Comparison(
        score_change=0.0, score_difference=0.0, better_program=None, age_difference_hours=0.0
    )
    diff = result.diff
    assert (diff.unified, diff.added_lines, diff.removed_lines) == ("", 0, 0)
    assert diff.instructions == []
    assert diff.demos == []
    assert (diff.demos_added, diff.demos_removed) == (0, 0)
    assert diff.fields == []
    assert diff.score_change == 0.0
    assert diff.optimizer_change is None


def test_two_versions_of_one_program_without_scores() -> None:
    doc1 = document(ID1, cot_state("Answer.", [], "A:"), score=None, optimizer=None, saved_at=T0)
    doc2 = document(
        ID1,
        cot_state("Answer briefly.", [], "A:"),
        score=0.5,
        optimizer=None,
        saved_at=T0 + timedelta(minutes=30),
    )
    result = compare_documents(doc2, doc2.encode(), doc1, doc1.encode())
    assert result.comparison.score_difference is None
    assert result.comparison.score_change is None
    assert result.comparison.better_program == ID1
    assert result.comparison.age_difference_hours == 0.5
    assert result.diff.score_change is None
    assert result.diff.optimizer_change is None
    # program 1 (doc2) is the old side: "Answer briefly." -> "Answer."
    assert result.diff.instructions[0].word_diff == "[-Answer briefly.-]{+Answer.+}"
    lines = result.diff.unified.splitlines()
    assert lines[0] == f"diff --git a/{program_path(ID1)} b/{program_path(ID1)}"


def test_frozen_models() -> None:
    doc = old_doc()
    result = compare_documents(doc, doc.encode(), doc, doc.encode())
    with pytest.raises(ValueError, match="frozen"):
        result.diff.added_lines = 3


# -- structure of other states ---------------------------------------------------------


def predictor(instructions: str, demos: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "traces": [],
        "train": [],
        "demos": demos or [],
        "signature": {
            "instructions": instructions,
            "fields": [
                {"prefix": "Question:", "description": "${question}"},
                {"prefix": "Answer:", "description": "${answer}"},
            ],
        },
        "lm": None,
    }


def test_find_predictors_in_states_of_several_shapes() -> None:
    single = predictor("Answer the question.")
    assert find_predictors(single) == {"self": single}
    module = {
        "generate_query.predict": predictor("Write a search query."),
        "generate_answer.predict": predictor("Answer from the context."),
        "metadata": {"dependency_versions": {"dspy": "3.0.3"}},
    }
    assert sorted(find_predictors(module)) == ["generate_answer.predict", "generate_query.predict"]
    nested = {"router": {"predict": predictor("Route.")}, "experts": [predictor("Expert.")]}
    assert sorted(find_predictors(nested)) == ["experts[0]", "router.predict"]
    assert find_predictors({"signature": {"fields": []}, "demos": []}) == {}
    assert find_predictors({}) == {}


def test_predictors_added_and_removed_count_their_demos() -> None:
    old = {
        "generate_query.predict": predictor("Write a search query.", [DEMO_A]),
        "generate_answer.predict": predictor("Answer from the context.", [DEMO_B]),
    }
    new = copy.deepcopy(old)
    del new["generate_query.predict"]
    new["rerank.predict"] = predictor("Rerank the passages.", [DEMO_C, DEMO_D])
    diff = diff_states(old, new)
    assert diff.predictors_added == ["rerank.predict"]
    assert diff.predictors_removed == ["generate_query.predict"]
    assert diff.instructions == []
    assert diff.fields == []
    assert diff.demos == [
        DemoChange(predictor="generate_query.predict", added=0, removed=1),
        DemoChange(predictor="rerank.predict", added=2, removed=0),
    ]
    assert (diff.demos_added, diff.demos_removed) == (2, 1)


def test_demos_are_multisets() -> None:
    old = predictor("Q.", [DEMO_A, DEMO_A, DEMO_B])
    reordered = predictor("Q.", [DEMO_B, DEMO_A, DEMO_A])
    assert diff_states(old, reordered).demos == []
    one_copy_less = predictor("Q.", [DEMO_B, DEMO_A])
    assert diff_states(old, one_copy_less).demos == [
        DemoChange(predictor="self", added=0, removed=1)
    ]
    # key order inside a demo does not matter (canonical JSON); values do
    shuffled_keys = predictor("Q.", [dict(reversed(DEMO_A.items())), DEMO_A, DEMO_B])
    assert diff_states(old, shuffled_keys).demos == []
    edited = predictor("Q.", [DEMO_A, DEMO_A, {**DEMO_B, "label": "neutral"}])
    assert diff_states(old, edited).demos == [DemoChange(predictor="self", added=1, removed=1)]


def test_fields_added_removed_and_changed_by_index() -> None:
    old = predictor("Q.")
    new = copy.deepcopy(old)
    new["signature"]["fields"][0]["description"] = "a factual question"
    new["signature"]["fields"].append({"prefix": "Confidence:", "description": "0..1"})
    diff = diff_states(old, new)
    assert diff.fields == [
        FieldChange(
            predictor="self",
            index=0,
            change="changed",
            old={"prefix": "Question:", "description": "${question}"},
            new={"prefix": "Question:", "description": "a factual question"},
            changed_keys=["description"],
        ),
        FieldChange(
            predictor="self",
            index=2,
            change="added",
            old=None,
            new={"prefix": "Confidence:", "description": "0..1"},
            changed_keys=[],
        ),
    ]
    back = diff_states(new, old)
    assert [(f.index, f.change) for f in back.fields] == [(0, "changed"), (2, "removed")]
    assert back.fields[1].old == {"prefix": "Confidence:", "description": "0..1"}
    assert back.fields[1].new is None


def test_instructions_that_are_not_text() -> None:
    old = {"signature": {"instructions": None}}
    new = {"signature": {"instructions": "Now there are some."}}
    diff = diff_states(old, new)
    assert diff.instructions == [
        InstructionChange(
            predictor="self",
            old="",
            new="Now there are some.",
            word_diff="{+Now there are some.+}",
        )
    ]


# -- word diff -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("the quick brown fox", "the quick brown fox", "the quick brown fox"),
        ("the quick brown fox", "the slow brown fox", "the [-quick-]{+slow+} brown fox"),
        ("brown fox", "the brown fox", "{+the+} brown fox"),
        ("the brown fox jumps", "the brown fox", "the brown fox [-jumps-]"),
        ("a b c d", "a x y d", "a [-b c-]{+x y+} d"),
        ("one  two\n\tthree", "one two three", "one two three"),
        ("", "Be concise.", "{+Be concise.+}"),
        ("Be concise.", "", "[-Be concise.-]"),
        ("", "", ""),
    ],
)
def test_word_diff(old: str, new: str, expected: str) -> None:
    assert word_diff(old, new) == expected


def test_word_diff_agrees_with_git_word_diff(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text(OLD_INSTRUCTIONS + "\n")
    (tmp_path / "new.txt").write_text(NEW_INSTRUCTIONS + "\n")
    out = git_cli(
        "diff", "--no-index", "--no-color", "--word-diff=plain", "old.txt", "new.txt", cwd=tmp_path
    )
    assert out.returncode == 1, out.stderr
    assert hunks(out.stdout)[1:] == [word_diff(OLD_INSTRUCTIONS, NEW_INSTRUCTIONS)]


# -- the Git-level function --------------------------------------------------------------


def test_unified_diff_context_lines() -> None:
    old = b"".join(f"line {i}\n".encode() for i in range(20))
    new = old.replace(b"line 10\n", b"line ten\n")
    text, added, removed = unified_diff(old, new, "a.txt", "a.txt", context=0)
    assert (added, removed) == (1, 1)
    assert hunks(text) == ["@@ -11 +11 @@ line 9", "-line 10", "+line ten"]
    text, _, _ = unified_diff(old, new, "a.txt", "a.txt")
    assert hunks(text)[0] == "@@ -8,7 +8,7 @@ line 6"
    with pytest.raises(ValueError, match="context"):
        unified_diff(old, new, "a.txt", "a.txt", context=-1)


def test_unified_diff_of_equal_and_empty_inputs() -> None:
    assert unified_diff(b"x\n", b"x\n", "a", "b") == ("", 0, 0)
    text, added, removed = unified_diff(b"", b"x\ny\n", "a", "a")
    assert (added, removed) == (2, 0)
    assert hunks(text) == ["@@ -0,0 +1,2 @@", "+x", "+y"]


def test_gitstore_diffs_knows_nothing_of_the_registry() -> None:
    source = Path(progreg.git.objects.diffs.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
    assert all(not name.startswith("progreg") for name in imported), imported
