"""A file that persists what :class:`~progreg.registry.history.LogIndex` derived, between processes.

The cache lives in the registry's directory but outside Git's data
(``<registry>/progreg-cache/``) and is never a source of truth: it records the
commit it was built from, and the index only uses it when that commit is on
the ref's first-parent chain. Its format is one header line (JSON: format
name, version, size and SHA-256 of the body) followed by a JSON body. A file
that is missing, truncated, corrupt, of another version or unreadable reads
as no cache at all. Writes go to a temporary file renamed over the cache, so
readers see a whole old file or a whole new one; when processes race the
last writer wins, and a registry the process cannot write to is simply not
cached.

The body (version 2) is one JSON object of columns, with one entry per live
program in the order the programs went live::

    {"ref": "refs/heads/main", "head": "<commit>", "count": <commits indexed>,
     "programs": [<program id>, ...],
     "positions": [<index of the commit that wrote it, 0 = oldest>, ...],
     "commits": [<that commit>, ...], "blobs": [<blob id of its file>, ...],
     "saved_at": [...], "scores": [...], "score_names": [...],
     "optimizers": [...], "signatures": [...],
     "pending": {<program id>: <commit time, epoch seconds>, ...},
     "summaries": [<summary>, ...], "metadata": [<metadata object>, ...],
     "by_time": [<row>, ...]}

The five record columns hold what the log says about each program
(``saved_at`` in ISO 8601 with its offset); a program whose record is to be
read from its file has ``null`` there and its commit's time in ``pending``.
A ``summary`` of the program's file is ``null`` when not known yet, an index
into ``metadata`` when its other fields equal the record's, or
``[saved_at, best_score, score_name, optimizer, signature_class, index]``;
equal metadata objects are stored once. ``by_time`` lists the rows by
``(saved_at, program id)`` of their summaries when every summary is known,
and is empty otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import orjson

from progreg.core.summaries import Fields, SummaryCache, SummaryRow
from progreg.errors import RegistryError
from progreg.git.permissions import FILE_MODE, make_dir, set_created_mode
from progreg.git.settings import repository_settings

#: The directory, inside the registry, that holds derived caches.
CACHE_DIR = "progreg-cache"
FORMAT = "progreg-log-index"
VERSION = 2
_MAIN = "refs/heads/main"
_HEX_DIGITS = re.compile(r"[0-9a-f]*")
_COLUMNS = ("programs", "positions", "commits", "blobs")
_RECORD_COLUMNS = ("saved_at", "scores", "score_names", "optimizers", "signatures")
_TZINFO = attrgetter("tzinfo")

#: One live program as the index persists it: ``(program id, position,
#: commit, blob, record)``; ``record`` is its fields, or the commit time when
#: the record is to be read from the file.
ProgramRow = tuple[str, int, str, str, "Fields | int"]


@dataclass(frozen=True)
class CacheState:
    """What a cache body describes: the ref's head, the commit count, the live programs.

    The lists hold one entry per live program, in the order they went live.
    """

    head: str
    count: int
    programs: list[str]
    positions: list[int]
    commits: list[str]
    blobs: list[str]
    #: Each program's record fields; ``None`` for those in ``pending``.
    records: list[Fields | None]
    #: Programs whose record is to be read from the file: their commit time.
    pending: dict[str, int]
    #: The known summaries: ``{blob: (program id, fields, metadata)}``.
    summaries: dict[str, tuple[str, Fields, dict[str, Any]]]
    #: Indices into the lists, by ``(saved_at, program_id)`` of the summaries, if persisted.
    by_time: list[int]


def cache_path(registry: Path, ref: str) -> Path:
    """Where the log index of ``ref`` in the registry at ``registry`` is cached."""
    name = f"log-index-v{VERSION}"
    if ref != _MAIN:
        name += "-" + re.sub(r"[^A-Za-z0-9._-]", "_", ref)
    return registry / CACHE_DIR / f"{name}.json"


def read(path: Path) -> dict[str, Any] | None:
    """The body of the cache at ``path``, or ``None`` if it is missing or not trustworthy."""
    try:
        with path.open("rb") as file:
            header_line = file.readline(4096)
            body = file.read()
    except OSError:
        return None
    try:
        header = json.loads(header_line)
        if (
            not isinstance(header, dict)
            or header.get("format") != FORMAT
            or header.get("version") != VERSION
            or header.get("size") != len(body)
            or header.get("sha256") != hashlib.sha256(body).hexdigest()
        ):
            return None
        data = orjson.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write(path: Path, data: dict[str, Any]) -> bool:
    """Atomically replace the cache at ``path`` with ``data``; ``False`` if it cannot be."""
    body = orjson.dumps(data)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    try:
        shared = repository_settings(path.parent.parent).shared  # the registry's file modes
        make_dir(path.parent, shared)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (OSError, RegistryError):
        return False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(json.dumps(header).encode() + b"\n")
            file.write(body)
        set_created_mode(temp, FILE_MODE, shared)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        return False
    return True


def encode(
    ref: str,
    head: str,
    count: int,
    programs: Iterable[ProgramRow],
    summaries: SummaryCache,
    by_time: list[str] | None = None,
) -> dict[str, Any]:
    """The cache body for the live ``programs`` (and the summaries of their files).

    ``by_time`` is the program ids by ``(saved_at, program_id)`` of their
    summaries, when the caller knows it; else it is sorted here if every
    summary is known.
    """
    metadata = _MetadataTable()
    ids: list[str] = []
    positions: list[int] = []
    commits: list[str] = []
    blobs: list[str] = []
    columns: list[list[Any]] = [[] for _ in _RECORD_COLUMNS]
    appends = [column.append for column in columns]
    pending: dict[str, int] = {}
    summary_column: list[int | list[Any] | None] = []
    complete = True  # every summary is known
    for program_id, position, commit, blob, record in programs:
        ids.append(program_id)
        positions.append(position)
        commits.append(commit)
        blobs.append(blob)
        if isinstance(record, int):
            pending[program_id] = record
            for append in appends:
                append(None)
        else:
            for append, value in zip(appends, record, strict=True):
                append(value)
        found = summaries.row(blob)
        if found is None:
            summary_column.append(None)
            complete = False
        else:
            values, meta = found
            index = metadata.index_of(meta)
            summary_column.append(index if _same(values, record) else [*values, index])
    body: dict[str, Any] = {
        "ref": ref,
        "head": head,
        "count": count,
        "programs": ids,
        "positions": positions,
        "commits": commits,
        "blobs": blobs,
    }
    body.update(zip(_RECORD_COLUMNS, columns, strict=True))
    body["pending"] = pending
    body["summaries"] = summary_column
    body["metadata"] = metadata.values
    if not complete:
        body["by_time"] = []
    elif by_time is not None and len(by_time) == len(ids):
        row_of = {program_id: row for row, program_id in enumerate(ids)}
        body["by_time"] = [row_of[program_id] for program_id in by_time]
    else:
        keys = [(_saved_at(summaries.row(blob)), pid) for pid, blob in zip(ids, blobs, strict=True)]
        body["by_time"] = sorted(range(len(keys)), key=keys.__getitem__)
    return body


def _saved_at(row: SummaryRow | None) -> datetime:
    """The ``saved_at`` of a known summary's row."""
    assert row is not None
    moment: datetime = row[0][0]
    return moment


class _MetadataTable:
    """Distinct metadata objects, each stored once."""

    def __init__(self) -> None:
        self.values: list[dict[str, Any]] = []
        self._by_content: dict[bytes, int] = {}
        self._by_identity: dict[int, int] = {}

    def index_of(self, value: dict[str, Any]) -> int:
        """The index of ``value`` in :attr:`values` (added if new)."""
        index = self._by_identity.get(id(value))
        if index is None:
            index = self._by_content.setdefault(orjson.dumps(value), len(self.values))
            if index == len(self.values):
                self.values.append(value)
            self._by_identity[id(value)] = index
        return index


def decode(data: dict[str, Any], ref: str) -> CacheState | None:
    """The state a cache body describes, or ``None`` if it is not for ``ref`` or does not hold up.

    Every value is checked for its type and range, so that what the index
    builds from it is what a rebuild from Git would hold.
    """
    try:
        return _decode(data, ref)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError):
        return None


def _decode(data: dict[str, Any], ref: str) -> CacheState | None:
    if data["ref"] != ref:
        return None
    head, count, metadata, pending = data["head"], data["count"], data["metadata"], data["pending"]
    ids, positions, commits, blobs = (data[name] for name in _COLUMNS)
    stored = [data[name] for name in _RECORD_COLUMNS]
    summaries, by_time = data["summaries"], data["by_time"]
    columns = [ids, positions, commits, blobs, *stored, summaries]
    size = len(ids)
    if (
        not _all_hex([head], (40, 64))
        or not _is_count(count)
        or count < 1
        or not all(isinstance(column, list) and len(column) == size for column in columns)
        or not _all_hex(ids, (16,))
        or len(set(ids)) != size
        or not _all_hex(commits, (40, 64))
        or not _all_hex(blobs, (40, 64))
        or not set(map(type, positions)) <= {int}
        or (size and (min(positions) < 0 or max(positions) >= count))
        or any(c != head for p, c in zip(positions, commits, strict=True) if p == count - 1)
        or not isinstance(metadata, list)
        or not all(isinstance(value, dict) for value in metadata)
        or not isinstance(pending, dict)
        or not set(map(type, pending.values())) <= {int}
        or not isinstance(by_time, list)
        or (by_time and not _is_permutation(by_time, size))
    ):
        return None
    texts: dict[str | None, str | None] = {None: None}
    saved_at = [None if t is None else datetime.fromisoformat(t) for t in stored[0]]
    if {p for p, t in zip(ids, saved_at, strict=True) if t is None} != set(pending):
        return None
    if None in map(_TZINFO, filter(None, saved_at)) or not _types(stored[1], float):
        return None
    names = [_shared(column, texts) for column in stored[2:]]
    records: list[Fields | None] = [
        None if row[0] is None else row for row in zip(saved_at, stored[1], *names, strict=True)
    ]
    known = _summaries(ids, blobs, records, summaries, metadata, texts)
    return CacheState(head, count, ids, positions, commits, blobs, records, pending, known, by_time)


def _summaries(
    ids: list[str],
    blobs: list[str],
    records: list[Fields | None],
    summaries: list[Any],
    metadata: list[dict[str, Any]],
    texts: dict[str | None, str | None],
) -> dict[str, tuple[str, Fields, dict[str, Any]]]:
    """``{blob: (program id, fields, metadata)}`` of the summaries a body lists.

    Raises ``ValueError`` (or ``TypeError``, ``IndexError``) when one is malformed.
    """
    known: dict[str, tuple[str, Fields, dict[str, Any]]] = {}
    for program_id, blob, record, summary in zip(ids, blobs, records, summaries, strict=True):
        if summary is None:
            continue
        if summary.__class__ is int and record is not None:
            known[blob] = (program_id, record, metadata[summary])
        elif isinstance(summary, list) and len(summary) == 6 and summary[5].__class__ is int:
            known[blob] = (program_id, _fields(summary[:5], texts), metadata[summary[5]])
        else:
            raise ValueError("malformed summary")
    return known


def _fields(values: list[Any], texts: dict[str | None, str | None]) -> Fields:
    """``(saved_at, best_score, score_name, optimizer, signature_class)`` of a summary entry.

    Checked value by value (a cache of 100k programs decodes 100k of them at start-up).
    """
    moment = datetime.fromisoformat(values[0])
    score, name, optimizer, signature = values[1:]
    if moment.tzinfo is None or (score is not None and score.__class__ is not float):
        raise ValueError("malformed summary")
    for text in (name, optimizer, signature):
        if text is not None and text.__class__ is not str:
            raise TypeError("not a string")
    share = texts.setdefault
    return (
        moment,
        score,
        share(name, name),
        share(optimizer, optimizer),
        share(signature, signature),
    )


def _shared(column: list[Any], texts: dict[str | None, str | None]) -> list[Any]:
    """The strings (or ``None``) of ``column``, equal ones shared; raises ``TypeError``."""
    if not _types(column, str):
        raise TypeError("not a string")
    return list(map(texts.setdefault, column, column))


def _types(column: list[Any], kind: type) -> bool:
    """True when every value of ``column`` is a ``kind`` or ``None``."""
    return set(map(type, column)) <= {kind, type(None)}


def _same(fields: Fields, record: Fields | int) -> bool:
    """True when a summary's fields are exactly its record's (offsets and signs of zero too)."""
    if isinstance(record, int) or fields != record:
        return False
    return fields[0].utcoffset() == record[0].utcoffset() and repr(fields[1]) == repr(record[1])


def _all_hex(values: list[Any], lengths: tuple[int, ...]) -> bool:
    """True when every value is a string of lowercase hex digits of one of ``lengths``."""
    if not set(map(len, values)) <= set(lengths):
        return False
    return _HEX_DIGITS.fullmatch("".join(values)) is not None


def _is_permutation(values: list[Any], size: int) -> bool:
    """True when ``values`` holds each of ``0 .. size - 1`` once."""
    return (
        len(values) == size
        and set(map(type, values)) <= {int}
        and len(set(values)) == size
        and min(values) >= 0
        and max(values) < size
    )


def _is_count(value: object) -> bool:
    return value.__class__ is int and value >= 0
