"""Where a registry is: the environment variables that name it, and the default path.

Every entry point (``ProgramStorage()``, ``StorageManager()``,
``StorageConfig()`` and the ``progreg`` command) reads the same variables in
the same order. This module imports nothing heavy, so that the command line
can name them before it loads anything else.
"""

from __future__ import annotations

import os

#: The environment variable naming the registry, honoured by every entry point.
PATH_ENV = "PROGREG_PATH"
#: Another name of :data:`PATH_ENV`, used when that one is unset or empty.
PATH_ENV_ALIAS = "PROGREG_STORAGE_PATH"
#: The registry used when neither variable is set.
DEFAULT_PATH = "./dspy_storage"


def path_in_environment() -> str | None:
    """``$PROGREG_PATH``, else ``$PROGREG_STORAGE_PATH``; ``None`` when neither is set."""
    return os.environ.get(PATH_ENV) or os.environ.get(PATH_ENV_ALIAS) or None


def registry_path_from_environment() -> str:
    """The registry's path: ``$PROGREG_PATH``, else ``$PROGREG_STORAGE_PATH``, else the default."""
    return path_in_environment() or DEFAULT_PATH
