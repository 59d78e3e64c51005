"""Signed commits and the registry's verification report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from progreg.storage import ProgramStorage


class VerifyReport(BaseModel):
    """What ``verify`` found."""

    model_config = ConfigDict(frozen=True)


def verify(storage: ProgramStorage) -> VerifyReport:
    """Check every program and report which commits are signed and by whom."""
    raise NotImplementedError
