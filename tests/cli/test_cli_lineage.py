"""``progreg lineage`` and ``progreg save --derived-from/--force`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from progreg import ProgramStorage
from progreg.cli import cli
from support.gitcli import git


def run(registry: Path, *args: str, input: str | None = None) -> Result:
    """``progreg --registry REGISTRY ARGS...``."""
    return CliRunner().invoke(cli, ["--registry", str(registry), *args], input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def commits(registry: Path) -> int:
    return int(git(registry, "rev-list", "--count", "main").strip())


def test_save_derived_from_and_the_lineage_tree(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    root = storage.save_program({"n": 1}, {"best_score_value": 0.5, "best_score_name": "acc"})
    out = ok(
        run(
            registry_path,
            "save",
            "--derived-from",
            root.program_id,
            "--json",
            input=json.dumps({"n": 2}),
        )
    )
    child = json.loads(out.stdout)["program_id"]
    trailers = git(registry_path, "log", "-1", "--format=%(trailers:only)", "main")
    assert f"Derived-From: {root.program_id}" in trailers
    grandchild = storage.save_program({"n": 3}, {"best_score_value": 0.9}, derived_from=child)
    sibling = storage.save_program({"n": 4}, derived_from=root.program_id)
    storage.delete_program(child)

    text = ok(run(registry_path, "lineage", child)).stdout.splitlines()
    assert text == [
        f"{root.program_id}  acc 0.5000",
        f"`-- {child}  no score  (deleted)  <- this program",
        f"    `-- {grandchild.program_id}  score 0.9000",
    ]
    text = ok(run(registry_path, "lineage", root.program_id)).stdout.splitlines()
    assert text == [
        f"{root.program_id}  acc 0.5000  <- this program",
        f"|-- {child}  no score  (deleted)",
        f"|   `-- {grandchild.program_id}  score 0.9000",
        f"`-- {sibling.program_id}  no score",
    ]
    data = json.loads(ok(run(registry_path, "lineage", grandchild.program_id, "--json")).stdout)
    assert set(data) == {"program", "ancestors", "descendants"}
    assert [a["program_id"] for a in data["ancestors"]] == [child, root.program_id]
    assert data["ancestors"][0]["live"] is False and data["program"]["score"] == 0.9


def test_lineage_errors(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    storage.save_program({"n": 1})
    missing = run(registry_path, "lineage", "0123456789abcdef")
    assert missing.exit_code == 3 and "neither on main nor in its history" in missing.output
    assert run(registry_path, "lineage", "nope").exit_code == 2
    count = commits(registry_path)
    bad = run(registry_path, "save", "--derived-from", "0123456789abcdef", input='{"n": 2}')
    assert bad.exit_code == 3 and commits(registry_path) == count


def test_save_of_identical_content_is_unchanged_unless_forced(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    saved = storage.save_program({"n": 1}, {"best_score_value": 0.5}, None, "00000000000000c1")
    count = commits(registry_path)
    shown = ok(run(registry_path, "show", saved.program_id, "--json")).stdout
    out = ok(run(registry_path, "save", input=shown)).stdout
    assert out.startswith(f"unchanged {saved.program_id}") and saved.commit[:10] in out
    assert commits(registry_path) == count
    data = json.loads(ok(run(registry_path, "save", "--json", input=shown)).stdout)
    assert data["unchanged"] is True and data["commit"] == saved.commit
    out = ok(run(registry_path, "save", "--force", input=shown)).stdout
    assert out.startswith(f"saved {saved.program_id}") and commits(registry_path) == count + 1


def test_diff_of_the_same_content_prints_no_patch(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    one = storage.save_program({"n": 1}, {"best_score_value": 0.5})
    two = storage.save_program({"n": 1}, {"best_score_value": 0.5})
    out = ok(run(registry_path, "diff", one.program_id, two.program_id, "--no-color")).stdout
    assert "same content: the files differ only in id, saved_at and provenance" in out
    assert "@@" not in out and '"saved_at"' not in out
    three = storage.save_program({"n": 2}, {"best_score_value": 0.5})
    out = ok(run(registry_path, "diff", one.program_id, three.program_id, "--no-color")).stdout
    assert "same content" not in out and "@@" in out


def test_a_record_saved_under_another_id_is_derived_from_its_version(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)
    first = storage.save_program({"n": 1}, {"best_score_value": 0.5}, None, "00000000000000d1")
    storage.save_program({"n": 2}, {"best_score_value": 0.6}, None, first.program_id)
    old = ok(run(registry_path, "show", f"{first.program_id}~1", "--json")).stdout
    copied = json.loads(
        ok(run(registry_path, "save", "--id", "00000000000000d2", "--json", input=old)).stdout
    )
    ancestors = storage.lineage(copied["program_id"]).ancestors
    assert [(a.program_id, a.commit) for a in ancestors] == [(first.program_id, first.commit)]
    # a record of a program this registry never held names no ancestor
    foreign = json.loads(old) | {"program_id": "00000000000000ff"}
    out = run(registry_path, "save", "--id", "00000000000000d3", input=json.dumps(foreign))
    assert ok(out) and storage.lineage("00000000000000d3").ancestors == []


def test_the_tree_draws_siblings_and_their_descendants(registry_path: Path) -> None:
    storage = ProgramStorage(registry_path)

    def child_of(parent: str | None, n: int) -> str:
        return storage.save_program(
            {"n": n}, None, None, f"{n:016x}", derived_from=parent
        ).program_id

    root = child_of(None, 1)
    a = child_of(root, 2)
    a1, a2 = child_of(a, 3), child_of(a, 4)
    a21 = child_of(a2, 5)
    b = child_of(root, 6)
    lines = ok(run(registry_path, "lineage", root)).stdout.splitlines()
    assert lines == [
        f"{root}  no score  <- this program",
        f"|-- {a}  no score",
        f"|   |-- {a1}  no score",
        f"|   `-- {a2}  no score",
        f"|       `-- {a21}  no score",
        f"`-- {b}  no score",
    ]
    data = json.loads(ok(run(registry_path, "lineage", root, "--json")).stdout)
    assert [(d["program_id"], d["derived_from"], d["generation"]) for d in data["descendants"]] == [
        (a, root, 1),
        (a1, a, 2),
        (a2, a, 2),
        (a21, a2, 3),
        (b, root, 1),
    ]
