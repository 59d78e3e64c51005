"""Git objects as raw bytes: ids, and the parts of trees, commits and tags progreg reads.

Objects are handled as ``(type, data)`` without the ``"<type> <size>\\0"``
header; ids are 20-byte SHA-1 digests of header plus data.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

from progreg.git.errors import MalformedObjectError

OBJ_COMMIT = 1
OBJ_TREE = 2
OBJ_BLOB = 3
OBJ_TAG = 4
TYPE_NAMES = {OBJ_COMMIT: b"commit", OBJ_TREE: b"tree", OBJ_BLOB: b"blob", OBJ_TAG: b"tag"}

#: ``(type, raw data)`` of an object.
RawObject = tuple[int, bytes]


def object_id(kind: int, data: bytes) -> bytes:
    """The 20-byte SHA-1 id of an object of type ``kind`` with content ``data``."""
    digest = hashlib.sha1(b"%s %d\x00" % (TYPE_NAMES[kind], len(data)))
    digest.update(data)
    return digest.digest()


_TREE_ENTRY = re.compile(rb"([0-7]{5,6}) ([^\x00/]+)\x00(.{20})", re.DOTALL)
_TREE_ALL = re.compile(rb"(?:[0-7]{5,6} [^\x00/]+\x00.{20})*", re.DOTALL)
_TREE_REFS = re.compile(rb"160000 [^\x00/]+\x00.{20}|[0-7]{5,6} [^\x00/]+\x00(.{20})", re.DOTALL)
_HEX40 = rb"[0-9a-f]{40}"
_COMMIT_REFS = re.compile(rb"^(?:tree|parent) (" + _HEX40 + rb")\n", re.MULTILINE)
_TAG_OBJECT = re.compile(rb"object (" + _HEX40 + rb")\ntype (commit|tree|blob|tag)\n")
_COMMIT_TREE = re.compile(rb"tree (" + _HEX40 + rb")\n")
_PARENT = re.compile(rb"^parent (" + _HEX40 + rb")$", re.MULTILINE)

TREE_MODE = b"40000"
GITLINK_MODE = b"160000"
_RAW_ENTRY = re.compile(rb"[0-7]{5,6} [^\x00]+\x00.{20}", re.DOTALL)


def tree_entries(data: bytes) -> list[bytes]:
    """A tree's raw entries (``mode SP name NUL id``), unparsed (trusted data only)."""
    return _RAW_ENTRY.findall(data)


def split_entry(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """``(mode, name, id)`` of one raw tree entry."""
    space = raw.index(b" ")
    return raw[:space], raw[space + 1 : -21], raw[-20:]


def parse_tree(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """The ``(mode, name, id)`` entries of a tree; :class:`MalformedObjectError` if malformed."""
    if _TREE_ALL.fullmatch(data) is None:
        raise MalformedObjectError("a tree object is malformed")
    return _TREE_ENTRY.findall(data)


def add_references(kind: int, data: bytes, into: set[bytes]) -> None:
    """Add to ``into`` the ids an object refers to (see :func:`references`); the fast path."""
    if kind == OBJ_TREE:
        if _TREE_ALL.fullmatch(data) is None:
            raise MalformedObjectError("a tree object in the pack is malformed")
        into.update(_TREE_REFS.findall(data))  # gitlinks add b"": the caller discards it
    elif kind != OBJ_BLOB:
        into.update(references(kind, data))


def references(kind: int, data: bytes) -> list[bytes]:
    """The ids an object refers to (tree entries but gitlinks, tree and parents, tag target)."""
    if kind == OBJ_TREE:
        if _TREE_ALL.fullmatch(data) is None:
            raise MalformedObjectError("a tree object in the pack is malformed")
        return [ref for ref in _TREE_REFS.findall(data) if ref]
    if kind == OBJ_COMMIT:
        header = data.split(b"\n\n", 1)[0] + b"\n"
        found = _COMMIT_REFS.findall(header)
        if not found or not header.startswith(b"tree "):
            raise MalformedObjectError("a commit object in the pack is malformed (no tree)")
        return [bytes.fromhex(ref.decode()) for ref in found]
    if kind == OBJ_TAG:
        match = _TAG_OBJECT.match(data)
        if match is None:
            raise MalformedObjectError("a tag object in the pack is malformed")
        return [bytes.fromhex(match.group(1).decode())]
    return []


def commit_tree(data: bytes) -> bytes:
    """The tree id of a commit's raw data."""
    match = _COMMIT_TREE.match(data)
    if match is None:
        raise ValueError("not a commit: no tree line")
    return bytes.fromhex(match.group(1).decode())


def commit_parents(data: bytes) -> list[bytes]:
    """The parent ids of a commit's raw data."""
    header = data.split(b"\n\n", 1)[0]
    return [bytes.fromhex(p.decode()) for p in _PARENT.findall(header)]


def parents_first(
    parents: Mapping[bytes, Sequence[bytes]], starts: Iterable[bytes] | None = None
) -> Iterator[bytes]:
    """The commits of ``parents`` (``{id: parent ids}``), each after its parents among them.

    Walked depth first, without recursion, from ``starts`` (default: the ids
    in ``parents``' order); parents that are not keys are left out.
    """
    done: set[bytes] = set()
    for start in parents if starts is None else starts:
        if start in done:
            continue
        stack = [(start, 0)]
        done.add(start)
        while stack:
            oid, index = stack.pop()
            own = parents[oid]
            if index < len(own):
                stack.append((oid, index + 1))
                parent = own[index]
                if parent in parents and parent not in done:
                    done.add(parent)
                    stack.append((parent, 0))
                continue
            yield oid


def tag_target(data: bytes) -> tuple[bytes, int]:
    """The id and type of the object an annotated tag points at."""
    match = _TAG_OBJECT.match(data)
    if match is None:
        raise ValueError("not a tag object")
    kinds = {name: kind for kind, name in TYPE_NAMES.items()}
    return bytes.fromhex(match.group(1).decode()), kinds[match.group(2)]


def encode_tree(entries: Iterable[tuple[bytes, bytes, bytes]]) -> bytes:
    """A tree's raw data from ``(mode, name, id)`` entries, in Git's order."""

    def key(entry: tuple[bytes, bytes, bytes]) -> bytes:
        mode, name, _ = entry
        return name + b"/" if mode == TREE_MODE else name

    return b"".join(
        mode + b" " + name + b"\x00" + oid for mode, name, oid in sorted(entries, key=key)
    )


def encode_commit(
    tree: bytes, parents: Iterable[bytes], author: bytes, committer: bytes, message: bytes
) -> bytes:
    """A commit's raw data, as Git (and libgit2) writes it: ids are raw, people are
    ``Name <email> <seconds> <+hhmm>``."""
    lines = [b"tree " + tree.hex().encode()]
    lines += [b"parent " + parent.hex().encode() for parent in parents]
    lines += [b"author " + author, b"committer " + committer]
    return b"\n".join(lines) + b"\n\n" + message


def encode_tag(target: str, kind: bytes, name: str, tagger: str, message: str) -> bytes:
    """An annotated tag's raw data, as ``git tag -a`` (and libgit2) writes it.

    ``target`` is the tagged object's hex id, ``kind`` its type (``b"commit"``),
    ``tagger`` a person as Git writes it (``Name <email> <seconds> <+hhmm>``).
    """
    return (
        f"object {target}\ntype {kind.decode()}\ntag {name}\ntagger {tagger}\n\n{message}"
    ).encode()


def with_signature(content: bytes, signature: bytes, field: bytes = b"gpgsig") -> bytes:
    """``content`` (a commit's raw data) with ``signature`` as a header after the others.

    Continuation lines start with a space, as ``git commit -S`` writes them.
    """
    header, separator, message = content.partition(b"\n\n")
    if not separator:
        raise ValueError("not a commit: no blank line after the header")
    value = signature.replace(b"\n", b"\n ")
    return header + b"\n" + field + b" " + value + b"\n\n" + message
