"""Deployment labels: the format of ``labels/<signature>.json`` files, without Git.

A label (``production``, ``staging``) names exactly one program per signature
at a time. The labels of one signature live in one file of ``main``'s tree,
``labels/<signature>.json``: canonical JSON ``{"<label>": "<program id>"}``.
A signature with no label has no file. docs/format.md describes the layout.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from progreg.core import canonical
from progreg.core.ids import is_program_id
from progreg.core.layout import LABELS_DIR
from progreg.core.names import check_name
from progreg.core.secrets import credential_in_text
from progreg.errors import CorruptProgramError, InvalidInputError, InvalidNameError, ProgregError

#: The separator of a label reference: ``ClassifyText@production``.
LABEL_SEPARATOR = "@"
#: Longest reason a move may record (one line of a commit message).
MAX_REASON_LENGTH = 500
#: The namespace label names are checked in (a ref-safe component, as tags are).
_NAMESPACE = "refs/labels/"
_LABEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_SUFFIX = ".json"


class LabelMove(BaseModel):
    """One move of a label: who moved it, when, from which program to which, and why."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    signature: str = Field(description="the signature whose label moved")
    label: str = Field(description="the label's name (production, staging...)")
    from_program: str | None = Field(description="the program it named before; None: new label")
    to_program: str | None = Field(description="the program it names after; None: removed")
    reason: str | None = Field(description="why, as given (Label-Reason trailer); None if not")
    author: str = Field(description="who moved it: the commit's author, 'Name <email>'")
    moved_at: datetime = Field(description="when: the commit's author date, UTC")
    commit: str = Field(description="hex id of the commit that recorded the move")
    unchanged: bool = Field(
        default=False,
        description="True when the label already named the program: no commit was made",
    )


def check_label(label: object) -> str:
    """``label`` if it is a valid label name (``[a-z0-9][a-z0-9._-]*``), else InvalidNameError."""
    name = check_name("label", label, _NAMESPACE)
    if _LABEL.fullmatch(name) is None:
        raise InvalidNameError(
            f"invalid label name {name!r}: use lowercase letters, digits, '.', '_' or '-',"
            " starting with a letter or digit (production, staging, canary-2)"
        )
    return name


def check_signature(signature: object) -> str:
    """``signature`` if it can name a label file (letters, digits, ``_ . -``), else raise."""
    return check_name("signature", signature, _NAMESPACE)


def check_reason(reason: object) -> str | None:
    """A move's reason: ``None``, or one line without control characters or credentials."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidInputError(f"reason must be a string, got {type(reason).__name__}")
    text = reason.strip()
    if not text:
        return None
    if _CONTROL.search(text) is not None:
        raise InvalidInputError(
            "reason must be one line without control characters (it becomes a commit"
            " trailer): remove the line breaks"
        )
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidInputError(
            f"reason is {len(text)} characters, over the limit of {MAX_REASON_LENGTH}:"
            " shorten it (link to a longer note instead)"
        )
    found = credential_in_text(text)
    if found is not None:  # never echo it
        raise InvalidInputError(
            f"reason refused: it {found}, and a reason is written into the commit history"
            " for good; leave the credential out"
        )
    return text


def label_path(signature: str) -> str:
    """The path of ``signature``'s label file in ``main``'s tree."""
    return f"{LABELS_DIR}/{signature}{_SUFFIX}"


def signature_of_path(path: str) -> str | None:
    """The signature whose label file ``path`` is, or ``None`` if it is not one."""
    prefix = f"{LABELS_DIR}/"
    if not path.startswith(prefix) or not path.endswith(_SUFFIX):
        return None
    name = path[len(prefix) : -len(_SUFFIX)]
    try:
        return check_signature(name)
    except ProgregError:
        return None


def parse_label_reference(text: str) -> tuple[str, str] | None:
    """``(signature, label)`` of ``Signature@label``, or ``None`` if ``text`` has no ``@``.

    The parts are validated: a reference with a bad name raises InvalidNameError.
    """
    if LABEL_SEPARATOR not in text:
        return None
    signature, _, label = text.partition(LABEL_SEPARATOR)
    return check_signature(signature), check_label(label)


def label_file_problems(value: Any) -> list[str]:
    """What is wrong with the decoded content of a label file (``[]``: nothing)."""
    if not isinstance(value, dict):
        return ['a label file must be a JSON object {"<label>": "<program id>"}']
    problems = []
    for label, program_id in value.items():
        try:
            check_label(label)
        except ProgregError as exc:
            problems.append(str(exc))
            continue
        if not isinstance(program_id, str) or not is_program_id(program_id):
            problems.append(
                f"label {label!r} names {program_id!r}, which is not a program id"
                " (16 lowercase hex digits)"
            )
    return problems


def decode_labels(data: bytes, where: str) -> dict[str, str]:
    """The labels of one label file (strict: a damaged file raises CorruptProgramError)."""
    value = canonical.decode(data, where)
    problems = label_file_problems(value)
    if problems:
        raise CorruptProgramError(f"{where}: {'; '.join(problems)}")
    assert isinstance(value, dict)
    return {str(label): str(program_id) for label, program_id in value.items()}


def encode_labels(labels: Mapping[str, str], where: str) -> bytes:
    """The canonical bytes of a label file holding ``labels``."""
    return canonical.encode(dict(labels), where)
