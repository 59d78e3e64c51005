"""Turning program objects into storable state and back, without pickling.

A program is stored as its *state* (a JSON object) plus its *type name*
(``module.QualifiedName``, for information only). What is accepted:

* a plain ``dict`` (the state itself; the type name is ``None``);
* a pydantic model (``model_dump(mode="json")``);
* an object following DSPy's convention, ``dump_state()`` / ``load_state(state)``;
* an object with ``to_dict()`` (and, to load, a ``from_dict(state)`` class method).

A real ``dspy.Module`` (detected only when the process has imported DSPy) and a
:class:`~progreg.core.dspy.DSPyProgram` go through :mod:`progreg.core.dspy`:
its checks apply (credentials refused or redacted, JSON checked) and DSPy's
dependency versions are recorded in the state.

On load, progreg never imports a module or looks up a class named by stored
data. It rebuilds an object only from what the caller provides: an instance
passed as ``into=`` (its ``load_state`` is called), a class passed as
``into=``, or a class registered with :meth:`ProgramTypes.register`.
Otherwise the state dict is returned as it is.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from progreg.core import canonical
from progreg.core import dspy as dspy_adapter
from progreg.core.lineage import ORIGIN_ATTRIBUTE, Origin
from progreg.errors import UnsupportedProgramError

Factory = Callable[[dict[str, Any]], Any]


def type_name(obj: object) -> str:
    """The ``module.QualifiedName`` of ``obj``'s class."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def export_state(program: object) -> tuple[str | None, dict[str, Any]]:
    """Return ``(type name, state)`` for a program object."""
    if isinstance(program, dict):
        return None, program
    if dspy_adapter.handles(program):
        return dspy_adapter.export(program)
    if isinstance(program, BaseModel):
        return type_name(program), canonical.dump_model(program, "program state")
    for method in ("dump_state", "to_dict"):
        exporter = getattr(program, method, None)
        if callable(exporter):
            state = exporter()
            if not isinstance(state, dict):
                raise UnsupportedProgramError(
                    f"{type_name(program)}.{method}() returned a {type(state).__name__}, not a dict"
                )
            return type_name(program), without_origin(state)
    raise UnsupportedProgramError(
        f"cannot store a {type_name(program)}: pass a dict, a pydantic model, or an object"
        " with dump_state() (DSPy modules) or to_dict()"
    )


def without_origin(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the origin stamp a load put on the object (see core.lineage).

    An exporter that copies the object's attributes (``dict(vars(self))``)
    would otherwise store the stamp, which is no part of the program.
    """
    if isinstance(state.get(ORIGIN_ATTRIBUTE), Origin):
        return {key: value for key, value in state.items() if key != ORIGIN_ATTRIBUTE}
    return state


def signature_name(program: object) -> str | None:
    """The DSPy signature name of a program (a predictor, a ChainOfThought, a module)."""
    if dspy_adapter.handles(program):
        return dspy_adapter.signature_class(program)
    candidates: list[object] = [program, getattr(program, "predict", None)]
    named_predictors = getattr(program, "named_predictors", None)
    if callable(named_predictors):
        # A user's module may not support it; the name is optional.
        with contextlib.suppress(Exception):
            candidates += [predictor for _, predictor in named_predictors()]
    for candidate in candidates:
        signature = getattr(candidate, "signature", None)
        name = getattr(signature, "__name__", None)
        if isinstance(name, str) and name:
            return name
    return None


def _factory_for(cls: type) -> Factory:
    if issubclass(cls, BaseModel):
        return cls.model_validate
    from_dict = getattr(cls, "from_dict", None)
    if callable(from_dict):
        return from_dict  # type: ignore[no-any-return]
    if callable(getattr(cls, "load_state", None)):

        def build(state: dict[str, Any]) -> Any:
            instance: Any = cls()
            if dspy_adapter.is_dspy_module(instance):
                return dspy_adapter.load_state(instance, state)
            result = instance.load_state(state)
            return instance if result is None else result

        return build
    raise UnsupportedProgramError(
        f"{cls.__qualname__} has no model_validate, from_dict or load_state to rebuild it"
        " from its state; pass a factory"
    )


def load_into(target: object, state: dict[str, Any]) -> Any:
    """Load ``state`` into ``target``: an instance (``load_state``) or a class."""
    if isinstance(target, type):
        return _call(_factory_for(target), state, target.__qualname__)
    loader = getattr(target, "load_state", None)
    if not callable(loader):
        raise UnsupportedProgramError(
            f"into= got a {type_name(target)}, which has no load_state(); pass an instance"
            " with load_state() or a class"
        )
    if dspy_adapter.is_dspy_module(target):
        _call(lambda data: dspy_adapter.load_state(target, data), state, type_name(target))
    else:
        _call(loader, state, type_name(target))
    return target


def _call(factory: Callable[[dict[str, Any]], Any], state: dict[str, Any], name: str) -> Any:
    """Run user code that builds a program from stored state, wrapping its failures."""
    try:
        return factory(state)
    except Exception as exc:
        raise UnsupportedProgramError(
            f"{name} could not load the stored state ({type(exc).__name__}: {exc}); the"
            " program is intact in the registry: load it without into= to get its state"
        ) from exc


class ProgramTypes:
    """The program classes a registry may rebuild on load, by stored type name."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}
        self._lock = threading.Lock()

    def register(
        self, cls: type, *, name: str | None = None, factory: Factory | None = None
    ) -> None:
        """Allow loading programs stored as ``cls`` (or as ``name``) into new objects."""
        key = name or f"{cls.__module__}.{cls.__qualname__}"
        built = factory if factory is not None else _factory_for(cls)
        with self._lock:
            self._factories[key] = built

    def build(self, name: str | None, state: dict[str, Any]) -> Any:
        """An object rebuilt from ``state`` if ``name`` is registered, else ``state``."""
        factory = self._factories.get(name) if name else None
        if factory is None:
            return state
        return _call(factory, state, f"the registered type {name}")
