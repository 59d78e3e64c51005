"""Normalising an optimization result into the dict progreg stores.

Accepted: ``None``, a dict, a pydantic model, an object with ``to_dict()`` or
``to_h()``, or any object with the attributes of an optimization result
(``best_score_value``, ``best_score_name``, ``scores``, ``history``,
``metadata``). The optimized program itself (``optimized_program``) is not
part of the stored result: it is stored as the program.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from progreg.core import canonical
from progreg.errors import InvalidInputError

RESULT_FIELDS = ("best_score_value", "best_score_name", "scores", "history", "metadata")
_PROGRAM_KEY = "optimized_program"


def normalize_result(result: object) -> dict[str, Any]:
    """The optimization result as a plain dict without the program object."""
    if result is None:
        data: dict[str, Any] = {}
    elif isinstance(result, dict):
        data = dict(result)
    elif isinstance(result, BaseModel):
        data = canonical.dump_model(result, "optimization_result", exclude={_PROGRAM_KEY})
    elif callable(getattr(result, "to_dict", None)) or callable(getattr(result, "to_h", None)):
        data = _exported(result)
    elif any(hasattr(result, name) for name in RESULT_FIELDS):
        data = {name: getattr(result, name) for name in RESULT_FIELDS if hasattr(result, name)}
    else:
        raise InvalidInputError(
            f"optimization_result is of type {type(result).__name__}; pass a dict, a pydantic model"
            " or an object with to_dict() or best_score_value/scores/metadata attributes"
        )
    data.pop(_PROGRAM_KEY, None)
    _check_fields(data)
    return data


def best_score_of(result: dict[str, Any]) -> float | None:
    """A stored result's ``best_score_value`` as a float, if it is a finite number."""
    value = result.get("best_score_value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def score_name_of(result: dict[str, Any]) -> str | None:
    """A stored result's ``best_score_name``."""
    value = result.get("best_score_name")
    return value if isinstance(value, str) else None


def optimizer_of(result: dict[str, Any]) -> str | None:
    """A stored result's ``metadata.optimizer``."""
    meta = result.get("metadata")
    value = meta.get("optimizer") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def signature_class_of(metadata: dict[str, Any]) -> str | None:
    """Stored metadata's ``signature_class``."""
    value = metadata.get("signature_class")
    return value if isinstance(value, str) else None


def _exported(result: object) -> dict[str, Any]:
    method = "to_dict" if callable(getattr(result, "to_dict", None)) else "to_h"
    try:
        data = getattr(result, method)()
    except Exception as exc:
        raise InvalidInputError(
            f"optimization_result.{method}() failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"optimization_result.{method}() returned a {type(data).__name__}, not a dict"
        )
    return dict(data)


def _check_fields(data: dict[str, Any]) -> None:
    score = data.get("best_score_value")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        raise InvalidInputError(
            f"optimization_result.best_score_value must be a finite number or None, got {score!r}"
        )
    name = data.get("best_score_name")
    if name is not None and not isinstance(name, str):
        raise InvalidInputError(
            f"optimization_result.best_score_name must be a string or None, got {name!r}"
        )
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInputError(
            f"optimization_result.metadata must be a dict or None, got {type(metadata).__name__}"
        )
    optimizer = (metadata or {}).get("optimizer")
    if optimizer is not None and not isinstance(optimizer, str):
        raise InvalidInputError(
            f"optimization_result.metadata.optimizer must be a string, got {optimizer!r}"
        )


class OptimizationResult(BaseModel):
    """What an optimizer produced: the optimized program and how well it scored.

    Build one around any program object (a DSPy module, a dict of state, a
    pydantic model); dicts and other objects with these fields are accepted
    wherever an ``OptimizationResult`` is.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, defer_build=True)

    optimized_program: Any = None
    best_score_value: float | None = None
    best_score_name: str | None = None
    scores: dict[str, Any] = Field(default_factory=dict)
    history: dict[str, Any] | list[Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid OptimizationResult: {exc}") from exc


def optimized_program_of(result: object) -> Any:
    """The ``optimized_program`` of a result given as a model, a dict or an object."""
    if isinstance(result, dict):
        return result.get(_PROGRAM_KEY)
    return getattr(result, _PROGRAM_KEY, None)
