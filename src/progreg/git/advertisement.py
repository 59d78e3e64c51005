"""A server's ref advertisement (``gitprotocol-pack``), read without a pass per ref.

A registry's remote advertises one ref per tag (and a peeled line for each):
hundreds of thousands of lines, of which a push needs a handful (the refs it
moves, the branches). The advertisement is kept as one block of bytes in
which those refs are looked up; only when many are asked for is it indexed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pygit2

from progreg.errors import RemoteError
from progreg.git.refupdates import ZERO

BRANCHES = b"refs/heads/"
_ZERO = ZERO.encode()
_OID = re.compile("[0-9a-f]{40}")
#: Lookups answered by searching the block before it is indexed.
_SEARCHES = 32


class Advertisement:
    """The refs a server holds and the capabilities it offers."""

    def __init__(self, block: bytes = b"\n", capabilities: frozenset[str] = frozenset()) -> None:
        self._block = block  # "\n<id> <ref>\n" for each ref (a line may end in two newlines)
        self._index: dict[bytes, bytes] | None = None
        self._searches = 0
        self.capabilities = capabilities

    def _find(self, ref: bytes) -> bytes | None:
        block, key = self._block, b" " + ref + b"\n"
        at = block.find(key)
        while at != -1:
            if at >= 41 and block[at - 41 : at - 40] == b"\n":
                return block[at - 40 : at]
            at = block.find(key, at + 1)
        return None

    def _indexed(self) -> dict[bytes, bytes]:
        if self._index is None:
            lines = self._block.split(b"\n")
            self._index = {line[41:]: line[:40] for line in lines if line}
        return self._index

    def get(self, ref: str) -> str | None:
        """The id ``ref`` has on the server, or ``None`` when it has no such ref."""
        self._searches += 1
        name = ref.encode()
        oid = self._find(name) if self._searches <= _SEARCHES else self._indexed().get(name)
        return None if oid is None or oid == _ZERO else _checked(oid)

    def branches(self) -> list[pygit2.Oid]:
        """The ids of the server's branches."""
        found: list[pygit2.Oid] = []
        block, key = self._block, b" " + BRANCHES
        at = block.find(key)
        while at != -1:
            if at >= 41 and block[at - 41 : at - 40] == b"\n" and block[at - 40 : at] != _ZERO:
                found.append(pygit2.Oid(hex=_checked(block[at - 40 : at])))
            at = block.find(key, at + 1)
        return found


def _checked(oid: bytes) -> str:
    text = oid.decode(errors="replace")
    if _OID.fullmatch(text) is None:
        raise RemoteError(f"the server advertised an invalid object id {text[:50]!r}")
    return text


def parse_advertisement(lines: Sequence[bytes], where: str) -> Advertisement:
    """The :class:`Advertisement` in the pkt-line payloads ``lines``.

    Only the first line (the one with the capabilities) is checked here; the
    ids of the refs a push uses are checked when they are looked up.
    """
    if not lines:
        return Advertisement()
    if lines[0].startswith(b"ERR "):
        raise RemoteError(f"{where} refused the push: {lines[0][4:].decode(errors='replace')}")
    first, _, capabilities = lines[0].partition(b"\0")
    first = first.rstrip(b"\n")
    if len(first) < 42 or first[40:41] != b" ":
        raise RemoteError(f"{where} sent a malformed ref advertisement: {first[:100]!r}")
    block = b"\n".join([b"", first, *lines[1:], b""])
    return Advertisement(block, frozenset(capabilities.decode(errors="replace").split()))
