"""Reading a registry at another revision (`--rev`, `rev=`), and reading a clone.

A reviewer asks "what would `best ClassifyText` be after this branch merges?":
the branch is read as the registry, read-only, with the same calls and
commands as ``main``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from progreg import (
    InvalidInputError,
    NotARegistryError,
    ProgramStorage,
    ReadOnlyRegistryError,
    StorageManager,
)
from progreg.cli import cli
from progreg.core.canonical import encode
from progreg.core.ids import program_path
from support.gitcli import CLI_IDENTITY, git

SIGNATURE = "ClassifyText"


@pytest.fixture
def registry(tmp_path: Path) -> tuple[ProgramStorage, str, str]:
    """A registry whose main has two programs of SIGNATURE and a branch ``proposal``
    (pushed from a clone) that raises the second one's score above the first's."""
    storage = ProgramStorage(tmp_path / "registry")
    best = storage.save_program({"v": 1}, {"best_score_value": 0.9}, {"signature_class": SIGNATURE})
    other = storage.save_program(
        {"v": 2}, {"best_score_value": 0.7}, {"signature_class": SIGNATURE}
    )
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(storage.path), str(work))
    git(work, "switch", "-q", "-c", "proposal")
    path = work / program_path(other.program_id)
    document = json.loads(path.read_bytes())
    document["optimization_result"]["best_score_value"] = 0.95
    path.write_bytes(encode(document))
    git(work, "commit", "-q", "-am", "A better score", env=CLI_IDENTITY)
    git(work, "push", "-q", "origin", "proposal")
    return storage, best.program_id, other.program_id


def test_a_registry_read_at_a_branch_answers_as_if_it_were_merged(
    registry: tuple[ProgramStorage, str, str],
) -> None:
    storage, best, other = registry
    main_best = StorageManager(storage=storage).get_best_program(SIGNATURE)
    assert main_best is not None and main_best.program_id == best
    proposal = ProgramStorage(storage.path, rev="proposal")
    assert proposal.read_only
    branch_best = StorageManager(storage=proposal).get_best_program(SIGNATURE)
    assert branch_best is not None and branch_best.program_id == other
    loaded = proposal.load_program(other)
    assert loaded is not None and loaded.best_score == 0.95
    assert [e.subject for e in proposal.log(1)] == ["A better score"]
    older = ProgramStorage(storage.path, rev="main~1")
    assert [p.program_id for p in older.list_programs()] == [best]
    cached = [p.name for p in (storage.path / "progreg-cache").rglob("*") if p.is_file()]
    assert cached == [c for c in cached if "proposal" not in c]  # a view writes no cache


def test_a_revision_is_read_only_and_must_exist(
    registry: tuple[ProgramStorage, str, str],
) -> None:
    storage, best, _ = registry
    before = git(storage.path, "for-each-ref")
    view = ProgramStorage(storage.path, rev="proposal")
    for write in (
        lambda: view.save_program({"v": 3}),
        lambda: view.delete_program(best),
        lambda: StorageManager(storage=view).tag_program(best, "prod"),
        view.gc,
        lambda: view.add_remote("origin", str(storage.path)),
        lambda: view.import_programs(storage.path / "nothing.bundle"),
    ):
        with pytest.raises(ReadOnlyRegistryError, match="open read-only"):
            write()
    assert git(storage.path, "for-each-ref") == before
    with pytest.raises(InvalidInputError, match="unknown revision 'nope'"):
        ProgramStorage(storage.path, rev="nope")


def test_a_clone_is_read_at_its_checked_out_commit(
    registry: tuple[ProgramStorage, str, str], tmp_path: Path
) -> None:
    _, _, other = registry
    work = tmp_path / "work"  # on the branch proposal
    with pytest.raises(NotARegistryError, match="commands that only read work on a clone"):
        ProgramStorage(work)
    clone = ProgramStorage(work, read_only=True)
    loaded = clone.load_program(other)
    assert loaded is not None and loaded.best_score == 0.95
    assert not (work / ".git" / "progreg-cache").exists()  # a read writes nothing


def test_the_read_commands_take_rev_and_read_clones(
    registry: tuple[ProgramStorage, str, str], tmp_path: Path
) -> None:
    storage, best, other = registry
    runner = CliRunner()

    def progreg(*args: str) -> str:
        done = runner.invoke(cli, list(args))
        assert done.exit_code == 0, (done.output, done.exception)
        return done.output

    assert best in progreg("--registry", str(storage.path), "best", SIGNATURE)
    assert other in progreg("--registry", str(storage.path), "--rev", "proposal", "best", SIGNATURE)
    assert other in progreg("--registry", str(storage.path), "best", SIGNATURE, "--rev", "proposal")
    listed = progreg("--registry", str(storage.path), "list", "--rev", "main~1", "--json")
    assert [p["program_id"] for p in json.loads(listed)] == [best]
    assert "A better score" in progreg("--registry", str(storage.path), "--rev", "proposal", "log")
    assert other in progreg("--registry", str(tmp_path / "work"), "best", SIGNATURE)
    refused = runner.invoke(
        cli, ["--registry", str(storage.path), "--rev", "proposal", "delete", best]
    )
    assert refused.exit_code == 1 and "open read-only" in refused.output
    in_clone = runner.invoke(cli, ["--registry", str(tmp_path / "work"), "delete", best])
    assert in_clone.exit_code == 1 and "open read-only" in in_clone.output
