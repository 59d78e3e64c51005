"""``progreg remote``, ``push``, ``pull`` and ``sync``.

Credentials come from the environment (``PROGREG_GIT_USERNAME`` with
``PROGREG_GIT_PASSWORD`` or ``PROGREG_GIT_TOKEN`` for HTTP(S);
``PROGREG_GIT_SSH_KEY`` or the SSH agent for SSH); they are never stored
and never printed. Messages for the person at the terminal (warnings about
diverged checkpoints and differing tags) go to stderr; stdout stays data.

JSON shapes (``--json``): ``remote list``: ``[{"name", "url"}]``; ``push``:
:class:`~progreg.sharing.remotes.PushResult`; ``pull``:
:class:`~progreg.sharing.remotes.PullResult`;
``sync``: ``{"pulled": PullResult, "pushed": PushResult}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import click
from pydantic import BaseModel

from progreg import ProgramStorage, PullResult, PushResult
from progreg.cli.context import Context
from progreg.cli.output import (
    NotFound,
    ProgregCommand,
    ProgregGroup,
    echo_json,
    info,
    json_option,
    open_storage,
)


def _echo_model(model: BaseModel) -> None:
    echo_json(model.model_dump(mode="json"))


def _warn(message: str) -> None:
    info(f"warning: {message}")


@click.group(cls=ProgregGroup)
def remote() -> None:
    """Add, list, change and remove the remotes a registry pushes to and pulls from.

    \b
    Example:
      progreg remote add origin https://git.example.com/team/programs.git
      progreg remote list
      progreg remote set-url origin git@git.example.com:team/programs.git
      progreg remote remove origin
    """


@remote.command("add", cls=ProgregCommand)
@click.argument("name")
@click.argument("url")
@click.pass_obj
def remote_add(ctx: Context, name: str, url: str) -> None:
    """Add remote NAME at URL (a Git URL, or the path of another registry).

    A URL with a password or token in it is refused: credentials belong in
    the environment. A path is stored as an absolute path.

    \b
    Example:
      progreg remote add origin git@github.com:team/programs.git
      progreg remote add shared /mnt/team/registry
    """
    added = open_storage(ctx, create=True).add_remote(name, url)
    click.echo(f"added remote {added.name}: {added.url}")


def _configured(ctx: Context, name: str) -> ProgramStorage:
    """The registry, once it is known to have remote ``name`` (else exit 3)."""
    storage = open_storage(ctx)
    names = [configured.name for configured in storage.remotes()]
    if name not in names:
        raise NotFound(f"no remote named {name!r} (configured: {', '.join(names) or 'none'})")
    return storage


@remote.command("set-url", cls=ProgregCommand)
@click.argument("name")
@click.argument("url")
@click.pass_obj
def remote_set_url(ctx: Context, name: str, url: str) -> None:
    """Point remote NAME at URL, checked as for add.

    \b
    Example:
      progreg remote set-url origin https://git.example.com/team/programs.git
    """
    changed = _configured(ctx, name).set_remote_url(name, url)
    click.echo(f"remote {changed.name} is now {changed.url}")


@remote.command("remove", cls=ProgregCommand)
@click.argument("name")
@click.pass_obj
def remote_remove(ctx: Context, name: str) -> None:
    """Remove remote NAME and its tracking refs (refs/remotes/NAME/).

    The registry's programs, tags and checkpoints stay as they are.

    \b
    Example:
      progreg remote remove origin
    """
    removed = _configured(ctx, name).remove_remote(name)
    click.echo(f"removed remote {removed.name} ({removed.url})")


@remote.command("list", cls=ProgregCommand)
@json_option
@click.pass_obj
def remote_list(ctx: Context, as_json: bool) -> None:
    """List the remotes, one per line: NAME URL (URLs without user names or passwords).

    JSON: a list of {"name", "url"}.

    \b
    Example:
      progreg remote list --json
    """
    remotes = open_storage(ctx).remotes()
    if as_json:
        echo_json([r.model_dump(mode="json") for r in remotes])
        return
    for configured in remotes:
        click.echo(f"{configured.name}\t{configured.url}")


def _show_push(result: PushResult) -> None:
    if not result.updated:
        click.echo(f"{result.remote} ({result.url}) is up to date ({result.up_to_date} refs)")
    else:
        click.echo(
            f"pushed to {result.remote} ({result.url}): {len(result.updated)} ref(s) updated"
            f" ({len(result.created)} new), {result.up_to_date} up to date"
        )
        for ref in result.updated:
            click.echo(f"  {'new' if ref in result.created else 'updated'} {ref}")
    for ref in result.skipped:
        _warn(f"not pushed: {ref} (differs from the remote's)")
    if result.tracking_failure is not None:
        _warn(f"the remote-tracking refs were not moved: {result.tracking_failure}")


def _show_pull(result: PullResult) -> None:
    if result.commit is None:
        main = "main unchanged"
    elif result.fast_forward:
        main = f"main fast-forwarded to {result.commit[:12]}"
    else:
        main = f"main merged (commit {result.commit[:12]})"
    click.echo(
        f"pulled from {result.remote} ({result.url}): {main}; {len(result.added)} added,"
        f" {len(result.updated)} updated, {len(result.removed)} removed;"
        f" {len(result.tags_created)} tag(s) and {len(result.checkpoints_updated)}"
        " checkpoint run(s) brought in"
    )
    if result.resolved:
        settled = ", ".join(result.resolved)
        info(f"settled {len(result.resolved)} change(s) made on both sides: {settled}")
    for label in result.tags_kept:
        _warn(f"tag {label} differs on {result.remote}; kept ours")
    for run in result.checkpoints_diverged:
        _warn(
            f"checkpoint run {run} diverged from {result.remote}'s; kept ours"
            " (rename or delete one side to share both)"
        )


@click.command(cls=ProgregCommand)
@click.argument("remote", default="origin")
@json_option
@click.pass_obj
def push(ctx: Context, remote: str, as_json: bool) -> None:
    """Push main, tags and checkpoints to REMOTE (default: origin).

    Nothing is ever forced: when the remote has moved on, the push is
    refused with the reason (pull first). JSON: {"remote", "url", "updated",
    "created", "up_to_date", "skipped", "main"}.

    Credentials: PROGREG_GIT_USERNAME + PROGREG_GIT_PASSWORD (or PROGREG_GIT_TOKEN)
    for http(s); PROGREG_GIT_SSH_KEY or the SSH agent for ssh. Never stored.

    \b
    Example:
      progreg push origin
    """
    result = open_storage(ctx).push(remote)
    if as_json:
        _echo_model(result)
    else:
        _show_push(result)


#: Whose version a conflict keeps: ``resolve=`` of ProgramStorage.pull and sync.
Side = Literal["ours", "theirs"]

F = TypeVar("F", bound=Callable[..., Any])


def resolution_option(func: F) -> F:
    """``--ours`` / ``--theirs``: how a pull settles programs changed on both sides."""
    return click.option(
        "--ours",
        "resolve",
        flag_value="ours",
        default=None,
        help="Keep this registry's version of every program changed differently on both"
        " sides (theirs stays in history).",
    )(
        click.option(
            "--theirs",
            "resolve",
            flag_value="theirs",
            help="Take the remote's version of every such program (ours stays in history).",
        )(func)
    )


@click.command(cls=ProgregCommand)
@click.argument("remote", default="origin")
@resolution_option
@json_option
@click.pass_obj
def pull(ctx: Context, remote: str, resolve: Side | None, as_json: bool) -> None:
    """Fetch REMOTE (default: origin) and merge its programs, tags and checkpoints.

    Diverged histories are merged with a merge commit. A program changed
    differently on both sides is an error naming it and the fields that
    differ, and nothing is merged; pull again with --ours or --theirs to
    settle every such program one way (both versions stay in history).
    JSON: {"remote", "url", "commit", "fast_forward", "added", "updated",
    "removed", "identical", "resolved", "tags_created", "tags_kept",
    "checkpoints_updated", "checkpoints_diverged", "ignored"}.

    Credentials: PROGREG_GIT_USERNAME + PROGREG_GIT_PASSWORD (or PROGREG_GIT_TOKEN)
    for http(s); PROGREG_GIT_SSH_KEY or the SSH agent for ssh. Never stored.

    \b
    Example:
      progreg pull origin
      progreg pull origin --theirs
    """
    result = open_storage(ctx).pull(remote, resolve=resolve)
    if as_json:
        _echo_model(result)
    else:
        _show_pull(result)


@click.command(cls=ProgregCommand)
@click.argument("remote", default="origin")
@resolution_option
@json_option
@click.pass_obj
def sync(ctx: Context, remote: str, resolve: Side | None, as_json: bool) -> None:
    """Pull from REMOTE (default: origin), then push to it.

    Checkpoint runs that diverged and tags that differ are kept as they are
    on each side (and reported); programs changed differently on both sides
    are settled by --ours or --theirs, as for pull. JSON: {"pulled": <pull's>,
    "pushed": <push's>}.

    Credentials: PROGREG_GIT_USERNAME + PROGREG_GIT_PASSWORD (or PROGREG_GIT_TOKEN)
    for http(s); PROGREG_GIT_SSH_KEY or the SSH agent for ssh. Never stored.

    \b
    Example:
      PROGREG_GIT_TOKEN=... progreg sync origin
    """
    result = open_storage(ctx).sync(remote, resolve=resolve)
    if as_json:
        _echo_model(result)
        return
    _show_pull(result.pulled)
    _show_push(result.pushed)
