"""Real DSPy programs in a registry: save, load into fresh modules, share; secrets never stored.

Everything here uses the real ``dspy`` package (the ``dspy`` extra, installed by
the test command) with no network and no LM call: programs get their
instructions and demos by hand or from ``dspy.LabeledFewShot``, and are
evaluated by ``dspy.Evaluate`` on modules whose ``forward`` calls no LM.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest

from support.gitcli import assert_fsck_clean, registry_state

pytest.importorskip("dspy", reason="the dspy extra is not installed")

import dspy

from progreg import (
    InvalidInputError,
    NotJSONError,
    OptimizationResult,
    ProgramStorage,
    StorageConfig,
    StorageManager,
    UnsupportedProgramError,
)
from progreg.core.dspy import (
    REDACTED,
    DSPyProgram,
    SecretDetectedError,
    dump_module_state,
    evaluation_score_of,
    find_secrets,
    is_dspy_module,
    load_program,
    optimization_result_from,
    program_state,
    redact_secrets,
    secret_key_reason,
    signature_class,
    signature_names,
)

#: A key in the format of an OpenAI project key; it must never reach a registry.
API_KEY = "sk-proj-TESTKEY0123456789abcdefghijklmnopqrstuv"


class AnswerQuestion(dspy.Signature):
    """Answer the trivia question with a short fact."""

    question: str = dspy.InputField(desc="a trivia question")
    answer: str = dspy.OutputField(desc="a few words")


class SummarizeAnswer(dspy.Signature):
    """Turn an answer into one friendly sentence."""

    answer: str = dspy.InputField()
    sentence: str = dspy.OutputField(desc="one sentence")


class AnswerThenSummarize(dspy.Module):
    """A module nesting two predictors: a ChainOfThought and a Predict."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = dspy.ChainOfThought(AnswerQuestion)
        self.summarize = dspy.Predict(SummarizeAnswer)

    def forward(self, question: str) -> Any:
        answer = self.answer(question=question).answer
        return self.summarize(answer=answer)


class LookupQA(dspy.Module):
    """Answers from a table: a real module whose forward() calls no LM (for dspy.Evaluate)."""

    TABLE: ClassVar[dict[str, str]] = {
        "Capital of France?": "Paris",
        "2 + 2?": "4",
        "Largest planet?": "Jupiter",
    }

    def __init__(self) -> None:
        super().__init__()
        self.generate = dspy.ChainOfThought(AnswerQuestion)

    def forward(self, question: str) -> Any:
        return dspy.Prediction(answer=self.TABLE.get(question, "unknown"))


class LegacyStateLM(dspy.LM):
    """An LM whose state is shaped as DSPy 3.0 saved it: no class marker, ``api_key`` included."""

    def dump_state(self) -> dict[str, Any]:
        state = dict(super().dump_state())
        state.pop("_dspy_lm_class", None)
        state["api_key"] = API_KEY
        return state


def examples() -> list[Any]:
    """Labeled examples, with ``question`` as the input."""
    pairs = [("Capital of France?", "Paris"), ("2 + 2?", "4"), ("Largest planet?", "Jupiter")]
    return [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in pairs]


def predict_with_demos() -> Any:
    """A Predict over a custom Signature, with new instructions, demos and an LM (no key)."""
    program = dspy.Predict(AnswerQuestion)
    program.signature = program.signature.with_instructions("Answer in at most three words.")
    program.demos = examples()[:2]
    program.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.2, max_tokens=64)
    return program


def cot_with_demos() -> Any:
    """A ChainOfThought over a custom Signature, with instructions and demos with reasoning."""
    program = dspy.ChainOfThought(AnswerQuestion)
    program.predict.signature = program.predict.signature.with_instructions(
        "Think step by step, then answer with a short fact."
    )
    program.predict.demos = [
        dspy.Example(
            question="Capital of France?", reasoning="France's capital is Paris.", answer="Paris"
        ).with_inputs("question"),
        dspy.Example(question="2 + 2?", reasoning="Two plus two is four.", answer="4").with_inputs(
            "question"
        ),
    ]
    return program


def nested_with_demos() -> Any:
    """The two-predictor module, with demos and instructions on both predictors."""
    program = AnswerThenSummarize()
    program.answer.predict.demos = [
        dspy.Example(question="2 + 2?", reasoning="Add.", answer="4").with_inputs("question")
    ]
    program.summarize.signature = program.summarize.signature.with_instructions(
        "Write one cheerful sentence."
    )
    program.summarize.demos = [
        dspy.Example(answer="4", sentence="The answer is four!").with_inputs("answer")
    ]
    return program


def repository_bytes(registry: Path) -> bytes:
    """Every object of the repository, decompressed, plus every plain file in it."""
    objects = subprocess.run(
        ["git", "-C", str(registry), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    files = b"".join(path.read_bytes() for path in sorted(registry.rglob("*")) if path.is_file())
    return objects + files


# -- detection and import ------------------------------------------------------------------


def test_progreg_imports_and_works_without_dspy(tmp_path: Path) -> None:
    code = f"""
import sys
sys.modules["dspy"] = None  # "import dspy" now fails, as without the package
import progreg
from progreg import ProgramStorage
from progreg.core import dspy as dspy_adapter
assert not dspy_adapter.is_dspy_module(object())
storage = ProgramStorage({str(tmp_path / "registry")!r})
saved = storage.save_program({{"predict": {{"demos": []}}}})
assert storage.load_program(saved.program_id).state == {{"predict": {{"demos": []}}}}
"""
    subprocess.run([sys.executable, "-c", code], check=True)
    untouched = "import sys, progreg.core.programs, progreg.core.dspy; print('dspy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", untouched], capture_output=True, check=True)
    assert out.stdout.strip() == b"False"  # progreg never imports DSPy itself


def test_dspy_modules_are_detected() -> None:
    assert is_dspy_module(dspy.Predict("question -> answer"))
    assert is_dspy_module(dspy.ChainOfThought(AnswerQuestion))
    assert is_dspy_module(AnswerThenSummarize())
    assert not is_dspy_module({"predict": {}})
    assert not is_dspy_module(dspy.Example(question="q"))
    with pytest.raises(UnsupportedProgramError, match=r"DSPyProgram wraps a dspy\.Module"):
        DSPyProgram({"not": "a module"})


# -- save and load: Predict, ChainOfThought, nested modules ---------------------------------


@pytest.mark.parametrize(
    ("build", "fresh", "program_type"),
    [
        (predict_with_demos, lambda: dspy.Predict(AnswerQuestion), "dspy.predict.predict.Predict"),
        (
            cot_with_demos,
            lambda: dspy.ChainOfThought(AnswerQuestion),
            "dspy.predict.chain_of_thought.ChainOfThought",
        ),
        (nested_with_demos, AnswerThenSummarize, f"{__name__}.AnswerThenSummarize"),
    ],
    ids=["Predict", "ChainOfThought", "nested"],
)
def test_a_program_survives_save_and_load_into_a_fresh_module(
    storage: ProgramStorage, build: Any, fresh: Any, program_type: str
) -> None:
    program = build()
    before = program.dump_state()
    saved = storage.save_program(
        program,
        {"best_score_value": 0.8, "best_score_name": "em"},
        {"signature_class": "AnswerQuestion"},  # new instructions: DSPy dropped the class name
    )
    assert saved.program_type == program_type
    assert saved.signature_class == "AnswerQuestion"
    versions = saved.state["metadata"]["dependency_versions"]
    assert versions["dspy"] == dspy.__version__
    assert versions["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert {k: v for k, v in saved.state.items() if k != "metadata"} == json.loads(
        json.dumps(before)
    )

    target = fresh()
    loaded = storage.load_program(saved.program_id, into=target)
    assert loaded is not None and loaded.program is target
    assert target.dump_state() == before
    assert loaded.signature_class == "AnswerQuestion"
    assert loaded.program_type == program_type
    # load_program() with a SavedProgram gives the same module, and shares nothing with it.
    again = load_program(loaded, fresh())
    assert again.dump_state() == before
    if isinstance(again, dspy.Predict):
        again.demos.append({"question": "x", "answer": "y"})
        assert len(loaded.state["demos"]) == 2


def test_the_stored_state_is_what_dspy_save_writes(storage: ProgramStorage, tmp_path: Path) -> None:
    program = cot_with_demos()
    saved = storage.save_program(program)
    path = tmp_path / "program.json"
    program.save(str(path))
    assert saved.state == json.loads(path.read_bytes())
    # ...so DSPy's own loader reads a program exported from the registry.
    exported = tmp_path / "exported.json"
    exported.write_text(json.dumps(saved.state))
    target = dspy.ChainOfThought(AnswerQuestion)
    target.load(str(exported))
    assert target.dump_state() == program.dump_state()


def test_nested_module_records_every_predictor_signature() -> None:
    program = nested_with_demos()
    name, state, info = program_state(program)
    assert name == f"{__name__}.AnswerThenSummarize"
    assert info.program_type == name
    assert info.signatures == {
        "answer.predict": "AnswerQuestion",  # ChainOfThought(AnswerQuestion), as the class wrote it
        "summarize": None,  # new instructions: no name is guessed
    }
    assert info.signature_class == "AnswerQuestion"  # the first predictor's
    assert info.dependency_versions["dspy"] == dspy.__version__
    assert info.redacted == []
    assert set(state) == {"answer.predict", "summarize", "metadata"}


def test_a_loaded_module_keeps_the_signature_name_of_its_program(
    storage: ProgramStorage,
) -> None:
    # DSPy rebuilds a loaded predictor's signature as a "StringSignature": the
    # module remembers the name of the program it was loaded from.
    first = storage.save_program(
        predict_with_demos(), metadata={"signature_class": "AnswerQuestion"}
    )
    fresh = dspy.Predict(AnswerQuestion)
    storage.load_program(first.program_id, into=fresh)
    assert fresh.signature.__name__ == "StringSignature"
    assert signature_names(fresh) == {"self": None}  # its own signature says nothing
    assert signature_class(DSPyProgram(fresh)) == "AnswerQuestion"
    second = storage.save_program(fresh)
    assert second.signature_class == "AnswerQuestion"
    # So does one loaded through load_program(saved, module).
    other = load_program(first, dspy.Predict(AnswerQuestion))
    assert storage.save_program(other).signature_class == "AnswerQuestion"
    # A module loaded nothing into is named by its own signatures only.
    assert storage.save_program(predict_with_demos()).signature_class is None


def test_a_name_is_never_taken_from_another_class_with_the_same_fields(
    storage: ProgramStorage,
) -> None:
    class OrderUrgency(dspy.Signature):
        order_note: str = dspy.InputField()
        urgency: str = dspy.OutputField()

    class RateUrgency(dspy.Signature):
        """Rate how urgent an order note is."""

        order_note: str = dspy.InputField()
        urgency: str = dspy.OutputField()

    for program in (
        dspy.Predict("order_note -> urgency"),
        dspy.ChainOfThought("order_note -> urgency"),
        dspy.ChainOfThought(OrderUrgency),  # no docstring: DSPy's default instructions
    ):
        assert storage.save_program(program).signature_class is None
    assert storage.save_program(dspy.Predict(OrderUrgency)).signature_class == "OrderUrgency"
    assert storage.save_program(dspy.ChainOfThought(RateUrgency)).signature_class == "RateUrgency"
    best = StorageManager(storage=storage).get_best_program("OrderUrgency")
    assert best is None  # nothing was scored; above all, no string signature is found by it


def test_string_signatures_have_no_signature_class(storage: ProgramStorage) -> None:
    saved = storage.save_program(dspy.ChainOfThought("context, question -> answer"))
    assert saved.signature_class is None
    # The caller can still name it.
    named = storage.save_program(
        dspy.Predict("context, question -> answer"), metadata={"signature_class": "RAG"}
    )
    assert named.signature_class == "RAG"


def test_ambiguous_signature_fields_give_no_name() -> None:
    class AskA(dspy.Signature):
        """One task."""

        topic: str = dspy.InputField()
        verdict: str = dspy.OutputField()

    class AskB(dspy.Signature):
        """Another task."""

        topic: str = dspy.InputField()
        verdict: str = dspy.OutputField()

    cot = dspy.ChainOfThought(AskA)
    assert signature_names(cot) == {"predict": "AskA"}  # the instructions decide
    cot.predict.signature = cot.predict.signature.with_instructions("Something new.")
    assert signature_names(cot) == {"predict": None}  # two candidates, no way to tell
    assert signature_names(dspy.Predict(AskB)) == {"self": "AskB"}  # the class itself


def test_a_module_holding_a_retriever_is_saved(storage: ProgramStorage) -> None:
    # dspy.Retrieve.dump_state() takes no json_mode, which makes Module.dump_state() fail.
    class RAG(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.retrieve = dspy.Retrieve(k=4)
            self.generate = dspy.ChainOfThought(AnswerQuestion)

    program = RAG()
    program.generate.predict.demos = examples()[:1]
    state = dump_module_state(program)
    assert state["retrieve"] == {"k": 4}
    saved = storage.save_program(program)
    fresh = RAG()
    storage.load_program(saved.program_id, into=fresh)
    assert fresh.retrieve.k == 4
    assert dump_module_state(fresh) == state


def test_dump_state_without_json_mode_is_called_plainly(storage: ProgramStorage) -> None:
    class OldStyle(dspy.Module):
        """A module whose dump_state() takes no argument, as older DSPy code had."""

        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict(AnswerQuestion)

        def dump_state(self) -> dict[str, Any]:
            return {"predict": self.predict.dump_state()}

    saved = storage.save_program(OldStyle())
    assert set(saved.state) == {"predict", "metadata"}
    assert saved.signature_class == "AnswerQuestion"


def test_a_predictor_named_metadata_is_left_alone(storage: ProgramStorage) -> None:
    class Tagger(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.metadata = dspy.Predict(AnswerQuestion)

    program = Tagger()
    program.metadata.demos = examples()[:1]
    saved = storage.save_program(program)
    assert set(saved.state) == {"metadata"}
    assert saved.state["metadata"]["demos"] == [
        {"question": "Capital of France?", "answer": "Paris"}
    ]
    fresh = Tagger()
    storage.load_program(saved.program_id, into=fresh)
    assert fresh.dump_state() == program.dump_state()


def test_registered_dspy_classes_are_rebuilt(storage: ProgramStorage) -> None:
    program = nested_with_demos()
    saved = storage.save_program(program)
    storage.register_type(AnswerThenSummarize)
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None and isinstance(loaded.program, AnswerThenSummarize)
    assert loaded.program.dump_state() == program.dump_state()
    by_class = storage.load_program(saved.program_id, into=AnswerThenSummarize)
    assert by_class is not None and isinstance(by_class.program, AnswerThenSummarize)
    assert by_class.program.dump_state() == program.dump_state()


def test_loading_into_the_wrong_module_fails_clearly(storage: ProgramStorage) -> None:
    saved = storage.save_program(nested_with_demos())
    with pytest.raises(UnsupportedProgramError, match="could not load the stored state"):
        storage.load_program(saved.program_id, into=dspy.ChainOfThought(AnswerQuestion))
    with pytest.raises(UnsupportedProgramError, match="could not load the stored state"):
        load_program(saved, dspy.ChainOfThought(AnswerQuestion))
    with pytest.raises(InvalidInputError, match="SavedProgram or a state dict"):
        load_program(42, dspy.ChainOfThought(AnswerQuestion))
    loaded = storage.load_program(saved.program_id)  # still intact, as plain state
    assert loaded is not None and loaded.state == saved.state


def test_a_dspy_version_mismatch_is_logged_on_load(
    storage: ProgramStorage, caplog: pytest.LogCaptureFixture
) -> None:
    saved = storage.save_program(cot_with_demos())
    state = json.loads(json.dumps(saved.state))
    state["metadata"]["dependency_versions"]["dspy"] = "3.0.0"
    with caplog.at_level(logging.WARNING, logger="progreg.dspy"):
        load_program(state, dspy.ChainOfThought(AnswerQuestion))
    assert "saved with dspy 3.0.0" in caplog.text


def test_values_json_cannot_hold_are_refused_with_their_path(storage: ProgramStorage) -> None:
    program = dspy.Predict(AnswerQuestion)
    program.demos = [{"question": "When?", "answer": {1, 2}}]
    with pytest.raises(NotJSONError, match=r"program state\.demos\[0\]\.answer"):
        storage.save_program(program)
    assert storage.list_programs() == []


# -- secrets -------------------------------------------------------------------------------


def test_an_api_key_in_lm_settings_is_refused_naming_the_field(
    storage: ProgramStorage, registry_path: Path
) -> None:
    program = cot_with_demos()
    program.predict.lm = LegacyStateLM("openai/gpt-4o-mini", api_key=API_KEY)
    storage.save_program({"first": "program"})  # the registry exists: check nothing changes
    before = registry_state(registry_path)
    with pytest.raises(SecretDetectedError) as caught:
        storage.save_program(program, {"best_score_value": 0.9})
    assert caught.value.paths == ["predict.lm.api_key"]
    message = str(caught.value)
    assert "predict.lm.api_key" in message and "redact=True" in message
    assert API_KEY not in message and API_KEY not in repr(caught.value)
    assert isinstance(caught.value, InvalidInputError)
    assert registry_state(registry_path) == before
    assert API_KEY.encode() not in repository_bytes(registry_path)


def test_redact_stores_the_program_without_the_key(
    storage: ProgramStorage, registry_path: Path
) -> None:
    program = cot_with_demos()
    program.predict.lm = LegacyStateLM("openai/gpt-4o-mini", api_key=API_KEY, temperature=0.5)
    wrapped = DSPyProgram(program, redact=True)
    saved = storage.save_program(wrapped, {"best_score_value": 0.9})
    assert wrapped.info is not None and wrapped.info.redacted == ["predict.lm.api_key"]
    assert saved.state["metadata"]["redacted"] == ["predict.lm.api_key"]
    assert "api_key" not in saved.state["predict"]["lm"]
    assert saved.state["predict"]["lm"]["temperature"] == 0.5  # the other settings are kept
    assert saved.program_type == "dspy.predict.chain_of_thought.ChainOfThought"
    assert saved.signature_class is None  # new instructions: no name is guessed
    assert API_KEY.encode() not in repository_bytes(registry_path)
    assert_fsck_clean(registry_path)
    # It loads into a fresh module: the LM comes back without its key.
    fresh = dspy.ChainOfThought(AnswerQuestion)
    storage.load_program(saved.program_id, into=fresh)
    assert fresh.predict.lm.model == "openai/gpt-4o-mini"
    assert "api_key" not in fresh.predict.lm.kwargs
    assert fresh.predict.demos == program.dump_state()["predict"]["demos"]
    # The module itself is unchanged: redaction works on a copy.
    assert program.dump_state()["predict"]["lm"]["api_key"] == API_KEY


def test_a_real_dspy_lm_api_key_never_reaches_the_registry(
    storage: ProgramStorage, registry_path: Path
) -> None:
    # DSPy 3.4 leaves api_key out of the LM's state itself...
    program = predict_with_demos()
    program.lm = dspy.LM("openai/gpt-4o-mini", api_key=API_KEY, temperature=0.0)
    saved = storage.save_program(program)
    assert "api_key" not in saved.state["lm"]
    # ...but keeps headers: an Authorization header is refused, then redacted.
    program.lm = dspy.LM(
        "openai/gpt-4o-mini",
        api_key=API_KEY,
        extra_headers={"Authorization": f"Bearer {API_KEY}", "X-Team": "research"},
    )
    with pytest.raises(SecretDetectedError) as caught:
        storage.save_program(program)
    assert caught.value.paths == ["lm.extra_headers.Authorization"]
    redacted = storage.save_program(DSPyProgram(program, redact=True))
    assert redacted.state["lm"]["extra_headers"] == {"X-Team": "research"}
    assert API_KEY.encode() not in repository_bytes(registry_path)
    fresh = dspy.Predict(AnswerQuestion)
    storage.load_program(redacted.program_id, into=fresh)
    assert fresh.lm.kwargs["extra_headers"] == {"X-Team": "research"}


def test_a_manager_save_with_a_secret_is_refused_and_redact_works(tmp_path: Path) -> None:
    manager = StorageManager(StorageConfig(storage_path=str(tmp_path / "registry")))
    program = cot_with_demos()
    program.predict.lm = LegacyStateLM("openai/gpt-4o-mini", api_key=API_KEY)
    with pytest.raises(SecretDetectedError, match=r"predict\.lm\.api_key"):
        manager.save_optimization_result(optimization_result_from(program, 70.0))
    result = optimization_result_from(DSPyProgram(program, redact=True), 70.0, optimizer="MIPROv2")
    saved = manager.save_optimization_result(
        result, tags=["prod"], metadata={"signature_class": "AnswerQuestion"}
    )
    assert saved is not None and saved.signature_class == "AnswerQuestion"
    assert manager.get_tags(saved.program_id) == ["prod"]
    checkpoint = manager.create_checkpoint(result, "run-1")
    assert "api_key" not in checkpoint.state["predict"]["lm"]
    assert API_KEY.encode() not in repository_bytes(tmp_path / "registry")


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("api_key", True),
        ("apiKey", True),
        ("OPENAI_API_KEY", True),
        ("x-api-key", True),
        ("Authorization", True),
        ("Proxy-Authorization", True),
        ("azure_ad_token", True),
        ("aws_secret_access_key", True),
        ("aws_session_token", True),
        ("vertex_credentials", True),
        ("client_secret", True),
        ("password", True),
        ("Cookie", True),
        ("ocp-apim-subscription-key", True),
        ("max_tokens", False),
        ("max_completion_tokens", False),
        ("token_limit", False),
        ("model", False),
        ("api_base", False),
        ("temperature", False),
        ("author", False),
        ("keywords", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    assert (secret_key_reason(key) is not None) is secret


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        (API_KEY, True),
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789", True),
        ("ghp_" + "a1b2c3d4e5" * 4, True),
        ("hf_" + "AbCdEfGhIj" * 4, True),
        ("AKIAIOSFODNN7EXAMPLE", True),
        ("AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", True),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", True),
        ("Bearer abcdefghijklmnop1234", True),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...", True),
        ("https://user:hunter2@llm.example.com/v1", True),
        ("https://llm.example.com/v1?api-key=abc123", True),
        ("https://llm.example.com/v1", False),
        ("openai/gpt-4o-mini", False),
        ("Use scikit-learn's sk-learn pipeline for the task-specific model.", False),
        ("The bearer of this letter is a friend.", False),
        ("Think step by step.", False),
    ],
)
def test_secret_looking_values(value: str, secret: bool) -> None:
    state = {"lm": {"model": "openai/gpt-4o-mini", "setting": value}}
    assert bool(find_secrets(state)) is secret


def test_rules_apply_where_they_should() -> None:
    state: dict[str, Any] = {
        "predict": {
            "demos": [
                {"password": "hunter2", "strength": "weak"},  # a demo field, not a setting
                {"question": f"Is {API_KEY} valid?", "answer": "no"},
            ],
            "signature": {"instructions": "Rate the password.", "fields": []},
            "lm": {
                "model": "openai/gpt-4o-mini",
                "api_key": None,  # nothing to leak
                "headers": {"Authorization": "Basic dXNlcjpwYXNzd29yZDEyMzQ="},
                "model_list": [{"litellm_params": {"api_key": "plain-text-key"}}],
                "stop": [f"{API_KEY}"],
            },
        }
    }
    findings = find_secrets(state)
    assert [(f.path, f.in_lm_settings) for f in findings] == [
        ("predict.demos[1].question", False),
        ("predict.lm.headers.Authorization", True),
        ("predict.lm.model_list[0].litellm_params.api_key", True),
        ("predict.lm.stop[0]", True),
    ]
    assert all(API_KEY not in f.reason for f in findings)
    cleaned, redacted = redact_secrets(state)
    assert redacted == [f.path for f in findings]
    predict = cleaned["predict"]
    assert predict["demos"][0] == {"password": "hunter2", "strength": "weak"}
    assert predict["demos"][1] == {"question": f"Is {REDACTED} valid?", "answer": "no"}
    assert predict["lm"] == {
        "model": "openai/gpt-4o-mini",
        "api_key": None,
        "headers": {},
        "model_list": [{"litellm_params": {}}],
        "stop": [REDACTED],
    }
    assert find_secrets(cleaned) == []
    assert state["predict"]["lm"]["headers"]  # the input is untouched


# -- optimization results -----------------------------------------------------------------


def test_an_optimizer_run_and_its_evaluation_become_a_result(tmp_path: Path) -> None:
    trainset = examples()
    optimizer = dspy.LabeledFewShot(k=2)  # a real optimizer that needs no LM
    optimized = optimizer.compile(LookupQA(), trainset=trainset)
    assert len(optimized.generate.predict.demos) == 2

    def exact_match(example: Any, prediction: Any, trace: object = None) -> bool:
        return bool(example.answer == prediction.answer)

    evaluate = dspy.Evaluate(devset=trainset, metric=exact_match, num_threads=1)
    evaluation = evaluate(optimized)
    assert evaluation.score == 100.0

    result = optimization_result_from(
        optimized,
        evaluation,
        optimizer=optimizer,
        score_name="exact_match",
        trainset_size=len(trainset),
        extra={"devset": "trivia-3"},
    )
    assert isinstance(result, OptimizationResult)
    assert result.optimized_program is optimized
    assert result.best_score_value == 1.0  # Evaluate's percentage, as a fraction
    assert result.best_score_name == "exact_match"
    assert result.scores == {"exact_match": 1.0}
    assert result.metadata["evaluate_percentage"] == 100.0
    assert result.metadata["optimizer"] == "LabeledFewShot"
    assert result.metadata["trainset_size"] == 3
    assert result.metadata["evaluated_examples"] == 3
    assert result.metadata["dspy_version"] == dspy.__version__
    assert result.metadata["devset"] == "trivia-3"

    manager = StorageManager(StorageConfig(storage_path=str(tmp_path / "registry")))
    saved = manager.save_optimization_result(result)
    assert saved is not None and saved.optimizer == "LabeledFewShot"
    # A metric's fraction from elsewhere compares with Evaluate's result on one scale.
    other = manager.save_optimization_result(
        optimization_result_from(LookupQA(), 0.9, optimizer="MIPROv2")
    )
    assert other is not None and other.best_score == 0.9
    best = manager.get_best_program("AnswerQuestion")
    assert best is not None and best.program_id == saved.program_id
    fresh = load_program(best, LookupQA())
    assert fresh.dump_state() == optimized.dump_state()
    into = manager.get_best_program("AnswerQuestion", into=LookupQA())
    assert into is not None and isinstance(into.program, LookupQA)
    assert into.program.dump_state() == optimized.dump_state()


@pytest.mark.parametrize(
    ("evaluation", "score", "count"),
    [
        (42.5, 42.5, None),
        (7, 7.0, None),
        ((66.7, [("example", "prediction", 1.0)] * 3), 66.7, 3),
        ((50.0, [1.0, 0.0]), 50.0, 2),
    ],
)
def test_evaluation_scores_of_every_shape(evaluation: object, score: float, count: int) -> None:
    assert evaluation_score_of(evaluation) == (score, count)


def test_evaluation_result_objects_are_read() -> None:
    result = dspy.evaluate.EvaluationResult(score=75.0, results=[("e", "p", 1.0)] * 4)
    assert evaluation_score_of(result) == (75.0, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"evaluation_score": "high"}, "evaluation_score must be a number"),
        ({"evaluation_score": True}, "evaluation_score must be a number"),
        ({"evaluation_score": math.nan}, "must be finite"),
        ({"evaluation_score": 1.0, "trainset_size": -1}, "trainset_size"),
        ({"evaluation_score": 1.0, "score_name": ""}, "score_name"),
        ({"evaluation_score": 1.0, "extra": {"optimizer": "x"}}, "must not redefine optimizer"),
        ({"evaluation_score": 1.0, "extra": {"when": {1, 2}}}, r"extra\.when"),
    ],
)
def test_bad_optimization_results_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        optimization_result_from(dspy.Predict(AnswerQuestion), **kwargs)


def test_an_optimizer_may_be_named_or_a_class() -> None:
    program = dspy.Predict(AnswerQuestion)
    assert optimization_result_from(program, 1.0, optimizer="MIPROv2").metadata["optimizer"] == (
        "MIPROv2"
    )
    by_class = optimization_result_from(program, 1.0, optimizer=dspy.BootstrapFewShot)
    assert by_class.metadata["optimizer"] == "BootstrapFewShot"
    assert "optimizer" not in optimization_result_from(program, 1.0).metadata


# -- sharing: export, import, push, pull ---------------------------------------------------


def test_a_chain_of_thought_survives_export_and_import(tmp_path: Path) -> None:
    program = cot_with_demos()
    before = program.dump_state()
    source = ProgramStorage(tmp_path / "source")
    saved = source.save_program(program, {"best_score_value": 0.75}, tags=["prod"])
    bundle = tmp_path / "cot.bundle"
    source.export_programs([saved.program_id], bundle)

    target = ProgramStorage(tmp_path / "target")
    imported = target.import_programs(bundle)
    assert imported.imported == [saved.program_id]
    fresh = dspy.ChainOfThought(AnswerQuestion)
    loaded = target.load_program(saved.program_id, into=fresh)
    assert loaded is not None
    assert fresh.dump_state() == before
    assert loaded.state == saved.state
    assert loaded.signature_class is None  # new instructions, and none was given
    assert loaded.program_type == "dspy.predict.chain_of_thought.ChainOfThought"
    assert_fsck_clean(tmp_path / "target")


def test_a_chain_of_thought_survives_push_and_pull(tmp_path: Path) -> None:
    program = cot_with_demos()
    before = program.dump_state()
    ProgramStorage(tmp_path / "shared")  # a registry on a shared disk
    alice = ProgramStorage(tmp_path / "alice")
    alice.add_remote("origin", str(tmp_path / "shared"))
    saved = alice.save_program(program, {"best_score_value": 0.75})
    alice.push()

    bob = ProgramStorage(tmp_path / "bob")
    bob.add_remote("origin", str(tmp_path / "shared"))
    assert bob.pull().added == [saved.program_id]
    fresh = dspy.ChainOfThought(AnswerQuestion)
    loaded = bob.load_program(saved.program_id, into=fresh)
    assert loaded is not None and loaded.commit == saved.commit
    assert fresh.dump_state() == before
    assert_fsck_clean(tmp_path / "shared")


def test_percentages_are_stored_as_fractions_when_said_so() -> None:
    program = dspy.Predict(AnswerQuestion)
    evaluation = dspy.evaluate.EvaluationResult(score=75.0, results=[("e", "p", 1.0)] * 4)
    assert optimization_result_from(program, evaluation).best_score_value == 0.75
    assert optimization_result_from(program, evaluation, percent=False).best_score_value == 75.0
    stated = optimization_result_from(program, 62.5, percent=True)
    assert stated.best_score_value == 0.625
    assert stated.metadata["evaluate_percentage"] == 62.5
    plain = optimization_result_from(program, 0.625)
    assert plain.best_score_value == 0.625 and "evaluate_percentage" not in plain.metadata


def test_demo_values_are_stored_as_dspy_save_writes_them(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    """Dates, datetimes, UUIDs and NaN in demos: what DSPy's save() writes, not a refusal."""
    program = dspy.Predict(AnswerQuestion)
    program.demos = [
        dspy.Example(
            question="When?",
            answer=datetime.date(2024, 5, 1),
            asked=datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
            request=uuid.UUID(int=7),
            confidence=math.nan,
        ).with_inputs("question")
    ]
    saved = storage.save_program(program, metadata={"signature_class": "AnswerQuestion"})
    path = tmp_path / "program.json"
    program.save(str(path))
    written = json.loads(path.read_bytes())
    assert saved.state["demos"] == written["demos"]
    assert saved.state["demos"][0]["answer"] == "2024-05-01"
    assert saved.state["demos"][0]["request"] == str(uuid.UUID(int=7))
    assert saved.state["demos"][0]["confidence"] is None
    # A plain dict program is still held to JSON exactly.
    with pytest.raises(NotJSONError, match="demos"):
        storage.save_program({"demos": [{"answer": datetime.date(2024, 5, 1)}]})
    with pytest.raises(NotJSONError):
        storage.save_program({"confidence": math.nan})
    # A value DSPy cannot write either is refused, with its path.
    program.demos = [dspy.Example(question="q", answer={1, 2}).with_inputs("question")]
    with pytest.raises(NotJSONError, match="answer"):
        storage.save_program(program)


def test_a_record_holding_a_module_dumps_to_json(storage: ProgramStorage) -> None:
    saved = storage.save_program(dspy.ChainOfThought(AnswerQuestion))
    loaded = storage.load_program(saved.program_id, into=dspy.ChainOfThought(AnswerQuestion))
    assert loaded is not None and isinstance(loaded.program, dspy.ChainOfThought)
    as_json = json.loads(loaded.model_dump_json())
    assert as_json["program"] == loaded.state == as_json["state"]
    assert loaded.model_dump(mode="json")["program"] == loaded.state
    assert loaded.model_dump()["program"] is loaded.program  # Python mode keeps the object


def test_the_global_manager_loads_into_a_module(
    storage: ProgramStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StorageManager, "_instance", None)
    StorageManager.configure(StorageConfig(storage_path=storage.path))
    saved = storage.save_program(dspy.ChainOfThought(AnswerQuestion), {"best_score_value": 0.5})
    best = StorageManager.best("AnswerQuestion", into=dspy.ChainOfThought(AnswerQuestion))
    assert best is not None and isinstance(best.program, dspy.ChainOfThought)
    loaded = StorageManager.load(saved.program_id, into=dspy.ChainOfThought(AnswerQuestion))
    assert loaded is not None and isinstance(loaded.program, dspy.ChainOfThought)
