"""Canonical JSON: the one byte form in which progreg stores a document.

Canonical means UTF-8, keys sorted, two-space indentation and a trailing
newline, so that the same document always has the same bytes (and the same
Git blob id) and ``git diff`` between two versions is stable line by line.

Only what JSON can represent exactly is accepted: dicts with string keys,
lists (tuples are stored as lists), strings, booleans, ``None``, integers in
the signed/unsigned 64-bit range and finite floats. Anything else raises
:class:`~progreg.errors.NotJSONError` naming where the value is.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import BaseModel

from progreg.errors import CorruptProgramError, NotJSONError

#: Deepest nesting of containers accepted in a stored document.
MAX_DEPTH = 100

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS


def check_json(value: Any, where: str = "value") -> None:
    """Raise :class:`NotJSONError` unless ``value`` is exactly representable as JSON."""
    _check(value, where, 0)


def dump_model(model: BaseModel, where: str, exclude: set[str] | None = None) -> dict[str, Any]:
    """``model.model_dump(mode="json")``, raising :class:`NotJSONError` for NaN and infinities.

    Pydantic's JSON mode silently writes a non-finite float held in an ``Any``
    field (``dict[str, Any]`` scores, say) as ``null``; progreg refuses it, as
    it does in a plain dict, rather than store something else.
    """
    _check_finite(model.model_dump(exclude=exclude), where, 0)
    return model.model_dump(mode="json", exclude=exclude)


def _check_finite(value: Any, where: str, depth: int) -> None:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONError(
                f"{where}: {value!r} is not a JSON number; use null or a finite value", where
            )
    elif depth < MAX_DEPTH:  # deeper nesting is refused by check_json
        if isinstance(value, dict):
            for key, item in value.items():
                _check_finite(item, f"{where}.{key}", depth + 1)
        elif isinstance(value, list | tuple | set | frozenset):
            for index, item in enumerate(value):
                _check_finite(item, f"{where}[{index}]", depth + 1)


def _check(value: Any, where: str, depth: int) -> None:
    # Ordered by frequency in real program documents.
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise NotJSONError(f"{where}: nested deeper than {MAX_DEPTH} levels", where)
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJSONError(
                    f"{where}: key {key!r} is of type {type(key).__name__};"
                    " JSON object keys must be strings",
                    where,
                )
            _check(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise NotJSONError(f"{where}: nested deeper than {MAX_DEPTH} levels", where)
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise NotJSONError(
                f"{where}: integer {value} is outside the 64-bit range JSON tools agree on;"
                " store it as a string",
                where,
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJSONError(
                f"{where}: {value!r} is not a JSON number; use null or a finite value", where
            )
        return
    hint = ""
    if isinstance(value, set | frozenset):
        hint = "; convert it to a sorted list"
    elif hasattr(value, "isoformat"):
        hint = "; convert it with .isoformat()"
    raise NotJSONError(
        f"{where}: a value of type {type(value).__name__} cannot be stored as JSON{hint}", where
    )


def encode(value: Any, where: str = "value") -> bytes:
    """Return the canonical JSON bytes of ``value`` (validated first)."""
    check_json(value, where)
    try:
        return orjson.dumps(value, option=_OPTIONS) + b"\n"
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate in a string
        raise NotJSONError(f"{where}: cannot be encoded as UTF-8 JSON ({exc})", where) from exc


def decode(data: bytes, where: str = "document") -> Any:
    """Parse JSON bytes, raising :class:`CorruptProgramError` when they are not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptProgramError(f"{where} is not valid JSON: {exc}") from exc


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is exactly the canonical encoding of the JSON it holds.

    Whatever ``orjson.loads`` returns is JSON :func:`check_json` accepts (64-bit
    integers, finite floats, valid strings), except possibly for its depth; in
    canonical bytes a value ``d`` levels deep is indented ``2 * d`` spaces, so
    when no line is indented 200 spaces or more nothing is nested deeper than
    :data:`MAX_DEPTH` and the slow validating walk can be skipped.
    """
    try:
        value = orjson.loads(data)
        if b"\n" + b" " * (2 * MAX_DEPTH) in data:
            return encode(value) == data
        return orjson.dumps(value, option=_OPTIONS) + b"\n" == data
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, NotJSONError):
        return False
