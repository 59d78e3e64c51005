"""progreg: a Git-backed versioned registry for optimized LLM programs.

>>> from progreg import ProgramStorage
>>> storage = ProgramStorage("./dspy_storage")          # doctest: +SKIP
>>> saved = storage.save_program(program, result)       # doctest: +SKIP
"""

from progreg._version import __version__
from progreg.document import FORMAT_VERSION
from progreg.errors import (
    ConflictError,
    CorruptProgramError,
    InvalidInputError,
    InvalidNameError,
    InvalidProgramIdError,
    NotARegistryError,
    NotJSONError,
    ProgramNotFoundError,
    ProgramTooLargeError,
    ProgregError,
    RegistryBusyError,
    RegistryError,
    UnsupportedFormatError,
    UnsupportedProgramError,
)
from progreg.events import Event, subscribe
from progreg.models import HistorySummary, ProgramHistory, ProgramSummary, SavedProgram
from progreg.storage import ProgramStorage

__all__ = [
    "FORMAT_VERSION",
    "ConflictError",
    "CorruptProgramError",
    "Event",
    "HistorySummary",
    "InvalidInputError",
    "InvalidNameError",
    "InvalidProgramIdError",
    "NotARegistryError",
    "NotJSONError",
    "ProgramHistory",
    "ProgramNotFoundError",
    "ProgramStorage",
    "ProgramSummary",
    "ProgramTooLargeError",
    "ProgregError",
    "RegistryBusyError",
    "RegistryError",
    "SavedProgram",
    "UnsupportedFormatError",
    "UnsupportedProgramError",
    "__version__",
    "subscribe",
]
