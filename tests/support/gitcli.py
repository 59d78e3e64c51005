"""Helpers the tests share: the real ``git`` command line, and checks of what progreg wrote.

Every helper runs ``git`` (2.39 or newer) on a registry as a person or another tool
would, without progreg, and fails the test with git's own message when git does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

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


def delta_varint(value: int) -> bytes:
    """A size as a Git delta header writes it (7 bits a byte, low first), for crafted deltas."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
