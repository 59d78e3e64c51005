"""The documentation's examples run, and print (or, in reference pages, assert) what they show.

Every ```python block of ``README.md`` and ``docs/*.md`` is executed, in
order, in one namespace per file, in a fresh temporary working directory (so
``ProgramStorage("./dspy_storage")`` lands there). A block whose fence line is
```python skip is shown but not run.

What an example prints is what it shows, so it is checked:

- a ``print(...)`` call whose last line ends with a comment, ``print(x)  # 0.91``,
  must print exactly the comment's text (all the call printed, lines joined);
- a ```text output block right after a python block is everything that
  block prints.

``...`` in an expected output stands for any text (an id, a commit, a time).
The guides (:data:`GUIDES`) hold no ``assert``: every ``print`` of theirs
shows its output, and the exact rules live in the reference pages and tests.

Shell blocks (```sh) are shown, not run, except those whose first command
starts with ``git ``: each of their lines is a ``git`` command that runs,
without a shell, in the same directory after the python blocks above it, and
must succeed. That checks the ``git`` commands the docs suggest against the
registry their own examples created.
"""

from __future__ import annotations

import ast
import builtins
import io
import logging
import re
import shlex
import subprocess
import sys
import textwrap
import tokenize
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mkdocs.utils.yaml import yaml_load

from progreg import events

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The guides: stories a newcomer follows, whose examples show, never assert.
GUIDES = (
    "start.md",
    "index.md",
    "manager.md",
    "sharing.md",
    "review.md",
    "ci.md",
    "dspy.md",
    "runs.md",
    "labels.md",
)

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


@dataclass
class Printed:
    """What the prints of one python block wrote, by the line of the block that called them."""

    block: Block
    lines: dict[int, list[str]] = field(default_factory=dict)
    everything: io.StringIO = field(default_factory=io.StringIO)

    def print(
        self, *values: object, sep: str | None = " ", end: str | None = "\n", **rest: object
    ) -> None:
        """``print``, recorded (a print to another file than stdout goes there untouched)."""
        target = rest.get("file")
        if target is not None and target is not sys.stdout:
            builtins.print(*values, sep=sep, end=end, **rest)  # type: ignore[call-overload]
            return
        text = (" " if sep is None else sep).join(str(value) for value in values)
        text += "\n" if end is None else end
        self.everything.write(text)
        self.lines.setdefault(self.calling_line(), []).append(text)

    def calling_line(self) -> int:
        """The line of this block (0 when none) whose code called print, through any function."""
        frame = sys._getframe(2)
        first, last = self.block.line, self.block.line + self.block.code.count("\n")
        while frame is not None:
            if frame.f_code.co_filename == str(self.block.path) and first <= frame.f_lineno < last:
                return frame.f_lineno
            frame = frame.f_back  # type: ignore[assignment]
        return 0

    def output_of(self, first: int, last: int) -> str:
        """What the lines ``first`` to ``last`` printed, without the final newline."""
        return "".join(
            "".join(texts) for line, texts in sorted(self.lines.items()) if first <= line <= last
        ).removesuffix("\n")


@dataclass(frozen=True)
class ShownOutput:
    """A ``print(...)`` call of an example and the output its comment shows."""

    first: int  # the call's first and last line, in the Markdown file
    last: int
    expected: str | None  # None: the call shows no output


def shown_outputs(source: str) -> list[ShownOutput]:
    """The print calls of ``source`` and what the comment ending each one shows."""
    comments = {
        token.start[0]: token.string.removeprefix("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    return [
        ShownOutput(node.lineno, last, comments.get(last))
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
        and (last := node.end_lineno or node.lineno)
    ]


def matches(expected: str, actual: str) -> bool:
    """True when ``actual`` is ``expected``, where ``...`` stands for any text."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, re.DOTALL) is not None


def run_python(block: Block, namespace: dict[str, object], output: Block | None = None) -> None:
    """Execute a python block and check what it prints against what the page shows.

    ``output`` is the ```text output block that follows it, if any. Tracebacks
    point at the Markdown file's own lines.
    """
    source = "\n" * (block.line - 1) + block.code
    printed = Printed(block)
    namespace["print"] = printed.print
    try:
        exec(compile(source, str(block.path), "exec"), namespace)
    except Exception as exc:
        exc.add_note(f"in the python example at {block.where}")
        raise
    finally:
        namespace["print"] = builtins.print
    for call in shown_outputs(source):
        actual = printed.output_of(call.first, call.last)
        if call.expected is not None:
            assert matches(call.expected, actual), (
                f"{display(block.path)}:{call.last}: the example shows"
                f" {call.expected!r} but prints {actual!r}"
            )
        elif output is None and block.path.name in GUIDES:
            pytest.fail(
                f"{display(block.path)}:{call.first}: a guide's print shows no output;"
                f" end it with `# <output>`, or follow the block with ```text output"
            )
    if output is not None:
        expected = output.code.rstrip("\n")
        actual = printed.everything.getvalue().rstrip("\n")
        assert matches(expected, actual), (
            f"{output.where}: the output shown is not what {block.where} prints:\n{actual}"
        )


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
        allowed = {"python": {"skip"}, "text": {"output"}}.get(block.language, set())
        assert set(block.options) <= allowed, f"{block.where}: unknown options {block.options}"


@pytest.mark.parametrize("path", DOC_FILES, ids=display)
def test_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's python examples (and git commands) run, in order, in one namespace."""
    blocks = code_blocks(path)
    assert any(block.runs_python for block in blocks), f"{display(path)} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    with restored_global_state():
        for block, following in zip(blocks, [*blocks[1:], None], strict=True):
            if block.runs_python:
                run_python(block, namespace, output_block(following))
            elif block.runs_git:
                run_git(block, tmp_path)


def output_block(block: Block | None) -> Block | None:
    """``block`` when it is a ```text output block (the output of the python block before it)."""
    return (
        block
        if block is not None and block.language == "text" and "output" in block.options
        else None
    )


@pytest.mark.parametrize("name", GUIDES)
def test_guides_do_not_assert(name: str) -> None:
    """A guide shows results (a print and its output); its checks live in references and tests."""
    path = ROOT / "docs" / name
    asserting = [
        f"{display(path)}:{block.line + number}"
        for block in code_blocks(path)
        if block.language == "python"
        for number, line in enumerate(block.code.splitlines())
        if re.match(r"\s*assert\b", line)
    ]
    assert asserting == [], f"{name} is a guide: show results, move checks to tests: {asserting}"


def nav_pages(entry: object) -> list[str]:
    """The page files a mkdocs nav entry (a title, a list or a page) points at, anchors dropped."""
    if isinstance(entry, str):
        return [entry.split("#", 1)[0]]
    if isinstance(entry, dict):
        return [page for value in entry.values() for page in nav_pages(value)]
    if isinstance(entry, list):
        return [page for item in entry for page in nav_pages(item)]
    return []


def test_nav_has_guides_then_reference() -> None:
    """start.md comes first, then a Guides section (the guides) and a Reference one (the rest)."""
    nav = yaml_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    assert nav[0] == {"Install and first steps": "start.md"}
    sections = {title: pages for item in nav[1:] for title, pages in item.items()}
    assert list(sections) == ["Guides", "Reference"]
    guides, reference = nav_pages(sections["Guides"]), nav_pages(sections["Reference"])
    assert set(guides) == set(GUIDES) - {"start.md"}
    pages = {path.name for path in (ROOT / "docs").glob("*.md")}
    assert set(reference) >= pages - set(GUIDES), "a page of docs/ is in no nav section"
    assert not set(reference) & set(GUIDES), "a guide is listed as reference"


def test_output_block_must_follow_its_python_block() -> None:
    """A ```text output block only ever follows a python block."""
    for path in DOC_FILES:
        blocks = code_blocks(path)
        for before, block in zip([None, *blocks], blocks, strict=False):
            if output_block(block) is not None:
                assert before is not None and before.runs_python, (
                    f"{block.where}: an output block must follow a python block that runs"
                )


def test_shown_outputs_are_checked(tmp_path: Path) -> None:
    """A print comment or output block that is not what the example prints fails."""
    doc = tmp_path / "guide.md"
    doc.write_text(
        "```python\nscore = 0.91\nprint(score)  # 0.91\nprint('id', 'abc123')  # id ...\n```\n"
        "```python\nfor n in (1, 2):\n    print(n)\n```\n```text output\n1\n2\n```\n",
        encoding="utf-8",
    )
    blocks = code_blocks(doc)
    namespace: dict[str, object] = {}
    run_python(blocks[0], namespace)
    run_python(blocks[1], namespace, output_block(blocks[2]))
    doc.write_text("```python\nprint(0.92)  # 0.91\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=re.escape("shows '0.91' but prints '0.92'")):
        run_python(code_blocks(doc)[0], {})
    doc.write_text("```python\nprint(1)\n```\n```text output\n2\n```\n", encoding="utf-8")
    wrong = code_blocks(doc)
    with pytest.raises(AssertionError, match="the output shown is not"):
        run_python(wrong[0], {}, output_block(wrong[1]))


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
