"""``progreg demo``: save a few realistic programs and show what the registry holds."""

from __future__ import annotations

import random
import re
from typing import Any

import click

from progreg import OptimizationResult, StorageConfig, StorageManager
from progreg.cli.context import Context
from progreg.cli.render import format_log, format_score

_SIGNATURES = {
    "ClassifyText": ("text", "label", ["positive", "negative", "neutral"]),
    "RouteIntent": ("message", "intent", ["billing", "shipping", "account"]),
    "AnswerQuestion": ("question", "answer", ["yes", "no", "it depends"]),
}
_OPTIMIZERS = ["MIPROv2", "BootstrapFewShot", "GEPA"]
#: Saves and log entries printed; past that, one line says how many more there are.
SHOWN = 10
_WORDS = re.findall(
    r"\w+",
    "the customer says refund order late broken great shipping invoice account password"
    " reset upgrade plan cancel thanks urgent question billing error",
)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def demo_program(index: int) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A DSPy ChainOfThought-shaped state, its optimization result and signature name."""
    rng = random.Random(index)
    signature = list(_SIGNATURES)[index % len(_SIGNATURES)]
    field_in, field_out, labels = _SIGNATURES[signature]
    state = {
        "predict": {
            "demos": [
                {
                    "augmented": True,
                    field_in: _sentence(rng, 14),
                    "reasoning": _sentence(rng, 12),
                    field_out: rng.choice(labels),
                }
                for _ in range(3)
            ],
            "signature": {
                "instructions": f"{signature}: {_sentence(rng, 16)}",
                "fields": [
                    {"prefix": f"{field_in.capitalize()}:", "description": "${" + field_in + "}"},
                    {"prefix": "Reasoning: Let's think step by step", "description": "${why}"},
                    {"prefix": f"{field_out.capitalize()}:", "description": ", ".join(labels)},
                ],
            },
            "lm": None,
            "traces": [],
            "train": [],
        }
    }
    score = round(0.55 + 0.4 * rng.random(), 4)
    result = {
        "best_score_name": "accuracy",
        "best_score_value": score,
        "scores": {"accuracy": score},
        "history": {"trials": 12, "score_history": [round(score * k / 4, 4) for k in (1, 2, 3, 4)]},
        "metadata": {"optimizer": _OPTIMIZERS[index % len(_OPTIMIZERS)], "auto": "light"},
    }
    return state, result, signature


@click.command()
@click.option("--count", default=6, show_default=True, help="How many programs to save.")
@click.pass_obj
def demo(ctx: Context, count: int) -> None:
    """Save a handful of realistic programs, then show history, best programs and the Git log.

    \b
    Example:
      progreg --registry ./demo-registry demo --count 6
    """
    manager = StorageManager(StorageConfig(storage_path=ctx.registry or "./progreg-demo"))
    storage = manager.storage
    for index in range(count):
        state, result, signature = demo_program(index)
        saved = manager.save_optimization_result(
            OptimizationResult(optimized_program=state, **result),
            tags=["demo"],
            metadata={"signature_class": signature, "dataset": "demo"},
        )
        assert saved is not None
        if index < SHOWN:
            click.echo(
                f"saved {saved.program_id}  {signature:<15} {format_score(saved.best_score)}"
                f"  commit {saved.commit[:10]}"
            )
    if count > SHOWN:
        click.echo(f"... and {count - SHOWN} more saves")
    history = storage.get_history()
    summary = history.summary
    click.echo(f"\nRegistry {storage.path}")
    click.echo(
        f"  {summary.total_programs} programs, average score"
        f" {format_score(summary.avg_score)}, latest save {summary.latest_save}"
    )
    click.echo("\nBest program per signature:")
    for signature in sorted({p.signature_class for p in history.programs if p.signature_class}):
        best = manager.get_best_program(signature)
        if best is not None:
            click.echo(
                f"  {signature:<15} {best.program_id}  {format_score(best.best_score)}"
                f" ({best.optimizer}, commit {best.commit[:10]})"
            )
    click.echo("\nGit log (newest first):")
    log = format_log(storage, limit=SHOWN + 1)
    for line in log[:SHOWN]:
        click.echo(f"  {line}")
    if len(log) > SHOWN:
        click.echo(f"  ... the whole log: git -C {storage.path} log --oneline")
    click.echo(f"\nBrowse it with: git clone {storage.path} checkout && ls checkout/programs")
