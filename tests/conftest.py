"""Shared fixtures and hooks: isolated Git configuration, fresh registries, the servers.

Helpers that test modules import (the real ``git`` CLI, fsck checks, workloads) are
in the ``support`` package beside this file, never here.

Every test runs with ``HOME``, ``XDG_CONFIG_HOME`` and ``GIT_CONFIG_GLOBAL``
pointing into its own temporary directory (and libgit2's configuration
search path pointed there too), so that neither the user's Git identity nor
any other global setting changes what progreg writes.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import ConfigLevel

from progreg import ProgramStorage

#: The real Git servers on 127.0.0.1 (git daemon, git http-backend), for every module.
pytest_plugins = ["support.servers"]

#: Variables that would make results depend on the environment the suite runs in.
_LEAKY_VARIABLES = (
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CEILING_DIRECTORIES",
    "EMAIL",
    # A developer's proxy must not carry the tests' 127.0.0.1 traffic.
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "PROGREG_PATH",
    "PROGREG_STORAGE_PATH",
    "PROGREG_DURABLE",
)


@pytest.fixture(scope="session", autouse=True)
def _git_on_path() -> None:
    """Fail the whole session clearly when the git command line is missing."""
    if shutil.which("git") is None:
        pytest.fail(
            "the test suite checks registries with the real `git` command line,"
            " but `git` is not on the PATH; install git 2.39 or newer",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def isolated_git_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A fresh HOME and empty global Git configuration for each test, for git and libgit2.

    Yields the (empty) global config file; a test may write settings into it.
    """
    home = tmp_path_factory.mktemp("home")
    config = home / ".gitconfig"
    config.write_text("")
    for name in _LEAKY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    # libgit2 computes its configuration search path once, from the HOME it
    # saw at start-up; point it at the same isolated directory.
    levels = (ConfigLevel.GLOBAL, ConfigLevel.XDG, ConfigLevel.SYSTEM)
    saved = {level: pygit2.settings.search_path[level] for level in levels}
    empty = home / "empty"
    empty.mkdir()
    pygit2.settings.search_path[ConfigLevel.GLOBAL] = str(home)
    pygit2.settings.search_path[ConfigLevel.XDG] = str(empty)
    pygit2.settings.search_path[ConfigLevel.SYSTEM] = str(empty)
    try:
        yield config
    finally:
        for level, value in saved.items():
            pygit2.settings.search_path[level] = value


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    """Where a test's registry lives (not created yet)."""
    return tmp_path / "registry"


@pytest.fixture
def storage(registry_path: Path) -> ProgramStorage:
    """A fresh, empty registry in the test's temporary directory."""
    return ProgramStorage(registry_path)


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for child processes."""
    return sys.executable


# -- hypothesis ---------------------------------------------------------------------------
#
# Property and fuzz tests run bounded by default ("ci": a few hundred inputs in all,
# seconds); PROGREG_HYPOTHESIS_PROFILE=thorough runs a hundred times as many examples
# per test. Deadlines are off: a registry save is I/O whose time varies with the machine;
# the fuzz tests bound the time of each input themselves.
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

_HYPOTHESIS_BASE = hypothesis_settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
hypothesis_settings.register_profile("ci", parent=_HYPOTHESIS_BASE, max_examples=60)
hypothesis_settings.register_profile("thorough", parent=_HYPOTHESIS_BASE, max_examples=4000)
hypothesis_settings.load_profile(os.environ.get("PROGREG_HYPOTHESIS_PROFILE", "ci"))
