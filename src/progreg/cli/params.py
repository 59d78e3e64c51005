"""Argument types of the subcommands, with shell completion from the registry.

Completion reads the registry named on the command line being completed
(``--registry`` or ``PROGREG_PATH``) and never creates one; any problem
simply yields no suggestions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from progreg import ProgramStorage, ProgregError
from progreg.cli.render import format_score
from progreg.core.ids import is_program_id
from progreg.registry.locations import registry_path_from_environment

_REVISION = re.compile(r"(?P<id>[^~]+)(?:~(?P<back>[0-9]{1,9}))?")


def _completion_storage(ctx: click.Context) -> ProgramStorage | None:
    registry = ctx.find_root().params.get("registry")
    path = Path(registry or registry_path_from_environment())
    if not path.is_dir() or not any(path.iterdir()):
        return None
    try:
        return ProgramStorage(path, read_only=True)  # completion never writes
    except ProgregError:
        return None


def _complete(
    ctx: click.Context, incomplete: str, names: Callable[[ProgramStorage], Iterable[CompletionItem]]
) -> list[CompletionItem]:
    storage = _completion_storage(ctx)
    if storage is None:
        return []
    try:
        return [item for item in names(storage) if str(item.value).startswith(incomplete)]
    except (ProgregError, OSError):
        return []


def _program_items(storage: ProgramStorage) -> list[CompletionItem]:
    return [
        CompletionItem(
            program.program_id,
            help=f"{program.signature_class or '-'} {format_score(program.best_score)}",
        )
        for program in storage.list_programs()
    ]


class ProgramIdType(click.ParamType[str]):
    """A program id: 16 hexadecimal characters (upper case is accepted and lowered)."""

    name = "id"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """The id in lower case; anything else is a usage error."""
        program_id = value.lower()
        if not is_program_id(program_id):
            self.fail(f"{value!r} is not a program id (16 hexadecimal characters)", param, ctx)
        return program_id

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        """The ids of the registry's programs."""
        return _complete(ctx, incomplete.lower(), _program_items)


class RevisionType(click.ParamType[tuple[str, int]]):
    """``ID`` or ``ID~N``: a program, or its version N saves before the newest; or a label
    reference ``SIGNATURE@LABEL`` (checked by the library)."""

    name = "id[~n]"

    def convert(
        self, value: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        """``(program id, N)``; anything else is a usage error."""
        if "@" in value and "~" not in value:
            return value, 0  # a label reference: the library checks its names
        match = _REVISION.fullmatch(value)
        if match is None or not is_program_id(match["id"].lower()):
            self.fail(f"{value!r} is not ID or ID~N (ID: 16 hexadecimal characters)", param, ctx)
        return match["id"].lower(), int(match["back"] or 0)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        """The ids of the registry's programs."""
        return _complete(ctx, incomplete.lower(), _program_items)


class CheckpointNameType(click.ParamType[str]):
    """A checkpoint name (checked by the library), completed from the checkpoint branches."""

    name = "name"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        """The names of the registry's checkpoints."""

        def names(storage: ProgramStorage) -> list[CompletionItem]:
            return [CompletionItem(name) for name in storage.checkpoint_names()]

        return _complete(ctx, incomplete, names)


class TagType(click.ParamType[str]):
    """A tag name (checked by the library), completed from the registry's tags."""

    name = "tag"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        """The tags in use in the registry."""

        def names(storage: ProgramStorage) -> list[CompletionItem]:
            tags = {tag for names in storage.all_tags().values() for tag in names}
            return [CompletionItem(tag) for tag in sorted(tags)]

        return _complete(ctx, incomplete, names)


class SignatureType(click.ParamType[str]):
    """A signature name, completed from the registry's programs."""

    name = "signature"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        """The signatures of the registry's programs."""

        def names(storage: ProgramStorage) -> list[CompletionItem]:
            programs = storage.list_programs()
            found = {p.signature_class for p in programs if p.signature_class is not None}
            return [CompletionItem(name) for name in sorted(found)]

        return _complete(ctx, incomplete, names)


class LabelType(click.ParamType[str]):
    """A label name (checked by the library), completed from the registry's labels."""

    name = "label"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        """The labels in use on main (of the signature given before, if any)."""
        signature = ctx.params.get("signature")

        def names(storage: ProgramStorage) -> list[CompletionItem]:
            found = storage.labels(signature if isinstance(signature, str) else None)
            return [
                CompletionItem(name) for name in sorted({n for ls in found.values() for n in ls})
            ]

        return _complete(ctx, incomplete, names)


PROGRAM_ID = ProgramIdType()
REVISION = RevisionType()
CHECKPOINT_NAME = CheckpointNameType()
TAG = TagType()
SIGNATURE = SignatureType()
LABEL = LabelType()
