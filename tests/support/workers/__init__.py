"""Scripts the tests run as child processes: writers, crash and fault drivers.

Each is started as ``python <script>``; one that imports from ``support`` is
given :data:`TESTS` on its ``PYTHONPATH`` by the test that starts it.
"""

from __future__ import annotations

from pathlib import Path

#: This folder, where the scripts are.
WORKERS = Path(__file__).resolve().parent

#: The tests folder, on whose path ``support`` is a package.
TESTS = WORKERS.parents[1]
