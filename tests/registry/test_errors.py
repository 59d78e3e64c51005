"""Every bad input and every damaged registry gets its own exception, and changes nothing."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import progreg
from progreg import (
    CorruptProgramError,
    InvalidInputError,
    InvalidProgramIdError,
    NotARegistryError,
    NotJSONError,
    ProgramNotFoundError,
    ProgramStorage,
    ProgramTooLargeError,
    ProgregError,
    RegistryError,
    UnsupportedFormatError,
    UnsupportedProgramError,
)
from progreg.core.programs import ProgramTypes
from support import workload
from support.gitcli import CLI_IDENTITY, commit_file, git, registry_state


def program_file(program_id: str) -> str:
    return f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


@pytest.fixture
def populated(storage: ProgramStorage) -> ProgramStorage:
    """A registry holding three realistic programs."""
    for i in range(3):
        storage.save_program(
            workload.program_state(i),
            workload.optimization_result(i),
            metadata={"signature_class": workload.signature_of(i)},
        )
    return storage


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"child": value}
    return value


# -- the hierarchy ----------------------------------------------------------------------


def test_every_public_exception_is_a_progreg_error() -> None:
    exceptions = [
        obj
        for name in progreg.__all__
        if inspect.isclass(obj := getattr(progreg, name)) and issubclass(obj, BaseException)
    ]
    assert len(exceptions) >= 13
    for cls in exceptions:
        assert issubclass(cls, ProgregError), cls
    for cls in (InvalidProgramIdError, NotJSONError, ProgramTooLargeError, UnsupportedProgramError):
        assert issubclass(cls, InvalidInputError)
        assert issubclass(cls, ValueError)
    for cls in (NotARegistryError, UnsupportedFormatError, CorruptProgramError):
        assert issubclass(cls, RegistryError)
    assert issubclass(ProgramNotFoundError, KeyError)


# -- program ids ----------------------------------------------------------------------------

BAD_IDS: list[object] = [
    "../x",
    "../../../../etc/passwd",
    "0123456789ABCDEF",
    "0123456789abcde",  # 15 characters
    "0123456789abcdef0",  # 17 characters
    "",
    "0123456789abcdeg",
    "0123456789abcdef\n",
    " 0123456789abcdef",
    "0123/56789abcdef",
    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669abcdef",  # Arabic-Indic digits
    12345,
    None,
]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
def test_bad_program_ids_are_refused_everywhere(populated: ProgramStorage, bad_id: Any) -> None:
    before = registry_state(populated.path)
    calls: list[Callable[[], object]] = [
        lambda: populated.delete_program(bad_id),
        lambda: populated.restore_program(bad_id),
    ]
    if bad_id is not None:  # program_id=None means "generate one" when saving
        calls.append(lambda: populated.save_program({"a": 1}, program_id=bad_id))
        calls.append(lambda: populated.load_program(bad_id))
    for call in calls:
        with pytest.raises(InvalidProgramIdError, match="16 lowercase hexadecimal"):
            call()
    assert registry_state(populated.path) == before
    assert not list(populated.path.parent.rglob("passwd"))


# -- values JSON cannot hold ------------------------------------------------------------------


class Opaque:
    """An arbitrary object."""


class ResultModel(BaseModel):
    history: dict[str, Any]


NOT_JSON: list[tuple[str, Any, str]] = [
    ("nan", {"temperature": float("nan")}, "program state.temperature"),
    ("inf", {"temperature": math.inf}, "program state.temperature"),
    ("-inf", {"demos": [1.0, -math.inf]}, "program state.demos[1]"),
    ("set", {"labels": {"positive", "negative"}}, "program state.labels"),
    ("frozenset", {"labels": frozenset({"a"})}, "program state.labels"),
    ("object", {"lm": Opaque()}, "program state.lm"),
    ("datetime", {"when": datetime.now(UTC)}, "program state.when"),
    ("int key", {"demos": {1: "a"}}, "program state.demos"),
    ("tuple key", {("a", "b"): 1}, "program state"),
    ("bytes", {"blob": b"\x00\x01"}, "program state.blob"),
    ("bytearray", {"blob": bytearray(b"x")}, "program state.blob"),
    ("huge int", {"n": 2**64}, "program state.n"),
    ("huge negative int", {"n": -(2**63) - 1}, "program state.n"),
    ("lone surrogate", {"text": "caf\ud800"}, "program"),
    ("lone surrogate key", {"\udcff": 1}, "program"),
    ("too deep", nested(150), "program state.child"),
    ("far too deep", nested(5000), "program state.child"),
]


@pytest.mark.parametrize(
    ("value", "where"), [(v, w) for _, v, w in NOT_JSON], ids=[n for n, _, _ in NOT_JSON]
)
def test_values_json_cannot_hold(populated: ProgramStorage, value: Any, where: str) -> None:
    before = registry_state(populated.path)
    with pytest.raises(NotJSONError) as info:
        populated.save_program(value, workload.optimization_result(0))
    assert info.value.path.startswith(where)
    assert str(info.value).startswith(where.split(".", maxsplit=1)[0])
    assert registry_state(populated.path) == before
    assert len(populated.list_programs()) == 3


def test_not_json_in_metadata_and_result_names_the_path(populated: ProgramStorage) -> None:
    before = registry_state(populated.path)
    with pytest.raises(NotJSONError, match=r"metadata\.dataset\.sizes\[2\]") as info:
        populated.save_program({"a": 1}, None, {"dataset": {"sizes": [1, 2, float("nan")]}})
    assert info.value.path == "metadata.dataset.sizes[2]"
    with pytest.raises(NotJSONError, match=r"optimization_result\.scores\.accuracy") as info:
        populated.save_program({"a": 1}, {"scores": {"accuracy": math.inf}})
    assert info.value.path == "optimization_result.scores.accuracy"
    with pytest.raises(NotJSONError, match="sorted list"):
        populated.save_program({"a": 1}, None, {"tags": {"prod"}})
    with pytest.raises(NotJSONError, match="isoformat"):
        populated.save_program({"a": 1}, {"history": {"started": datetime.now(UTC)}})

    class Dumps:
        def dump_state(self) -> dict[str, Any]:
            return {"demos": [{"input": Opaque()}]}

    with pytest.raises(NotJSONError, match=r"program state\.demos\[0\]\.input"):
        populated.save_program(Dumps())

    class Tuned(BaseModel):
        temperature: float

    with pytest.raises(NotJSONError, match=r"program state\.temperature"):
        populated.save_program(Tuned(temperature=math.nan))
    with pytest.raises(NotJSONError, match=r"optimization_result\.history\.trials\[1\]"):
        populated.save_program({"a": 1}, ResultModel(history={"trials": [0.5, math.inf]}))
    assert registry_state(populated.path) == before


def test_json_boundaries_are_accepted(storage: ProgramStorage) -> None:
    """The checks above are not simply refusing everything unusual."""
    state = {
        "max": 2**64 - 1,
        "min": -(2**63),
        "tiny": 5e-324,
        "big": 1.7976931348623157e308,
        "tuple": (1, "two"),
        "text": "naïve ✓ \u2028 \x00",
        "deep": nested(90),
    }
    saved = storage.save_program(state)
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.program == {**state, "tuple": [1, "two"]}


# -- other bad input ---------------------------------------------------------------------------


def test_program_too_large(populated: ProgramStorage) -> None:
    small = ProgramStorage(populated.path, max_program_bytes=2048)
    before = registry_state(populated.path)
    with pytest.raises(ProgramTooLargeError, match=r"over the registry's limit of 2048 bytes"):
        small.save_program(workload.program_state(9), workload.optimization_result(9))
    assert registry_state(populated.path) == before
    saved = small.save_program({"instructions": "short"})
    assert small.load_program(saved.program_id) is not None


class ListDumper:
    def dump_state(self) -> list[str]:
        return ["not", "a", "dict"]


class FailingDumper:
    def dump_state(self) -> dict[str, Any]:
        raise RuntimeError("predictor not compiled")


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (Opaque(), "cannot store a"),
        (42, "cannot store a"),
        (["a", "list"], "cannot store a"),
        ("a string", "cannot store a"),
        (None, "cannot store a"),
        (ListDumper(), "returned a list, not a dict"),
        (FailingDumper(), "predictor not compiled"),
    ],
    ids=["object", "int", "list", "str", "None", "dump_state list", "dump_state raises"],
)
def test_unsupported_programs(populated: ProgramStorage, program: object, message: str) -> None:
    before = registry_state(populated.path)
    with pytest.raises(UnsupportedProgramError, match=message):
        populated.save_program(program, workload.optimization_result(0))
    assert registry_state(populated.path) == before


def test_unsupported_load_targets(populated: ProgramStorage) -> None:
    program_id = populated.list_programs()[0].program_id
    before = registry_state(populated.path)
    with pytest.raises(UnsupportedProgramError, match="no load_state"):
        populated.load_program(program_id, into=Opaque())
    with pytest.raises(UnsupportedProgramError, match="model_validate, from_dict or load_state"):
        populated.register_type(Opaque)
    with pytest.raises(UnsupportedProgramError):
        populated.load_program(program_id, into=Opaque)
    assert registry_state(populated.path) == before


class NoResult:
    pass


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (({"a": 1}, 42), "optimization_result is of type int"),
        (({"a": 1}, NoResult()), "optimization_result is of type NoResult"),
        (({"a": 1}, {"best_score_value": float("nan")}), "finite number"),
        (({"a": 1}, {"best_score_value": "high"}), "finite number"),
        (({"a": 1}, {"best_score_value": True}), "finite number"),
        (({"a": 1}, {"best_score_name": 3}), "best_score_name must be a string"),
        (({"a": 1}, {"metadata": ["MIPROv2"]}), "metadata must be a dict"),
        (({"a": 1}, {"metadata": {"optimizer": 1}}), "optimizer must be a string"),
        (({"a": 1}, None, ["not", "a", "dict"]), "metadata must be a dict"),
        (({"a": 1}, None, {"signature_class": 7}), "signature_class must be a string"),
    ],
)
def test_invalid_input(populated: ProgramStorage, args: tuple[Any, ...], message: str) -> None:
    before = registry_state(populated.path)
    with pytest.raises(InvalidInputError, match=message):
        populated.save_program(*args)
    assert registry_state(populated.path) == before


def test_tags_must_be_a_list_of_names(populated: ProgramStorage) -> None:
    before = registry_state(populated.path)
    tags: Any
    for tags in (42, object()):
        with pytest.raises(InvalidInputError, match="tags must be a list of tag names"):
            populated.save_program({"a": 1}, tags=tags)
        with pytest.raises(InvalidInputError, match="tags must be a list of tag names"):
            populated.save_programs([({"a": 1}, None)], tags=tags)
    assert registry_state(populated.path) == before
    saved = populated.save_program({"a": 2}, tags=None)  # None: no tags, as StorageManager takes
    assert saved.program_id in populated.registry.records()


def test_invalid_identity(populated: ProgramStorage) -> None:
    before = registry_state(populated.path)
    bad = ProgramStorage(populated.path, author="just a name")
    with pytest.raises(InvalidInputError, match="Name <email>"):
        bad.save_program({"a": 1})
    with pytest.raises(InvalidInputError, match="Name <email>"):
        bad.delete_program(populated.list_programs()[0].program_id)
    assert registry_state(populated.path) == before


# -- paths that are not registries ----------------------------------------------------------


def test_path_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "registry"
    path.write_text("my notes\n")
    with pytest.raises(NotARegistryError, match="is a file"):
        ProgramStorage(path)
    assert path.read_text() == "my notes\n"


def test_non_empty_directory_that_is_not_git(tmp_path: Path) -> None:
    path = tmp_path / "project"
    (path / "src").mkdir(parents=True)
    (path / "README").write_text("hello\n")
    with pytest.raises(NotARegistryError, match="not a Git repository"):
        ProgramStorage(path)
    assert sorted(p.name for p in path.rglob("*")) == ["README", "src"]
    assert (path / "README").read_text() == "hello\n"


def test_a_directory_inside_a_git_work_tree_is_not_searched_upwards(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "outer")
    inner = tmp_path / "outer" / "data"
    inner.mkdir()
    (inner / "file.txt").write_text("x")
    with pytest.raises(NotARegistryError):
        ProgramStorage(inner)
    assert git(tmp_path / "outer", "status", "--porcelain").strip() == "?? data/"


def test_non_bare_work_tree(tmp_path: Path) -> None:
    path = tmp_path / "work"
    git(tmp_path, "init", "-q", "--initial-branch=main", str(path))
    (path / "notes.md").write_text("notes\n")
    git(path, "add", "notes.md")
    git(path, "commit", "-q", "-m", "notes", env=CLI_IDENTITY)
    before = registry_state(path / ".git")
    with pytest.raises(NotARegistryError, match="work tree"):
        ProgramStorage(path)
    assert registry_state(path / ".git") == before
    assert git(path, "status", "--porcelain") == ""


def empty_commit(path: Path, message: str) -> str:
    tree = git(path, "mktree", input=b"").strip()
    return git(path, "commit-tree", tree, "-m", message, env=CLI_IDENTITY).strip()


def test_bare_repository_with_other_refs_but_no_main(tmp_path: Path) -> None:
    path = tmp_path / "other.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=master", str(path))
    git(path, "update-ref", "refs/heads/master", empty_commit(path, "someone else's work"))
    git(path, "tag", "v1", "refs/heads/master")
    before = registry_state(path)
    with pytest.raises(NotARegistryError, match="not a progreg registry"):
        ProgramStorage(path)
    assert registry_state(path) == before
    assert git(path, "symbolic-ref", "HEAD").strip() == "refs/heads/master"


def test_bare_repository_whose_main_is_not_a_registry(tmp_path: Path) -> None:
    path = tmp_path / "code.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(path))
    git(path, "update-ref", "refs/heads/main", empty_commit(path, "code"))
    before = registry_state(path)
    with pytest.raises(NotARegistryError, match=r"not a progreg registry \(no progreg\.json on"):
        ProgramStorage(path)
    assert registry_state(path) == before


def test_damaged_registry_marker(populated: ProgramStorage) -> None:
    commit_file(populated.path, "progreg.json", b"format_version = 1\n")
    before = registry_state(populated.path)
    with pytest.raises(NotARegistryError, match=r"progreg\.json is damaged"):
        ProgramStorage(populated.path)
    assert registry_state(populated.path) == before


def test_registry_from_a_newer_progreg(populated: ProgramStorage) -> None:
    marker = (json.dumps({"format_version": 99}, indent=2) + "\n").encode()
    commit_file(populated.path, "progreg.json", marker, "Upgrade the registry format")
    before = registry_state(populated.path)
    with pytest.raises(UnsupportedFormatError, match=r"format 99.*upgrade progreg"):
        ProgramStorage(populated.path)
    assert registry_state(populated.path) == before


def test_program_from_a_newer_progreg(populated: ProgramStorage) -> None:
    program_id = populated.list_programs()[0].program_id
    path = program_file(program_id)
    document = json.loads(git(populated.path, "show", f"main:{path}"))
    document["format_version"] = 99
    commit_file(populated.path, path, (json.dumps(document, indent=2) + "\n").encode())
    before = registry_state(populated.path)
    with pytest.raises(UnsupportedFormatError, match="format_version 99"):
        populated.load_program(program_id)
    assert registry_state(populated.path) == before


# -- corrupt program files --------------------------------------------------------------------


def test_corrupt_program_committed_through_a_clone(
    populated: ProgramStorage, tmp_path: Path
) -> None:
    """A person edits a program file by hand in a clone and pushes invalid JSON."""
    program_id = populated.list_programs()[1].program_id
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(populated.path), str(clone))
    file = clone / program_file(program_id)
    file.write_text(file.read_text().replace('"program_id"', "program_id", 1))
    git(clone, "commit", "-q", "-am", "Fix a typo by hand", env=CLI_IDENTITY)
    git(clone, "push", "-q", "origin", "main")

    before = registry_state(populated.path)
    with pytest.raises(CorruptProgramError, match=program_file(program_id)) as info:
        populated.load_program(program_id)
    assert "not valid JSON" in str(info.value)
    assert registry_state(populated.path) == before
    # the other programs still load, and the damaged one can still be deleted
    others = [p for p in _ids(populated) if p != program_id]
    for other in others:
        assert populated.load_program(other) is not None
    assert populated.delete_program(program_id) is True
    assert populated.load_program(program_id) is None


def _ids(storage: ProgramStorage) -> list[str]:
    out = git(storage.path, "ls-tree", "-r", "--name-only", "main", "programs")
    return [Path(line).stem for line in out.split()]


CORRUPT_DOCUMENTS: list[tuple[str, Callable[[dict[str, Any], str], bytes], str]] = [
    ("invalid JSON", lambda doc, other: b'{"program_id": \n', "not valid JSON"),
    ("empty file", lambda doc, other: b"", "not valid JSON"),
    ("not an object", lambda doc, other: b"[1, 2, 3]\n", "not a JSON object"),
    (
        "wrong program_id",
        lambda doc, other: json.dumps({**doc, "program_id": other}).encode(),
        "misplaced",
    ),
    (
        "malformed program_id",
        lambda doc, other: json.dumps({**doc, "program_id": "../x"}).encode(),
        "malformed",
    ),
    (
        "missing keys",
        lambda doc, other: json.dumps({"program_id": doc["program_id"]}).encode(),
        "lacks",
    ),
    (
        "naive saved_at",
        lambda doc, other: json.dumps({**doc, "saved_at": "2025-01-01T00:00:00"}).encode(),
        "no time zone",
    ),
    (
        "state not an object",
        lambda doc, other: json.dumps({**doc, "program_data": {"state": [1]}}).encode(),
        "state is not a JSON object",
    ),
    (
        "format_version not an int",
        lambda doc, other: json.dumps({**doc, "format_version": "1"}).encode(),
        "not an integer",
    ),
]


@pytest.mark.parametrize(
    ("make", "message"),
    [(m, msg) for _, m, msg in CORRUPT_DOCUMENTS],
    ids=[n for n, _, _ in CORRUPT_DOCUMENTS],
)
def test_corrupt_program_committed_with_plumbing(
    populated: ProgramStorage,
    make: Callable[[dict[str, Any], str], bytes],
    message: str,
) -> None:
    first, second = _ids(populated)[:2]
    path = program_file(first)
    document = json.loads(git(populated.path, "show", f"main:{path}"))
    commit_file(populated.path, path, make(document, second))
    before = registry_state(populated.path)
    with pytest.raises(CorruptProgramError, match=message) as info:
        populated.load_program(first)
    assert path in str(info.value)
    assert registry_state(populated.path) == before
    # a corrupt program is not confused with a missing one
    assert populated.load_program(second) is not None
    assert populated.load_program("0000000000000000") is None


def test_registered_type_that_cannot_load_the_state(populated: ProgramStorage) -> None:
    class Strict:
        @classmethod
        def from_dict(cls, state: dict[str, Any]) -> Strict:
            raise ValueError("missing field 'instructions'")

        def to_dict(self) -> dict[str, Any]:
            return {"other": 1}

    saved = populated.save_program(Strict())
    populated.register_type(Strict)
    # The stored program is intact: the caller's class is what cannot take it.
    with pytest.raises(UnsupportedProgramError, match="missing field 'instructions'"):
        populated.load_program(saved.program_id)
    with pytest.raises(UnsupportedProgramError, match="missing field 'instructions'"):
        populated.load_program(saved.program_id, into=Strict)
    populated.registry.types = ProgramTypes()
    plain = populated.load_program(saved.program_id)
    assert plain is not None
    assert plain.program == {"other": 1}


# -- missing programs -------------------------------------------------------------------------


def test_missing_programs(populated: ProgramStorage, tmp_path: Path) -> None:
    before = registry_state(populated.path)
    assert populated.load_program("0000000000000000") is None
    with pytest.raises(ProgramNotFoundError, match="0000000000000000") as info:
        populated.restore_program("0000000000000000")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "program 0000000000000000 is not in the registry's history"
    assert populated.delete_program("0000000000000000") is False
    assert registry_state(populated.path) == before

    empty = ProgramStorage(tmp_path / "empty")
    assert empty.load_program("0000000000000000") is None
    with pytest.raises(ProgramNotFoundError):
        empty.restore_program("0000000000000000")
    assert empty.delete_program("0000000000000000") is False
