"""Program ids and where a program lives in the registry's tree."""

from __future__ import annotations

import re
import secrets

from progreg.core.layout import PROGRAMS_DIR
from progreg.errors import InvalidProgramIdError

_PROGRAM_ID = re.compile(r"[0-9a-f]{16}")


def new_program_id() -> str:
    """A fresh random program id: 16 lowercase hexadecimal characters (64 bits)."""
    return secrets.token_hex(8)


def check_program_id(program_id: object) -> str:
    """Return ``program_id`` if it is 16 lowercase hex characters, else raise."""
    if not isinstance(program_id, str) or _PROGRAM_ID.fullmatch(program_id) is None:
        raise InvalidProgramIdError(
            f"program id {program_id!r} is not 16 lowercase hexadecimal characters"
        )
    return program_id


def is_program_id(text: str) -> bool:
    """True when ``text`` is a well-formed program id."""
    return _PROGRAM_ID.fullmatch(text) is not None


def program_path(program_id: str) -> str:
    """The path of a program's file: ``programs/ab/cd/abcd0123456789ef.json``."""
    return f"{PROGRAMS_DIR}/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


def program_id_of_path(path: str) -> str | None:
    """The program id a path belongs to, or ``None`` if it is not a well-placed program file."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != PROGRAMS_DIR or not parts[3].endswith(".json"):
        return None
    program_id = parts[3][: -len(".json")]
    if not is_program_id(program_id) or program_path(program_id) != path:
        return None
    return program_id
