"""Coverage-guided fuzzing of progreg's readers of untrusted bytes, with atheris.

The readers: a bundle's header, a pack (indexing, inflating, resolving
deltas), a delta on its own, a program document, and Git's object checks
(``fsck``: the first byte picks commit, tree or tag, the rest is the object;
the tree fast path must agree with the entry-by-entry reading). Any exception but a
``ProgregError`` is a crash, which atheris reports with the input.

This is a companion to ``tests/core/test_fuzz.py`` (bounded, in every test run),
for long runs by hand. atheris is not a test dependency: it ships binary
wheels for CPython on Linux x86-64, elsewhere it needs clang to build::

    pip install atheris
    python fuzz/fuzz_readers.py --corpus fuzz/corpus          # seeds made with progreg
    python fuzz/fuzz_readers.py pack fuzz/corpus/pack -max_total_time=600
    python fuzz/fuzz_readers.py delta fuzz/corpus/delta -runs=1000000

The pack target appends the SHA-1 trailer to its input, so that mutations
reach the parsers behind the checksum instead of stopping at it.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["progreg"]):
    from progreg import ProgramStorage, ProgregError
    from progreg.core.document import decode_document
    from progreg.git.bundle import format as bundles
    from progreg.git.objects import fsck
    from progreg.git.objects.delta import apply_delta, make_delta
    from progreg.git.pack import format as packs

#: Largest object the fuzzed readers accept: bounds what one input may allocate.
MAX_OBJECT = 1 << 20
#: The base every delta input applies to: bytes a delta can copy from.
DELTA_BASE = bytes(range(256)) * 8


def _header(data: bytes) -> None:
    bundles.parse_header(data, "fuzzed")


def _pack(data: bytes) -> None:
    pack = data + hashlib.sha1(data).digest()
    packs.index_pack(
        memoryview(pack),
        external=lambda _oid: None,
        visit=lambda *_: None,
        max_object_size=MAX_OBJECT,
        max_retained_bytes=16 * MAX_OBJECT,
    )


def _delta(data: bytes) -> None:
    apply_delta(DELTA_BASE, data, MAX_OBJECT)


def _document(data: bytes) -> None:
    decode_document(data, "fuzzed")


def _fsck(data: bytes) -> None:
    kind = (1, 2, 4)[data[0] % 3 if data else 0]  # commit, tree or tag
    verdict = fsck.check_object(kind, data[1:])
    if kind == 2 and fsck.check_tree_entries(data[1:]) != verdict:
        raise AssertionError("the tree fast path disagrees with the full reading")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "header": _header,
    "pack": _pack,
    "delta": _delta,
    "document": _document,
    "fsck": _fsck,
}


def make_corpus(directory: Path) -> None:
    """Seed inputs for every target, written by progreg itself."""
    with tempfile.TemporaryDirectory() as scratch:
        storage = ProgramStorage(Path(scratch) / "registry", author="Fuzz <fuzz@example.com>")
        first = storage.save_program({"demos": [{"q": "why?", "a": "because"}] * 3}, None)
        for version in range(3):
            state = {"demos": [{"q": f"why {version}?", "a": "because"}] * (3 + version)}
            storage.save_program(state, {"best_score_value": 0.5}, program_id=first.program_id)
        bundle = storage.export_registry(Path(scratch) / "all.bundle").path
        data = Path(bundle).read_bytes()
        header = bundles.parse_header(data)
        document = storage.git.read(
            storage.git.tip("refs/heads/main").tree, _path(first.program_id)
        )
    seeds = {
        "header": [data[: header.pack_offset]],
        "pack": [data[header.pack_offset : -20]],
        "delta": [make_delta(DELTA_BASE, DELTA_BASE[:-7] + b"changed") or b""],
        "document": [document or b"{}"],
        "fsck": _object_seeds(storage),
    }
    for target, inputs in seeds.items():
        (directory / target).mkdir(parents=True, exist_ok=True)
        for number, seed in enumerate(inputs):
            (directory / target / f"seed-{number}").write_bytes(seed)


def _object_seeds(storage: ProgramStorage) -> list[bytes]:
    """Every commit, tree and tag of ``storage``, with its type byte first (see :func:`_fsck`)."""
    odb = storage.git.repo.odb
    seeds = []
    for oid in odb:
        kind, data = odb.read(oid)
        if int(kind) in (1, 2, 4):
            seeds.append(bytes([{1: 0, 2: 1, 4: 2}[int(kind)]]) + data)
    return seeds


def _path(program_id: str) -> str:
    return f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--corpus":
        make_corpus(Path(sys.argv[2]))
        return
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [corpus dir] [libFuzzer flags]")
    target = TARGETS[sys.argv.pop(1)]

    def one_input(data: bytes) -> None:
        with contextlib.suppress(ProgregError):  # a refusal is the right outcome
            target(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
