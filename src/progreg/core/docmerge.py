"""Three-way merge of program documents, value by value (what Git's merge driver runs).

A program file is one canonical JSON document, so a line merge sees a prompt
edit and a re-save as clashing lines even when they touch different fields.
:func:`merge_documents` merges the decoded values instead:

* a value changed on one side only takes that side's value; objects merge
  key by key, recursively; a list whose items were edited in place on both
  sides (the same length on all three) merges item by item, and a list that
  grew or shrank on one side while the other changed it is a conflict, never
  an interleaving; a string is one value;
* a value changed on both sides to different values is a conflict, reported
  with its path (``program_data.state.predict.signature.instructions``) and
  both values;
* **two re-saves** (each side changed ``saved_at``: progreg saved a new
  version on each side) are not mixed field by field, which would make a
  version nobody saved: the later save (``saved_at``; equal times: the
  greater canonical bytes, so both merge directions agree) is the live
  version, whole. The other stays in history, in the merged commit's second
  parent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from progreg.core import canonical
from progreg.core.document import ProgramDocument, decode_document
from progreg.core.lineage import DERIVED_FROM

#: The document field whose change marks a save by progreg (a version), not a hand edit.
SAVED_AT = "saved_at"


class _Absent:
    """A key one side does not have."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()
#: Objects merged as one value: the id and commit of an ancestor name one version together.
_WHOLE = frozenset({DERIVED_FROM})


@dataclass(frozen=True)
class FieldConflict:
    """A value both sides changed, differently: its path and the two values."""

    path: str
    ours: Any
    theirs: Any


@dataclass(frozen=True)
class DocumentMerge:
    """The merge of one program file: its bytes, or the conflicts that keep it from one."""

    data: bytes | None
    conflicts: tuple[FieldConflict, ...] = ()
    #: How the result was chosen, for the person reading the merge (``None``: value by value).
    rule: str | None = None

    @property
    def clean(self) -> bool:
        """True when the merge needs nobody."""
        return self.data is not None


def differences(
    before: Any, after: Any, path: str = "", *, into_lists: bool = True
) -> Iterator[tuple[str, Any, Any]]:
    """``(path, before, after)`` of each value that differs between two JSON values.

    Objects are compared key by key (a key one side lacks is :data:`ABSENT`
    there); with ``into_lists``, lists item by item when their lengths agree
    (``demos[2].text``); anything else whole.
    """
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted({*before, *after}):
            yield from differences(
                before.get(key, ABSENT),
                after.get(key, ABSENT),
                f"{path}.{key}" if path else key,
                into_lists=into_lists,
            )
    elif (
        into_lists
        and isinstance(before, list)
        and isinstance(after, list)
        and len(before) == len(after)
    ):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            yield from differences(old, new, f"{path}[{index}]", into_lists=into_lists)
    else:
        yield path, before, after


def merge_documents(base: bytes | None, ours: bytes, theirs: bytes, path: str) -> DocumentMerge:
    """Merge the program file ``path`` changed from ``base`` (``None``: added on both sides).

    Each side must be a valid program document (:func:`decode_document` raises
    otherwise); the result is one too, in canonical form, or conflicts.
    """
    our_doc, their_doc = decode_document(ours, path), decode_document(theirs, path)
    if ours == theirs:
        return DocumentMerge(ours)
    old = canonical.decode(base, path) if base else None
    mine, yours = canonical.decode(ours, path), canonical.decode(theirs, path)
    if _resaved(old, mine) and _resaved(old, yours):
        later = max((our_doc, ours), (their_doc, theirs), key=_save_order)
        return DocumentMerge(
            later[1],
            rule="two re-saves: the later save is the live version; the other stays in history",
        )
    conflicts: list[FieldConflict] = []
    merged = _merge(old if old is not None else ABSENT, mine, yours, "", conflicts)
    if conflicts:
        return DocumentMerge(None, tuple(conflicts))
    data = canonical.encode(merged, path)
    decode_document(data, path)  # a merge of two valid documents must be one
    return DocumentMerge(data)


def _resaved(base: Any, side: dict[str, Any]) -> bool:
    return base is None or base.get(SAVED_AT) != side.get(SAVED_AT)


def _save_order(entry: tuple[ProgramDocument, bytes]) -> tuple[Any, bytes]:
    document, data = entry
    return document.saved_at, data


def _merge(base: Any, ours: Any, theirs: Any, path: str, conflicts: list[FieldConflict]) -> Any:
    if ours == theirs:
        return ours
    if ours == base:
        return theirs
    if theirs == base:
        return ours
    if isinstance(ours, dict) and isinstance(theirs, dict) and path not in _WHOLE:
        below = base if isinstance(base, dict) else {}
        merged: dict[str, Any] = {}
        for key in sorted({*ours, *theirs}):
            value = _merge(
                below.get(key, ABSENT),
                ours.get(key, ABSENT),
                theirs.get(key, ABSENT),
                f"{path}.{key}" if path else key,
                conflicts,
            )
            if value is not ABSENT:
                merged[key] = value
        return merged
    if (
        isinstance(ours, list)
        and isinstance(theirs, list)
        and isinstance(base, list)
        and len(base) == len(ours) == len(theirs)
    ):  # items edited in place on both sides: merged item by item
        return [
            _merge(old, mine, yours, f"{path}[{index}]", conflicts)
            for index, (old, mine, yours) in enumerate(zip(base, ours, theirs, strict=True))
        ]
    conflicts.append(FieldConflict(path or "(the whole document)", ours, theirs))
    return ours


__all__ = ["ABSENT", "SAVED_AT", "DocumentMerge", "FieldConflict", "differences", "merge_documents"]
