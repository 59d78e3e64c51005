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

#: Returns at least one byte and at most ``n`` (what has arrived), ``b""`` at the end.
Receive = Callable[[int], bytes]
_CHUNK = 1 << 16


def encode(payload: bytes) -> bytes:
    """``payload`` as one pkt-line."""
    if len(payload) + 4 > MAX_PKT:
        raise ValueError(f"a pkt-line holds at most {MAX_PKT - 4} bytes, not {len(payload)}")
    return b"%04x" % (len(payload) + 4) + payload


class PktReader:
    """Reads pkt-lines from a byte stream (a socket or an HTTP response), buffered."""

    def __init__(self, receive: Receive, where: str) -> None:
        self._receive = receive
        self._buffer = b""
        self._position = 0
        self.where = where

    def _have(self, size: int) -> int:
        """Buffer at least ``size`` unread bytes if the stream has them; return how many."""
        available = len(self._buffer) - self._position
        if available >= size:
            return available
        chunks = [self._buffer[self._position :]]
        while available < size:
            chunk = self._receive(max(_CHUNK, size - available))
            if not chunk:
                break
            chunks.append(chunk)
            available += len(chunk)
        self._buffer, self._position = b"".join(chunks), 0
        return available

    def read(self) -> bytes | None:
        """The next payload, or ``None`` for a flush packet or the end of the stream."""
        available = self._have(4)
        if available == 0:
            return None
        if available < 4:
            raise RemoteError(f"{self.where} closed the connection in the middle of a reply")
        start = self._position
        head = self._buffer[start : start + 4]
        try:
            length = int(head, 16)
        except ValueError:
            raise RemoteError(f"{self.where} sent a malformed reply: {head!r}") from None
        if length == 0:
            self._position += 4
            return None
        if length < 4 or length > MAX_PKT:
            raise RemoteError(f"{self.where} sent a pkt-line of invalid length {length}")
        if self._have(length) < length:
            raise RemoteError(f"{self.where} closed the connection in the middle of a reply")
        start = self._position
        self._position = start + length
        return self._buffer[start + 4 : start + length]

    def section(self) -> list[bytes]:
        """Every payload up to the next flush packet (or the end of the stream).

        The pkt-lines already buffered are cut out in one tight loop: a ref
        advertisement can hold hundreds of thousands of them.
        """
        lines: list[bytes] = []
        while True:
            buffer, position = self._buffer, self._position
            end = len(buffer)
            while position + 4 <= end:
                try:
                    length = int(buffer[position : position + 4], 16)
                except ValueError:
                    break
                if length < 4 or position + length > end:
                    break  # a flush, an error or an incomplete line: read() sorts it out
                lines.append(buffer[position + 4 : position + length])
                position += length
            self._position = position
            line = self.read()
            if line is None:
                return lines
            lines.append(line)


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


def of_bytes(data: bytes, where: str) -> PktReader:
    """A reader of the pkt-lines in ``data``."""
    chunks = iter((data,))
    return PktReader(lambda _size: next(chunks, b""), where)


def split(data: bytes, where: str) -> list[bytes]:
    """The payloads of the pkt-lines in ``data`` up to its first flush packet."""
    return of_bytes(data, where).section()
