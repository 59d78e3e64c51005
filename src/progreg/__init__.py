"""progreg: a Git-backed versioned registry for optimized LLM programs.

>>> from progreg import ProgramStorage
>>> storage = ProgramStorage("./dspy_storage")          # doctest: +SKIP
>>> saved = storage.save_program(program, result)       # doctest: +SKIP

Names are imported when first used (PEP 562), so that ``import progreg`` and
``progreg --version`` stay as fast as importing progreg's dependencies; a type
checker sees the ordinary imports below.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from progreg._version import __version__

if TYPE_CHECKING:
    from progreg.core.document import FORMAT_VERSION
    from progreg.core.labels import LabelMove
    from progreg.core.models import (
        CleanupPlan,
        CleanupResult,
        GcReport,
        HistorySummary,
        Lineage,
        LineageNode,
        LogEntry,
        ProgramHistory,
        ProgramSummary,
        SavedProgram,
    )
    from progreg.core.results import OptimizationResult
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
        LabelNotFoundError,
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
        RunNotFoundError,
        SecretDetectedError,
        SigningError,
        UnsupportedFormatError,
        UnsupportedObjectFormatError,
        UnsupportedProgramError,
    )
    from progreg.events import Event, subscribe
    from progreg.integrations.runs import OptimizationRun, track_run
    from progreg.manager import StorageManager
    from progreg.registry.analytics import OptimizationHistory, OptimizerStats, ProgramRef, Trends
    from progreg.registry.checkpoints import CheckpointInfo
    from progreg.registry.compare import ComparedProgram, Comparison, ProgramComparison, ProgramDiff
    from progreg.registry.config import StorageConfig
    from progreg.registry.history import ProgramRecord
    from progreg.registry.review import (
        ProgramChange,
        ReviewReport,
        SignatureChange,
        review_range,
    )
    from progreg.registry.runs import RunPoint, RunSummary
    from progreg.registry.verify import VerifyReport
    from progreg.sharing.merging import MergeResult
    from progreg.sharing.remotes import PullResult, PushResult, RemoteInfo, SyncResult
    from progreg.sharing.transfer import ExportResult, ImportResult
    from progreg.storage import ProgramStorage

#: Each public name and the module of progreg that defines it.
_EXPORTS: dict[str, str] = {
    "OptimizationHistory": "analytics",
    "OptimizerStats": "analytics",
    "ProgramRef": "analytics",
    "Trends": "analytics",
    "CheckpointInfo": "checkpoints",
    "ComparedProgram": "compare",
    "Comparison": "compare",
    "ProgramComparison": "compare",
    "ProgramDiff": "compare",
    "StorageConfig": "config",
    "FORMAT_VERSION": "document",
    "AuthenticationError": "errors",
    "BundleError": "errors",
    "ConflictError": "errors",
    "CorruptProgramError": "errors",
    "DamagedObjectError": "errors",
    "DiskFullError": "errors",
    "InvalidInputError": "errors",
    "InvalidNameError": "errors",
    "InvalidProgramIdError": "errors",
    "LabelNotFoundError": "errors",
    "NotARegistryError": "errors",
    "NotJSONError": "errors",
    "ProgramNotFoundError": "errors",
    "ProgramTooLargeError": "errors",
    "ProgregError": "errors",
    "PushRejectedError": "errors",
    "ReadOnlyRegistryError": "errors",
    "RegistryBusyError": "errors",
    "RegistryError": "errors",
    "RemoteError": "errors",
    "RunNotFoundError": "errors",
    "SecretDetectedError": "errors",
    "SigningError": "errors",
    "UnsupportedFormatError": "errors",
    "UnsupportedObjectFormatError": "errors",
    "UnsupportedProgramError": "errors",
    "Event": "events",
    "subscribe": "events",
    "ProgramRecord": "history",
    "LabelMove": "labels",
    "StorageManager": "manager",
    "MergeResult": "merging",
    "CleanupPlan": "models",
    "CleanupResult": "models",
    "GcReport": "models",
    "HistorySummary": "models",
    "Lineage": "models",
    "LineageNode": "models",
    "LogEntry": "models",
    "ProgramHistory": "models",
    "ProgramSummary": "models",
    "SavedProgram": "models",
    "PullResult": "remotes",
    "PushResult": "remotes",
    "RemoteInfo": "remotes",
    "SyncResult": "remotes",
    "OptimizationResult": "results",
    "VerifyReport": "verify",
    "ProgramChange": "review",
    "ReviewReport": "review",
    "SignatureChange": "review",
    "review_range": "review",
    "OptimizationRun": "run_tracking",
    "track_run": "run_tracking",
    "RunPoint": "runs",
    "RunSummary": "runs",
    "ProgramStorage": "storage",
    "ExportResult": "transfer",
    "ImportResult": "transfer",
}


def _module(module: str) -> ModuleType:
    """progreg's module ``module``, imported now: one of a fixed list, never a name from data."""
    if module == "analytics":
        from progreg.registry import analytics

        return analytics
    if module == "checkpoints":
        from progreg.registry import checkpoints

        return checkpoints
    if module == "compare":
        from progreg.registry import compare

        return compare
    if module == "config":
        from progreg.registry import config

        return config
    if module == "document":
        from progreg.core import document

        return document
    if module == "errors":
        from progreg import errors

        return errors
    if module == "events":
        from progreg import events

        return events
    if module == "history":
        from progreg.registry import history

        return history
    if module == "labels":
        from progreg.core import labels

        return labels
    if module == "manager":
        from progreg import manager

        return manager
    if module == "merging":
        from progreg.sharing import merging

        return merging
    if module == "models":
        from progreg.core import models

        return models
    if module == "remotes":
        from progreg.sharing import remotes

        return remotes
    if module == "results":
        from progreg.core import results

        return results
    if module == "storage":
        from progreg import storage

        return storage
    if module == "transfer":
        from progreg.sharing import transfer

        return transfer
    if module == "verify":
        from progreg.registry import verify

        return verify
    if module == "review":
        from progreg.registry import review

        return review
    if module == "runs":
        from progreg.registry import runs

        return runs
    if module == "run_tracking":
        from progreg.integrations import runs as run_tracking

        return run_tracking
    raise AttributeError(f"progreg has no module {module!r} to export from")


def __getattr__(name: str) -> Any:
    """Import public name ``name`` from its module on first use, then keep it here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'progreg' has no attribute {name!r}")
    value = getattr(_module(module), name)
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
    "CleanupResult",
    "ComparedProgram",
    "Comparison",
    "ConflictError",
    "CorruptProgramError",
    "DamagedObjectError",
    "DiskFullError",
    "Event",
    "ExportResult",
    "GcReport",
    "HistorySummary",
    "ImportResult",
    "InvalidInputError",
    "InvalidNameError",
    "InvalidProgramIdError",
    "LabelMove",
    "LabelNotFoundError",
    "Lineage",
    "LineageNode",
    "LogEntry",
    "MergeResult",
    "NotARegistryError",
    "NotJSONError",
    "OptimizationHistory",
    "OptimizationResult",
    "OptimizationRun",
    "OptimizerStats",
    "ProgramChange",
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
    "ReviewReport",
    "RunNotFoundError",
    "RunPoint",
    "RunSummary",
    "SavedProgram",
    "SecretDetectedError",
    "SignatureChange",
    "SigningError",
    "StorageConfig",
    "StorageManager",
    "SyncResult",
    "Trends",
    "UnsupportedFormatError",
    "UnsupportedObjectFormatError",
    "UnsupportedProgramError",
    "VerifyReport",
    "__version__",
    "review_range",
    "subscribe",
    "track_run",
]
