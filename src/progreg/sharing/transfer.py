"""Export and import: real Git bundles, and the reference system's own formats.

Exports are Git bundles (``git -C <repository> bundle verify`` accepts them, ``git clone`` and
``git fetch`` read them):

* :func:`export_programs` bundles one new, parentless commit whose tree holds
  exactly the chosen programs (their current files) and ``progreg.json``, as
  ``refs/heads/main`` (and ``HEAD``), with the programs' tags on those
  versions re-made on it;
* :func:`export_registry` bundles ``main``, every tag and every checkpoint
  branch, or, with ``since``, only what is new since a previous bundle or a
  commit (an incremental bundle whose prerequisites are what it builds on).

:func:`import_programs` reads such bundles, bundles made by ``git bundle
create`` (v2 and v3, thin packs included), the reference system's JSON
export file, and its ``dspy_storage/`` folder. A bundle is checked in full
(header, references, pack, every program file, conflicts) before anything is
written; see :mod:`progreg.git.bundle.format` for the quarantine.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pygit2
from pydantic import BaseModel, ConfigDict, Field

from progreg import events
from progreg.core.document import DEFAULT_MAX_PROGRAM_BYTES, ProgramDocument, decode_document
from progreg.core.ids import check_program_id, is_program_id, program_id_of_path, program_path
from progreg.core.layout import CHECKPOINTS_PREFIX, MAIN, MARKER, TAGS_PREFIX
from progreg.core.migration import (
    ReferenceSource,
    is_storage_folder,
    read_export_file,
    read_storage_folder,
)
from progreg.core.names import check_name
from progreg.core.secrets import (
    SecretsPolicy,
    check_policy,
    mask_credentials,
    may_hold_secrets,
    screen_document,
)
from progreg.errors import (
    BundleError,
    ConflictError,
    DiskFullError,
    InvalidInputError,
    InvalidNameError,
    ProgramNotFoundError,
    ProgregError,
    SecretDetectedError,
)
from progreg.git import (
    CommitPlan,
    Identity,
    RefLogEntry,
    Tip,
    format_message,
)
from progreg.git.bundle import format as bundles
from progreg.git.bundle import unbundle
from progreg.git.locking import write_lock
from progreg.git.objects import encoding as objects
from progreg.git.objects.signing import tag_signature
from progreg.git.pack.format import Progress
from progreg.registry.store import check_marker
from progreg.registry.tags import all_tags
from progreg.registry.validation import (
    Problem,
    RefUpdate,
    outside_merged_history,
    tree_files,
    unsafe_path,
    validate_ref_update,
)
from progreg.sharing.merging import MergePlan, merge_into_main, plan_merge, raise_conflicts

if TYPE_CHECKING:
    from progreg.registry.store import Registry

HEAD = "HEAD"
SourceKind = Literal["bundle", "json-export", "dspy-storage"]
_LISTED = 50
#: An import stops checking a bundle's history once this many problems were found.
_MAX_PROBLEMS = 20
_ZERO = "0" * 40
#: A registry holds no symbolic link and no submodule, in any commit.
_FORBIDDEN_MODES = frozenset({b"120000", b"160000"})
#: Most entries of one tree in a bundle: a registry's largest trees hold 256
#: directories (``programs/``) or a few hundred programs (``programs/ab/cd/``).
MAX_TREE_ENTRIES = 65_536
_BUNDLE_SECRET_FIX = (
    "progreg never stores secrets: re-save the programs in the registry they come from with"
    " secrets='redact' and export again (a bundle carries history as it is: it cannot be"
    " redacted on import)"
)


class ExportResult(BaseModel):
    """What an export wrote."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str = Field(description="the bundle file written")
    kind: Literal["programs", "registry"]
    bundle_version: int = Field(description="2, or 3 for a v3 bundle")
    refs: dict[str, str] = Field(description="the bundle's references: refname -> object id")
    prerequisites: list[str] = Field(
        description="commits the reader must already have (empty for a full bundle)"
    )
    program_ids: list[str] = Field(description="the programs on the bundle's main")
    commit: str = Field(description="the commit the bundle's main points at")
    tags_left_out: list[str] = Field(
        default_factory=list,
        description="export_programs: tags of the chosen programs on other versions than the"
        " exported one (they label history the bundle does not carry)",
    )
    object_count: int
    size_bytes: int
    duration_ms: float


class ImportResult(BaseModel):
    """What an import did."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    source: str = Field(description="the file or folder imported")
    source_kind: SourceKind
    commit: str | None = Field(description="the new tip of main, or None when unchanged")
    fast_forward: bool = Field(
        default=False,
        description="main moved to the bundle's main as it was (no merge commit)",
    )
    imported: list[str] = Field(description="programs added to main")
    updated: list[str] = Field(default_factory=list, description="programs given a new version")
    removed: list[str] = Field(default_factory=list, description="programs the bundle deleted")
    identical: list[str] = Field(description="programs already present byte for byte (skipped)")
    tags_created: list[str] = Field(default_factory=list, description="tag refs created")
    tags_kept: list[str] = Field(
        default_factory=list,
        description="tag refs that exist here pointing elsewhere: ours were kept",
    )
    checkpoints_created: list[str] = Field(default_factory=list)
    checkpoints_updated: list[str] = Field(
        default_factory=list, description="checkpoint branches fast-forwarded"
    )
    history_missing: list[str] = Field(
        default_factory=list, description="ids in history.json without a program file"
    )
    history_unlisted: list[str] = Field(
        default_factory=list, description="program files not listed in history.json"
    )
    warnings: list[str] = Field(default_factory=list)
    object_count: int = 0
    size_bytes: int = 0
    duration_ms: float = 0.0


# -- export -----------------------------------------------------------------------


def _signature_line(who: Identity, moment: float) -> bytes:
    offset = who.signature(None).offset
    hours, minutes = divmod(abs(offset), 60)
    zone = f"{'-' if offset < 0 else '+'}{hours:02d}{minutes:02d}"
    return f"{who.name} <{who.email}> {int(moment)} {zone}".encode()


def _export_commit(
    storage: Registry, blobs: dict[str, pygit2.Oid], marker: pygit2.Oid, message: str
) -> tuple[bytes, dict[bytes, objects.RawObject]]:
    """Build (in memory, nothing written) the tree and commit of an export."""
    extra: dict[bytes, objects.RawObject] = {}
    nested: dict[str, dict[str, dict[str, list[tuple[bytes, bytes, bytes]]]]] = {}
    for program_id, blob in blobs.items():
        leaf = nested.setdefault(program_id[:2], {}).setdefault(program_id[2:4], {})
        leaf.setdefault("", []).append((b"100644", f"{program_id}.json".encode(), blob.raw))

    def tree(entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
        data = objects.encode_tree(entries)
        oid = objects.object_id(objects.OBJ_TREE, data)
        extra[oid] = (objects.OBJ_TREE, data)
        return oid

    top = []
    for first, seconds in nested.items():
        middle = [
            (objects.TREE_MODE, second.encode(), tree(files[""]))
            for second, files in seconds.items()
        ]
        top.append((objects.TREE_MODE, first.encode(), tree(middle)))
    root = tree(
        [(objects.TREE_MODE, b"programs", tree(top)), (b"100644", MARKER.encode(), marker.raw)]
    )
    author, committer = storage.identity()
    moment = time.time()
    data = (
        b"tree " + root.hex().encode() + b"\n"
        b"author " + _signature_line(author, moment) + b"\n"
        b"committer " + _signature_line(committer, moment) + b"\n\n" + message.encode()
    )
    commit = objects.object_id(objects.OBJ_COMMIT, data)
    extra[commit] = (objects.OBJ_COMMIT, data)
    return commit, extra


def _ids(program_ids: Iterable[str]) -> list[str]:
    if isinstance(program_ids, str):
        program_ids = [program_ids]
    ids: list[str] = []
    for program_id in program_ids:
        check_program_id(program_id)
        if program_id not in ids:
            ids.append(program_id)
    if not ids:
        raise InvalidInputError(
            "no program ids to export; pass at least one (or export the registry)"
        )
    return ids


def _carried_tags(
    storage: Registry, blobs: dict[str, pygit2.Oid], commit: bytes
) -> tuple[dict[str, bytes], dict[bytes, objects.RawObject], list[str]]:
    """The chosen programs' tags, re-made on the export commit; and those left out.

    A tag labels the version its commit holds: one on the exported version is
    carried as an annotated tag of the same name, tagger, time and message on
    the export commit (a signature is dropped: it signed another object). A
    tag on another version is left out, since the bundle has no history.
    """
    git = storage.git
    repo = git.repo
    refs: dict[str, bytes] = {}
    extra: dict[bytes, objects.RawObject] = {}
    left_out: list[str] = []
    wanted = {f"{TAGS_PREFIX}{name}" for name in _tag_names(storage, blobs)}
    for ref, oid in sorted(git.values_of(wanted).items()):
        program_id = ref.rpartition("/")[2]
        tag = repo.get(oid)
        commit_of = tag.target if isinstance(tag, pygit2.Tag) else None
        tagged = repo.get(commit_of) if commit_of is not None else None
        blob = (
            git.blob(tagged.tree, program_path(program_id))
            if isinstance(tagged, pygit2.Commit)
            else None
        )
        if blob is None or blob.id != blobs[program_id]:
            left_out.append(ref)
            continue
        raw = repo.odb.read(tag.id)[1]
        signed = tag_signature(raw)
        payload = signed[1] if signed is not None else raw
        header, _, message = payload.partition(b"\n\n")
        kept = [line for line in header.split(b"\n") if not line.startswith((b"object ", b"type "))]
        data = b"\n".join([b"object " + commit.hex().encode(), b"type commit", *kept])
        data += b"\n\n" + message
        made = objects.object_id(objects.OBJ_TAG, data)
        extra[made] = (objects.OBJ_TAG, data)
        refs[ref] = made
    return refs, extra, left_out


def _tag_names(storage: Registry, blobs: dict[str, pygit2.Oid]) -> list[str]:
    """``<tag>/<program id>`` of every tag of the programs in ``blobs``."""
    tags = all_tags(storage.git)
    return [f"{tag}/{pid}" for pid in blobs for tag in sorted(tags.get(pid, ()))]


def export_programs(
    storage: Registry,
    program_ids: Iterable[str],
    path: str | os.PathLike[str],
    progress: Progress | None = None,
) -> ExportResult:
    """Write a bundle holding exactly ``program_ids`` (their current versions).

    The bundle's ``main`` is one new parentless commit (not on the registry's
    ``main``) whose tree holds those programs and ``progreg.json``; its
    trailers say what was exported from where. The programs' tags on those
    versions come along, re-made on that commit (same name, tagger, time and
    message); tags on other versions are left out (``tags_left_out``): they
    need the history, which :func:`export_registry` carries. Unknown ids raise
    :class:`~progreg.ProgramNotFoundError` and nothing is written.
    """
    timer = events.Timer()
    ids = _ids(program_ids)
    git = storage.git
    tip = git.tip(MAIN)
    blobs: dict[str, pygit2.Oid] = {}
    for program_id in ids:
        blob = git.blob(tip.tree, program_path(program_id)) if tip is not None else None
        if blob is not None:
            blobs[program_id] = blob.id
    missing = [program_id for program_id in ids if program_id not in blobs]
    if missing or tip is None:
        raise ProgramNotFoundError(
            f"the registry at {storage.path} holds no program {', '.join(missing)};"
            " nothing was exported"
        )
    marker = tip.tree[MARKER].id
    shown = ", ".join(ids[:_LISTED]) + (
        f" and {len(ids) - _LISTED} more" if len(ids) > _LISTED else ""
    )
    message = format_message(
        f"Export {len(ids)} program{'s' if len(ids) != 1 else ''} from {storage.path.name}",
        [
            ("Exported-Count", str(len(ids))),
            ("Source", str(storage.path)),
            ("Source-Commit", str(tip.id)),
            ("Progreg-Action", "export"),
        ],
        f"Programs: {shown}",
    )
    commit, extra = _export_commit(storage, blobs, marker, message)
    tags, tag_objects, left_out = _carried_tags(storage, blobs, commit)
    refs = [(HEAD, commit.hex()), (MAIN, commit.hex())]
    refs += [(name, oid.hex()) for name, oid in tags.items()]
    written = _write(storage, path, refs, extra={**extra, **tag_objects}, progress=progress)
    return _exported(storage, written, "programs", ids, commit.hex(), timer, left_out)


def _write(
    storage: Registry,
    path: str | os.PathLike[str],
    refs: list[tuple[str, str]],
    *,
    exclude: Iterable[str] = (),
    extra: dict[bytes, objects.RawObject] | None = None,
    progress: Progress | None = None,
) -> bundles.WrittenBundle:
    target = Path(path)
    if target.is_dir():
        raise InvalidInputError(f"{target} is a directory; give the bundle file to write")
    if not target.absolute().parent.is_dir():
        raise InvalidInputError(
            f"cannot write the bundle {target}: its directory {target.absolute().parent} does"
            " not exist (create it first, as git bundle create needs too)"
        )
    try:
        return bundles.write_bundle(
            storage.git.repo, target, refs, exclude=exclude, extra=extra, progress=progress
        )
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"cannot write the bundle {target}: the disk holding it is full"
                f" ({exc.strerror}); nothing was written: free some space and retry"
            ) from exc
        raise InvalidInputError(f"cannot write the bundle {target}: {exc}") from exc


def _exported(
    storage: Registry,
    written: bundles.WrittenBundle,
    kind: Literal["programs", "registry"],
    ids: list[str],
    commit: str,
    timer: events.Timer,
    tags_left_out: list[str] | None = None,
) -> ExportResult:
    result = ExportResult(
        path=str(written.path),
        kind=kind,
        bundle_version=written.version,
        refs=dict(written.references),
        prerequisites=written.prerequisites,
        program_ids=ids,
        commit=commit,
        tags_left_out=tags_left_out or [],
        object_count=written.object_count,
        size_bytes=written.size,
        duration_ms=timer.ms,
    )
    events.emit(
        "progreg.export",
        path=result.path,
        kind=kind,
        registry=str(storage.path),
        programs=len(ids),
        refs=len(result.refs),
        prerequisites=len(result.prerequisites),
        objects=result.object_count,
        size_bytes=result.size_bytes,
        duration_ms=result.duration_ms,
    )
    return result


def _registry_refs(storage: Registry) -> list[tuple[str, str]]:
    """main, HEAD, every valid tag and checkpoint ref, as ``(refname, object id)``."""
    repo = storage.git.repo
    tip = storage.git.tip(MAIN)
    if tip is None:
        raise InvalidInputError(f"the registry at {storage.path} is empty: nothing to export")
    refs = [(HEAD, str(tip.id)), (MAIN, str(tip.id))]
    for name in sorted(repo.listall_references()):
        if name != MAIN and _allowed_ref(name):
            refs.append((name, str(repo.references[name].target)))
    return refs


def _since(storage: Registry, since: str) -> list[str]:
    """The objects an incremental export may assume: a bundle's refs, or one commit."""
    repo = storage.git.repo
    if os.path.isfile(since) and bundles.is_bundle(since):
        header = bundles.read_header(since)
        known = [oid for _, oid in header.references if repo.get(oid) is not None]
        return known + [oid for oid, _ in header.prerequisites if repo.get(oid) is not None]
    try:
        found = repo.revparse_single(since).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as exc:
        raise InvalidInputError(
            f"since={since!r} is neither a bundle file nor a commit of the registry"
        ) from exc
    return [str(found.id)]


def export_registry(
    storage: Registry,
    path: str | os.PathLike[str],
    since: str | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write a bundle of the whole registry, or of what is new since ``since``.

    ``since`` is a previous export's bundle file (its references become what
    the new bundle builds on) or a commit id or revision of the registry.
    """
    timer = events.Timer()
    refs = _registry_refs(storage)
    exclude = _since(storage, since) if since is not None else []
    written = _write(storage, path, refs, exclude=exclude, progress=progress)
    tip = storage.git.tip(MAIN)
    assert tip is not None
    ids = sorted(_program_ids(storage.git.repo, tip))
    return _exported(storage, written, "registry", ids, str(tip.id), timer)


def _program_ids(repo: pygit2.Repository, commit: pygit2.Commit) -> list[str]:
    ids = (program_id_of_path(path) for path, _, _ in tree_files(repo, commit.tree))
    return [program_id for program_id in ids if program_id is not None]


# -- import: bundles --------------------------------------------------------------


def _allowed_ref(name: str) -> bool:
    """True for the refs a registry bundle may carry."""
    if name in (HEAD, MAIN):
        return True
    try:
        if name.startswith(CHECKPOINTS_PREFIX):
            check_name("checkpoint", name[len(CHECKPOINTS_PREFIX) :], CHECKPOINTS_PREFIX)
            return True
        if name.startswith(TAGS_PREFIX):
            tag, slash, program_id = name[len(TAGS_PREFIX) :].partition("/")
            check_name("tag", tag, TAGS_PREFIX)
            return bool(slash) and is_program_id(program_id)
    except InvalidNameError:
        return False
    return False


def _check_header(header: bundles.BundleHeader, where: str) -> None:
    refused = [name for name, _ in header.references if not _allowed_ref(name)]
    if refused:
        raise BundleError(
            f"{where} has refs outside the registry's namespaces (refs/heads/main,"
            f" refs/heads/checkpoints/<name>, refs/tags/<tag>/<program id>, HEAD):"
            f" {', '.join(map(mask_credentials, refused[:10]))}; nothing was imported"
        )
    if not any(name != HEAD for name, _ in header.references):
        raise BundleError(f"{where} has no refs a registry could import")


class _BundleImport:
    """The checks and writes of one bundle import."""

    def __init__(self, storage: Registry, path: Path) -> None:
        self.storage = storage
        self.path = path
        self.where = str(path)
        self.source = path.name
        self.header = bundles.read_header(path)
        _check_header(self.header, self.where)
        self.tags_created: list[str] = []
        self.tags_kept: list[str] = []
        self.checkpoints_created: list[str] = []
        self.checkpoints_updated: list[str] = []
        self._tags: list[tuple[str, str]] = []
        self.merge_plan: tuple[str | None, MergePlan] | None = None
        self._checkpoints: list[tuple[str, str]] = []
        #: Their main must join ours even if it changes no file: new tags need it.
        self.join = False

    def _commit(self, repo: pygit2.Repository, oid: str, name: str) -> pygit2.Commit:
        try:
            return repo[oid].peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise BundleError(f"{self.where}: {name} does not lead to a commit") from exc

    def plan(
        self, repo: pygit2.Repository, handles: Iterator[pygit2.Repository]
    ) -> tuple[str | None, bool]:
        """Check everything against ``repo`` (which sees the quarantine); write nothing.

        Each reference is checked through the next of ``handles`` (which see the
        quarantine too). Returns their main's commit (or None) and whether merging
        it changes main.
        """
        refs = self.header.refs
        ours = self.storage.git.tip(MAIN)
        theirs = refs.get(MAIN)
        changes = False
        if theirs is not None:
            their_commit = self._commit(repo, theirs, MAIN)
            where = f"{self.where}: its main (commit {theirs[:12]}) is"
            check_marker(their_commit.tree, where, MAIN, BundleError)
            our_commit = repo[ours.id] if ours is not None else None
            assert our_commit is None or isinstance(our_commit, pygit2.Commit)
            merge = plan_merge(repo, our_commit, their_commit, self.storage.max_program_bytes)
            raise_conflicts(merge, self.source, theirs)
            self._check_files(merge.edits)
            # their main is ahead of ours (or there is no main here): a fast-forward
            behind = not merge.up_to_date and (
                our_commit is None or repo.descendant_of(their_commit.id, our_commit.id)
            )
            changes = not merge.up_to_date and (merge.changes or behind)
            self.merge_plan = (str(ours.id) if ours is not None else None, merge)
        diverged = []
        when: dict[str, tuple[int, str]] = {}  # tag -> its commit's (time, id)
        for (name, oid), handle in zip(self.header.references, handles, strict=False):
            if name.startswith(TAGS_PREFIX):
                tagged = self._commit(handle, oid, name)
                current = handle.references.get(name)
                if current is None:
                    self._tags.append((name, oid))
                    when[name] = (tagged.commit_time, str(tagged.id))
                elif str(current.target) != oid:
                    self.tags_kept.append(name)
            elif name.startswith(CHECKPOINTS_PREFIX):
                commit = self._commit(handle, oid, name)
                current = handle.references.get(name)
                if current is None:
                    self._checkpoints.append((name, oid))
                elif current.target != commit.id:
                    if handle.descendant_of(commit.id, current.target):
                        self._checkpoints.append((name, oid))
                    elif not handle.descendant_of(current.target, commit.id):
                        diverged.append(name)
        if diverged:
            raise ConflictError(
                f"{self.where}: checkpoint branch(es) {', '.join(diverged)} diverged from this"
                " registry's (neither contains the other); nothing was imported. Rename or"
                " delete one side's checkpoint and retry."
            )
        # In the order of their commits: consecutive checks read trees that share
        # delta bases, where name order reads each from a cold chain.
        self._tags.sort(key=lambda tag: when[tag[0]])
        if self._tags:
            needed = self._check_tags_on_main(
                next(handles), {name: when[name][1] for name, _ in self._tags}, ours, theirs
            )
            if needed:  # their main joins ours even if it changes no file (or no longer does)
                self.join = changes = True
        tip = theirs if theirs is not None or ours is None else str(ours.id)
        self._check_refs(handles, tip)
        return theirs, changes

    def _check_tags_on_main(
        self,
        repo: pygit2.Repository,
        tagged: dict[str, str],
        ours: pygit2.Commit | None,
        theirs: str | None,
    ) -> bool:
        """Refuse tags whose commit will not be in main's history; True if theirs must join.

        The rule of the server hook (:func:`~progreg.registry.validation.validate_ref_update`):
        a tag labels a program version saved on ``main``. Main after the import
        holds ours and, when the bundle has a main, theirs.
        """
        their_tip = pygit2.Oid(hex=theirs) if theirs is not None else None
        wanted = {pygit2.Oid(hex=commit) for commit in tagged.values()}
        from_theirs, rest = outside_merged_history(
            repo, wanted, ours.id if ours is not None else None, their_tip
        )
        if rest:
            names = sorted(
                name for name, commit in tagged.items() if pygit2.Oid(hex=commit) in rest
            )
            shown = ", ".join(names[:10]) + (
                f" and {len(names) - 10} more" if len(names) > 10 else ""
            )
            source = "this registry's main or the bundle's" if theirs else "this registry's main"
            raise BundleError(
                f"{self.where}: {len(names)} tag(s) label commits that are not in {source}"
                f" history: {shown}. A tag labels a program version saved on main (a server"
                " with progreg's hook refuses such tags too); nothing was imported. Export main"
                " with the tags (progreg export FILE --all, or git bundle create FILE main"
                " --tags), or import the bundle that brings their programs first."
            )
        return bool(from_theirs)

    def _refuse(self, problems: list[Problem], what: str) -> None:
        if not problems:
            return
        if all(problem.secrets for problem in problems):
            listed = "; ".join(
                f"{problem.path} ({', '.join(problem.secrets[:5])})" for problem in problems[:5]
            )
            raise SecretDetectedError(
                f"{self.where}: {what} brings programs holding credentials: {listed};"
                f" nothing was imported. {_BUNDLE_SECRET_FIX}",
                [f"{problem.path}:{path}" for problem in problems for path in problem.secrets],
            )
        shown = "; ".join(str(problem) for problem in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BundleError(
            f"{self.where}: {what} is not a sound registry: {shown}{more}; nothing was imported"
        )

    def _check_files(self, edits: Mapping[str, object]) -> None:
        """Check the paths their main brings.

        The pack's trees were checked as they were read (no ``.``, ``..``,
        ``.git``, link or submodule anywhere); ``plan_merge`` checked every
        program file and refused files a registry may not hold.
        """
        problems = [
            Problem(problem, path=path)
            for path in edits
            if (problem := unsafe_path(path)) is not None
        ]
        self._refuse(problems, "its main")

    def check_secrets(self, repo: pygit2.Repository, flagged: list[bytes]) -> None:
        """Refuse the bundle if a program document among its blobs holds a credential.

        Every blob of the pack, history included, was given to
        :func:`~progreg.core.secrets.may_hold_secrets` as the pack was read; the
        program documents among those it flagged are looked into here.
        """
        for oid in flagged:
            kind, data = repo.odb.read(pygit2.Oid(raw=oid))
            if kind != pygit2.enums.ObjectType.BLOB or len(data) > self.storage.max_program_bytes:
                continue
            where = f"blob {oid.hex()} in {self.where}"
            try:
                doc = decode_document(data, where)
            except ProgregError:
                continue  # not a program document: not looked into
            screen_document(
                doc, "refuse", f"program {doc.program_id} ({where})", fix=_BUNDLE_SECRET_FIX
            )

    def _check_refs(self, handles: Iterator[pygit2.Repository], main_tip: str | None) -> None:
        """Check the tags to create and the checkpoint branches to move, as a server would."""
        limit = self.storage.max_program_bytes
        # plan_merge checked these program files as check_file would (secrets: check_secrets)
        checked = self.merge_plan[1].edits if self.merge_plan is not None else {}
        for (name, oid), repo in zip([*self._tags, *self._checkpoints], handles, strict=False):
            current = repo.references.get(name)
            old = str(current.target) if current is not None else _ZERO
            update = RefUpdate(old, oid, name)
            found = validate_ref_update(
                repo,
                update,
                main_tip=main_tip,
                max_program_bytes=limit,
                check_history=False,
                checked=checked,
            )
            self._refuse(found, name)

    @property
    def has_refs_to_write(self) -> bool:
        """Whether the bundle brings tags or checkpoint moves this registry lacks."""
        return bool(self._tags or self._checkpoints)

    def write_refs(self) -> None:
        """Create missing tags, create or fast-forward checkpoint branches."""
        git = self.storage.git
        repo = git.repo
        tags = dict(self._tags)
        committer = self.storage.identity()[1]
        created = set(
            git.create_refs(tags, RefLogEntry(committer, f"import {self.source}: storing tag"))
        )
        self.tags_created += [name for name in tags if name in created]
        self.tags_kept += [name for name in tags if name not in created]
        for name, oid in self._checkpoints:
            existed = repo.references.get(name) is not None
            entry = RefLogEntry(committer, f"import {self.source}: fast-forward")
            moved = git.fast_forward(name, pygit2.Oid(hex=oid), entry)
            if moved is None:
                continue
            (self.checkpoints_updated if existed else self.checkpoints_created).append(name)


def _import_bundle(
    storage: Registry, path: Path, timer: events.Timer, progress: Progress | None
) -> ImportResult:
    job = _BundleImport(storage, path)
    max_size = max(storage.max_program_bytes, DEFAULT_MAX_PROGRAM_BYTES)
    with unbundle.unpack(
        storage.git.repo,
        path,
        job.header,
        max_object_size=max_size,
        progress=progress,
        forbidden_modes=_FORBIDDEN_MODES,
        flag_blob=may_hold_secrets,
        max_blob_size=storage.max_program_bytes,
        max_tree_entries=MAX_TREE_ENTRIES,
    ) as incoming:
        repo = incoming.repository()
        job.check_secrets(repo, incoming.flagged)
        with closing(incoming.handles()) as handles:
            theirs, changes = job.plan(repo, handles)
        repo.free()
        if changes or job.has_refs_to_write:  # else the quarantine is simply dropped
            try:
                incoming.migrate()
            except OSError as exc:
                raise storage.write_error(exc) from exc
    merged = None
    try:  # the migrated pack is kept (git repack leaves it) until the refs reach it
        with storage.reading(f"the objects of {path}"):
            if theirs is not None and changes:
                merged = merge_into_main(
                    storage,
                    theirs,
                    action="import",
                    source=job.source,
                    fast_forward=True,
                    planned=job.merge_plan,
                    emit=False,
                    join=job.join,
                )
        try:
            with write_lock(storage.path, storage.git.lock_timeout):  # a crash here is recovered
                job.write_refs()
        except (pygit2.GitError, OSError) as exc:
            raise storage.write_error(exc) from exc
    finally:
        incoming.release()
    identical = merged.identical if merged is not None else []
    if merged is None and theirs is not None:
        plan = job.merge_plan[1] if job.merge_plan is not None else None
        if plan is not None and not plan.up_to_date:  # nothing new: objects were not kept
            identical = sorted(plan.identical)
        else:  # their main is already in our history
            repo = storage.git.repo
            identical = sorted(_program_ids(repo, repo[theirs].peel(pygit2.Commit)))
    return ImportResult(
        source=str(path),
        source_kind="bundle",
        commit=merged.commit if merged is not None else None,
        fast_forward=merged.fast_forward if merged is not None else False,
        imported=merged.added if merged is not None else [],
        updated=merged.updated if merged is not None else [],
        removed=merged.removed if merged is not None else [],
        identical=identical,
        tags_created=job.tags_created,
        tags_kept=sorted(job.tags_kept),
        checkpoints_created=job.checkpoints_created,
        checkpoints_updated=job.checkpoints_updated,
        object_count=incoming.object_count,
        size_bytes=path.stat().st_size,
        duration_ms=timer.ms,
    )


# -- import: reference formats ----------------------------------------------------


def _reference_message(source: ReferenceSource, name: str, added: list[str], identical: int) -> str:
    shown = ", ".join(added[:_LISTED]) + (
        f" and {len(added) - _LISTED} more" if len(added) > _LISTED else ""
    )
    return format_message(
        f"Import {len(added)} program{'s' if len(added) != 1 else ''} from {name}",
        [
            ("Source", name),
            ("Source-Kind", source.kind),
            ("Imported-Count", str(len(added))),
            ("Identical-Count", str(identical)),
            ("Progreg-Action", "import"),
        ],
        f"Imported: {shown}",
    )


def _encode_reference(
    storage: Registry, path: Path, source: ReferenceSource, secrets: SecretsPolicy
) -> dict[str, tuple[ProgramDocument, bytes]]:
    """Every document of ``source`` screened, encoded and size-checked, by program id."""
    encoded: dict[str, tuple[ProgramDocument, bytes]] = {}
    for found in source.documents:
        try:
            document = screen_document(found, secrets, f"{path}: program {found.program_id}")
            data = document.encode()
        except SecretDetectedError:
            raise
        except ProgregError as exc:
            raise BundleError(f"{path}: program {found.program_id}: {exc}") from exc
        storage.check_size(len(data), document.program_id)
        previous = encoded.get(document.program_id)
        if previous is not None and previous[1] != data:
            raise BundleError(
                f"{path} holds program {document.program_id} twice with different content;"
                " nothing was imported"
            )
        encoded[document.program_id] = (document, data)
    return encoded


def _import_reference(
    storage: Registry,
    path: Path,
    source: ReferenceSource,
    timer: events.Timer,
    secrets: SecretsPolicy,
) -> ImportResult:
    encoded = _encode_reference(storage, path, source, secrets)
    hashes = {pid: pygit2.hash(data) for pid, (_, data) in encoded.items()}

    def sort(tip: Tip | None) -> tuple[list[str], list[str], list[str]]:
        added, identical, conflicts = [], [], []
        for program_id in sorted(encoded):
            existing = None
            if tip is not None:
                blob = storage.git.blob(tip.tree, program_path(program_id))
                existing = blob.id if blob is not None else None
            if existing is None:
                added.append(program_id)
            elif existing == hashes[program_id]:
                identical.append(program_id)
            else:
                conflicts.append(program_id)
        if conflicts:
            shown = ", ".join(conflicts[:10]) + (" ..." if len(conflicts) > 10 else "")
            raise ConflictError(
                f"{len(conflicts)} program(s) in {path} exist in the registry with different"
                f" content: {shown}. Nothing was imported; delete or re-save one side and retry."
            )
        return added, identical, conflicts

    added, identical, _ = sort(storage.git.plan_tip(MAIN))
    author, committer = storage.identity()
    commit = None
    if added:
        try:
            blobs = {pid: storage.git.write_blob(encoded[pid][1]) for pid in added}
        except (pygit2.GitError, OSError) as exc:
            raise storage.write_error(exc) from exc

        def plan(tip: Tip | None) -> tuple[CommitPlan | None, tuple[list[str], list[str]]]:
            now_added, now_identical, _ = sort(tip)
            if not now_added:
                return None, (now_added, now_identical)
            edits: dict[str, pygit2.Oid | None] = {program_path(p): blobs[p] for p in now_added}
            message = _reference_message(source, path.name, now_added, len(now_identical))
            commit_plan = CommitPlan(storage.with_marker(tip, edits), message, author, committer)
            return commit_plan, (now_added, now_identical)

        try:
            made, (added, identical) = storage.git.update_ref_returning(MAIN, plan)
        except (pygit2.GitError, OSError) as exc:
            raise storage.write_error(exc) from exc
        commit = str(made) if made is not None else None
    return ImportResult(
        source=str(path),
        source_kind=source.kind,
        commit=commit,
        imported=added,
        identical=identical,
        history_missing=source.history_missing,
        history_unlisted=source.history_unlisted,
        warnings=source.warnings,
        object_count=len(added),
        size_bytes=sum(len(encoded[p][1]) for p in added),
        duration_ms=timer.ms,
    )


# -- import: dispatch -------------------------------------------------------------


def _kind(path: Path) -> SourceKind:
    if path.is_dir():
        if is_storage_folder(path):
            return "dspy-storage"
        raise BundleError(
            f"{path} is a folder but not a reference storage folder (no programs/ or history.json)"
        )
    if not path.is_file():
        raise BundleError(f"{path} does not exist (or is not a file or folder)")
    try:
        with open(path, "rb") as handle:
            start = handle.read(64)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    if start.startswith(b"# v2 git bundle\n") or start.startswith(b"# v3 git bundle\n"):
        return "bundle"
    if start.startswith(b"# v"):
        first = start.split(b"\n", 1)[0]
        raise BundleError(f"{path} is a Git bundle of an unsupported version ({first!r})")
    if start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "json-export"
    raise BundleError(
        f"{path} is neither a Git bundle, a reference JSON export nor a dspy_storage folder"
    )


def import_programs(
    storage: Registry,
    path: str | os.PathLike[str],
    progress: Progress | None = None,
    secrets: SecretsPolicy = "refuse",
) -> ImportResult:
    """Import a bundle, a reference-format export file or a ``dspy_storage/`` folder.

    Everything is checked before anything is written: a refused import
    (:class:`~progreg.BundleError`, :class:`~progreg.ConflictError`...)
    leaves the registry exactly as it was. A program holding a credential
    is refused (:class:`~progreg.SecretDetectedError`); ``secrets="redact"``
    imports a reference export's programs with them redacted instead (a
    bundle's, which carry their history, are always refused).
    """
    storage.git.check_writable()
    policy = check_policy(secrets)
    source_path = Path(path)
    kind = _kind(source_path)
    with events.operation("progreg.import", source=str(source_path), source_kind=kind) as timer:
        if kind == "bundle":
            result = _import_bundle(storage, source_path, timer, progress)
        else:
            reader = read_export_file if kind == "json-export" else read_storage_folder
            result = _import_reference(storage, source_path, reader(source_path), timer, policy)
    events.emit(
        "progreg.import",
        source=result.source,
        source_kind=result.source_kind,
        commit=result.commit,
        imported=len(result.imported),
        updated=len(result.updated),
        identical=len(result.identical),
        tags=len(result.tags_created),
        checkpoints=len(result.checkpoints_created) + len(result.checkpoints_updated),
        objects=result.object_count,
        size_bytes=result.size_bytes,
        duration_ms=result.duration_ms,
    )
    return result
