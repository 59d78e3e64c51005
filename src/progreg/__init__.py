"""progreg: a Git-backed versioned registry for optimized LLM programs.

>>> from progreg import ProgramStorage
>>> storage = ProgramStorage("./dspy_storage")          # doctest: +SKIP
>>> saved = storage.save_program(program, result)       # doctest: +SKIP

Names are imported when first used (PEP 562), so that ``import progreg`` and
``progreg --version`` stay as fast as importing progreg's dependencies; a type
checker sees the ordinary imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from progreg._version import __version__

if TYPE_CHECKING:
    from progreg.analytics import OptimizationHistory, OptimizerStats, ProgramRef, Trends
    from progreg.checkpoints import CheckpointInfo
    from progreg.compare import ComparedProgram, Comparison, ProgramComparison, ProgramDiff
    from progreg.config import StorageConfig
    from progreg.document import FORMAT_VERSION
    from progreg.errors import (
        AuthenticationError,
        BundleError,
        ConflictError,
        CorruptProgramError,
        DamagedObjectError,
        DiskFullError,
        InvalidInputError,
        InvalidNameError,
        InvalidProgramIdError,
        NotARegistryError,
        NotJSONError,
        ProgramNotFoundError,
        ProgramTooLargeError,
        ProgregError,
        PushRejectedError,
        ReadOnlyRegistryError,
        RegistryBusyError,
        RegistryError,
        RemoteError,
        SecretDetectedError,
        SigningError,
        UnsupportedFormatError,
        UnsupportedProgramError,
    )
    from progreg.events import Event, subscribe
    from progreg.history import ProgramRecord
    from progreg.manager import StorageManager
    from progreg.merging import MergeResult
    from progreg.models import (
        CleanupPlan,
        HistorySummary,
        ProgramHistory,
        ProgramSummary,
        SavedProgram,
    )
    from progreg.remotes import PullResult, PushResult, RemoteInfo, SyncResult
    from progreg.results import OptimizationResult
    from progreg.signing import VerifyReport
    from progreg.storage import ProgramStorage
    from progreg.transfer import ExportResult, ImportResult

#: Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "OptimizationHistory": "progreg.analytics",
    "OptimizerStats": "progreg.analytics",
    "ProgramRef": "progreg.analytics",
    "Trends": "progreg.analytics",
    "CheckpointInfo": "progreg.checkpoints",
    "ComparedProgram": "progreg.compare",
    "Comparison": "progreg.compare",
    "ProgramComparison": "progreg.compare",
    "ProgramDiff": "progreg.compare",
    "StorageConfig": "progreg.config",
    "FORMAT_VERSION": "progreg.document",
    "AuthenticationError": "progreg.errors",
    "BundleError": "progreg.errors",
    "ConflictError": "progreg.errors",
    "CorruptProgramError": "progreg.errors",
    "DamagedObjectError": "progreg.errors",
    "DiskFullError": "progreg.errors",
    "InvalidInputError": "progreg.errors",
    "InvalidNameError": "progreg.errors",
    "InvalidProgramIdError": "progreg.errors",
    "NotARegistryError": "progreg.errors",
    "NotJSONError": "progreg.errors",
    "ProgramNotFoundError": "progreg.errors",
    "ProgramTooLargeError": "progreg.errors",
    "ProgregError": "progreg.errors",
    "PushRejectedError": "progreg.errors",
    "ReadOnlyRegistryError": "progreg.errors",
    "RegistryBusyError": "progreg.errors",
    "RegistryError": "progreg.errors",
    "RemoteError": "progreg.errors",
    "SecretDetectedError": "progreg.errors",
    "SigningError": "progreg.errors",
    "UnsupportedFormatError": "progreg.errors",
    "UnsupportedProgramError": "progreg.errors",
    "Event": "progreg.events",
    "subscribe": "progreg.events",
    "ProgramRecord": "progreg.history",
    "StorageManager": "progreg.manager",
    "MergeResult": "progreg.merging",
    "CleanupPlan": "progreg.models",
    "HistorySummary": "progreg.models",
    "ProgramHistory": "progreg.models",
    "ProgramSummary": "progreg.models",
    "SavedProgram": "progreg.models",
    "PullResult": "progreg.remotes",
    "PushResult": "progreg.remotes",
    "RemoteInfo": "progreg.remotes",
    "SyncResult": "progreg.remotes",
    "OptimizationResult": "progreg.results",
    "VerifyReport": "progreg.signing",
    "ProgramStorage": "progreg.storage",
    "ExportResult": "progreg.transfer",
    "ImportResult": "progreg.transfer",
}


def __getattr__(name: str) -> Any:
    """Import public name ``name`` from its module on first use, then keep it here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'progreg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "FORMAT_VERSION",
    "AuthenticationError",
    "BundleError",
    "CheckpointInfo",
    "CleanupPlan",
    "ComparedProgram",
    "Comparison",
    "ConflictError",
    "CorruptProgramError",
    "DamagedObjectError",
    "DiskFullError",
    "Event",
    "ExportResult",
    "HistorySummary",
    "ImportResult",
    "InvalidInputError",
    "InvalidNameError",
    "InvalidProgramIdError",
    "MergeResult",
    "NotARegistryError",
    "NotJSONError",
    "OptimizationHistory",
    "OptimizationResult",
    "OptimizerStats",
    "ProgramComparison",
    "ProgramDiff",
    "ProgramHistory",
    "ProgramNotFoundError",
    "ProgramRecord",
    "ProgramRef",
    "ProgramStorage",
    "ProgramSummary",
    "ProgramTooLargeError",
    "ProgregError",
    "PullResult",
    "PushRejectedError",
    "PushResult",
    "ReadOnlyRegistryError",
    "RegistryBusyError",
    "RegistryError",
    "RemoteError",
    "RemoteInfo",
    "SavedProgram",
    "SecretDetectedError",
    "SigningError",
    "StorageConfig",
    "StorageManager",
    "SyncResult",
    "Trends",
    "UnsupportedFormatError",
    "UnsupportedProgramError",
    "VerifyReport",
    "__version__",
    "subscribe",
]
