"""What each commit of ``main`` did to which programs, derived from Git alone.

:class:`LogIndex` walks the log of a ref once and then only the commits added
since, recording for each commit the programs whose files it changed (from a
tree diff against its first parent, so commits made by plain ``git`` count
too) and its trailers. From that it knows which programs are live, which
commit last wrote each, and a :class:`ProgramRecord` per live program built
from the save's trailers (or, for commits without them, from the file). It
lives in memory and is rebuilt from scratch when the ref was rewritten (its
last indexed commit is no longer an ancestor of the tip).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pygit2
from pygit2.enums import DeltaStatus

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
    """An incrementally maintained index of a ref's log."""

    def __init__(self, git: GitRepository, ref: str) -> None:
        self._git = git
        self._ref = ref
        self._lock = threading.Lock()
        self._head: pygit2.Oid | None = None
        self._entries: list[LogEntry] = []
        self._live: dict[str, int] = {}
        self._records: dict[str, ProgramRecord] = {}

    def entries(self) -> list[LogEntry]:
        """Every commit of the ref, oldest first (topological order)."""
        with self._lock:
            self._refresh()
            return list(self._entries)

    def last_change(self, program_id: str) -> str | None:
        """The commit that wrote the live version of ``program_id``, or ``None``."""
        with self._lock:
            self._refresh()
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
            return dict(self._records)

    def _refresh(self) -> None:
        tip = self._git.tip(self._ref)
        if tip is None:
            self._reset()
            return
        if tip.id == self._head:
            return
        repo = self._git.repo
        new = self._first_parent_chain(tip)
        if new is None:
            self._reset()
            new = self._first_parent_chain(tip)
            assert new is not None
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

    def _first_parent_chain(self, tip: pygit2.Commit) -> list[pygit2.Commit] | None:
        """Commits from ``tip`` back along first parents to the indexed head, newest first.

        ``None`` when the indexed head is not on that chain (the ref was
        rewritten, or replaced by a merge whose first parent is not our head).
        The log of a registry is its first-parent history: a merge counts as
        one change, what it brought is its diff against its first parent.
        """
        chain = []
        commit: pygit2.Commit | None = tip
        while commit is not None and commit.id != self._head:
            chain.append(commit)
            commit = commit.parents[0] if commit.parents else None
        if commit is None and self._head is not None:
            return None
        return chain

    def _reset(self) -> None:
        self._head = None
        self._entries = []
        self._live = {}
        self._records = {}

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
