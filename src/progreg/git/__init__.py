"""Git plumbing for progreg.

This package knows about bare repositories, objects, trees, refs, commit
messages and locks. It knows nothing about programs: the registry layer above
it decides what the paths, bytes and messages mean.
"""

from progreg.git.identity import Identity, resolve_identity
from progreg.git.reflog import RefLogEntry
from progreg.git.repository import CommitPlan, GitRepository, TagPlan, Tip
from progreg.git.trailers import format_message, parse_trailers

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
