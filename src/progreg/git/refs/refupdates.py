"""Ref updates of a push: what moved, which moves a shared repository must refuse, and why.

The rules are those of a Git server with ``receive.denyNonFastForwards`` and
``receive.denyDeletes``: a branch only moves forward (its old commit is an
ancestor of the new one), a tag never moves once created, nothing is deleted.
Both the network push and the safe local push apply them, so a refusal reads
the same whichever transport was used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pygit2

from progreg.errors import PushRejectedError

ZERO = "0" * 40
#: How many lines of what the server printed (a hook's reasons) a refusal quotes.
MAX_REMOTE_LINES = 20
#: Hints appended to a server's own refusal messages.
_HINTS = {
    "failed to update ref": "another push moved it first; pull, then push again",
    "failed to lock": "another push moved it first; pull, then push again",
    "non-fast-forward": "pull, then push again",
    "fetch first": "pull, then push again",
}


@dataclass(frozen=True)
class RefUpdate:
    """One ref moved on the remote (``old`` is ``None`` when it was created)."""

    ref: str
    old: str | None
    new: str


@dataclass(frozen=True)
class PushOutcome:
    """What a push did: the refs it moved and those already up to date."""

    updated: list[RefUpdate] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    #: Why the remote-tracking refs could not be moved after the push (a full or
    #: read-only registry), or ``None``: the push itself went through either way.
    tracking_failure: str | None = None


def refusal(repo: pygit2.Repository, ref: str, old: str | None, new: str) -> str | None:
    """Why moving ``ref`` from ``old`` to ``new`` must be refused (judged in ``repo``), or None.

    ``repo`` must hold ``new`` and everything it reaches; ``old`` may be
    missing from it, which means the remote has history this side lacks.
    """
    if old is None or old == new:
        return None
    if ref.startswith("refs/tags/"):
        return "already exists on the remote with another target (a tag never moves)"
    if old not in repo.odb:
        return (
            "fetch first: the remote has commits this registry does not have; pull, then push again"
        )
    try:
        ahead = repo.descendant_of(new, old)
    except (pygit2.GitError, ValueError):
        ahead = False
    if not ahead:
        return "non-fast-forward: the remote has diverged or is ahead; pull, then push again"
    return None


def plan(
    repo: pygit2.Repository, wanted: Mapping[str, str], current: Callable[[str], str | None]
) -> tuple[list[RefUpdate], list[str], dict[str, str]]:
    """Judge moving each ref of ``wanted`` from its ``current`` remote value to its new one.

    Returns the updates to make, the refs already up to date and, for each
    ref that must not move, why (see :func:`refusal`).
    """
    updates: list[RefUpdate] = []
    up_to_date: list[str] = []
    reasons: dict[str, str] = {}
    for ref, new in wanted.items():
        old = current(ref)
        if old == new:
            up_to_date.append(ref)
            continue
        reason = refusal(repo, ref, old, new)
        if reason is not None:
            reasons[ref] = reason
        else:
            updates.append(RefUpdate(ref, old, new))
    return updates, up_to_date, reasons


def hinted(message: str) -> str:
    """A server's refusal ``message`` with what to do about it, when known."""
    for marker, hint in _HINTS.items():
        if marker in message and hint not in message:
            return f"{message}: {hint}"
    return message


def remote_lines(text: str) -> list[str]:
    """The non-empty lines a server printed, at most :data:`MAX_REMOTE_LINES`, each shortened."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
    lines = [line[:300] for line in lines if line]
    return lines[-MAX_REMOTE_LINES:]


def rejected(
    url: str,
    reasons: Mapping[str, str],
    said: Iterable[str] = (),
    accepted: Iterable[RefUpdate] = (),
) -> PushRejectedError:
    """A :class:`PushRejectedError` for a push to ``url`` (already redacted), on one line."""
    refused = "; ".join(f"{ref} ({reason})" for ref, reason in sorted(reasons.items()))
    message = f"push to {url} was refused: {refused}."
    said = list(said)
    if said:
        message += " The remote said: " + " / ".join(said) + "."
    moved = [update.ref for update in accepted]
    if moved:
        message += f" {len(moved)} other ref(s) were updated: {', '.join(moved[:10])}"
        message += " ..." if len(moved) > 10 else "."
    else:
        message += " Nothing was updated on the remote."
    return PushRejectedError(message, dict(reasons))
