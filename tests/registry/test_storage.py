"""ProgramStorage end to end, checked with the real git command line.

Programs and optimization results come from ``workload.py``
(DSPy ChainOfThought states of about 5 KB, MIPROv2-like results).
"""

from __future__ import annotations

import json
import logging
import platform
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import progreg
from progreg import (
    GcReport,
    InvalidInputError,
    InvalidProgramIdError,
    LogEntry,
    OptimizationResult,
    ProgramHistory,
    ProgramStorage,
    ProgramSummary,
    SavedProgram,
    SecretDetectedError,
    StorageManager,
)
from support import workload
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, commit_file, git, git_status

ID_RE = re.compile(r"^[0-9a-f]{16}$")
SAVED_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


def program_file(program_id: str) -> str:
    return f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


def save_realistic(storage: ProgramStorage, i: int, **extra_metadata: Any) -> SavedProgram:
    """Save workload program ``i`` the way an optimizer run would."""
    return storage.save_program(
        workload.program_state(i),
        workload.optimization_result(i),
        metadata={"signature_class": workload.signature_of(i), **extra_metadata},
    )


def trailers(registry: Path, commit: str) -> dict[str, str]:
    """The trailers of ``commit`` as ``git log --format=%(trailers)`` prints them."""
    text = git(registry, "log", "-1", "--format=%(trailers)", commit)
    result: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.partition(": ")
            result[key] = value
    return result


def commit_count(registry: Path) -> int:
    return int(git(registry, "rev-list", "--count", "refs/heads/main").strip())


def head(registry: Path) -> str:
    return git(registry, "rev-parse", "refs/heads/main").strip()


# -- program types a caller might save -------------------------------------------


class ClassifyText:
    """A stand-in for a DSPy Signature class: only its ``__name__`` matters."""


class FakePredict:
    """A DSPy-like predictor: ``signature`` is a class, state via dump_state/load_state."""

    signature = ClassifyText

    def __init__(self) -> None:
        self.instructions = ""
        self.demos: list[dict[str, str]] = []

    def dump_state(self) -> dict[str, Any]:
        return {"signature": {"instructions": self.instructions}, "demos": list(self.demos)}

    def load_state(self, state: dict[str, Any]) -> FakePredict:
        self.instructions = state["signature"]["instructions"]
        self.demos = list(state["demos"])
        return self


class FakeChainOfThought:
    """A DSPy-like module whose predictor is ``self.predict``."""

    def __init__(self) -> None:
        self.predict = FakePredict()

    def dump_state(self) -> dict[str, Any]:
        return {"predict": self.predict.dump_state()}

    def load_state(self, state: dict[str, Any]) -> FakeChainOfThought:
        self.predict.load_state(state["predict"])
        return self


def optimized_module() -> FakeChainOfThought:
    module = FakeChainOfThought()
    module.predict.instructions = "Classify the sentiment of the customer's message."
    module.predict.demos = [
        {"text": "The refund never arrived.", "label": "negative"},
        {"text": "Great support, thanks!", "label": "positive"},
    ]
    return module


class PromptProgram(BaseModel):
    instructions: str
    demos: list[dict[str, str]]


class DictProgram:
    """A program with to_dict()/from_dict()."""

    def __init__(self, instructions: str, demos: list[str]) -> None:
        self.instructions = instructions
        self.demos = demos

    def to_dict(self) -> dict[str, Any]:
        return {"instructions": self.instructions, "demos": self.demos}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DictProgram:
        return cls(state["instructions"], list(state["demos"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DictProgram) and (self.instructions, self.demos) == (
            other.instructions,
            other.demos,
        )

    __hash__ = None  # type: ignore[assignment]


# -- optimization results a caller might pass ----------------------------------------


class PydanticResult(BaseModel):
    optimized_program: Any = None
    scores: dict[str, float]
    history: dict[str, Any]
    best_score_name: str
    best_score_value: float
    metadata: dict[str, Any]


class ToDictResult:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


class ToHResult:
    """Like a Ruby port's result: only ``to_h``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_h(self) -> dict[str, Any]:
        return dict(self.data)


# -- the registry on disk -------------------------------------------------------------


def test_registry_is_a_bare_repo_with_head_on_main(
    storage: ProgramStorage, registry_path: Path
) -> None:
    save_realistic(storage, 0)
    assert git(registry_path, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git(registry_path, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(registry_path, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    assert json.loads(git(registry_path, "show", "main:progreg.json")) == {"format_version": 1}
    assert_fsck_clean(registry_path)


def test_registry_is_created_on_first_use_only(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "registry"
    storage = ProgramStorage(path)
    assert storage.path == path
    assert storage.list_programs() == []
    assert storage.get_history().summary.total_programs == 0
    assert git(path, "rev-parse", "--is-bare-repository").strip() == "true"
    assert git_status(path, "rev-parse", "--verify", "-q", "refs/heads/main") != 0


def test_an_empty_bare_repository_becomes_a_registry_with_head_on_main(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=master", str(path))
    saved = save_realistic(ProgramStorage(path), 0)
    assert git(path, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(path, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(path), str(clone))
    assert (clone / program_file(saved.program_id)).is_file()
    assert_fsck_clean(path)


def test_storage_path_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGREG_PATH", str(tmp_path / "from-env"))
    assert ProgramStorage().path == tmp_path / "from-env"
    monkeypatch.delenv("PROGREG_PATH")
    monkeypatch.chdir(tmp_path)
    assert ProgramStorage().path == tmp_path / "dspy_storage"
    assert (tmp_path / "dspy_storage" / "HEAD").is_file()


def test_save_returns_the_record_and_one_commit_per_save(
    storage: ProgramStorage, registry_path: Path
) -> None:
    previous: str | None = None
    for i in range(5):
        saved = save_realistic(storage, i)
        assert ID_RE.match(saved.program_id)
        assert saved.program == workload.program_state(i)
        assert saved.state == workload.program_state(i)
        assert saved.optimization_result == workload.optimization_result(i)
        assert saved.best_score == workload.optimization_result(i)["best_score_value"]
        assert saved.optimizer == workload.optimizer_of(i)
        assert saved.signature_class == workload.signature_of(i)
        assert commit_count(registry_path) == i + 1
        assert head(registry_path) == saved.commit
        parents = git(registry_path, "log", "-1", "--format=%P", saved.commit).split()
        assert parents == ([] if previous is None else [previous])
        changed = git(registry_path, "diff-tree", "-r", "--root", "--name-status", saved.commit)
        expected = {f"A\t{program_file(saved.program_id)}"}
        if previous is None:  # the registry's first commit
            expected |= {"A\tprogreg.json", "A\t.gitattributes"}
        assert set(changed.split("\n")[1:-1]) == expected
        previous = saved.commit
    assert_fsck_clean(registry_path)


def test_saved_at_is_utc_with_microseconds(storage: ProgramStorage, registry_path: Path) -> None:
    before = datetime.now(UTC)
    saved = save_realistic(storage, 1)
    after = datetime.now(UTC)
    assert saved.saved_at.tzinfo is not None
    assert saved.saved_at.utcoffset() == timedelta(0)
    assert before <= saved.saved_at <= after
    stored = json.loads(git(registry_path, "show", f"main:{program_file(saved.program_id)}"))
    assert SAVED_AT_RE.match(stored["saved_at"]), stored["saved_at"]
    assert datetime.fromisoformat(stored["saved_at"]) == saved.saved_at
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.saved_at == saved.saved_at
    assert loaded.saved_at.tzinfo is not None
    commit_time = int(git(registry_path, "log", "-1", "--format=%ct", saved.commit))
    assert commit_time == int(saved.saved_at.timestamp())


def test_commit_subject_and_trailers(storage: ProgramStorage, registry_path: Path) -> None:
    saved = [save_realistic(storage, i) for i in range(3)]
    subjects = git(registry_path, "log", "--format=%s").splitlines()
    assert len(subjects) == 3
    oneline = git(registry_path, "log", "--oneline").splitlines()
    for i, (record, subject, line) in enumerate(
        zip(saved, reversed(subjects), reversed(oneline), strict=True)
    ):
        score = workload.optimization_result(i)["best_score_value"]
        assert subject == (
            f"Save {workload.signature_of(i)} {record.program_id}:"
            f" {workload.optimizer_of(i)}, pass_rate={score!r}"
        )
        assert line.endswith(subject)
        found = trailers(registry_path, record.commit)
        assert found["Program-Id"] == record.program_id
        assert found["Signature"] == workload.signature_of(i)
        assert found["Optimizer"] == workload.optimizer_of(i)
        assert float(found["Score"]) == score
        assert found["Score-Name"] == "pass_rate"
    # Git's own trailer parser agrees (one value per key, per commit).
    keys = git(registry_path, "log", "--format=%(trailers:key=Program-Id,valueonly)").split()
    assert keys == [s.program_id for s in reversed(saved)]


def test_trailers_of_a_program_without_score_or_signature(
    storage: ProgramStorage, registry_path: Path
) -> None:
    saved = storage.save_program({"instructions": "Be brief."})
    assert saved.signature_class is None
    assert saved.best_score is None
    found = trailers(registry_path, saved.commit)
    assert found["Program-Id"] == saved.program_id
    assert found["Signature"] == "none"
    assert found["Optimizer"] == "none"
    assert found["Score"] == "none"
    assert found["Score-Name"] == "none"
    subject = git(registry_path, "log", "-1", "--format=%s").strip()
    assert saved.program_id in subject


def test_clone_gives_sharded_canonical_json_files(
    storage: ProgramStorage, registry_path: Path, tmp_path: Path
) -> None:
    saved = [save_realistic(storage, i, note="café ✓ 日本") for i in range(4)]
    saved.append(storage.save_program({"z": 1, "a": {"y": [], "b": {}}, "é": 1.5}))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(registry_path), str(clone))
    assert git(clone, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    files = sorted(git(clone, "ls-files").split())
    expected = sorted(
        [program_file(s.program_id) for s in saved] + ["progreg.json", ".gitattributes"]
    )
    assert files == expected
    for record in saved:
        path = clone / program_file(record.program_id)
        assert path.parent.name == record.program_id[2:4]
        assert path.parent.parent.name == record.program_id[:2]
        data = path.read_bytes()
        text = data.decode("utf-8")
        document = json.loads(text)
        canonical = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        assert data == canonical.encode("utf-8")
        assert text.endswith("}\n")
        assert not text.endswith("\n\n")
        assert "\r" not in text
        # the same bytes as the blob progreg committed
        assert git(registry_path, "show", f"main:{program_file(record.program_id)}") == text
        assert document["format_version"] == 1
        assert document["program_id"] == record.program_id
        assert document["program_data"]["state"] == record.state
        assert document["optimization_result"] == record.optimization_result
        assert document["metadata"] == record.metadata
    marker = (clone / "progreg.json").read_bytes()
    assert marker == b'{\n  "format_version": 1\n}\n'
    # demos are kept (the reference design silently dropped them)
    first = json.loads((clone / program_file(saved[0].program_id)).read_text())
    assert len(first["program_data"]["state"]["predict"]["demos"]) == 6
    assert "café ✓ 日本" in (clone / program_file(saved[0].program_id)).read_text("utf-8")


def test_load_round_trip(storage: ProgramStorage) -> None:
    saved = save_realistic(storage, 7, dataset={"train": 120, "dev": [1, 2.5, None, True]})
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.model_dump() == saved.model_dump()
    assert loaded.program == workload.program_state(7)
    assert loaded.program_type is None
    assert loaded.metadata["dataset"] == {"train": 120, "dev": [1, 2.5, None, True]}
    # a fresh ProgramStorage on the same path reads the same
    again = ProgramStorage(storage.path).load_program(saved.program_id)
    assert again is not None
    assert again.model_dump() == saved.model_dump()


def test_load_unknown_id_returns_none(storage: ProgramStorage) -> None:
    assert storage.load_program("0123456789abcdef") is None
    save_realistic(storage, 0)
    assert storage.load_program("0123456789abcdef") is None


def test_provenance_is_recorded_and_never_overwritten_on_load(
    storage: ProgramStorage, registry_path: Path
) -> None:
    saved = save_realistic(storage, 2, owner="team-a")
    assert saved.metadata["progreg_version"] == progreg.__version__
    assert saved.metadata["python_version"] == platform.python_version()
    assert saved.metadata["saved_with"] == "progreg"
    assert saved.metadata["owner"] == "team-a"
    assert saved.metadata["signature_class"] == workload.signature_of(2)
    # A document written by an older version keeps its provenance when loaded.
    path = program_file(saved.program_id)
    document = json.loads(git(registry_path, "show", f"main:{path}"))
    document["metadata"]["progreg_version"] = "0.0.1"
    document["metadata"]["python_version"] = "3.11.0"
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    commit_file(registry_path, path, data, "Edit provenance by hand")
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.metadata["progreg_version"] == "0.0.1"
    assert loaded.metadata["python_version"] == "3.11.0"
    assert [s.metadata["progreg_version"] for s in storage.list_programs()] == ["0.0.1"]


def test_list_programs(storage: ProgramStorage) -> None:
    assert storage.list_programs() == []
    saved = [save_realistic(storage, i) for i in range(6)]
    listed = storage.list_programs()
    assert all(isinstance(s, ProgramSummary) for s in listed)
    assert [s.program_id for s in listed] == [s.program_id for s in saved]
    for i, summary in enumerate(listed):
        result = workload.optimization_result(i)
        assert summary.saved_at == saved[i].saved_at
        assert summary.best_score == result["best_score_value"]
        assert summary.score_name == "pass_rate"
        assert summary.optimizer == workload.optimizer_of(i)
        assert summary.signature_class == workload.signature_of(i)
        assert summary.metadata == saved[i].metadata
        assert summary.model_dump()["program_id"] == saved[i].program_id


def test_get_history_order_and_summary(storage: ProgramStorage) -> None:
    empty = storage.get_history()
    assert isinstance(empty, ProgramHistory)
    assert empty.programs == []
    assert empty.summary.total_programs == 0
    assert empty.summary.avg_score is None
    assert empty.summary.latest_save is None

    first, second, third = (save_realistic(storage, i) for i in range(3))
    unscored = storage.save_program({"instructions": "no score yet"})
    resaved = storage.save_program(
        workload.program_state(10),
        workload.optimization_result(10),
        metadata={"signature_class": "ClassifyText"},
        program_id=first.program_id,
    )
    history = storage.get_history()
    order = [p.program_id for p in history.programs]
    assert order == [second.program_id, third.program_id, unscored.program_id, first.program_id]
    scores = [
        workload.optimization_result(1)["best_score_value"],
        workload.optimization_result(2)["best_score_value"],
        workload.optimization_result(10)["best_score_value"],
    ]
    assert history.summary.total_programs == 4
    assert history.summary.avg_score == pytest.approx(sum(scores) / 3)
    assert history.summary.latest_save == resaved.saved_at
    assert history.programs[-1].best_score == scores[-1]
    assert history.model_dump()["summary"]["total_programs"] == 4


def test_saving_under_an_existing_id_keeps_every_version(
    storage: ProgramStorage, registry_path: Path
) -> None:
    chosen = "00112233aabbccdd"
    v1 = storage.save_program({"instructions": "v1"}, {"best_score_value": 0.5}, None, chosen)
    v2 = storage.save_program({"instructions": "v2"}, {"best_score_value": 0.7}, None, chosen)
    assert v1.program_id == v2.program_id == chosen
    assert v1.commit != v2.commit
    loaded = storage.load_program(chosen)
    assert loaded is not None
    assert loaded.program == {"instructions": "v2"}
    assert loaded.commit == v2.commit
    assert len(storage.list_programs()) == 1
    log = git(registry_path, "log", "--format=%H", "--", program_file(chosen)).split()
    assert log == [v2.commit, v1.commit]
    old = json.loads(git(registry_path, "show", f"{v1.commit}:{program_file(chosen)}"))
    assert old["program_data"]["state"] == {"instructions": "v1"}


def test_delete_is_a_commit_removing_the_file(storage: ProgramStorage, registry_path: Path) -> None:
    keep = save_realistic(storage, 0)
    gone = save_realistic(storage, 1)
    original = git(registry_path, "show", f"main:{program_file(gone.program_id)}")
    before = commit_count(registry_path)

    assert storage.delete_program(gone.program_id) is True
    assert commit_count(registry_path) == before + 1
    delete_commit = head(registry_path)
    changed = git(registry_path, "diff-tree", "-r", "--name-status", "--format=", delete_commit)
    assert changed.split() == ["D", program_file(gone.program_id)]
    assert git(registry_path, "log", "-1", "--format=%s").startswith(
        f"Delete {workload.signature_of(1)} {gone.program_id}"
    )
    found = trailers(registry_path, delete_commit)
    assert found["Program-Id"] == gone.program_id
    assert found["Progreg-Action"] == "delete"
    assert git_status(registry_path, "cat-file", "-e", f"main:{program_file(gone.program_id)}")
    # history keeps the old version, byte for byte
    assert git(registry_path, "show", f"{gone.commit}:{program_file(gone.program_id)}") == (
        original
    )
    assert storage.load_program(gone.program_id) is None
    assert [s.program_id for s in storage.list_programs()] == [keep.program_id]
    assert [p.program_id for p in storage.get_history().programs] == [keep.program_id]
    # deleting again changes nothing
    assert storage.delete_program(gone.program_id) is False
    assert storage.delete_program("ffffffffffffffff") is False
    assert commit_count(registry_path) == before + 1
    assert_fsck_clean(registry_path)


def test_changes_made_with_plain_git_are_seen_by_an_open_storage(
    storage: ProgramStorage, registry_path: Path
) -> None:
    """Git is the truth: nothing cached in a ProgramStorage outlives a change to main."""
    a, b, c = (save_realistic(storage, i) for i in range(3))
    assert [p.program_id for p in storage.get_history().programs] == [
        a.program_id,
        b.program_id,
        c.program_id,
    ]
    # someone removes b with git
    commit_file(registry_path, program_file(b.program_id), None, "Remove b by hand")
    assert storage.load_program(b.program_id) is None
    assert [s.program_id for s in storage.list_programs()] == [a.program_id, c.program_id]
    assert [p.program_id for p in storage.get_history().programs] == [a.program_id, c.program_id]
    # someone rewinds main to before c was saved
    git(registry_path, "update-ref", "refs/heads/main", b.commit)
    assert storage.load_program(c.program_id) is None
    history = storage.get_history()
    assert [p.program_id for p in history.programs] == [a.program_id, b.program_id]
    loaded = storage.load_program(b.program_id)
    assert loaded is not None
    assert loaded.commit == b.commit
    # and saving continues from the rewound tip
    d = save_realistic(storage, 3)
    assert git(registry_path, "log", "-1", "--format=%P", d.commit).strip() == b.commit


def test_history_follows_the_log_even_when_clocks_disagree(
    storage: ProgramStorage, registry_path: Path
) -> None:
    first = save_realistic(storage, 0)
    second = save_realistic(storage, 1)
    # a later commit of `first` written by a machine whose clock is years behind
    path = program_file(first.program_id)
    document = json.loads(git(registry_path, "show", f"main:{path}"))
    document["saved_at"] = "2001-01-01T00:00:00.000001+00:00"
    commit_file(registry_path, path, (json.dumps(document, indent=2) + "\n").encode())
    history = storage.get_history()
    assert [p.program_id for p in history.programs] == [second.program_id, first.program_id]
    listed = storage.list_programs()  # list_programs is ordered by saved_at
    assert [s.program_id for s in listed] == [first.program_id, second.program_id]


def test_values_cannot_forge_trailers_or_subject_lines(
    storage: ProgramStorage, registry_path: Path
) -> None:
    forged = "0000000000000000"
    saved = storage.save_program(
        {"a": 1},
        {
            "best_score_value": 0.5,
            "best_score_name": f"acc\n\nProgram-Id: {forged}",
            "metadata": {"optimizer": "MIPROv2\nProgreg-Action: delete\n"},
        },
        {"signature_class": f"Classify\n\nProgram-Id: {forged}\n"},
    )
    assert git(registry_path, "log", "-1", "--format=%s").count("\n") == 1
    ids = git(registry_path, "log", "-1", "--format=%(trailers:key=Program-Id,valueonly)").split()
    assert ids == [saved.program_id]
    actions = git(registry_path, "log", "-1", "--format=%(trailers:key=Progreg-Action,valueonly)")
    assert actions.split() == ["save"]
    # the stored values themselves are kept exactly
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.signature_class == f"Classify\n\nProgram-Id: {forged}\n"
    assert [p.program_id for p in storage.get_history().programs] == [saved.program_id]
    assert storage.list_programs()[0].optimizer == "MIPROv2\nProgreg-Action: delete\n"


def test_deleting_the_last_program_leaves_a_valid_registry(
    storage: ProgramStorage, registry_path: Path, tmp_path: Path
) -> None:
    saved = save_realistic(storage, 0)
    assert storage.delete_program(saved.program_id)
    assert storage.list_programs() == []
    assert git(registry_path, "ls-tree", "-r", "--name-only", "main").split() == [
        ".gitattributes",
        "progreg.json",
    ]
    assert_fsck_clean(registry_path)
    reopened = ProgramStorage(registry_path)
    assert reopened.get_history().summary.total_programs == 0
    git(tmp_path, "clone", "-q", str(registry_path), str(tmp_path / "clone"))
    assert not (tmp_path / "clone" / "programs").exists()


def test_restore_brings_back_the_last_version(storage: ProgramStorage, registry_path: Path) -> None:
    chosen = "feedfacecafebeef"
    storage.save_program({"instructions": "v1"}, {"best_score_value": 0.1}, None, chosen)
    v2 = storage.save_program(
        {"instructions": "v2"},
        {"best_score_value": 0.9, "best_score_name": "f1", "metadata": {"optimizer": "GEPA"}},
        {"signature_class": "RouteIntent"},
        chosen,
    )
    last_blob = git(registry_path, "rev-parse", f"{v2.commit}:{program_file(chosen)}").strip()
    assert storage.delete_program(chosen)
    count = commit_count(registry_path)

    restored = storage.restore_program(chosen)
    assert commit_count(registry_path) == count + 1
    assert restored.commit == head(registry_path)
    assert restored.program == {"instructions": "v2"}
    assert restored.saved_at == v2.saved_at
    assert restored.optimization_result == v2.optimization_result
    blob = git(registry_path, "rev-parse", f"main:{program_file(chosen)}").strip()
    assert blob == last_blob
    assert git(registry_path, "log", "-1", "--format=%s").startswith("Restore RouteIntent")
    found = trailers(registry_path, restored.commit)
    assert found["Program-Id"] == chosen
    assert found["Score"] == "0.9"
    assert found["Optimizer"] == "GEPA"
    loaded = storage.load_program(chosen)
    assert loaded is not None
    assert loaded.program == {"instructions": "v2"}
    assert loaded.commit == restored.commit
    # restoring a program that is present changes nothing
    again = storage.restore_program(chosen)
    assert commit_count(registry_path) == count + 1
    assert again.program == {"instructions": "v2"}
    assert again.commit == restored.commit
    assert_fsck_clean(registry_path)


# -- signature_class -------------------------------------------------------------------


def test_signature_class_from_metadata_wins(storage: ProgramStorage) -> None:
    saved = storage.save_program(optimized_module(), None, {"signature_class": "Explicit"})
    assert saved.signature_class == "Explicit"
    assert saved.metadata["signature_class"] == "Explicit"


def test_signature_class_from_a_dspy_like_program(
    storage: ProgramStorage, registry_path: Path
) -> None:
    module = storage.save_program(optimized_module(), workload.optimization_result(0))
    assert module.signature_class == "ClassifyText"
    predictor = storage.save_program(FakePredict())
    assert predictor.signature_class == "ClassifyText"
    assert trailers(registry_path, module.commit)["Signature"] == "ClassifyText"
    listed = {s.program_id: s.signature_class for s in storage.list_programs()}
    assert listed == {module.program_id: "ClassifyText", predictor.program_id: "ClassifyText"}


def test_signature_class_is_null_when_unknown(storage: ProgramStorage, registry_path: Path) -> None:
    saved = storage.save_program(DictProgram("x", []), metadata={"signature_class": None})
    assert saved.signature_class is None
    assert "signature_class" not in saved.metadata or saved.metadata["signature_class"] is None
    stored = json.loads(git(registry_path, "show", f"main:{program_file(saved.program_id)}"))
    assert stored["metadata"].get("signature_class") is None
    assert storage.list_programs()[0].signature_class is None


# -- program kinds and loading them back -------------------------------------------------


def test_dict_program(storage: ProgramStorage) -> None:
    state = workload.program_state(3)
    saved = storage.save_program(state, workload.optimization_result(3))
    assert saved.program_type is None
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.program == state
    assert loaded.state == state


def test_dump_state_program_loads_into_an_instance_or_a_class(storage: ProgramStorage) -> None:
    module = optimized_module()
    saved = storage.save_program(module, workload.optimization_result(1))
    assert saved.program is module
    assert saved.state == module.dump_state()
    assert saved.program_type == f"{__name__}.FakeChainOfThought"

    plain = storage.load_program(saved.program_id)
    assert plain is not None
    assert plain.program == module.dump_state()  # no type registered: the state dict

    target = FakeChainOfThought()
    into_instance = storage.load_program(saved.program_id, into=target)
    assert into_instance is not None
    assert into_instance.program is target
    assert target.dump_state() == module.dump_state()

    into_class = storage.load_program(saved.program_id, into=FakeChainOfThought)
    assert into_class is not None
    assert isinstance(into_class.program, FakeChainOfThought)
    assert into_class.program.dump_state() == module.dump_state()


def test_pydantic_program(storage: ProgramStorage) -> None:
    program = PromptProgram(instructions="Answer briefly.", demos=[{"q": "2+2", "a": "4"}])
    saved = storage.save_program(program, workload.optimization_result(2))
    assert saved.state == program.model_dump(mode="json")
    assert saved.program_type == f"{__name__}.PromptProgram"
    as_dict = storage.load_program(saved.program_id)
    assert as_dict is not None
    assert as_dict.program == program.model_dump()
    into_class = storage.load_program(saved.program_id, into=PromptProgram)
    assert into_class is not None
    assert into_class.program == program

    storage.register_type(PromptProgram)
    registered = storage.load_program(saved.program_id)
    assert registered is not None
    assert registered.program == program
    assert isinstance(registered.program, PromptProgram)
    # registrations belong to one ProgramStorage
    other = ProgramStorage(storage.path).load_program(saved.program_id)
    assert other is not None
    assert other.program == program.model_dump()


def test_to_dict_program(storage: ProgramStorage) -> None:
    program = DictProgram("Route the ticket.", ["billing", "shipping"])
    saved = storage.save_program(program, workload.optimization_result(4))
    assert saved.state == {"instructions": "Route the ticket.", "demos": ["billing", "shipping"]}
    into_class = storage.load_program(saved.program_id, into=DictProgram)
    assert into_class is not None
    assert into_class.program == program

    storage.register_type(DictProgram)
    registered = storage.load_program(saved.program_id)
    assert registered is not None
    assert registered.program == program


def test_register_type_with_name_and_factory(storage: ProgramStorage) -> None:
    saved = storage.save_program(optimized_module())
    built: list[dict[str, Any]] = []

    def factory(state: dict[str, Any]) -> FakeChainOfThought:
        built.append(state)
        return FakeChainOfThought().load_state(state)

    storage.register_type(FakeChainOfThought, name=saved.program_type, factory=factory)
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert isinstance(loaded.program, FakeChainOfThought)
    assert built == [saved.state]
    storage.register_type(FakeChainOfThought)  # default: cls() then load_state
    default = storage.load_program(saved.program_id)
    assert default is not None
    assert isinstance(default.program, FakeChainOfThought)
    assert default.program.predict.demos == optimized_module().predict.demos


def test_stored_class_names_are_never_imported(
    storage: ProgramStorage, registry_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    marker = tmp_path / "imported"
    (module_dir / "progreg_test_evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Evil:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(module_dir))
    saved = storage.save_program({"instructions": "x"})
    path = program_file(saved.program_id)
    document = json.loads(git(registry_path, "show", f"main:{path}"))
    document["program_data"]["class_name"] = "progreg_test_evil.Evil"
    commit_file(registry_path, path, (json.dumps(document, indent=2) + "\n").encode())
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.program == {"instructions": "x"}
    assert loaded.program_type == "progreg_test_evil.Evil"
    assert not marker.exists()
    assert "progreg_test_evil" not in sys.modules


# -- optimization results ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dict", "pydantic", "to_dict", "to_h", "attributes"])
def test_optimization_result_kinds(storage: ProgramStorage, kind: str) -> None:
    data = workload.optimization_result(5)
    result: object
    if kind == "dict":
        result = {**data, "optimized_program": optimized_module()}
    elif kind == "pydantic":
        result = PydanticResult(optimized_program=optimized_module(), **data)
    elif kind == "to_dict":
        result = ToDictResult(data)
    elif kind == "to_h":
        result = ToHResult(data)
    else:
        result = type("Result", (), dict(data))()
    saved = storage.save_program(optimized_module(), result)
    assert saved.optimization_result == data  # the program object is not part of it
    summary = storage.list_programs()[0]
    assert summary.best_score == data["best_score_value"]
    assert summary.score_name == "pass_rate"
    assert summary.optimizer == workload.optimizer_of(5)
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None
    assert loaded.optimization_result == data
    assert loaded.optimization_result["scores"] == data["scores"]
    assert loaded.optimization_result["history"] == data["history"]


# -- author and committer ------------------------------------------------------------------


def identities(registry: Path) -> list[str]:
    return git(registry, "log", "-1", "--format=%an%n%ae%n%cn%n%ce").splitlines()


def test_identity_from_arguments(registry_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Env Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "env@example.com")
    storage = ProgramStorage(
        registry_path,
        author="Ada Lovelace <ada@example.com>",
        committer="Release Bot <bot@example.com>",
    )
    save_realistic(storage, 0)
    assert identities(registry_path) == [
        "Ada Lovelace",
        "ada@example.com",
        "Release Bot",
        "bot@example.com",
    ]
    storage.delete_program(storage.list_programs()[0].program_id)
    assert identities(registry_path)[0] == "Ada Lovelace"


def test_identity_from_environment(registry_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Grace Hopper")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "grace@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "CI")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "ci@example.com")
    save_realistic(ProgramStorage(registry_path), 0)
    assert identities(registry_path) == [
        "Grace Hopper",
        "grace@example.com",
        "CI",
        "ci@example.com",
    ]


def test_identity_from_git_config(registry_path: Path, isolated_git_config: Path) -> None:
    isolated_git_config.write_text("[user]\n\tname = Config User\n\temail = config@example.com\n")
    save_realistic(ProgramStorage(registry_path), 0)
    assert identities(registry_path) == [
        "Config User",
        "config@example.com",
        "Config User",
        "config@example.com",
    ]
    git(registry_path, "config", "user.name", "Repo User")
    save_realistic(ProgramStorage(registry_path), 1)
    assert identities(registry_path)[0] == "Repo User"


def test_identity_default(storage: ProgramStorage, registry_path: Path) -> None:
    save_realistic(storage, 0)
    assert identities(registry_path) == [
        "progreg",
        "progreg@localhost",
        "progreg",
        "progreg@localhost",
    ]


# -- events ------------------------------------------------------------------------------


@pytest.fixture
def events() -> Iterator[list[progreg.Event]]:
    seen: list[progreg.Event] = []
    unsubscribe = progreg.subscribe(seen.append)
    try:
        yield seen
    finally:
        unsubscribe()


def by_name(seen: list[progreg.Event], name: str) -> list[progreg.Event]:
    return [e for e in seen if e.name == f"progreg.storage.{name}"]


def test_save_and_load_events(
    storage: ProgramStorage, events: list[progreg.Event], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="progreg.events")
    saved = save_realistic(storage, 0)
    [start] = by_name(events, "save_start")
    [complete] = by_name(events, "save_complete")
    assert start.fields["program_id"] == saved.program_id
    assert complete.fields["program_id"] == saved.program_id
    assert complete.fields["commit"] == saved.commit
    size = len(git(storage.path, "show", f"main:{program_file(saved.program_id)}").encode())
    assert complete.fields["size_bytes"] == size
    assert complete.fields["duration_ms"] >= 0
    assert not complete.is_error

    storage.load_program(saved.program_id)
    storage.load_program("0000000000000000")
    loads = by_name(events, "load_complete")
    assert [e.fields["program_id"] for e in by_name(events, "load_start")] == [
        saved.program_id,
        "0000000000000000",
    ]
    assert [(e.fields["program_id"], e.fields["found"]) for e in loads] == [
        (saved.program_id, True),
        ("0000000000000000", False),
    ]
    assert loads[0].fields["size_bytes"] == size

    records = [r for r in caplog.records if getattr(r, "event", "").startswith("progreg.storage")]
    names = [(r.event, r.program_id) for r in records]  # type: ignore[attr-defined]
    assert names == [
        ("progreg.storage.save_start", saved.program_id),
        ("progreg.storage.save_complete", saved.program_id),
        ("progreg.storage.load_start", saved.program_id),
        ("progreg.storage.load_complete", saved.program_id),
        ("progreg.storage.load_start", "0000000000000000"),
        ("progreg.storage.load_complete", "0000000000000000"),
    ]
    assert all(r.levelno == logging.INFO for r in records)
    assert records[1].size_bytes == size  # type: ignore[attr-defined]
    assert records[1].name == "progreg.events"


def test_delete_events(
    storage: ProgramStorage, events: list[progreg.Event], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="progreg.events")
    saved = save_realistic(storage, 0)
    events.clear()
    caplog.clear()
    assert storage.delete_program(saved.program_id)
    assert storage.delete_program(saved.program_id) is False
    starts = by_name(events, "delete_start")
    completes = by_name(events, "delete_complete")
    assert [e.fields["program_id"] for e in starts] == [saved.program_id] * 2
    assert [(e.fields["program_id"], e.fields["deleted"]) for e in completes] == [
        (saved.program_id, True),
        (saved.program_id, False),
    ]
    assert completes[0].fields["commit"] == head(storage.path)
    assert completes[0].fields["duration_ms"] >= 0
    logged = [
        (r.event, r.program_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event", "").startswith("progreg.storage.delete")
    ]
    assert (
        logged
        == [
            ("progreg.storage.delete_start", saved.program_id),
            ("progreg.storage.delete_complete", saved.program_id),
        ]
        * 2
    )


def test_error_events(
    storage: ProgramStorage,
    registry_path: Path,
    events: list[progreg.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="progreg.events")
    with pytest.raises(progreg.NotJSONError):
        storage.save_program({"score": float("nan")}, program_id="0123456789abcdef")
    [save_error] = by_name(events, "save_error")
    assert save_error.is_error
    assert save_error.fields["program_id"] == "0123456789abcdef"
    assert save_error.fields["error_type"] == "NotJSONError"
    assert "nan" in save_error.fields["error"]
    assert not by_name(events, "save_complete")

    saved = storage.save_program({"instructions": "x"})
    commit_file(registry_path, program_file(saved.program_id), b"{not json\n")
    with pytest.raises(progreg.CorruptProgramError):
        storage.load_program(saved.program_id)
    [load_error] = by_name(events, "load_error")
    assert load_error.fields["program_id"] == saved.program_id
    assert load_error.fields["error_type"] == "CorruptProgramError"

    storage.registry.git.path.joinpath("refs", "heads", "main.lock").write_text("")
    busy = ProgramStorage(registry_path, lock_timeout=0.2)
    with pytest.raises(progreg.RegistryBusyError):
        busy.delete_program(saved.program_id)
    [delete_error] = by_name(events, "delete_error")
    assert delete_error.fields["program_id"] == saved.program_id
    assert delete_error.fields["error_type"] == "RegistryBusyError"

    errors = {
        (r.event, r.program_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.levelno == logging.ERROR and hasattr(r, "event")
    }
    assert errors == {
        ("progreg.storage.save_error", "0123456789abcdef"),
        ("progreg.storage.load_error", saved.program_id),
        ("progreg.storage.delete_error", saved.program_id),
    }


def test_a_failing_subscriber_never_breaks_an_operation(storage: ProgramStorage) -> None:
    def broken(event: progreg.Event) -> None:
        raise RuntimeError("subscriber bug")

    unsubscribe = progreg.subscribe(broken)
    try:
        saved = save_realistic(storage, 0)
        assert storage.load_program(saved.program_id) is not None
    finally:
        unsubscribe()


def test_a_refused_secret_names_only_programs_that_exist(storage: ProgramStorage) -> None:
    """A new program's refusal does not name the id it would have had; a new version's does."""
    program = {"lm": {"api_key": "sk-proj-" + "a1B2c3D4e5" * 5}}
    with pytest.raises(SecretDetectedError) as new:
        storage.save_program(program)
    assert "the program to save: state.lm.api_key" in str(new.value)
    assert new.value.found.startswith("state.lm.api_key (")
    saved = storage.save_program({"lm": {}})
    with pytest.raises(SecretDetectedError) as version:
        storage.save_program(program, program_id=saved.program_id)
    assert f"program {saved.program_id}: state.lm.api_key" in str(version.value)


# -- the public log, versions, tags and gc -----------------------------------------


def test_log_has_one_entry_per_commit_of_main_as_git_log_lists_them(
    storage: ProgramStorage, registry_path: Path
) -> None:
    assert storage.log() == []
    a = save_realistic(storage, 0)
    b = save_realistic(storage, 1)
    batch = storage.save_programs([(workload.program_state(2), None, None)])
    storage.delete_program(a.program_id)
    storage.restore_program(a.program_id)
    by_hand = commit_file(registry_path, "notes.txt", b"by hand\n", "Add notes by hand")

    entries = storage.log()
    assert all(isinstance(entry, LogEntry) for entry in entries)
    assert [e.commit for e in entries] == git(registry_path, "log", "--format=%H").split()
    assert [e.action for e in entries] == [
        "commit",
        "restore",
        "delete",
        "save-batch",
        "save",
        "save",
    ]
    assert [e.program_id for e in entries] == [
        None,
        a.program_id,
        a.program_id,
        None,
        b.program_id,
        a.program_id,
    ]
    assert entries[0].commit == by_hand
    assert (entries[0].subject, entries[0].author) == ("Add notes by hand", "Git CLI")
    assert entries[3].commit == batch[0].commit
    saved_b = entries[4]
    assert saved_b.date == b.saved_at  # a save's date is its saved_at, to the microsecond
    assert (saved_b.score, saved_b.score_name) == (b.best_score, "pass_rate")
    assert (saved_b.signature_class, saved_b.optimizer) == (b.signature_class, b.optimizer)
    assert saved_b.subject == git(registry_path, "log", "-1", "--format=%s", b.commit).strip()
    committed = git(registry_path, "log", "--format=%ct").split()
    assert [int(e.committed_at.timestamp()) for e in entries] == [int(t) for t in committed]
    assert storage.log(limit=2) == entries[:2]
    assert storage.log(limit=0) == []
    assert storage.log(limit=100) == entries


@pytest.mark.parametrize("limit", [-1, True, 1.5, "3"])
def test_log_and_versions_refuse_a_limit_that_is_not_a_count(
    storage: ProgramStorage, limit: Any
) -> None:
    saved = save_realistic(storage, 0)
    with pytest.raises(InvalidInputError, match="limit must be None or a whole number"):
        storage.log(limit)
    with pytest.raises(InvalidInputError, match="limit must be None or a whole number"):
        storage.versions(saved.program_id, limit)
    with pytest.raises(InvalidProgramIdError):
        storage.versions("../etc/passwd")


def test_versions_are_the_first_parent_commits_that_wrote_the_program(
    storage: ProgramStorage, registry_path: Path
) -> None:
    first = save_realistic(storage, 0)
    other = save_realistic(storage, 1)
    second = storage.save_program(
        workload.program_state(5), workload.optimization_result(5), program_id=first.program_id
    )
    storage.delete_program(first.program_id)
    assert storage.load_program(first.program_id) is None
    removed = storage.versions(first.program_id)
    assert [v.commit for v in removed] == [second.commit, first.commit]
    assert [v.state for v in removed] == [second.state, first.state]
    assert removed[1] == first.model_copy(update={"program": first.state})
    restored = storage.restore_program(first.program_id)
    versions = storage.versions(first.program_id)
    assert [v.commit for v in versions] == [restored.commit, second.commit, first.commit]
    wrote = git(
        registry_path, "log", "--first-parent", "--format=%H", "--", program_file(first.program_id)
    ).split()
    deleted = git(registry_path, "log", "-1", "--format=%H", "--diff-filter=D").strip()
    assert [c for c in wrote if c != deleted] == [v.commit for v in versions]
    assert storage.versions(first.program_id, limit=1) == versions[:1]
    assert storage.versions(first.program_id, limit=0) == []
    assert [v.commit for v in storage.versions(other.program_id)] == [other.commit]
    assert storage.versions("fedcba9876543210") == []


def test_program_ids_tags_and_checkpoint_names_are_what_the_refs_say(
    storage: ProgramStorage, registry_path: Path
) -> None:
    a = storage.save_program(workload.program_state(0), tags=["production", "baseline"])
    b = storage.save_program(workload.program_state(1), tags=["baseline"])
    c = save_realistic(storage, 2)
    storage.delete_program(b.program_id)
    assert storage.program_ids() == [a.program_id, c.program_id]
    assert storage.tags_of(a.program_id) == ["baseline", "production"]
    assert storage.tags_of(b.program_id) == ["baseline"]  # a removed program keeps its tags
    assert storage.tags_of(c.program_id) == []
    assert storage.all_tags() == {
        a.program_id: ["baseline", "production"],
        b.program_id: ["baseline"],
    }
    refs = git(registry_path, "for-each-ref", "--format=%(refname:short)", "refs/tags/").split()
    assert sorted(f"{tag}/{pid}" for pid, tags in storage.all_tags().items() for tag in tags) == (
        sorted(refs)
    )
    with pytest.raises(InvalidProgramIdError):
        storage.tags_of("not-an-id")
    assert storage.checkpoint_names() == []
    manager = StorageManager(storage=storage)
    result = OptimizationResult(optimized_program=workload.program_state(3))
    manager.create_checkpoint(result, "run-b")
    manager.create_checkpoint(result, "run-a")
    manager.create_checkpoint(result, "run-b")
    assert storage.checkpoint_names() == ["run-a", "run-b"]
    branches = git(registry_path, "for-each-ref", "--format=%(refname)", "refs/heads/checkpoints/")
    assert [ref.removeprefix("refs/heads/checkpoints/") for ref in branches.split()] == [
        "run-a",
        "run-b",
    ]


def test_gc_returns_a_model_of_what_it_did(storage: ProgramStorage, registry_path: Path) -> None:
    for i in range(3):
        save_realistic(storage, i)
    git(registry_path, "tag", "-a", "-m", "by hand", "by-hand", "main", env=CLI_IDENTITY)
    report = storage.gc()
    assert isinstance(report, GcReport) and isinstance(report, BaseModel)
    assert report.objects_packed == report.loose_removed == 1  # the tag object git wrote
    assert report.packs_after == 1
    counts = dict(
        line.split(": ") for line in git(registry_path, "count-objects", "-v").splitlines()
    )
    assert (counts["count"], counts["packs"]) == ("0", "1")
    assert set(report.model_dump(mode="json")) == {
        "objects_packed",
        "loose_removed",
        "packs_before",
        "packs_after",
        "packs_consolidated",
        "size_before",
        "size_after",
        "seconds",
        "pack",
    }
    with pytest.raises(ValidationError):
        report.objects_packed = 0
