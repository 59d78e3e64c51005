"""progreg's own ``send-pack``: a push over Git's smart protocol (version 0).

The exchange (``gitprotocol-pack``), over any :class:`Transport`:

1. the server advertises its refs and capabilities;
2. every ref to push is judged against the advertised value, before
   anything is sent (:func:`~progreg.git.refupdates.plan`: branches
   only fast-forward, tags never move);
3. progreg sends one ``<old> <new> <ref>`` command per update, a flush and a
   pack of the objects the server lacks
   (:func:`~progreg.git.pushobjects.missing_objects`);
4. the server answers with its report (``unpack ok``, then ``ok <ref>`` or
   ``ng <ref> <reason>`` for each ref), on side-band 1, and what its hooks
   printed on side-band 2; a refusal becomes
   :class:`~progreg.PushRejectedError` with the server's reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import pygit2

from progreg._version import __version__
from progreg.errors import RemoteError
from progreg.git.advertisement import parse_advertisement
from progreg.git.pack import pack_bytes
from progreg.git.pktline import FLUSH, PktReader, demultiplex, encode, split
from progreg.git.pushobjects import missing_objects
from progreg.git.refupdates import (
    ZERO,
    PushOutcome,
    RefUpdate,
    hinted,
    plan,
    rejected,
    remote_lines,
)
from progreg.git.urls import scrub

#: What the server prints on side-band 2 (a hook's reasons) is kept up to this size.
MAX_SIDEBAND = 64 * 1024


class Transport(Protocol):
    """A connection to a server's ``git-receive-pack``."""

    def advertise(self) -> PktReader:
        """Start the exchange; return a reader positioned at the ref advertisement."""

    def send(self, request: bytes) -> PktReader:
        """Send the commands and the pack; return a reader of the server's report."""

    def finish(self) -> None:
        """End an exchange that sends no command."""


def commands(updates: Sequence[RefUpdate], capabilities: Sequence[str]) -> bytes:
    """The command pkt-lines for ``updates``, the first carrying ``capabilities``, and a flush."""
    out = bytearray()
    for index, update in enumerate(updates):
        line = f"{update.old or ZERO} {update.new} {update.ref}".encode()
        if index == 0:
            line += b"\0" + " ".join(capabilities).encode()
        out += encode(line + b"\n")
    return bytes(out + FLUSH)


def parse_report(lines: Sequence[bytes], where: str) -> dict[str, str | None]:
    """Each ref's verdict in a report-status (``None``: accepted); raise if unpacking failed."""
    if not lines or not lines[0].startswith(b"unpack "):
        raise RemoteError(f"{where} sent no push report: the push may not have happened")
    unpack = lines[0][7:].decode(errors="replace").strip()
    if unpack != "ok":
        raise RemoteError(f"{where} could not store the pushed objects: {unpack}")
    statuses: dict[str, str | None] = {}
    for raw in lines[1:]:
        line = raw.decode(errors="replace").rstrip("\n")
        verdict, _, rest = line.partition(" ")
        if verdict == "ok":
            statuses[rest] = None
        elif verdict == "ng":
            ref, _, reason = rest.partition(" ")
            statuses[ref] = reason or "refused"
    return statuses


class _Printed:
    """What the server printed on side-band 2, up to :data:`MAX_SIDEBAND` bytes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def __call__(self, data: bytes) -> None:
        if self.size < MAX_SIDEBAND:
            self.chunks.append(data)
            self.size += len(data)

    def lines(self, secrets: tuple[str, ...]) -> list[str]:
        text = b"".join(self.chunks).decode(errors="replace")
        return [scrub(line, secrets) for line in remote_lines(text)]


def send_pack(
    repo: pygit2.Repository,
    transport: Transport,
    wanted: Mapping[str, str],
    where: str,
    secrets: tuple[str, ...] = (),
) -> PushOutcome:
    """Push ``wanted`` (ref name to new value) through ``transport`` to ``where`` (redacted)."""
    advertised = parse_advertisement(transport.advertise().section(), where)
    updates, up_to_date, reasons = plan(repo, wanted, advertised.get)
    if reasons:
        transport.finish()
        raise rejected(where, reasons)
    if not updates:
        transport.finish()
        return PushOutcome([], up_to_date)
    offered = advertised.capabilities
    if "report-status" not in offered:
        transport.finish()
        raise RemoteError(f"{where} cannot report the result of a push (no report-status)")
    sideband = "side-band-64k" if "side-band-64k" in offered else None
    sideband = sideband or ("side-band" if "side-band" in offered else None)
    asked = ["report-status", *([sideband] if sideband else [])]
    asked += ["quiet"] if "quiet" in offered else []
    asked.append(f"agent=progreg/{__version__}")
    branches = advertised.branches()
    objects = missing_objects(repo, [pygit2.Oid(hex=u.new) for u in updates], branches)
    pack, _entries = pack_bytes(objects)
    reply = transport.send(commands(updates, asked) + pack)
    printed = _Printed()
    lines = split(demultiplex(reply, printed), where) if sideband else reply.section()
    statuses = parse_report(lines, where)
    said = printed.lines(secrets)
    unreported = "the server did not report on this ref"
    refused = {
        u.ref: hinted(scrub(statuses.get(u.ref) or unreported, secrets))
        for u in updates
        if u.ref not in statuses or statuses[u.ref] is not None
    }
    accepted = [u for u in updates if u.ref not in refused]
    if refused:
        raise rejected(where, refused, said, accepted)
    return PushOutcome(accepted, up_to_date)
