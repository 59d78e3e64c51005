"""The program document: the JSON file that stores one program.

See ``docs/format.md`` for the contract. A document is::

    {
      "format_version": 1,
      "program_id": "<16 hex>",
      "saved_at": "<ISO 8601, UTC, microseconds>",
      "program_data": {"class_name": "<module.Class or null>", "state": {...}},
      "optimization_result": {...},
      "metadata": {...},
      "derived_from": {"program_id": "<16 hex>", "commit": "<40 hex>"}   (optional)
    }

Unknown top-level keys written by a later minor version are kept as they are.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from progreg.core import canonical
from progreg.core.ids import is_program_id
from progreg.core.lineage import DERIVED_FROM, Origin, origin_from_json
from progreg.core.models import ProgramSummary
from progreg.core.results import best_score_of, optimizer_of, score_name_of, signature_class_of
from progreg.errors import CorruptProgramError, NotJSONError, UnsupportedFormatError

FORMAT_VERSION = 1
#: The largest program document a registry accepts unless configured otherwise.
DEFAULT_MAX_PROGRAM_BYTES = 16 * 1024 * 1024
#: The metadata progreg adds to every save (see ``Registry.document_for``): provenance
#: that says which progreg wrote a version, not what the program is.
PROVENANCE_KEYS = ("progreg_version", "python_version", "saved_with")
_REQUIRED = ("program_id", "saved_at", "program_data", "optimization_result", "metadata")
#: Per thread, the last document encoded and its bytes (see ProgramDocument.encode).
_LAST = threading.local()


def now() -> datetime:
    """The current time, timezone-aware UTC, microsecond precision."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds: ``2026-11-24T10:15:02.123456+00:00``."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ProgramDocument:
    """A decoded program document."""

    program_id: str
    saved_at: datetime
    class_name: str | None
    state: dict[str, Any]
    optimization_result: dict[str, Any]
    metadata: dict[str, Any]
    extra: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The document as the JSON object that is stored."""
        return {
            **self.extra,
            "format_version": FORMAT_VERSION,
            "program_id": self.program_id,
            "saved_at": format_time(self.saved_at),
            "program_data": {"class_name": self.class_name, "state": self.state},
            "optimization_result": self.optimization_result,
            "metadata": self.metadata,
        }

    def encode(self) -> bytes:
        """Canonical JSON bytes of the document, validated in the same pass.

        A value JSON cannot hold raises :class:`~progreg.NotJSONError` whose
        path starts with the part it is in: ``program state``,
        ``optimization_result`` or ``metadata``. Encoding the same document
        again in the same thread (a save encodes it to screen it, then to
        write it) returns the bytes of the first time.
        """
        last: tuple[weakref.ref[ProgramDocument], bytes] | None = getattr(_LAST, "encoded", None)
        if last is not None and last[0]() is self:
            return last[1]
        try:
            data = canonical.encode(self.to_json(), where="program")
        except NotJSONError:
            # Name the part the problem is in, as the caller gave it.
            canonical.check_json(self.state, "program state")
            canonical.check_json(self.optimization_result, "optimization_result")
            canonical.check_json(self.metadata, "metadata")
            raise
        _LAST.encoded = (weakref.ref(self), data)
        return data

    @property
    def derived_from(self) -> Origin | None:
        """The version this program was derived from (``derived_from``), if well-formed."""
        return origin_from_json(self.extra.get(DERIVED_FROM))

    def content_key(self) -> bytes:
        """Canonical bytes of the document without what changes on every save.

        ``saved_at`` and the provenance in metadata (:data:`PROVENANCE_KEYS`) are
        left out: two documents with the same key hold the same program, result,
        caller metadata and ancestor, and a re-save of one over the other changes
        nothing.
        """
        metadata = {k: v for k, v in self.metadata.items() if k not in PROVENANCE_KEYS}
        content = {**self.to_json(), "metadata": metadata}
        del content["saved_at"]
        return canonical.encode(content, where="program")

    @property
    def best_score(self) -> float | None:
        """The result's ``best_score_value`` as a float, if it is a finite number."""
        return best_score_of(self.optimization_result)

    @property
    def score_name(self) -> str | None:
        """The result's ``best_score_name``."""
        return score_name_of(self.optimization_result)

    @property
    def optimizer(self) -> str | None:
        """The result's ``metadata.optimizer``."""
        return optimizer_of(self.optimization_result)

    @property
    def signature_class(self) -> str | None:
        """``metadata.signature_class``."""
        return signature_class_of(self.metadata)

    def summary(self) -> ProgramSummary:
        """The listing record of this program."""
        return ProgramSummary(
            program_id=self.program_id,
            saved_at=self.saved_at,
            best_score=self.best_score,
            score_name=self.score_name,
            optimizer=self.optimizer,
            signature_class=self.signature_class,
            metadata=self.metadata,
        )


def decode_document(data: bytes, where: str, expected_id: str | None = None) -> ProgramDocument:
    """Decode and check a stored document; raise :class:`CorruptProgramError` if it is bad.

    The JSON is read strictly (:func:`progreg.core.canonical.decode`): a key given
    twice, an integer beyond 64 bits or nesting deeper than the limit is refused.
    """
    return document_from(canonical.decode(data, where), where, expected_id)


def document_from(raw: object, where: str, expected_id: str | None = None) -> ProgramDocument:
    """The document held by parsed JSON ``raw``; raise :class:`CorruptProgramError` if bad."""
    if not isinstance(raw, dict):
        raise CorruptProgramError(f"{where} is not a JSON object")
    version = raw.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CorruptProgramError(f"{where}: format_version {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"{where} has format_version {version}; this progreg reads up to"
            f" {FORMAT_VERSION}: upgrade progreg"
        )
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise CorruptProgramError(f"{where} lacks {', '.join(missing)}")
    program_id = raw["program_id"]
    if not isinstance(program_id, str) or not is_program_id(program_id):
        raise CorruptProgramError(f"{where}: program_id {program_id!r} is malformed")
    if expected_id is not None and program_id != expected_id:
        raise CorruptProgramError(
            f"{where} holds program {program_id}, not {expected_id}: the file is misplaced"
        )
    saved_at = _parse_time(raw["saved_at"], where)
    program_data = raw["program_data"]
    if not isinstance(program_data, dict) or not isinstance(program_data.get("state"), dict):
        raise CorruptProgramError(f"{where}: program_data.state is not a JSON object")
    class_name = program_data.get("class_name")
    if class_name is not None and not isinstance(class_name, str):
        raise CorruptProgramError(f"{where}: program_data.class_name is not a string")
    for key in ("optimization_result", "metadata"):
        if not isinstance(raw[key], dict):
            raise CorruptProgramError(f"{where}: {key} is not a JSON object")
    extra = {k: v for k, v in raw.items() if k not in _REQUIRED and k != "format_version"}
    return ProgramDocument(
        program_id=program_id,
        saved_at=saved_at,
        class_name=class_name,
        state=program_data["state"],
        optimization_result=raw["optimization_result"],
        metadata=raw["metadata"],
        extra=extra,
    )


def _parse_time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise CorruptProgramError(f"{where}: saved_at is not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CorruptProgramError(f"{where}: saved_at {value!r} is not ISO 8601") from exc
    if moment.tzinfo is None:
        raise CorruptProgramError(f"{where}: saved_at {value!r} has no time zone")
    if not in_utc_range(moment):
        raise CorruptProgramError(f"{where}: saved_at {value!r} is out of range in UTC")
    return moment


def in_utc_range(moment: datetime) -> bool:
    """True when ``moment`` (with a time zone) is a date in UTC too (year 1 to 9999)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True
