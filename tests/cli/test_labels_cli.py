"""``progreg label set|remove|list|history`` and ``progreg show SIGNATURE@LABEL``.

Through click's runner on real registries; what the commands wrote is read
back with the ``git`` command line.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from progreg import ProgramStorage
from progreg.cli import cli
from support.gitcli import assert_fsck_clean, git, registry_state

SIG = "ClassifyText"
MOVE_KEYS = {
    "signature",
    "label",
    "from_program",
    "to_program",
    "reason",
    "author",
    "moved_at",
    "commit",
    "unchanged",
}


def run(registry: Path, *args: str) -> Result:
    """``progreg --registry REGISTRY ARGS...`` through click's runner."""
    return CliRunner().invoke(cli, ["--registry", str(registry), *args])


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def save(storage: ProgramStorage, n: int, signature: str = SIG) -> str:
    state = {"predict": {"signature": {"instructions": f"Instruction {n}"}, "demos": []}}
    return storage.save_program(state, None, {"signature_class": signature}).program_id


def test_set_list_history_remove(storage: ProgramStorage) -> None:
    registry = storage.path
    first, second = save(storage, 1), save(storage, 2)
    done = ok(run(registry, "label", "set", SIG, "production", first, "--reason", "won the eval"))
    assert done.stdout.startswith(f"{SIG}@production: none -> {first}  commit ")
    moved_out = ok(run(registry, "label", "set", SIG, "production", second, "--json")).stdout
    moved = json.loads(moved_out)
    assert set(moved) == MOVE_KEYS
    assert (moved["from_program"], moved["to_program"]) == (first, second)
    assert moved["commit"] == git(registry, "rev-parse", "main").strip()

    again = ok(run(registry, "label", "set", SIG, "production", second))
    assert again.stdout == ""
    assert "already names" in again.stderr

    listed = ok(run(registry, "label", "list")).stdout.splitlines()
    assert listed[0].split() == ["SIGNATURE", "LABEL", "PROGRAM"]
    assert listed[1].split() == [SIG, "production", second]
    assert json.loads(ok(run(registry, "label", "list", SIG, "--json")).stdout) == {
        SIG: {"production": second}
    }

    history = ok(run(registry, "label", "history", SIG, "production")).stdout.splitlines()
    assert history[0].split()[:2] == ["MOVED", "(UTC)"]
    assert first in history[1] and second in history[1]
    assert "won the eval" in history[2] and "none" in history[2]
    moves = json.loads(ok(run(registry, "label", "history", SIG, "production", "--json")).stdout)
    assert [m["to_program"] for m in moves] == [second, first]
    assert moves[1]["reason"] == "won the eval"

    shown = json.loads(ok(run(registry, "show", f"{SIG}@production", "--json")).stdout)
    assert shown["program_id"] == second

    ok(run(registry, "label", "remove", SIG, "production", "--reason", "rollback"))
    assert json.loads(ok(run(registry, "label", "list", "--json")).stdout) == {}
    log = git(registry, "log", "--format=%s", "main", "--", f"labels/{SIG}.json").splitlines()
    assert log == [
        f"Label {SIG} production: {second} -> none",
        f"Label {SIG} production: {first} -> {second}",
        f"Label {SIG} production: none -> {first}",
    ]
    assert_fsck_clean(registry)


def test_errors_and_exit_codes(storage: ProgramStorage) -> None:
    registry = storage.path
    first = save(storage, 1)
    other = save(storage, 2, "Summarize")
    ok(run(registry, "label", "set", SIG, "production", first))
    before = registry_state(registry)

    missing = run(registry, "show", f"{SIG}@staging")
    assert missing.exit_code == 3
    assert "progreg label set ClassifyText staging" in missing.stderr

    wrong = run(registry, "label", "set", SIG, "production", other)
    assert wrong.exit_code == 1
    assert "solves signature Summarize, not ClassifyText" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1

    assert run(registry, "label", "set", SIG, "production", "0" * 16).exit_code == 3
    assert run(registry, "label", "set", SIG, "Bad!", first).exit_code == 1
    assert run(registry, "label", "set", SIG, "production", "not-an-id").exit_code == 2
    assert run(registry, "label", "remove", SIG, "staging").exit_code == 3
    assert run(registry, "label", "history", SIG, "staging").exit_code == 3
    refused = run(registry, "delete", first)
    assert refused.exit_code == 1
    assert "progreg label" in refused.stderr
    assert registry_state(registry) == before


def complete(words: str) -> list[str]:
    """What bash completion offers for ``words`` (the last one is being typed)."""
    result = CliRunner().invoke(
        cli,
        [],
        prog_name="progreg",
        env={
            "_PROGREG_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        },
    )
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_completion_offers_labels(storage: ProgramStorage) -> None:
    first = save(storage, 1)
    other = save(storage, 2, "Summarize")
    storage.set_label(SIG, "production", first)
    storage.set_label(SIG, "preview", first)
    storage.set_label("Summarize", "pinned", other)
    registry = str(storage.path)
    assert "label" in complete("progreg lab")
    assert complete(f"progreg --registry {registry} label history {SIG} pr") == [
        "preview",
        "production",
    ]
    assert complete(f"progreg --registry {registry} label history Summarize ") == ["pinned"]
