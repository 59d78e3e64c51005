"""StorageConfig: how a StorageManager uses its registry.

Every field can be set from the environment with a ``PROGREG_`` prefix
(``PROGREG_PATH`` for the registry, as everywhere: see
:func:`~progreg.registry.locations.registry_path_from_environment`; ``PROGREG_AUTO_SAVE``,
``PROGREG_SAVE_INTERMEDIATE_RESULTS``, ``PROGREG_MAX_STORED_PROGRAMS``,
``PROGREG_PROTECTED_TAGS`` as a comma-separated list, ``PROGREG_SECRETS``,
``PROGREG_DURABLE``). The environment overrides the defaults; arguments given
in code override the environment.

Durability has one rule everywhere (:func:`resolve_durable`): an explicit
setting (argument, ``StorageConfig.durable``, ``progreg --durable`` /
``--no-durable``), else ``PROGREG_DURABLE``, else the registry's Git config
``progreg.durable``, else on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pygit2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from progreg.core.secrets import SecretsPolicy
from progreg.errors import InvalidInputError
from progreg.registry.locations import DEFAULT_PATH, path_in_environment
from progreg.registry.tags import check_tags

_ENV_PREFIX = "PROGREG_"
DURABLE_ENV = "PROGREG_DURABLE"
DURABLE_CONFIG = "progreg.durable"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_flag(value: str, where: str) -> bool:
    """A yes/no setting written as Git writes booleans (``true``/``false``, ``1``/``0``, ...)."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInputError(f"{where} must be true or false (1/0, yes/no, on/off), got {value!r}")


def resolve_durable(explicit: bool | None, git_config: pygit2.Config | None) -> bool:
    """Whether writes are flushed to the disk: ``explicit``, else ``PROGREG_DURABLE``,
    else ``progreg.durable`` in ``git_config``, else ``True``."""
    if explicit is not None:
        return explicit
    env = os.environ.get(DURABLE_ENV)
    if env is not None and env.strip():
        return parse_flag(env, DURABLE_ENV)
    if git_config is not None:
        try:
            found = DURABLE_CONFIG in git_config
            value = str(git_config[DURABLE_CONFIG]) if found else None
        except pygit2.GitError as exc:
            raise InvalidInputError(f"cannot read {DURABLE_CONFIG} from Git config: {exc}") from exc
        if value is not None:
            return parse_flag(value, f"Git config {DURABLE_CONFIG}")
    return True


class StorageConfig(BaseModel):
    """Settings of a :class:`~progreg.StorageManager` (defaults match the reference system)."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid", defer_build=True)

    storage_path: Path = Field(
        default=Path(DEFAULT_PATH),
        description="the registry's directory (default: $PROGREG_PATH, else"
        " $PROGREG_STORAGE_PATH, else ./dspy_storage)",
    )
    auto_save: bool = Field(
        default=True, description="when false, save_optimization_result saves nothing"
    )
    save_intermediate_results: bool = Field(
        default=False, description="also record every checkpoint as a save on main"
    )
    max_stored_programs: int = Field(
        default=100, ge=0, description="unprotected programs kept by cleanup_old_programs"
    )
    protected_tags: list[str] = Field(
        default_factory=lambda: ["production"],
        description="programs with any of these tags are never removed by cleanup",
    )
    durable: bool | None = Field(
        default=None,
        description="flush every write to the disk before returning (None: PROGREG_DURABLE,"
        " else the registry's progreg.durable Git config, else on)",
    )
    secrets: SecretsPolicy = Field(
        default="refuse",
        description="a program holding credentials is refused ('refuse') or saved with them"
        " replaced by [REDACTED] ('redact')",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        values = dict(data)
        for name in cls.model_fields:
            if name == "storage_path":
                env = path_in_environment()
            else:
                env = os.environ.get(_ENV_PREFIX + name.upper())
            if name in values or env is None:
                continue
            values[name] = (
                [t.strip() for t in env.split(",") if t.strip()]
                if (name == "protected_tags")
                else env
            )
        return values

    @field_validator("protected_tags")
    @classmethod
    def _valid_tags(cls, tags: list[str]) -> list[str]:
        return check_tags(tags)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            sources = sorted(
                _ENV_PREFIX + str(error["loc"][0]).upper()
                for error in exc.errors()
                if error["loc"] and error["loc"][0] not in values
            )
            hint = f" (check the environment: {', '.join(sources)})" if sources else ""
            raise InvalidInputError(f"invalid storage configuration{hint}: {exc}") from exc

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid storage configuration: {exc}") from exc
