"""The repository settings that decide how progreg writes files: modes and reflogs.

``core.sharedRepository`` (see :mod:`progreg.git.permissions`) and
``core.logAllRefUpdates`` (see :mod:`progreg.git.refs.reflog`) are read
through libgit2 (the repository's config over the user's and the system's)
once per process and registry, and read again only when the registry's
``config`` file changes: what a write costs for it is one ``stat``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import RepositoryOpenFlag

from progreg.errors import UnsupportedObjectFormatError
from progreg.git.permissions import PERM_UMASK, config_bool, parse_shared

#: ``core.logAllRefUpdates``: no reflog is created (a bare repository's default).
LOG_NONE = "false"
#: Reflogs are created for branches, remote-tracking refs, notes and HEAD.
LOG_NORMAL = "true"
#: Reflogs are created for every ref.
LOG_ALWAYS = "always"


@dataclass(frozen=True)
class RepositorySettings:
    """What the registry's config says about file modes and reflogs."""

    shared: int = PERM_UMASK
    log_refs: str = LOG_NONE


_cache: dict[str, tuple[tuple[int, int, int], RepositorySettings]] = {}
_cache_lock = threading.Lock()


def _stamp(gitdir: Path) -> tuple[int, int, int]:
    try:
        info = os.stat(gitdir / "config")
    except OSError:
        return (0, 0, 0)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def repository_settings(gitdir: Path) -> RepositorySettings:
    """The :class:`RepositorySettings` of the registry at ``gitdir`` (cached, see the module)."""
    key = str(gitdir)
    stamp = _stamp(gitdir)
    cached = _cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    settings = read_settings(gitdir)
    with _cache_lock:
        _cache[key] = (stamp, settings)
    return settings


def read_settings(gitdir: Path) -> RepositorySettings:
    """Read the settings from the config now (no cache); defaults where it cannot be read."""
    try:
        config = pygit2.Repository(str(gitdir), RepositoryOpenFlag.NO_SEARCH).config
    except (pygit2.GitError, OSError):
        return RepositorySettings()
    return settings_of(config, bare=True)


def settings_of(config: pygit2.Config, *, bare: bool) -> RepositorySettings:
    """The settings ``config`` holds, as Git reads them."""
    shared = (
        parse_shared(_value(config, "core.sharedRepository"))
        if _has(config, "core.sharedRepository")
        else PERM_UMASK
    )
    log_refs = LOG_NONE if bare else LOG_NORMAL
    if _has(config, "core.logAllRefUpdates"):
        value = _value(config, "core.logAllRefUpdates")
        if value is not None and value.strip().lower() == "always":
            log_refs = LOG_ALWAYS
        elif value is None or config_bool("core.logAllRefUpdates", value):
            log_refs = LOG_NORMAL
        else:
            log_refs = LOG_NONE
    return RepositorySettings(shared, log_refs)


def object_format(gitdir: Path) -> str:
    """The repository's ``extensions.objectFormat`` (``sha1`` when unset or unreadable)."""
    try:
        config = pygit2.Config(str(gitdir / "config"))
        value = config["extensions.objectformat"]
    except (pygit2.GitError, OSError, KeyError):  # unset: SHA-1
        return "sha1"
    return str(value).strip().lower() if value else "sha1"


def check_object_format(gitdir: Path) -> None:
    """Raise :class:`~progreg.UnsupportedObjectFormatError` for a SHA-256 (non SHA-1) repository."""
    found = object_format(gitdir)
    if found != "sha1":
        name = "SHA-256" if found == "sha256" else repr(found)
        raise UnsupportedObjectFormatError(
            f"{gitdir} is a {name} Git repository (extensions.objectFormat = {found}):"
            f" {name} repositories are not supported; progreg reads and writes SHA-1"
            " repositories only (make one with `git init --bare`, the default)"
        )


def _has(config: pygit2.Config, key: str) -> bool:
    try:
        return key in config
    except pygit2.GitError:
        return False


def _value(config: pygit2.Config, key: str) -> str | None:
    """The last value of ``key``; ``None`` for a key written without ``=`` (true in Git)."""
    try:
        value = config[key]
    except (KeyError, pygit2.GitError):
        return None
    return None if value is None else str(value)
