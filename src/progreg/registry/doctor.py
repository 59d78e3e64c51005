"""``progreg doctor``: what crashes, full disks and other tools left in a registry.

:func:`diagnose` looks at a registry without trusting it to be sound (it
works on one too damaged to open as a registry) and reports:

- the write lock: what ``progreg.lock`` says and whether a writer holds it;
- ref lock files (``refs/**/*.lock``, ``packed-refs.lock``, ``HEAD.lock``)
  with their age and who left them;
- temporary files: ``objects/**/tmp_*``, bundle quarantines
  ``objects/incoming-*``, ``progreg-cache/.*.tmp``, ``hooks/.*.tmp``,
  ``packed-refs.new``;
- loose objects and packs; the log cache; the format marker on ``main``;
- the files beside the packs that Git's tools write and read
  (:func:`progreg.git.pack.integrity.check_pack_dir`): a multi-pack-index
  naming a pack that is gone, a pack without its index, ``objects/info/packs``
  naming a pack that is gone; refs pointing at missing objects;
- a summary of :func:`progreg.registry.verify.verify_repository` (every object read).

With ``fix`` it removes only what is provably safe to remove:

- ref lock files left by a progreg writer that died holding the write lock
  (its record still says ``held``, doctor takes the lock itself, so no
  writer is running, and the file is no older than that record): what every
  progreg writer does on its own when it takes the lock;
- temporary files not modified for ``grace`` seconds: a call renames its
  temporary files to their final names before it returns, so a temporary
  file belongs to a call that has not returned (that died, or is still
  writing: the grace period leaves that one alone), and no ref, pack or
  index ever names one;
- a log cache that fails its checksum: progreg never trusts the cache over
  Git and rebuilds it on the next query.

Ref locks of other Git processes, damaged objects and an unreadable format
marker are reported for a person to act on, never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Literal

import pygit2
from pydantic import BaseModel, ConfigDict, Field

from progreg.core import canonical
from progreg.core.document import DEFAULT_MAX_PROGRAM_BYTES, FORMAT_VERSION
from progreg.core.layout import MAIN, MARKER
from progreg.errors import ProgregError, RegistryBusyError
from progreg.git import GitRepository
from progreg.git.locking import (
    lock_is_free,
    read_record,
    ref_lock_files,
    write_lock,
)
from progreg.git.maintenance import DEFAULT_AUTO_THRESHOLD
from progreg.git.pack import integrity
from progreg.registry import logcache
from progreg.registry.verify import verify_repository

#: Temporary files younger than this many seconds are left alone by default.
DEFAULT_GRACE = 3600.0


CacheState = Literal["valid", "missing", "damaged", "stale"]


class LockInfo(BaseModel):
    """The registry's write lock (``progreg.lock``)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    record: str = Field(description="held, released, missing or unknown")
    pid: int | None = Field(description="the holder's process id, from a held record")
    since: float | None = Field(description="when it took the lock (Unix time)")
    held_now: bool | None = Field(description="a process holds the lock now (None: unknown)")
    holder_crashed: bool = Field(description="the record says held but nobody holds it")


class RefLock(BaseModel):
    """A ref lock file Git or libgit2 left or is holding."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str = Field(description="relative to the registry")
    age_seconds: float
    left_by: Literal["crashed progreg writer", "other git process"]
    removed: bool


class TempFile(BaseModel):
    """A temporary file (or quarantine directory) nothing refers to."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str = Field(description="relative to the registry")
    kind: str
    age_seconds: float
    size_bytes: int
    removed: bool


class ObjectsInfo(BaseModel):
    """The object database."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    loose_objects: int
    packs: int
    size_bytes: int


class CacheInfo(BaseModel):
    """The persisted log index (``progreg-cache/``)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    state: CacheState
    removed: bool


class VerifySummary(BaseModel):
    """The counts of :class:`~progreg.VerifyReport`."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    programs_checked: int
    program_problems: int
    damaged_objects: int
    bad_signatures: int
    tag_problems: int = 0


class DoctorReport(BaseModel):
    """What :func:`diagnose` found and (with ``fix``) removed; see the module docstring."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    registry: str
    format_version: int | None = Field(
        description="of main's progreg.json; None: none or unreadable"
    )
    write_lock: LockInfo
    ref_locks: list[RefLock]
    temp_files: list[TempFile]
    objects: ObjectsInfo
    cache: CacheInfo
    verify: VerifySummary | None = Field(description="None when not run (quick)")
    problems: list[str] = Field(description="what still needs a person, one sentence each")
    notes: list[str] = Field(description="harmless findings and advice")

    @property
    def ok(self) -> bool:
        """Nothing needs a person."""
        return not self.problems


def _age(path: Path, now: float) -> float:
    try:
        return max(0.0, now - path.lstat().st_mtime)
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
    with contextlib.suppress(OSError):
        return path.lstat().st_size
    return 0


def _temp_candidates(gitdir: Path) -> list[tuple[Path, str]]:
    objects = gitdir / "objects"
    found = [(p, "temporary object") for p in objects.glob("[0-9a-f][0-9a-f]/tmp_*")]
    found += [(p, "temporary object") for p in objects.glob("tmp_*")]
    found += [(p, "temporary pack") for p in objects.glob("pack/tmp_*")]
    found += [(p, "bundle quarantine") for p in objects.glob("incoming-*")]
    found += [(p, "cache temporary") for p in (gitdir / logcache.CACHE_DIR).glob(".*.tmp")]
    found += [(p, "hook temporary") for p in (gitdir / "hooks").glob(".*.tmp")]
    found += [(p, "git temporary") for p in gitdir.glob("packed-refs.new")]
    return sorted(found)


def _objects(gitdir: Path) -> ObjectsInfo:
    objects = gitdir / "objects"
    loose = sum(
        1
        for fan in objects.glob("[0-9a-f][0-9a-f]")
        for entry in fan.iterdir()
        if len(entry.name) == 38
    )
    packs = [p for p in objects.glob("pack/pack-*.pack") if p.with_suffix(".idx").is_file()]
    size = sum(p.lstat().st_size for p in objects.rglob("*") if p.is_file())
    return ObjectsInfo(loose_objects=loose, packs=len(packs), size_bytes=size)


def _cache(gitdir: Path, repo: pygit2.Repository, damaged: set[str]) -> tuple[CacheState, Path]:
    path = logcache.cache_path(gitdir, MAIN)
    if not path.exists():
        return "missing", path
    body = logcache.read(path)
    if body is None:
        return "damaged", path
    head = str(body.get("head", ""))
    reference = repo.references.get(MAIN)
    commit = None if reference is None else reference.target
    while isinstance(commit, pygit2.Oid) and str(commit) not in damaged:
        if str(commit) == head:
            return "valid", path
        try:
            parents = repo[commit].peel(pygit2.Commit).parent_ids
        except (pygit2.GitError, KeyError, ValueError):
            break
        commit = parents[0] if parents else None
    return "stale", path


def _missing_ref_targets(git: GitRepository) -> list[str]:
    """A sentence for each ref that points at an object no file holds (``git fsck``'s
    "invalid sha1 pointer")."""
    odb = git.repo.odb
    return [
        f"refs/{name} points at {value}, which no file of the registry holds:"
        " restore it from a copy or a remote (see docs/recovery.md)"
        for name, value in sorted(git.ref_values("refs/").items())
        if pygit2.Oid(hex=value) not in odb
    ]


def _format_version(repo: pygit2.Repository, damaged: set[str]) -> tuple[int | None, str | None]:
    """main's format version, or why it cannot be read (never reading a damaged object)."""
    reference = repo.references.get(MAIN)
    if reference is None:
        return None, None
    try:
        target = reference.resolve().target
        if str(target) in damaged:
            return None, "main's tip commit is damaged"
        commit = repo[target].peel(pygit2.Commit)
        if str(commit.tree_id) in damaged:
            return None, "main's root tree is damaged"
        tree = commit.tree
        if MARKER not in tree:
            return None, f"main has no {MARKER}: not a progreg registry"
        if str(tree[MARKER].id) in damaged:
            return None, f"main's {MARKER} is damaged"
        marker = repo[tree[MARKER].id].peel(pygit2.Blob)
        version = canonical.decode(marker.data, MARKER)["format_version"]
    except (pygit2.GitError, KeyError, ValueError, TypeError, ProgregError) as exc:
        return None, f"cannot read main's {MARKER}: {exc}"
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return None, f"main's {MARKER} has an invalid format_version {version!r}"
    if version > FORMAT_VERSION:
        return version, f"written in format {version}; this progreg reads up to {FORMAT_VERSION}"
    return version, None


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _write_lock(gitdir: Path) -> LockInfo:
    record = read_record(gitdir)
    free = lock_is_free(gitdir)
    held_now = None if free is None else not free
    return LockInfo(
        record=record.state,
        pid=record.pid,
        since=record.since,
        held_now=held_now,
        holder_crashed=record.state == "held" and held_now is False,
    )


def _ref_locks(
    gitdir: Path, lock: LockInfo, fix: bool, lock_timeout: float, problems: list[str]
) -> list[RefLock]:
    """The ref lock files; with ``fix``, take the write lock, which recovers a crashed holder's."""
    now = time.time()
    since = (lock.since or 0.0) - 1.0
    found = {
        p: (_age(p, now), lock.holder_crashed and now - _age(p, now) >= since)
        for p in ref_lock_files(gitdir)
    }
    if fix:
        try:
            with write_lock(gitdir, lock_timeout):
                pass
        except RegistryBusyError:
            problems.append(
                f"a writer held the write lock for {lock_timeout:g} s: run doctor again"
            )
    ref_locks = []
    for path, (age, ours) in sorted(found.items()):
        removed = not path.exists()
        left_by: Literal["crashed progreg writer", "other git process"] = (
            "crashed progreg writer" if ours else "other git process"
        )
        ref_locks.append(
            RefLock(
                path=str(path.relative_to(gitdir)),
                age_seconds=round(age, 3),
                left_by=left_by,
                removed=removed,
            )
        )
        if removed:
            continue
        if ours:
            problems.append(
                f"{path} was left by a progreg writer that died holding the write lock;"
                " the next writer removes it, or run `progreg doctor --fix`"
            )
        else:
            problems.append(
                f"{path} ({age:.0f} s old) is held by another Git process, or was left by"
                " one that crashed: if no Git process is using the registry, remove it"
            )
    return ref_locks


def _temp_files(gitdir: Path, fix: bool, grace: float, notes: list[str]) -> list[TempFile]:
    now = time.time()
    temp_files = []
    for temp, kind in _temp_candidates(gitdir):
        age = _age(temp, now)
        size = _size(temp)
        removed = fix and age >= grace and _remove(temp)
        temp_files.append(
            TempFile(
                path=str(temp.relative_to(gitdir)),
                kind=kind,
                age_seconds=round(age, 3),
                size_bytes=size,
                removed=removed,
            )
        )
    left = [t for t in temp_files if not t.removed]
    if left:
        young = sum(t.age_seconds < grace for t in left)
        notes.append(
            f"{len(left)} temporary file(s) of calls that did not finish"
            + (f" ({young} younger than {grace:g} s, perhaps still being written)" if young else "")
            + ": `progreg doctor --fix` removes those older than the grace period"
        )
    return temp_files


def _verify(git: GitRepository, problems: list[str]) -> VerifySummary:
    report = verify_repository(git, DEFAULT_MAX_PROGRAM_BYTES)
    if report.damaged_objects:
        programs = sorted({p for d in report.damaged_objects for p in d.programs})
        needed = f"; programs: {', '.join(programs)}" if programs else ""
        problems.append(
            f"{len(report.damaged_objects)} damaged or missing object(s){needed}:"
            " `progreg verify` lists them"
        )
    elif report.problems:
        problems.append(f"{len(report.problems)} program file(s) fail validation: see verify")
    if report.bad_signatures:
        problems.append(f"{len(report.bad_signatures)} bad signature(s): see verify")
    if report.tag_problems:
        problems.append(
            f"{len(report.tag_problems)} tag(s) a server's hook would refuse (such as one off"
            " main's history): `progreg verify` lists them"
        )
    return VerifySummary(
        programs_checked=report.programs_checked,
        program_problems=len(report.problems),
        damaged_objects=len(report.damaged_objects),
        bad_signatures=len(report.bad_signatures),
        tag_problems=len(report.tag_problems),
    )


def diagnose(
    path: str | os.PathLike[str],
    *,
    fix: bool = False,
    grace: float = DEFAULT_GRACE,
    quick: bool = False,
    lock_timeout: float = 5.0,
) -> DoctorReport:
    """Look at the registry at ``path``; with ``fix``, remove what is safe (module docstring)."""
    git = GitRepository(path, create=False)
    gitdir = git.path
    problems: list[str] = []
    notes: list[str] = []
    damaged = set(integrity.check_loose(gitdir))  # never handed to libgit2 below
    lock = _write_lock(gitdir)
    ref_locks = _ref_locks(gitdir, lock, fix, lock_timeout, problems)
    temp_files = _temp_files(gitdir, fix, grace, notes)
    objects = _objects(gitdir)
    problems += [f"{d.file}: {d.message}" for d in integrity.check_pack_dir(gitdir)]
    problems += _missing_ref_targets(git)
    if objects.loose_objects > DEFAULT_AUTO_THRESHOLD:
        notes.append(f"{objects.loose_objects} loose objects: `progreg gc` packs them")
    state, cache_file = _cache(gitdir, git.repo, damaged)
    cache_removed = fix and state == "damaged" and _remove(cache_file)
    if state == "damaged" and not cache_removed:
        notes.append(f"the log cache {cache_file} is damaged: it is ignored and rebuilt")
    version, format_problem = _format_version(git.repo, damaged)
    if format_problem is not None:
        problems.append(format_problem)
    return DoctorReport(
        registry=str(gitdir),
        format_version=version,
        write_lock=lock,
        ref_locks=ref_locks,
        temp_files=temp_files,
        objects=objects,
        cache=CacheInfo(state=state, removed=cache_removed),
        verify=None if quick else _verify(git, problems),
        problems=problems,
        notes=notes,
    )
