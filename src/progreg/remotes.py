"""Remotes: push, pull and sync a registry with any Git remote."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from progreg.storage import ProgramStorage


class RemoteInfo(BaseModel):
    """A configured remote."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str


class PushResult(BaseModel):
    """What a push updated on the remote."""

    model_config = ConfigDict(frozen=True)


class PullResult(BaseModel):
    """What a pull brought into the registry."""

    model_config = ConfigDict(frozen=True)


class SyncResult(BaseModel):
    """A pull followed by a push."""

    model_config = ConfigDict(frozen=True)

    pulled: PullResult
    pushed: PushResult


def add_remote(storage: ProgramStorage, name: str, url: str) -> RemoteInfo:
    """Add remote ``name`` at ``url``."""
    raise NotImplementedError


def list_remotes(storage: ProgramStorage) -> list[RemoteInfo]:
    """The configured remotes."""
    raise NotImplementedError


def push(storage: ProgramStorage, remote: str, credentials: object = None) -> PushResult:
    """Push main, tags and checkpoints to ``remote``."""
    raise NotImplementedError


def pull(storage: ProgramStorage, remote: str, credentials: object = None) -> PullResult:
    """Fetch ``remote`` and merge its main, tags and checkpoints."""
    raise NotImplementedError


def sync(storage: ProgramStorage, remote: str, credentials: object = None) -> SyncResult:
    """Pull then push."""
    return SyncResult(
        pulled=pull(storage, remote, credentials), pushed=push(storage, remote, credentials)
    )
