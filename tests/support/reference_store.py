"""The folder-of-JSON design progreg replaces, as a baseline and as a source to migrate from.

This is how the reference storage system keeps programs in ``dspy_storage/``:
``programs/<id>.json`` holds one pretty-printed document per program
(``program_id``, ``saved_at``, ``program_data``, ``optimization_result``,
``metadata``), and ``history.json`` indexes them (``{"programs": [...],
"summary": {...}}``). Every save rewrites the whole index in place: read it,
change it, write it back, with no lock and no atomic rename. That makes a save
cost grow with the number of programs, and two concurrent writers lose each
other's entries. Benchmarks time it as "what a user has today"; migration
tests use it to write real folders to import.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HISTORY_FILE = "history.json"
PROGRAMS_DIR = "programs"


class ReferenceStore:
    """A ``dspy_storage/`` folder written the reference system's way."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / PROGRAMS_DIR).mkdir(parents=True, exist_ok=True)

    def _index(self) -> dict[str, Any]:
        path = self.root / HISTORY_FILE
        if not path.exists():
            return {"programs": [], "summary": {}}
        index: dict[str, Any] = json.loads(path.read_text())
        return index

    def save_program(
        self,
        program: dict[str, Any],
        optimization_result: dict[str, Any],
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Write the program's file, then rewrite the whole index; return the new id."""
        metadata = dict(metadata or {})
        program_id = secrets.token_hex(8)
        saved_at = datetime.now(UTC).isoformat()
        document = {
            "program_id": program_id,
            "saved_at": saved_at,
            "program_data": program,
            "optimization_result": optimization_result,
            "metadata": metadata,
        }
        (self.root / PROGRAMS_DIR / f"{program_id}.json").write_text(json.dumps(document, indent=2))

        index = self._index()
        index["programs"].append(
            {
                "program_id": program_id,
                "saved_at": saved_at,
                "best_score": optimization_result.get("best_score_value"),
                "score_name": optimization_result.get("best_score_name"),
                "optimizer": (optimization_result.get("metadata") or {}).get("optimizer"),
                "signature_class": metadata.get("signature_class"),
                "metadata": metadata,
            }
        )
        scores = [
            entry["best_score"] for entry in index["programs"] if entry["best_score"] is not None
        ]
        index["summary"] = {
            "total_programs": len(index["programs"]),
            "avg_score": sum(scores) / len(scores) if scores else 0.0,
            "latest_save": saved_at,
        }
        (self.root / HISTORY_FILE).write_text(json.dumps(index, indent=2))
        return program_id

    def load_program(self, program_id: str) -> dict[str, Any] | None:
        """The stored document of ``program_id``, or ``None``."""
        path = self.root / PROGRAMS_DIR / f"{program_id}.json"
        if not path.exists():
            return None
        document: dict[str, Any] = json.loads(path.read_text())
        return document

    def list_programs(self) -> list[dict[str, Any]]:
        """The index's entries, oldest first."""
        entries: list[dict[str, Any]] = self._index()["programs"]
        return entries

    def find_programs(
        self, signature_class: str | None = None, min_score: float | None = None
    ) -> list[dict[str, Any]]:
        """Index entries of ``signature_class`` scoring at least ``min_score``."""
        return [
            entry
            for entry in self.list_programs()
            if (signature_class is None or entry["signature_class"] == signature_class)
            and (min_score is None or (entry["best_score"] or 0.0) >= min_score)
        ]
