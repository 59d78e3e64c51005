"""Reading a program to save from a JSON file or stdin, and the options that amend it.

The JSON is one of:

* a *record*, what ``progreg show ID --json`` prints: an object with
  ``program_id``, ``state`` and ``commit`` among the keys of that output
  (and nothing else). It is saved as a new version of that program, with its
  optimization result and metadata;
* a *wrapper*, an object whose keys are ``program`` and optionally
  ``optimization_result`` and ``metadata`` (and nothing else)::

    {"program": {...state...}, "optimization_result": {...}, "metadata": {...}}

* anything else, a bare program state (a DSPy ``dump_state()``). A state
  whose only key happens to be ``program`` must be wrapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import IO, Any, TypeVar

import click
import orjson

from progreg import InvalidInputError
from progreg.cli.params import SIGNATURE

F = TypeVar("F", bound=Callable[..., Any])

WRAPPER_KEYS = frozenset({"program", "optimization_result", "metadata"})
#: The keys of ``show --json``; a record has at least :data:`RECORD_REQUIRED`.
RECORD_KEYS = frozenset(
    {
        "program_id",
        "program_type",
        "state",
        "optimization_result",
        "metadata",
        "saved_at",
        "commit",
        "unchanged",
    }
)
RECORD_REQUIRED = frozenset({"program_id", "state", "commit"})


@dataclass(frozen=True)
class ProgramInput:
    """A program to save: its state, its optimization result and the caller's metadata."""

    program: dict[str, Any]
    optimization_result: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The program a record names (it is saved as a new version of it).
    program_id: str | None = None
    #: The commit a record names: the version it shows.
    commit: str | None = None
    #: True for a bare state: it says nothing of a result or metadata.
    bare: bool = False


def _object(value: object, what: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{source}: {what} must be a JSON object")
    return value


def parse_program(data: bytes, source: str) -> ProgramInput:
    """The program described by the JSON ``data`` read from ``source`` (see module doc)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError(f"{source} must hold a JSON object, not {type(value).__name__}")
    if RECORD_REQUIRED <= value.keys() <= RECORD_KEYS:
        state, what, program_id = value["state"], "state", value["program_id"]
        if not isinstance(program_id, str):
            raise InvalidInputError(f"{source}: program_id must be a string")
    elif "program" in value and value.keys() <= WRAPPER_KEYS:
        state, what, program_id = value["program"], "program", None
    else:
        return ProgramInput(value, bare=True)
    if not isinstance(state, dict):
        raise InvalidInputError(f"{source}: {what} must be a JSON object (the state)")
    return ProgramInput(
        state,
        _object(value.get("optimization_result"), "optimization_result", source),
        _object(value.get("metadata"), "metadata", source),
        program_id=program_id,
        commit=value["commit"] if isinstance(value.get("commit"), str) else None,
    )


def read_program(stream: IO[bytes]) -> ProgramInput:
    """Read and parse a program from an opened ``click.File("rb")`` (``-`` is stdin)."""
    name = getattr(stream, "name", "-")
    source = "stdin" if name in ("-", "<stdin>") else str(name)
    return parse_program(stream.read(), source)


def amended(
    given: ProgramInput,
    score: float | None,
    score_name: str | None,
    optimizer: str | None,
    signature: str | None,
) -> ProgramInput:
    """``given`` with the values of the command-line options put in (they win)."""
    result = dict(given.optimization_result)
    if score is not None:
        result["best_score_value"] = score
    if score_name is not None:
        result["best_score_name"] = score_name
    if optimizer is not None:
        meta = result.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise InvalidInputError("optimization_result.metadata must be a JSON object")
        result["metadata"] = {**(meta or {}), "optimizer": optimizer}
    metadata = dict(given.metadata)
    if signature is not None:
        metadata["signature_class"] = signature
    return replace(given, optimization_result=result, metadata=metadata)


def result_options(func: F) -> F:
    """The options that amend a program read from a file: score, optimizer, signature."""
    options = [
        click.option("--score", type=float, help="The best score (best_score_value)."),
        click.option("--score-name", help="What the score measures (best_score_name)."),
        click.option("--optimizer", help="The optimizer that produced it (MIPROv2...)."),
        click.option("--signature", type=SIGNATURE, help="The DSPy signature it solves."),
    ]
    for option in reversed(options):
        func = option(func)
    return func
