"""Deployment labels: moves as audited commits, lookups, refusals, and labels that travel.

Every test works on real registries in tmp_path and checks what progreg wrote
with the real ``git`` command line (``git log``, ``git fsck --strict``); pulls
go through a real ``git daemon`` on 127.0.0.1, bundles through real files.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pygit2
import pytest
from click.testing import CliRunner

from progreg import (
    ConflictError,
    InvalidInputError,
    InvalidNameError,
    LabelMove,
    LabelNotFoundError,
    ProgramNotFoundError,
    ProgramStorage,
    StorageConfig,
    StorageManager,
)
from progreg.cli import cli
from progreg.core.labels import label_path
from progreg.registry.review import review_range
from progreg.registry.validation import validate_commit, validate_tree
from support.gitcli import assert_fsck_clean, commit_file, git, registry_state

if TYPE_CHECKING:
    from support.servers import GitServer

SIG = "ClassifyText"
LABEL_FILE = label_path(SIG)


def save(storage: ProgramStorage, n: int, signature: str = SIG) -> str:
    """Save a small program numbered ``n`` solving ``signature``; return its id."""
    state = {"predict": {"signature": {"instructions": f"Instruction {n}"}, "demos": []}}
    result = {"best_score_name": "accuracy", "best_score_value": round(0.5 + n / 100, 4)}
    return storage.save_program(state, result, {"signature_class": signature}).program_id


def trailers(registry: Path, path: str = LABEL_FILE) -> list[dict[str, str]]:
    """The trailers of each commit that changed ``path`` on main, newest first (git log)."""
    out = git(registry, "log", "--format=%(trailers)%x00", "main", "--", path)
    found = []
    for block in out.split("\0"):
        lines = [line for line in block.strip().splitlines() if ": " in line]
        if lines:
            found.append(dict(line.split(": ", 1) for line in lines))
    return found


def label_file(registry: Path, signature: str = SIG) -> dict[str, str]:
    """The label file as git shows it on main."""
    data = git(registry, "show", f"main:{label_path(signature)}").encode()
    value = orjson.loads(data)
    assert isinstance(value, dict)
    return value


# -- moves ---------------------------------------------------------------------------


def test_set_move_remove_are_commits_git_log_shows(storage: ProgramStorage) -> None:
    first, second = save(storage, 1), save(storage, 2)
    made = storage.set_label(SIG, "production", first, reason="passed the eval")
    assert isinstance(made, LabelMove)
    assert (made.from_program, made.to_program, made.unchanged) == (None, first, False)
    moved = storage.set_label(SIG, "production", second)
    removed = storage.remove_label(SIG, "production", reason="rolled back")
    assert (removed.from_program, removed.to_program) == (second, None)

    registry = storage.path
    assert trailers(registry) == [
        {
            "Label": "production",
            "Label-Signature": SIG,
            "Label-From": second,
            "Label-To": "none",
            "Label-Reason": "rolled back",
            "Progreg-Action": "label",
        },
        {
            "Label": "production",
            "Label-Signature": SIG,
            "Label-From": first,
            "Label-To": second,
            "Progreg-Action": "label",
        },
        {
            "Label": "production",
            "Label-Signature": SIG,
            "Label-From": "none",
            "Label-To": first,
            "Label-Reason": "passed the eval",
            "Progreg-Action": "label",
        },
    ]
    subjects = git(registry, "log", "--format=%s", "main", "--", LABEL_FILE).splitlines()
    assert subjects[1] == f"Label {SIG} production: {first} -> {second}"
    assert git(registry, "rev-parse", "main").strip() == removed.commit
    assert moved.commit == git(registry, "rev-parse", "main~1").strip()
    # the last label removed: no file left behind
    assert git(registry, "ls-tree", "--name-only", "main", "labels/") == ""
    history = storage.label_history(SIG, "production")
    assert [(m.from_program, m.to_program, m.reason) for m in history] == [
        (second, None, "rolled back"),
        (first, second, None),
        (None, first, "passed the eval"),
    ]
    assert history[0].author == str(storage.registry.identity()[0])
    assert history[0].moved_at == removed.moved_at.replace(microsecond=0)  # the author date
    assert [m.commit for m in history] == git(
        registry, "log", "--format=%H", "main", "--", LABEL_FILE
    ).split()
    assert storage.log(1)[0].action == "label"
    assert_fsck_clean(registry)


def test_labels_of_one_signature_share_a_file(storage: ProgramStorage) -> None:
    first, second = save(storage, 1), save(storage, 2)
    other = save(storage, 3, "Summarize")
    storage.set_label(SIG, "production", first)
    storage.set_label(SIG, "staging", second)
    storage.set_label("Summarize", "production", other)
    assert label_file(storage.path) == {"production": first, "staging": second}
    data = git(storage.path, "cat-file", "blob", f"main:{LABEL_FILE}").encode()
    assert data == orjson.dumps(
        {"production": first, "staging": second},
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE,
    )
    assert storage.labels() == {
        SIG: {"production": first, "staging": second},
        "Summarize": {"production": other},
    }
    assert storage.labels(SIG) == {SIG: {"production": first, "staging": second}}
    assert storage.labels("Nothing") == {}
    assert storage.resolve_label(SIG, "staging") == second
    assert storage.resolve_label(SIG, "canary") is None
    assert storage.label_history(SIG, "staging")[0].to_program == second
    assert len(storage.label_history(SIG, "production")) == 1


def test_setting_the_same_program_makes_no_commit(storage: ProgramStorage) -> None:
    first = save(storage, 1)
    storage.set_label(SIG, "production", first)
    before = registry_state(storage.path)
    again = storage.set_label(SIG, "production", first, reason="again")
    assert again.unchanged
    assert (again.from_program, again.to_program) == (first, first)
    assert again.commit == git(storage.path, "rev-parse", "main").strip()
    assert registry_state(storage.path) == before


# -- what is refused, changing nothing -------------------------------------------------


def test_refusals_change_nothing(storage: ProgramStorage) -> None:
    first = save(storage, 1)
    other = save(storage, 2, "Summarize")
    storage.set_label(SIG, "production", first)
    before = registry_state(storage.path)

    with pytest.raises(InvalidInputError, match=f"solves signature Summarize, not {SIG}"):
        storage.set_label(SIG, "production", other)
    with pytest.raises(ProgramNotFoundError, match="0000000000000000 is not on main"):
        storage.set_label(SIG, "production", "0" * 16)
    with pytest.raises(InvalidNameError):
        storage.set_label(SIG, "Production!", first)
    with pytest.raises(InvalidNameError):
        storage.set_label(SIG, "has/slash", first)
    with pytest.raises(InvalidNameError):
        storage.set_label("../escape", "production", first)
    with pytest.raises(InvalidNameError):
        storage.set_label("Classify Text", "production", first)
    with pytest.raises(InvalidInputError, match="one line"):
        storage.set_label(SIG, "production", first, reason="first line\nsecond line")
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    with pytest.raises(InvalidInputError, match="credential") as caught:
        storage.set_label(SIG, "staging", first, reason=f"deployed with {token}")
    assert token not in str(caught.value)
    with pytest.raises(InvalidInputError, match="over the limit"):
        storage.set_label(SIG, "staging", first, reason="x" * 501)
    with pytest.raises(LabelNotFoundError):
        storage.remove_label(SIG, "staging")
    assert registry_state(storage.path) == before


def test_a_labelled_program_cannot_be_deleted(storage: ProgramStorage) -> None:
    first, second = save(storage, 1), save(storage, 2)
    storage.set_label(SIG, "production", first)
    before = registry_state(storage.path)
    with pytest.raises(ConflictError, match=f"{SIG}@production -> {first}") as caught:
        storage.delete_program(first)
    assert f"progreg label set {SIG} production" in str(caught.value)
    with pytest.raises(ConflictError, match="label"):
        storage.registry.delete_programs([first, second], "Remove both")
    assert registry_state(storage.path) == before
    storage.set_label(SIG, "production", second)
    assert storage.delete_program(first)


def test_cleanup_keeps_labelled_programs(registry_path: Path) -> None:
    manager = StorageManager(StorageConfig(storage_path=registry_path, max_stored_programs=1))
    storage = manager.storage
    ids = [save(storage, n) for n in range(4)]
    worst = ids[0]  # the lowest score and the oldest: cleanup's first choice
    storage.set_label(SIG, "production", worst)
    plan = manager.plan_cleanup()
    assert worst in plan.protected and worst not in plan.remove
    result = manager.cleanup_old_programs()
    assert worst not in result.removed
    assert storage.load_program(f"{SIG}@production") is not None
    assert_fsck_clean(registry_path)


# -- lookups ---------------------------------------------------------------------------


def test_load_program_by_label(storage: ProgramStorage) -> None:
    first, second = save(storage, 1), save(storage, 2)
    storage.set_label(SIG, "production", first)
    loaded = storage.load_program(f"{SIG}@production")
    assert loaded is not None and loaded.program_id == first
    storage.set_label(SIG, "production", second)
    loaded = storage.load_program(f"{SIG}@production")
    assert loaded is not None and loaded.program_id == second
    with pytest.raises(LabelNotFoundError, match=f"progreg label set {SIG} staging"):
        storage.load_program(f"{SIG}@staging")
    with pytest.raises(InvalidNameError):
        storage.load_program(f"{SIG}@Bad Label")

    # a read-only view at a revision resolves the label as it was there
    earlier = ProgramStorage(storage.path, rev="main~1")
    at_rev = earlier.load_program(f"{SIG}@production")
    assert at_rev is not None and at_rev.program_id == first


# -- the format: checks of pushed commits ----------------------------------------------


def test_validation_refuses_dangling_and_wrong_signature_labels(
    storage: ProgramStorage,
) -> None:
    first = save(storage, 1)
    other = save(storage, 2, "Summarize")
    storage.set_label(SIG, "production", first)
    repo = storage.registry.git.repo
    assert validate_tree(repo, repo.revparse_single("main").peel(pygit2.Commit).tree) == []

    wrong = orjson.dumps({"production": other}, option=orjson.OPT_INDENT_2) + b"\n"
    commit = commit_file(storage.path, LABEL_FILE, wrong, "Point production elsewhere")
    problems = validate_commit(repo, repo[commit].peel(pygit2.Commit))
    assert [p.path for p in problems] == [LABEL_FILE]
    assert "solves Summarize" in problems[0].message

    dangling = orjson.dumps({"production": "0" * 16}, option=orjson.OPT_INDENT_2) + b"\n"
    commit = commit_file(storage.path, LABEL_FILE, dangling, "Point production at nothing")
    problems = validate_commit(repo, repo[commit].peel(pygit2.Commit))
    assert any("does not hold" in p.message for p in problems), problems

    bad = b'{"production": "not-an-id"}\n'
    commit = commit_file(storage.path, LABEL_FILE, bad, "Broken label file")
    assert any(
        "not a program id" in p.message
        for p in validate_commit(repo, repo[commit].peel(pygit2.Commit))
    )


def test_validation_refuses_a_commit_removing_a_labelled_program(
    storage: ProgramStorage,
) -> None:
    first = save(storage, 1)
    storage.set_label(SIG, "production", first)
    repo = storage.registry.git.repo
    path = f"programs/{first[:2]}/{first[2:4]}/{first}.json"
    commit = commit_file(storage.path, path, None, "Remove it by hand")
    problems = validate_commit(repo, repo[commit].peel(pygit2.Commit))
    assert any(p.path == LABEL_FILE and first in p.message for p in problems), problems


# -- labels travel with main -------------------------------------------------------------


def _clone(tmp_path: Path, name: str, url: str) -> ProgramStorage:
    storage = ProgramStorage(tmp_path / name)
    storage.add_remote("origin", url)
    return storage


def test_push_and_pull_merge_labels(git_daemon: GitServer, tmp_path: Path) -> None:
    served = git_daemon.create("labels-merge.git")
    url = git_daemon.url("labels-merge.git")
    alice, bob = _clone(tmp_path, "alice", url), _clone(tmp_path, "bob", url)
    first, second = save(alice, 1), save(alice, 2)
    alice.set_label(SIG, "production", first)
    alice.push()
    bob.pull()
    assert bob.resolve_label(SIG, "production") == first

    # different labels of one signature moved on each side: merged label by label
    alice.set_label(SIG, "production", second, reason="alice promotes")
    bob.set_label(SIG, "staging", first, reason="bob stages")
    alice.push()
    pulled = bob.pull()
    assert not pulled.fast_forward
    assert bob.labels() == {SIG: {"production": second, "staging": first}}
    bob.push()
    alice.pull()
    assert alice.labels() == bob.labels()
    history = bob.label_history(SIG, "production")
    assert [(m.to_program, m.reason) for m in history] == [
        (second, "alice promotes"),
        (first, None),
    ]
    assert label_file(served) == {"production": second, "staging": first}
    for registry in (tmp_path / "alice", tmp_path / "bob", served):
        assert_fsck_clean(registry)


def test_the_same_label_moved_on_both_sides_is_a_conflict(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    git_daemon.create("labels-conflict.git")
    url = git_daemon.url("labels-conflict.git")
    alice, bob = _clone(tmp_path, "alice", url), _clone(tmp_path, "bob", url)
    first, second, third = save(alice, 1), save(alice, 2), save(alice, 3)
    alice.set_label(SIG, "production", first)
    alice.push()
    bob.pull()
    alice.set_label(SIG, "production", second, reason="alice's pick")
    alice.push()
    bob.set_label(SIG, "production", third, reason="bob's pick")
    before = git(tmp_path / "bob", "rev-parse", "main")
    with pytest.raises(ConflictError) as caught:
        bob.pull()
    message = str(caught.value)
    assert message.startswith("1 label(s) differ between this registry and origin")
    assert f"label production of {SIG}" in message
    assert f"moved to {third} (ours) / {second} (theirs)" in message
    assert git(tmp_path / "bob", "rev-parse", "main") == before  # nothing merged
    assert bob.resolve_label(SIG, "production") == third

    pulled = bob.pull(resolve="theirs")
    assert f"{SIG}@production" in pulled.resolved
    assert bob.resolve_label(SIG, "production") == second
    # main's own story, newest first: each value it held, credited to who set it
    history = bob.label_history(SIG, "production")
    assert [(m.from_program, m.to_program, m.reason) for m in history] == [
        (third, second, "alice's pick"),
        (first, third, "bob's pick"),
        (None, first, None),
    ]
    alices = git(tmp_path / "alice", "rev-parse", "main").strip()
    assert history[0].commit == alices
    bob.push()
    assert_fsck_clean(tmp_path / "bob")


def test_pull_keeps_ours_from_the_command_line(git_daemon: GitServer, tmp_path: Path) -> None:
    git_daemon.create("labels-ours.git")
    url = git_daemon.url("labels-ours.git")
    alice, bob = _clone(tmp_path, "alice", url), _clone(tmp_path, "bob", url)
    first, second, third = save(alice, 1), save(alice, 2), save(alice, 3)
    alice.set_label(SIG, "production", first)
    alice.push()
    bob.pull()
    alice.set_label(SIG, "production", second)
    alice.set_label(SIG, "staging", third)
    alice.push()
    bob.set_label(SIG, "production", third)
    done = CliRunner().invoke(cli, ["--registry", str(tmp_path / "bob"), "pull", "--ours"])
    assert done.exit_code == 0, done.output
    # the conflicting label keeps ours; the label only they moved comes in
    assert bob.labels() == {SIG: {"production": third, "staging": third}}
    merge = git(tmp_path / "bob", "log", "-1", "--format=%B", "main")
    assert f"{SIG}@production" in merge


def test_a_merge_leaving_a_label_on_a_removed_program_is_refused(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    git_daemon.create("labels-dangling.git")
    url = git_daemon.url("labels-dangling.git")
    alice, bob = _clone(tmp_path, "alice", url), _clone(tmp_path, "bob", url)
    first, second = save(alice, 1), save(alice, 2)
    alice.push()
    bob.pull()
    alice.delete_program(second)  # no label names it on alice's side
    alice.push()
    bob.set_label(SIG, "production", second)  # bob labels it meanwhile
    before = git(tmp_path / "bob", "rev-parse", "main")
    with pytest.raises(ConflictError, match=f"{SIG}@production -> {second}"):
        bob.pull()
    assert git(tmp_path / "bob", "rev-parse", "main") == before
    assert first


def test_bundles_carry_labels(storage: ProgramStorage, tmp_path: Path) -> None:
    first, second = save(storage, 1), save(storage, 2)
    storage.set_label(SIG, "production", first, reason="v1")
    storage.set_label(SIG, "production", second, reason="v2")
    bundle = tmp_path / "registry.bundle"
    storage.export_registry(bundle)
    copy = ProgramStorage(tmp_path / "copy")
    copy.import_programs(bundle)
    assert copy.labels() == {SIG: {"production": second}}
    assert [m.reason for m in copy.label_history(SIG, "production")] == ["v2", "v1"]
    loaded = copy.load_program(f"{SIG}@production")
    assert loaded is not None and loaded.program_id == second
    assert trailers(tmp_path / "copy") == trailers(storage.path)
    assert_fsck_clean(tmp_path / "copy")


def test_review_lists_the_labels_a_range_moves(storage: ProgramStorage) -> None:
    first, second = save(storage, 1), save(storage, 2)
    storage.set_label(SIG, "production", first)
    base = git(storage.path, "rev-parse", "main").strip()
    storage.set_label(SIG, "production", second)
    storage.set_label(SIG, "staging", first)
    report = review_range(storage.path, f"{base}..main")
    assert [(c.signature, c.label, c.before, c.after) for c in report.labels] == [
        (SIG, "production", first, second),
        (SIG, "staging", None, first),
    ]
    assert report.ok and report.programs == []
    assert f"| {SIG}@production | `{first}` | `{second}` |" in report.to_markdown()
    assert review_range(storage.path, "main~1..main~1").labels == []


def test_concurrent_moves_of_different_labels_all_land(registry_path: Path) -> None:
    setup = ProgramStorage(registry_path)
    ids = [save(setup, n) for n in range(4)]
    rounds = 8

    def mover(label: str) -> None:
        own = ProgramStorage(registry_path)  # a handle of its own, as another process has
        for n in range(rounds):
            own.set_label(SIG, label, ids[n % len(ids)], reason=f"{label} round {n}")

    workers = [threading.Thread(target=mover, args=(label,)) for label in ("blue", "green")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    final = ids[(rounds - 1) % len(ids)]
    assert setup.labels() == {SIG: {"blue": final, "green": final}}
    for label in ("blue", "green"):
        reasons = [m.reason for m in setup.label_history(SIG, label)]
        assert reasons == [f"{label} round {n}" for n in reversed(range(rounds))]
    assert len(trailers(registry_path)) == 2 * rounds
    assert_fsck_clean(registry_path)
