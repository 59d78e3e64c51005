"""What each commit of ``main`` did to which programs, derived from Git alone.

:class:`LogIndex` walks the log of a ref once and then only the commits added
since, recording for each commit the programs whose files it changed (from a
tree diff against its first parent, so commits made by plain ``git`` count
too) and its trailers. It lives in memory and is rebuilt from scratch when
the ref was rewritten (its last indexed commit is no longer an ancestor).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pygit2
from pygit2.enums import SortMode

from progreg.gitstore import GitRepository, parse_trailers
from progreg.ids import PROGRAMS_DIR, program_id_of_path


@dataclass(frozen=True)
class LogEntry:
    """One commit of the log and the programs it touched."""

    commit: str
    time: datetime
    trailers: dict[str, str]
    changed: tuple[str, ...]

    @property
    def action(self) -> str | None:
        """The ``Progreg-Action`` trailer (save, delete, restore...), if any."""
        return self.trailers.get("Progreg-Action")


class LogIndex:
    """An incrementally maintained index of a ref's log."""

    def __init__(self, git: GitRepository, ref: str) -> None:
        self._git = git
        self._ref = ref
        self._lock = threading.Lock()
        self._head: pygit2.Oid | None = None
        self._entries: list[LogEntry] = []
        self._last_change: dict[str, str] = {}

    def entries(self) -> list[LogEntry]:
        """Every commit of the ref, oldest first (topological order)."""
        with self._lock:
            self._refresh()
            return list(self._entries)

    def last_change(self, program_id: str) -> str | None:
        """The newest commit that changed ``program_id``'s file, or ``None``."""
        with self._lock:
            self._refresh()
            return self._last_change.get(program_id)

    def _refresh(self) -> None:
        tip = self._git.tip(self._ref)
        if tip is None:
            self._reset(None)
            return
        if tip.id == self._head:
            return
        repo = self._git.repo
        if self._head is not None and not repo.descendant_of(tip.id, self._head):
            self._reset(None)
        walker = repo.walk(tip.id, SortMode.TOPOLOGICAL | SortMode.REVERSE)
        if self._head is not None:
            walker.hide(self._head)
        for commit in walker:
            entry = _entry(repo, commit)
            self._entries.append(entry)
            for program_id in entry.changed:
                self._last_change[program_id] = entry.commit
        self._head = tip.id

    def _reset(self, head: pygit2.Oid | None) -> None:
        self._head = head
        self._entries = []
        self._last_change = {}


def _entry(repo: pygit2.Repository, commit: pygit2.Commit) -> LogEntry:
    parent_tree = commit.parents[0].tree if commit.parents else None
    changed = _changed_programs(repo, parent_tree, commit.tree)
    moment = datetime.fromtimestamp(commit.commit_time, UTC)
    return LogEntry(str(commit.id), moment, parse_trailers(commit.message), changed)


def _changed_programs(
    repo: pygit2.Repository, old: pygit2.Tree | None, new: pygit2.Tree
) -> tuple[str, ...]:
    old_programs = _subtree(repo, old, PROGRAMS_DIR)
    new_programs = _subtree(repo, new, PROGRAMS_DIR)
    if old_programs is None and new_programs is None:
        return ()
    if old_programs is not None and new_programs is not None:
        if old_programs.id == new_programs.id:
            return ()
        diff = old_programs.diff_to_tree(new_programs)
    elif new_programs is not None:
        diff = new_programs.diff_to_tree(swap=True)
    else:
        assert old_programs is not None
        diff = old_programs.diff_to_tree()
    ids = []
    for delta in diff.deltas:
        for path in {delta.old_file.path, delta.new_file.path}:
            program_id = program_id_of_path(f"{PROGRAMS_DIR}/{path}")
            if program_id is not None and program_id not in ids:
                ids.append(program_id)
    return tuple(ids)


def _subtree(repo: pygit2.Repository, tree: pygit2.Tree | None, name: str) -> pygit2.Tree | None:
    if tree is None or name not in tree:
        return None
    obj = repo[tree[name].id]
    return obj if isinstance(obj, pygit2.Tree) else None
