"""Checks that used to be asserts in the guides and had no test of their own.

The guides (``docs/start.md``, ``index.md``, ``manager.md``, ``sharing.md``,
``review.md``, ``dspy.md``) show results instead of asserting them; most of
their former asserts live on in the reference pages or in the modules of
their layer. The few that were tested nowhere else moved here, through the
public API, on real registries, with the real ``git`` to check what was
written.
"""

from __future__ import annotations

from pathlib import Path

from progreg import ProgramStorage
from support.gitcli import git


def program(instructions: str) -> dict[str, object]:
    """A small DSPy-style program state."""
    return {"predict": {"signature": {"instructions": instructions}, "demos": []}}


def test_an_export_is_a_version_2_bundle_whose_head_is_its_main(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    """From sharing.md: export_programs writes a v2 bundle, HEAD and main on its one commit."""
    storage.save_program(
        program("Classify the sentiment."),
        {"best_score_value": 0.91},
        program_id="1a2b3c4d5e6f7a8b",
        tags=["production"],
    )
    bundle = tmp_path / "classify.bundle"
    picked = storage.export_programs(["1a2b3c4d5e6f7a8b"], bundle)
    assert picked.bundle_version == 2
    assert bundle.read_bytes().startswith(b"# v2 git bundle\n")
    assert picked.refs["HEAD"] == picked.refs["refs/heads/main"] == picked.commit
    assert picked.tags_left_out == []
    listed = git(tmp_path, "bundle", "list-heads", str(bundle)).splitlines()
    heads = {name: object_id for object_id, name in (line.split(" ", 1) for line in listed)}
    assert heads["HEAD"] == heads["refs/heads/main"] == picked.commit


def test_a_push_reports_the_commit_main_has_on_the_remote(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    """From sharing.md: PushResult.main is the remote's main after the push, the saved commit."""
    shared = tmp_path / "shared.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(shared))
    storage.add_remote("origin", str(shared))
    saved = storage.save_program(program("Answer in one sentence."), program_id="a1a1a1a1a1a1a1a1")
    pushed = storage.push()
    assert pushed.main == saved.commit
    assert git(shared, "rev-parse", "main").strip() == saved.commit
    again = storage.push()  # nothing new: main is still reported
    assert again.updated == [] and again.main == saved.commit
