"""Who a commit or tag is by: explicit argument, environment, Git config, default."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime

import pygit2

_NAME_EMAIL = re.compile(r"^\s*([^<>]*?)\s*<([^<>]*)>\s*$")
DEFAULT_NAME = "progreg"
DEFAULT_EMAIL = "progreg@localhost"


@dataclass(frozen=True)
class Identity:
    """A person (or tool) recorded as author, committer or tagger."""

    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Parse ``"Name <email>"``; raise ValueError when it is not of that form."""
        match = _NAME_EMAIL.match(text)
        if match is None or not match.group(1):
            raise ValueError(f"identity {text!r} is not of the form 'Name <email>'")
        return cls(match.group(1), match.group(2))

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    def raw(self, signature: pygit2.Signature) -> str:
        """``signature`` as Git writes it in objects: ``Name <email> 1700000000 +0100``."""
        sign = "-" if signature.offset < 0 else "+"
        hours, minutes = divmod(abs(signature.offset), 60)
        return f"{self.name} <{self.email}> {signature.time} {sign}{hours:02d}{minutes:02d}"

    def signature(self, when: datetime | None = None) -> pygit2.Signature:
        """A pygit2 signature at ``when`` (now by default), in the local UTC offset."""
        moment = when.timestamp() if when is not None else time.time()
        local = datetime.fromtimestamp(moment).astimezone()
        offset = local.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        return pygit2.Signature(self.name, self.email, int(moment), minutes)


def _config_value(config: pygit2.Config | None, key: str) -> str | None:
    if config is None:
        return None
    try:
        value = config[key]
    except (KeyError, pygit2.GitError):
        return None
    return str(value) if value else None


def resolve_identity(
    role: str, explicit: Identity | str | None, config: pygit2.Config | None
) -> Identity:
    """Resolve the identity for ``role`` ("AUTHOR" or "COMMITTER") like Git does.

    Order: the explicit value, ``GIT_<ROLE>_NAME``/``GIT_<ROLE>_EMAIL``, the
    repository's (and user's) ``user.name``/``user.email``, then a default.
    """
    if isinstance(explicit, Identity):
        return explicit
    if isinstance(explicit, str):
        return Identity.parse(explicit)
    name = os.environ.get(f"GIT_{role}_NAME") or _config_value(config, "user.name") or DEFAULT_NAME
    email = (
        os.environ.get(f"GIT_{role}_EMAIL") or _config_value(config, "user.email") or DEFAULT_EMAIL
    )
    return Identity(name, email)
