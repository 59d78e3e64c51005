"""What every subcommand shares: the options of ``progreg`` itself and the exit codes.

Errors are one line on stderr (``--debug`` shows the traceback) with exit
code 1 for a progreg error, 2 for bad usage and 3 for "not found".
"""

from __future__ import annotations

from pathlib import Path

EXIT_ERROR = 1
EXIT_NOT_FOUND = 3


class Context:
    """Where the registry is and how to report, as ``progreg``'s own options say."""

    def __init__(
        self,
        registry: Path | None,
        debug: bool,
        durable: bool | None = None,
        rev: str | None = None,
    ) -> None:
        self.registry = registry
        self.debug = debug
        #: ``--rev``: read the registry at this revision (read-only).
        self.rev = rev
        #: ``--durable`` / ``--no-durable``; ``None`` leaves it to PROGREG_DURABLE and Git config.
        self.durable = durable
        #: Registries this command created, as ``(registry, topmost directory created,
        #: that directory existed empty)``: removed again if the command fails.
        self.created: list[tuple[Path, Path, bool]] = []
