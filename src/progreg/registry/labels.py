"""Deployment labels: moving, listing and auditing ``labels/<signature>.json`` on ``main``.

Each move is one commit on ``main`` that rewrites one label file, with a
subject and trailers saying what moved (see :func:`~progreg.registry.messages.label_message`);
``git log -p -- labels/<signature>.json`` is the audit trail, and anything that
carries ``main`` (push, pull, bundles, review branches) carries the labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pygit2

from progreg import events
from progreg.core.document import decode_document, now
from progreg.core.ids import check_program_id
from progreg.core.ids import program_path as path_of
from progreg.core.labels import (
    LabelMove,
    check_label,
    check_reason,
    check_signature,
    decode_labels,
    encode_labels,
    label_path,
)
from progreg.core.layout import MAIN
from progreg.errors import InvalidInputError, LabelNotFoundError, ProgramNotFoundError
from progreg.git import CommitPlan, Identity, Tip, parse_trailers
from progreg.git.objects.trees import blob_at
from progreg.registry.labelfiles import all_labels, read_labels, resolve_label
from progreg.registry.messages import (
    LABEL,
    LABEL_REASON,
    LABEL_SIGNATURE,
    label_message,
)
from progreg.registry.store import Registry


def set_label(
    registry: Registry, signature: str, label: str, program_id: str, *, reason: str | None = None
) -> LabelMove:
    """The operation behind :meth:`progreg.ProgramStorage.set_label`."""
    signature, label = check_signature(signature), check_label(label)
    check_program_id(program_id)
    return _move(registry, signature, label, program_id, check_reason(reason))


def remove_label(
    registry: Registry, signature: str, label: str, *, reason: str | None = None
) -> LabelMove:
    """The operation behind :meth:`progreg.ProgramStorage.remove_label`."""
    signature, label = check_signature(signature), check_label(label)
    return _move(registry, signature, label, None, check_reason(reason))


def _check_target(registry: Registry, tip: Tip | None, signature: str, program_id: str) -> None:
    """Raise unless ``program_id`` is on ``main`` at ``tip`` and solves ``signature``."""
    path = path_of(program_id)
    blob = None if tip is None else blob_at(tip.tree, path)
    if blob is None:
        raise ProgramNotFoundError(
            f"program {program_id} is not on main of {registry.path}: a label names a live"
            " program (save or restore it first)"
        )
    doc = decode_document(blob.data, path, program_id)
    if doc.signature_class != signature:
        raise InvalidInputError(
            f"program {program_id} solves signature {doc.signature_class or '(none)'}, not"
            f" {signature}: a label of {signature} must name one of {signature}'s programs"
            f" (or set the label of {doc.signature_class or 'its signature'} instead)"
        )


def _move(
    registry: Registry,
    signature: str,
    label: str,
    program_id: str | None,
    reason: str | None,
) -> LabelMove:
    git = registry.git
    author, committer = registry.identity()  # before any write: a bad identity changes nothing
    path = label_path(signature)
    moment = now()  # the commit's author date, and the move's moved_at

    def plan(tip: Tip | None) -> tuple[CommitPlan | None, tuple[str | None, str | None]]:
        current = read_labels(tip.tree, signature) if tip is not None else {}
        old = current.get(label)
        if program_id is None and old is None:
            raise LabelNotFoundError(
                f"label {label!r} of {signature} is not set on main: nothing to remove"
            )
        if program_id is not None:
            _check_target(registry, tip, signature, program_id)
        if old == program_id:
            return None, (old, str(tip.id) if tip is not None else None)
        labels = dict(current)
        if program_id is None:
            del labels[label]
        else:
            labels[label] = program_id
        content = encode_labels(labels, path) if labels else None
        message = label_message(signature, label, old, program_id, reason)
        edits = registry.with_marker(tip, {path: content})
        return CommitPlan(edits, message, author, committer, moment), (old, None)

    commit, (old, tip_id) = registry.write(lambda: git.update_ref_returning(MAIN, plan))
    if commit is not None:
        registry.maintain()
        events.emit(
            "progreg.label.move",
            signature=signature,
            label=label,
            from_program=old,
            to_program=program_id,
            commit=str(commit),
        )
    return LabelMove(
        signature=signature,
        label=label,
        from_program=old,
        to_program=program_id,
        reason=reason,
        author=str(author),
        moved_at=moment,
        commit=str(commit) if commit is not None else tip_id or "",
        unchanged=commit is None,
    )


def labels(registry: Registry, signature: str | None = None) -> dict[str, dict[str, str]]:
    """The operation behind :meth:`progreg.ProgramStorage.labels`."""
    git = registry.git
    if signature is not None:
        signature = check_signature(signature)

    def read() -> dict[str, dict[str, str]]:
        tip = git.tip(MAIN)
        if tip is None:
            return {}
        if signature is not None:
            found = read_labels(tip.tree, signature)
            return {signature: dict(sorted(found.items()))} if found else {}
        return all_labels(git.repo, tip.tree)

    return registry.reread("the labels of main", read)


def resolve(registry: Registry, signature: str, label: str) -> str | None:
    """The operation behind :meth:`progreg.ProgramStorage.resolve_label`."""
    signature, label = check_signature(signature), check_label(label)
    return registry.reread(
        f"the labels of {signature}", lambda: resolve_label(registry.git, signature, label)
    )


def label_history(registry: Registry, signature: str, label: str) -> list[LabelMove]:
    """The operation behind :meth:`progreg.ProgramStorage.label_history`."""
    signature, label = check_signature(signature), check_label(label)
    return registry.reread(
        f"the history of label {label} of {signature}",
        lambda: list(_moves(registry.git.repo, registry.git.tip(MAIN), signature, label)),
    )


def _moves(
    repo: pygit2.Repository, tip: pygit2.Commit | None, signature: str, label: str
) -> Iterator[LabelMove]:
    """The moves of one label on ``main``, newest first: each change of the label's value
    along the first-parent chain from ``tip``, credited to the commit that made it.

    A move that came in by a merge (a pull, an import) is credited to the commit on
    the merged side that set that value, with its author, time and reason; a merge
    whose value is on none of its parents (it settled a conflict by hand) is a move
    of its own. ``from_program`` is always what ``main`` held before.
    """
    if tip is None:
        return
    path = label_path(signature)
    by_blob: dict[pygit2.Oid | None, str | None] = {None: None}

    def value(commit: pygit2.Commit) -> str | None:
        blob = blob_at(commit.tree, path)
        key = None if blob is None else blob.id
        if key not in by_blob:
            assert blob is not None
            by_blob[key] = decode_labels(blob.data, path).get(label)
        return by_blob[key]

    def setter(commit: pygit2.Commit, new: str | None) -> pygit2.Commit:
        """The commit, back along first parents, that gave the label the value ``new``."""
        while commit.parents and value(commit.parents[0]) == new:
            commit = commit.parents[0]
        return commit

    commit: pygit2.Commit | None = tip
    while commit is not None:
        parents = commit.parents
        new = value(commit)
        old = value(parents[0]) if parents else None
        if new != old:
            source = commit
            side = next((p for p in parents[1:] if value(p) == new), None)
            if side is not None:
                source = setter(side, new)
            yield _recorded_move(source, signature, label, old, new)
        commit = parents[0] if parents else None


def _recorded_move(
    commit: pygit2.Commit, signature: str, label: str, old: str | None, new: str | None
) -> LabelMove:
    """The move ``old`` -> ``new`` of a label as ``commit`` recorded it."""
    trailers = parse_trailers(commit.message)
    ours = trailers.get(LABEL) == label and trailers.get(LABEL_SIGNATURE) == signature
    author = commit.author
    return LabelMove(
        signature=signature,
        label=label,
        from_program=old,
        to_program=new,
        reason=trailers.get(LABEL_REASON) if ours else None,
        author=str(Identity(author.name, author.email)),
        moved_at=datetime.fromtimestamp(author.time, UTC),
        commit=str(commit.id),
    )
