"""Program summaries by blob id, and the live programs' summaries kept in order.

A summary is a pure function of the bytes of a program file, so a cache
keyed by the file's Git blob id can never be wrong: :class:`SummaryCache`
holds one :class:`~progreg.core.models.ProgramSummary` per blob, built from the
file when it was first decoded or from a row of the persisted cache
(:mod:`progreg.registry.logcache`) when first asked for. Summaries are built without
validating them again (they were validated when their file was decoded).

:class:`SortedView` keeps the live programs' summaries sorted by a key and,
when the log moves on, updates only the programs that changed.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from itertools import pairwise
from operator import itemgetter
from typing import Any, TypeVar

import orjson

from progreg.core.models import ProgramSummary

#: The summary fields a cache row carries: saved_at, best score, score name,
#: optimizer and signature class.
Fields = tuple[Any, ...]
#: ``(fields, metadata)`` of a summary, as persisted.
SummaryRow = tuple[Fields, dict[str, Any]]

L = TypeVar("L")

#: At most this many distinct metadata objects are shared between summaries.
SHARED_METADATA = 65_536


class SummaryCache:
    """Summaries of program files, keyed by blob id (see the module)."""

    def __init__(self) -> None:
        self._built: dict[str, ProgramSummary] = {}
        self._rows: dict[str, tuple[str, Fields, dict[str, Any]]] = {}
        self._metadata: dict[bytes, dict[str, Any]] = {}
        #: The summary of a blob if it is already built (``None`` otherwise): a fast path.
        self.known = self._built.get

    def get(self, blob: str) -> ProgramSummary | None:
        """The summary of the file with blob id ``blob``, if it is known."""
        summary = self._built.get(blob)
        if summary is None:
            row = self._rows.pop(blob, None)
            if row is None:
                return None
            summary = trusted_summary(*row)
            self._built[blob] = summary
        return summary

    def __len__(self) -> int:
        return len(self._built) + len(self._rows)

    def keep(self, blobs: set[str]) -> None:
        """Forget the summaries of every blob not in ``blobs``."""
        self._built = {blob: s for blob, s in self._built.items() if blob in blobs}
        self.known = self._built.get
        self._rows = {blob: row for blob, row in self._rows.items() if blob in blobs}

    def add(self, blob: str, summary: ProgramSummary) -> None:
        """Remember the summary of the file with blob id ``blob``."""
        self._built[blob] = summary
        self._rows.pop(blob, None)

    def add_decoded(self, blob: str, program_id: str, summary: ProgramSummary) -> ProgramSummary:
        """Remember the summary just built from a file, in its compact form, and return that.

        Its names are interned and its metadata is an equal object another
        summary already holds, when there is one (summaries loaded from the
        persisted cache share theirs the same way): at 100k programs this
        halves what the summaries take.
        """
        saved_at, best_score, *names = fields_of(summary)
        fields = (saved_at, best_score, *(None if n is None else sys.intern(n) for n in names))
        kept = trusted_summary(program_id, fields, self._shared(summary.metadata))
        self.add(blob, kept)
        return kept

    def _shared(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """An object equal to ``metadata`` (with the same key order), shared when one is known."""
        try:
            key = orjson.dumps(metadata)
        except orjson.JSONEncodeError:
            return metadata
        shared = self._metadata.get(key)
        if shared is None:
            shared = metadata
            if len(self._metadata) < SHARED_METADATA:
                self._metadata[key] = metadata
        return shared

    def add_rows(self, rows: dict[str, tuple[str, Fields, dict[str, Any]]]) -> None:
        """Remember persisted summaries ``{blob: (program id, fields, metadata)}``.

        They are built when first asked for.
        """
        if self._built:
            rows = {blob: row for blob, row in rows.items() if blob not in self._built}
        self._rows.update(rows)

    def row(self, blob: str) -> SummaryRow | None:
        """``(fields, metadata)`` of the summary of ``blob``, for persisting it."""
        pending = self._rows.get(blob)
        if pending is not None:
            return pending[1], pending[2]
        summary = self._built.get(blob)
        if summary is None:
            return None
        return fields_of(summary), summary.metadata


def fields_of(summary: ProgramSummary) -> Fields:
    """The persisted fields of a summary (see :data:`Fields`)."""
    return (
        summary.saved_at,
        summary.best_score,
        summary.score_name,
        summary.optimizer,
        summary.signature_class,
    )


_new = object.__new__
_set = object.__setattr__
_FIELDS_SET = set(ProgramSummary.model_fields)


def trusted_summary(program_id: str, fields: Fields, metadata: dict[str, Any]) -> ProgramSummary:
    """A summary from values that were validated when its file was decoded.

    What ``ProgramSummary.model_construct`` does for a model whose every
    field is given, in a quarter of the time: no validation, no defaults.
    """
    saved_at, best_score, score_name, optimizer, signature_class = fields
    summary = _new(ProgramSummary)
    _set(
        summary,
        "__dict__",
        {
            "program_id": program_id,
            "saved_at": saved_at,
            "best_score": best_score,
            "score_name": score_name,
            "optimizer": optimizer,
            "signature_class": signature_class,
            "metadata": metadata,
        },
    )
    _set(summary, "__pydantic_fields_set__", _FIELDS_SET)
    _set(summary, "__pydantic_extra__", None)
    _set(summary, "__pydantic_private__", None)
    return summary


Key = tuple[Any, ...]


class SortedView:
    """The live programs' summaries sorted by ``key(summary, live)``, kept up to date.

    ``key`` must give different programs different keys (end it with the
    program id). Tell the view which programs :meth:`changed`; :meth:`update`
    then re-sorts only those, or everything after a :meth:`clear` or when
    many changed. A view can start from a known order (:meth:`seed`), which
    is checked rather than sorted.
    """

    def __init__(self, key: Callable[[ProgramSummary, Any], Key]) -> None:
        self._key = key
        self._keys: list[Key] = []
        self._items: list[ProgramSummary] = []
        self._key_of: dict[str, Key] = {}
        self._changed: set[str] | None = None  # None: sort everything again
        self._seed: list[str] | None = None

    def clear(self) -> None:
        """Forget the order: the next :meth:`update` sorts everything."""
        self._keys = []
        self._items = []
        self._key_of = {}
        self._changed = None
        self._seed = None

    def seed(self, order: list[str]) -> None:
        """Start from ``order``, the program ids in the order of the view (checked on use)."""
        self.clear()
        self._seed = order
        self._changed = set()

    def order(self) -> list[str] | None:
        """The program ids in order, if the view is up to date with every change noted."""
        if self._changed or self._changed is None or self._seed is not None:
            return None
        return [summary.program_id for summary in self._items]

    def changed(self, program_ids: Iterable[str]) -> None:
        """Note that these programs were written or removed."""
        if self._changed is not None:
            self._changed.update(program_ids)

    def update(
        self, live: Mapping[str, L], summary_of: Callable[[str, L], ProgramSummary]
    ) -> list[ProgramSummary]:
        """The summaries of ``live`` in order; ``summary_of`` gives a program's summary."""
        try:
            changed = self._changed
            if (
                self._seed is not None
                and changed is not None
                and not self._start(self._seed, changed, live, summary_of)
            ):
                changed = None
            if changed is None or len(changed) > len(live) // 8 + 64:
                self._rebuild(live, summary_of)
            else:
                for program_id in changed:
                    self._move(program_id, live.get(program_id), summary_of)
        except BaseException:
            self.clear()
            raise
        self._seed = None
        self._changed = set()
        return list(self._items)

    def _start(
        self,
        order: list[str],
        changed: set[str],
        live: Mapping[str, L],
        summary_of: Callable[[str, L], ProgramSummary],
    ) -> bool:
        """Take the seeded order (without the changed programs); ``False`` if it is not sorted."""
        key = self._key
        items = []
        keys = []
        for program_id in order:
            where = live.get(program_id)
            if where is not None and program_id not in changed:
                summary = summary_of(program_id, where)
                items.append(summary)
                keys.append(key(summary, where))
        if any(a >= b for a, b in pairwise(keys)):
            return False
        self._items = items
        self._keys = keys
        self._key_of = {summary.program_id: k for k, summary in zip(keys, items, strict=True)}
        return True

    def _rebuild(
        self, live: Mapping[str, L], summary_of: Callable[[str, L], ProgramSummary]
    ) -> None:
        key = self._key
        pairs = []
        for program_id, where in live.items():
            summary = summary_of(program_id, where)
            pairs.append((key(summary, where), summary))
        pairs.sort(key=itemgetter(0))
        self._keys = [pair[0] for pair in pairs]
        self._items = [pair[1] for pair in pairs]
        self._key_of = {summary.program_id: k for k, summary in pairs}

    def _move(
        self,
        program_id: str,
        where: L | None,
        summary_of: Callable[[str, L], ProgramSummary],
    ) -> None:
        old = self._key_of.pop(program_id, None)
        if old is not None:
            index = bisect_left(self._keys, old)
            del self._keys[index]
            del self._items[index]
        if where is not None:
            summary = summary_of(program_id, where)
            new = self._key(summary, where)
            index = bisect_left(self._keys, new)
            self._keys.insert(index, new)
            self._items.insert(index, summary)
            self._key_of[program_id] = new
