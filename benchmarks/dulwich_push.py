"""A dulwich-based smart push with progreg's object selection, for measurement only.

``_push_smart`` of :mod:`progreg.git.remote` with dulwich's client (``git://``
and smart HTTP) in place of progreg's send-pack: the same ref planning
(:func:`~progreg.git.refupdates.plan`) and the same objects
(:func:`~progreg.git.pushobjects.missing_objects`), handed to dulwich as its
pack generator. bench_push.py swaps it in for one of its remotes.
"""

from __future__ import annotations

from collections.abc import Iterator, Set

import pygit2
from dulwich.client import get_transport_and_path
from dulwich.pack import UnpackedObject

from progreg.errors import RemoteError
from progreg.git.pushobjects import missing_objects
from progreg.git.refupdates import ZERO, PushOutcome, plan, rejected
from progreg.git.urls import redact_url


def push_smart(
    repo: pygit2.Repository, url: str, wanted: dict[str, str], credentials: object
) -> PushOutcome:
    """Push ``wanted`` to ``url`` through dulwich (no credentials: the benchmark's daemon)."""
    shown = redact_url(url)
    client, path = get_transport_and_path(url, operation="push")
    outcome: dict[str, object] = {}

    def update_refs(old: dict[bytes, bytes]) -> dict[bytes, bytes]:
        def advertised(ref: str) -> str | None:
            value = old.get(ref.encode())
            return None if value is None or value == ZERO.encode() else value.decode()

        updates, up_to_date, reasons = plan(repo, wanted, advertised)
        if reasons:
            raise rejected(shown, reasons)
        outcome["updates"], outcome["up_to_date"] = updates, up_to_date
        outcome["branches"] = [
            pygit2.Oid(hex=v.decode()) for r, v in old.items() if r.startswith(b"refs/heads/")
        ]
        return {u.ref.encode(): u.new.encode() for u in updates}

    def generate(
        have: Set[bytes], want: Set[bytes], *, ofs_delta: bool = False, progress: object = None
    ) -> tuple[int, Iterator[UnpackedObject]]:
        branches = outcome["branches"]
        assert isinstance(branches, list)
        objects = missing_objects(repo, [pygit2.Oid(hex=w.decode()) for w in want], branches)
        records = (
            UnpackedObject(kind, sha=oid.hex().encode(), decomp_chunks=[data])
            for oid, kind, data in objects
        )
        return len(objects), records

    result = client.send_pack(path, update_refs, generate)  # type: ignore[arg-type]
    updates = outcome.get("updates", [])
    assert isinstance(updates, list)
    status = result.ref_status or {}
    refused = {u.ref: status[u.ref.encode()] for u in updates if status.get(u.ref.encode())}
    if refused:
        raise RemoteError(f"{shown} refused {refused}")
    up_to_date = outcome.get("up_to_date", [])
    assert isinstance(up_to_date, list)
    return PushOutcome(updates, up_to_date)
