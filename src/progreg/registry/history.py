"""What each commit of ``main`` did to which programs, derived from Git alone.

:class:`LogIndex` walks the first-parent log of a ref once and then only the
commits added since. For each commit it learns which programs' files it
wrote (with the blob id written) or removed: from the trailers of progreg's
single-program commits, confirmed by the tree, and otherwise from a tree
diff against the first parent, so commits made by plain ``git`` and merges
count too. From that it keeps, for every live program, its position in the
log (the index of the commit that wrote its live version, oldest first),
that commit and the blob; a :class:`ProgramRecord` built from the save's
trailers (or, for commits without them, from the file); and, on demand,
the :class:`~progreg.core.models.ProgramSummary` of each live blob, in a
:class:`~progreg.core.summaries.SummaryCache` keyed by blob id.

It lives in memory and starts over when the ref was rewritten (its last
indexed commit is no longer on the tip's first-parent chain). What it
derived is also persisted between processes (:mod:`progreg.registry.logcache`): on
first use the index loads the cache, keeps it only if the commit it was
built from is on the ref's first-parent chain, and walks only the commits
added since. Queries write the cache back (saves never do) once at least
:attr:`LogIndex.persist_after` commits were indexed, or files decoded,
beyond it.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pygit2
from pygit2.enums import DeltaStatus, RepositoryOpenFlag

from progreg.core.document import ProgramDocument, decode_document
from progreg.core.ids import is_program_id, program_id_of_path, program_path
from progreg.core.layout import PROGRAMS_DIR
from progreg.core.models import ProgramSummary
from progreg.core.summaries import SortedView, SummaryCache
from progreg.errors import CorruptProgramError, ProgregError
from progreg.git import GitRepository, parse_trailers
from progreg.git.failures import read_failure
from progreg.git.pack.objectread import BlobReader
from progreg.registry import logcache
from progreg.registry.messages import NONE, SAVED_AT

_WRITES = ("save", "restore")
#: A walk longer than this reads through handles of its own, this many commits
#: each, and the index releases its thread's handle and blob reader every this
#: many commits read or files decoded (see :meth:`GitRepository.release`).
_HANDLE_COMMITS = 1024


@dataclass(frozen=True)
class LogEntry:
    """One commit of the log and the programs it touched."""

    commit: str
    time: datetime
    trailers: dict[str, str]
    written: tuple[str, ...]
    removed: tuple[str, ...]
    #: The blob id of each program in ``written``, in the same order.
    blobs: tuple[str, ...] = ()

    @property
    def action(self) -> str | None:
        """The ``Progreg-Action`` trailer (save, delete, restore...), if any."""
        return self.trailers.get("Progreg-Action")

    @property
    def changed(self) -> tuple[str, ...]:
        """Programs written or removed by this commit."""
        return self.written + self.removed


@dataclass(frozen=True, slots=True)
class ProgramRecord:
    """What the log says about a live program, without reading its file."""

    program_id: str
    commit: str
    position: int
    saved_at: datetime
    best_score: float | None
    score_name: str | None
    optimizer: str | None
    signature_class: str | None


class Live(NamedTuple):
    """Where the live version of a program is in the log."""

    position: int
    commit: str
    blob: str


#: The record fields a cache row carries: saved_at, score, score name,
#: optimizer, signature; or, for a record still to be read from the file,
#: the time of its commit (epoch seconds).
RecordRow = tuple[Any, ...] | int


class LogIndex:
    """An incrementally maintained index of a ref's log.

    ``cache`` is the file that persists the index between processes (default:
    :func:`progreg.registry.logcache.cache_path` in the repository; ``None``: no cache).
    """

    #: Write the cache once a query has indexed this many commits (or decoded
    #: this many files) beyond it. A fresh process does at most about this
    #: much work after loading it.
    persist_after = 128

    def __init__(self, git: GitRepository, ref: str, *, cache: Path | bool | None = True) -> None:
        self._git = git
        self._ref = ref
        self._lock = threading.Lock()
        self._head: pygit2.Oid | None = None
        self._count = 0  # commits indexed: positions are 0 .. count - 1
        self._live: dict[str, Live] = {}
        self._records: dict[str, ProgramRecord] = {}  # of live programs, when known
        self._record_rows: dict[str, RecordRow] = {}  # loaded, built into records on use
        self._pending: dict[str, datetime] = {}  # live programs whose record is read from the file
        self._records_copy: dict[str, ProgramRecord] | None = None
        self._summaries = SummaryCache()
        self._blobs = BlobReader(git.path / "objects")
        self._by_time = SortedView(lambda s, live: (s.saved_at, s.program_id))
        self._by_position = SortedView(lambda s, live: (live.position, s.saved_at, s.program_id))
        if cache is True and not git.read_only:  # a read-only view writes nothing
            self._cache: Path | None = logcache.cache_path(git.path, ref)
        else:
            self._cache = cache if isinstance(cache, Path) else None
        self._cache_loaded = False
        self._unsaved = 0  # commits indexed and files decoded beyond the cache file
        self._decoded = 0  # files decoded by this index

    # -- queries -----------------------------------------------------------------

    def entries(self) -> list[LogEntry]:
        """Every commit of the ref, oldest first, as read from Git (first parents)."""
        with self._lock:
            self._refresh()
            self._persist()
            head = self._head
        if head is None:
            return []
        tip = self._git.repo[head]
        assert isinstance(tip, pygit2.Commit)
        chain, _ = _chain(tip, None, self._git.path, self._release)
        return [_entry(repo, commit) for repo, commit in self._commits(reversed(chain), len(chain))]

    def last_change(self, program_id: str) -> str | None:
        """The commit that wrote the live version of ``program_id``, or ``None``."""
        with self._lock:
            self._refresh()
            self._persist()
            live = self._live.get(program_id)
            return None if live is None else live.commit

    def locate(self, program_id: str) -> tuple[pygit2.Oid, Live] | None:
        """``(tip, live)``: the tip the index is at and where the program is, or ``None``."""
        with self._lock:
            self._refresh()
            self._persist()
            live = self._live.get(program_id)
            if live is None or self._head is None:
                return None
            return self._head, live

    def records(self) -> dict[str, ProgramRecord]:
        """A record for every live program, keyed by program id."""
        with self._lock:
            self._refresh()
            copy = self._all_records()
            self._persist()
            return dict(copy)

    def summaries(self, program_ids: Iterable[str]) -> list[ProgramSummary]:
        """The summaries of those of ``program_ids`` that are live, in the order given.

        Raises :class:`~progreg.errors.CorruptProgramError` when a program's
        file cannot be decoded.
        """
        with self._lock:
            self._refresh()
            found = []
            where = self._live.get
            known = self._summaries.known
            for program_id in program_ids:
                live = where(program_id)
                if live is not None:
                    summary = known(live.blob)
                    if summary is None or summary.program_id != program_id:
                        summary = self._summary(program_id, live)
                    found.append(summary)
            self._persist()
            return found

    def by_time(self) -> list[ProgramSummary]:
        """Every live program's summary, by ``(saved_at, program_id)``."""
        return self._view(self._by_time)

    def by_position(self) -> list[ProgramSummary]:
        """Every live program's summary, by ``(position, saved_at, program_id)``."""
        return self._view(self._by_position)

    def _view(self, view: SortedView) -> list[ProgramSummary]:
        with self._lock:
            self._refresh()
            items = view.update(self._live, self._summary)
            self._persist()
            return items

    # -- following the ref ---------------------------------------------------------

    def _refresh(self) -> None:
        target = self._git.tip_id(self._ref)
        if target is None:
            self._reset()
            return
        if target == self._head:
            return
        if not self._cache_loaded:
            self._cache_loaded = True
            self._load()
        tip = self._git.tip(self._ref)
        if tip is None:
            self._reset()
            return
        new, found = self._first_parent_chain(tip)
        if not found:
            self._reset()  # ``new`` is then the whole chain
        self._unsaved += len(new)
        try:
            for repo, commit in self._commits(reversed(new), len(new)):
                self._apply(_entry(repo, commit))
        except BaseException:
            self._reset()  # half-applied: start over (from the cache) next time
            self._cache_loaded = False
            raise
        self._head = tip.id

    def _commits(
        self, ids: Iterable[pygit2.Oid], count: int
    ) -> Iterator[tuple[pygit2.Repository, pygit2.Commit]]:
        """The commits ``ids``, each with the handle to read its trees with.

        libgit2 caches the commits and trees it reads in the handle (up to
        256 MB by default), which indexing a long history would fill for
        nothing: a long walk reads through handles of its own, a fresh one
        every :data:`_HANDLE_COMMITS` commits (see :func:`_private_handle`),
        after releasing this thread's handle: packs are shared between
        handles, and so are the delta bases libgit2 caches per pack.
        """
        repo = self._git.repo
        private: pygit2.Repository | None = None
        if count > _HANDLE_COMMITS:
            self._release()
        try:
            for done, commit_id in enumerate(ids):
                if count > _HANDLE_COMMITS and done % _HANDLE_COMMITS == 0:
                    private = repo = _private_handle(self._git.path, private)
                commit = repo[commit_id]
                assert isinstance(commit, pygit2.Commit)
                yield repo, commit
        finally:
            if private is not None:
                private.free()

    def _apply(self, entry: LogEntry) -> None:
        position = self._count
        self._count += 1
        changed = entry.changed
        for program_id, blob in zip(entry.written, entry.blobs, strict=True):
            self._live[program_id] = Live(position, entry.commit, blob)
            self._record_rows.pop(program_id, None)
            record = _trailer_record(program_id, entry, position)
            if record is None:
                self._records.pop(program_id, None)
                self._pending[program_id] = entry.time
            else:
                self._records[program_id] = record
                self._pending.pop(program_id, None)
        for program_id in entry.removed:
            self._live.pop(program_id, None)
            self._records.pop(program_id, None)
            self._record_rows.pop(program_id, None)
            self._pending.pop(program_id, None)
        if changed:
            self._records_copy = None
            self._by_time.changed(changed)
            self._by_position.changed(changed)

    def _first_parent_chain(self, tip: pygit2.Commit) -> tuple[list[pygit2.Oid], bool]:
        """Ids of the commits from ``tip`` back along first parents to the indexed head.

        Newest first. The flag is false when the indexed head is not on that
        chain (the ref was rewritten, or replaced by a merge whose first
        parent is not our head); the commits are then the whole chain, down
        to the root. The log of a registry is its first-parent history: a
        merge counts as one change, what it brought is its diff against its
        first parent.
        """
        return _chain(tip, self._head, self._git.path, self._release)

    def _reset(self) -> None:
        self._head = None
        self._count = 0
        self._live = {}
        self._records = {}
        self._record_rows = {}
        self._pending = {}
        self._records_copy = None
        self._by_time.clear()
        self._by_position.clear()
        self._unsaved = 0

    # -- records and summaries -----------------------------------------------------

    def _all_records(self) -> dict[str, ProgramRecord]:
        """Every live program's record in the order programs went live (kept until main moves)."""
        if self._records_copy is None:
            records = self._records
            for program_id, row in self._record_rows.items():
                records[program_id] = _record_of_row(program_id, self._live[program_id], row)
            self._record_rows.clear()
            for program_id in list(self._pending):
                records[program_id] = self._record_from_file(program_id)
            self._records_copy = {program_id: records[program_id] for program_id in self._live}
        return self._records_copy

    def _record_from_file(self, program_id: str) -> ProgramRecord:
        live = self._live[program_id]
        moment = self._pending[program_id]
        try:
            summary: ProgramSummary | None = self._summary(program_id, live)
        except ProgregError:
            summary = None
        del self._pending[program_id]
        return ProgramRecord(
            program_id=program_id,
            commit=live.commit,
            position=live.position,
            saved_at=summary.saved_at if summary is not None else moment,
            best_score=summary.best_score if summary is not None else None,
            score_name=summary.score_name if summary is not None else None,
            optimizer=summary.optimizer if summary is not None else None,
            signature_class=summary.signature_class if summary is not None else None,
        )

    def _summary(self, program_id: str, live: Live) -> ProgramSummary:
        """The summary of the live version of a program (its file is decoded once per blob)."""
        summary = self._summaries.get(live.blob)
        if summary is not None and summary.program_id == program_id:
            return summary
        doc = self._decode(program_id, live.blob)
        summary = doc.summary()
        self._decoded += 1
        if self._decoded % _HANDLE_COMMITS == 0:
            self._release()  # what libgit2 cached for the files read so far
        if len(self._summaries) > 2 * len(self._live) + 1024:
            self._summaries.keep({where.blob for where in self._live.values()})
        self._unsaved += 1
        return self._summaries.add_decoded(live.blob, program_id, summary)

    def _release(self) -> None:
        """Close the packs this thread holds open, and what libgit2 caches with them."""
        self._git.release()
        self._blobs.release()

    def blob(self, blob_id: str) -> bytes | None:
        """The content of the blob ``blob_id``, or ``None`` if there is no such blob."""
        oid = pygit2.Oid(hex=blob_id)
        data = self._blobs.read(oid)
        if data is None:
            found = self._git.repo.get(oid)
            data = found.data if isinstance(found, pygit2.Blob) else None
        return data

    def _decode(self, program_id: str, blob_id: str) -> ProgramDocument:
        path = program_path(program_id)
        where = f"{path} (commit {str(self._head)[:12]} of {self._git.path})"
        try:
            data = self.blob(blob_id)
        except (pygit2.GitError, KeyError) as exc:
            raise read_failure(self._git.path, f"program {program_id} ({where})", exc) from exc
        if data is None:
            raise CorruptProgramError(f"{where}: its blob {blob_id} is missing")
        return decode_document(data, where, program_id)

    # -- the cache file ------------------------------------------------------------

    def _load(self) -> None:
        """Start from the cache file, if there is a trustworthy one (else stay empty)."""
        if self._cache is None:
            return
        data = logcache.read(self._cache)
        if data is None:
            return
        state = logcache.decode(data, self._ref)
        if state is None:
            return
        self._head = pygit2.Oid(hex=state.head)
        self._count = state.count
        places = zip(state.positions, state.commits, state.blobs, strict=True)
        self._live = dict(zip(state.programs, map(Live._make, places), strict=True))
        self._record_rows = {
            program_id: record
            for program_id, record in zip(state.programs, state.records, strict=True)
            if record is not None
        }
        self._pending = {
            program_id: datetime.fromtimestamp(moment, UTC)
            for program_id, moment in state.pending.items()
        }
        self._summaries.add_rows(state.summaries)
        self._records = {}
        self._records_copy = None
        self._by_time.clear()
        if state.by_time:
            self._by_time.seed([state.programs[row] for row in state.by_time])
        self._by_position.clear()
        self._unsaved = 0

    def _persist(self) -> None:
        """Write the cache when enough was derived since it was last written."""
        if self._cache is None or self._head is None or self._unsaved < self.persist_after:
            return
        self._unsaved = 0  # written or not (read-only registry), try again only later
        data = logcache.encode(
            self._ref,
            str(self._head),
            self._count,
            self._rows(),
            self._summaries,
            self._by_time.order(),
        )
        logcache.write(self._cache, data)

    def _rows(self) -> Iterator[logcache.ProgramRow]:
        """The live programs as the cache persists them, one at a time."""
        for program_id, live in self._live.items():
            record = self._records.get(program_id)
            record_row: RecordRow
            if record is not None:
                record_row = _row_of_record(record)
            elif program_id in self._record_rows:
                record_row = self._record_rows[program_id]
            else:
                record_row = int(self._pending[program_id].timestamp())
            yield program_id, live.position, live.commit, live.blob, record_row


def _chain(
    tip: pygit2.Commit, stop: pygit2.Oid | None, path: Path, release: Callable[[], None]
) -> tuple[list[pygit2.Oid], bool]:
    """Ids of the first-parent commits from ``tip`` down to ``stop`` (excluded), newest first.

    The flag says whether ``stop`` was reached (always true without one).
    Beyond :data:`_HANDLE_COMMITS` commits the walk goes on through private
    handles of the repository at ``path`` (see :meth:`LogIndex._commits`),
    once ``release`` has closed the packs the caller's handle holds open.
    """
    chain = []
    private: pygit2.Repository | None = None
    commit: pygit2.Commit | pygit2.Object | None = tip
    try:
        while isinstance(commit, pygit2.Commit) and commit.id != stop:
            chain.append(commit.id)
            parents = commit.parent_ids
            if not parents:
                commit = None
            elif len(chain) % _HANDLE_COMMITS == 0:
                if private is None:
                    release()
                private = _private_handle(path, private)
                commit = private[parents[0]]
            else:
                commit = commit.parents[0]
    finally:
        if private is not None:
            private.free()
    return chain, commit is not None or stop is None


def _private_handle(path: Path, previous: pygit2.Repository | None) -> pygit2.Repository:
    """A new handle on the repository at ``path``, after emptying ``previous``.

    ``free()`` releases what a handle caches at once: a dropped handle would
    keep it until Python's cycle collector ran.
    """
    if previous is not None:
        previous.free()
    return pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)


def _trailer_record(program_id: str, entry: LogEntry, position: int) -> ProgramRecord | None:
    """The record a save's trailers give, or ``None`` when it must come from the file."""
    trailers = entry.trailers
    if trailers.get("Program-Id") != program_id or entry.action not in _WRITES:
        return None
    try:
        return ProgramRecord(
            program_id=program_id,
            commit=entry.commit,
            position=position,
            saved_at=datetime.fromisoformat(trailers[SAVED_AT]),
            best_score=_score(trailers.get("Score", NONE)),
            score_name=_text(trailers.get("Score-Name", NONE)),
            optimizer=_text(trailers.get("Optimizer", NONE)),
            signature_class=_text(trailers.get("Signature", NONE)),
        )
    except (KeyError, ValueError):
        return None  # malformed trailers: read the file instead


def _row_of_record(record: ProgramRecord) -> tuple[Any, ...]:
    return (
        record.saved_at,
        record.best_score,
        record.score_name,
        record.optimizer,
        record.signature_class,
    )


def _record_of_row(program_id: str, live: Live, row: RecordRow) -> ProgramRecord:
    assert isinstance(row, tuple)
    saved_at, score, score_name, optimizer, signature = row  # checked by logcache.decode
    return ProgramRecord(
        program_id, live.commit, live.position, saved_at, score, score_name, optimizer, signature
    )


def _text(value: str) -> str | None:
    """The value of a trailer; the few distinct names are shared between records."""
    return None if value == NONE else sys.intern(value)


def _score(value: str) -> float | None:
    if value == NONE:
        return None
    score = float(value)
    return score if math.isfinite(score) else None


def _entry(repo: pygit2.Repository, commit: pygit2.Commit) -> LogEntry:
    trailers = parse_trailers(commit.message)
    moment = datetime.fromtimestamp(commit.commit_time, UTC)
    claimed = _claimed_change(commit, trailers)
    if claimed is not None:
        written, blobs, removed = claimed
    else:
        parent_tree = commit.parents[0].tree if commit.parents else None
        written, blobs, removed = _changed_programs(repo, parent_tree, commit.tree)
    return LogEntry(str(commit.id), moment, trailers, written, removed, blobs)


#: ``(written, their blob ids, removed)``
Change = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _claimed_change(commit: pygit2.Commit, trailers: dict[str, str]) -> Change | None:
    """What a single-program progreg commit says it did, if its tree confirms it.

    progreg's save, restore and delete commits change exactly the program
    their ``Program-Id`` trailer names; checking that the path is present
    (or absent) spares a tree diff per commit. Anything else, such as merges
    and commits made by hand, is diffed.
    """
    program_id = trailers.get("Program-Id")
    action = trailers.get("Progreg-Action")
    if program_id is None or len(commit.parent_ids) > 1 or not is_program_id(program_id):
        return None
    try:
        found = commit.tree[program_path(program_id)]
    except KeyError:
        found = None
    if action in _WRITES and found is not None and found.type_str == "blob":
        return (program_id,), (str(found.id),), ()
    if action == "delete" and found is None:
        return (), (), (program_id,)
    return None


def _changed_programs(repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree) -> Change:
    old_programs = _subtree(repo, old, PROGRAMS_DIR)
    new_programs = _subtree(repo, new, PROGRAMS_DIR)
    if new_programs is None and old_programs is None:
        return (), (), ()
    if old_programs is not None and new_programs is not None:
        if old_programs.id == new_programs.id:
            return (), (), ()
        diff = old_programs.diff_to_tree(new_programs)
    elif new_programs is not None:
        diff = new_programs.diff_to_tree(swap=True)
    else:
        assert old_programs is not None
        diff = old_programs.diff_to_tree()
    written: list[str] = []
    blobs: list[str] = []
    removed: list[str] = []
    for delta in diff.deltas:
        if delta.status == DeltaStatus.DELETED:
            program_id = program_id_of_path(f"{PROGRAMS_DIR}/{delta.old_file.path}")
            if program_id is not None:
                removed.append(program_id)
        else:
            program_id = program_id_of_path(f"{PROGRAMS_DIR}/{delta.new_file.path}")
            if program_id is not None:
                written.append(program_id)
                blobs.append(str(delta.new_file.id))
    return tuple(written), tuple(blobs), tuple(removed)


def _subtree(repo: pygit2.Repository, tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
    if tree is None or name not in tree:
        return None
    obj = repo[tree[name].id]
    return obj if isinstance(obj, pygit2.Tree) else None
