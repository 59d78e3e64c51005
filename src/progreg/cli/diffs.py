"""``progreg diff ID1 ID2``: the structural summary, then the unified diff.

On a terminal (or with ``--color``) removed lines are red and added ones
green; instruction changes and paired changed lines of the unified diff
highlight the words that changed. Without colour, the instruction changes
are marked ``[-removed-]{+added+}`` as ``git diff --word-diff=plain`` does.
``--json`` prints ``ProgramComparison.model_dump(mode="json")``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

import click

from progreg import ComparedProgram, ProgramComparison
from progreg.cli.context import Context
from progreg.cli.output import (
    ProgregCommand,
    color_option,
    echo_json,
    format_time,
    json_option,
    open_manager,
    use_color,
)
from progreg.cli.params import PROGRAM_ID
from progreg.cli.render import format_score
from progreg.cli.terminal import visible

Style = Callable[[str], str]
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def _plain(text: str) -> str:
    return text


def _styler(color: bool, **style: bool | str) -> Style:
    if not color:
        return _plain
    return lambda text: click.style(text, **style)  # type: ignore[arg-type]


def colored_word_diff(old: str, new: str) -> str:
    """The new text with removed words in red and added words in green (no markers)."""
    red, green = _styler(True, fg="red", bold=True), _styler(True, fg="green", bold=True)
    a, b = old.split(), new.split()
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            parts.append(" ".join(a[i1:i2]))
            continue
        if i2 > i1:
            parts.append(red(" ".join(a[i1:i2])))
        if j2 > j1:
            parts.append(green(" ".join(b[j1:j2])))
    return " ".join(parts)


def _side(label: str, side: ComparedProgram) -> str:
    return visible(
        f"{label}  {side.program_id}  {side.signature_class or '-'}  {side.optimizer or '-'}"
        f"  score {format_score(side.score)}  saved {format_time(side.saved_at)}"
    )


def summary_lines(comparison: ProgramComparison, color: bool) -> list[str]:
    """The structural summary: both programs, score change, then what changed where."""
    diff = comparison.diff
    bold = _styler(color, bold=True)
    lines = [
        bold(_side("program 1", comparison.program_1)),
        bold(_side("program 2", comparison.program_2)),
    ]
    change = diff.score_change
    if change is not None:
        better = comparison.comparison.better_program
        verdict = "tie" if better is None else f"{better} is better"
        lines.append(f"score change: {change:+.4f} ({verdict})")
    if diff.optimizer_change is not None:
        old, new = diff.optimizer_change
        lines.append(visible(f"optimizer: {old or '-'} -> {new or '-'}"))
    for predictor in diff.predictors_added:
        lines.append(visible(f"predictor added: {predictor}"))
    for predictor in diff.predictors_removed:
        lines.append(visible(f"predictor removed: {predictor}"))
    for change_ in diff.instructions:
        old_text, new_text = visible(change_.old), visible(change_.new)
        words = colored_word_diff(old_text, new_text) if color else visible(change_.word_diff)
        lines.append(visible(f"instructions of {change_.predictor}:"))
        lines.append(f"  {words}")
    if diff.demos:
        per = ", ".join(f"{d.predictor} +{d.added} -{d.removed}" for d in diff.demos)
        lines.append(visible(f"demos: +{diff.demos_added} -{diff.demos_removed} ({per})"))
    for field in diff.fields:
        keys = f": {', '.join(field.changed_keys)}" if field.changed_keys else ""
        lines.append(visible(f"field {field.predictor}[{field.index}] {field.change}{keys}"))
    changes = (diff.instructions, diff.demos, diff.fields, diff.predictors_added)
    if not any(changes) and not diff.predictors_removed:
        lines.append("no change to instructions, demos, fields or predictors")
    if diff.bookkeeping_only:
        lines.append("same content: the files differ only in id, saved_at and provenance")
    elif diff.unified:
        lines.append(f"files: +{diff.added_lines} -{diff.removed_lines} lines")
    else:
        lines.append("the two program files are identical")
    return lines


def _highlight_pair(old: str, new: str) -> tuple[str, str]:
    """A removed and an added line with the tokens that differ in reverse video."""
    a, b = _TOKENS.findall(old[1:]), _TOKENS.findall(new[1:])
    red, green = _styler(True, fg="red"), _styler(True, fg="green")
    red_hi, green_hi = (
        _styler(True, fg="red", reverse=True),
        _styler(True, fg="green", reverse=True),
    )
    left, right = [red("-")], [green("+")]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        old_part, new_part = "".join(a[i1:i2]), "".join(b[j1:j2])
        if tag == "equal":
            left.append(red(old_part))
            right.append(green(new_part))
        else:
            left.append(red_hi(old_part) if old_part else "")
            right.append(green_hi(new_part) if new_part else "")
    return "".join(left), "".join(right)


def _flush(removed: list[str], added: list[str], out: list[str]) -> None:
    red, green = _styler(True, fg="red"), _styler(True, fg="green")
    if removed and len(removed) == len(added):
        pairs = [_highlight_pair(old, new) for old, new in zip(removed, added, strict=True)]
        out.extend(old for old, _ in pairs)
        out.extend(new for _, new in pairs)
    else:
        out.extend(red(line) for line in removed)
        out.extend(green(line) for line in added)
    removed.clear()
    added.clear()


def colored_patch(patch: str) -> list[str]:
    """The unified diff coloured as ``git diff`` does, with changed words highlighted."""
    bold, cyan = _styler(True, bold=True), _styler(True, fg="cyan")
    out: list[str] = []
    removed: list[str] = []
    added: list[str] = []
    in_header = True
    for line in patch.splitlines():
        if line.startswith("@@"):
            in_header = False
        if in_header or line.startswith("diff --git"):
            _flush(removed, added, out)
            in_header = True
            out.append(bold(line))
        elif line.startswith("@@"):
            _flush(removed, added, out)
            out.append(cyan(line))
        elif line.startswith("-"):
            if added:
                _flush(removed, added, out)
            removed.append(line)
        elif line.startswith("+"):
            added.append(line)
        else:
            _flush(removed, added, out)
            out.append(line)
    _flush(removed, added, out)
    return out


@click.command(cls=ProgregCommand)
@click.argument("first", type=PROGRAM_ID, metavar="ID1")
@click.argument("second", type=PROGRAM_ID, metavar="ID2")
@color_option
@json_option
@click.pass_obj
def diff(ctx: Context, first: str, second: str, color: bool | None, as_json: bool) -> None:
    """Compare two programs: what changed from ID1 (old side) to ID2 (new side).

    First a structural summary (score change, optimizer, instructions with a
    word-level diff, demos added and removed, fields, predictors), then the
    unified diff of the two program files, left out when they hold the same
    content (only ids, saved_at and provenance differ). --json prints {program_1,
    program_2, comparison, diff}. Exits with 3 if either is missing.

    \b
    Example:
      progreg diff 1a2b3c4d5e6f7a8b 9f8e7d6c5b4a3210
      progreg diff 1a2b3c4d5e6f7a8b 9f8e7d6c5b4a3210 --no-color | less
    """
    comparison = open_manager(ctx).compare_programs(first, second)
    if as_json:
        echo_json(comparison.model_dump(mode="json"))
        return
    colored = use_color(color)
    for line in summary_lines(comparison, colored):
        click.echo(line, color=colored)
    if comparison.diff.unified and not comparison.diff.bookkeeping_only:
        click.echo("", color=colored)
        patch = visible(comparison.diff.unified)
        for line in colored_patch(patch) if colored else patch.splitlines():
            click.echo(line, color=colored)
