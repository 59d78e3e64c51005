"""progreg: a Git-backed versioned registry for optimized LLM programs.

>>> from progreg import ProgramStorage
>>> storage = ProgramStorage("./dspy_storage")          # doctest: +SKIP
>>> saved = storage.save_program(program, result)       # doctest: +SKIP
"""

from progreg._version import __version__
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
    UnsupportedObjectFormatError,
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
    "UnsupportedObjectFormatError",
    "UnsupportedProgramError",
    "VerifyReport",
    "__version__",
    "subscribe",
]
