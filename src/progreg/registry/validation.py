"""Checks that a tree, a commit or a pushed ref update keeps a registry sound.

These are pure functions over pygit2 objects and bytes: they print nothing
and change nothing, they return :class:`Problem` records whose messages say
what to fix. The server-side hook (:mod:`progreg.integrations.hooks`) and ``progreg
validate`` (:mod:`progreg.integrations.worktree`) are thin layers over them.

**Files.** A registry tree may hold:

- ``progreg.json``: canonical JSON, an object whose ``format_version`` is an
  integer this progreg reads (required in every commit of ``main`` and of a
  checkpoint branch);
- program files at ``programs/<id[0:2]>/<id[2:4]>/<id>.json``: regular files
  of canonical JSON, at most ``max_program_bytes`` long, holding a valid
  program document whose ``program_id`` is the id of the path;
- label files at ``labels/<signature>.json``: canonical JSON objects
  ``{"<label>": "<program id>"}``; every program a label names must be in the
  same tree and solve that signature (``metadata.signature_class``), so a
  commit that removes a labelled program, or points a label at a missing
  program or at one of another signature, is refused;
- ``checkpoint.json`` on checkpoint branches (and in a checkout, which may
  be of one): canonical JSON with ``name``, ``program_id``, ``created_at``
  and ``metadata``;
- harmless files people keep next to the data: the top-level files in
  :data:`HARMLESS_FILES` (``README.md``, ``.gitattributes``,
  ``.pre-commit-config.yaml``...) and anything under the directories in
  :data:`HARMLESS_DIRS` (``.github/``, ``.gitlab/``: CI and review settings).

Anything else (``notes.txt``, ``programs/ab/cd/x.txt``, a program file in the
wrong directory, a symbolic link, a submodule) is a problem, and so is, under
any directory, a path Git itself or a checkout would trip on: a component
that is empty, ``.``, ``..`` or ``.git`` (in any case), one holding a control
character or bytes that are not UTF-8, or a path more than
:data:`MAX_PATH_DEPTH` levels deep.

**Commits.** A commit is checked by what it changes against its first parent
(a root commit by its whole tree), so a push costs time in proportion to what
it changes, not to the size of the registry; files that were already there
are not re-checked. A commit whose trailers claim a progreg action must do
what they say, because progreg trusts them to index history: ``save`` and
``restore`` write exactly the program named by ``Program-Id`` (and their
``Signature``, ``Optimizer``, ``Score``, ``Score-Name`` and ``Saved-At``
agree with its document, and so do its ``Derived-From`` and
``Derived-From-Commit``: both or neither, a program id and a full commit id,
naming what the document's ``derived_from`` names), ``delete`` removes exactly that program,
``checkpoint`` writes it, ``cleanup`` removes ``Removed-Count`` programs and
writes none, ``save-batch`` writes ``Saved-Count`` programs, removes none and
names no single program.

**Ref updates** (what a server receives):

- ``refs/heads/main`` may be created and fast-forwarded, never deleted or
  rewritten; every new commit is checked as above;
- ``refs/tags/<tag>/<program id>`` may be created, never moved or deleted;
  it must be an annotated tag pointing at a commit of ``main``'s history
  whose tree holds a valid file for that program;
- ``refs/heads/checkpoints/<name>`` may be created, fast-forwarded and
  deleted; each new commit's tree must hold ``progreg.json``, a
  ``checkpoint.json`` naming this checkpoint and exactly one program, the one
  it names;
- any other ref is refused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
import pygit2
from pygit2.enums import FileMode, SortMode

from progreg.core import canonical
from progreg.core.document import (
    DEFAULT_MAX_PROGRAM_BYTES,
    FORMAT_VERSION,
    ProgramDocument,
    decode_document,
    document_from,
)
from progreg.core.ids import is_program_id, program_id_of_path, program_path
from progreg.core.labels import decode_labels, label_file_problems, label_path, signature_of_path
from progreg.core.layout import (
    CHECKPOINTS_PREFIX,
    LABELS_DIR,
    MAIN,
    MARKER,
    PROGRAMS_DIR,
    TAGS_PREFIX,
)
from progreg.core.lineage import derived_from_problem
from progreg.core.names import check_name
from progreg.core.secrets import (
    credential_in_text,
    find_secrets,
    mask_credentials,
    may_hold_secrets,
)
from progreg.errors import InvalidInputError, NotJSONError, ProgregError, UnsupportedFormatError
from progreg.git import parse_trailers
from progreg.git.objects.treediff import TreeDiffer
from progreg.registry.checkpoints import MANIFEST
from progreg.registry.labelfiles import label_files
from progreg.registry.messages import (
    ACTION,
    DERIVED_FROM,
    DERIVED_FROM_COMMIT,
    PROGRAM_ID,
    SAVE_BATCH,
    SAVED_COUNT,
    save_message,
)

#: A ref update stops being checked once this many problems were found.
MAX_PROBLEMS_PER_REF = 200

#: Top-level files a registry may hold besides its data.
HARMLESS_FILES = frozenset(
    {
        "README",
        "README.md",
        "README.rst",
        "README.txt",
        "LICENSE",
        "LICENSE.md",
        "LICENSE.txt",
        "CODEOWNERS",
        ".gitattributes",
        ".gitignore",
        ".mailmap",
        ".editorconfig",
        ".pre-commit-config.yaml",
        ".gitlab-ci.yml",
    }
)
#: Top-level directories whose content is never checked (CI and review settings).
HARMLESS_DIRS = frozenset({".github", ".gitlab"})
#: Deepest path accepted in a registry tree (a program file is 4 levels deep).
MAX_PATH_DEPTH = 32

#: Which rules a tree follows: ``main``, a checkpoint branch, or a checkout on disk
#: (which may be of either, so ``checkpoint.json`` is allowed and checked on its own).
TreeKind = Literal["main", "checkpoint", "checkout"]

_SCORED = ("save", "restore", "checkpoint")
_CLAIMS = (*_SCORED, "delete", "cleanup", SAVE_BATCH)
_DOCUMENT_TRAILERS = ("Signature", "Optimizer", "Score", "Score-Name", "Saved-At")
_LINEAGE_TRAILERS = (DERIVED_FROM, DERIVED_FROM_COMMIT)
_FIX = "run `progreg validate --fix` in your checkout, or re-save it with progreg"


@dataclass(frozen=True)
class Problem:
    """One thing that keeps a tree, commit or ref update from being accepted."""

    message: str
    path: str | None = None
    commit: str | None = None
    ref: str | None = None
    #: The credentials' paths (``state.lm.api_key``) when the problem is that a program holds some.
    secrets: tuple[str, ...] = ()

    @property
    def shown_ref(self) -> str | None:
        """The ref as messages show it: a pushed ref name may hold a credential."""
        return None if self.ref is None else mask_credentials(self.ref)

    def __str__(self) -> str:
        commit = self.commit and f"commit {self.commit[:12]}"
        where = [part for part in (self.shown_ref, commit) if part]
        return f"{' '.join(where)}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, str | None]:
        """The problem as a JSON object (``progreg validate --json``)."""
        return {
            "ref": self.shown_ref,
            "commit": self.commit,
            "path": self.path,
            "message": self.message,
        }


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one file: its problems, and its canonical bytes when that is all it lacks."""

    problems: tuple[str, ...] = ()
    canonical: bytes | None = None
    document: ProgramDocument | None = None
    #: Where the credentials are when the problem is that the document holds some.
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class RefUpdate:
    """One line a pre-receive hook reads: ``<old> <new> <ref>`` (all zeros for none)."""

    old: str
    new: str
    ref: str

    @property
    def created(self) -> bool:
        """The ref did not exist before the push."""
        return _is_zero(self.old)

    @property
    def deleted(self) -> bool:
        """The push deletes the ref."""
        return _is_zero(self.new)


def parse_updates(text: str) -> list[RefUpdate]:
    """Parse the pre-receive input: one ``<old> <new> <ref>`` per line."""
    updates = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _UPDATE.fullmatch(line)
        if match is None:
            raise ValueError(f"unexpected hook input line {line!r}")
        updates.append(RefUpdate(*match.groups()))
    return updates


_UPDATE = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) (\S+)")


def _is_zero(oid: str) -> bool:
    return set(oid) == {"0"}


# -- files -------------------------------------------------------------------------


def kind_of_path(
    path: str,
) -> Literal["marker", "manifest", "program", "label", "harmless", "unexpected"]:
    """What a path in a registry tree is, by name alone."""
    if path == MARKER:
        return "marker"
    if path == MANIFEST:
        return "manifest"
    if program_id_of_path(path) is not None:
        return "program"
    if signature_of_path(path) is not None:
        return "label"
    top, sep, _ = path.partition("/")
    if (not sep and path in HARMLESS_FILES) or (sep and top in HARMLESS_DIRS):
        return "harmless"
    return "unexpected"


def check_file(
    path: str,
    data: bytes,
    *,
    mode: int = FileMode.BLOB,
    kind: TreeKind = "main",
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
) -> FileCheck:
    """Check one file of a registry tree: its place, its mode and its content."""
    unsafe = unsafe_path(path)
    if unsafe is not None:
        return FileCheck((unsafe,))
    what = kind_of_path(path)
    if what == "harmless":
        if mode in (FileMode.LINK, FileMode.COMMIT):
            return FileCheck((_mode_problem(path, mode),))
        return FileCheck()
    if what == "unexpected":
        return FileCheck((_unexpected(path, kind),))
    if what == "manifest" and kind == "main":
        return FileCheck(
            (
                f"{MANIFEST} belongs on checkpoint branches ({CHECKPOINTS_PREFIX}<name>),"
                " not on main: remove it",
            )
        )
    if mode != FileMode.BLOB:
        return FileCheck((_mode_problem(path, mode),))
    if what == "program":
        return _check_program(path, data, max_program_bytes)
    if what == "label":
        return _check_json_file(path, data, _label_file_problems)
    return _check_json_file(
        path, data, _marker_problems if what == "marker" else _manifest_problems
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unsafe_path(path: str) -> str | None:
    """Why ``path`` may not be in a registry tree whatever its place, or ``None``."""
    parts = path.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        return (
            f"{path[:200]} is {len(parts)} levels deep, more than the {MAX_PATH_DEPTH} a"
            " registry tree may have: remove it"
        )
    for part in parts:
        if part in ("", ".", "..") or part.casefold() == ".git":
            return (
                f"{path[:200]!r} has a path component {part!r}, which Git refuses to check out:"
                " remove it"
            )
        if _CONTROL.search(part) is not None:
            return f"{path[:200]!r} has a control character in its name: rename or remove it"
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, as pygit2 decodes them
            return f"{path[:200]!r} has a name that is not UTF-8: rename or remove it"
    return None


def _unexpected(path: str, kind: TreeKind) -> str:
    top = path.partition("/")[0]
    if top == LABELS_DIR:
        return (
            f"{path} is not a label file: under {LABELS_DIR}/ only <signature>.json files"
            " (letters, digits, '.', '_' or '-') are allowed; rename or remove it"
        )
    if top == PROGRAMS_DIR:
        name = path.rsplit("/", 1)[-1]
        stem = name[: -len(".json")] if name.endswith(".json") else ""
        if is_program_id(stem):
            return (
                f"{path} is in the wrong directory: program {stem} belongs at"
                f" {program_path(stem)}; move it there (git mv {path} {program_path(stem)})"
            )
        return (
            f"{path} is not a program file: under {PROGRAMS_DIR}/ only"
            f" {PROGRAMS_DIR}/<id[0:2]>/<id[2:4]>/<id>.json files (16 lowercase hex digits)"
            " are allowed; rename or remove it"
        )
    allowed = f"{MARKER}, {PROGRAMS_DIR}/, {LABELS_DIR}/" + (
        f", {MANIFEST}" if kind != "main" else ""
    )
    return (
        f"{path} is not part of a registry: it may hold only {allowed}, README and LICENSE"
        " files, CODEOWNERS, .gitattributes, .gitignore, .mailmap, .editorconfig,"
        " .pre-commit-config.yaml, .gitlab-ci.yml, .github/ and .gitlab/;"
        " remove it or keep it in another repository"
    )


def _mode_problem(path: str, mode: int) -> str:
    if mode == FileMode.BLOB_EXECUTABLE:
        return (
            f"{path} is executable: registry files are plain files"
            f" (git update-index --chmod=-x {path})"
        )
    if mode == FileMode.LINK:
        return f"{path} is a symbolic link: replace it with the file itself"
    if mode == FileMode.COMMIT:
        return f"{path} is a submodule: remove it (git rm --cached {path})"
    return f"{path} is not a regular file (mode {mode:o}): replace it with a plain file"


def _check_program(path: str, data: bytes, limit: int) -> FileCheck:
    program_id = program_id_of_path(path)
    assert program_id is not None
    if len(data) > limit:
        return FileCheck(
            (
                f"{path} is {len(data)} bytes, over the registry's limit of {limit} bytes:"
                " keep large data outside the program (or raise progreg.maxProgramBytes in"
                " the server repository's Git configuration)",
            )
        )
    value, problem = _parse(path, data)
    if problem is not None:
        return FileCheck((problem,))
    fast = canonical.is_canonical_value(value, data)  # the usual case: parsed once
    try:
        doc = document_from(value, path) if fast else decode_document(data, path)
    except UnsupportedFormatError as exc:
        return FileCheck((f"{exc} (on the server too, if the registry is shared)",))
    except ProgregError as exc:
        return FileCheck((f"{exc}: fix the document or re-save the program with progreg",))
    if doc.program_id != program_id:
        return FileCheck(
            (
                f"{path} holds program {doc.program_id}, but its path says {program_id}:"
                f" move it to {program_path(doc.program_id)} (git mv) or correct its program_id",
            )
        )
    lineage_problem = derived_from_problem(doc.extra)
    if lineage_problem is not None:
        return FileCheck((f"{path}: {lineage_problem}: correct it, or remove the key",))
    if fast:
        return _secrets_verdict(path, data, doc)
    return _canonical_verdict(path, data, value, doc)


def _secrets_verdict(path: str, data: bytes, doc: ProgramDocument) -> FileCheck:
    """Refuse a canonical program document that holds credentials (see progreg.core.secrets)."""
    if not may_hold_secrets(data):
        return FileCheck(document=doc)
    findings = [
        found
        for name, part in (
            ("state", doc.state),
            ("optimization_result", doc.optimization_result),
            ("metadata", doc.metadata),
        )
        for found in find_secrets(part, name)
    ]
    if not findings:
        return FileCheck(document=doc)
    listed = "; ".join(f"{found.path} ({found.reason})" for found in findings[:10])
    return FileCheck(
        (
            f"{path} holds credentials: {listed}. progreg never stores secrets: remove them"
            " (re-save the program with secrets='redact')",
        ),
        document=doc,
        secrets=tuple(found.path for found in findings),
    )


def _parse(path: str, data: bytes) -> tuple[Any, str | None]:
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError as exc:
        return None, f"{path} is not valid JSON ({exc}): fix the syntax, or re-save it with progreg"


def _canonical_verdict(
    path: str, data: bytes, value: Any, doc: ProgramDocument | None = None
) -> FileCheck:
    try:
        encoded = canonical.encode(value, path)
    except NotJSONError as exc:
        return FileCheck((f"{exc}: progreg cannot store this value; change it",), document=doc)
    if encoded == data:
        return FileCheck(document=doc)
    duplicates = _duplicate_keys(data)
    if duplicates:
        return FileCheck(
            (f"{path} repeats the key(s) {', '.join(duplicates)} in one object: keep one of each",),
            document=doc,
        )
    message = (
        f"{path} is not canonical JSON (keys sorted, 2-space indent, UTF-8, newline at"
        f" the end): {_FIX}"
    )
    return FileCheck((message,), canonical=encoded, document=doc)


def _duplicate_keys(data: bytes) -> list[str]:
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and repr(key) not in found:
                found.append(repr(key))
            seen.add(key)
        return dict(items)

    try:
        json.loads(data, object_pairs_hook=pairs)
    except ValueError:
        return []
    return found


def _check_json_file(path: str, data: bytes, rules: Callable[[str, Any], list[str]]) -> FileCheck:
    value, problem = _parse(path, data)
    if problem is not None:
        return FileCheck((problem,))
    problems = rules(path, value)
    if problems:
        return FileCheck(tuple(problems))
    return _canonical_verdict(path, data, value)


def _marker_problems(path: str, value: Any) -> list[str]:
    example = '{"format_version": 1}'
    if not isinstance(value, dict):
        return [f"{path} must be the JSON object {example}"]
    version = value.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return [f"{path}: format_version {version!r} is not a format version: write {example}"]
    if version > FORMAT_VERSION:
        return [
            f"{path} has format_version {version}; this progreg reads up to {FORMAT_VERSION}:"
            " upgrade progreg (on the server too)"
        ]
    return []


def _manifest_problems(path: str, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path} is not a JSON object: re-create the checkpoint with progreg"]
    problems = []
    name = value.get("name")
    try:
        check_name("checkpoint", name, CHECKPOINTS_PREFIX)
    except ProgregError as exc:
        problems.append(f"{path}: {exc}")
    program_id = value.get("program_id")
    if not isinstance(program_id, str) or not is_program_id(program_id):
        problems.append(f"{path}: program_id {program_id!r} is not a 16-hex-digit program id")
    created_at = value.get("created_at")
    if not _is_aware_time(created_at):
        problems.append(f"{path}: created_at {created_at!r} is not an ISO 8601 time with an offset")
    if not isinstance(value.get("metadata"), dict):
        problems.append(f"{path}: metadata is not a JSON object")
    return problems


def _label_file_problems(path: str, value: Any) -> list[str]:
    return [
        f"{path}: {problem}: fix it with progreg label set"
        for problem in label_file_problems(value)
    ]


def _is_aware_time(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


# -- trees and commits -----------------------------------------------------------


@dataclass
class _Changes:
    """The files a commit adds or modifies, and the paths it deletes."""

    files: list[tuple[str, int, pygit2.Oid]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def written(self) -> list[str]:
        return [pid for path, _, _ in self.files if (pid := program_id_of_path(path)) is not None]

    @property
    def removed(self) -> list[str]:
        return [pid for path in self.deleted if (pid := program_id_of_path(path)) is not None]


def tree_files(repo: pygit2.Repository, tree: pygit2.Tree) -> Iterator[tuple[str, int, pygit2.Oid]]:
    """Every non-directory entry of ``tree``, recursively: ``(path, mode, id)``."""
    stack: list[tuple[str, pygit2.Tree]] = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        for entry in node:
            path = f"{prefix}{entry.name}"
            if entry.filemode == FileMode.TREE:
                sub = repo[entry.id]
                assert isinstance(sub, pygit2.Tree)
                stack.append((f"{path}/", sub))
            else:
                yield path, entry.filemode, entry.id


def _changes(
    repo: pygit2.Repository, commit: pygit2.Commit, full: bool, differ: TreeDiffer | None
) -> _Changes:
    changes = _Changes()
    if full or not commit.parents:
        changes.files = sorted(tree_files(repo, commit.tree))
        return changes
    differ = differ if differ is not None else TreeDiffer(repo)
    changes.files, changes.deleted = differ.changes(commit.parents[0].tree_id, commit.tree_id)
    return changes


def _read(repo: pygit2.Repository, oid: pygit2.Oid, mode: int) -> bytes:
    if mode == FileMode.COMMIT:
        return b""  # a submodule: the object is not in this repository
    try:
        kind, data = repo.odb.read(oid)
    except KeyError:
        return b""
    return data if kind == pygit2.enums.ObjectType.BLOB else b""


def _check_entries(
    repo: pygit2.Repository,
    entries: Iterable[tuple[str, int, pygit2.Oid]],
    kind: TreeKind,
    limit: int,
    commit: str | None,
) -> tuple[list[Problem], dict[str, ProgramDocument]]:
    problems: list[Problem] = []
    documents: dict[str, ProgramDocument] = {}
    for path, mode, oid in entries:
        # only registry files are read: a stray file is refused by its name alone
        wanted = kind_of_path(path) not in ("harmless", "unexpected")
        data = _read(repo, oid, mode) if wanted else b""
        verdict = check_file(path, data, mode=mode, kind=kind, max_program_bytes=limit)
        problems += [
            Problem(message, path=path, commit=commit, secrets=verdict.secrets)
            for message in verdict.problems
        ]
        if verdict.document is not None:
            documents[path] = verdict.document
    return problems, documents


def validate_tree(
    repo: pygit2.Repository,
    tree: pygit2.Tree,
    *,
    kind: TreeKind = "main",
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
    commit: str | None = None,
) -> list[Problem]:
    """Check every file of ``tree`` as a registry tree of ``kind``."""
    files = list(tree_files(repo, tree))
    problems, documents = _check_entries(repo, files, kind, max_program_bytes, commit)
    if MARKER not in tree:
        problems.insert(0, _missing_marker(commit))
    if kind != "checkpoint":
        problems += _label_problems(repo, tree, _Changes(files=files), documents, commit)
    if kind == "checkpoint":
        problems += _checkpoint_structure(repo, tree, None, commit)
    return problems


def validate_entries(
    repo: pygit2.Repository,
    entries: Iterable[tuple[str, int, pygit2.Oid]],
    *,
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
) -> list[Problem]:
    """Check ``(path, mode, blob id)`` entries as the files of a tree of ``main``: what a
    Git index stages (``progreg validate --cached``), before it is a tree."""
    entries = list(entries)
    problems, documents = _check_entries(repo, entries, "main", max_program_bytes, None)
    if not any(path == MARKER for path, _, _ in entries):
        problems.insert(0, _missing_marker(None))
    return problems + _staged_label_problems(repo, entries, documents)


def _staged_label_problems(
    repo: pygit2.Repository,
    entries: list[tuple[str, int, pygit2.Oid]],
    documents: dict[str, ProgramDocument],
) -> list[Problem]:
    """Labels of staged label files that name a program not staged, or of another signature."""
    staged = {path: (mode, oid) for path, mode, oid in entries}
    problems: list[Problem] = []
    for path, mode, oid in entries:
        signature = signature_of_path(path)
        if signature is None or mode != FileMode.BLOB:
            continue
        try:
            labels = decode_labels(_read(repo, oid, mode), path)
        except ProgregError:
            continue  # the file check reports it
        for label, program_id in labels.items():
            problem = _label_target_problem(
                repo, staged.get, signature, label, program_id, documents
            )
            if problem is not None:
                problems.append(Problem(problem, path=path))
    return problems


def _missing_marker(commit: str | None) -> Problem:
    return Problem(
        f'{MARKER} is missing: every registry commit keeps {{"format_version": 1}} in'
        f" {MARKER} at the root; add it back",
        path=MARKER,
        commit=commit,
    )


def validate_commit(
    repo: pygit2.Repository,
    commit: pygit2.Commit,
    *,
    kind: TreeKind = "main",
    full: bool = False,
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
    checkpoint: str | None = None,
    differ: TreeDiffer | None = None,
) -> list[Problem]:
    """Check what ``commit`` changes against its first parent (all when ``full``), and its trailers.

    For a checkpoint commit (``kind="checkpoint"``) the whole tree is always
    checked (it is small) and ``checkpoint.json`` must name ``checkpoint``
    when it is given; a tree that is not a checkpoint's (no manifest, other
    programs) is refused for that without reading its files. Checking many
    commits of one history, pass them one
    :class:`~progreg.git.objects.treediff.TreeDiffer`: it remembers their trees.
    """
    sha = str(commit.id)
    full = full or kind == "checkpoint"
    structure: list[Problem] = []
    if kind == "checkpoint":
        structure = _checkpoint_structure(repo, commit.tree, checkpoint, sha)
        if structure:  # not a checkpoint's tree: its files are not worth reading
            missing = [] if MARKER in commit.tree else [_missing_marker(sha)]
            return missing + structure
    changes = _changes(repo, commit, full, differ)
    problems, documents = _check_entries(repo, changes.files, kind, max_program_bytes, sha)
    if MARKER not in commit.tree:
        problems.insert(0, _missing_marker(sha))
    problems += structure
    problems += [
        Problem(message, commit=sha) for message in _trailer_problems(commit, changes, documents)
    ]
    if kind != "checkpoint":
        problems += _label_problems(repo, commit.tree, changes, documents, sha)
    return problems


#: The label index of recently checked ``labels/`` trees, by tree id (content-addressed: a
#: push's commits mostly share one, so it is read once).
_LABEL_INDEXES: dict[pygit2.Oid, dict[str, list[tuple[str, str]]]] = {}
_LABEL_INDEXES_KEPT = 64


def _label_index(repo: pygit2.Repository, tree: pygit2.Tree) -> dict[str, list[tuple[str, str]]]:
    """``{program id: [(signature, label), ...]}`` of the label files of ``tree``.

    A label file that cannot be read is left out: the file check reports it.
    """
    entry = tree[LABELS_DIR]
    index = _LABEL_INDEXES.get(entry.id)
    if index is not None:
        return index
    index = {}
    for signature, blob_id in label_files(repo, tree):
        try:
            labels = decode_labels(repo.odb.read(blob_id)[1], label_path(signature))
        except (ProgregError, KeyError):
            continue
        for label, program_id in labels.items():
            index.setdefault(program_id, []).append((signature, label))
    if len(_LABEL_INDEXES) >= _LABEL_INDEXES_KEPT:
        _LABEL_INDEXES.pop(next(iter(_LABEL_INDEXES)))
    _LABEL_INDEXES[entry.id] = index
    return index


def _label_problems(
    repo: pygit2.Repository,
    tree: pygit2.Tree,
    changes: _Changes,
    documents: dict[str, ProgramDocument],
    commit: str | None,
) -> list[Problem]:
    """Labels of ``tree`` that name a program it lacks, or one of another signature.

    Only what the commit changes is looked at: the labels of the label files it
    writes, and the labels naming a program it removes or rewrites.
    """
    changed = {signature_of_path(path) for path, _, _ in changes.files} - {None}
    touched = set(changes.removed) | set(changes.written)
    if (not changed and not touched) or LABELS_DIR not in tree:
        return []
    problems: list[Problem] = []
    locate = _in_tree(tree)
    for program_id, named in _label_index(repo, tree).items():
        for signature, label in named:
            if signature in changed or program_id in touched:
                problem = _label_target_problem(
                    repo, locate, signature, label, program_id, documents
                )
                if problem is not None:
                    problems.append(Problem(problem, path=label_path(signature), commit=commit))
    return problems


def _in_tree(tree: pygit2.Tree) -> Callable[[str], tuple[int, pygit2.Oid] | None]:
    """``path -> (mode, id)`` of the entries of ``tree`` (``None``: no such path)."""

    def locate(path: str) -> tuple[int, pygit2.Oid] | None:
        try:
            entry = tree[path]
        except KeyError:
            return None
        return entry.filemode, entry.id

    return locate


def _label_target_problem(
    repo: pygit2.Repository,
    locate: Callable[[str], tuple[int, pygit2.Oid] | None],
    signature: str,
    label: str,
    program_id: str,
    documents: dict[str, ProgramDocument],
) -> str | None:
    """Why ``signature``'s ``label`` may not name ``program_id`` where ``locate`` finds
    files (a tree, or the entries of an index), or ``None``."""
    path = program_path(program_id)
    fix = (
        f"move the label to a program of {signature} on main (progreg label set"
        f" {signature} {label} <id>) or remove it (progreg label remove {signature} {label})"
    )
    doc = documents.get(path)
    if doc is None:
        found = locate(path)
        if found is None:
            return (
                f"label {label!r} of {signature} names program {program_id}, which this"
                f" commit's main does not hold: {fix}"
            )
        mode, oid = found
        try:
            doc = decode_document(_read(repo, oid, mode), path, program_id)
        except ProgregError:
            return None  # the program file itself is reported (or was, when it came)
    if doc.signature_class != signature:
        return (
            f"label {label!r} of {signature} names program {program_id}, which solves"
            f" {doc.signature_class or 'no signature'}: {fix}"
        )
    return None


def _checkpoint_structure(
    repo: pygit2.Repository, tree: pygit2.Tree, name: str | None, commit: str | None
) -> list[Problem]:
    manifest = _json_at(tree, MANIFEST)
    if manifest is None:
        return [
            Problem(
                f"{MANIFEST} is missing: a checkpoint commit holds {MANIFEST} and its program;"
                " create checkpoints with progreg",
                path=MANIFEST,
                commit=commit,
            )
        ]
    if not isinstance(manifest, dict):
        return []  # reported by the file check
    problems = []
    if name is not None and manifest.get("name") != name:
        problems.append(
            Problem(
                f"{MANIFEST} names checkpoint {manifest.get('name')!r}, but this is the branch"
                f" of checkpoint {name!r}: push it to {CHECKPOINTS_PREFIX}{manifest.get('name')}",
                path=MANIFEST,
                commit=commit,
            )
        )
    program_id = manifest.get("program_id")
    programs = [
        path for path, _, _ in tree_files(repo, tree) if program_id_of_path(path) is not None
    ]
    expected = (
        program_path(program_id)
        if isinstance(program_id, str) and is_program_id(program_id)
        else None
    )
    if expected is not None and expected not in programs:
        problems.append(
            Problem(
                f"{MANIFEST} names program {program_id}, but {expected} is missing: add it",
                path=expected,
                commit=commit,
            )
        )
    extra = [path for path in programs if path != expected]
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        problems.append(
            Problem(
                f"a checkpoint commit holds only the program its {MANIFEST} names; remove {shown}",
                path=extra[0],
                commit=commit,
            )
        )
    return problems


def _json_at(tree: pygit2.Tree, path: str) -> Any:
    try:
        obj = tree[path]
    except KeyError:
        return None
    if not isinstance(obj, pygit2.Blob):
        return None
    try:
        return orjson.loads(obj.data)
    except orjson.JSONDecodeError:
        return None


def _trailer_problems(
    commit: pygit2.Commit, changes: _Changes, documents: dict[str, ProgramDocument]
) -> list[str]:
    trailers = parse_trailers(commit.message)
    action = trailers.get(ACTION)
    if action not in _CLAIMS:
        return []
    fix = (
        "reword the commit (git commit --amend, or git rebase -i) so that its trailers say"
        f" what it does, or remove its {PROGRAM_ID} and {ACTION} trailers"
    )
    claim = f"its trailers say '{ACTION}: {action}'"
    written, removed = changes.written, changes.removed
    did = (
        f"it writes {', '.join(written) or 'no program'} and removes"
        f" {', '.join(removed) or 'no program'}"
    )
    if action == "cleanup":
        count = trailers.get("Removed-Count")
        if written or count != str(len(removed)):
            return [f"{claim} with Removed-Count {count}, but {did}: {fix}"]
        return []
    if action == SAVE_BATCH:
        count = trailers.get(SAVED_COUNT)
        if removed or not written or count != str(len(written)):
            did = f"it writes {len(written)} program(s) and removes {len(removed)}"
            return [f"{claim} with {SAVED_COUNT} {count}, but {did}: {fix}"]
        if PROGRAM_ID in trailers:
            return [f"{claim}, which names no single program, but it has a {PROGRAM_ID}: {fix}"]
        return []
    program_id = trailers.get(PROGRAM_ID)
    if program_id is None or not is_program_id(program_id):
        return [f"{claim} but its {PROGRAM_ID} trailer is {program_id!r}, not a program id: {fix}"]
    claim += f" of program {program_id}"
    if action == "delete":
        if written or removed != [program_id]:
            return [f"{claim}, but {did}: {fix}"]
        return []
    if program_id not in written or (
        action != "checkpoint" and (written != [program_id] or removed)
    ):
        return [f"{claim}, but {did}: {fix}"]
    doc = documents.get(program_path(program_id))
    if doc is None:
        return []  # the document itself is reported as broken
    return [
        f"{claim}, but its {token} trailer says {trailers.get(token)!r} while the document"
        f" says {expected!r}: {fix}"
        for token, expected in _disagreements(doc, action, trailers)
    ]


def _disagreements(
    doc: ProgramDocument, action: str, trailers: dict[str, str]
) -> Iterator[tuple[str, str]]:
    expected = parse_trailers(save_message(doc, action=action))
    for token in _DOCUMENT_TRAILERS:
        claimed, wanted = trailers.get(token), expected[token]
        if claimed is None or not _same(token, claimed, wanted):
            yield token, wanted
    for token in _LINEAGE_TRAILERS:  # absent from both when the program names no ancestor
        if trailers.get(token) != expected.get(token):
            yield token, expected.get(token, "(no such trailer)")


def _same(token: str, claimed: str, wanted: str) -> bool:
    if token == "Saved-At":
        try:
            return datetime.fromisoformat(claimed) == datetime.fromisoformat(wanted)
        except ValueError:
            return False
    if token == "Score" and claimed != wanted:
        try:
            number = float(claimed)
        except ValueError:
            return False
        return wanted != "none" and math.isfinite(number) and number == float(wanted)
    return claimed == wanted


# -- ref updates --------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewBranches:
    """Which branches besides ``main`` and ``checkpoints/*`` a server accepts: review
    branches, whose every new commit must pass ``main``'s checks.

    ``patterns`` are shell globs of branch names (``review/*``); a server reads them
    from ``progreg.reviewBranches`` in its Git configuration (see
    :func:`review_branches_of`).
    """

    patterns: tuple[str, ...] = ("*",)

    def accepts(self, branch: str) -> bool:
        """True when ``branch`` (without ``refs/heads/``) is a review branch here."""
        return any(fnmatch.fnmatchcase(branch, pattern) for pattern in self.patterns)


#: The configuration key naming the review branches a server accepts (any number of globs;
#: ``none`` accepts none).
REVIEW_BRANCHES_KEY = "progreg.reviewBranches"


def review_branches_of(config: pygit2.Config) -> ReviewBranches:
    """The review branches ``config`` accepts: every ``progreg.reviewBranches`` glob, by
    default ``*`` (every branch); ``none`` (or ``false``) accepts none."""
    try:
        values = [str(value).strip() for value in config.get_multivar(REVIEW_BRANCHES_KEY)]
    except (pygit2.GitError, KeyError):
        values = []
    patterns = [value for value in values if value]
    if not patterns:
        return ReviewBranches()
    if any(value.lower() in ("none", "false") for value in patterns):
        return ReviewBranches(())
    return ReviewBranches(tuple(patterns))


def resolve_range(repo: pygit2.Repository, spec: str) -> tuple[pygit2.Commit | None, pygit2.Commit]:
    """The commits ``spec`` names: ``A..B`` as ``(A, B)``, one revision as ``(None, it)``."""
    try:
        revspec = repo.revparse(spec)
        ranged = revspec.to_object is not None
        end = (revspec.to_object if ranged else revspec.from_object).peel(pygit2.Commit)
        start = revspec.from_object.peel(pygit2.Commit) if ranged else None
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise InvalidInputError(f"unknown commit range {spec!r}: {exc}") from exc
    return start, end


def validate_commits(
    repo: pygit2.Repository,
    start: pygit2.Commit | None,
    end: pygit2.Commit,
    *,
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
) -> tuple[int, list[Problem]]:
    """Check the commits after ``start`` up to ``end`` (all of ``end``'s history without a
    start) as ``main``'s, oldest first: how many there are, and their problems."""
    walker = repo.walk(end.id, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    if start is not None:
        walker.hide(start.id)
    commits = list(walker)
    problems = [
        problem
        for commit in commits
        for problem in validate_commit(repo, commit, max_program_bytes=max_program_bytes)
    ]
    return len(commits), problems


def validate_push(
    repo: pygit2.Repository,
    updates: Iterable[RefUpdate],
    *,
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
    review: ReviewBranches | None = None,
) -> list[Problem]:
    """Check every ref update of one push (what a pre-receive hook receives).

    ``review`` says which other branches are review branches (by default: none).
    """
    updates = list(updates)
    main_after: str | None = None
    for update in updates:
        if update.ref == MAIN:
            main_after = None if update.deleted else update.new
            break
    else:
        reference = repo.references.get(MAIN)
        main_after = str(reference.target) if reference is not None else None
    problems: list[Problem] = []
    for update in updates:
        problems += validate_ref_update(
            repo, update, main_tip=main_after, max_program_bytes=max_program_bytes, review=review
        )
    return problems


def commits_in_history(
    repo: pygit2.Repository,
    wanted: Iterable[pygit2.Oid],
    tip: pygit2.Oid,
    hidden: Iterable[pygit2.Oid] = (),
) -> set[pygit2.Oid]:
    """The commits of ``wanted`` reachable from ``tip`` but not from ``hidden``.

    One walk, newest first, that stops once every wanted commit is found (tags
    usually label recent saves): checking many tags costs one walk of the
    history at most, where :meth:`~pygit2.Repository.descendant_of` per tag
    could cost one each.
    """
    left = set(wanted)
    found: set[pygit2.Oid] = set()
    if not left:
        return found
    walker = repo.walk(tip, SortMode.TIME)
    for oid in hidden:
        walker.hide(oid)
    for commit in walker:
        if commit.id in left:
            found.add(commit.id)
            if len(found) == len(left):
                break
    return found


def outside_merged_history(
    repo: pygit2.Repository,
    wanted: Iterable[pygit2.Oid],
    ours: pygit2.Oid | None,
    theirs: pygit2.Oid | None,
) -> tuple[set[pygit2.Oid], set[pygit2.Oid]]:
    """Where the commits ``wanted`` are once ``theirs`` is merged into ``ours``.

    Returns ``(only_theirs, neither)``: those reached from ``theirs`` but not
    ``ours`` (so ``theirs`` must join ``main`` for them to be in its history),
    and those reached from neither. The commits only ``theirs`` reaches are
    walked first (what comes in), then ``ours``, each walk stopping once
    every commit looked for is found.
    """
    left = set(wanted)
    only_theirs: set[pygit2.Oid] = set()
    if theirs is not None and left:
        only_theirs = commits_in_history(repo, left, theirs, [ours] if ours is not None else [])
        left -= only_theirs
    if ours is not None and left:
        left -= commits_in_history(repo, left, ours)
    return only_theirs, left


def off_main_problem(commit: str) -> str:
    """What is wrong with a tag on ``commit``, which is not in ``main``'s history."""
    return (
        f"commit {commit[:12]} is not in main's history: a tag labels a program version"
        " saved on main; push (or import, or pull) main with the tag"
    )


def validate_ref_update(
    repo: pygit2.Repository,
    update: RefUpdate,
    *,
    main_tip: str | None = None,
    max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES,
    check_history: bool = True,
    checked: Mapping[str, object] | None = None,
    review: ReviewBranches | None = None,
) -> list[Problem]:
    """Check one ref update as a server receives it.

    ``main_tip`` is where ``main`` will point after the push (tags must point
    into its history); ``None`` means there will be no ``main``. With
    ``check_history=False`` a tag's commit is not required to be in that
    history (finding out costs a walk of it). ``checked`` maps the paths of
    program files the caller has already checked with these rules to their
    blob ids: a tag on a commit holding that very blob there is not read again.
    A branch that ``review`` accepts is a review branch (see :func:`_review_update`).
    """
    ref = update.ref
    if ref == MAIN:
        problems = _branch_update(repo, update, "main", None, max_program_bytes)
    elif ref.startswith(TAGS_PREFIX):
        problems = _tag_update(
            repo, update, main_tip, max_program_bytes, check_history, checked or {}
        )
    elif ref.startswith(CHECKPOINTS_PREFIX):
        name = ref[len(CHECKPOINTS_PREFIX) :]
        try:
            check_name("checkpoint", name, CHECKPOINTS_PREFIX)
        except ProgregError as exc:
            problems = [Problem(f"{exc}", ref=ref)]
        else:
            problems = _branch_update(repo, update, "checkpoint", name, max_program_bytes)
    elif ref.startswith(_HEADS):
        review = review or ReviewBranches(())
        reason = credential_in_text(ref[len(_HEADS) :])
        if update.deleted:  # a branch beside main: its removal breaks nothing
            problems = []
        elif reason is not None:
            problems = [
                Problem(
                    f"a branch name must not be a credential (it {reason}): it would be kept"
                    " in every clone's refs; push the branch under another name"
                )
            ]
        elif review.accepts(ref[len(_HEADS) :]):
            problems = _review_update(repo, update, max_program_bytes)
        else:
            problems = [Problem(_outside_review(review), ref=ref)]
    else:
        problems = [Problem(_OUTSIDE, ref=ref)]
    return [dataclasses.replace(problem, ref=problem.ref or ref) for problem in problems]


_HEADS = "refs/heads/"
_OUTSIDE = (
    "this server holds a progreg registry and accepts only refs/heads/main,"
    " refs/heads/checkpoints/<name>, refs/tags/<tag>/<program id> and review branches"
    " (refs/heads/<branch>): push other refs to another repository"
)


def _outside_review(review: ReviewBranches) -> str:
    if not review.patterns:
        return (
            "this server accepts no review branches (progreg.reviewBranches is none): push"
            " to main, to checkpoints/<name>, or ask its administrator to allow review"
            " branches (git config --add progreg.reviewBranches 'review/*')"
        )
    return (
        f"this server accepts review branches matching {', '.join(review.patterns)} only"
        " (progreg.reviewBranches): push this branch under one of those names"
    )


def _review_update(repo: pygit2.Repository, update: RefUpdate, limit: int) -> list[Problem]:
    """A review branch: deleted freely, rewritten freely (a pull request is rebased),
    and every commit it brings that ``main`` lacks passes ``main``'s checks."""
    if update.deleted:
        return []
    new = _commit(repo, update.new)
    if new is None:
        return [Problem(f"{update.new[:12]} is not a commit: push a commit to this branch")]
    walker = repo.walk(new.id, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    main = repo.references.get(MAIN)
    if main is not None:
        walker.hide(main.target)  # checked when it was pushed to main
    if not update.created and _commit(repo, update.old) is not None:
        walker.hide(pygit2.Oid(hex=update.old))  # checked when this branch was pushed
    return _check_commits(repo, walker, "main", None, limit)


def _check_commits(
    repo: pygit2.Repository,
    commits: Iterable[pygit2.Commit],
    kind: TreeKind,
    checkpoint: str | None,
    limit: int,
) -> list[Problem]:
    """The problems of ``commits`` (a push's new commits), up to MAX_PROBLEMS_PER_REF."""
    problems: list[Problem] = []
    differ = TreeDiffer(repo)
    for commit in commits:
        if len(problems) >= MAX_PROBLEMS_PER_REF:
            problems.append(Problem(f"stopped checking after {MAX_PROBLEMS_PER_REF} problems"))
            break
        problems += validate_commit(
            repo, commit, kind=kind, max_program_bytes=limit, checkpoint=checkpoint, differ=differ
        )
    return problems


def _commit(repo: pygit2.Repository, oid: str) -> pygit2.Commit | None:
    obj = repo.get(oid)
    return obj if isinstance(obj, pygit2.Commit) else None


def _branch_update(
    repo: pygit2.Repository,
    update: RefUpdate,
    kind: TreeKind,
    checkpoint: str | None,
    limit: int,
) -> list[Problem]:
    if update.deleted:
        if kind == "main":
            return [
                Problem(
                    "deleting main is refused: it holds the registry and its history;"
                    " push new commits instead"
                )
            ]
        return []
    new = _commit(repo, update.new)
    if new is None:
        return [Problem(f"{update.new[:12]} is not a commit: push a commit to this branch")]
    walker = repo.walk(new.id, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    if not update.created:
        old = pygit2.Oid(hex=update.old)
        if not repo.descendant_of(new.id, old):
            return [
                Problem(
                    f"this push rewrites history ({update.old[:12]} is not an ancestor of"
                    f" {update.new[:12]}); the branch only moves forward here: fetch, merge"
                    " (progreg pull, or git pull) and push again without --force"
                )
            ]
        walker.hide(old)
    return _check_commits(repo, walker, kind, checkpoint, limit)


def _tag_update(
    repo: pygit2.Repository,
    update: RefUpdate,
    main_tip: str | None,
    limit: int,
    check_history: bool,
    checked: Mapping[str, object],
) -> list[Problem]:
    tag, _, program_id = update.ref[len(TAGS_PREFIX) :].rpartition("/")
    try:
        check_name("tag", tag, TAGS_PREFIX)
    except ProgregError:
        return [Problem(_OUTSIDE)]
    if not is_program_id(program_id):
        return [Problem(_OUTSIDE)]
    if update.deleted:
        return [
            Problem(
                "deleting a tag is refused: tags are a permanent record of which program"
                " version was labelled; leave it (ask the server's administrator if it must go)"
            )
        ]
    if not update.created:
        return [
            Problem(
                f"tags never move: it already points at {update.old[:12]}; to label another"
                " version, use a new tag name"
            )
        ]
    obj = repo.get(update.new)
    if not isinstance(obj, pygit2.Tag):
        return [
            Problem(
                "a tag must be an annotated tag object: create it with progreg"
                f" (StorageManager.tag_program) or `git tag -a {tag}/{program_id} <commit>`"
            )
        ]
    problems: list[Problem] = []
    if obj.name != f"{tag}/{program_id}":
        problems.append(
            Problem(
                f"the annotated tag is named {obj.name!r}, not '{tag}/{program_id}': re-create it"
            )
        )
    target = _commit(repo, str(obj.target))
    if target is None:
        return [*problems, Problem("the tag must point at a commit: re-create it")]
    path = program_path(program_id)
    try:
        entry = target.tree[path]  # one walk down the tree
    except KeyError:
        return [
            *problems,
            Problem(
                f"commit {str(target.id)[:12]} has no {path}: tag the commit that saved"
                f" program {program_id}",
                commit=str(target.id),
            ),
        ]
    if entry.filemode != FileMode.BLOB or checked.get(path) != entry.id:
        where = [(path, entry.filemode, entry.id)]
        problems += _check_entries(repo, where, "main", limit, str(target.id))[0]
    if check_history and (
        main_tip is None
        or (
            str(target.id) != main_tip
            and not repo.descendant_of(pygit2.Oid(hex=main_tip), target.id)
        )
    ):
        problems.append(
            Problem(
                f"commit {str(target.id)[:12]} is not in main's history: push main first (or in"
                " the same push)",
                commit=str(target.id),
            )
        )
    return problems
