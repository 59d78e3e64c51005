"""Comparing two program versions: the numbers, a structural summary and a real diff.

:func:`compare_documents` compares program 1 with program 2. The diff reads
like ``git diff <program 1> <program 2>``: program 1 is the old side and
program 2 the new side, so ``score_change = score2 - score1`` (the opposite
sign of :attr:`Comparison.score_difference`, which keeps the reference's
``score1 - score2``) and ``optimizer_change = (optimizer1, optimizer2)``.

The structural summary works on DSPy ``dump_state()`` states. A predictor is
any JSON object with a ``"signature"`` object that has an ``"instructions"``
key. It is found anywhere in the state: the state itself (a ``dspy.Predict``,
named ``"self"`` as DSPy's ``named_predictors`` does), or nested under keys
(``"predict"``, ``"generate_answer.predict"``; nested objects give dotted
paths, list items ``name[i]``). Predictors are matched between the two
states by path. For each predictor in both:

- instructions: when they differ, the old and new text and a word diff: the
  texts are split on whitespace and compared word by word
  (:class:`difflib.SequenceMatcher`); removed words are shown as
  ``[-...-]`` and added ones as ``{+...+}``, as ``git diff --word-diff=plain``
  shows them, with runs of whitespace shown as one space.
- demos: compared as multisets of their canonical JSON, so order does not
  matter and a changed demo counts as one removed and one added.
- fields (``signature.fields``): compared by index: a field present on one
  side only is added or removed; at the same index, a field whose prefix,
  description or other keys differ is changed (``changed_keys`` names them).

A predictor present on one side only is listed as added or removed, and its
demos count as added or removed.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from progreg.core import canonical
from progreg.core.document import ProgramDocument
from progreg.core.ids import program_path
from progreg.git.objects.diffs import unified_diff
from progreg.registry.analytics import age_difference_hours, better_program, score_difference

#: The path of a predictor that is the whole state (a ``dspy.Predict``).
ROOT_PREDICTOR = "self"


class ComparedProgram(BaseModel):
    """One side of a comparison."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    program_id: str
    score: float | None
    optimizer: str | None
    saved_at: datetime
    signature_class: str | None


class Comparison(BaseModel):
    """Program 1 relative to program 2, and the change from program 1 to program 2.

    ``score_change`` reads as ``diff.score_change`` and as ``git diff 1 2``:
    new minus old. ``score_difference`` is its opposite, kept from the
    reference API that progreg replaces.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    score_change: float | None = Field(
        description="score2 - score1, the change from program 1 to program 2 (as"
        " diff.score_change); None if either is null"
    )
    score_difference: float | None = Field(
        description="score1 - score2 (the opposite of score_change); None if either is null"
    )
    better_program: str | None = Field(
        description="id with the higher score; None on a tie or when neither has a score"
    )
    age_difference_hours: float = Field(
        description="saved_at1 - saved_at2 in hours, rounded to 2; positive when 1 is newer"
    )


class InstructionChange(BaseModel):
    """A predictor whose instructions changed."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    predictor: str
    old: str
    new: str
    word_diff: str = Field(description="the text with [-removed-] and {+added+} words")


class DemoChange(BaseModel):
    """Demos added to and removed from one predictor."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    predictor: str
    added: int
    removed: int


class FieldChange(BaseModel):
    """A signature field added, removed or changed (fields are matched by index)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    predictor: str
    index: int
    change: Literal["added", "removed", "changed"]
    old: Any = Field(description="the old field (usually {prefix, description}); None if added")
    new: Any = Field(description="the new field; None if removed")
    changed_keys: list[str] = Field(
        description="keys whose values differ, sorted; empty unless both fields are objects"
    )


class StateDiff(BaseModel):
    """The structural differences between two program states."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    instructions: list[InstructionChange]
    demos: list[DemoChange]
    demos_added: int
    demos_removed: int
    fields: list[FieldChange]
    predictors_added: list[str]
    predictors_removed: list[str]


class ProgramDiff(BaseModel):
    """What changed from program 1 (old side) to program 2 (new side)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    unified: str = Field(description="unified diff of the two canonical JSON files")
    added_lines: int
    removed_lines: int
    instructions: list[InstructionChange]
    demos: list[DemoChange] = Field(description="per predictor, where any demo changed")
    demos_added: int
    demos_removed: int
    fields: list[FieldChange]
    predictors_added: list[str]
    predictors_removed: list[str]
    score_change: float | None = Field(description="score2 - score1; None if either is null")
    bookkeeping_only: bool = Field(
        default=False,
        description="True when the files differ only in program_id, saved_at and the"
        " provenance progreg adds to metadata: the same content",
    )
    optimizer_change: tuple[str | None, str | None] | None = Field(
        description="(optimizer1, optimizer2) when they differ, else None"
    )


class ProgramComparison(BaseModel):
    """Two programs side by side, how they compare, and the diff between them."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    program_1: ComparedProgram
    program_2: ComparedProgram
    comparison: Comparison
    diff: ProgramDiff


# -- predictors -------------------------------------------------------------------


def is_predictor(value: object) -> bool:
    """True for a JSON object with a ``signature`` object that has ``instructions``."""
    if not isinstance(value, Mapping):
        return False
    signature = value.get("signature")
    return isinstance(signature, Mapping) and "instructions" in signature


def find_predictors(state: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The predictors of a state by path (``"self"`` when the state is one).

    Paths join nested keys with ``.`` and list items with ``[i]``; when two
    routes give the same path, the first found in document order is kept.
    """
    if is_predictor(state):
        return {ROOT_PREDICTOR: state}
    found: dict[str, Mapping[str, Any]] = {}
    _collect(state, "", found)
    return found


def _collect(value: object, path: str, found: dict[str, Mapping[str, Any]]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if is_predictor(item):
                found.setdefault(child, item)
            else:
                _collect(item, child, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            child = f"{path}[{index}]"
            if is_predictor(item):
                found.setdefault(child, item)
            else:
                _collect(item, child, found)


# -- pieces of the summary ----------------------------------------------------------


#: What happened to a run of words between two texts.
RunKind = Literal["same", "removed", "added"]


def word_runs(old: Sequence[str], new: Sequence[str]) -> list[tuple[RunKind, list[str]]]:
    """``old`` turned into ``new`` token by token: runs of kept, removed and added tokens.

    A replaced run is its removed run then its added run (they are adjacent
    only then: the matcher never puts a deletion next to an insertion).
    """
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    runs: list[tuple[RunKind, list[str]]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            runs.append(("same", list(old[i1:i2])))
            continue
        if i2 > i1:
            runs.append(("removed", list(old[i1:i2])))
        if j2 > j1:
            runs.append(("added", list(new[j1:j2])))
    return runs


def word_diff(old: str, new: str) -> str:
    """A word-level diff of two texts, as ``git diff --word-diff=plain`` marks it.

    Words are the whitespace-separated tokens; unchanged runs are shown as
    they are, removed runs as ``[-...-]`` and added runs as ``{+...+}`` (a
    replaced run as ``[-old-]{+new+}``), separated by single spaces.
    """
    parts: list[str] = []
    previous: RunKind | None = None
    for kind, words in word_runs(old.split(), new.split()):
        text = " ".join(words)
        if kind == "same":
            parts.append(text)
        elif kind == "removed":
            parts.append(f"[-{text}-]")
        elif previous == "removed":  # the added half of a replaced run
            parts[-1] += f"{{+{text}+}}"
        else:
            parts.append(f"{{+{text}+}}")
        previous = kind
    return " ".join(parts)


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _signature(predictor: Mapping[str, Any]) -> Mapping[str, Any]:
    signature = predictor.get("signature")
    return signature if isinstance(signature, Mapping) else {}


def _demos(predictor: Mapping[str, Any]) -> Counter[bytes]:
    demos = predictor.get("demos")
    if not isinstance(demos, list):
        return Counter()
    return Counter(canonical.encode(demo, where="demo") for demo in demos)


def _fields(predictor: Mapping[str, Any]) -> list[Any]:
    fields = _signature(predictor).get("fields")
    return fields if isinstance(fields, list) else []


def _field_changes(path: str, old: list[Any], new: list[Any]) -> list[FieldChange]:
    changes: list[FieldChange] = []
    for index in range(max(len(old), len(new))):
        if index >= len(old):
            changes.append(_field_change(path, index, "added", None, new[index]))
        elif index >= len(new):
            changes.append(_field_change(path, index, "removed", old[index], None))
        elif old[index] != new[index]:
            changes.append(_field_change(path, index, "changed", old[index], new[index]))
    return changes


def _field_change(
    path: str, index: int, change: Literal["added", "removed", "changed"], old: Any, new: Any
) -> FieldChange:
    keys: list[str] = []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return FieldChange(
        predictor=path, index=index, change=change, old=old, new=new, changed_keys=keys
    )


def diff_states(old: Mapping[str, Any], new: Mapping[str, Any]) -> StateDiff:
    """The structural differences from the ``old`` state to the ``new`` one."""
    old_predictors = find_predictors(old)
    new_predictors = find_predictors(new)
    instructions: list[InstructionChange] = []
    demos: list[DemoChange] = []
    fields: list[FieldChange] = []
    for path in sorted(old_predictors.keys() | new_predictors.keys()):
        before = old_predictors.get(path)
        after = new_predictors.get(path)
        old_demos = _demos(before) if before is not None else Counter[bytes]()
        new_demos = _demos(after) if after is not None else Counter[bytes]()
        added = (new_demos - old_demos).total()
        removed = (old_demos - new_demos).total()
        if added or removed:
            demos.append(DemoChange(predictor=path, added=added, removed=removed))
        if before is None or after is None:
            continue
        old_text = _text(_signature(before).get("instructions"))
        new_text = _text(_signature(after).get("instructions"))
        if old_text != new_text:
            instructions.append(
                InstructionChange(
                    predictor=path,
                    old=old_text,
                    new=new_text,
                    word_diff=word_diff(old_text, new_text),
                )
            )
        fields.extend(_field_changes(path, _fields(before), _fields(after)))
    return StateDiff(
        instructions=instructions,
        demos=demos,
        demos_added=sum(d.added for d in demos),
        demos_removed=sum(d.removed for d in demos),
        fields=fields,
        predictors_added=sorted(new_predictors.keys() - old_predictors.keys()),
        predictors_removed=sorted(old_predictors.keys() - new_predictors.keys()),
    )


# -- comparing documents ------------------------------------------------------------


def same_content(doc1: ProgramDocument, doc2: ProgramDocument) -> bool:
    """True when two documents differ at most in program_id, saved_at and provenance."""
    return doc1.content_key() == dataclasses.replace(doc2, program_id=doc1.program_id).content_key()


def compared_program(doc: ProgramDocument) -> ComparedProgram:
    """One side of a comparison, from its document."""
    return ComparedProgram(
        program_id=doc.program_id,
        score=doc.best_score,
        optimizer=doc.optimizer,
        saved_at=doc.saved_at,
        signature_class=doc.signature_class,
    )


def compare_documents(
    doc1: ProgramDocument, data1: bytes, doc2: ProgramDocument, data2: bytes
) -> ProgramComparison:
    """Compare program 1 with program 2; ``data1``/``data2`` are their canonical file bytes.

    The unified diff goes from program 1's file to program 2's, with their
    repository paths (``programs/ab/cd/<id>.json``) as ``a/`` and ``b/``.
    """
    program_1 = compared_program(doc1)
    program_2 = compared_program(doc2)
    unified, added_lines, removed_lines = unified_diff(
        data1, data2, program_path(doc1.program_id), program_path(doc2.program_id)
    )
    state = diff_states(doc1.state, doc2.state)
    optimizers = (doc1.optimizer, doc2.optimizer)
    diff = ProgramDiff(
        unified=unified,
        added_lines=added_lines,
        removed_lines=removed_lines,
        instructions=state.instructions,
        demos=state.demos,
        demos_added=state.demos_added,
        demos_removed=state.demos_removed,
        fields=state.fields,
        predictors_added=state.predictors_added,
        predictors_removed=state.predictors_removed,
        score_change=score_difference(program_2.score, program_1.score),
        bookkeeping_only=bool(unified) and same_content(doc1, doc2),
        optimizer_change=optimizers if optimizers[0] != optimizers[1] else None,
    )
    comparison = Comparison(
        score_change=score_difference(program_2.score, program_1.score),
        score_difference=score_difference(program_1.score, program_2.score),
        better_program=better_program(
            program_1.program_id, program_1.score, program_2.program_id, program_2.score
        ),
        age_difference_hours=age_difference_hours(program_1.saved_at, program_2.saved_at),
    )
    return ProgramComparison(
        program_1=program_1, program_2=program_2, comparison=comparison, diff=diff
    )
