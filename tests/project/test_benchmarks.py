"""benchmarks/run.py runs and prints every row; no timing assertions (the benchmark judges)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
QUERIES = ["find_programs", "get_best_program", "get_optimization_history", "list_programs", "tags"]


def row_names() -> list[str]:
    """The fixed row names of run.py, plus the per-query and per-memory rows."""
    tree = ast.parse(RUN.read_text())
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "ROW_NAMES" for t in node.targets
        ):
            assert isinstance(node.value, ast.List)
            names = [str(e.value) for e in node.value.elts if isinstance(e, ast.Constant)]
    assert names, "ROW_NAMES not found in benchmarks/run.py"
    names += [f"{q} warm" for q in QUERIES] + [f"{q} first (fresh process)" for q in QUERIES]
    memory = ["save", "load", *QUERIES, "gc", "export", "import"]
    return [*names, *(f"peak memory: {op}" for op in memory)]


def test_smoke_run_prints_every_row() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for name in row_names():
        assert any(line.startswith(name + " ") for line in lines), f"row {name!r} missing"
    assert "PASS" in done.stdout
    assert "Noise:" in done.stdout
