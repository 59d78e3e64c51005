"""Reading the label files of a tree of ``main`` (``labels/<signature>.json``).

Shared by the registry's writes (a delete must not leave a label dangling),
the label operations and the checks of pushed commits; it reads only the
``labels/`` directory, whatever the number of programs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pygit2
from pygit2.enums import FileMode

from progreg.core.labels import decode_labels, label_path, signature_of_path
from progreg.core.layout import LABELS_DIR, MAIN
from progreg.git import GitRepository
from progreg.git.objects.trees import blob_at


def read_labels(tree: pygit2.Tree, signature: str, where: str = "") -> dict[str, str]:
    """The labels of ``signature`` in ``tree`` (``{}`` without a label file)."""
    path = label_path(signature)
    blob = blob_at(tree, path)
    if blob is None:
        return {}
    return decode_labels(blob.data, f"{path}{where}")


def resolve_label(git: GitRepository, signature: str, label: str, where: str = "") -> str | None:
    """The program ``signature``'s ``label`` names at the tip of ``main``, or ``None``.

    One tree path and one blob from the tip (as pinned, for a registry opened at
    a revision): the cost does not depend on the number of programs.
    """
    tip = git.tip(MAIN)
    if tip is None:
        return None
    return read_labels(tip.tree, signature, where).get(label)


def label_files(repo: pygit2.Repository, tree: pygit2.Tree) -> Iterator[tuple[str, pygit2.Oid]]:
    """``(signature, blob id)`` of every label file in ``tree``, by signature."""
    try:
        entry = tree[LABELS_DIR]
    except KeyError:
        return
    if entry.filemode != FileMode.TREE:
        return
    directory = repo[entry.id]
    assert isinstance(directory, pygit2.Tree)
    for item in sorted(directory, key=lambda e: e.name or ""):
        signature = signature_of_path(f"{LABELS_DIR}/{item.name}")
        if signature is not None and item.filemode == FileMode.BLOB:
            yield signature, item.id


def all_labels(repo: pygit2.Repository, tree: pygit2.Tree) -> dict[str, dict[str, str]]:
    """Every signature's labels in ``tree``: ``{signature: {label: program id}}``."""
    found: dict[str, dict[str, str]] = {}
    for signature, blob_id in label_files(repo, tree):
        _kind, data = repo.odb.read(blob_id)
        labels = decode_labels(data, label_path(signature))
        if labels:
            found[signature] = dict(sorted(labels.items()))
    return found


def labels_naming(
    repo: pygit2.Repository, tree: pygit2.Tree, program_ids: Iterable[str]
) -> list[tuple[str, str, str]]:
    """``(signature, label, program id)`` of labels in ``tree`` naming any of ``program_ids``."""
    wanted = set(program_ids)
    if not wanted:
        return []
    return [
        (signature, label, program_id)
        for signature, labels in all_labels(repo, tree).items()
        for label, program_id in labels.items()
        if program_id in wanted
    ]


def dangling_message(found: list[tuple[str, str, str]], what: str) -> str:
    """Why ``what`` (a delete) is refused: the labels that would name a removed program."""
    listed = ", ".join(f"{sig}@{label} -> {program_id}" for sig, label, program_id in found[:10])
    first_sig, first_label, _ = found[0]
    return (
        f"{what} is refused: label(s) {listed} name the program(s) it would remove. Move or"
        f" remove them first (progreg label set {first_sig} {first_label} <other id>, or"
        f" progreg label remove {first_sig} {first_label}); nothing was changed"
    )
