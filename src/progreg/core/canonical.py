"""Canonical JSON: the one byte form in which progreg stores a document.

Canonical means UTF-8, keys sorted, two-space indentation and a trailing
newline, so that the same document always has the same bytes (and the same
Git blob id) and ``git diff`` between two versions is stable line by line.

Only what JSON can represent exactly is accepted: dicts with string keys,
lists (tuples are stored as lists), strings of valid Unicode (no lone
surrogate), booleans, ``None``, integers in the signed/unsigned 64-bit range
and finite floats, nested at most :data:`MAX_DEPTH` levels. Anything else
raises :class:`~progreg.errors.NotJSONError` naming where the value is.

:func:`encode` validates and encodes in one pass: orjson does the work, and
the few things orjson lets through (NaN and infinities, which it writes as
``null``; nesting between :data:`MAX_DEPTH` and its own limit; ``UUID`` and
``Enum`` values) are caught by reading the result back. Only a document with
a problem is walked in Python, to name where the problem is.

:func:`decode` reads JSON strictly: bytes that are not canonical (written by
hand or by another tool) are also checked for what orjson would silently
accept: a key repeated in one object (orjson keeps the last), an integer
beyond 64 bits (orjson turns it into a float) and nesting deeper than
:data:`MAX_DEPTH`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from pydantic import BaseModel

from progreg.errors import CorruptProgramError, NotJSONError, ProgregError

#: Deepest nesting of containers accepted in a stored document.
MAX_DEPTH = 100

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
#: orjson writes dataclasses and datetimes natively; progreg refuses them (see _check).
_ENCODE_OPTIONS = _OPTIONS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
#: In canonical bytes a value ``d`` levels deep is indented ``2 * d`` spaces.
_TOO_DEEP = b"\n" + b" " * (2 * MAX_DEPTH)


def check_json(value: Any, where: str = "value") -> None:
    """Raise :class:`NotJSONError` unless ``value`` is exactly representable as JSON."""
    encode(value, where)


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
    """Walk ``value`` and raise :class:`NotJSONError` at its first problem (the slow path)."""
    if isinstance(value, str):
        _check_text(value, where)
        return
    if value is None or isinstance(value, bool):
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
            _check_text(key, where, "a key")
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
    elif isinstance(value, bytes | bytearray | memoryview):
        hint = "; decode text to str, or store binary data as base64 text"
    elif hasattr(value, "isoformat"):
        hint = "; convert it with .isoformat()"
    raise NotJSONError(
        f"{where}: a value of type {type(value).__name__} cannot be stored as JSON{hint}", where
    )


def _check_text(text: str, where: str, what: str = "a string") -> None:
    """Refuse a string holding a lone surrogate (not Unicode text: it has no UTF-8 form)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NotJSONError(
            f"{where}: {what} holds the lone surrogate U+{ord(text[exc.start]):04X} at"
            f" position {exc.start}, which UTF-8 cannot encode (bytes decoded with"
            " errors='surrogateescape'?); store valid text, or binary data as base64",
            where,
        ) from None


def encode(value: Any, where: str = "value") -> bytes:
    """Return the canonical JSON bytes of ``value``, validated in the same pass."""
    try:
        data = orjson.dumps(value, option=_ENCODE_OPTIONS)
    except orjson.JSONEncodeError as exc:
        _check(value, where, 0)  # names the offending value
        raise NotJSONError(f"{where}: cannot be encoded as JSON ({exc})", where) from exc
    if _TOO_DEEP in data or orjson.loads(data) != value:
        # NaN, infinities, UUIDs, enums... written as something else; or tuples (fine).
        _check(value, where, 0)
    return data + b"\n"


def decode(data: bytes, where: str = "document") -> Any:
    """Parse JSON bytes strictly; raise :class:`CorruptProgramError` when they are unusable."""
    return loads(data, where, CorruptProgramError)


def loads(data: bytes, where: str, error: type[ProgregError]) -> Any:
    """Parse JSON read from outside, raising ``error`` for anything progreg would not store.

    Canonical bytes are checked by re-encoding them (fast); other bytes are
    also parsed for repeated keys and out-of-range integers.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON: {exc}") from exc
    try:
        if _same_bytes(value, data):
            if _TOO_DEEP in data:
                _check(value, "$", 0)
            return value
        _check(value, "$", 0)  # nesting first: the scan below recurses
    except NotJSONError as exc:
        raise error(f"{where}: {exc}") from exc
    _scan_external(data, where, error)
    return value


def _scan_external(data: bytes, where: str, error: type[ProgregError]) -> None:
    """Refuse repeated keys and integers beyond 64 bits, which orjson lets through."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(items)
        if len(found) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    raise error(
                        f"{where} repeats the key {key!r} in one object; JSON readers disagree"
                        " on which value wins, so progreg refuses it: keep one of each"
                    )
                seen.add(key)
        return found

    def integer(text: str) -> int:
        number = int(text)
        if not _INT_MIN <= number <= _INT_MAX:
            raise error(
                f"{where}: the integer {text[:40]} is outside the 64-bit range JSON tools"
                " agree on; store it as a string"
            )
        return number

    try:
        json.loads(data, object_pairs_hook=pairs, parse_int=integer)
    except ProgregError:
        raise
    except (ValueError, RecursionError) as exc:  # orjson read it: this cannot happen
        raise error(f"{where} is not valid JSON: {exc}") from exc


def _same_bytes(value: Any, data: bytes) -> bool:
    """True when ``data`` is the canonical encoding of ``value`` (parsed from it)."""
    try:
        return orjson.dumps(value, option=_OPTIONS) + b"\n" == data
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (it reads deeper)
        return False


def is_canonical_value(value: Any, data: bytes) -> bool:
    """True when ``data`` (which parses to ``value``) is its canonical encoding, within limits.

    Whatever ``orjson.loads`` returns is JSON :func:`encode` accepts (64-bit
    integers, finite floats, valid strings) but for its depth, which the
    indentation of canonical bytes shows.
    """
    return _TOO_DEEP not in data and _same_bytes(value, data)


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is exactly the canonical encoding of the JSON it holds."""
    try:
        value = orjson.loads(data)
        if _TOO_DEEP in data:
            return encode(value) == data
        return _same_bytes(value, data)
    except (orjson.JSONDecodeError, NotJSONError):
        return False
