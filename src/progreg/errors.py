"""The progreg exception hierarchy.

Every error a public call raises on purpose is a :class:`ProgregError`, so a
caller can catch one type. The subclasses say what kind of thing went wrong;
the message says what to do about it.

::

    ProgregError
    ├── InvalidInputError (also ValueError)     the caller passed something unusable
    │   ├── InvalidProgramIdError
    │   ├── NotJSONError                        a value that JSON cannot represent
    │   ├── ProgramTooLargeError
    │   ├── InvalidNameError                    tag / checkpoint / remote names
    │   ├── SecretDetectedError                 an API key or token in a program
    │   └── UnsupportedProgramError             a program object progreg cannot serialise
    ├── ProgramNotFoundError (also KeyError)    an id that the registry has never held
    │   └── LabelNotFoundError                  Signature@label names no program
    ├── RunNotFoundError (also KeyError)        no optimization run of that name
    ├── RegistryError                           the registry itself is the problem
    │   ├── NotARegistryError                   path is a file, a work tree, foreign data
    │   ├── UnsupportedFormatError              written by a newer progreg
    │   │   └── UnsupportedObjectFormatError    SHA-256 objects (also a BundleError)
    │   ├── CorruptProgramError                 a stored program cannot be decoded
    │   │   └── DamagedObjectError              a Git object is damaged or missing
    │   ├── RegistryBusyError                   could not take the write lock in time
    │   ├── DiskFullError                       no space left where the registry lives
    │   └── ReadOnlyRegistryError               read-only file system, or no permission
    ├── BundleError (also ValueError)           a bundle or export file cannot be imported
    ├── RemoteError                             talking to a remote failed
    │   ├── AuthenticationError                 the remote refused the credentials
    │   └── PushRejectedError                   the remote refused the push (reason inside)
    ├── SigningError                            a commit could not be signed
    └── ConflictError                           a write that would lose data is refused
"""

from __future__ import annotations


class ProgregError(Exception):
    """Base class of every error progreg raises deliberately."""


class InvalidInputError(ProgregError, ValueError):
    """An argument of a public call is not acceptable; nothing was written."""


class InvalidProgramIdError(InvalidInputError):
    """A program id is not 16 lowercase hexadecimal characters."""


class NotJSONError(InvalidInputError):
    """A value cannot be stored as JSON (NaN, infinity, a set, an arbitrary object...).

    ``path`` locates the offending value, for example ``metadata.dataset.sizes[2]``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class ProgramTooLargeError(InvalidInputError):
    """The encoded program document exceeds the registry's size limit."""


class InvalidNameError(InvalidInputError):
    """A tag, checkpoint or remote name is not a safe Git ref component."""


class SecretDetectedError(InvalidInputError):
    """A program holds API keys or other credentials; nothing was written.

    ``paths`` lists the offending fields (``state.predict.lm.api_key``, or
    ``predict.lm.api_key`` from the DSPy adapter, which names state fields);
    the secret values themselves appear nowhere in the error.
    """

    def __init__(self, message: str, paths: list[str], found: str = "") -> None:
        super().__init__(message)
        self.paths = list(paths)
        #: What was found where, as the message says it (``state.x (its name says api key)``),
        #: for front ends that word the rest of the message their own way.
        self.found = found


class UnsupportedProgramError(InvalidInputError):
    """A program object has no supported way to export or import its state."""


class ProgramNotFoundError(ProgregError, KeyError):
    """A program id is neither in the registry nor anywhere in its history."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RunNotFoundError(ProgregError, KeyError):
    """No optimization run of that name: no checkpoint branch, or one no run wrote."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistryError(ProgregError):
    """The registry on disk cannot be used as asked."""


class NotARegistryError(RegistryError):
    """The storage path is not (and cannot become) a progreg registry."""


class UnsupportedFormatError(RegistryError):
    """The registry was written in a format this progreg version does not know."""


class BundleError(ProgregError, ValueError):
    """A bundle (or a reference-format export) is malformed, incomplete or unsafe to import."""


class UnsupportedObjectFormatError(UnsupportedFormatError, BundleError):
    """A repository or bundle uses an object format other than SHA-1 (SHA-256).

    Raised when opening a registry made with ``git init --object-format=sha256``
    and when reading a bundle of such a repository; it is an
    :class:`UnsupportedFormatError` and, for bundles, a :class:`BundleError`.
    """


class CorruptProgramError(RegistryError):
    """A program file in the registry exists but cannot be decoded or is inconsistent."""


class RegistryBusyError(RegistryError):
    """The registry's write lock could not be taken before the timeout."""


class RemoteError(ProgregError):
    """A remote could not be reached or did not answer as Git remotes do."""


class AuthenticationError(RemoteError):
    """The remote refused the credentials (or none were available)."""


class PushRejectedError(RemoteError):
    """The remote refused a push; ``reasons`` maps each refused ref to the server's words."""

    def __init__(self, message: str, reasons: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons = dict(reasons or {})


class SigningError(ProgregError):
    """Signing a commit or tag failed (no key, the signing program failed...)."""


class ConflictError(ProgregError):
    """A write was refused because it would overwrite or lose other data."""


class DamagedObjectError(CorruptProgramError):
    """A Git object of the registry cannot be read: its file under ``objects/`` is damaged or gone.

    ``object_id`` names it when known; ``progreg verify`` lists every damaged
    object and the programs that need it.
    """

    def __init__(self, message: str, object_id: str | None = None) -> None:
        super().__init__(message)
        self.object_id = object_id


class DiskFullError(RegistryError):
    """The file system holding the registry has no space left (or the quota is used up)."""


class ReadOnlyRegistryError(RegistryError):
    """The registry cannot be written: a read-only file system, or no permission."""


class LabelNotFoundError(ProgramNotFoundError):
    """A label reference (``Signature@label``) names no program: the label is not set."""
