"""File modes as Git gives them in a shared repository (``core.sharedRepository``).

Git creates a file with a mode (``0666`` for refs, lock files, reflogs and
``packed-refs``, ``0444`` for packs, indexes and loose objects, ``0777`` for
directories), lets the umask take bits away, then calls ``adjust_shared_perm``
(path.c): with ``core.sharedRepository`` set it adds the group's (or
everybody's) bits, or replaces the permission bits with a given octal mode;
a file created read-only gets no write bits, a directory gets ``x`` wherever
it has ``r`` and the setgid bit when the group gains access. This module does
the same for every file and directory progreg creates inside a registry:
:func:`parse_shared` is Git's ``git_config_perm``, :func:`shared_mode` its
``calc_shared_perm`` plus the directory rules, :func:`adjust_path` and
:func:`adjust_fd` its ``adjust_shared_perm``.

A ``shared`` value of :data:`PERM_UMASK` (0, Git's default) changes nothing
and costs nothing: every function returns at once.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path

from progreg.errors import RegistryError

#: ``core.sharedRepository`` unset, ``umask`` or false: the umask alone decides.
PERM_UMASK = 0
#: ``group`` or true: the group gets what the owner has.
PERM_GROUP = 0o660
#: ``all``, ``world`` or ``everybody``: the group as the owner, everybody may read.
PERM_EVERYBODY = 0o664
#: The mode Git opens ref, lock and log files with (before the umask).
FILE_MODE = 0o666
#: The mode Git creates packs, pack indexes and loose objects with (before the umask).
READ_ONLY_MODE = 0o444
#: The mode Git creates directories with (before the umask).
DIRECTORY_MODE = 0o777

_TRUE = frozenset(("true", "yes", "on"))
_FALSE = frozenset(("false", "no", "off", ""))


def config_bool(key: str, value: str) -> bool:
    """``value`` read as Git reads a boolean (``git_config_bool``); raise if it is none."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    try:
        return int(text, 10) != 0
    except ValueError:
        raise RegistryError(
            f"bad boolean config value {value!r} for {key!r}: use true or false"
        ) from None


def parse_shared(value: str | None) -> int:
    """``core.sharedRepository`` as Git's ``git_config_perm`` reads it.

    Returns :data:`PERM_UMASK`, :data:`PERM_GROUP`, :data:`PERM_EVERYBODY`, or
    minus the octal mode given (``0660`` gives ``-0o660``), which replaces the
    permission bits rather than adding to them. ``None`` (the key set without
    a value) means ``group``, as in Git.
    """
    if value is None:
        return PERM_GROUP
    text = value.strip()
    if text == "umask":  # these names are case-sensitive in Git
        return PERM_UMASK
    if text == "group":
        return PERM_GROUP
    if text in ("all", "world", "everybody"):
        return PERM_EVERYBODY
    try:
        number = int(text, 8)
    except ValueError:
        return PERM_GROUP if config_bool("core.sharedRepository", text) else PERM_UMASK
    if number in (0, 1, 2):  # Git's old spellings of umask, group and everybody
        return (PERM_UMASK, PERM_GROUP, PERM_EVERYBODY)[number]
    if number & 0o600 != 0o600:
        raise RegistryError(
            f"core.sharedRepository is {value!r}: the owner of files must always have read"
            " and write permissions (Git refuses this value too); fix it with"
            " `git config core.sharedRepository group`"
        )
    return -(number & 0o666)


def shared_mode(mode: int, shared: int, *, directory: bool = False) -> int:
    """The permission bits Git gives a file (or directory) created with ``mode``.

    ``mode`` is what the file has once the umask applied (its ``st_mode``);
    the result keeps the file type bits.
    """
    if shared == PERM_UMASK:
        return mode
    tweak = -shared if shared < 0 else shared
    if not mode & stat.S_IWUSR:  # created read-only: stays without write bits
        tweak &= ~0o222
    if mode & stat.S_IXUSR:
        tweak |= (tweak & 0o444) >> 2
    new = (mode & ~0o777) | tweak if shared < 0 else mode | tweak
    if directory:
        new |= (new & 0o444) >> 2
        if new & 0o060:  # the group gains access: new entries inherit the group
            new |= stat.S_ISGID
    return new


def adjust_path(path: str | os.PathLike[str], shared: int) -> None:
    """Give ``path`` (a file or directory progreg just created) the mode Git would."""
    if shared == PERM_UMASK:
        return
    old = os.stat(path).st_mode
    new = shared_mode(old, shared, directory=stat.S_ISDIR(old))
    if (old ^ new) & ~stat.S_IFMT(old):
        os.chmod(path, stat.S_IMODE(new))


def adjust_fd(fd: int, shared: int) -> None:
    """:func:`adjust_path` for a file progreg just created and holds open as ``fd``."""
    if shared == PERM_UMASK:
        return
    old = os.fstat(fd).st_mode
    new = shared_mode(old, shared)
    if (old ^ new) & ~stat.S_IFMT(old):
        os.fchmod(fd, stat.S_IMODE(new))


def set_created_mode(path: str | os.PathLike[str], mode: int, shared: int) -> None:
    """Give ``path`` the mode Git gives a file it creates with ``mode`` (umask, then shared).

    For files written under another mode first (a ``mkstemp`` file is 0600)
    that Git would have opened with ``mode``: a pack (``0444``), a cache file
    (``0666``).
    """
    wanted = shared_mode(stat.S_IFREG | (mode & ~current_umask()), shared)
    os.chmod(path, stat.S_IMODE(wanted))


def adjust_tree(root: Path, shared: int) -> None:
    """:func:`adjust_path` for ``root`` and everything under it that this user owns."""
    if shared == PERM_UMASK:
        return
    uid = os.getuid() if hasattr(os, "getuid") else None
    for directory, _, files in os.walk(root):
        for path in [directory, *(os.path.join(directory, name) for name in files)]:
            try:
                if uid is None or os.lstat(path).st_uid == uid:
                    adjust_path(path, shared)
            except FileNotFoundError:  # removed meanwhile
                continue


def adjust_ref_paths(gitdir: Path, ref: str, shared: int) -> None:
    """Give the files libgit2 wrote for ``ref`` Git's modes: the ref, its reflog, ``HEAD``'s
    reflog, ``packed-refs``, and the directories between them and ``gitdir``.

    libgit2 ignores ``core.sharedRepository``. Files of another user are left as they are.
    """
    if shared == PERM_UMASK:
        return
    logs = gitdir / "logs"
    paths = [gitdir / "packed-refs", logs / "HEAD"]
    for top in (gitdir, logs):
        path = top / ref
        paths.append(path)
        directory = path.parent
        while directory not in (gitdir, logs) and gitdir in directory.parents:
            paths.append(directory)
            directory = directory.parent
    for path in paths:
        with contextlib.suppress(FileNotFoundError, PermissionError):  # absent, or not ours
            adjust_path(path, shared)


def adjust_loose_object(objects_dir: Path, oid: str, shared: int) -> None:
    """Give a loose object libgit2 just wrote (and its directory) Git's modes.

    Nothing when the object was not written loose (it was in a pack already),
    or when the file is another user's.
    """
    if shared == PERM_UMASK:
        return
    directory = objects_dir / oid[:2]
    for path in (directory, directory / oid[2:]):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            adjust_path(path, shared)


def make_dir(path: Path, shared: int) -> bool:
    """Create directory ``path`` (its parent exists) as Git would; ``False`` if it existed."""
    try:
        path.mkdir()
    except FileExistsError:
        if not path.is_dir():
            raise
        return False
    adjust_path(path, shared)
    return True


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, without changing it (read from ``/proc`` where it can be)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # elsewhere: set and restore it (another thread may create a file meanwhile)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask
