"""progreg's object, pack and ref writes beside Git's own maintenance tools.

A registry is a bare Git repository on which people run ``git gc``, ``git
repack``, ``git prune``, ``git maintenance``, ``git multi-pack-index`` and
``git update-server-info`` while progreg saves. The deterministic tests run
a Git tool at the exact point of progreg's write protocol where it could
once lose data (between the pack's rename and the ref update, between the
ref update and the release of the pack's ``.keep``...); the concurrent tests
run a save loop and a Git tool loop in two processes and check, after each
round, that every acknowledged call is readable and ``git fsck`` is clean.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import assert_fsck_clean, git
from progreg import ProgramStorage
from progreg.gitstore.repository import GitRepository


def _save(storage: ProgramStorage, i: int) -> str:
    state = {"instructions": f"Answer question {i} briefly. " * 8, "demos": [{"q": i}]}
    return storage.save_program(state, {"score": i / 1000}).program_id


def _exists(path: Path, oid: str) -> bool:
    """Whether a fresh ``git cat-file -e`` finds ``oid``."""
    return (
        subprocess.run(
            ["git", "-C", os.fspath(path), "cat-file", "-e", oid], capture_output=True, check=False
        ).returncode
        == 0
    )


def _main(path: Path) -> str:
    return git(path, "rev-parse", "refs/heads/main").strip()


@pytest.mark.parametrize(
    "tool", [["repack", "-a", "-d", "-q"], ["gc", "-q"], ["repack", "-adk", "-q"]]
)
def test_git_repack_between_pack_write_and_ref_update_loses_nothing(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch, tool: list[str]
) -> None:
    _save(storage, 0)
    original = GitRepository._compare_and_swap

    def swap_after_git(self: GitRepository, ref: str, expected: object, new: object) -> object:
        git(self.path, *tool)  # the pack holding the new commit is written, the ref not yet
        return original(self, ref, expected, new)  # type: ignore[arg-type]

    monkeypatch.setattr(GitRepository, "_compare_and_swap", swap_after_git)
    _save(storage, 1)
    monkeypatch.undo()
    assert _exists(storage.path, _main(storage.path))
    assert_fsck_clean(storage.path)
