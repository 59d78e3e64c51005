"""Unified diffs of two byte strings through Git's own diff machinery (libgit2).

The patch is the one ``git diff`` prints for the same two files: a
``diff --git`` header with the given paths, an ``index`` line with the two
blob ids, and hunks with ``context`` lines of context. The indent heuristic
is on, as it is by default in ``git diff`` since Git 2.14, so the hunks are
placed the same way the command line places them.
"""

from __future__ import annotations

import pygit2
from pygit2.enums import DiffOption

_FLAGS = DiffOption.NORMAL | DiffOption.INDENT_HEURISTIC


def unified_diff(
    old: bytes, new: bytes, old_path: str, new_path: str, context: int = 3
) -> tuple[str, int, int]:
    """The unified diff from ``old`` to ``new`` and its added and removed line counts.

    Returns ``(patch_text, added_lines, removed_lines)``. Equal inputs give
    ``("", 0, 0)``. Content Git considers binary gives a ``Binary files
    differ`` patch with no line counts. ``context`` (at least 0) is the
    number of unchanged lines shown around each change.
    """
    if context < 0:
        raise ValueError(f"context must be at least 0, not {context}")
    patch = pygit2.Patch.create_from(
        old,
        new,
        old_as_path=old_path,
        new_as_path=new_path,
        flag=_FLAGS,
        context_lines=context,
    )
    _context, added, removed = patch.line_stats
    return patch.data.decode("utf-8", errors="replace"), added, removed
