"""The registry's verification report: programs intact, commits and tags signed by whom.

Signing itself is configured as in Git (``commit.gpgSign``, ``tag.gpgSign``,
``gpg.format``, ``user.signingKey``; see :mod:`progreg.git.objects.signing`):
once on, every save, delete, merge, checkpoint and tag progreg writes is
signed. :func:`verify` reads every object the registry's refs reach (see
:mod:`progreg.git.pack.integrity`), every program on ``main`` and every
commit and tag, and reports what it found: damaged or missing objects with
the programs that need them, damaged program files, signatures; ``git
verify-commit`` and ``git verify-tag`` agree with its verdicts because the
same programs check the same signatures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

import pygit2
from pydantic import BaseModel, ConfigDict, Field

from progreg import events
from progreg.core.document import DEFAULT_MAX_PROGRAM_BYTES
from progreg.core.ids import program_id_of_path
from progreg.core.layout import MAIN, PROGRAMS_DIR, TAGS_PREFIX
from progreg.git import GitRepository
from progreg.git.objects.signing import check_signature, tag_signature
from progreg.git.pack import integrity
from progreg.registry.validation import (
    RefUpdate,
    check_file,
    commits_in_history,
    validate_ref_update,
)

if TYPE_CHECKING:
    from progreg.registry.store import Registry

ZERO_ID = "0" * 40


class ProgramProblem(BaseModel):
    """A program file on ``main`` that is not what the format requires."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str
    program_id: str | None
    message: str


class TagProblem(BaseModel):
    """A tag that a server running progreg's hook would refuse, and why."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    ref: str
    commit: str | None = Field(description="the commit it labels, when it leads to one")
    message: str


class SignatureRecord(BaseModel):
    """Whether one commit or tag is signed, by whom, and whether the signature holds."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    kind: Literal["commit", "tag"]
    id: str = Field(description="hex id of the commit or tag object")
    ref: str = Field(description="a ref it was reached from")
    subject: str
    signed: bool
    format: str | None = Field(description="ssh, openpgp or x509")
    signer: str | None = Field(description="SSH principal, or OpenPGP key id and user id")
    valid: bool | None = Field(description="None when it could not be checked (see reason)")
    reason: str


class DamagedObject(BaseModel):
    """An object (or a whole pack) of the registry that cannot be read, and what needs it."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    object_id: str | None = Field(description="hex id; None for a damaged pack as a whole")
    kind: str | None = Field(description="commit, tree, blob or tag, when known")
    file: str | None = Field(
        description="the damaged file, relative to the registry; None when no file holds it"
    )
    message: str
    refs: list[str] = Field(description="refs that reach it (none: nothing uses it)")
    paths: list[str] = Field(description="where it sits in the trees that hold it")
    programs: list[str] = Field(description="the programs whose files those paths are")


class VerifyReport(BaseModel):
    """What :func:`verify` found."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    programs_checked: int
    problems: list[ProgramProblem]
    signatures: list[SignatureRecord]
    damaged_objects: list[DamagedObject] = Field(default_factory=list)
    tag_problems: list[TagProblem] = Field(
        default_factory=list,
        description="tags the server hook would refuse (such as one off main's history)",
    )

    @property
    def signed(self) -> int:
        """How many commits and tags carry a signature."""
        return sum(record.signed for record in self.signatures)

    @property
    def unsigned(self) -> int:
        """How many commits and tags carry none."""
        return sum(not record.signed for record in self.signatures)

    @property
    def bad_signatures(self) -> list[SignatureRecord]:
        """Signatures that were checked and do not hold."""
        return [record for record in self.signatures if record.valid is False]

    @property
    def ok(self) -> bool:
        """No damaged object, program or tag and no bad signature (unsigned ones are allowed)."""
        return (
            not self.problems
            and not self.bad_signatures
            and not self.damaged_objects
            and not self.tag_problems
        )


def verify(storage: Registry) -> VerifyReport:
    """Check every object, every program on ``main`` and every signature in the registry."""
    return verify_repository(storage.git, storage.max_program_bytes)


def verify_path(
    path: str | os.PathLike[str], max_program_bytes: int = DEFAULT_MAX_PROGRAM_BYTES
) -> VerifyReport:
    """:func:`verify` on the repository at ``path``, too damaged perhaps to open as a registry."""
    return verify_repository(GitRepository(path, create=False), max_program_bytes)


def verify_repository(git: GitRepository, max_program_bytes: int) -> VerifyReport:
    """:func:`verify` on a repository that may be too damaged to open as a registry."""
    repo = git.repo
    skip = integrity.check_loose(git.path)
    refs = [
        (name, reference.target)
        for name in sorted(repo.references)
        if name.startswith("refs/")
        and isinstance((reference := repo.references[name]).target, pygit2.Oid)
    ]
    walked = integrity.walk(repo, refs, skip)
    damaged = {d.object_id or "": d for d in walked.damaged}
    unreachable = [d for oid, d in skip.items() if oid not in damaged]
    found = walked.damaged + unreachable + integrity.check_packs(git.path)
    found += integrity.check_pack_dir(git.path)
    problems, checked, sound = _check_programs(git, max_program_bytes, {**skip, **damaged})
    records = _signatures(git, walked.commits if found else None, set(damaged))
    # Damaged objects make tags unreadable: those are reported as damage.
    tag_problems = [] if found else _check_tags(git, max_program_bytes, sound)
    report = VerifyReport(
        programs_checked=checked,
        problems=problems,
        signatures=records,
        tag_problems=tag_problems,
        damaged_objects=sorted(
            (_damaged_object(d, walked.blob_paths) for d in found), key=_damage_order
        ),
    )
    events.emit(
        "progreg.verify",
        programs=checked,
        problems=len(problems),
        signed=report.signed,
        unsigned=report.unsigned,
        bad_signatures=len(report.bad_signatures),
        damaged_objects=len(report.damaged_objects),
        tag_problems=len(report.tag_problems),
    )
    return report


def _check_tags(
    git: GitRepository, limit: int, sound: Mapping[str, pygit2.Oid]
) -> list[TagProblem]:
    """Check every tag as the server hook checks a new one, main's history included.

    A tag must be an annotated tag of its own name on a commit that holds its
    program (a valid file) and is in ``main``'s history: what
    :func:`~progreg.registry.validation.validate_ref_update` requires of a pushed tag,
    so that a registry ``verify`` accepts can be pushed to a hooked server.
    ``sound`` (main's program files found valid) are not read again.
    """
    repo = git.repo
    values = git.ref_values(TAGS_PREFIX)
    if not values:
        return []
    main = git.tip(MAIN)
    main_tip = str(main.id) if main is not None else None
    targets: dict[str, pygit2.Oid] = {}
    problems: list[TagProblem] = []
    for name, oid in sorted(values.items()):
        ref = TAGS_PREFIX + name
        update = RefUpdate(ZERO_ID, oid, ref)
        found = validate_ref_update(
            repo,
            update,
            main_tip=main_tip,
            max_program_bytes=limit,
            check_history=False,
            checked=sound,
        )
        problems += [
            TagProblem(ref=ref, commit=problem.commit, message=problem.message) for problem in found
        ]
        target = repo.get(oid)
        if not found and isinstance(target, pygit2.Tag):
            targets[ref] = target.target
    on_main = (
        commits_in_history(repo, set(targets.values()), main.id) if main is not None else set()
    )
    problems += [
        TagProblem(
            ref=ref,
            commit=str(commit),
            message=f"commit {str(commit)[:12]} is not in main's history: a tag labels a program"
            " version saved on main, and a server with progreg's hook refuses this one; delete"
            " the tag, or bring the commit into main (import or pull the history it is on)",
        )
        for ref, commit in targets.items()
        if commit not in on_main
    ]
    return sorted(problems, key=lambda problem: problem.ref)


def _damaged_object(damage: integrity.Damage, blob_paths: set[str]) -> DamagedObject:
    """The report of one damage; a tree's programs are those found below it in other commits."""
    programs = {pid for path in damage.paths if (pid := program_id_of_path(path))}
    if damage.kind == "tree" and damage.paths:
        below = tuple(f"{path}/" for path in damage.paths)
        programs.update(
            pid
            for path in blob_paths
            if path.startswith(below) and (pid := program_id_of_path(path))
        )
    return DamagedObject(
        object_id=damage.object_id,
        kind=damage.kind,
        file=damage.file,
        message=damage.message,
        refs=sorted(damage.refs),
        paths=sorted(damage.paths),
        programs=sorted(programs),
    )


def _damage_order(damage: DamagedObject) -> tuple[bool, str, str]:
    return (not damage.refs, damage.file or "", damage.object_id or "")


def _signatures(
    git: GitRepository, readable: list[tuple[pygit2.Commit, str]] | None, damaged: set[str]
) -> list[SignatureRecord]:
    """The signature record of every commit and tag (``readable``: the commits, when damaged)."""
    repo = git.repo
    config = repo.config
    records: list[SignatureRecord] = []
    if readable is not None:  # some objects are damaged: only what could be read
        branches = [(c, ref) for c, ref in readable if ref.startswith("refs/heads/")]
        records += [_commit_record(commit, ref, config) for commit, ref in branches]
    else:
        seen: set[pygit2.Oid] = set()
        refs = sorted(name for name in repo.references if name.startswith("refs/heads/"))
        for ref in refs:
            tip = git.tip(ref)
            if tip is None:
                continue
            for commit in repo.walk(tip.id):
                if commit.id in seen:
                    continue
                seen.add(commit.id)
                records.append(_commit_record(commit, ref, config))
    for ref in sorted(git.refs_under("refs/tags/")):
        target = repo.references[ref].target
        if str(target) in damaged:
            continue
        obj = repo[target]
        if isinstance(obj, pygit2.Tag):
            records.append(_tag_record(repo, obj, ref, config))
    return records


def _check_programs(
    git: GitRepository, limit: int, damaged: Mapping[str, integrity.Damage]
) -> tuple[list[ProgramProblem], int, dict[str, pygit2.Oid]]:
    """Check every program file on main: (problems, files checked, {path: blob} of sound ones)."""
    repo = git.repo
    main = repo.references.get(MAIN)
    sound: dict[str, pygit2.Oid] = {}
    if main is None or str(main.target) in damaged:
        return [], 0, sound
    tip = git.tip(MAIN)
    problems: list[ProgramProblem] = []
    if tip is None or str(tip.tree_id) in damaged or PROGRAMS_DIR not in tip.tree:
        return problems, 0, sound
    checked = 0
    stack: list[tuple[str, pygit2.Oid]] = [(PROGRAMS_DIR, tip.tree[PROGRAMS_DIR].id)]
    while stack:
        prefix, tree_id = stack.pop()
        known = damaged.get(str(tree_id))
        try:
            if known is not None:
                raise ValueError(f"tree {tree_id} is damaged: {known.message}")
            tree = repo[tree_id]
        except (pygit2.GitError, KeyError, ValueError) as exc:
            problems.append(ProgramProblem(path=prefix, program_id=None, message=str(exc)))
            continue
        assert isinstance(tree, pygit2.Tree)
        for entry in tree:
            path = f"{prefix}/{entry.name}"
            if entry.type_str == "tree":
                stack.append((path, entry.id))
                continue
            checked += 1
            known = damaged.get(str(entry.id))
            problem = (
                ProgramProblem(
                    path=path,
                    program_id=program_id_of_path(path),
                    message=f"object {entry.id} is damaged: {known.message}",
                )
                if known is not None
                else _check_program(repo, path, entry.id, limit)
            )
            if problem is not None:
                problems.append(problem)
            else:
                sound[path] = entry.id
    problems.sort(key=lambda problem: problem.path)
    return problems, checked, sound


def _check_program(
    repo: pygit2.Repository, path: str, blob_id: pygit2.Oid, limit: int
) -> ProgramProblem | None:
    program_id = program_id_of_path(path)
    try:
        blob = repo[blob_id]
    except (pygit2.GitError, KeyError, ValueError) as exc:
        return ProgramProblem(
            path=path, program_id=program_id, message=f"object {blob_id} unreadable: {exc}"
        )
    if not isinstance(blob, pygit2.Blob):
        return ProgramProblem(path=path, program_id=program_id, message="not a file")
    verdict = check_file(path, blob.data, max_program_bytes=limit)
    if not verdict.problems:
        return None
    return ProgramProblem(path=path, program_id=program_id, message="; ".join(verdict.problems))


def _record(
    kind: Literal["commit", "tag"],
    object_id: pygit2.Oid,
    ref: str,
    message: str,
    split: tuple[bytes, bytes] | None,
    config: pygit2.Config,
) -> SignatureRecord:
    """The signature record of one object; ``split`` is (signature, signed payload)."""
    subject = message.splitlines()[0] if message else ""
    if split is None:
        return SignatureRecord(
            kind=kind,
            id=str(object_id),
            ref=ref,
            subject=subject,
            signed=False,
            format=None,
            signer=None,
            valid=None,
            reason="unsigned",
        )
    check = check_signature(split[0], split[1], config)
    return SignatureRecord(
        kind=kind,
        id=str(object_id),
        ref=ref,
        subject=subject,
        signed=True,
        format=check.format,
        signer=check.signer,
        valid=check.valid,
        reason=check.reason,
    )


def _commit_record(commit: pygit2.Commit, ref: str, config: pygit2.Config) -> SignatureRecord:
    signature, payload = commit.gpg_signature
    split = None if signature is None or payload is None else (signature, payload)
    return _record("commit", commit.id, ref, commit.message, split, config)


def _tag_record(
    repo: pygit2.Repository, tag: pygit2.Tag, ref: str, config: pygit2.Config
) -> SignatureRecord:
    split = tag_signature(repo.odb.read(tag.id)[1])
    return _record("tag", tag.id, ref, tag.message or "", split, config)
