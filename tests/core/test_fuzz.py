"""Fuzzing the readers of untrusted bytes: bundle headers, packs, deltas, documents,
a push server's replies (ref advertisements, side-band, reports, as dulwich's
client reads them for progreg's push) and
Git's object checks (:mod:`progreg.git.objects.fsck`).

Inputs are mutations of VALID seeds (bundles made by progreg and by ``git
bundle create``, thin ones included; their packs, entries and deltas;
canonical program documents): bit flips, truncations, insertions, length and
count fields changed, delta instructions rewritten, entries re-compressed.
A pack's SHA-1 trailer is usually recomputed after a mutation, so that the
parsers behind the checksum are reached. The only outcomes allowed are a
result or a ProgregError (BundleError, CorruptProgramError...): never
IndexError, struct.error, zlib.error, MemoryError, RecursionError or a hang.
Each input runs under a watchdog (:func:`bounded`) and, for the pure readers,
with its Python memory measured.

The number of inputs is the hypothesis profile's (tests/conftest.py) times
:data:`SCALE`; every run prints how many inputs each target executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import signal
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pygit2
import pytest
from dulwich.client import TraditionalGitClient
from dulwich.protocol import Protocol
from hypothesis import event, given, settings
from hypothesis import strategies as st

from progreg import ProgramStorage, ProgregError, PushRejectedError
from progreg.core.canonical import decode
from progreg.core.document import decode_document
from progreg.core.secrets import may_hold_secrets
from progreg.git.bundle import format as bundles
from progreg.git.bundle import unbundle
from progreg.git.errors import MalformedObjectError
from progreg.git.objects import encoding as objects
from progreg.git.objects import fsck
from progreg.git.objects.delta import apply_delta, make_delta
from progreg.git.pack import format as packs
from progreg.git.wire.credentials import CredentialSource
from progreg.git.wire.smartpush import send_with
from progreg.registry.checkpoints import Checkpoints
from support.gitcli import delta_varint, git

IDENTITY = "Fuzz Er <fuzz@example.com>"
#: Each fuzz target runs this many times the profile's examples (600 with "ci").
SCALE = 10
EXAMPLES = (settings.default.max_examples if settings.default else 100) * SCALE
#: Largest object the fuzzed pack readers accept: bounds what an input may allocate.
MAX_OBJECT = 1 << 20
#: Python memory one input may take at its peak, for the pure readers.
MAX_PEAK = 48 * MAX_OBJECT
#: Seconds one input may run before it counts as a hang.
WATCHDOG = 20.0

#: How many inputs each target executed in this session (printed at the end).
EXECUTIONS: dict[str, int] = {}


class Hang(Exception):
    """An input ran longer than the watchdog allows."""


@contextlib.contextmanager
def bounded(target: str, *, memory: bool = False) -> Iterator[None]:
    """Count one execution of ``target``; fail it if it hangs (or, with ``memory``, bloats)."""
    EXECUTIONS[target] = EXECUTIONS.get(target, 0) + 1

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"{target}: an input ran longer than {WATCHDOG} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, WATCHDOG)
    if memory:
        tracemalloc.start()
    try:
        yield
        if memory:
            _, peak = tracemalloc.get_traced_memory()
            assert peak <= MAX_PEAK, f"{target}: one input took {peak} bytes of memory"
    finally:
        if memory:
            tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def allowed(call: Callable[[], Any]) -> Any:
    """Run ``call``; a ProgregError is an allowed outcome (returned), anything else fails.

    The outcome is recorded as a hypothesis event (``--hypothesis-show-statistics``).
    """
    try:
        result = call()
    except ProgregError as exc:
        event(f"{type(exc).__name__}: {_gist(str(exc))}")
        return exc
    event("accepted")
    return result


def _gist(message: str) -> str:
    """The kind of a refusal: its message without paths, ids and numbers."""
    words = [word for word in message.split() if not any(c.isdigit() or c == "/" for c in word)]
    return " ".join(words[:7])


# -- seeds --------------------------------------------------------------------------------


class Seeds:
    """Valid inputs to mutate, made once per session with progreg and the git CLI.

    A plain class: hypothesis prints a failing example's arguments, and these are large.
    """

    def __init__(
        self,
        bundles: list[bytes],
        deltas: list[tuple[bytes, bytes]],
        documents: list[bytes],
        repo: ProgramStorage,
        empty: ProgramStorage,
    ) -> None:
        self.bundles = bundles
        self.packs = [_pack_of(data) for data in bundles]
        self.deltas = deltas  # (base, delta)
        self.documents = documents
        self.repo = repo  # holds every seed's objects: the thin packs' bases
        self.empty = empty  # holds nothing: unpacking into it must refuse thin packs

    def __repr__(self) -> str:
        return f"Seeds({len(self.bundles)} bundles, {len(self.documents)} documents)"


def _program(i: int, demos: int = 3) -> dict[str, Any]:
    return {
        "predict": {
            "demos": [{"question": f"q{i}-{d} " * 4, "answer": f"a{d}"} for d in range(demos)],
            "signature": {"instructions": f"Answer question {i} carefully. " * 3},
            "lm": None,
        }
    }


def _pack_of(bundle: bytes) -> bytes:
    header = bundles.parse_header(bundle)
    return bundle[header.pack_offset :]


@pytest.fixture(scope="session")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    base = tmp_path_factory.mktemp("fuzz-seeds")
    storage = ProgramStorage(base / "registry", author=IDENTITY, committer=IDENTITY)
    first = storage.save_program(_program(0), {"best_score_value": 0.5}, tags=["prod"])
    for version in range(1, 4):
        storage.save_program(_program(version, 3 + version), None, program_id=first.program_id)
    Checkpoints(storage.registry).create(_program(9), None, "run-1")
    full = storage.export_registry(base / "full.bundle")
    storage.save_program(_program(10, 5), None, program_id=first.program_id)
    storage.export_registry(base / "thin.bundle", since=full.commit)
    git(storage.path, "bundle", "create", "-q", str(base / "git.bundle"), "--all")
    git(
        storage.path,
        "bundle",
        "create",
        "-q",
        str(base / "git-thin.bundle"),
        f"{full.commit}..main",
    )
    made = [base / name for name in ("full.bundle", "thin.bundle", "git.bundle", "git-thin.bundle")]
    raw_bundles = [path.read_bytes() for path in made]
    deltas = [
        (a, make_delta(a, b) or b"")
        for a, b in (
            (b"abcdefgh" * 40, b"abcdefgh" * 39 + b"XYZ"),
            (bytes(range(256)) * 3, bytes(range(256)) * 2 + b"tail"),
        )
    ]
    documents = []
    for summary in storage.list_programs():
        path = f"main:programs/{summary.program_id[:2]}/{summary.program_id[2:4]}"
        documents.append(git(storage.path, "cat-file", "blob", f"{path}/{summary.program_id}.json"))
    empty = ProgramStorage(base / "empty", author=IDENTITY, committer=IDENTITY)
    return Seeds(raw_bundles, deltas, [doc.encode() for doc in documents], storage, empty)


# -- mutations ----------------------------------------------------------------------------


def _varint_size(kind: int, size: int) -> bytes:
    return packs.entry_header(kind, size)


def with_trailer(body: bytes) -> bytes:
    """``body`` (a pack without its trailer) with a correct SHA-1 trailer."""
    return body + hashlib.sha1(body).digest()


@st.composite
def mutated(draw: st.DrawFn, data: bytes, focus: int = 0) -> bytes:
    """``data`` with 1-4 byte-level mutations, positions biased to its first ``focus`` bytes."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            out += draw(st.binary(min_size=1, max_size=8))
            continue
        limit = len(out) - 1
        if focus and draw(st.booleans()):
            limit = min(limit, focus)
        at = draw(st.integers(0, limit))
        operation = draw(
            st.sampled_from(["flip", "set", "truncate", "insert", "delete", "duplicate", "word"])
        )
        if operation == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            out[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif operation == "truncate":
            del out[at:]
        elif operation == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del out[at : at + draw(st.integers(1, 32))]
        elif operation == "duplicate":
            out[at:at] = out[at : at + draw(st.integers(1, 64))]
        else:  # a 32-bit field (an object count, a size) set to something extreme
            value = draw(
                st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, draw(st.integers(0, 2**32 - 1))])
            )
            out[at : at + 4] = struct.pack(">I", value)
    return bytes(out)


@st.composite
def mutated_pack(draw: st.DrawFn, pack: bytes) -> bytes:
    """A pack mutated in its header, an entry header or its data; trailer mostly fixed."""
    body = pack[:-20]
    strategy = draw(st.sampled_from(["bytes", "count", "entry"]))
    if strategy == "count":
        count = draw(st.sampled_from([0, 1, struct.unpack(">I", body[8:12])[0] + 1, 2**32 - 1]))
        body = body[:8] + struct.pack(">I", count) + body[12:]
    elif strategy == "entry":
        body = draw(mutated_entry(body))
    else:
        body = draw(mutated(body, focus=64))
    if draw(st.integers(0, 9)) == 0:
        return body + draw(st.binary(min_size=0, max_size=20))  # a wrong or short trailer
    return with_trailer(body)


def _entries(body: bytes) -> list[tuple[int, int, int, int, int]]:
    """``(start, kind, size, data start, end)`` of each entry of a valid pack body."""
    view = memoryview(body)
    found = []
    pos = 12
    for _ in range(struct.unpack(">I", body[8:12])[0]):
        start = pos
        kind, size, _, _, _, pos = packs.parse_entry_header(view, pos, len(body))
        inflater = zlib.decompressobj()
        inflater.decompress(body[pos:])
        end = len(body) - len(inflater.unused_data)
        found.append((start, kind, size, pos, end))
        pos = end
    return found


@st.composite
def mutated_entry(draw: st.DrawFn, body: bytes) -> bytes:
    """One entry of the pack rewritten: its size, type, base, or its (re-compressed) data."""
    entries = _entries(body)
    start, kind, size, data_start, end = draw(st.sampled_from(entries))
    head, payload = body[start:data_start], body[data_start:end]
    inflated = zlib.decompress(payload)
    change = draw(st.sampled_from(["size", "type", "data", "zlib", "base"]))
    if change == "size":
        new_size = draw(st.sampled_from([0, max(size - 1, 0), size + 1, 2**35, MAX_OBJECT + 1]))
        head = _varint_size(kind, new_size) + head[len(_varint_size(kind, size)) :]
    elif change == "type":
        head = bytes([(head[0] & 0x8F) | (draw(st.integers(0, 7)) << 4)]) + head[1:]
    elif change == "data":
        inflated = draw(mutated(inflated))
        payload = zlib.compress(inflated)
        head = _varint_size(kind, len(inflated)) + head[len(_varint_size(kind, size)) :]
    elif change == "zlib":
        payload = draw(mutated(payload))
    elif kind == packs.REF_DELTA:
        target = draw(st.sampled_from([b"\x00" * 20, hashlib.sha1(body).digest()]))
        head = head[:-20] + target
    elif kind == packs.OFS_DELTA:
        distance = draw(st.sampled_from([1, start - 12, start, start + 1, 2**40]))
        head = _varint_size(kind, size) + packs.offset_encoding(distance)
    return body[:start] + head + payload + body[end:]


@st.composite
def mutated_delta(draw: st.DrawFn, base: bytes, delta: bytes) -> bytes:
    """A delta with instructions added, truncated or rewritten, or its sizes changed."""
    change = draw(st.sampled_from(["bytes", "copy", "insert", "sizes", "zero"]))
    if change == "bytes":
        return bytes(draw(mutated(delta)))
    if change == "copy":  # a copy instruction with extreme or missing operands
        command = 0x80 | draw(st.integers(0, 0x7F))
        operands = draw(st.binary(min_size=0, max_size=7))
        return delta + bytes([command]) + operands
    if change == "insert":
        count = draw(st.integers(1, 127))
        return delta + bytes([count]) + draw(st.binary(max_size=count + 4))
    if change == "sizes":
        source = draw(st.sampled_from([len(base), len(base) + 1, 0, 2**63]))
        target = draw(st.sampled_from([0, 1, MAX_OBJECT, MAX_OBJECT + 1, 2**62]))
        rest = delta[len(delta_varint(len(base))) :]
        rest = rest[len(delta_varint(_read_target(delta, base))) :]
        return delta_varint(source) + delta_varint(target) + rest
    return delta + b"\x00"


def _read_target(delta: bytes, base: bytes) -> int:
    pos = len(delta_varint(len(base)))
    value = shift = 0
    while True:
        byte = delta[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value


# -- targets ------------------------------------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzz_bundle_headers(seeds: Seeds, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds.bundles))
    header_end = bundles.parse_header(seed).pack_offset
    text = data.draw(mutated(seed[:header_end], focus=header_end))
    with bounded("bundle.parse_header"):
        allowed(lambda: bundles.parse_header(text + seed[header_end:]))


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzz_pack_index(seeds: Seeds, data: st.DataObject) -> None:
    pack = data.draw(mutated_pack(data.draw(st.sampled_from(seeds.packs))))
    odb = seeds.repo.registry.git.repo.odb

    def external(oid: bytes) -> tuple[int, bytes] | None:
        key = pygit2.Oid(raw=oid)
        if key not in odb:
            return None
        kind, raw = odb.read(key)
        return int(kind), raw

    def visit(oid: bytes, kind: int, raw: bytes) -> None:
        if kind != objects.OBJ_BLOB:
            objects.add_references(kind, raw, set())

    with bounded("pack.index_pack", memory=True):
        result = allowed(
            lambda: packs.index_pack(
                memoryview(pack), external=external, visit=visit, max_object_size=MAX_OBJECT
            )
        )
    if isinstance(result, packs.IndexedPack):
        completed, added = packs.complete_thin(pack, result.external)
        assert len(added) == len(result.external)
        assert completed[-20:] == hashlib.sha1(completed[:-20]).digest()


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzz_delta_application(seeds: Seeds, data: st.DataObject) -> None:
    base, delta = data.draw(st.sampled_from(seeds.deltas))
    changed = data.draw(mutated_delta(base, delta))
    with bounded("delta.apply_delta", memory=True):
        result = allowed(lambda: apply_delta(base, changed, MAX_OBJECT))
    assert isinstance(result, MalformedObjectError | bytes)
    if isinstance(result, bytes):
        assert len(result) <= MAX_OBJECT


@settings(max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_fuzz_unbundle_into_a_repository(seeds: Seeds, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(seeds.bundles) - 1))
    seed = seeds.bundles[index]
    header = bundles.parse_header(seed)
    pack = data.draw(mutated_pack(seed[header.pack_offset :]))
    target = data.draw(st.sampled_from([seeds.repo, seeds.empty]))
    path = target.path.parent / "fuzzed.bundle"
    path.write_bytes(seed[: header.pack_offset] + pack)
    repo = target.registry.git.repo
    with bounded("unbundle.unpack"):
        result = allowed(
            lambda: unbundle.unpack(
                repo, path, header, max_object_size=MAX_OBJECT, flag_blob=may_hold_secrets
            )
        )
    if isinstance(result, unbundle.IncomingPack):
        result.close()
    assert not list((target.path / "objects").glob("incoming-*"))


@settings(max_examples=EXAMPLES // 3)
@given(data=st.data())
def test_fuzz_import_of_a_mutated_bundle(seeds: Seeds, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds.bundles))
    header = bundles.parse_header(seed)
    whole = data.draw(st.booleans())
    if whole:
        fuzzed = data.draw(mutated(seed, focus=header.pack_offset + 64))
    else:
        fuzzed = seed[: header.pack_offset] + data.draw(mutated_pack(seed[header.pack_offset :]))
    target = seeds.empty
    path = target.path.parent / "imported.bundle"
    path.write_bytes(fuzzed)
    before = _state(target)
    with bounded("transfer.import_programs"):
        result = allowed(lambda: target.import_programs(path))
    if isinstance(result, ProgregError):
        assert _state(target) == before
    else:  # a mutation Git tolerates (in a ref name, say): undo it for the next input
        _reset(target)


def _state(storage: ProgramStorage) -> tuple[str, list[str]]:
    refs = git(storage.path, "for-each-ref", "--format=%(refname) %(objectname)")
    files = sorted(str(p.relative_to(storage.path)) for p in storage.path.rglob("*"))
    return refs, [f for f in files if not f.endswith("progreg.lock")]


def _reset(storage: ProgramStorage) -> None:
    for ref in git(storage.path, "for-each-ref", "--format=%(refname)").split():
        git(storage.path, "update-ref", "-d", ref)


#: Values that stress a JSON reader: extremes of each type, and wrong types.
odd_values: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        True,
        -1,
        0,
        2**63,
        -(2**63),
        1e308,
        -0.0,
        "",
        "\x00",
        "\u2028",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+05:00",
        "2025-01-01T00:00:00",
        "not a time",
        "../../etc/passwd",
        "0123456789ABCDEF",
        [],
        {},
        {"state": []},
        [[[[[[]]]]]],
    ]
)


@st.composite
def mutated_document(draw: st.DrawFn, seed: bytes) -> bytes:
    """A program document changed as JSON: a field replaced or removed, a key repeated,
    an integer beyond 64 bits, deep nesting, another layout; or changed byte by byte."""
    value = orjson.loads(seed)
    change = draw(
        st.sampled_from(["field", "remove", "repeat", "bignum", "deep", "layout", "bytes"])
    )
    if change == "bytes":
        return bytes(draw(mutated(seed, focus=len(seed))))
    path = draw(
        st.sampled_from(
            [
                ("program_id",),
                ("saved_at",),
                ("format_version",),
                ("program_data",),
                ("program_data", "state"),
                ("program_data", "class_name"),
                ("optimization_result",),
                ("metadata",),
                ("metadata", "signature_class"),
                ("optimization_result", "best_score_value"),
            ]
        )
    )
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if change == "field":
        parent[path[-1]] = draw(odd_values)
    elif change == "remove":
        parent.pop(path[-1], None)
    elif change == "deep":
        parent[path[-1]] = "@DEEP@"
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if change == "deep":  # written by hand: deeper than orjson itself writes
        depth = draw(st.sampled_from([97, 98, 99, 100, 101, 1000, 1100, 100_000]))
        text = text.replace(b'"@DEEP@"', b"[" * depth + b"1" + b"]" * depth)
    elif change == "repeat":
        text = text.replace(b"{\n", b'{\n  "program_id": "0000000000000000",\n', 1)
    elif change == "bignum":
        text = text.replace(b'"format_version": 1', b'"format_version": 18446744073709551616', 1)
    elif change == "layout":
        text = orjson.dumps(value)
    return text


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzz_program_documents(seeds: Seeds, data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from(seeds.documents))
    document = data.draw(mutated_document(seed))
    with bounded("document.decode_document", memory=True):
        allowed(lambda: decode_document(document, "fuzzed"))
        allowed(lambda: decode(document, "fuzzed"))


# -- a push server's replies ---------------------------------------------------------------

FLUSH = b"0000"
MAIN = "refs/heads/main"


def encode(payload: bytes) -> bytes:
    """``payload`` as one pkt-line (``gitprotocol-common``)."""
    return b"%04x" % (len(payload) + 4) + payload


def push_reply(old: str, tag: str) -> bytes:
    """What ``git receive-pack`` sends over ``git://`` for a push moving main from ``old``:
    its advertisement (tags with peeled lines), then a report-status on side-band 1 with a
    hook's message on side-band 2 between its parts, one ref refused."""
    advertisement = (
        encode(
            f"{old} {MAIN}\0report-status side-band-64k delete-refs ofs-delta"
            " agent=git/2.39.5\n".encode()
        )
        + encode(f"{old} refs/heads/checkpoints/run-1\n".encode())
        + encode(f"{old} refs/tags/production/0123456789abcdef\n".encode())
        + encode(f"{old} refs/tags/production/0123456789abcdef^{{}}\n".encode())
        + FLUSH
    )
    report = (
        encode(b"unpack ok\n")
        + encode(f"ok {MAIN}\n".encode())
        + encode(f"ng {tag} already exists\n".encode())
        + FLUSH
    )
    return (
        advertisement
        + encode(b"\x01" + report[:20])
        + encode(b"\x02remote: checked by the hook\n")
        + encode(b"\x01" + report[20:])
        + FLUSH
    )


class _Replay(TraditionalGitClient):
    """A ``git://`` client whose server answers ``reply`` (read as from a socket's file)."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(quiet=True)
        self.reply, self.sent = io.BytesIO(reply), bytearray()

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], None]:
        self.protocol_version = 0
        return Protocol(self.reply.read, self.sent.extend, lambda: None), lambda: False, None


def _push_against(repo: ProgramStorage, reply: bytes) -> Any:
    """progreg's push of main and one tag to a server answering ``reply``."""
    tag = next(iter(repo.registry.git.refs_under("refs/tags/")))
    wanted = repo.registry.git.values_of([MAIN, tag])
    source = CredentialSource("git://fuzzed.invalid/r.git", None, {})
    return send_with(
        lambda _auth: (_Replay(reply), b"/r.git"),
        repo.registry.git.repo,
        wanted,
        "git://fuzzed.invalid/r.git",
        source,
    )


def _seed_reply(repo: ProgramStorage) -> bytes:
    old = git(repo.path, "rev-parse", "main~1").strip()
    return push_reply(old, next(iter(repo.registry.git.refs_under("refs/tags/"))))


@settings(max_examples=EXAMPLES // 4)
@given(data=st.data())
def test_fuzz_push_server_replies(seeds: Seeds, data: st.DataObject) -> None:
    reply = data.draw(mutated(_seed_reply(seeds.repo)))
    with bounded("smartpush.reply"):
        allowed(lambda: _push_against(seeds.repo, reply))


def test_the_push_reply_seed_is_read_as_valid(seeds: Seeds) -> None:
    tag = next(iter(seeds.repo.registry.git.refs_under("refs/tags/")))
    with pytest.raises(PushRejectedError) as refused:
        _push_against(seeds.repo, _seed_reply(seeds.repo))
    assert refused.value.reasons == {tag: "already exists"}
    assert "checked by the hook" in str(refused.value)
    assert "1 other ref(s) were updated: refs/heads/main" in str(refused.value)


def _raw_objects(storage: ProgramStorage) -> list[tuple[int, bytes]]:
    """Every commit, tree and tag of ``storage``, raw."""
    odb = storage.registry.git.repo.odb
    found = [odb.read(oid) for oid in odb]
    return [(int(kind), data) for kind, data in found if int(kind) != objects.OBJ_BLOB]


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzz_fsck_object_checks(seeds: Seeds, data: st.DataObject) -> None:
    """Git's fsck rules (gitstore.fsck) on mutated commits, trees and tags: a verdict, never
    an exception, and for trees the fast path agrees with the entry-by-entry reading."""
    kind, seed = data.draw(st.sampled_from(_raw_objects(seeds.repo)))
    changed = data.draw(mutated(seed))
    with bounded("fsck.check_object", memory=True):
        verdict = fsck.check_object(kind, changed)
    event("accepted" if verdict.ok else f"refused: {verdict.errors[0].message_id}")
    if kind == objects.OBJ_TREE:
        assert fsck.check_tree_entries(changed) == verdict


@pytest.fixture(scope="session", autouse=True)
def _report_executions() -> Iterator[None]:
    yield
    if EXECUTIONS:
        shown = ", ".join(f"{name} {count}" for name, count in sorted(EXECUTIONS.items()))
        print(f"\nfuzz executions: {shown} (total {sum(EXECUTIONS.values())})")
