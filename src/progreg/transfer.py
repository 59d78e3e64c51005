"""Export and import: real Git bundles, and the reference system's own formats."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Iterable

    from progreg.storage import ProgramStorage


class ExportResult(BaseModel):
    """What an export wrote."""

    model_config = ConfigDict(frozen=True)


class ImportResult(BaseModel):
    """What an import did."""

    model_config = ConfigDict(frozen=True)


def export_programs(
    storage: ProgramStorage, program_ids: Iterable[str], path: str | os.PathLike[str]
) -> ExportResult:
    """Write a bundle holding exactly ``program_ids``."""
    raise NotImplementedError


def export_registry(
    storage: ProgramStorage, path: str | os.PathLike[str], since: str | None = None
) -> ExportResult:
    """Write a bundle of the whole registry, or of what is new since ``since``."""
    raise NotImplementedError


def import_programs(storage: ProgramStorage, path: str | os.PathLike[str]) -> ImportResult:
    """Import a bundle, a reference-format export file or a ``dspy_storage/`` folder."""
    raise NotImplementedError
