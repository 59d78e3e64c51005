"""Lineage in the format: which program (and which version of it) a program came from.

A program document may name its ancestor in the optional top-level key
``derived_from``: ``{"program_id": "<16 hex>", "commit": "<40 hex>"}``, the
program and the commit of the version it was derived from. A program object
loaded from a registry carries its *origin* (the same pair) in the attribute
:data:`ORIGIN_ATTRIBUTE`, so that saving it under a new id records where it
came from; DSPy optimizers deep-copy their student, and the copy keeps it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from progreg.core.ids import is_program_id

#: The document key that names a program's ancestor.
DERIVED_FROM = "derived_from"
#: The attribute a loaded program object carries: an :class:`Origin`.
ORIGIN_ATTRIBUTE = "_progreg_origin"

_COMMIT = re.compile(r"[0-9a-f]{40}")


def is_commit_id(value: object) -> bool:
    """True for a full lowercase hex commit id (40 characters)."""
    return isinstance(value, str) and _COMMIT.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Origin:
    """A version of a program: its id and the commit that recorded it."""

    program_id: str
    commit: str

    def to_json(self) -> dict[str, str]:
        """The value of a document's ``derived_from`` key."""
        return {"program_id": self.program_id, "commit": self.commit}


def origin_from_json(value: object) -> Origin | None:
    """The :class:`Origin` a ``derived_from`` value names, or ``None`` if it is malformed."""
    if not isinstance(value, dict) or set(value) != {"program_id", "commit"}:
        return None
    program_id, commit = value["program_id"], value["commit"]
    if not isinstance(program_id, str) or not is_program_id(program_id):
        return None
    if not is_commit_id(commit):
        return None
    return Origin(program_id, commit)


def derived_from_problem(extra: dict[str, Any]) -> str | None:
    """What is wrong with a document's ``derived_from`` (its top-level ``extra`` keys), if any."""
    if DERIVED_FROM not in extra or origin_from_json(extra[DERIVED_FROM]) is not None:
        return None
    return (
        f"{DERIVED_FROM} must be an object with exactly a program_id (16 lowercase hex) and a"
        f" commit (40 lowercase hex), got {extra[DERIVED_FROM]!r}"
    )


def stamp_origin(program: object, origin: Origin) -> None:
    """Record on ``program`` the version it was loaded from (objects that cannot carry it: no-op).

    A state dict carries nothing: its save names no ancestor unless told.
    """
    if isinstance(program, dict):
        return
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        object.__setattr__(program, ORIGIN_ATTRIBUTE, origin)


def origin_of(program: object) -> Origin | None:
    """The origin stamped on ``program`` by a load, if it carries a well-formed one."""
    try:
        found = getattr(program, ORIGIN_ATTRIBUTE, None)
    except Exception:  # a user's __getattr__ may raise anything; no stamp then
        return None
    return found if isinstance(found, Origin) else None
