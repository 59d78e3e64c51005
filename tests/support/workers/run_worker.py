"""The child of the kill -9 test of optimization runs: a long recorded compile.

``python run_worker.py REGISTRY RUN`` records run RUN in REGISTRY: a
``BootstrapFewShotWithRandomSearch`` over the toy task of
:mod:`support.dspy_toy` with many candidates and a slow metric, so that it
is still compiling when the test kills it (it would finish, given minutes).
"""

from __future__ import annotations

import sys

import dspy
from dspy.teleprompt import BootstrapFewShotWithRandomSearch

from progreg import ProgramStorage, track_run
from support.dspy_toy import SlowMetric, student, toy_lm, trainset


def main(registry: str, name: str) -> None:
    """Record the long compile (see the module docstring)."""
    optimizer = BootstrapFewShotWithRandomSearch(
        metric=SlowMetric(0.01),
        max_bootstrapped_demos=2,
        max_labeled_demos=3,
        num_candidate_programs=500,
        num_threads=1,
    )
    with dspy.context(lm=toy_lm()):
        track_run(ProgramStorage(registry), name).compile(optimizer, student(), trainset=trainset())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
