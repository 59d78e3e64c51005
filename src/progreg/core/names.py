"""Names people give to tags, checkpoints and remotes, kept safely inside their ref namespace.

A name is one ref component: it starts with a letter or digit and continues
with letters, digits, ``.``, ``_`` or ``-`` (at most 100 characters), and it
cannot contain ``..`` or end in ``.lock``. That rules out everything that
could escape a namespace (``/``, ``..``), be misread by Git's revision syntax
(``~ ^ : ? * [ @{``) or by a shell, and every control or non-ASCII character.
A name is written into ref names, commit messages and trailers, where nothing
can redact it later, so a name that looks like a credential is refused too.
"""

from __future__ import annotations

import functools
import re

import pygit2

from progreg.core.secrets import credential_in_text
from progreg.errors import InvalidNameError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: A registry's refs repeat few names (100k tag refs may hold a dozen tags): each is
#: screened once.
_credential_reason = functools.lru_cache(maxsize=4096)(credential_in_text)


def check_name(kind: str, name: object, namespace: str) -> str:
    """Return ``name`` if it is a safe ``kind`` name under ``namespace``, else raise."""
    if not isinstance(name, str):
        raise InvalidNameError(f"{kind} name must be a string, got {type(name).__name__}")
    if (
        _NAME.fullmatch(name) is None
        or ".." in name
        or name.endswith(".lock")
        or not pygit2.reference_is_valid_name(f"{namespace}{name}")
    ):
        raise InvalidNameError(
            f"invalid {kind} name {name!r}: use 1-100 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit (no '/', '..' or trailing '.lock')"
        )
    reason = _credential_reason(name)
    if reason is not None:  # never echo it
        raise InvalidNameError(
            f"invalid {kind} name: it {reason}, and a name is written into refs and commit"
            " messages for good; choose a name that is not a credential"
        )
    return name
