"""Reading the reference storage system's own formats, to migrate into a registry.

Two formats exist:

* its JSON export file: ``{"exported_at": ..., "programs": [document, ...]}``;
* its storage folder (``dspy_storage/``): ``programs/<id>.json``, one
  pretty-printed document per program, and ``history.json``, an index
  (``{"programs": [{"program_id": ..., ...}], "summary": {...}}``).

A reference document has ``program_id``, ``saved_at``, ``program_data``
(``class_name`` and ``state``), ``optimization_result`` and ``metadata``.
:func:`convert_document` turns one into a progreg
:class:`~progreg.core.document.ProgramDocument`, keeping the id and the save time
and refusing what the reference system let through: ids that are not 16
lowercase hex characters (``../x`` would have written outside its folder),
times without a date, values JSON cannot hold. Nothing here writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from progreg.core import canonical
from progreg.core.document import ProgramDocument, in_utc_range
from progreg.core.ids import is_program_id
from progreg.core.layout import PROGRAMS_DIR
from progreg.core.results import normalize_result
from progreg.errors import BundleError, ProgregError

HISTORY_FILE = "history.json"
#: Largest reference file read (an export of 10k programs is about 50 MB).
MAX_SOURCE_BYTES = 2 * 1024 * 1024 * 1024
_KNOWN = ("program_id", "saved_at", "program_data", "optimization_result", "metadata")


@dataclass
class ReferenceSource:
    """Documents read from a reference export or folder, with what the cross-check found."""

    kind: Literal["json-export", "dspy-storage"]
    documents: list[ProgramDocument]
    history_missing: list[str] = field(default_factory=list)
    history_unlisted: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _loads(data: bytes, where: str) -> Any:
    # Strictly: a key given twice or a 65-bit integer is refused, not silently changed.
    return canonical.loads(data, where, BundleError)


def _read(path: Path) -> bytes:
    try:
        if path.is_symlink():
            raise BundleError(f"{path} is a symbolic link; refusing to follow it")
        size = path.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise BundleError(f"{path} is {size} bytes, more than {MAX_SOURCE_BYTES}")
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc


def _time(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise BundleError(f"{where}: saved_at {value!r} is not an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BundleError(f"{where}: saved_at {value!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:  # the reference always writes an offset; assume UTC if not
        moment = moment.replace(tzinfo=UTC)
    if not in_utc_range(moment):
        raise BundleError(f"{where}: saved_at {value!r} is out of range in UTC")
    return moment


def convert_document(raw: object, where: str) -> ProgramDocument:
    """A progreg document from a reference document; raise :class:`BundleError` if unusable."""
    if not isinstance(raw, dict):
        raise BundleError(f"{where} is not a JSON object")
    program_id = raw.get("program_id")
    if not isinstance(program_id, str) or not is_program_id(program_id):
        raise BundleError(
            f"{where}: program_id {program_id!r} is not 16 lowercase hexadecimal characters;"
            " refusing to import it (nothing was imported)"
        )
    where = f"{where} (program {program_id})"
    data = raw.get("program_data")
    if not isinstance(data, dict):
        raise BundleError(f"{where}: program_data is not a JSON object")
    class_name = data.get("class_name")
    if class_name is not None and not isinstance(class_name, str):
        raise BundleError(f"{where}: program_data.class_name is not a string")
    state = data.get("state")
    if state is None:  # a program_data that is the state itself
        state = {key: value for key, value in data.items() if key != "class_name"}
    if not isinstance(state, dict):
        raise BundleError(f"{where}: program_data.state is not a JSON object")
    result = raw.get("optimization_result")
    metadata = raw.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise BundleError(f"{where}: metadata is not a JSON object")
    if result is not None and not isinstance(result, dict):
        raise BundleError(f"{where}: optimization_result is not a JSON object")
    try:
        normalized = normalize_result(result)
    except ProgregError as exc:
        raise BundleError(f"{where}: {exc}") from exc
    return ProgramDocument(
        program_id=program_id,
        saved_at=_time(raw.get("saved_at"), where),
        class_name=class_name,
        state=state,
        optimization_result=normalized,
        metadata=metadata,
        extra={k: v for k, v in raw.items() if k not in _KNOWN and k != "format_version"},
    )


def read_export_file(path: Path) -> ReferenceSource:
    """The documents of a reference JSON export file."""
    raw = _loads(_read(path), str(path))
    if not isinstance(raw, dict) or not isinstance(raw.get("programs"), list):
        raise BundleError(
            f"{path} is JSON but not a reference export: expected an object with a 'programs' list"
        )
    documents = [
        convert_document(item, f"{path}: programs[{index}]")
        for index, item in enumerate(raw["programs"])
    ]
    return ReferenceSource("json-export", documents)


def is_storage_folder(path: Path) -> bool:
    """True when ``path`` looks like a reference storage folder."""
    return (path / PROGRAMS_DIR).is_dir() or (path / HISTORY_FILE).is_file()


def read_storage_folder(path: Path) -> ReferenceSource:
    """The documents of a reference ``dspy_storage/`` folder, cross-checked with history.json."""
    programs = path / PROGRAMS_DIR
    documents: list[ProgramDocument] = []
    if programs.is_dir():
        for file in sorted(programs.iterdir()):
            if file.suffix != ".json" or file.is_dir():
                continue
            where = f"{file}"
            document = convert_document(_loads(_read(file), where), where)
            if file.stem != document.program_id:
                raise BundleError(
                    f"{file} holds program {document.program_id}, not {file.stem}: the"
                    " folder is inconsistent; nothing was imported"
                )
            documents.append(document)
    source = ReferenceSource("dspy-storage", documents)
    history = path / HISTORY_FILE
    if not history.is_file():
        source.warnings.append(f"{history} is missing: programs were not cross-checked")
        return source
    try:
        raw = _loads(_read(history), str(history))
    except BundleError as exc:
        source.warnings.append(f"{exc}; programs were not cross-checked")
        return source
    entries = raw.get("programs") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        source.warnings.append(f"{history} has no 'programs' list; programs were not cross-checked")
        return source
    listed: list[str] = []
    for entry in entries:
        program_id = entry.get("program_id") if isinstance(entry, dict) else None
        if isinstance(program_id, str) and is_program_id(program_id):
            listed.append(program_id)
        else:
            source.warnings.append(f"{history} lists an invalid program id {program_id!r}")
    found = {document.program_id for document in documents}
    source.history_missing = sorted(set(listed) - found)
    source.history_unlisted = sorted(found - set(listed))
    if source.history_missing:
        source.warnings.append(
            f"{len(source.history_missing)} program(s) listed in {history} have no file in"
            f" {programs} and were not imported"
        )
    if source.history_unlisted:
        source.warnings.append(
            f"{len(source.history_unlisted)} program file(s) in {programs} are not listed in"
            f" {history}; they were imported"
        )
    return source
