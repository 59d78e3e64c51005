"""What the tests share that is not a fixture: git helpers, servers, workloads, workers.

``tests/`` is on ``sys.path`` (the root conftest's folder, pytest's default import
mode), so test modules import these as ``from support.gitcli import git``.
"""
