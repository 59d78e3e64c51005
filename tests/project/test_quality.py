"""The code stays lint-clean and type-checks strictly: checked on every test run."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_check_is_clean() -> None:
    done = run("ruff", "check", "src", "tests", "benchmarks")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_format_is_clean() -> None:
    done = run("ruff", "format", "--check", "src", "tests", "benchmarks")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_is_clean() -> None:
    done = run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_fuzz_script_imports_names_that_exist() -> None:
    # fuzz/fuzz_readers.py runs by hand with atheris (not installed here), so nothing else
    # imports it: its progreg imports went stale once already when modules moved.
    tree = ast.parse((ROOT / "fuzz" / "fuzz_readers.py").read_text())
    imports = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("progreg")
    ]
    assert imports
    for node in imports:
        module = importlib.import_module(str(node.module))
        for alias in node.names:
            found = hasattr(module, alias.name)
            if not found:  # a submodule: `from progreg.git.pack import format`
                importlib.import_module(f"{node.module}.{alias.name}")
