"""What a range of commits changes, in progreg's terms: the summary of a pull request.

:func:`review_range` reads two revisions of a registry (a bare registry or
any clone of one, ``BASE..HEAD`` as Git spells a pull request) and reports:

* the programs added, changed and removed, each with its score before and
  after and its optimizer;
* for a changed program: each string field that changed, as a word diff
  (instructions read as prose), each demo list whose length changed, and
  the paths of every other value that changed;
* per signature touched: its best program before and after (the best of
  ``main``'s rule: the highest score), and whether the change makes another
  program the best;
* what the server's hook would refuse in those commits (invalid or
  non-canonical files, credentials, lying trailers).

:func:`to_markdown` writes it as a pull-request comment; the model is its
JSON (``progreg review --json``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pygit2
from pydantic import BaseModel, ConfigDict, Field

from progreg.core import canonical
from progreg.core.docmerge import differences
from progreg.core.document import PROVENANCE_KEYS, ProgramDocument, decode_document
from progreg.core.ids import program_id_of_path
from progreg.core.layout import LABELS_DIR, PROGRAMS_DIR
from progreg.errors import InvalidInputError, ProgregError
from progreg.registry.compare import RunKind, word_runs
from progreg.registry.labelfiles import all_labels
from progreg.registry.validation import resolve_range, tree_files, validate_commits

#: Values whose change is bookkeeping of a save, not a change to review.
_BOOKKEEPING = ("saved_at", *(f"metadata.{key}" for key in PROVENANCE_KEYS))
_WORDS = re.compile(r"\s+|\S+")


class ScoreChange(BaseModel):
    """A score before and after (``None``: the program had none, or did not exist)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        """``after - before``, when both exist."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


class TextChange(BaseModel):
    """A string value that changed, as a word diff."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str = Field(description="where the value is (program_data.state....instructions)")
    words: list[tuple[RunKind, str]] = Field(
        description="the text in runs: kept, removed and added words (with their spaces)"
    )


class ProgramChange(BaseModel):
    """One program the range adds, changes or removes."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    program_id: str
    status: Literal["added", "changed", "removed"]
    signature_class: str | None
    optimizer: str | None = Field(description="the optimizer of the newer version")
    score: ScoreChange
    texts: list[TextChange] = Field(default_factory=list)
    demos: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="each demo list whose length changed: before, after"
    )
    other_changes: list[str] = Field(
        default_factory=list, description="paths of the other values that changed"
    )


class SignatureChange(BaseModel):
    """A signature the range touches, and its best program before and after."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    signature_class: str | None
    best_before: str | None
    best_after: str | None
    score: ScoreChange = Field(description="the best score before and after")

    @property
    def best_changes(self) -> bool:
        """True when another program is the best after the range."""
        return self.best_before != self.best_after


class LabelChange(BaseModel):
    """A deployment label the range moves, sets or removes (``labels/<signature>.json``)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    signature: str
    label: str
    before: str | None = Field(description="the program it named at the base (None: unset)")
    after: str | None = Field(description="the program it names at the head (None: removed)")


class ReviewReport(BaseModel):
    """What the commits ``base..head`` change: programs, signatures' best, findings."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    base: str = Field(description="the commit the range starts from (excluded)")
    head: str = Field(description="the last commit of the range")
    commits: int = Field(description="how many commits the range holds")
    programs: list[ProgramChange]
    signatures: list[SignatureChange]
    problems: list[str] = Field(description="what the server's hook would refuse, by commit")
    labels: list[LabelChange] = Field(
        default_factory=list, description="the deployment labels the range moves"
    )

    @property
    def ok(self) -> bool:
        """True when the hook would accept every commit of the range."""
        return not self.problems

    def to_markdown(self) -> str:
        """The report as a pull-request comment (GitHub and GitLab flavoured Markdown)."""
        return to_markdown(self)


def review_range(path: str | Path, spec: str) -> ReviewReport:
    """Review ``spec`` (``BASE..HEAD``; ``REV`` alone: ``REV~1..REV``) in the Git
    repository at (or containing) ``path``: a bare registry or a clone of one."""
    repo = _open(Path(path))
    base, head = _range(repo, spec)
    before, after = _programs(repo, base.tree), _programs(repo, head.tree)
    changed = sorted(
        program_id
        for program_id in {*before, *after}
        if before.get(program_id, (None,))[0] != after.get(program_id, (None,))[0]
    )
    programs = [
        _program_change(program_id, before.get(program_id), after.get(program_id))
        for program_id in changed
    ]
    signatures = _signature_changes(before, after, {p.signature_class for p in programs})
    commits, problems = validate_commits(repo, base, head)
    return ReviewReport(
        base=str(base.id),
        head=str(head.id),
        commits=commits,
        programs=programs,
        signatures=signatures,
        problems=[str(problem) for problem in problems],
        labels=_label_changes(repo, base.tree, head.tree),
    )


def _label_changes(
    repo: pygit2.Repository, base: pygit2.Tree, head: pygit2.Tree
) -> list[LabelChange]:
    """Each label whose program differs between the two trees (an unreadable label file:
    none listed, the findings say what is wrong with it)."""
    old_dir = base[LABELS_DIR].id if LABELS_DIR in base else None
    new_dir = head[LABELS_DIR].id if LABELS_DIR in head else None
    if old_dir == new_dir:
        return []
    try:
        before, after = all_labels(repo, base), all_labels(repo, head)
    except ProgregError:
        return []
    changes = []
    for signature in sorted({*before, *after}):
        old_labels, new_labels = before.get(signature, {}), after.get(signature, {})
        for label in sorted({*old_labels, *new_labels}):
            old, new = old_labels.get(label), new_labels.get(label)
            if old != new:
                changes.append(LabelChange(signature=signature, label=label, before=old, after=new))
    return changes


# -- reading ----------------------------------------------------------------------------

_Version = tuple[str, ProgramDocument | None, dict[str, Any] | None]


def _open(path: Path) -> pygit2.Repository:
    found = pygit2.discover_repository(str(path))
    if found is None:
        raise InvalidInputError(f"{path} is not in a Git repository: nothing to review")
    return pygit2.Repository(found)


def _range(repo: pygit2.Repository, spec: str) -> tuple[pygit2.Commit, pygit2.Commit]:
    if not isinstance(spec, str) or not spec or "..." in spec:
        raise InvalidInputError(f"review needs a range BASE..HEAD (or one revision), not {spec!r}")
    base, head = resolve_range(repo, spec if ".." in spec else f"{spec}~1..{spec}")
    assert base is not None  # a range names both ends
    return base, head


def _programs(repo: pygit2.Repository, tree: pygit2.Tree) -> dict[str, _Version]:
    """``{program id: (blob id, document, decoded JSON)}`` of a tree (unreadable: ``None``)."""
    found: dict[str, _Version] = {}
    if PROGRAMS_DIR not in tree:
        return found
    for path, _, oid in tree_files(repo, tree):
        program_id = program_id_of_path(path)
        if program_id is None:
            continue
        blob = repo[oid]
        data = blob.data if isinstance(blob, pygit2.Blob) else b""
        try:
            found[program_id] = (str(oid), decode_document(data, path), canonical.decode(data))
        except ProgregError:  # the findings say what is wrong with it
            found[program_id] = (str(oid), None, None)
    return found


# -- comparing --------------------------------------------------------------------------


def _program_change(program_id: str, old: _Version | None, new: _Version | None) -> ProgramChange:
    old_doc, new_doc = (old[1] if old else None), (new[1] if new else None)
    latest = new_doc or old_doc
    status: Literal["added", "changed", "removed"] = (
        "added" if old is None else "removed" if new is None else "changed"
    )
    texts: list[TextChange] = []
    demos: dict[str, tuple[int, int]] = {}
    others: list[str] = []
    if old is not None and new is not None and old[2] is not None and new[2] is not None:
        for path, before, after in differences(old[2], new[2]):
            if path in _BOOKKEEPING:
                continue
            if isinstance(before, str) and isinstance(after, str):
                texts.append(TextChange(path=path, words=word_diff(before, after)))
            elif isinstance(before, list) and isinstance(after, list) and path.endswith("demos"):
                if len(before) != len(after):
                    demos[path] = (len(before), len(after))
                else:
                    others.append(path)
            else:
                others.append(path)
    return ProgramChange(
        program_id=program_id,
        status=status,
        signature_class=latest.signature_class if latest is not None else None,
        optimizer=latest.optimizer if latest is not None else None,
        score=ScoreChange(
            before=old_doc.best_score if old_doc is not None else None,
            after=new_doc.best_score if new_doc is not None else None,
        ),
        texts=texts,
        demos=demos,
        other_changes=others,
    )


def word_diff(before: str, after: str) -> list[tuple[RunKind, str]]:
    """``before`` turned into ``after`` word by word: runs of kept, removed and added text,
    the spaces kept with the words (:func:`~progreg.registry.compare.word_runs`)."""
    runs = word_runs(_WORDS.findall(before), _WORDS.findall(after))
    return [(kind, "".join(words)) for kind, words in runs]


def _signature_changes(
    before: dict[str, _Version], after: dict[str, _Version], touched: set[str | None]
) -> list[SignatureChange]:
    old_bests, new_bests = _bests(before), _bests(after)
    changes = []
    for signature in sorted(touched, key=lambda name: (name is None, name or "")):
        old_best, new_best = old_bests.get(signature), new_bests.get(signature)
        changes.append(
            SignatureChange(
                signature_class=signature,
                best_before=old_best[0] if old_best else None,
                best_after=new_best[0] if new_best else None,
                score=ScoreChange(
                    before=old_best[1] if old_best else None,
                    after=new_best[1] if new_best else None,
                ),
            )
        )
    return changes


def _bests(programs: dict[str, _Version]) -> dict[str | None, tuple[str, float]]:
    """Each signature's program with the highest score (ties: the later save), in one pass."""
    found: dict[str | None, tuple[float, Any, str]] = {}
    for program_id, (_, document, _) in programs.items():
        if document is None or document.best_score is None:
            continue
        entry = (document.best_score, document.saved_at, program_id)
        signature = document.signature_class
        if signature not in found or entry > found[signature]:
            found[signature] = entry
    return {signature: (entry[2], entry[0]) for signature, entry in found.items()}


# -- Markdown ----------------------------------------------------------------------------


def to_markdown(report: ReviewReport) -> str:
    """The report as a pull-request comment (GitHub and GitLab flavoured Markdown)."""
    counts = dict.fromkeys(("added", "changed", "removed"), 0)
    for program in report.programs:
        counts[program.status] += 1
    lines = [
        f"### progreg review: {len(report.programs)} program(s) changed"
        f" ({counts['added']} added, {counts['changed']} changed, {counts['removed']} removed)",
        "",
        f"`{report.base[:12]}..{report.head[:12]}`, {report.commits} commit(s).",
        "",
    ]
    if report.programs:
        lines += [
            "| Program | Signature | Change | Score | Optimizer |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{p.program_id}` | {_cell(p.signature_class)} | {p.status}"
            f" | {_score(p.score)} | {_cell(p.optimizer)} |"
            for p in report.programs
        ]
        lines.append("")
    for signature in report.signatures:
        name = _cell(signature.signature_class)
        if signature.best_changes:
            lines.append(
                f"**Best {name}** is now {_id(signature.best_after)} ({_score(signature.score)}),"
                f" was {_id(signature.best_before)}."
            )
        else:
            lines.append(
                f"Best {name} stays {_id(signature.best_after)} ({_score(signature.score)})."
            )
    lines.append("")
    if report.labels:
        lines += ["| Label | From | To |", "|---|---|---|"]
        lines += [
            f"| {_cell(f'{change.signature}@{change.label}')} | {_id(change.before)}"
            f" | {_id(change.after)} |"
            for change in report.labels
        ]
        lines.append("")
    for program in report.programs:
        details = _details(program)
        if details:
            lines += [f"#### `{program.program_id}` ({_cell(program.signature_class)})", ""]
            lines += details
            lines.append("")
    if report.problems:
        lines += [f"**The server's hook would refuse {len(report.problems)} thing(s):**", ""]
        lines += [f"- {_escape(problem)}" for problem in report.problems[:50]]
    else:
        lines.append("The server's hook would accept every commit.")
    return "\n".join(lines).rstrip() + "\n"


def _details(program: ProgramChange) -> list[str]:
    lines = []
    for text in program.texts:
        parts, previous = [], ""
        for kind, words in text.words:
            part = _marked(kind, words)
            if previous == "removed" and kind == "added" and not part.startswith(" "):
                part = f" {part}"  # a replacement: the struck words, then the new ones
            parts.append(part)
            previous = kind
        lines += [f"- `{text.path}`:", f"  > {''.join(parts).strip()}"]
    for path, (old, new) in program.demos.items():
        lines.append(f"- `{path}`: {old} → {new} demos")
    if program.other_changes:
        shown = ", ".join(f"`{path}`" for path in program.other_changes[:20])
        more = len(program.other_changes) - 20
        lines.append(f"- also changed: {shown}" + (f" and {more} more" if more > 0 else ""))
    return lines


def _marked(kind: str, words: str) -> str:
    """A run of a word diff in Markdown: removed words struck through, added ones bold,
    the spaces around them outside the marks (Markdown ignores marks around spaces)."""
    core = words.strip()
    if kind == "same" or not core:
        return " " if not core and kind == "added" and words else _escape(words)
    lead = words[: len(words) - len(words.lstrip())]
    trail = words[len(words.rstrip()) :]
    mark = "~~" if kind == "removed" else "**"
    return f"{' ' if lead else ''}{mark}{_escape(core)}{mark}{' ' if trail else ''}"


def _score(score: ScoreChange) -> str:
    def one(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    delta = score.delta
    if score.before == score.after:
        return one(score.after)
    change = "" if delta is None else f" ({delta:+.4f})"
    return f"{one(score.before)} → {one(score.after)}{change}"


def _id(program_id: str | None) -> str:
    return "none" if program_id is None else f"`{program_id}`"


def _cell(text: str | None) -> str:
    return "-" if not text else _escape(text).replace("|", "\\|")


_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#|~])")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(text: str) -> str:
    """Stored text as Markdown shows it literally, control characters written as escapes."""
    plain = _CONTROLS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return _MARKDOWN.sub(r"\\\1", plain).replace("\n", " ")


__all__ = [
    "LabelChange",
    "ProgramChange",
    "ReviewReport",
    "ScoreChange",
    "SignatureChange",
    "TextChange",
    "review_range",
    "to_markdown",
    "word_diff",
]
