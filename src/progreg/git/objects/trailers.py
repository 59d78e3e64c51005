"""Commit messages with Git trailers (``Key: value`` lines ending the body).

The format follows ``git interpret-trailers``: a subject line, an optional
body, a blank line, then one ``Token: value`` per line. Values are kept on
one line so that ``git log --format='%(trailers)'`` shows them verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
_TRAILER_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*): (.*)$")
_MAX_SUBJECT = 120


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace (newlines included) so ``text`` fits on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def format_message(subject: str, trailers: Iterable[tuple[str, str]], body: str = "") -> str:
    """Build a commit message: subject, optional body, then the trailer block."""
    lines = [one_line(subject, _MAX_SUBJECT), ""]
    if body.strip():
        lines += [body.strip(), ""]
    for token, value in trailers:
        if not _TOKEN.match(token):
            raise ValueError(f"invalid trailer token {token!r}")
        lines.append(f"{token}: {one_line(value, 500)}")
    return "\n".join(lines) + "\n"


def parse_trailers(message: str) -> dict[str, str]:
    """Return the trailers of a commit message (the last paragraph), later keys winning."""
    paragraphs = message.strip().split("\n\n")
    if len(paragraphs) < 2:
        return {}
    trailers: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        match = _TRAILER_LINE.match(line)
        if match is None:
            return {}
        trailers[match.group(1)] = match.group(2)
    return trailers
