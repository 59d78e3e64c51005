"""Git's pkt-line framing and side-band demultiplexing (``gitprotocol-common``).

A pkt-line is four hexadecimal digits giving its length (those four
included) and then the payload; ``0000`` is a *flush* packet, which ends a
section. With ``side-band-64k`` every payload of the server's response
starts with a band number: 1 is data, 2 is progress and messages (a hook's
output), 3 is a fatal error.
"""

from __future__ import annotations

from collections.abc import Callable

from progreg.errors import RemoteError

FLUSH = b"0000"
#: Longest pkt-line Git sends or accepts (65520 bytes, the four length digits included).
MAX_PKT = 65520

#: Reads up to ``n`` bytes; returns ``b""`` at the end of the stream.
Read = Callable[[int], bytes]


def encode(payload: bytes) -> bytes:
    """``payload`` as one pkt-line."""
    if len(payload) + 4 > MAX_PKT:
        raise ValueError(f"a pkt-line holds at most {MAX_PKT - 4} bytes, not {len(payload)}")
    return b"%04x" % (len(payload) + 4) + payload


class PktReader:
    """Reads pkt-lines from a byte stream (a socket or an HTTP response)."""

    def __init__(self, read: Read, where: str) -> None:
        self._read = read
        self.where = where

    def _exactly(self, size: int) -> bytes:
        chunks: list[bytes] = []
        while size:
            chunk = self._read(size)
            if not chunk:
                raise RemoteError(f"{self.where} closed the connection in the middle of a reply")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def read(self) -> bytes | None:
        """The next payload, or ``None`` for a flush packet or the end of the stream."""
        head = self._read(4)
        if not head:
            return None
        if len(head) < 4:
            head += self._exactly(4 - len(head))
        try:
            length = int(head, 16)
        except ValueError:
            raise RemoteError(f"{self.where} sent a malformed reply: {head!r}") from None
        if length == 0:
            return None
        if length < 4 or length > MAX_PKT:
            raise RemoteError(f"{self.where} sent a pkt-line of invalid length {length}")
        return self._exactly(length - 4)

    def section(self) -> list[bytes]:
        """Every payload up to the next flush packet (or the end of the stream)."""
        lines: list[bytes] = []
        while (line := self.read()) is not None:
            lines.append(line)
        return lines


def demultiplex(reader: PktReader, progress: Callable[[bytes], None]) -> bytes:
    """The band-1 data of a side-band response, handing band 2 to ``progress``.

    Raises :class:`~progreg.RemoteError` with the server's message on band 3.
    """
    data = bytearray()
    while (packet := reader.read()) is not None:
        band, payload = packet[:1], packet[1:]
        if band == b"\x01":
            data += payload
        elif band == b"\x02":
            progress(payload)
        elif band == b"\x03":
            message = payload.decode(errors="replace").strip()
            raise RemoteError(f"{reader.where} failed: {message}")
        else:
            raise RemoteError(f"{reader.where} sent data on unknown side-band {band!r}")
    return bytes(data)


def split(data: bytes, where: str) -> list[bytes]:
    """The payloads of the pkt-lines in ``data`` up to its first flush packet."""
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        chunk = data[position : position + size]
        position += len(chunk)
        return chunk

    return PktReader(read, where).section()
