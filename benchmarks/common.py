"""What the benchmark scripts share: the workload beside the project, imported by path.

``../shared/bench`` (workload.py, files_store.py) is put on ``sys.path`` once;
the modules are used from there, never copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench"
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

import files_store  # noqa: E402
import workload  # noqa: E402

__all__ = ["SHARED", "files_store", "workload"]
