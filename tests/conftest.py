"""Shared fixtures: isolated Git configuration, fresh registries, the real ``git`` CLI.

Every test runs with ``HOME``, ``XDG_CONFIG_HOME`` and ``GIT_CONFIG_GLOBAL``
pointing into its own temporary directory (and libgit2's configuration
search path pointed there too), so that neither the user's Git identity nor
any other global setting changes what progreg writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import ConfigLevel

from progreg import ProgramStorage

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

#: The identity used for commits the tests make with the git command line.
CLI_IDENTITY = {
    "GIT_AUTHOR_NAME": "Git CLI",
    "GIT_AUTHOR_EMAIL": "cli@example.com",
    "GIT_COMMITTER_NAME": "Git CLI",
    "GIT_COMMITTER_EMAIL": "cli@example.com",
}


def git(
    repo_path: str | os.PathLike[str],
    *args: str,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
) -> str:
    """Run ``git -C repo_path *args`` and return its stdout; fail the test on a non-zero exit."""
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run(
        ["git", "-C", os.fspath(repo_path), *args],
        input=input,
        capture_output=True,
        env=full_env,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"git {' '.join(args)} (in {repo_path}) exited with {result.returncode}:\n"
            f"{result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode()


def git_status(repo_path: str | os.PathLike[str], *args: str) -> int:
    """Run ``git -C repo_path *args`` and return its exit status (for expected failures)."""
    return subprocess.run(
        ["git", "-C", os.fspath(repo_path), *args], capture_output=True, check=False
    ).returncode


def assert_fsck_clean(registry: str | os.PathLike[str]) -> None:
    """``git fsck --strict --full`` reports no error and no warning."""
    result = subprocess.run(
        ["git", "-C", os.fspath(registry), "fsck", "--strict", "--full", "--no-progress"],
        capture_output=True,
        check=False,
    )
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, f"git fsck --strict failed:\n{out}"
    problems = [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith(("dangling ", "Checking", "notice:"))
    ]
    assert not problems, f"git fsck --strict reported:\n{out}"


def commit_file(
    registry: str | os.PathLike[str],
    path: str,
    data: bytes | None,
    message: str = "Edit by hand",
) -> str:
    """Commit ``data`` at ``path`` (``None`` removes it) on ``main`` with plumbing commands only.

    Uses a temporary index, ``git hash-object``, ``git write-tree``, ``git
    commit-tree`` and a compare-and-swap ``git update-ref``: what a person or
    another tool could do to the registry without progreg. Returns the commit id.
    """
    index = Path(registry) / "test-index.tmp"
    env = {**CLI_IDENTITY, "GIT_INDEX_FILE": str(index)}
    try:
        old = git(registry, "rev-parse", "refs/heads/main").strip()
        git(registry, "read-tree", old, env=env)
        if data is None:
            removal = f"0 {'0' * 40}\t{path}\n".encode()
            git(registry, "update-index", "--index-info", env=env, input=removal)
        else:
            blob = git(registry, "hash-object", "-w", "--stdin", input=data).strip()
            git(registry, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = git(registry, "write-tree", env=env).strip()
        new = git(registry, "commit-tree", tree, "-p", old, "-m", message, env=env).strip()
        git(registry, "update-ref", "refs/heads/main", new, old)
    finally:
        index.unlink(missing_ok=True)
    return new


def registry_state(registry: str | os.PathLike[str]) -> tuple[str, str, str, list[str]]:
    """What must not change when a call fails: refs, HEAD, loose objects and every file name."""
    root = Path(registry)
    refs = git(root, "for-each-ref", "--format=%(refname) %(objectname)")
    head = (root / "HEAD").read_text()
    counts = git(root, "count-objects", "-v")
    loose = "\n".join(
        line for line in counts.splitlines() if line.startswith(("count:", "in-pack"))
    )
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != "progreg.lock")
    return refs, head, loose, files


def unpack_to_loose(registry: str | os.PathLike[str]) -> None:
    """Turn every pack into loose objects, as plain `git` or an older progreg leaves them.

    Open handles keep the packs they mapped: open the registry again afterwards.
    """
    root = Path(registry)
    for pack in sorted((root / "objects" / "pack").glob("pack-*.pack")):
        data = pack.read_bytes()
        for leftover in pack.parent.glob(pack.stem + ".*"):
            leftover.unlink()
        subprocess.run(["git", "-C", str(root), "unpack-objects", "-q"], input=data, check=True)


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


def delta_varint(value: int) -> bytes:
    """A size as a Git delta header writes it (7 bits a byte, low first), for crafted deltas."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
