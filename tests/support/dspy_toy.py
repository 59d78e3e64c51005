"""A toy DSPy task for optimization runs: six questions, exact-match metric, a fake LM.

No network and no real LM: :func:`toy_lm` is DSPy's own ``DummyLM`` in
``follow_examples`` mode, which answers a question from a demo holding the
same question, and otherwise (here) "no idea" rather than nothing. So a
candidate scores the share of the questions its demos hold,
deterministically, and the optimizers' candidates score differently.
"""

from __future__ import annotations

import re
import time
from typing import Any

import dspy
from dspy.utils.dummies import DummyLM

QUESTIONS = (
    ("What is 1+1?", "2"),
    ("What is 2+2?", "4"),
    ("Capital of France?", "Paris"),
    ("Color of the sky?", "blue"),
    ("What is 3+3?", "6"),
    ("Opposite of hot?", "cold"),
)


def trainset() -> list[Any]:
    """The six examples, with ``question`` as their input."""
    return [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in QUESTIONS]


#: The output fields a DSPy adapter's system message asks for (``1. `answer` (str)``).
_OUTPUT_FIELDS = re.compile(r"Your output fields are:\n(?P<fields>(?:\d+\. `\w+`[^\n]*\n?)+)")


class ToyLM(DummyLM):  # type: ignore[misc]  # DSPy has no type information
    """``DummyLM(follow_examples=True)`` that answers "no idea" when no demo matches.

    Other signatures an optimizer asks the LM (MIPROv2's instruction proposer:
    ``proposed_instruction``...) get "no idea" in each output field too, so
    that the optimizer runs on.
    """

    def _use_example(self, messages: Any) -> Any:
        found = super()._use_example(messages)
        if found:
            return found
        names = ["answer"]
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        if match := _OUTPUT_FIELDS.search(system):
            names = re.findall(r"`(\w+)`", match.group("fields")) or names
        return self._format_answer_fields(dict.fromkeys(names, "no idea"))


def toy_lm() -> Any:
    """A deterministic fake LM (see the module docstring)."""
    return ToyLM([], follow_examples=True)


def with_demos(count: int) -> Any:
    """The student with the first ``count`` examples as demos: it scores ``count / 6``."""
    program = student()
    program.demos = trainset()[:count]
    return program


def student() -> Any:
    """The program to optimize: one ``Predict`` of ``question -> answer``."""
    return dspy.Predict("question -> answer")


def exact_match(example: Any, prediction: Any, trace: Any = None) -> bool:
    """The metric: the predicted answer is the example's."""
    return bool(example.answer == prediction.answer)


class SlowMetric:
    """:func:`exact_match` that takes ``delay`` seconds per example (a slow evaluation)."""

    __name__ = "slow_exact_match"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> bool:
        time.sleep(self.delay)
        return exact_match(example, prediction, trace)
