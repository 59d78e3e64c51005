"""Lineage from the log: the ancestors and the descendants of a program.

Built from every commit of ``main``'s first-parent log (the log index's
entries), oldest first, so it survives deletes (a deleted ancestor is still
in history), bundles and pulls (their commits, or the merge that brought
them, are in the log). A progreg save names its ancestor in its
``Derived-From`` and ``Derived-From-Commit`` trailers; for any other commit
that writes a program (a batch save, a merge, a commit made with Git) the
document's ``derived_from`` key is read. A program's ancestor is the one its
latest version naming one names. A crafted history may make a cycle: every
walk keeps the programs it visited and never visits one twice.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from datetime import datetime

import pygit2

from progreg.core.document import ProgramDocument, decode_document
from progreg.core.ids import check_program_id, program_path
from progreg.core.lineage import Origin, is_commit_id
from progreg.core.models import Lineage, LineageNode
from progreg.errors import ProgramNotFoundError, ProgregError
from progreg.registry.messages import (
    ACTION,
    DERIVED_FROM,
    DERIVED_FROM_COMMIT,
    NONE,
    PROGRAM_ID,
    SAVED_AT,
)
from progreg.registry.store import Registry


@dataclass(frozen=True)
class _Version:
    """What the log says about one version of a program."""

    saved_at: datetime | None
    score: float | None
    score_name: str | None


@dataclass
class _Graph:
    """Every program the log ever wrote: its latest version, its ancestor, whether it is live."""

    latest: dict[str, str] = field(default_factory=dict)  # program id -> commit
    versions: dict[tuple[str, str], _Version] = field(default_factory=dict)
    parent: dict[str, Origin] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)

    def named_commit(self, program_id: str) -> str | None:
        """The commit a ``derived_from`` names for a program the log never wrote, if any.

        A program pulled or imported from a registry where its ancestor was
        deleted before: the ancestor is known only by what its descendants say.
        """
        return next((o.commit for o in self.parent.values() if o.program_id == program_id), None)

    def children(self) -> dict[str, list[str]]:
        """Each program's derived programs, in the order they were first written."""
        found: dict[str, list[str]] = {}
        for program_id in self.latest:
            origin = self.parent.get(program_id)
            if origin is not None:
                found.setdefault(origin.program_id, []).append(program_id)
        return found


def lineage(registry: Registry, program_id: str) -> Lineage:
    """The lineage of ``program_id``: ancestors nearest first, descendants depth first.

    Raises :class:`~progreg.ProgramNotFoundError` when neither ``main`` nor
    its history ever held the program, and no program names it as its ancestor.
    """
    check_program_id(program_id)
    graph = registry.reread(f"the lineage of program {program_id}", lambda: _graph(registry))
    commit = graph.latest.get(program_id) or graph.named_commit(program_id)
    if commit is None:
        raise ProgramNotFoundError(
            f"program {program_id} is neither on main nor in its history: check the id"
            " (progreg list, progreg log)"
        )
    seen = {program_id}
    chain: list[Origin] = []  # the ancestors, nearest first
    origin = graph.parent.get(program_id)
    while origin is not None and origin.program_id not in seen:
        seen.add(origin.program_id)
        chain.append(origin)
        origin = graph.parent.get(origin.program_id)
    ancestors = [
        _node(
            registry,
            graph,
            origin,
            chain[n + 1].program_id if n + 1 < len(chain) else None,
            -(n + 1),
        )
        for n, origin in enumerate(chain)
    ]
    parent = chain[0].program_id if chain else None
    program = _node(registry, graph, Origin(program_id, commit), parent, 0)
    return Lineage(
        program=program,
        ancestors=ancestors,
        descendants=_descendants(registry, graph, program_id, seen),
    )


def _descendants(registry: Registry, graph: _Graph, root: str, seen: set[str]) -> list[LineageNode]:
    """The programs below ``root``, depth first; one already in ``seen`` is never visited again."""
    children = graph.children()
    found: list[LineageNode] = []
    stack = [(root, 0)]
    while stack:
        program_id, generation = stack.pop()
        kept = [child for child in children.get(program_id, []) if child not in seen]
        seen.update(kept)
        stack.extend((child, generation + 1) for child in reversed(kept))
        if program_id != root:
            parent = graph.parent[program_id].program_id
            where = Origin(program_id, graph.latest[program_id])
            found.append(_node(registry, graph, where, parent, generation))
    return found


def _node(
    registry: Registry,
    graph: _Graph,
    version_of: Origin,
    derived_from: str | None,
    generation: int,
) -> LineageNode:
    """The node of one version of a program."""
    program_id, commit = version_of.program_id, version_of.commit
    version = graph.versions.get((program_id, commit))
    if version is None:
        version = _version_at(registry, program_id, commit)
    return LineageNode(
        program_id=program_id,
        commit=commit,
        saved_at=version.saved_at if version is not None else None,
        score=version.score if version is not None else None,
        score_name=version.score_name if version is not None else None,
        live=program_id in graph.live,
        derived_from=derived_from,
        generation=generation,
    )


def _version_at(registry: Registry, program_id: str, commit: str) -> _Version | None:
    """The version of a program at ``commit`` read from its file (a commit off the log)."""
    doc = _document_at(registry.git.repo, program_id, commit)
    if doc is None:
        return None
    return _Version(doc.saved_at, doc.best_score, doc.score_name)


def _document_at(repo: pygit2.Repository, program_id: str, commit: str) -> ProgramDocument | None:
    """The program's document in ``commit``'s tree; ``None`` when absent or unreadable."""
    with contextlib.suppress(ValueError, KeyError, pygit2.GitError, ProgregError):
        found = repo.get(commit)
        if isinstance(found, pygit2.Commit):
            path = program_path(program_id)
            blob = repo[found.tree[path].id]
            if isinstance(blob, pygit2.Blob):
                return decode_document(blob.data, f"{path} (commit {commit[:12]})", program_id)
    return None


def _graph(registry: Registry) -> _Graph:
    graph = _Graph()
    repo = registry.git.repo
    for entry in registry.indexed_commits():
        trailers = entry.trailers
        for program_id, blob in zip(entry.written, entry.blobs, strict=True):
            graph.latest[program_id] = entry.commit
            graph.live.add(program_id)
            if trailers.get(PROGRAM_ID) == program_id and trailers.get(ACTION) in (
                "save",
                "restore",
            ):
                version, origin = _from_trailers(trailers)
            else:
                version, origin = _from_blob(repo, program_id, blob)
            graph.versions[(program_id, entry.commit)] = version
            if origin is not None and origin.program_id != program_id:
                graph.parent[program_id] = origin
        graph.live.difference_update(entry.removed)
    return graph


def _from_trailers(trailers: dict[str, str]) -> tuple[_Version, Origin | None]:
    """A save's version and ancestor, as its trailers say."""
    saved_at = None
    with contextlib.suppress(KeyError, ValueError):
        saved_at = datetime.fromisoformat(trailers[SAVED_AT])
    score_name = trailers.get("Score-Name", NONE)
    version = _Version(
        saved_at,
        _score(trailers.get("Score", NONE)),
        None if score_name == NONE else score_name,
    )
    ancestor, commit = trailers.get(DERIVED_FROM), trailers.get(DERIVED_FROM_COMMIT)
    origin = None
    if ancestor is not None and commit is not None and is_commit_id(commit):
        with contextlib.suppress(ProgregError):
            origin = Origin(check_program_id(ancestor), commit)
    return version, origin


def _from_blob(
    repo: pygit2.Repository, program_id: str, blob_id: str
) -> tuple[_Version, Origin | None]:
    """A version and its ancestor from the program's file (commits without a save's trailers)."""
    with contextlib.suppress(ValueError, KeyError, pygit2.GitError, ProgregError):
        blob = repo[pygit2.Oid(hex=blob_id)]
        if isinstance(blob, pygit2.Blob):
            doc = decode_document(blob.data, program_path(program_id), program_id)
            return _Version(doc.saved_at, doc.best_score, doc.score_name), doc.derived_from
    return _Version(None, None, None), None


def _score(text: str) -> float | None:
    """A ``Score`` trailer's value as a finite number, else ``None``."""
    try:
        score = float(text)
    except ValueError:
        return None
    return score if math.isfinite(score) else None
