"""Merging another registry's history into ``main``: imports and pulls.

A merge works file by file on program files, never inside one: a program
changed on one side only takes that side's version; changed on both sides
to the same bytes it is identical; changed on both sides differently it is a
conflict, and nothing is merged (a JSON document is never line-merged): the
error names each conflicting program and the fields that differ. A caller
may settle every conflict one way (``resolve="ours"`` keeps this registry's
version, ``"theirs"`` takes the other side's); both versions stay in
history either way, as the merge commit's two parents. With
no common history (an import from an unrelated registry), every program of
the other side is "changed" on that side, so programs already present with
identical content are skipped and differing ones are conflicts.

Every program file the other side brings is checked (canonical JSON, a valid
document whose id matches its path, within the size limit) before anything
is written. The merge is recorded as one commit with two parents, so the
other side's commits (their authors, times and trailers) stay in history;
when ``main`` is an ancestor of the other side (or there is no ``main`` yet)
it is fast-forwarded instead, after the same checks, and gains no commit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import pygit2
from pydantic import BaseModel, ConfigDict, Field
from pygit2.enums import DeltaStatus

from progreg import events
from progreg.core import canonical
from progreg.core.docmerge import ABSENT, differences
from progreg.core.document import decode_document, document_from
from progreg.core.ids import program_id_of_path, program_path
from progreg.core.labels import decode_labels, encode_labels, label_path, signature_of_path
from progreg.core.layout import MAIN
from progreg.errors import ConflictError, CorruptProgramError
from progreg.git import CommitPlan, RefLogEntry, Tip, format_message
from progreg.git.objects.trees import Edit, blob_at
from progreg.registry.labelfiles import label_files, read_labels
from progreg.registry.store import Registry
from progreg.registry.validation import kind_of_path, tree_files

#: How a merge settles programs changed differently on both sides: this registry's
#: version, or the other side's.
Resolution = Literal["ours", "theirs"]
#: Fields shown per conflicting program.
_SHOWN_FIELDS = 6


#: How a conflicting label is named among :attr:`MergePlan.conflicts` (programs by id).
_LABEL_CONFLICT = "label "


@dataclass
class MergePlan:
    """What merging ``theirs`` into ``ours`` would change."""

    edits: dict[str, Edit] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    #: What differs in each conflicting program (``path: ours / theirs``).
    conflict_fields: dict[str, list[str]] = field(default_factory=dict)
    #: Conflicting programs settled by the caller's resolution.
    resolved: list[str] = field(default_factory=list)
    up_to_date: bool = False

    @property
    def changes(self) -> bool:
        """True when the merge would change ``main``'s tree."""
        return bool(self.edits)


def _changes(
    repo: pygit2.Repository, base: pygit2.Tree | None, side: pygit2.Tree
) -> dict[str, pygit2.Oid | None]:
    """Paths that ``side`` changed since ``base``: new blob id, or None if removed."""
    if base is None:
        return {path: oid for path, _, oid in tree_files(repo, side)}
    changes: dict[str, pygit2.Oid | None] = {}
    for delta in base.diff_to_tree(side).deltas:
        if delta.status == DeltaStatus.DELETED:
            changes[delta.old_file.path] = None
        else:
            changes[delta.new_file.path] = delta.new_file.id
    return changes


def _shown(value: Any) -> str:
    text = "removed" if value is ABSENT else orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def conflict_fields(
    repo: pygit2.Repository, mine: pygit2.Oid | None, theirs: pygit2.Oid | None
) -> list[str]:
    """What differs between two versions of one file, for people: each field, both values."""
    if mine is None or theirs is None:
        return ["the program is deleted on " + ("our side" if mine is None else "their side")]
    try:
        ours_value = orjson.loads(repo.odb.read(mine)[1])
        theirs_value = orjson.loads(repo.odb.read(theirs)[1])
    except (KeyError, orjson.JSONDecodeError):
        return ["the two files differ (one is not JSON)"]
    found = [
        f"{path or '(document)'}: {_shown(ours)} (ours) / {_shown(theirs)} (theirs)"
        for path, ours, theirs in itertools.islice(
            differences(ours_value, theirs_value, into_lists=False), _SHOWN_FIELDS + 1
        )
    ]
    if len(found) > _SHOWN_FIELDS:
        found[_SHOWN_FIELDS:] = ["..."]
    return found


def plan_merge(
    repo: pygit2.Repository,
    ours: pygit2.Commit | None,
    theirs: pygit2.Commit,
    max_program_bytes: int,
    resolve: Resolution | None = None,
) -> MergePlan:
    """Plan merging ``theirs`` into ``ours`` (``None`` for an empty registry).

    A program both sides changed differently is a conflict; with ``resolve``
    it is settled instead: ``"ours"`` keeps our version, ``"theirs"`` takes
    theirs (checked as every incoming program is).
    """
    plan = MergePlan()
    base_id = repo.merge_base(ours.id, theirs.id) if ours is not None else None
    if base_id is not None and base_id == theirs.id:
        plan.up_to_date = True
        return plan
    base = repo[base_id].peel(pygit2.Tree) if base_id is not None else None
    their_changes = _changes(repo, base, theirs.tree)
    our_changes = _changes(repo, base, ours.tree) if ours is not None else {}
    our_files = (
        {path: oid for path, _, oid in tree_files(repo, ours.tree)}
        if ours is not None and base is None
        else {}
    )
    for path, blob_id in sorted(their_changes.items()):
        program_id = program_id_of_path(path)
        kind = kind_of_path(path)
        if kind == "label":
            mine = our_changes[path] if path in our_changes else our_files.get(path, ...)
            _merge_label_file(repo, plan, path, base, mine, blob_id, resolve)
            continue
        if program_id is None and kind not in ("harmless", "marker"):
            raise CorruptProgramError(
                f"the other side has a file at {path}, which a registry's main may not hold"
                " (programs/ab/cd/<16 hex>.json, labels/<signature>.json, progreg.json and"
                " files such as README.md)"
            )
        mine = our_changes[path] if path in our_changes else our_files.get(path, ...)
        if mine is not ...:
            if mine == blob_id:
                if program_id is not None:
                    plan.identical.append(program_id)
                continue
            if resolve is None:
                plan.conflicts.append(program_id or path)
                plan.conflict_fields[program_id or path] = conflict_fields(repo, mine, blob_id)
                continue
            plan.resolved.append(program_id or path)
            if resolve == "ours":
                continue
        if program_id is None:  # a README or the like: carried over as it is
            plan.edits[path] = blob_id
            continue
        if blob_id is None:
            plan.removed.append(program_id)
        else:
            _check_program(repo, blob_id, path, program_id, max_program_bytes)
            existed = ours is not None and path in ours.tree
            (plan.updated if existed else plan.added).append(program_id)
        plan.edits[path] = blob_id
    if ours is not None and not plan.conflicts:
        _check_merged_labels(repo, plan, ours.tree, theirs.tree)
    return plan


def _labels_of(repo: pygit2.Repository, blob_id: pygit2.Oid | None, where: str) -> dict[str, str]:
    """The labels of a label file's blob (``{}`` for none)."""
    if blob_id is None:
        return {}
    try:
        kind, data = repo.odb.read(blob_id)
    except KeyError:
        kind, data = None, b""
    if kind != pygit2.enums.ObjectType.BLOB:
        raise CorruptProgramError(f"{where} is not a file")
    return decode_labels(data, where)


def _merge_label_file(
    repo: pygit2.Repository,
    plan: MergePlan,
    path: str,
    base: pygit2.Tree | None,
    mine: object,
    theirs: pygit2.Oid | None,
    resolve: Resolution | None,
) -> None:
    """Merge one label file label by label: a label moved on one side takes that move;
    the same label moved on both sides to different programs is a conflict (or settled by
    ``resolve``)."""
    their_labels = _labels_of(repo, theirs, f"{path} on the other side")
    if mine is ...:  # only they changed it
        plan.edits[path] = theirs
        return
    if mine == theirs:
        return
    assert mine is None or isinstance(mine, pygit2.Oid)
    base_entry = None if base is None else blob_at(base, path)
    base_labels = _labels_of(repo, None if base_entry is None else base_entry.id, path)
    our_labels = _labels_of(repo, mine, path)
    signature = signature_of_path(path)
    merged: dict[str, str] = {}
    for label in sorted(set(base_labels) | set(our_labels) | set(their_labels)):
        was, ours, new = base_labels.get(label), our_labels.get(label), their_labels.get(label)
        if new in (ours, was):
            chosen = ours
        elif ours == was:
            chosen = new
        elif resolve is None:
            name = f"{_LABEL_CONFLICT}{label} of {signature}"
            plan.conflicts.append(name)
            plan.conflict_fields[name] = [
                f"moved to {ours or 'removed'} (ours) / {new or 'removed'} (theirs)"
            ]
            continue
        else:
            plan.resolved.append(f"{signature}@{label}")
            chosen = ours if resolve == "ours" else new
        if chosen is not None:
            merged[label] = chosen
    if merged != our_labels:
        plan.edits[path] = encode_labels(merged, path) if merged else None


def _check_merged_labels(
    repo: pygit2.Repository, plan: MergePlan, ours: pygit2.Tree, theirs: pygit2.Tree
) -> None:
    """Refuse a merge whose labels would name a program the merged ``main`` lacks."""
    removed = {program_path(program_id) for program_id in plan.removed}
    found: list[str] = []
    for signature, _ in label_files(repo, ours):
        path = label_path(signature)
        edit = plan.edits.get(path, ...)
        if edit is not ...:
            continue
        for label, program_id in read_labels(ours, signature).items():
            if program_path(program_id) in removed:
                found.append(f"{signature}@{label} -> {program_id} (removed on their side)")
    for path, edit in plan.edits.items():
        edited = signature_of_path(path)
        if edited is None or edit is None:
            continue
        labels = (
            decode_labels(edit, path) if isinstance(edit, bytes) else read_labels(theirs, signature)
        )
        for label, program_id in labels.items():
            where = program_path(program_id)
            kept = where in plan.edits and plan.edits[where] is not None
            if not kept and (where in removed or where not in ours):
                found.append(f"{edited}@{label} -> {program_id} (not on the merged main)")
    if found:
        raise ConflictError(
            f"the merge would leave label(s) naming programs main would not hold:"
            f" {'; '.join(found[:10])}. Nothing was merged: move or remove the label on one"
            " side (progreg label set / progreg label remove), or restore the program, and"
            " merge again"
        )


def _check_program(
    repo: pygit2.Repository, blob_id: pygit2.Oid, path: str, program_id: str, limit: int
) -> None:
    try:  # the raw object: a Blob would be parsed and cached for nothing
        kind, data = repo.odb.read(blob_id)
    except KeyError:  # a submodule's commit is not in this repository
        kind, data = None, b""
    if kind != pygit2.enums.ObjectType.BLOB:
        raise CorruptProgramError(f"{path} on the other side is not a file")
    if len(data) > limit:
        raise CorruptProgramError(
            f"{path} on the other side is {len(data)} bytes, over the limit of {limit}"
        )
    where = f"{path} on the other side"
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = None  # decode_document below says what is wrong with it
    if value is not None and canonical.is_canonical_value(value, data):
        # Canonical bytes: what the strict decode would return, parsed once.
        document_from(value, where, program_id)
        return
    decode_document(data, where, program_id)
    if not canonical.is_canonical(data):
        raise CorruptProgramError(
            f"{path} on the other side is not canonical JSON (sorted keys, 2-space indent,"
            " trailing newline)"
        )


def raise_conflicts(plan: MergePlan, source: str, theirs: str, settle: str = "") -> None:
    """Raise :class:`ConflictError` naming every conflicting program, if there are any.

    The message lists what differs in each (up to ten programs) and ends with
    ``settle``, the way to settle them that the caller offers.
    """
    if plan.conflicts:
        listed = "; ".join(
            f"{name} ({', '.join(plan.conflict_fields.get(name, []))})"
            for name in plan.conflicts[:10]
        ) + (" ..." if len(plan.conflicts) > 10 else "")
        how = settle or (
            "To settle it, merge the two histories in a Git checkout, keep the version you"
            " want of each file, and push or import that result (see docs/sharing.md)."
        )
        labels = sum(1 for name in plan.conflicts if name.startswith(_LABEL_CONFLICT))
        programs = len(plan.conflicts) - labels
        what = " and ".join(
            part
            for count, part in (
                (programs, f"{programs} program(s)"),
                (labels, f"{labels} label(s)"),
            )
            if count
        )
        raise ConflictError(
            f"{what} differ between this registry and {source}"
            f" (commit {theirs[:12]}): {listed}. Nothing was merged; both versions stay"
            f" reachable. {how}"
        )


def merge_message(
    plan: MergePlan, action: str, source: str, theirs: str, resolution: Resolution | None = None
) -> str:
    """The message of the merge commit recording an import or a pull."""
    verb = "Import" if action == "import" else "Merge"
    subject = (
        f"{verb} {source}: {len(plan.added)} added, {len(plan.updated)} updated,"
        f" {len(plan.removed)} removed"
    )
    body_lines = [
        f"{kind}: {', '.join(ids)}"
        for kind, ids in (
            ("Added", plan.added),
            ("Updated", plan.updated),
            ("Removed", plan.removed),
            (f"Conflicts settled ({resolution})", plan.resolved),
        )
        if ids
    ]
    return format_message(
        subject,
        [
            ("Source", source),
            ("Source-Commit", theirs),
            ("Added-Count", str(len(plan.added))),
            ("Updated-Count", str(len(plan.updated))),
            ("Removed-Count", str(len(plan.removed))),
            ("Identical-Count", str(len(plan.identical))),
            *([("Resolved", f"{resolution} {len(plan.resolved)}")] if plan.resolved else []),
            ("Progreg-Action", action),
        ],
        "\n".join(body_lines),
    )


class MergeResult(BaseModel):
    """What an import or a pull did to ``main``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    commit: str | None = Field(description="the new tip of main, or None when unchanged")
    fast_forward: bool = Field(description="main moved to the other side's commit as it was")
    added: list[str]
    updated: list[str]
    removed: list[str]
    identical: list[str] = Field(description="programs both sides already had, byte for byte")
    resolved: list[str] = Field(
        default_factory=list,
        description="programs both sides changed differently, settled by the resolution asked",
    )


def merge_into_main(
    storage: Registry,
    theirs: str,
    *,
    action: str,
    source: str,
    fast_forward: bool = False,
    planned: tuple[str | None, MergePlan] | None = None,
    emit: bool = True,
    join: bool = True,
    resolve: Resolution | None = None,
    settle: str = "",
) -> MergeResult:
    """Merge commit ``theirs`` (already in the object store) into ``main``.

    Raises :class:`~progreg.ConflictError` (nothing written) when a program
    differs on both sides, its message naming the fields and ending with
    ``settle``; with ``resolve`` such programs are settled instead (see
    :func:`plan_merge`) and listed in the result's ``resolved``.

    With ``fast_forward``, a ``main`` that is an ancestor of ``theirs`` (or no
    ``main`` yet) simply moves to it, with no commit of its own, as ``git
    merge`` does; otherwise a merge commit whose trailers name ``action`` and
    ``source`` records the change.

    With ``join`` (the default), ``theirs`` always becomes part of ``main``'s
    history, even when it changes no file here, so that ``main`` can later be
    pushed where ``theirs`` came from; ``join=False`` (imports) writes nothing
    then. ``planned`` is a plan the caller already made (and checked) against the
    tip it names; it is reused when ``main`` has not moved since, which saves
    reading every incoming program twice. ``emit=False`` leaves the event to
    the caller.
    """
    git = storage.git
    repo = git.repo
    their_commit = repo[theirs]
    if not isinstance(their_commit, pygit2.Commit):
        raise CorruptProgramError(f"{source}: {theirs} is not a commit")
    author, committer = storage.identity()

    def plan(tip: Tip | None) -> tuple[CommitPlan | None, tuple[MergePlan, bool]]:
        """The merge commit to make on ``tip``, and (the merge, whether main only falls behind)."""
        tip_id = str(tip.id) if tip is not None else None
        if planned is not None and planned[0] == tip_id:
            merge = planned[1]
        else:
            ours = tip.commit if tip is not None else None
            merge = plan_merge(repo, ours, their_commit, storage.max_program_bytes, resolve)
        raise_conflicts(merge, source, theirs, settle)
        if merge.up_to_date:
            return None, (merge, False)
        if fast_forward and (tip is None or repo.descendant_of(their_commit.id, tip.id)):
            return None, (merge, True)  # main only falls behind: it moves to theirs, as git does
        if not merge.changes and not join:
            return None, (merge, False)
        message = merge_message(merge, action, source, theirs, resolve)
        edits = storage.with_marker(tip, merge.edits)
        commit_plan = CommitPlan(edits, message, author, committer, extra_parents=[their_commit.id])
        return commit_plan, (merge, False)

    try:
        while True:
            commit, (merge, moves) = git.update_ref_returning(MAIN, plan)
            if not moves:
                break
            entry = RefLogEntry(committer, f"merge {source}: Fast-forward")
            commit = git.fast_forward(MAIN, their_commit.id, entry)
            if commit is not None:
                break
            # main moved between the plan and the fast-forward: plan again
    except (pygit2.GitError, OSError) as exc:
        raise storage.write_error(exc) from exc
    result = MergeResult(
        commit=str(commit) if commit is not None else None,
        fast_forward=moves,
        added=merge.added,
        updated=merge.updated,
        removed=merge.removed,
        identical=merge.identical,
        resolved=merge.resolved,
    )
    if not emit:
        return result
    events.emit(
        f"progreg.{action}",
        source=source,
        commit=result.commit,
        added=len(result.added),
        updated=len(result.updated),
        removed=len(result.removed),
        identical=len(result.identical),
    )
    return result
