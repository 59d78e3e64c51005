"""Tags: labels on programs, stored as annotated Git tags ``refs/tags/<tag>/<program_id>``.

Each tag ref points at an annotated tag object (tagger and time record who
labelled what, when) whose target is the commit that recorded the tagged
version of the program. Tags are immutable: tagging again is a no-op, and
``untag`` deletes the ref. ``git tag -l`` lists them as ``<tag>/<program_id>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from progreg.core.ids import is_program_id
from progreg.core.layout import TAGS_PREFIX
from progreg.core.names import check_name
from progreg.errors import InvalidInputError
from progreg.git import GitRepository, Identity, TagPlan
from progreg.git.locking import write_lock
from progreg.git.refs.reflist import names_under

_HEX = re.compile(r"[0-9a-f]*")


def check_tags(tags: Iterable[str] | None) -> list[str]:
    """Validated, de-duplicated tag names, in the order given (``None``: no tags)."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    try:
        names = list(tags)
    except TypeError:
        raise InvalidInputError(
            f"tags must be a list of tag names, not {type(tags).__name__}"
        ) from None
    unique: list[str] = []
    for tag in names:
        check_name("tag", tag, TAGS_PREFIX)
        if tag not in unique:
            unique.append(tag)
    return unique


def tag_ref(tag: str, program_id: str) -> str:
    """The ref of ``tag`` on ``program_id``."""
    return f"{TAGS_PREFIX}{tag}/{program_id}"


def create_tags(
    git: GitRepository, program_id: str, commit: str, tags: Iterable[str], tagger: Identity
) -> list[str]:
    """Tag ``commit`` (which records ``program_id``) with ``tags``; return the tags created."""
    names = list(tags)
    return [
        tag
        for tag, plan in zip(names, tag_plans(program_id, names, tagger), strict=True)
        if git.create_tag(plan.name, commit, tagger, plan.message)
    ]


def tag_plans(program_id: str, tags: Iterable[str], tagger: Identity) -> list[TagPlan]:
    """The annotated tags ``<tag>/<program_id>`` that tag a program, as a save makes them."""
    return [
        TagPlan(f"{tag}/{program_id}", tagger, f"Tag program {program_id} as {tag}\n")
        for tag in tags
    ]


def created_by_program(names: Iterable[str]) -> dict[str, list[str]]:
    """``{program_id: [tag, ...]}`` of tag names ``<tag>/<program_id>``, in their order."""
    by_program: dict[str, list[str]] = {}
    for name in names:
        tag, _, program_id = name.rpartition("/")
        by_program.setdefault(program_id, []).append(tag)
    return by_program


def delete_tags(git: GitRepository, program_id: str, tags: Iterable[str]) -> list[str]:
    """Remove ``tags`` from ``program_id``; return the tags that were there.

    Under the registry's write lock: deleting a packed ref rewrites
    ``packed-refs``, which maintenance packs under the same lock.
    """
    with write_lock(git.path, git.lock_timeout):
        return [tag for tag in tags if git.delete_ref(tag_ref(tag, program_id))]


def all_tags(git: GitRepository) -> dict[str, set[str]]:
    """Every program's tags: ``{program_id: {tag, ...}}``."""
    tags: dict[str, set[str]] = {}
    for name in names_under(git.path, TAGS_PREFIX):
        tag, _, program_id = name.rpartition("/")
        if tag and is_program_id(program_id):
            tags.setdefault(program_id, set()).add(tag)
    return tags


def tagged(git: GitRepository, tags: Iterable[str]) -> set[str]:
    """The ids of the programs carrying at least one of ``tags`` (validated names).

    Reads only the refs under ``refs/tags/<tag>/`` of each tag, whatever the
    number of other tags in the registry.
    """
    found: set[str] = set()
    for tag in tags:
        found.update(names_under(git.path, f"{TAGS_PREFIX}{tag}/"))
    if not _all_program_ids(found):
        found = set(filter(is_program_id, found))
    return found


def _all_program_ids(names: set[str]) -> bool:
    """True when every name is a program id (one check over them all)."""
    return set(map(len, names)) <= {16} and _HEX.fullmatch("".join(names)) is not None
