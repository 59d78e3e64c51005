"""Git plumbing for progreg.

This package knows about bare repositories, objects, trees, refs, commit
messages and locks. It knows nothing about programs: the registry layer above
it decides what the paths, bytes and messages mean.
"""

from progreg.gitstore.identity import Identity, resolve_identity
from progreg.gitstore.reflog import RefLogEntry
from progreg.gitstore.repository import CommitPlan, GitRepository, TagPlan, Tip
from progreg.gitstore.trailers import format_message, parse_trailers

__all__ = [
    "CommitPlan",
    "GitRepository",
    "Identity",
    "RefLogEntry",
    "TagPlan",
    "Tip",
    "format_message",
    "parse_trailers",
    "resolve_identity",
]
