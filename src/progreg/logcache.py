"""A file that persists what :class:`~progreg.history.LogIndex` derived, between processes.

The cache lives in the registry's directory but outside Git's data
(``<registry>/progreg-cache/``) and is never a source of truth: it records the
commit it was built from, and the index only uses it when that commit is on
the ref's first-parent chain. Its format is one header line (JSON: format
name, version, size and SHA-256 of the body) followed by a JSON body. A file
that is missing, truncated, corrupt, of another version or unreadable reads
as no cache at all. Writes go to a temporary file renamed over the cache, so
readers see a whole old file or a whole new one; when processes race the
last writer wins, and a registry the process cannot write to is simply not
cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

#: The directory, inside the registry, that holds derived caches.
CACHE_DIR = "progreg-cache"
FORMAT = "progreg-log-index"
VERSION = 1
_MAIN = "refs/heads/main"


def cache_path(registry: Path, ref: str) -> Path:
    """Where the log index of ``ref`` in the registry at ``registry`` is cached."""
    name = f"log-index-v{VERSION}"
    if ref != _MAIN:
        name += "-" + re.sub(r"[^A-Za-z0-9._-]", "_", ref)
    return registry / CACHE_DIR / f"{name}.json"


def read(path: Path) -> dict[str, Any] | None:
    """The body of the cache at ``path``, or ``None`` if it is missing or not trustworthy."""
    try:
        with path.open("rb") as file:
            header_line = file.readline(4096)
            body = file.read()
    except OSError:
        return None
    try:
        header = json.loads(header_line)
        if (
            not isinstance(header, dict)
            or header.get("format") != FORMAT
            or header.get("version") != VERSION
            or header.get("size") != len(body)
            or header.get("sha256") != hashlib.sha256(body).hexdigest()
        ):
            return None
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write(path: Path, data: dict[str, Any]) -> bool:
    """Atomically replace the cache at ``path`` with ``data``; ``False`` if it cannot be."""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    try:
        path.parent.mkdir(exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(json.dumps(header).encode() + b"\n")
            file.write(body)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        return False
    return True
