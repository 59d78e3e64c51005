"""What each commit of ``main`` did to which programs, derived from Git alone.

:class:`LogIndex` walks the log of a ref once and then only the commits added
since, recording for each commit the programs whose files it changed (from a
tree diff against its first parent, so commits made by plain ``git`` count
too) and its trailers. From that it knows which programs are live, which
commit last wrote each, and a :class:`ProgramRecord` per live program built
from the save's trailers (or, for commits without them, from the file). It
lives in memory and is rebuilt from scratch when the ref was rewritten (its
last indexed commit is no longer an ancestor of the tip).

What it derived is also persisted between processes (:mod:`progreg.logcache`):
on first use the index loads the cache, keeps it only if the commit it was
built from is on the ref's first-parent chain, and walks only the commits
added since. The cache is written back by queries, never by saves, once at
least :attr:`LogIndex.persist_after` commits were indexed beyond it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import DeltaStatus

from progreg import logcache
from progreg.document import decode_document
from progreg.errors import ProgregError
from progreg.gitstore import GitRepository, parse_trailers
from progreg.ids import PROGRAMS_DIR, is_program_id, program_id_of_path, program_path
from progreg.messages import NONE

_WRITES = ("save", "restore")


@dataclass(frozen=True)
class LogEntry:
    """One commit of the log and the programs it touched."""

    commit: str
    time: datetime
    trailers: dict[str, str]
    written: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def action(self) -> str | None:
        """The ``Progreg-Action`` trailer (save, delete, restore...), if any."""
        return self.trailers.get("Progreg-Action")

    @property
    def changed(self) -> tuple[str, ...]:
        """Programs written or removed by this commit."""
        return self.written + self.removed


@dataclass(frozen=True)
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


class LogIndex:
    """An incrementally maintained index of a ref's log.

    ``cache`` is the file that persists the index between processes (default:
    :func:`progreg.logcache.cache_path` in the repository; ``None``: no cache).
    """

    #: Write the cache once a query has indexed this many commits beyond it.
    #: A fresh process walks at most about this many commits after loading it.
    persist_after = 128

    def __init__(self, git: GitRepository, ref: str, *, cache: Path | bool | None = True) -> None:
        self._git = git
        self._ref = ref
        self._lock = threading.Lock()
        self._head: pygit2.Oid | None = None
        self._entries: list[LogEntry] = []
        self._live: dict[str, int] = {}
        self._records: dict[str, ProgramRecord] = {}
        if cache is True:
            self._cache: Path | None = logcache.cache_path(git.path, ref)
        else:
            self._cache = cache if isinstance(cache, Path) else None
        self._cache_loaded = False
        self._unsaved = 0  # commits indexed beyond the cache file's head

    def entries(self) -> list[LogEntry]:
        """Every commit of the ref, oldest first (topological order)."""
        with self._lock:
            self._refresh()
            self._persist()
            return list(self._entries)

    def last_change(self, program_id: str) -> str | None:
        """The commit that wrote the live version of ``program_id``, or ``None``."""
        with self._lock:
            self._refresh()
            self._persist()
            position = self._live.get(program_id)
            return None if position is None else self._entries[position].commit

    def records(self) -> dict[str, ProgramRecord]:
        """A record for every live program, keyed by program id."""
        with self._lock:
            self._refresh()
            for program_id, position in self._live.items():
                record = self._records.get(program_id)
                if record is None or record.position != position:
                    self._records[program_id] = self._record(program_id, position)
            self._persist()
            return dict(self._records)

    def _refresh(self) -> None:
        tip = self._git.tip(self._ref)
        if tip is None:
            self._reset()
            return
        if tip.id == self._head:
            return
        if not self._cache_loaded:
            self._cache_loaded = True
            self._load()
        repo = self._git.repo
        new, found = self._first_parent_chain(tip)
        if not found:
            self._reset()  # ``new`` is then the whole chain
        self._unsaved += len(new)
        for commit in reversed(new):
            entry = _entry(repo, commit)
            position = len(self._entries)
            self._entries.append(entry)
            for program_id in entry.written:
                self._live[program_id] = position
            for program_id in entry.removed:
                self._live.pop(program_id, None)
                self._records.pop(program_id, None)
        self._head = tip.id

    def _first_parent_chain(self, tip: pygit2.Commit) -> tuple[list[pygit2.Commit], bool]:
        """Commits from ``tip`` back along first parents to the indexed head, newest first.

        The flag is false when the indexed head is not on that chain (the ref
        was rewritten, or replaced by a merge whose first parent is not our
        head); the commits are then the whole chain, down to the root.
        The log of a registry is its first-parent history: a merge counts as
        one change, what it brought is its diff against its first parent.
        """
        chain = []
        commit: pygit2.Commit | None = tip
        while commit is not None and commit.id != self._head:
            chain.append(commit)
            commit = commit.parents[0] if commit.parents else None
        return chain, commit is not None or self._head is None

    def _reset(self) -> None:
        self._head = None
        self._entries = []
        self._live = {}
        self._records = {}
        self._unsaved = 0

    def _load(self) -> None:
        """Start from the cache file, if there is a trustworthy one (else stay empty)."""
        if self._cache is None:
            return
        data = logcache.read(self._cache)
        if data is None:
            return
        try:
            state = _decode(data, self._ref)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError):
            state = None
        if state is None:
            return
        head, entries, live, records = state
        self._head = head
        self._entries = entries
        self._live = live
        self._records = records
        self._unsaved = 0

    def _persist(self) -> None:
        """Write the cache when enough commits were indexed since it was last written."""
        if self._cache is None or self._head is None or self._unsaved < self.persist_after:
            return
        self._unsaved = 0  # written or not (read-only registry), try again only later
        logcache.write(self._cache, _encode(self._ref, self._head, self._entries, self._records))

    def _record(self, program_id: str, position: int) -> ProgramRecord:
        entry = self._entries[position]
        trailers = entry.trailers
        if trailers.get("Program-Id") == program_id and entry.action in _WRITES:
            try:
                return ProgramRecord(
                    program_id=program_id,
                    commit=entry.commit,
                    position=position,
                    saved_at=datetime.fromisoformat(trailers["Saved-At"]),
                    best_score=_score(trailers.get("Score", NONE)),
                    score_name=_text(trailers.get("Score-Name", NONE)),
                    optimizer=_text(trailers.get("Optimizer", NONE)),
                    signature_class=_text(trailers.get("Signature", NONE)),
                )
            except (KeyError, ValueError):
                pass  # malformed trailers: read the file instead
        return self._record_from_file(program_id, entry, position)

    def _record_from_file(self, program_id: str, entry: LogEntry, position: int) -> ProgramRecord:
        repo = self._git.repo
        commit = repo[entry.commit]
        assert isinstance(commit, pygit2.Commit)
        data = self._git.read(commit.tree, program_path(program_id))
        doc = None
        if data is not None:
            try:
                doc = decode_document(data, program_path(program_id), program_id)
            except ProgregError:
                doc = None
        return ProgramRecord(
            program_id=program_id,
            commit=entry.commit,
            position=position,
            saved_at=doc.saved_at if doc is not None else entry.time,
            best_score=doc.best_score if doc is not None else None,
            score_name=doc.score_name if doc is not None else None,
            optimizer=doc.optimizer if doc is not None else None,
            signature_class=doc.signature_class if doc is not None else None,
        )


def _encode(
    ref: str, head: pygit2.Oid, entries: list[LogEntry], records: dict[str, ProgramRecord]
) -> dict[str, Any]:
    return {
        "ref": ref,
        "head": str(head),
        "entries": [
            [e.commit, int(e.time.timestamp()), e.trailers, e.written, e.removed] for e in entries
        ],
        "records": [
            [
                r.program_id,
                r.position,
                r.saved_at.isoformat(),
                r.best_score,
                r.score_name,
                r.optimizer,
                r.signature_class,
            ]
            for r in records.values()
        ],
    }


def _decode(
    data: dict[str, Any], ref: str
) -> tuple[pygit2.Oid, list[LogEntry], dict[str, int], dict[str, ProgramRecord]] | None:
    """The state a cache body describes, or ``None`` if it does not hold together.

    Raises ``KeyError``, ``TypeError``, ``ValueError``... on a malformed body.
    """
    if data["ref"] != ref:
        return None
    head = pygit2.Oid(hex=data["head"])
    entries: list[LogEntry] = []
    live: dict[str, int] = {}
    from_timestamp = datetime.fromtimestamp
    for position, (commit, time, trailers, written, removed) in enumerate(data["entries"]):
        if not isinstance(trailers, dict):
            return None
        entry = LogEntry(
            commit, from_timestamp(time, UTC), trailers, tuple(written), tuple(removed)
        )
        entries.append(entry)
        for program_id in entry.written:
            live[program_id] = position
        for program_id in entry.removed:
            live.pop(program_id, None)
    if not entries or entries[-1].commit != str(head):
        return None
    records: dict[str, ProgramRecord] = {}
    for program_id, position, saved_at, score, score_name, optimizer, signature in data["records"]:
        if live.get(program_id) != position:
            continue  # stale: recomputed when asked for
        records[program_id] = ProgramRecord(
            program_id=program_id,
            commit=entries[position].commit,
            position=position,
            saved_at=datetime.fromisoformat(saved_at),
            best_score=score,
            score_name=score_name,
            optimizer=optimizer,
            signature_class=signature,
        )
    return head, entries, live, records


def _text(value: str) -> str | None:
    return None if value == NONE else value


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
        written, removed = claimed
    else:
        parent_tree = commit.parents[0].tree if commit.parents else None
        written, removed = _changed_programs(repo, parent_tree, commit.tree)
    return LogEntry(str(commit.id), moment, trailers, written, removed)


def _claimed_change(
    commit: pygit2.Commit, trailers: dict[str, str]
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
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
    present = program_path(program_id) in commit.tree
    if action in _WRITES and present:
        return (program_id,), ()
    if action == "delete" and not present:
        return (), (program_id,)
    return None


def _changed_programs(
    repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    old_programs = _subtree(repo, old, PROGRAMS_DIR)
    new_programs = _subtree(repo, new, PROGRAMS_DIR)
    if new_programs is None and old_programs is None:
        return (), ()
    if old_programs is not None and new_programs is not None:
        if old_programs.id == new_programs.id:
            return (), ()
        diff = old_programs.diff_to_tree(new_programs)
    elif new_programs is not None:
        diff = new_programs.diff_to_tree(swap=True)
    else:
        assert old_programs is not None
        diff = old_programs.diff_to_tree()
    written: list[str] = []
    removed: list[str] = []
    for delta in diff.deltas:
        if delta.status == DeltaStatus.DELETED:
            program_id = program_id_of_path(f"{PROGRAMS_DIR}/{delta.old_file.path}")
            target = removed
        else:
            program_id = program_id_of_path(f"{PROGRAMS_DIR}/{delta.new_file.path}")
            target = written
        if program_id is not None:
            target.append(program_id)
    return tuple(written), tuple(removed)


def _subtree(repo: pygit2.Repository, tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
    if tree is None or name not in tree:
        return None
    obj = repo[tree[name].id]
    return obj if isinstance(obj, pygit2.Tree) else None
