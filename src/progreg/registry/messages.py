"""Commit messages of registry changes: a readable subject and machine-readable trailers.

A save reads in ``git log --oneline`` as::

    Save ClassifyText 1a2b3c4d5e6f7a8b: MIPROv2, pass_rate=0.8734

and its message ends with trailers (``git log --format='%(trailers)'``)::

    Program-Id: 1a2b3c4d5e6f7a8b
    Signature: ClassifyText
    Optimizer: MIPROv2
    Score: 0.8734
    Score-Name: pass_rate
    Saved-At: 2026-11-24T10:15:02.123456+00:00
    Progreg-Action: save

A missing value is written as ``none``. A program derived from another
(its document's ``derived_from``) has two more trailers, before the action::

    Derived-From: 0f1e2d3c4b5a6978
    Derived-From-Commit: 3f5c0a1e9b7d4c2a8e6f0b1d3c5a7e9f2b4d6c8a

A batch save (:meth:`~progreg.ProgramStorage.save_programs`) is one commit
for many programs; it names no single program, so its trailers are only::

    Saved-Count: 250
    Progreg-Action: save-batch

and the log index learns which programs it wrote from its tree diff.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from progreg.core.document import ProgramDocument, format_time
from progreg.git import format_message, parse_trailers

NONE = "none"
ACTION = "Progreg-Action"
PROGRAM_ID = "Program-Id"
SAVED_AT = "Saved-At"
DERIVED_FROM = "Derived-From"
DERIVED_FROM_COMMIT = "Derived-From-Commit"
SAVED_COUNT = "Saved-Count"
SAVE_BATCH = "save-batch"

#: A batch commit's body lists at most this many program ids.
MAX_LISTED_IDS = 100


def _value(value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, float):
        return repr(value)
    return str(value)


def save_message(
    doc: ProgramDocument,
    action: str = "save",
    body: str = "",
    extra: list[tuple[str, str]] | None = None,
    verb: str | None = None,
) -> str:
    """The message of a commit that writes ``doc`` (a save, or ``action`` such as restore)."""
    verb = verb or action.capitalize()
    origin = doc.derived_from
    lineage = (
        []
        if origin is None
        else [
            (DERIVED_FROM, origin.program_id),
            (DERIVED_FROM_COMMIT, origin.commit),
        ]
    )
    score = (
        f"{doc.score_name or 'score'}={_value(doc.best_score)}"
        if doc.best_score is not None
        else "no score"
    )
    subject = (
        f"{verb} {doc.signature_class or 'program'} {doc.program_id}:"
        f" {doc.optimizer or 'no optimizer'}, {score}"
    )
    return format_message(
        subject,
        [
            (PROGRAM_ID, doc.program_id),
            ("Signature", _value(doc.signature_class)),
            ("Optimizer", _value(doc.optimizer)),
            ("Score", _value(doc.best_score)),
            ("Score-Name", _value(doc.score_name)),
            (SAVED_AT, format_time(doc.saved_at)),
            *lineage,
            *(extra or []),
            (ACTION, action),
        ],
        body,
    )


def batch_message(docs: Sequence[ProgramDocument]) -> str:
    """The message of a commit that writes all of ``docs`` (a batch save)."""
    kinds = Counter(doc.signature_class or "program" for doc in docs)
    subject = f"Save {len(docs)} program{'s' if len(docs) != 1 else ''}: " + ", ".join(
        f"{name} x{count}" for name, count in sorted(kinds.items())
    )
    listed = [f"- {doc.program_id}" for doc in docs[:MAX_LISTED_IDS]]
    if len(docs) > MAX_LISTED_IDS:
        listed.append(f"... and {len(docs) - MAX_LISTED_IDS} more")
    body = "Saved programs:\n" + "\n".join(listed)
    return format_message(subject, [(SAVED_COUNT, str(len(docs))), (ACTION, SAVE_BATCH)], body)


def delete_message(program_id: str, signature: str | None) -> str:
    """The message of a commit that removes a program."""
    return format_message(
        f"Delete {signature or 'program'} {program_id}",
        [(PROGRAM_ID, program_id), ("Signature", _value(signature)), (ACTION, "delete")],
    )


def cleanup_message(removed: list[str], remaining: int, keep: int) -> str:
    """The message of a cleanup commit that removes ``removed`` in one go."""
    body = "Removed programs (restore any with restore_program):\n" + "\n".join(
        f"- {program_id}" for program_id in removed
    )
    return format_message(
        f"Cleanup: remove {len(removed)} programs, keep {remaining}",
        [
            ("Removed-Count", str(len(removed))),
            ("Max-Stored-Programs", str(keep)),
            (ACTION, "cleanup"),
        ],
        body,
    )


def trailers_of(message: str) -> dict[str, str]:
    """The trailers of a commit message progreg wrote (the last paragraph), by key."""
    return parse_trailers(message)


#: The trailers of a label move (see :func:`label_message`).
LABEL = "Label"
LABEL_SIGNATURE = "Label-Signature"
LABEL_FROM = "Label-From"
LABEL_TO = "Label-To"
LABEL_REASON = "Label-Reason"
LABEL_ACTION = "label"


def label_message(
    signature: str, label: str, old: str | None, new: str | None, reason: str | None
) -> str:
    """The message of a commit that moves ``signature``'s ``label`` from ``old`` to ``new``.

    It reads in ``git log --oneline`` as ``Label ClassifyText production: none ->
    1a2b3c4d5e6f7a8b``; who and when are the commit's author and date.
    """
    return format_message(
        f"Label {signature} {label}: {_value(old)} -> {_value(new)}",
        [
            (LABEL, label),
            (LABEL_SIGNATURE, signature),
            (LABEL_FROM, _value(old)),
            (LABEL_TO, _value(new)),
            *([(LABEL_REASON, reason)] if reason else []),
            (ACTION, LABEL_ACTION),
        ],
    )
