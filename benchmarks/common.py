"""What the benchmark scripts share: the project's workload and baseline store.

They live in ``tests/support/`` (``workload.py``, ``reference_store.py``, ``secrets_corpus.py``),
where the test suite uses them too; ``tests/`` is put on ``sys.path`` once, as pytest does.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from support import secrets_corpus, workload  # noqa: E402
from support.reference_store import ReferenceStore  # noqa: E402
from support.servers import start_git_daemon, wait_for_port  # noqa: E402

__all__ = ["ReferenceStore", "secrets_corpus", "start_git_daemon", "wait_for_port", "workload"]
