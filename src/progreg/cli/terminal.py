"""Stored text on a terminal: control characters are shown, never obeyed.

Program documents, commit messages and names come from whoever saved them, or
from a bundle or a remote: a signature name holding ``ESC ] 0 ; ... BEL``
would retitle the reader's terminal window, ``ESC [ 2 J`` clear the screen,
a carriage return overwrite what was printed, a right-to-left override
reorder the line. Every command that prints stored text for people passes it
through :func:`visible`, on a terminal and piped alike; ``--json`` output is
JSON, where such characters are escapes already.
"""

from __future__ import annotations

import re

#: C0 controls but tab and newline, DEL, C1 controls, and the bidirectional
#: embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with each control character written as an escape: ``\\x1b``, ``\\u202e``."""
    if text.isascii() and text.isprintable():  # the usual cell: nothing to escape
        return text
    return _CONTROLS.sub(_escape, text)
