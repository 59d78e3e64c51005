"""Helpers for the tests of packs and their merges."""

from __future__ import annotations

from pathlib import Path

from progreg import ProgramStorage
from progreg.git.pack.packstore import InstalledPack


def each_save_its_own_pack(storage: ProgramStorage) -> None:
    """Close the open pack after every write, so that each save leaves a pack of its own."""
    original = storage.registry.git.tail.write

    def write(*args: object, **kwargs: object) -> tuple[InstalledPack, Path | None]:
        storage.registry.git.tail.close()
        return original(*args, **kwargs)  # type: ignore[arg-type]

    storage.registry.git.tail.write = write  # type: ignore[method-assign]
