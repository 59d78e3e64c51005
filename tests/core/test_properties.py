"""Properties of progreg on any input hypothesis can make: round trips or typed refusals.

Each property states what must hold for EVERY input, and checks it on real
registries with the real ``git`` command line:

- any JSON-like document (state, optimization_result metadata, metadata) is
  either stored exactly (it loads equal, float signs and integer sizes kept,
  and its canonical bytes are stable) or refused with a ProgregError that
  names where the problem is, and the registry is left as it was;
- any string used as a tag, checkpoint or remote name is either accepted,
  and what it creates stays in its namespace, or refused with InvalidNameError;
- any bytes given to an import (as a file, a reference export, a
  ``dspy_storage/`` folder file) or committed by plain git as a program file
  are read correctly or refused with a ProgregError, the registry unchanged.

Examples are bounded by the hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from progreg import (
    InvalidNameError,
    NotJSONError,
    ProgramStorage,
    ProgregError,
    SecretDetectedError,
    StorageManager,
)
from progreg.core import secrets
from progreg.core.canonical import MAX_DEPTH, encode
from progreg.core.document import decode_document
from progreg.core.secrets import find_secrets, may_hold_secrets, redact_secrets
from progreg.registry.checkpoints import Checkpoints
from support.gitcli import commit_file, git, registry_state

IDENTITY = "Prop Erty <prop@example.com>"
#: Examples of the properties that import (each checks the registry with the git CLI).
IMPORT_EXAMPLES = max(10, (settings.default.max_examples if settings.default else 100) // 2)
INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1

# -- strategies ---------------------------------------------------------------------------

#: Any code point, lone surrogates included (hypothesis leaves them out by default).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
#: Keys: mostly valid text, sometimes an int or a surrogate-holding string.
keys = st.one_of(any_text, any_text, any_text, st.integers(-5, 5))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=INT64_MIN, max_value=UINT64_MAX),
    st.integers(),  # any size: beyond 64 bits must be refused
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from([-0.0, 0.0, 5e-324, 1.7976931348623157e308, -(2.0**1023), 1e-300]),
    any_text,
)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=12,
)

#: Only what canonical JSON holds: the documents that must round-trip.
clean_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=INT64_MIN, max_value=UINT64_MAX),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def representable(value: Any, depth: int) -> bool:
    """The oracle: what progreg's canonical JSON can hold exactly, ``value`` being ``depth``
    levels down in the stored document (its state is 2 levels down, its metadata 1)."""
    if isinstance(value, list | tuple | dict) and depth >= MAX_DEPTH:
        return False
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= UINT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not any(0xD800 <= ord(char) <= 0xDFFF for char in value)  # lone surrogates
    if isinstance(value, list | tuple):
        return all(representable(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(
            isinstance(key, str) and representable(key, 0) and representable(item, depth + 1)
            for key, item in value.items()
        )
    return False


def same(stored: Any, given_value: Any) -> bool:
    """Equal as JSON: tuples are lists; floats keep their sign; ints stay ints."""
    if isinstance(given_value, tuple):
        given_value = list(given_value)
    if type(stored) is not type(given_value):
        return False
    if isinstance(stored, float):
        return stored == given_value and math.copysign(1, stored) == math.copysign(1, given_value)
    if isinstance(stored, list):
        return len(stored) == len(given_value) and all(
            same(a, b) for a, b in zip(stored, given_value, strict=True)
        )
    if isinstance(stored, dict):
        return stored.keys() == given_value.keys() and all(
            same(stored[key], given_value[key]) for key in stored
        )
    return bool(stored == given_value)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> ProgramStorage:
    """One registry for every example of a property (a registry per example is slow)."""
    storage = ProgramStorage(
        tmp_path_factory.mktemp("properties") / "registry", author=IDENTITY, committer=IDENTITY
    )
    storage.save_program({"seed": True})
    return storage


def blob_of(storage: ProgramStorage, program_id: str) -> bytes:
    path = f"main:programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"
    return subprocess.run(
        ["git", "-C", str(storage.path), "cat-file", "blob", path], capture_output=True, check=True
    ).stdout


# -- documents ----------------------------------------------------------------------------


@given(state=json_like, result_notes=json_like, metadata_value=json_like)
def test_any_document_round_trips_exactly_or_is_refused(
    shared: ProgramStorage, state: Any, result_notes: Any, metadata_value: Any
) -> None:
    program = {"value": state}
    result = {"metadata": {"notes": result_notes}}
    metadata = {"extra": metadata_value}
    ok = representable(program, 2) and representable(result, 1) and representable(metadata, 1)
    clean = ok and not any(find_secrets(part) for part in (program, result, metadata))
    before = registry_state(shared.path)
    event("refused" if not clean else "stored")
    if not clean:
        with pytest.raises((NotJSONError, SecretDetectedError)) as caught:
            shared.save_program(program, result, metadata)
        if isinstance(caught.value, NotJSONError):
            assert caught.value.path.split(".")[0].split("[")[0] in (
                "program state",
                "optimization_result",
                "metadata",
                "program",
            )
        assert registry_state(shared.path) == before
        return
    saved = shared.save_program(program, result, metadata)
    loaded = shared.load_program(saved.program_id)
    assert loaded is not None
    assert same(loaded.state, program)
    assert same(loaded.optimization_result["metadata"]["notes"], result_notes)
    assert same(loaded.metadata["extra"], metadata_value)
    stored = blob_of(shared, saved.program_id)
    doc = decode_document(stored, "stored", saved.program_id)
    assert doc.encode() == stored  # canonical bytes are stable through a load
    assert encode(loaded.state) == encode(program)
    again = shared.save_program(loaded.state, loaded.optimization_result, loaded.metadata)
    reloaded = shared.load_program(again.program_id)
    assert reloaded is not None
    assert encode(reloaded.state) == encode(program)


@given(depth=st.integers(min_value=MAX_DEPTH - 5, max_value=MAX_DEPTH * 40))
def test_deep_nesting_is_refused_with_the_limit_not_a_recursion_error(
    shared: ProgramStorage, depth: int
) -> None:
    value = deep(depth)
    if representable({"v": value}, 2):
        assert shared.load_program(shared.save_program({"v": value}).program_id) is not None
        return
    before = registry_state(shared.path)
    with pytest.raises(NotJSONError, match=f"deeper than {MAX_DEPTH} levels"):
        shared.save_program({"v": value})
    assert registry_state(shared.path) == before


# -- secrets ------------------------------------------------------------------------------

#: Credentials in common formats, with the part that must not survive a redaction.
SECRET_VALUES = [
    ("sk-proj-" + "Ab3" * 12, "Ab3Ab3Ab3"),
    ("sk-ant-api03-" + "x9Y" * 10, "x9Yx9Yx9Y"),
    ("sk-" + "a1" * 16, "a1a1a1a1"),
    ("ghp_" + "A1b2" * 9, "A1b2A1b2"),
    ("github_pat_" + "11ABCD_" * 6, "11ABCD_11ABCD"),
    ("AKIA" + "ABCDEFGH12345678", "EFGH1234"),
    ("xoxb-1234567890-abcdefghij", "1234567890-abc"),
    ("AIza" + "Sy" + "A1b2C3d4E5" * 3 + "xyz", "A1b2C3d4E5"),
    ("Bearer abcdefghijklmnopqrstuvwxyz012345", "klmnopqrstuv"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQ==\n-----END RSA PRIVATE KEY-----", "MIIEow"),
    (
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0T",
        "dozjgNryP4J3",
    ),
    ("https://user:hunter2@example.com/v1", "hunter2"),
    ("https://api.example.com/v1?api_key=abcdef123456", "abcdef123456"),
    ("Basic " + base64.b64encode(b"admin:hunter2hunter2").decode(), "YWRtaW46aHVudGVy"),
    (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGN1c2VyAQgAx7k\n"
        "-----END PGP PRIVATE KEY BLOCK-----",
        "lQOYBGN1c2Vy",
    ),
    ("glpat-" + "xY9_kL2mN4pQ7rS1tU3v", "kL2mN4pQ7r"),
    ("npm_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5", "jK9mN1pQ3s"),
    ("pypi-AgEIcHlwaS5vcmc" + "CJDk3YzQ5ZmEtNTY3OC00YjI0LWE2" * 2, "CJDk3YzQ5Zm"),
    ("ya29.a0AfH6SMBx" + "Kq9Lw2Er5Ty8Ui1Op4As" * 2, "Kq9Lw2Er5T"),
    ("GOCSPX-" + "Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9S", "Gh9Ij1Kl3M"),
    ("SG." + "aB3dE5gH7jK9mN1pQ3sT5v." + "wY9zA1bC3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5z", "fG7hI9jK"),
    ("xapp-1-A0123ABCDEF-1234567890123-" + "0a1b2c3d4e5f" * 5, "0a1b2c3d4e5f0a1b"),
    ("whsec_" + "Zx8Cv7Bn6Mq5Wr4Et3Yu2Io1Pa0SdFg", "Mq5Wr4Et3Y"),
    ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "K7MDENG"),
    ("AKIAIOSFODNN7EXAMPLE Zt8mQ2vR9kX4pL7wN1cB6yH3jF5dS0gA2eU8iO4r", "R9kX4pL7wN"),
    # base64 of an OpenAI key at each alignment, in either alphabet, and percent-encoded
    *(
        (encoded, encoded[8:20])
        for lead in (b"", b":", b"k=")
        for encoder in (base64.b64encode, base64.urlsafe_b64encode)
        for encoded in [encoder(lead + b"sk-proj-Q3vT9xLm2Rk8Pz4Wn7Yb1Hc6").decode()]
    ),
    ("%73k-proj-Q3vT9xLm2Rk8Pz4Wn7Yb1Hc6", "Q3vT9xLm2Rk8"),
    ("sk%2Dproj%2DQ3vT9xLm2Rk8Pz4Wn7Yb1Hc6", "Q3vT9xLm2Rk8"),
    ("-----BEGIN%20EC%20PRIVATE%20KEY-----%0AMHcCAQEEIBkg%0A", "MHcCAQEEIBkg"),
]


def _all_escaped(value: Any) -> str:
    """``value`` as JSON whose strings (keys too) are written entirely as ``\\uXXXX`` escapes."""
    if isinstance(value, str):
        units = value.encode("utf-16-be", "surrogatepass")  # JSON escapes UTF-16 code units
        return (
            '"'
            + "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))
            + '"'
        )
    if isinstance(value, dict):
        items = ",".join(f"{_all_escaped(k)}:{_all_escaped(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ",".join(_all_escaped(item) for item in value) + "]"
    return json.dumps(value)


def encodings(value: Any) -> list[bytes]:
    """The same JSON value written several ways: canonical, minified, ASCII-only, all
    characters escaped, and with slashes escaped (as some encoders write them)."""
    minified = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    written = [
        encode(value),
        minified.encode(),
        json.dumps(value, indent=1).encode(),
        _all_escaped(value).encode(),
        minified.replace("/", "\\/").encode(),
    ]
    assert all(json.loads(data) == value for data in written)  # each is the same value
    return written


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


@given(
    document=st.dictionaries(st.text(max_size=8), clean_json, max_size=4),
    secret_and_payload=st.sampled_from(SECRET_VALUES),
    key=st.sampled_from(["api_key", "note", "lm", "Authorization", "x", "openai_key"]),
    prefix=st.sampled_from(["", "my key: ", "line\n", "\t"]),
)
def test_the_quick_secret_test_never_misses_what_the_walk_finds(
    document: dict[str, Any], secret_and_payload: tuple[str, str], key: str, prefix: str
) -> None:
    secret, payload = secret_and_payload
    for candidate in (document, {**document, key: prefix + secret}, {"lm": {key: secret}}):
        findings = find_secrets(candidate)
        if findings:  # however the text is written: the quick test is on bytes, not values
            for data in encodings(candidate):
                assert may_hold_secrets(data), (data, findings)
        cleaned, redacted = redact_secrets(candidate, findings, remove_lm_keys=False)
        assert find_secrets(cleaned) == []
        assert sorted(redacted) == sorted(f.path for f in findings)
        assert not any(payload in text for text in strings(cleaned)), cleaned
    assert find_secrets({**document, key: prefix + secret})


#: Credentials whose encoded forms the walk decodes (base64 runs, percent-escapes).
PLAIN_SECRETS = [
    "sk-proj-Q3vT9xLm2Rk8Pz4Wn7Yb1Hc6",
    "ghp_" + "A1b2" * 9,
    "AKIA" + "ABCDEFGH12345678",
    "glpat-" + "xY9_kL2mN4pQ7rS1tU3v",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGN1c2VyAQgAx7k\n",
]


@given(
    secret=st.sampled_from(PLAIN_SECRETS),
    lead=st.binary(max_size=6),
    before=st.text(max_size=6),
    after=st.text(max_size=6),
    urlsafe=st.booleans(),
    escaped=st.lists(st.booleans(), max_size=40),
)
def test_the_quick_test_never_misses_an_encoded_credential(
    secret: str, lead: bytes, before: str, after: str, urlsafe: bool, escaped: list[bool]
) -> None:
    """Base64 at any alignment (any bytes before the key, any text around the run) and
    any choice of percent-escaped characters: what the walk finds, the bytes test sees."""
    encoder = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encoder(lead + secret.encode()).decode()
    percent = "".join(
        f"%{ord(char):02X}" if index < len(escaped) and escaped[index] else char
        for index, char in enumerate(secret)
    )
    for text in (before + encoded + after, before + percent + after):
        document = {"note": text}
        if find_secrets(document):
            for data in encodings(document):
                assert may_hold_secrets(data), (data, find_secrets(document))
    assert find_secrets({"note": f"{before} {encoded}"}) or lead
    assert find_secrets({"note": f"{before} {percent} {after}"})


BASE64_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#: Texts around a run of 30 to 50 base64 characters (a 40-character AWS secret key's size).
BASE64_ISH = st.tuples(
    st.text(max_size=8),
    st.text(st.sampled_from(BASE64_LETTERS + "_-"), min_size=30, max_size=50),
    st.text(st.sampled_from(BASE64_LETTERS + " .%="), max_size=20),
).map("".join)


@given(text=st.one_of(BASE64_ISH, st.text(max_size=60)))
def test_skipping_hintless_formats_without_a_long_run_changes_no_finding(text: str) -> None:
    """The walk tries the hintless formats (a lone AWS secret key) only on a text holding a
    long base64 run: on any text, that gives what trying them always gives."""
    runs = secrets._BASE64_RUN.findall(text)
    assert [entry.reason for entry, _ in secrets._plain_matches(text, runs)] == [
        entry.reason for entry, _ in secrets._plain_matches(text)
    ]


# -- names --------------------------------------------------------------------------------

names = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,20}", fullmatch=True),
    st.sampled_from(["..", "a..b", "x.lock", "@{", "-x", "a/../b", "HEAD", "main", "a" * 101]),
)


def refs(path: Path) -> set[str]:
    return set(git(path, "for-each-ref", "--format=%(refname)").split())


def config_sections(path: Path) -> set[str]:
    text = git(path, "config", "--file", str(path / "config"), "--list", "--name-only")
    return set(text.split())


@given(name=names)
def test_any_tag_name_stays_in_its_namespace_or_is_refused(
    shared: ProgramStorage, name: str
) -> None:
    manager = StorageManager(storage=shared)
    program_id = shared.list_programs()[0].program_id
    before = refs(shared.path)
    try:
        manager.tag_program(program_id, name)
    except InvalidNameError:
        event("refused")
        assert refs(shared.path) == before
        return
    event("accepted")
    created = refs(shared.path) - before
    assert created <= {f"refs/tags/{name}/{program_id}"}
    assert f"refs/tags/{name}/{program_id}" in refs(shared.path)
    assert git(shared.path, "check-ref-format", f"refs/tags/{name}/{program_id}") == ""


@given(name=names)
def test_any_checkpoint_name_stays_in_its_namespace_or_is_refused(
    shared: ProgramStorage, name: str
) -> None:
    before = refs(shared.path)
    try:
        Checkpoints(shared.registry).create({"step": 1}, None, name)
    except InvalidNameError:
        assert refs(shared.path) == before
        return
    assert refs(shared.path) - before <= {f"refs/heads/checkpoints/{name}"}
    assert f"refs/heads/checkpoints/{name}" in refs(shared.path)


@given(name=names)
def test_any_remote_name_stays_in_its_config_section_or_is_refused(
    shared: ProgramStorage, name: str
) -> None:
    before = config_sections(shared.path)
    try:
        shared.add_remote(name, "https://example.com/registry.git")
    except InvalidNameError:
        assert config_sections(shared.path) == before
        return
    except ProgregError:  # already added by an earlier example
        assert config_sections(shared.path) == before
        return
    added = config_sections(shared.path) - before
    assert added and all(key.startswith(f"remote.{name}.") for key in added), added
    assert git(shared.path, "config", "--get", f"remote.{name}.url").strip() == (
        "https://example.com/registry.git"
    )
    fetch = git(shared.path, "config", "--get-all", f"remote.{name}.fetch").split()
    assert all(spec.split(":")[1].startswith(f"refs/remotes/{name}/") for spec in fetch)


# -- bytes from outside -------------------------------------------------------------------


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times out of four, else ``odd``: deep enough to import, often."""
    return st.one_of(usual, usual, usual, odd)


reference_documents = st.fixed_dictionaries(
    {
        "program_id": mostly(st.from_regex(r"[0-9a-f]{16}", fullmatch=True), any_text),
        "saved_at": mostly(
            st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
            st.one_of(
                st.sampled_from(["9999-12-31T23:59:59-05:00", "0001-01-01T00:00+05:00", "2025"]),
                any_text,
            ),
        ),
        "program_data": mostly(
            st.fixed_dictionaries(
                {"class_name": st.none(), "state": st.dictionaries(st.text(max_size=5), json_like)}
            ),
            json_like,
        ),
        "optimization_result": mostly(st.none(), json_like),
        "metadata": mostly(st.none(), json_like),
    }
)


@settings(max_examples=IMPORT_EXAMPLES)
@given(programs=st.lists(reference_documents, max_size=3), raw=st.binary(max_size=64))
def test_any_reference_export_imports_or_is_refused_unchanged(
    shared: ProgramStorage, tmp_path_factory: pytest.TempPathFactory, programs: Any, raw: bytes
) -> None:
    folder = tmp_path_factory.mktemp("export")
    export = dumps_any({"programs": programs})
    for name, content in (("export.json", export), ("raw.json", b"{" + raw)):
        path = folder / name
        path.write_bytes(content)
        before = registry_state(shared.path)
        try:
            result = shared.import_programs(path)
        except ProgregError as exc:
            event(f"{name}: {type(exc).__name__}")
            assert registry_state(shared.path) == before
            continue
        event(f"{name}: imported {len(result.imported)}")
        for program_id in result.imported + result.identical:
            assert shared.load_program(program_id) is not None


def dumps_any(value: Any) -> bytes:
    """JSON text of anything ``json_like`` makes (NaN as NaN, lone surrogates as themselves)."""
    return json.dumps(value, default=list).encode("utf-8", "surrogatepass")


@settings(max_examples=IMPORT_EXAMPLES)
@given(content=st.one_of(st.binary(max_size=200), json_like.map(dumps_any)))
def test_any_storage_folder_file_imports_or_is_refused_unchanged(
    shared: ProgramStorage, tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    folder = tmp_path_factory.mktemp("dspy_storage")
    (folder / "programs").mkdir()
    (folder / "programs" / "0123456789abcdef.json").write_bytes(content)
    before = registry_state(shared.path)
    try:
        shared.import_programs(folder)
    except ProgregError as exc:
        event(type(exc).__name__)
        assert registry_state(shared.path) == before
    else:
        event("imported")


@settings(max_examples=IMPORT_EXAMPLES)
@given(content=st.binary(max_size=300))
def test_any_bytes_as_a_bundle_are_refused_unchanged(
    shared: ProgramStorage, tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("bundle") / "x.bundle"
    path.write_bytes(b"# v2 git bundle\n" + content)
    before = registry_state(shared.path)
    with pytest.raises(ProgregError):
        shared.import_programs(path)
    assert registry_state(shared.path) == before
    assert not list((shared.path / "objects").glob("incoming-*"))


@pytest.fixture(scope="module")
def source_and_target(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ProgramStorage, ProgramStorage, Path]:
    base = tmp_path_factory.mktemp("committed")
    source = ProgramStorage(base / "source", author=IDENTITY, committer=IDENTITY)
    source.save_program({"seed": 1})
    target = ProgramStorage(base / "target", author=IDENTITY, committer=IDENTITY)
    target.save_program({"other": 1})
    return source, target, base


_IDS = itertools.count(1)


@settings(max_examples=IMPORT_EXAMPLES)
@given(
    raw=st.binary(max_size=100),
    state=mostly(clean_json, json_like),
    saved_at=mostly(
        st.just("2025-01-01T00:00:00.000000+00:00"),
        st.sampled_from(["9999-12-31T23:59:59-05:00", "2025-01-01", 1]),
    ),
    extra=st.dictionaries(st.text(max_size=5), json_like, max_size=2),
    layout=st.sampled_from(["raw", "compact", "indented", "canonical"]),
)
def test_a_program_file_committed_by_git_loads_lists_and_imports_or_is_refused(
    source_and_target: tuple[ProgramStorage, ProgramStorage, Path],
    raw: bytes,
    state: Any,
    saved_at: Any,
    extra: Any,
    layout: str,
) -> None:
    source, target, base = source_and_target
    program_id = f"{next(_IDS):016x}"
    document = {
        **extra,
        "format_version": 1,
        "program_id": program_id,
        "saved_at": saved_at,
        "program_data": {"class_name": None, "state": {"v": state}},
        "optimization_result": {},
        "metadata": {},
    }
    try:
        data = {
            "raw": raw,
            "compact": orjson.dumps(document),
            "indented": orjson.dumps(document, option=orjson.OPT_INDENT_2),
            "canonical": encode(document),
        }[layout]
    except (orjson.JSONEncodeError, NotJSONError):
        data = raw
    path = f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"
    commit_file(source.path, path, data, "Edit by hand")
    try:
        loaded = source.load_program(program_id)
        assert loaded is not None and loaded.program_id == program_id
        assert isinstance(loaded.state, dict)
        event(f"{layout}: loads")
    except ProgregError as exc:
        event(f"{layout}: load refused ({type(exc).__name__})")
    with contextlib.suppress(ProgregError):
        source.list_programs()
    bundle = base / f"{program_id}.bundle"
    source.export_registry(bundle)
    commit_file(source.path, path, None, "Remove it")  # the next example starts clean
    before = registry_state(target.path)
    try:
        target.import_programs(bundle)
    except ProgregError as exc:
        event(f"{layout}: import refused ({type(exc).__name__})")
        assert registry_state(target.path) == before
        return
    event(f"{layout}: imported")
    imported = target.load_program(program_id)
    assert imported is not None and same(imported.state, {"v": state})
    assert blob_of(target, program_id) == data
