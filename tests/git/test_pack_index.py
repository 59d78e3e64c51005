"""The pack indexer against git: long delta chains under tiny budgets, released pages, indexes."""

from __future__ import annotations

import hashlib
import io
import random
from array import array
from pathlib import Path

import pygit2
import pytest

from progreg import ProgramStorage
from progreg.git.bundle import unbundle
from progreg.git.errors import MalformedObjectError
from progreg.git.objects import delta as deltas
from progreg.git.objects import encoding as objects
from progreg.git.pack import format as packs
from progreg.git.pack.mapped import MappedFile
from support.gitcli import assert_fsck_clean, git


def _versions(count: int) -> list[bytes]:
    """``count`` blobs, each the previous one with one line changed."""
    rng = random.Random(7)
    lines = [f"line {n} {rng.random()}\n".encode() for n in range(200)]
    blobs = []
    for n in range(count):
        lines[rng.randrange(len(lines))] = f"changed {n}\n".encode()
        blobs.append(b"".join(lines))
    return blobs


def _chain_pack(path: Path, blobs: list[bytes], external: bytes | None = None) -> bytes:
    """A pack of ``blobs``, each a delta on the one before (the first on ``external``
    when given: a thin pack), with every tenth delta a ``REF_DELTA``."""
    with open(path, "w+b") as out:
        writer = packs.PackWriter(out)
        previous = external
        oids = [objects.object_id(objects.OBJ_BLOB, blob) for blob in blobs]
        for n, (oid, blob) in enumerate(zip(oids, blobs, strict=True)):
            if previous is None:
                writer.add(oid, objects.OBJ_BLOB, blob)
            else:
                base = external if n == 0 else blobs[n - 1]
                assert base is not None
                delta = deltas.make_delta(base, blob)
                assert delta is not None
                base_oid = objects.object_id(objects.OBJ_BLOB, base)
                if n % 10 == 5:  # named by id although it is in the pack
                    offsets = dict(writer.offsets)
                    writer.offsets.pop(base_oid)
                    writer.add_delta(oid, base_oid, delta)
                    writer.offsets.update(offsets)
                else:
                    writer.add_delta(oid, base_oid, delta)
            previous = blob
        writer.finish()
    return path.read_bytes()


def _git_index(tmp_path: Path, pack: bytes) -> bytes:
    """The ``.idx`` ``git index-pack`` writes for ``pack``."""
    pack_path = tmp_path / "git.pack"
    pack_path.write_bytes(pack)
    git(tmp_path, "index-pack", "-o", str(tmp_path / "git.idx"), str(pack_path))
    return (tmp_path / "git.idx").read_bytes()


def test_a_tiny_budget_resolves_a_long_chain_as_git_does(tmp_path: Path) -> None:
    blobs = _versions(120)
    pack = _chain_pack(tmp_path / "chain.pack", blobs)
    seen: dict[bytes, bytes] = {}
    largest = max(len(blob) for blob in blobs)
    indexed = packs.index_pack(
        memoryview(pack),
        external=lambda _: None,
        visit=lambda oid, _, data: seen.__setitem__(oid, data),
        max_object_size=1 << 20,
        max_retained_bytes=2 * largest,  # the base and the object rebuilt on it
    )
    assert seen == {objects.object_id(objects.OBJ_BLOB, blob): blob for blob in blobs}
    out = io.BytesIO()
    indexed.write_index(out)
    assert out.getvalue() == _git_index(tmp_path, pack)


def test_a_chain_needing_more_bases_than_allowed_is_refused(tmp_path: Path) -> None:
    blobs = _versions(30)
    pack = _chain_pack(tmp_path / "chain.pack", blobs)
    with pytest.raises(MalformedObjectError, match="bytes of delta bases at once"):
        packs.index_pack(
            memoryview(pack),
            external=lambda _: None,
            visit=lambda *_: None,
            max_object_size=1 << 20,
            max_retained_bytes=len(blobs[0]) // 2,
        )


def test_a_thin_chain_is_completed_as_git_completes_it(tmp_path: Path) -> None:
    base, *blobs = _versions(40)
    base_oid = objects.object_id(objects.OBJ_BLOB, base)
    pack = _chain_pack(tmp_path / "thin.pack", blobs, external=base)
    asked: list[bytes] = []

    def external(oid: bytes) -> tuple[int, bytes] | None:
        asked.append(oid)
        return (objects.OBJ_BLOB, base) if oid == base_oid else None

    indexed = packs.index_pack(
        memoryview(pack), external=external, visit=lambda *_: None, max_object_size=1 << 20
    )
    assert asked == [base_oid]
    out = io.BytesIO()
    checksum, added = packs.write_completed(out, memoryview(pack), indexed.external)
    completed = out.getvalue()
    assert (completed, added) == packs.complete_thin(pack, indexed.external)
    assert completed[-20:] == checksum == hashlib.sha1(completed[:-20]).digest()
    index = io.BytesIO()
    indexed.write_index(index, added, checksum)
    assert index.getvalue() == _git_index(tmp_path, completed)


def test_released_pages_are_read_again(tmp_path: Path) -> None:
    blobs = _versions(80)
    path = tmp_path / "chain.pack"
    pack = _chain_pack(path, blobs)
    releases: list[tuple[int, int]] = []
    with MappedFile(path) as mapped:

        def release(start: int, end: int) -> None:
            releases.append((start, end))
            mapped.release()  # everything, every time

        indexed = packs.index_pack(
            mapped.view,
            external=lambda _: None,
            visit=lambda *_: None,
            max_object_size=1 << 20,
            max_retained_bytes=1 << 16,
            release=release,
        )
        entries = indexed.entries
    plain = packs.index_pack(
        memoryview(pack), external=lambda _: None, visit=lambda *_: None, max_object_size=1 << 20
    )
    assert releases and entries == plain.entries


def test_the_index_written_from_arrays_is_write_index_s() -> None:
    rng = random.Random(3)
    oids = [rng.randbytes(20) for _ in range(3000)]
    oids += oids[:50]  # ids given twice: indexed at their first offset
    offsets = array("Q", sorted(rng.sample(range(12, 1 << 33), len(oids))))
    crcs = array("I", (rng.getrandbits(32) for _ in oids))
    entries = [packs.IndexEntry(*row) for row in zip(oids, offsets, crcs, strict=True)]
    checksum = rng.randbytes(20)
    expected, written = io.BytesIO(), io.BytesIO()
    packs.write_index(expected, entries, checksum)
    packs.write_sorted_index(written, b"".join(oids), offsets, crcs, checksum)
    assert written.getvalue() == expected.getvalue()


def test_refs_are_checked_through_fresh_handles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = ProgramStorage(tmp_path / "source", author="T <t@example.com>")
    ids = [source.save_program({"n": n}, tags=["prod"]).program_id for n in range(5)]
    source.export_registry(tmp_path / "all.bundle")
    opened: list[int] = []
    repository = unbundle.IncomingPack.repository

    def counted(self: unbundle.IncomingPack) -> pygit2.Repository:
        opened.append(1)
        return repository(self)

    monkeypatch.setattr(unbundle, "USES_PER_HANDLE", 2)
    monkeypatch.setattr(unbundle.IncomingPack, "repository", counted)
    target = ProgramStorage(tmp_path / "target")
    result = target.import_programs(tmp_path / "all.bundle")
    assert sorted(result.tags_created) == sorted(f"refs/tags/prod/{i}" for i in ids)
    assert len(opened) >= 5  # 6 refs, then 5 tags to check: a new handle every 2
    tags = git(target.path, "for-each-ref", "--format=%(refname)", "refs/tags").split()
    assert sorted(tags) == sorted(result.tags_created)
    assert_fsck_clean(target.path)
