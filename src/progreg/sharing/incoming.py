"""Checks on what a fetch brought, made before any of the registry's refs move.

A pull fetches the remote's ``main``, checkpoint branches and tags into its
remote-tracking refs (``refs/remotes/<name>/``). Before ``main``, a tag or a
checkpoint branch of the registry moves, every update the pull would make is
checked as a server's ``pre-receive`` hook checks a push, with
:func:`~progreg.registry.validation.validate_ref_update`, the check a bundle import
makes of its tags and checkpoints:

* ``main``: every commit of theirs that ours lacks (since the merge base),
  by what it changes: no symbolic link, submodule (gitlink), ``.``, ``..`` or
  ``.git`` entry, path that is not UTF-8 or not a registry file, and every
  program file a valid canonical document of its path;
* each tag to create: an annotated tag on a commit holding a valid file for
  its program, in ``main``'s history once theirs is merged (the hook's rule);
* each checkpoint branch to create or fast-forward: every new commit is a
  checkpoint's tree (``progreg.json``, ``checkpoint.json`` naming the run and
  exactly its program).

Refs whose names are not a registry's (a tag without a program id, a
checkpoint with an invalid name) are not checked: the pull ignores them.

Before any of this, the fetch itself has judged every object it brought as
``git fsck --strict`` does (:func:`progreg.git.wire.remote.fetch` with
``check_objects``), and removed them if one was refused.
"""

from __future__ import annotations

import pygit2

from progreg.core.ids import is_program_id
from progreg.core.layout import CHECKPOINTS_PREFIX, MAIN, TAGS_PREFIX
from progreg.core.names import check_name
from progreg.errors import InvalidNameError, RegistryError, RemoteError, SecretDetectedError
from progreg.registry.store import Registry
from progreg.registry.validation import (
    Problem,
    RefUpdate,
    off_main_problem,
    outside_merged_history,
    validate_ref_update,
)

ZERO = "0" * 40
_SHOWN = 5


def is_registry_tag(label: str) -> bool:
    """True when ``label`` (``<tag>/<program id>``) names a registry tag."""
    tag, _, program_id = label.rpartition("/")
    try:
        check_name("tag", tag, TAGS_PREFIX)
    except InvalidNameError:
        return False
    return is_program_id(program_id)


def _main_update(storage: Registry, prefix: str) -> list[RefUpdate]:
    repo = storage.git.repo
    theirs = storage.git.tip(prefix + "main")
    ours = storage.git.tip(MAIN)
    if theirs is None:
        return []
    if ours is not None and (ours.id == theirs.id or repo.descendant_of(ours.id, theirs.id)):
        return []  # nothing of theirs is new here
    base = repo.merge_base(ours.id, theirs.id) if ours is not None else None
    return [RefUpdate(str(base) if base is not None else ZERO, str(theirs.id), MAIN)]


def _tag_updates(storage: Registry, prefix: str) -> list[RefUpdate]:
    repo = storage.git.repo
    updates = []
    for ref in sorted(storage.git.refs_under(prefix + "tags/")):
        label = ref[len(prefix) + len("tags/") :]
        local = TAGS_PREFIX + label
        if is_registry_tag(label) and repo.references.get(local) is None:
            updates.append(RefUpdate(ZERO, str(repo.references[ref].target), local))
    return updates


def _checkpoint_updates(storage: Registry, prefix: str) -> list[RefUpdate]:
    git, repo = storage.git, storage.git.repo
    updates = []
    for ref in sorted(git.refs_under(prefix + "checkpoints/")):
        run = ref[len(prefix) + len("checkpoints/") :]
        try:
            check_name("checkpoint", run, CHECKPOINTS_PREFIX)
            theirs, mine = git.tip(ref), git.tip(CHECKPOINTS_PREFIX + run)
        except (InvalidNameError, RegistryError):
            continue  # ignored by the pull
        if theirs is None or (mine is not None and mine.id == theirs.id):
            continue
        if mine is None:
            updates.append(RefUpdate(ZERO, str(theirs.id), CHECKPOINTS_PREFIX + run))
        elif repo.descendant_of(theirs.id, mine.id):
            updates.append(RefUpdate(str(mine.id), str(theirs.id), CHECKPOINTS_PREFIX + run))
    return updates


def incoming_problems(storage: Registry, prefix: str) -> list[Problem]:
    """The problems of the updates a pull from the refs under ``prefix`` would make."""
    repo = storage.git.repo
    limit = storage.max_program_bytes
    problems: list[Problem] = []
    for update in _main_update(storage, prefix) + _checkpoint_updates(storage, prefix):
        problems += validate_ref_update(repo, update, max_program_bytes=limit)
    tagged: dict[str, pygit2.Oid] = {}
    for update in _tag_updates(storage, prefix):
        found = validate_ref_update(repo, update, max_program_bytes=limit, check_history=False)
        problems += found
        tag = repo.get(update.new)
        if not found and isinstance(tag, pygit2.Tag):
            tagged[update.ref] = tag.target
    if tagged:  # main after the pull holds ours and theirs (merged in, or fast-forwarded)
        ours, theirs = storage.git.tip(MAIN), storage.git.tip(prefix + "main")
        _, neither = outside_merged_history(
            repo,
            set(tagged.values()),
            ours.id if ours is not None else None,
            theirs.id if theirs is not None else None,
        )
        problems += [
            Problem(off_main_problem(str(commit)), ref=ref, commit=str(commit))
            for ref, commit in tagged.items()
            if commit in neither
        ]
    return problems


def check_incoming(storage: Registry, prefix: str, source: str) -> None:
    """Refuse what was fetched under ``prefix`` from ``source`` unless it is a sound registry.

    Raises :class:`~progreg.SecretDetectedError` when the only problems are
    programs holding credentials, :class:`~progreg.RemoteError` otherwise.
    """
    problems = incoming_problems(storage, prefix)
    if not problems:
        return
    more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    if all(problem.secrets for problem in problems):
        listed = "; ".join(
            f"{problem.path} ({', '.join(problem.secrets[:5])})" for problem in problems[:_SHOWN]
        )
        raise SecretDetectedError(
            f"{source} brings programs holding credentials: {listed}{more}; nothing was"
            " pulled. Remove the credentials there (re-save the programs) and pull again.",
            [f"{problem.path}:{path}" for problem in problems for path in problem.secrets],
        )
    shown = "; ".join(str(problem) for problem in problems[:_SHOWN])
    raise RemoteError(
        f"{source} is not a sound registry: {shown}{more}; nothing was pulled (this"
        " registry's main, tags and checkpoints are as they were)"
    )


__all__ = ["check_incoming", "incoming_problems", "is_registry_tag"]
