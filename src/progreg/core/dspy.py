"""Real DSPy programs: saving and loading ``dspy.Module`` objects with no glue.

``storage.save_program(module, result)`` accepts any ``dspy.Module`` (a
``Predict``, a ``ChainOfThought``, a module of your own nesting several): the
hooks in :mod:`progreg.core.programs` route it here. What is stored:

* the **state**: what ``module.dump_state()`` returns (JSON mode; the
  variants of DSPy 3.x are handled, see :func:`dump_module_state`), plus
  DSPy's own ``metadata`` entry with ``dependency_versions`` (python, dspy,
  cloudpickle): exactly the JSON that ``module.save("program.json")``
  writes, so ``module.load()`` reads it too;
* the **program type** (``module.Class``) as the document's ``class_name``;
* the **signature name** as ``metadata.signature_class`` (see
  :func:`signature_names`).

Secrets are never stored. DSPy keeps each predictor's LM settings in its
state (``"lm"``); DSPy 3.4 leaves out ``api_key`` but keeps everything else
(``extra_headers`` with an ``Authorization`` header, ``aws_secret_access_key``,
an ``api_base`` with credentials in it...), and DSPy 3.0 kept ``api_key``
too. :func:`~progreg.core.secrets.find_secrets` (the rules are in
:mod:`progreg.core.secrets`) finds them in LM settings by their key names, and
anywhere in the state by their formats (``sk-...`` keys, tokens, JSON Web
Tokens, private keys, URLs with a password...).

By default a program holding one is refused with :class:`SecretDetectedError`
naming each field (never the value). ``DSPyProgram(module, redact=True)``
stores it without them instead: a credential in LM settings is removed with
its key; a credential-looking text elsewhere (a demo) is replaced by
``[REDACTED]``. The removed paths are listed in the stored state under
``metadata.redacted`` and in :attr:`DSPyProgramInfo.redacted`.

DSPy is imported by your code, not by progreg: this module only looks at
``sys.modules``, so progreg imports (and works on other programs) without
DSPy installed.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import math
import sys
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from progreg.core import canonical
from progreg.core.results import OptimizationResult
from progreg.core.secrets import (
    LM_KEY,
    REDACTED,
    SecretFinding,
    find_secrets,
    redact_secrets,
    secret_error,
    secret_key_reason,
)
from progreg.errors import (
    InvalidInputError,
    NotJSONError,
    SecretDetectedError,
    UnsupportedProgramError,
)

__all__ = [
    "LM_KEY",
    "REDACTED",
    "DSPyProgram",
    "DSPyProgramInfo",
    "SecretDetectedError",
    "SecretFinding",
    "dump_module_state",
    "evaluation_score_of",
    "find_secrets",
    "is_dspy_module",
    "load_program",
    "load_state",
    "optimization_result_from",
    "program_state",
    "redact_secrets",
    "secret_key_reason",
    "signature_class",
    "signature_names",
]

logger = logging.getLogger("progreg.dspy")

#: The key under which DSPy's ``Module.save()`` (and progreg) record provenance in a state.
METADATA_KEY = "metadata"
#: The name DSPy gives every signature made from a string or derived from another one.
GENERIC_SIGNATURE = "StringSignature"


class DSPyProgramInfo(BaseModel):
    """What progreg recorded about a DSPy program besides its state."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    program_type: str = Field(description="module.Class of the program")
    dependency_versions: dict[str, str] = Field(
        description="DSPy's own record of its dependencies: python, dspy, cloudpickle"
    )
    signatures: dict[str, str | None] = Field(
        description="each predictor (named as named_predictors() names it) and its signature"
        " class name, None where it cannot be told"
    )
    signature_class: str | None = Field(
        description="the first predictor's signature name: metadata.signature_class"
    )
    redacted: list[str] = Field(
        default_factory=list, description="the state fields removed or masked as secrets"
    )


class DSPyProgram:
    """A DSPy module to save with explicit options, e.g. ``DSPyProgram(program, redact=True)``.

    Pass it wherever a program is accepted (``save_program``, an
    ``OptimizationResult``'s ``optimized_program``, checkpoints). With
    ``redact=True`` credentials are stripped from the stored state instead of
    refused; :attr:`info` then says which fields were removed.
    """

    def __init__(self, module: object, *, redact: bool = False) -> None:
        if not is_dspy_module(module):
            raise UnsupportedProgramError(
                f"DSPyProgram wraps a dspy.Module, got a {_type_name(module)}"
            )
        self.module = module
        self.redact = redact
        self.info: DSPyProgramInfo | None = None

    def __repr__(self) -> str:
        return f"DSPyProgram({_type_name(self.module)}, redact={self.redact})"

    def export(self) -> tuple[str, dict[str, Any]]:
        """``(type name, state)`` as stored; also sets :attr:`info`."""
        name, state, self.info = program_state(self.module, redact=self.redact)
        return name, state


# -- detection ---------------------------------------------------------------------------


def _dspy() -> Any:
    """The ``dspy`` package if the process has imported it, else ``None`` (never imports it)."""
    return sys.modules.get("dspy")


def is_dspy_module(obj: object) -> bool:
    """True when ``obj`` is a ``dspy.Module`` instance; never imports DSPy."""
    module_class = getattr(_dspy(), "Module", None)
    return isinstance(module_class, type) and isinstance(obj, module_class)


def handles(obj: object) -> bool:
    """True for what this adapter exports: a ``dspy.Module`` or a :class:`DSPyProgram`."""
    return isinstance(obj, DSPyProgram) or is_dspy_module(obj)


def export(obj: object) -> tuple[str, dict[str, Any]]:
    """``(type name, checked state)`` of a ``dspy.Module`` (secrets refused) or a DSPyProgram."""
    if isinstance(obj, DSPyProgram):
        return obj.export()
    name, state, _ = program_state(obj)
    return name, state


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- state -------------------------------------------------------------------------------


def _accepts(method: Callable[..., Any], name: str) -> bool:
    """True when ``method`` takes a keyword argument ``name`` (or ``**kwargs``)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: assume the plain call
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _dump(parameter: Any) -> Any:
    dump = parameter.dump_state
    return dump(json_mode=True) if _accepts(dump, "json_mode") else dump()


def dump_module_state(module: Any) -> dict[str, Any]:
    """``module.dump_state()`` in JSON mode, whichever DSPy 3.x variant ``module`` has.

    DSPy 3.x's ``dump_state`` takes ``json_mode`` (demos as plain dicts); a
    module whose ``dump_state()`` takes no argument is called without it. A
    module holding a parameter whose ``dump_state()`` does not take
    ``json_mode`` (``dspy.Retrieve`` up to DSPy 3.4) makes DSPy's own call
    fail with ``TypeError``: the state is then built as DSPy builds it,
    parameter by parameter, calling each one as it accepts.
    """
    dump = module.dump_state
    if not _accepts(dump, "json_mode"):
        state = dump()
    else:
        try:
            state = dump(json_mode=True)
        except TypeError as exc:
            named_parameters = getattr(module, "named_parameters", None)
            if "json_mode" not in str(exc) or not callable(named_parameters):
                raise
            state = {name: _dump(parameter) for name, parameter in named_parameters()}
    if not isinstance(state, dict):
        raise UnsupportedProgramError(
            f"{_type_name(module)}.dump_state() returned a {type(state).__name__}, not a dict"
        )
    return state


def as_dspy_saves(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as DSPy's ``save("program.json")`` writes it, read back.

    DSPy encodes a state with orjson: a ``datetime``, ``date`` or ``time`` in a
    demo becomes ISO 8601 text, a ``UUID`` its text, a dataclass or an enum
    its value, a tuple a list, and NaN or an infinity ``null``. The registry
    stores exactly that. A value orjson cannot encode either (a set, bytes...)
    raises :class:`~progreg.NotJSONError` naming its path.
    """
    try:
        encoded = orjson.dumps(state)
    except (orjson.JSONEncodeError, TypeError) as exc:
        canonical.check_json(state, "program state")  # names the value's path
        raise NotJSONError(f"program state cannot be stored as JSON: {exc}") from exc
    decoded: dict[str, Any] = orjson.loads(encoded)
    return decoded


def dependency_versions() -> dict[str, str]:
    """DSPy's record of the versions a program was saved with (python, dspy, cloudpickle)."""
    dspy = _dspy()
    versions: dict[str, str] = {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    if dspy is None:
        return versions
    saving = sys.modules.get("dspy.utils.saving")
    get_versions = getattr(saving, "get_dependency_versions", None)
    if callable(get_versions):
        try:
            found = get_versions()
        except Exception:  # provenance is best effort; the program is what matters
            found = None
        if isinstance(found, dict):
            versions.update({str(k): str(v) for k, v in found.items() if v is not None})
    version = getattr(dspy, "__version__", None)
    if isinstance(version, str):
        versions.setdefault("dspy", version)
    return versions


def program_state(
    module: object, *, redact: bool = False
) -> tuple[str, dict[str, Any], DSPyProgramInfo]:
    """``(type name, state, info)`` of a ``dspy.Module``, as progreg stores it.

    The state is ``dump_state()`` plus ``metadata.dependency_versions``
    (DSPy's own ``save()`` format). Credentials are refused with
    :class:`SecretDetectedError`, or removed with ``redact=True`` (listed in
    ``info.redacted`` and the state's ``metadata.redacted``). A value JSON
    cannot hold raises :class:`~progreg.NotJSONError` naming its path.
    """
    if not is_dspy_module(module):
        raise UnsupportedProgramError(f"not a dspy.Module: a {_type_name(module)}")
    state = as_dspy_saves(dump_module_state(module))
    findings = find_secrets(state)
    redacted: list[str] = []
    if findings:
        if not redact:
            raise _secret_error(findings)
        state, redacted = redact_secrets(state, findings)
    versions = dependency_versions()
    existing = state.get(METADATA_KEY, {})
    # A parameter of the module may be named "metadata": then its state is left alone.
    if isinstance(existing, dict) and METADATA_KEY not in _parameter_names(module):
        meta = {**existing, "dependency_versions": existing.get("dependency_versions", versions)}
        if redacted:
            meta["redacted"] = redacted
        state[METADATA_KEY] = meta
    canonical.check_json(state, "program state")
    names = signature_names(module)
    info = DSPyProgramInfo(
        program_type=_type_name(module),
        dependency_versions=versions,
        signatures=names,
        signature_class=next((name for name in names.values() if name), None),
        redacted=redacted,
    )
    return info.program_type, state, info


def _secret_error(findings: list[SecretFinding]) -> SecretDetectedError:
    return secret_error(
        findings,
        "the DSPy program's state",
        "save DSPyProgram(program, redact=True) (or save_program(..., secrets='redact')) to"
        " store the program without them",
    )


# -- signatures --------------------------------------------------------------------------


def _field_names(signature: Any, kind: str) -> list[str]:
    fields = getattr(signature, kind, None)
    return list(fields) if isinstance(fields, Mapping) else []


def _user_signatures() -> list[type]:
    """Every Signature class defined outside DSPy that is alive in this process."""
    base = getattr(_dspy(), "Signature", None)
    if not isinstance(base, type):
        return []
    found: list[type] = []
    seen: set[type] = set()
    stack: list[type] = [base]
    while stack:
        subclasses: list[type] = stack.pop().__subclasses__()
        for sub in subclasses:
            if sub in seen:
                continue
            seen.add(sub)
            stack.append(sub)
            module = sub.__module__ or ""
            if sub.__name__ != GENERIC_SIGNATURE and module.split(".")[0] != "dspy":
                found.append(sub)
    return found


@functools.lru_cache(maxsize=256)
def _default_instructions(inputs: tuple[str, ...], outputs: tuple[str, ...]) -> str | None:
    """The instructions DSPy gives a signature of these fields that has none of its own.

    Building a signature costs DSPy most of a millisecond: each field set is asked once.
    """
    try:
        built = _dspy().Signature(f"{', '.join(inputs)} -> {', '.join(outputs)}")
    except Exception:  # field names DSPy's string form cannot spell
        return None
    instructions = getattr(built, "instructions", None)
    return instructions if isinstance(instructions, str) else None


def _signature_name(signature: Any, candidates: list[type]) -> str | None:
    name = getattr(signature, "__name__", None)
    if not isinstance(name, str) or not name:
        return None
    if name != GENERIC_SIGNATURE:
        return name
    # DSPy names every derived signature StringSignature: ChainOfThought's (the
    # user's fields with "reasoning" first among the outputs), a string
    # signature's, and any predictor's after load_state() or new instructions.
    # It is named after a user's class only when it is that class's signature
    # exactly: the same fields and the same instructions, which must be the
    # class's own (a docstring). DSPy's default instructions say nothing of the
    # class: a string signature "text -> label" has them too, so they never
    # name one. Anything else (new instructions, no match, two matches): None.
    inputs = _field_names(signature, "input_fields")
    outputs = _field_names(signature, "output_fields")
    own = outputs[1:] if outputs[:1] == ["reasoning"] else outputs
    instructions = getattr(signature, "instructions", None)
    if not isinstance(instructions, str):
        return None
    names = {
        cls.__name__
        for cls in candidates
        if _field_names(cls, "input_fields") == inputs
        and _field_names(cls, "output_fields") in (outputs, own)
        and getattr(cls, "instructions", None) == instructions
    }
    if len(names) != 1 or instructions == _default_instructions(tuple(inputs), tuple(own)):
        return None
    return names.pop()


#: Modules that progreg loaded a stored program into, and that program's signature name.
_LOADED_AS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def remember_signature_class(module: object, name: str | None) -> None:
    """Record that ``module`` holds a program stored under signature name ``name``.

    DSPy rebuilds the signatures of a module it loads a state into (their
    class name is lost), so a module loaded from the registry keeps the name
    of the program it came from, for its next save.
    """
    if name is not None and is_dspy_module(module):
        _LOADED_AS[module] = name


def signature_names(module: object) -> dict[str, str | None]:
    """Each predictor of ``module`` (as ``named_predictors()`` names it) and its signature name.

    The name is the signature class's own ``__name__``. DSPy gives derived
    signatures the generic name ``StringSignature`` (ChainOfThought adds a
    ``reasoning`` field; ``load_state``, ``with_instructions`` and optimizers
    rebuild signatures): such a signature is named after a user-defined
    Signature class only when it has exactly that class's fields (``reasoning``
    aside) and instructions, and those instructions are the class's own
    docstring; otherwise its name is ``None``. A name is never guessed from
    another class with the same fields.
    """
    named_predictors = getattr(module, "named_predictors", None)
    if not callable(named_predictors):
        return {}
    try:
        predictors = list(named_predictors())
    except Exception:  # a user's module may not support it; the names are optional
        return {}
    candidates = _user_signatures()
    return {
        str(name): _signature_name(getattr(predictor, "signature", None), candidates)
        for name, predictor in predictors
    }


def signature_class(module: object) -> str | None:
    """The name saved as ``metadata.signature_class`` for ``module``.

    The first predictor's signature name that :func:`signature_names` finds;
    else, for a module progreg loaded a stored program into, that program's
    signature name; else ``None`` (pass ``metadata={"signature_class": ...}``).
    """
    target = module.module if isinstance(module, DSPyProgram) else module
    own = next((name for name in signature_names(target).values() if name), None)
    return own if own is not None else _LOADED_AS.get(target)


# -- loading -----------------------------------------------------------------------------


def _parameter_names(module: Any) -> set[str]:
    named_parameters = getattr(module, "named_parameters", None)
    if not callable(named_parameters):
        return set()
    try:
        return {str(name) for name, _ in named_parameters()}
    except Exception:
        return set()


def _check_versions(stored: object) -> None:
    if not isinstance(stored, dict):
        return
    current = dependency_versions()
    for key, version in sorted(stored.items()):
        if key in current and current[key] != version:
            logger.warning(
                "this DSPy program was saved with %s %s; this environment has %s %s",
                key,
                version,
                key,
                current[key],
            )


def load_state(
    module: Any, state: Mapping[str, Any], *, allow_unsafe_lm_state: bool = False
) -> Any:
    """Load a stored state into ``module`` (a fresh instance of the saved program's class).

    The stored ``metadata`` entry is taken out (a version mismatch is logged
    on the ``progreg.dspy`` logger, as DSPy does) and the rest goes to
    ``module.load_state``, on a copy so that the module shares nothing with
    ``state``. ``allow_unsafe_lm_state`` is DSPy's: by default DSPy drops an
    LM's ``api_base``, ``base_url`` and ``model_list`` and refuses custom LM
    classes, which is right for a registry shared with others. Returns ``module``.
    """
    data = copy.deepcopy(dict(state))
    if METADATA_KEY in data and METADATA_KEY not in _parameter_names(module):
        meta = data.pop(METADATA_KEY)
        _check_versions(meta.get("dependency_versions") if isinstance(meta, dict) else None)
    loader = module.load_state
    if _accepts(loader, "allow_unsafe_lm_state"):
        loader(data, allow_unsafe_lm_state=allow_unsafe_lm_state)
    elif allow_unsafe_lm_state:
        raise UnsupportedProgramError(
            f"{_type_name(module)}.load_state() does not take allow_unsafe_lm_state"
        )
    else:
        loader(data)
    return module


def load_program(saved: object, module: Any, *, allow_unsafe_lm_state: bool = False) -> Any:
    """Load a saved program into ``module`` and return it.

    ``saved`` is a :class:`~progreg.SavedProgram` (from ``load_program``,
    ``get_best_program``...), anything with a ``state`` dict, or the state
    itself. Equivalent to ``storage.load_program(program_id, into=module)``.
    """
    state = saved if isinstance(saved, Mapping) else getattr(saved, "state", None)
    if not isinstance(state, Mapping):
        raise InvalidInputError(
            f"load_program needs a SavedProgram or a state dict, got a {type(saved).__name__}"
        )
    if not callable(getattr(module, "load_state", None)):
        raise UnsupportedProgramError(
            f"cannot load into a {_type_name(module)}: it has no load_state(); pass a fresh"
            " instance of the program's class"
        )
    try:
        loaded = load_state(module, state, allow_unsafe_lm_state=allow_unsafe_lm_state)
    except (InvalidInputError, UnsupportedProgramError):
        raise
    except Exception as exc:
        raise UnsupportedProgramError(
            f"{_type_name(module)} could not load the stored state ({type(exc).__name__}: {exc})"
        ) from exc
    name = getattr(saved, "signature_class", None)
    remember_signature_class(loaded, name if isinstance(name, str) else None)
    return loaded


# -- optimization results ----------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def evaluation_score_of(evaluation: object) -> tuple[float, int | None]:
    """``(score, number of examples evaluated or None)`` from what ``dspy.Evaluate`` returned.

    DSPy 3.x returns an ``EvaluationResult`` (``.score``, ``.results``);
    earlier versions a number, or a tuple starting with it. The score is
    returned as DSPy gives it (``Evaluate`` reports a percentage, 0 to 100);
    :func:`optimization_result_from` turns it into a fraction.
    """
    score = _number(evaluation)
    results: object = None
    if score is None and isinstance(evaluation, tuple | list) and evaluation:
        score = _number(evaluation[0])
        results = evaluation[1] if len(evaluation) > 1 else None
    if score is None:
        score = _number(getattr(evaluation, "score", None))
        results = getattr(evaluation, "results", None)
    if score is None:
        raise InvalidInputError(
            "evaluation_score must be a number or what dspy.Evaluate returned (an"
            f" EvaluationResult with a numeric .score), got a {type(evaluation).__name__}"
        )
    if not math.isfinite(score):
        raise InvalidInputError(f"evaluation_score must be finite, got {score!r}")
    count = len(results) if isinstance(results, list | tuple) else None
    return score, count


#: The metadata keys optimization_result_from() sets; ``extra`` may not use them.
_RESULT_KEYS = frozenset(
    {
        "optimizer",
        "trainset_size",
        "evaluated_examples",
        "timestamp",
        "dspy_version",
        "evaluate_percentage",
    }
)


def _optimizer_name(optimizer: object) -> str | None:
    if optimizer is None or isinstance(optimizer, str):
        return optimizer
    if isinstance(optimizer, type):
        return optimizer.__name__
    return type(optimizer).__name__


def optimization_result_from(
    optimized_program: object,
    evaluation_score: object,
    *,
    optimizer: object = None,
    score_name: str = "score",
    trainset_size: int | None = None,
    extra: Mapping[str, Any] | None = None,
    percent: bool | None = None,
) -> OptimizationResult:
    """An :class:`~progreg.OptimizationResult` for a DSPy optimizer run.

    ``optimized_program`` is what ``optimizer.compile()`` returned (or a
    :class:`DSPyProgram`); ``evaluation_score`` what ``dspy.Evaluate``
    returned, or the score itself. ``optimizer`` is the optimizer (its class
    name is recorded) or a name; ``extra`` is added to the result's metadata
    (it must be JSON and must not redefine the keys set here: ``optimizer``,
    ``trainset_size``, ``evaluated_examples``, ``timestamp``, ``dspy_version``,
    ``evaluate_percentage``).

    Scores are stored as fractions, 0 to 1, as a DSPy metric averages them,
    so that results of every origin compare in ``get_best_program``. What
    ``dspy.Evaluate`` returned is a percentage: it is divided by 100 and the
    percentage kept as ``metadata.evaluate_percentage``. A number is taken as
    a fraction unless ``percent=True`` says it is a percentage too
    (``percent=False`` takes an Evaluate result's score as it is).
    """
    score, count = evaluation_score_of(evaluation_score)
    if percent is None:
        percent = _number(evaluation_score) is None  # what dspy.Evaluate returned
    percentage = score if percent else None
    if percent:
        score = round(score / 100, 10)
    if not isinstance(score_name, str) or not score_name:
        raise InvalidInputError(f"score_name must be a non-empty string, got {score_name!r}")
    if trainset_size is not None and (
        isinstance(trainset_size, bool) or not isinstance(trainset_size, int) or trainset_size < 0
    ):
        raise InvalidInputError(
            f"trainset_size must be a non-negative integer, got {trainset_size!r}"
        )
    metadata: dict[str, Any] = {"timestamp": datetime.now(UTC).isoformat()}
    name = _optimizer_name(optimizer)
    if name is not None:
        metadata["optimizer"] = name
    if trainset_size is not None:
        metadata["trainset_size"] = trainset_size
    if count is not None:
        metadata["evaluated_examples"] = count
    version = getattr(_dspy(), "__version__", None)
    if isinstance(version, str):
        metadata["dspy_version"] = version
    if percentage is not None:
        metadata["evaluate_percentage"] = percentage
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise InvalidInputError(f"extra must be a dict, got {type(extra).__name__}")
        clash = sorted(set(extra) & _RESULT_KEYS)
        if clash:
            raise InvalidInputError(f"extra must not redefine {', '.join(clash)}")
        canonical.check_json(dict(extra), "extra")
        metadata.update(extra)
    return OptimizationResult(
        optimized_program=optimized_program,
        best_score_value=score,
        best_score_name=score_name,
        scores={score_name: score},
        metadata=metadata,
    )
