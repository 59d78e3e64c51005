"""Git plumbing for progreg.

This package knows about bare repositories, objects, trees, refs, commit
messages and locks. It knows nothing about programs: the registry layer above
it decides what the paths, bytes and messages mean.
"""

from progreg.git.objects.identity import Identity, resolve_identity
from progreg.git.objects.trailers import format_message, parse_trailers
from progreg.git.refs.reflog import RefLogEntry
from progreg.git.repository import CommitPlan, GitRepository, TagPlan, Tip

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
