"""Lineage: derived_from recorded on save (explicit and automatic), and the tree built from the log.

Real registries in tmp_path; the trailers and documents are read back with
the ``git`` command line; automatic lineage uses real DSPy modules and a real
optimizer (``dspy.LabeledFewShot``, which calls no LM).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pygit2
import pytest

pytest.importorskip("dspy", reason="the dspy extra is not installed")

import dspy

from progreg import (
    InvalidInputError,
    Lineage,
    ProgramNotFoundError,
    ProgramStorage,
    SavedProgram,
    StorageConfig,
    StorageManager,
)
from progreg.core import canonical
from progreg.core.docmerge import merge_documents
from progreg.core.dspy import optimization_result_from
from progreg.core.ids import program_path
from progreg.core.lineage import ORIGIN_ATTRIBUTE, Origin
from progreg.registry.validation import validate_commit, validate_commits
from support.gitcli import assert_fsck_clean, commit_file, git, registry_state

if TYPE_CHECKING:
    from support.servers import GitServer


def save(storage: ProgramStorage, n: int, **kwargs: Any) -> SavedProgram:
    """A program with state ``{"n": n}`` and score ``n / 10``."""
    result = {"best_score_name": "accuracy", "best_score_value": n / 10}
    return storage.save_program({"n": n}, result, **kwargs)


def trailers(registry: Path, commit: str) -> dict[str, str]:
    """The trailers of ``commit`` as ``git log --format=%(trailers)`` prints them."""
    text = git(registry, "log", "-1", "--format=%(trailers:only,unfold)", commit)
    return dict(line.split(": ", 1) for line in text.splitlines() if line)


def document(registry: Path, commit: str, program_id: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        git(registry, "show", f"{commit}:{program_path(program_id)}")
    )
    return loaded


def ids_of(nodes: list[Any]) -> list[str]:
    return [node.program_id for node in nodes]


# -- recording the link -----------------------------------------------------------------


def test_explicit_derived_from_is_a_trailer_and_a_document_key(
    storage: ProgramStorage, registry_path: Path
) -> None:
    parent = save(storage, 5)
    child = save(storage, 7, derived_from=parent.program_id)
    assert trailers(registry_path, child.commit)["Derived-From"] == parent.program_id
    assert trailers(registry_path, child.commit)["Derived-From-Commit"] == parent.commit
    assert document(registry_path, child.commit, child.program_id)["derived_from"] == {
        "program_id": parent.program_id,
        "commit": parent.commit,
    }
    # a program that names no ancestor has neither, and its document is as before
    assert "Derived-From" not in trailers(registry_path, parent.commit)
    assert "derived_from" not in document(registry_path, parent.commit, parent.program_id)
    # a SavedProgram names the exact version it is
    newer = save(storage, 6, program_id=parent.program_id)
    from_old = save(storage, 8, derived_from=parent)
    assert trailers(registry_path, from_old.commit)["Derived-From-Commit"] == parent.commit
    assert newer.commit != parent.commit
    assert_fsck_clean(registry_path)


def test_a_saved_program_under_another_id_is_derived_from_it(storage: ProgramStorage) -> None:
    parent = save(storage, 5)
    loaded = storage.load_program(parent.program_id)
    assert loaded is not None
    copy_of = storage.save_program(loaded, program_id="00000000000000aa")
    assert storage.lineage(copy_of.program_id).ancestors[0].program_id == parent.program_id
    again = storage.save_program(loaded)  # its own id: a new version at most, no ancestor
    assert storage.lineage(again.program_id).ancestors == []


def test_a_bad_derived_from_is_refused_and_changes_nothing(
    storage: ProgramStorage, registry_path: Path
) -> None:
    parent = save(storage, 5)
    before = registry_state(registry_path)
    with pytest.raises(ProgramNotFoundError, match="neither on main nor in its history"):
        save(storage, 6, derived_from="0123456789abcdef")
    with pytest.raises(InvalidInputError, match="derived from itself"):
        save(storage, 6, program_id=parent.program_id, derived_from=parent.program_id)
    with pytest.raises(InvalidInputError, match="program id or a SavedProgram"):
        save(storage, 6, derived_from=42)
    with pytest.raises(InvalidInputError):
        save(storage, 6, derived_from="not-an-id")
    with pytest.raises(InvalidInputError, match="batch item 0"):
        storage.save_programs([{"program": {}, "derived_from": "0123456789abcdef", "x": 1}])
    with pytest.raises(ProgramNotFoundError):
        storage.save_programs([{"program": {}, "derived_from": "0123456789abcdef"}])
    assert registry_state(registry_path) == before


def test_a_deleted_ancestor_can_still_be_named(storage: ProgramStorage) -> None:
    parent = save(storage, 5)
    assert storage.delete_program(parent.program_id)
    child = save(storage, 6, derived_from=parent.program_id)
    ancestor = storage.lineage(child.program_id).ancestors[0]
    assert ancestor.program_id == parent.program_id and ancestor.commit == parent.commit
    assert not ancestor.live


def test_batch_items_name_their_ancestors(storage: ProgramStorage, registry_path: Path) -> None:
    parent = save(storage, 5)
    first, second = storage.save_programs(
        [{"program": {"n": 1}, "derived_from": parent}, ({"n": 2}, None, None)]
    )
    assert first.commit == second.commit
    doc = document(registry_path, first.commit, first.program_id)
    assert doc["derived_from"]["program_id"] == parent.program_id
    assert "derived_from" not in document(registry_path, second.commit, second.program_id)
    assert ids_of(storage.lineage(parent.program_id).descendants) == [first.program_id]


def test_a_new_version_keeps_its_ancestor(storage: ProgramStorage, registry_path: Path) -> None:
    parent = save(storage, 5)
    child = save(storage, 6, derived_from=parent.program_id)
    newer = save(storage, 7, program_id=child.program_id)  # no derived_from given
    assert newer.commit != child.commit
    assert document(registry_path, newer.commit, child.program_id)["derived_from"] == {
        "program_id": parent.program_id,
        "commit": parent.commit,
    }


# -- automatic lineage with real DSPy ---------------------------------------------------------


class LookUpFact(dspy.Signature):
    """Look the fact up in the lineage test's table.

    Its own fields and instructions: DSPy signatures are named by matching
    user-defined classes, and a twin of another test's class would make both
    nameless.
    """

    query: str = dspy.InputField()
    fact: str = dspy.OutputField()


class TableQA(dspy.Module):
    """A real module whose forward() calls no LM."""

    def __init__(self) -> None:
        super().__init__()
        self.generate = dspy.Predict(LookUpFact)

    def forward(self, query: str) -> Any:
        return dspy.Prediction(fact={"2 + 2?": "4"}.get(query, "unknown"))


def trainset() -> list[Any]:
    pairs = [("2 + 2?", "4"), ("Capital of France?", "Paris")]
    return [dspy.Example(query=q, fact=a).with_inputs("query") for q, a in pairs]


def test_a_loaded_module_compiled_by_an_optimizer_is_derived_from_its_program(
    storage: ProgramStorage, registry_path: Path
) -> None:
    base = storage.save_program(TableQA(), {"best_score_value": 0.5})
    loaded = storage.load_program(base.program_id, into=TableQA())
    assert loaded is not None
    assert getattr(loaded.program, ORIGIN_ATTRIBUTE) == Origin(base.program_id, base.commit)
    compiled = dspy.LabeledFewShot(k=2).compile(loaded.program, trainset=trainset())
    assert compiled is not loaded.program  # the optimizer worked on a copy (reset_copy)
    child = storage.save_program(compiled, {"best_score_value": 0.9})
    assert trailers(registry_path, child.commit)["Derived-From"] == base.program_id
    assert trailers(registry_path, child.commit)["Derived-From-Commit"] == base.commit
    # the stamp is no part of the stored state
    assert ORIGIN_ATTRIBUTE not in json.dumps(child.state)
    # a copy made by reset_copy() or deepcopy() carries it too
    for derived in (loaded.program.reset_copy(), copy.deepcopy(loaded.program)):
        saved = storage.save_program(derived, {"best_score_value": 0.6})
        assert storage.lineage(saved.program_id).ancestors[0].program_id == base.program_id
    # saved under the id it was loaded from: a new version, no ancestor
    version = storage.save_program(compiled, {"best_score_value": 0.95}, None, base.program_id)
    assert "Derived-From" not in trailers(registry_path, version.commit)
    # an explicit derived_from wins over the stamp
    other = save(storage, 3)
    chosen = storage.save_program(compiled, {"best_score_value": 0.7}, derived_from=other)
    assert trailers(registry_path, chosen.commit)["Derived-From"] == other.program_id
    assert_fsck_clean(registry_path)


def test_the_manager_records_the_student_s_program(tmp_path: Path) -> None:
    manager = StorageManager(StorageConfig(storage_path=str(tmp_path / "registry")))
    base = manager.storage.save_program(TableQA(), {"best_score_value": 0.5})
    loaded = manager.storage.load_program(base.program_id, into=TableQA())
    assert loaded is not None
    optimizer = dspy.LabeledFewShot(k=1)
    compiled = optimizer.compile(loaded.program, trainset=trainset())
    saved = manager.save_optimization_result(
        optimization_result_from(compiled, 0.8, optimizer=optimizer)
    )
    assert saved is not None
    lineage = manager.storage.lineage(saved.program_id)
    assert ids_of(lineage.ancestors) == [base.program_id]


def test_a_stamp_from_another_registry_is_ignored(storage: ProgramStorage, tmp_path: Path) -> None:
    other = ProgramStorage(tmp_path / "other")
    elsewhere = other.save_program(TableQA())
    loaded = other.load_program(elsewhere.program_id, into=TableQA())
    assert loaded is not None
    saved = storage.save_program(loaded.program)  # this registry never held the ancestor
    assert storage.lineage(saved.program_id).ancestors == []


# -- the tree -----------------------------------------------------------------------------


def family(storage: ProgramStorage) -> dict[str, SavedProgram]:
    """root -> a -> (a1, a2 -> a21); root -> b."""
    root = save(storage, 1)
    a = save(storage, 2, derived_from=root.program_id)
    b = save(storage, 3, derived_from=root.program_id)
    a1 = save(storage, 4, derived_from=a.program_id)
    a2 = save(storage, 5, derived_from=a.program_id)
    a21 = save(storage, 6, derived_from=a2.program_id)
    return {"root": root, "a": a, "b": b, "a1": a1, "a2": a2, "a21": a21}


def test_lineage_shows_ancestors_and_descendants(storage: ProgramStorage) -> None:
    f = family(storage)
    lineage = storage.lineage(f["a2"].program_id)
    assert isinstance(lineage, Lineage)
    assert ids_of(lineage.ancestors) == [f["a"].program_id, f["root"].program_id]
    assert lineage.ancestors[0].commit == f["a"].commit
    assert lineage.ancestors[0].score == 0.2 and lineage.ancestors[0].score_name == "accuracy"
    assert lineage.ancestors[0].saved_at == f["a"].saved_at
    assert lineage.program.program_id == f["a2"].program_id
    assert ids_of(lineage.descendants) == [f["a21"].program_id]

    top = storage.lineage(f["root"].program_id)
    assert top.ancestors == []
    # depth first: each after its parent, before its own descendants
    assert ids_of(top.descendants) == [f[name].program_id for name in ("a", "a1", "a2", "a21", "b")]
    assert [node.generation for node in top.descendants] == [1, 2, 2, 3, 1]
    assert ids_of(top.children(f["root"].program_id)) == [f["a"].program_id, f["b"].program_id]
    assert ids_of(top.children(f["a"].program_id)) == [f["a1"].program_id, f["a2"].program_id]
    assert ids_of(top.children(f["a2"].program_id)) == [f["a21"].program_id]
    assert all(node.live for node in top.descendants)
    assert [node.generation for node in lineage.ancestors] == [-1, -2]
    assert [node.derived_from for node in lineage.ancestors] == [f["root"].program_id, None]
    assert lineage.program.derived_from == f["a"].program_id and lineage.program.generation == 0

    with pytest.raises(ProgramNotFoundError):
        storage.lineage("0123456789abcdef")
    with pytest.raises(InvalidInputError):
        storage.lineage("nope")


def test_a_deleted_ancestor_is_still_shown(storage: ProgramStorage) -> None:
    f = family(storage)
    assert storage.delete_program(f["a"].program_id)
    lineage = storage.lineage(f["a21"].program_id)
    assert ids_of(lineage.ancestors) == [
        f["a2"].program_id,
        f["a"].program_id,
        f["root"].program_id,
    ]
    assert [node.live for node in lineage.ancestors] == [True, False, True]
    assert lineage.ancestors[1].score == 0.2  # from history
    root = storage.lineage(f["root"].program_id)
    assert ids_of(root.children(f["a"].program_id)) == [f["a1"].program_id, f["a2"].program_id]
    assert not root.descendants[0].live
    # and the deleted program's own lineage
    assert ids_of(storage.lineage(f["a"].program_id).ancestors) == [f["root"].program_id]


def test_lineage_survives_a_bundle(storage: ProgramStorage, tmp_path: Path) -> None:
    f = family(storage)
    storage.delete_program(f["a"].program_id)
    storage.export_registry(tmp_path / "all.bundle")
    target = ProgramStorage(tmp_path / "target")
    target.import_programs(tmp_path / "all.bundle")
    lineage = target.lineage(f["a21"].program_id)
    assert ids_of(lineage.ancestors) == [
        f["a2"].program_id,
        f["a"].program_id,
        f["root"].program_id,
    ]
    assert not lineage.ancestors[1].live
    # a bundle of only some programs: the others are named by their descendants
    storage.export_programs([f["a21"].program_id], tmp_path / "one.bundle")
    third = ProgramStorage(tmp_path / "third")
    third.import_programs(tmp_path / "one.bundle")
    only = third.lineage(f["a21"].program_id)
    assert ids_of(only.ancestors)[0] == f["a2"].program_id
    assert only.ancestors[0].commit == f["a2"].commit


def test_lineage_survives_a_pull_after_the_ancestor_was_deleted(
    git_daemon: GitServer, tmp_path: Path
) -> None:
    git_daemon.create()
    url = git_daemon.url("registry.git")
    alice = ProgramStorage(tmp_path / "alice")
    alice.add_remote("origin", url)
    bob = ProgramStorage(tmp_path / "bob")
    bob.add_remote("origin", url)
    mine = save(bob, 9)  # bob's own save: his pull is a merge
    parent = save(alice, 1)
    child = save(alice, 2, derived_from=parent.program_id)
    alice.delete_program(parent.program_id)
    alice.push()
    pulled = bob.pull()
    assert not pulled.fast_forward
    lineage = bob.lineage(child.program_id)
    assert ids_of(lineage.ancestors) == [parent.program_id]
    assert lineage.ancestors[0].commit == parent.commit and not lineage.ancestors[0].live
    assert lineage.ancestors[0].score == 0.1  # read from the ancestor's commit, fetched too
    assert ids_of(bob.lineage(parent.program_id).descendants) == [child.program_id]
    assert bob.lineage(mine.program_id).descendants == []


def test_a_cycle_in_a_crafted_history_does_not_loop(
    storage: ProgramStorage, registry_path: Path
) -> None:
    a = save(storage, 1)
    b = save(storage, 2, derived_from=a.program_id)
    # By hand, with Git: a now says it was derived from b (a cycle), c from itself.
    doc = document(registry_path, "main", a.program_id)
    doc["derived_from"] = {"program_id": b.program_id, "commit": b.commit}
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    commit_file(registry_path, program_path(a.program_id), data, "Make a cycle")
    c_id = "00000000000000cc"
    own = {**doc, "program_id": c_id, "derived_from": {"program_id": c_id, "commit": b.commit}}
    data = (json.dumps(own, indent=2, sort_keys=True) + "\n").encode()
    commit_file(registry_path, program_path(c_id), data, "A program derived from itself")

    fresh = ProgramStorage(registry_path)
    lineage = fresh.lineage(a.program_id)
    assert ids_of(lineage.ancestors) == [b.program_id]  # and not a, b, a, b, ...
    assert lineage.descendants == [] or ids_of(lineage.descendants) == [b.program_id]
    assert fresh.lineage(b.program_id).ancestors[0].program_id == a.program_id
    assert fresh.lineage(c_id).ancestors == [] and fresh.lineage(c_id).descendants == []


def test_a_long_chain_is_walked_without_recursion(storage: ProgramStorage) -> None:
    previous = save(storage, 0)
    first = previous
    docs = []
    for n in range(1, 300):
        docs.append({"program": {"n": n}, "derived_from": previous.program_id})
        previous = storage.save_programs(docs[-1:])[0]
    lineage = storage.lineage(previous.program_id)
    assert len(lineage.ancestors) == 299 and lineage.ancestors[-1].program_id == first.program_id
    below = storage.lineage(first.program_id)
    assert [node.generation for node in below.descendants] == list(range(1, 300))
    assert len(below.model_dump_json()) > 0  # no nesting: serializes at any length


# -- the server hook's checks ---------------------------------------------------------------


def problems_of(registry: Path, commit: str) -> list[str]:
    repo = pygit2.Repository(str(registry))
    found = repo.get(commit)
    assert isinstance(found, pygit2.Commit)
    return [problem.message for problem in validate_commit(repo, found)]


def test_the_hook_checks_lineage_trailers_and_the_key(
    storage: ProgramStorage, registry_path: Path
) -> None:
    parent = save(storage, 5)
    child = save(storage, 6, derived_from=parent)
    count, problems = validate_commits(
        pygit2.Repository(str(registry_path)),
        None,
        pygit2.Repository(str(registry_path)).revparse_single("main").peel(pygit2.Commit),
    )
    assert count == 2 and problems == []

    path = program_path(child.program_id)
    message = git(registry_path, "log", "-1", "--format=%B", child.commit)
    doc = document(registry_path, child.commit, child.program_id)
    doc["program_data"]["state"]["n"] = 60  # a change, so that the commit writes the program
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    lying = commit_file(
        registry_path, path, data, message.replace(parent.program_id, "00000000000000ee")
    )
    assert any(
        "its Derived-From trailer says '00000000000000ee'" in p
        for p in problems_of(registry_path, lying)
    )
    bare = "\n".join(line for line in message.splitlines() if not line.startswith("Derived-From"))
    doc["program_data"]["state"]["n"] = 61
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    missing = commit_file(registry_path, path, data, bare + "\n")
    assert any(
        "its Derived-From trailer says None" in p for p in problems_of(registry_path, missing)
    )

    doc["derived_from"] = {"program_id": parent.program_id}
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    malformed = commit_file(registry_path, path, data, "Edit by hand")
    assert any("derived_from must be an object" in p for p in problems_of(registry_path, malformed))


def test_a_merge_never_mixes_two_ancestors(storage: ProgramStorage, registry_path: Path) -> None:
    """Both sides edited derived_from by hand: one side's id with the other's commit is refused."""
    parent = save(storage, 1)
    newer = save(storage, 2, program_id=parent.program_id)
    other = save(storage, 3)
    child = save(storage, 4, derived_from=parent)
    path = program_path(child.program_id)
    base = git(registry_path, "show", f"main:{path}").encode()
    doc = json.loads(base)
    ours = {**doc, "derived_from": {"program_id": parent.program_id, "commit": newer.commit}}
    theirs = {**doc, "derived_from": {"program_id": other.program_id, "commit": parent.commit}}
    merged = merge_documents(base, canonical.encode(ours), canonical.encode(theirs), path)
    assert merged.data is None
    assert [conflict.path for conflict in merged.conflicts] == ["derived_from"]
    # one side alone changing it is taken whole
    only = merge_documents(base, base, canonical.encode(ours), path)
    assert only.data is not None
    assert json.loads(only.data)["derived_from"] == ours["derived_from"]


class Notes:
    """A registered type whose to_dict copies its attributes, as many hand-written ones do."""

    def __init__(self, text: str = "") -> None:
        self.text = text

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Notes:
        return cls(state["text"])


def test_a_registered_type_is_stamped_and_the_stamp_is_not_stored(
    storage: ProgramStorage, registry_path: Path
) -> None:
    storage.register_type(Notes)
    base = storage.save_program(Notes("Be brief."))
    loaded = storage.load_program(base.program_id)
    assert loaded is not None and isinstance(loaded.program, Notes)
    loaded.program.text = "Be very brief."
    child = storage.save_program(loaded.program)
    assert child.state == {"text": "Be very brief."}  # no _progreg_origin in the state
    assert ORIGIN_ATTRIBUTE not in git(
        registry_path, "show", f"main:{program_path(child.program_id)}"
    )
    assert storage.lineage(child.program_id).ancestors[0].program_id == base.program_id
