"""The documentation's examples run, and assert what they show.

Every ```python block of ``README.md`` and ``docs/*.md`` is executed, in
order, in one namespace per file, in a fresh temporary working directory (so
``ProgramStorage("./dspy_storage")`` lands there). A block whose fence line is
```python skip is shown but not run.

Shell blocks (```sh) are shown, not run, except those whose first command
starts with ``git ``: each of their lines is a ``git`` command that runs,
without a shell, in the same directory after the python blocks above it, and
must succeed. That checks the ``git`` commands the docs suggest against the
registry their own examples created.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from progreg import events

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Languages a fenced block may be labelled with (an unlabelled or misspelt
#: block would silently escape testing).
LANGUAGES = frozenset({"python", "sh", "text", "json"})
#: Loggers whose configuration examples may change; restored after each file.
LOGGERS = ("progreg", "progreg.events", "progreg.git")

_OPENING = re.compile(r"^ *(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line number of the block's first line of code
    language: str
    options: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        """``file:line`` of the block, for messages."""
        return f"{display(self.path)}:{self.line}"

    @property
    def runs_python(self) -> bool:
        """True for a ```python block that is not marked ``skip``."""
        return self.language == "python" and "skip" not in self.options

    @property
    def runs_git(self) -> bool:
        """True for a ```sh block whose first command is a ``git`` command."""
        commands = shell_commands(self.code)
        return self.language == "sh" and bool(commands) and commands[0].startswith("git ")


def shell_commands(code: str) -> list[str]:
    """The non-empty, non-comment lines of a shell block."""
    return [s for s in (line.strip() for line in code.splitlines()) if s and not s.startswith("#")]


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of the Markdown file at ``path``, in order."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _OPENING.match(lines[index])
        index += 1
        if opening is None:
            continue
        fence = opening["fence"]
        words = opening["info"].split()
        start = index
        while index < len(lines) and not _closes(lines[index], fence):
            index += 1
        if index >= len(lines):
            pytest.fail(f"{display(path)}:{start}: code block is never closed")
        code = textwrap.dedent("\n".join(lines[start:index]) + "\n")
        language = words[0] if words else ""
        blocks.append(Block(path, start + 1, language, tuple(words[1:]), code))
        index += 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    candidate = line.strip()
    return len(candidate) >= len(fence) and set(candidate) == {fence[0]}


@contextmanager
def restored_global_state() -> Iterator[None]:
    """Undo what examples may change globally: event subscribers and logger settings."""
    subscribers = list(events._subscribers)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    try:
        yield
    finally:
        events._subscribers[:] = subscribers
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def run_python(block: Block, namespace: dict[str, object]) -> None:
    """Execute a python block; tracebacks point at the Markdown file's own lines."""
    source = "\n" * (block.line - 1) + block.code
    try:
        exec(compile(source, str(block.path), "exec"), namespace)
    except Exception as exc:
        exc.add_note(f"in the python example at {block.where}")
        raise


def run_git(block: Block, cwd: Path) -> None:
    """Run every line of a git shell block; each must be a git command that succeeds."""
    for command in shell_commands(block.code):
        assert command.startswith("git "), (
            f"{block.where}: a shell block that starts with git may only hold git commands,"
            f" not {command!r}"
        )
        result = subprocess.run(
            shlex.split(command), cwd=cwd, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (
            f"{block.where}: `{command}` exited with {result.returncode}:\n{result.stderr}"
        )


def display(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def test_docs_exist() -> None:
    """The three documents of docs/ are there (and so are tested below)."""
    names = {path.name for path in DOC_FILES}
    assert {"README.md", "index.md", "format.md", "events.md"} <= names


@pytest.mark.parametrize("path", DOC_FILES, ids=display)
def test_blocks_are_labelled(path: Path) -> None:
    """Every code block says its language, so none escapes these tests by accident."""
    for block in code_blocks(path):
        assert block.language in LANGUAGES, (
            f"{block.where}: code block language {block.language!r} is not one of"
            f" {sorted(LANGUAGES)}"
        )
        allowed = {"skip"} if block.language == "python" else set()
        assert set(block.options) <= allowed, f"{block.where}: unknown options {block.options}"


@pytest.mark.parametrize("path", DOC_FILES, ids=display)
def test_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's python examples (and git commands) run, in order, in one namespace."""
    blocks = code_blocks(path)
    assert any(block.runs_python for block in blocks), f"{display(path)} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    with restored_global_state():
        for block in blocks:
            if block.runs_python:
                run_python(block, namespace)
            elif block.runs_git:
                run_git(block, tmp_path)


def test_block_parser(tmp_path: Path) -> None:
    """The parser finds fences, languages, options and line numbers."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n```python\nx = 1\n```\n\ntext\n\n````sh\ngit log\n```\nstill sh\n````\n"
        "```python skip\nboom()\n```\n",
        encoding="utf-8",
    )
    blocks = [(b.line, b.language, b.options, b.code) for b in code_blocks(doc)]
    assert blocks == [
        (4, "python", (), "x = 1\n"),
        (10, "sh", (), "git log\n```\nstill sh\n"),
        (15, "python", ("skip",), "boom()\n"),
    ]


def quick_start_commands() -> list[str]:
    """The commands of the README's quick start section, in order."""
    readme = ROOT / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    start = lines.index("## Quick start") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [
        command
        for block in code_blocks(readme)
        if block.language == "sh" and start < block.line <= end
        for command in shell_commands(block.code)
    ]


def test_quick_start_has_two_commands_and_ci_runs_the_second() -> None:
    """The quick start is two commands: run the demo, run the suite; CI runs the second verbatim."""
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    demo, suite = commands
    assert demo.endswith("progreg demo"), demo
    assert suite.endswith("-m pytest"), suite
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert suite in shell_commands(ci), ".ci/run must run the README's test command verbatim"
    # ... in a fresh clone placed in an empty temporary directory.
    assert "mktemp -d" in ci
    assert "git clone" in ci


def test_project_reaches_nothing_outside_itself() -> None:
    """No test, benchmark or source file reaches for a folder beside the checkout."""
    tracked = subprocess.run(
        ["git", "ls-files", "*.py", ".ci/*", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    beside = re.compile(r"\.\./shared|parents\[\d+\]\s*/\s*\"shared\"|\"shared\"\s*/\s*\"bench\"")
    offenders = [name for name in tracked if beside.search((ROOT / name).read_text())]
    assert offenders == []
