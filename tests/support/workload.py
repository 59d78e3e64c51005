"""Deterministic, realistic programs and optimization results for tests and benchmarks.

A program is what DSPy's ``dump_state()`` writes for a ``ChainOfThought``
module saved with ``save()``: one predictor (``predict``) with its
instructions, one entry per field (input fields, the reasoning field, then
the output fields) and a handful of bootstrapped demos, plus the dependency
versions DSPy records. Each of the five signatures below has its own fields
and vocabulary, so programs of different signatures differ the way real ones
do; a document is about 4 to 6 KB of canonical JSON with the default six
demos.

An optimization result is shaped like a MIPROv2 (or BootstrapFewShot, GEPA,
COPRO) run's: one named score, its trial history and the optimizer's
settings. Everything is a pure function of the index: the same index gives
the same document in every process, which the concurrency and crash tests
rely on to check what another process saved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

#: The metric every result is scored with.
SCORE_NAME = "pass_rate"
#: Optimizers, assigned round-robin by index.
OPTIMIZERS = ("MIPROv2", "BootstrapFewShot", "GEPA", "COPRO")


@dataclass(frozen=True)
class _Signature:
    name: str
    task: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    labels: tuple[str, ...]


_SIGNATURES = (
    _Signature(
        "ClassifyText",
        "Classify the sentiment of a customer message",
        ("text",),
        ("label",),
        ("positive", "negative", "neutral"),
    ),
    _Signature(
        "ExtractEntities",
        "List the products, order numbers and people a message mentions",
        ("message",),
        ("entities",),
        ("product", "order", "person"),
    ),
    _Signature(
        "AnswerQuestion",
        "Answer the question from the help-centre passage",
        ("context", "question"),
        ("answer",),
        ("yes", "no", "see passage"),
    ),
    _Signature(
        "SummarizeTicket",
        "Summarize a support ticket for the next agent in one or two sentences",
        ("ticket",),
        ("summary",),
        ("resolved", "pending", "escalated"),
    ),
    _Signature(
        "RouteIntent",
        "Route the request to the team that can handle it",
        ("request",),
        ("team",),
        ("billing", "shipping", "accounts", "technical"),
    ),
)

#: Signature class names, assigned round-robin by index.
SIGNATURES = tuple(signature.name for signature in _SIGNATURES)

_NOUNS = [
    "order",
    "invoice",
    "refund",
    "parcel",
    "courier",
    "account",
    "password",
    "subscription",
    "plan",
    "card",
    "warranty",
    "receipt",
    "address",
    "delivery",
    "discount",
    "voucher",
    "upgrade",
    "device",
    "screen",
    "battery",
]
_VERBS = [
    "arrived",
    "broke",
    "charged",
    "cancelled",
    "renewed",
    "reset",
    "delayed",
    "returned",
    "replaced",
    "confirmed",
    "missed",
    "doubled",
    "locked",
    "updated",
    "shipped",
]
_OPENERS = (
    "Hi team,",
    "Hello,",
    "Quick question:",
    "Following up on my last email,",
    "This is the third time I write:",
    "Thanks for the fast reply.",
)
_GUIDANCE = (
    "Read the whole message before deciding.",
    "Prefer the most specific answer the evidence supports.",
    "Ignore greetings and signatures.",
    "When the message is ambiguous, say so instead of guessing.",
    "Quote order numbers exactly as written.",
    "Keep the tone neutral and professional.",
    "Do not invent facts that are not in the input.",
)


def _sentence(rng: random.Random) -> str:
    noun, other = rng.sample(_NOUNS, 2)
    return (
        f"My {noun} {rng.choice(_VERBS)} {rng.choice(['yesterday', 'last week', 'twice', 'again'])}"
        f" and the {other} {rng.choice(_VERBS)} {rng.choice(['too', 'as well', 'instead'])}"
        f" (ref #{rng.randrange(10_000, 99_999)})."
    )


def _message(rng: random.Random, sentences: int) -> str:
    return " ".join([rng.choice(_OPENERS), *(_sentence(rng) for _ in range(sentences))])


def _field(name: str) -> dict[str, str]:
    return {"prefix": f"{name.title()}:", "description": f"${{{name}}}"}


def _demo(rng: random.Random, signature: _Signature) -> dict[str, Any]:
    demo: dict[str, Any] = {"augmented": True}
    for name in signature.inputs:
        demo[name] = _message(rng, rng.randint(3, 5))
    demo["reasoning"] = " ".join(_sentence(rng) for _ in range(rng.randint(1, 3)))
    for name in signature.outputs:
        demo[name] = rng.choice(signature.labels)
    return demo


def signature_of(index: int) -> str:
    """The signature class of workload program ``index``."""
    return SIGNATURES[index % len(SIGNATURES)]


def optimizer_of(index: int) -> str:
    """The optimizer that produced workload program ``index``."""
    return OPTIMIZERS[index % len(OPTIMIZERS)]


def program_state(index: int, demos: int = 6) -> dict[str, Any]:
    """DSPy's saved state of a ``ChainOfThought`` for program ``index``, with ``demos`` demos."""
    rng = random.Random(f"program-{index}")
    signature = _SIGNATURES[index % len(_SIGNATURES)]
    guidance = rng.sample(_GUIDANCE, 4)
    instructions = (
        f"{signature.task}. Possible values: {', '.join(signature.labels)}. "
        + " ".join(guidance)
        + f" Variant {index}."
    )
    fields = [_field(name) for name in signature.inputs]
    fields.append(
        {
            "prefix": "Reasoning: Let's think step by step in order to",
            "description": "${reasoning}",
        }
    )
    fields += [_field(name) for name in signature.outputs]
    return {
        "predict": {
            "traces": [],
            "train": [],
            "demos": [_demo(rng, signature) for _ in range(demos)],
            "signature": {"instructions": instructions, "fields": fields},
            "lm": None,
        },
        "metadata": {
            "dependency_versions": {"python": "3.11", "dspy": "3.0.4", "cloudpickle": "3.1"}
        },
    }


def optimization_result(index: int) -> dict[str, Any]:
    """An optimizer's result for program ``index``: one score in [0.5, 0.95) and its trials."""
    rng = random.Random(f"result-{index}")
    score = round(rng.uniform(0.5, 0.95), 4)
    trials = rng.randint(8, 24)
    return {
        "scores": {SCORE_NAME: score},
        "history": {
            "total_trials": trials,
            "score_history": [round(score * step / 4, 4) for step in range(1, 5)],
        },
        "best_score_name": SCORE_NAME,
        "best_score_value": score,
        "metadata": {
            "optimizer": optimizer_of(index),
            "auto_mode": rng.choice(["light", "medium", "heavy"]),
            "num_candidates": trials // 2,
        },
    }
