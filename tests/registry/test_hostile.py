"""Hostile input, case by case: crafted bundles, secrets, limits, nothing loaded by name.

Hostile bundles are made with the real ``git`` command line (``git
hash-object -t tree --literally`` for trees Git itself would not write,
``git commit-tree``, ``git bundle create``) on top of a real registry; each
import must be refused before anything is written: the target registry's
refs, objects and files unchanged and no quarantine left behind.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2
import pytest
from click.testing import CliRunner

from progreg import (
    BundleError,
    CorruptProgramError,
    InvalidInputError,
    InvalidNameError,
    NotJSONError,
    ProgramStorage,
    ProgramTooLargeError,
    ProgregError,
    SecretDetectedError,
    StorageConfig,
    StorageManager,
)
from progreg.cli import cli
from progreg.core.canonical import MAX_DEPTH, encode
from progreg.core.secrets import REDACTED, REDACTED_KEY, find_secrets, may_hold_secrets
from progreg.git.bundle.unbundle import tree_problem
from progreg.git.errors import MalformedObjectError
from progreg.git.objects import encoding as objects
from progreg.git.objects.delta import apply_delta
from progreg.git.objects.treediff import TreeDiffer
from progreg.git.pack import format as packs
from progreg.registry.checkpoints import Checkpoints
from progreg.registry.validation import MAX_PATH_DEPTH
from progreg.sharing.transfer import MAX_TREE_ENTRIES
from support import workload
from support.gitcli import (
    CLI_IDENTITY,
    assert_fsck_clean,
    commit_file,
    delta_varint,
    git,
    registry_state,
)

IDENTITY = "Hostile Test <hostile@example.com>"
API_KEY = "sk-proj-" + "Zq7" * 15


def new_storage(path: Path, **kwargs: Any) -> ProgramStorage:
    return ProgramStorage(path, author=IDENTITY, committer=IDENTITY, **kwargs)


def program_file(program_id: str) -> str:
    return f"programs/{program_id[:2]}/{program_id[2:4]}/{program_id}.json"


# -- crafting trees and bundles with the git command line ---------------------------------


def raw_tree(repo: Path, entries: list[tuple[bytes, bytes, str]]) -> str:
    """Write a tree object exactly as given (``(mode, name, hex id)``, in Git's order)."""

    def key(entry: tuple[bytes, bytes, str]) -> bytes:
        return entry[1] + b"/" if entry[0] == b"40000" else entry[1]

    data = b"".join(
        mode + b" " + name + b"\x00" + bytes.fromhex(oid)
        for mode, name, oid in sorted(entries, key=key)
    )
    return git(
        repo, "hash-object", "-t", "tree", "-w", "--literally", "--stdin", input=data
    ).strip()


def tree_entries(repo: Path, tree: str) -> list[tuple[bytes, bytes, str]]:
    found = pygit2.Repository(str(repo))[tree]
    assert isinstance(found, pygit2.Tree)
    return [
        (f"{entry.filemode:o}".encode(), (entry.name or "").encode(), str(entry.id))
        for entry in found
    ]


def with_entry(repo: Path, tree: str | None, path: list[bytes], mode: bytes, oid: str) -> str:
    """``tree`` with ``path`` set to ``(mode, oid)``, every tree on the way rewritten."""
    entries = tree_entries(repo, tree) if tree is not None else []
    name, rest = path[0], path[1:]
    existing = next((e for e in entries if e[1] == name), None)
    entries = [e for e in entries if e[1] != name]
    if rest:
        below = existing[2] if existing is not None and existing[0] == b"40000" else None
        entries.append((b"40000", name, with_entry(repo, below, rest, mode, oid)))
    else:
        entries.append((mode, name, oid))
    return raw_tree(repo, entries)


def blob(repo: Path, data: bytes) -> str:
    return git(repo, "hash-object", "-w", "--stdin", input=data).strip()


def commit_tree(repo: Path, tree: str, message: str = "Edit by hand", ref: str = "main") -> str:
    parent = git(repo, "rev-parse", ref).strip()
    commit = git(repo, "commit-tree", tree, "-p", parent, "-m", message, env=CLI_IDENTITY).strip()
    git(repo, "update-ref", f"refs/heads/{ref}" if "/" not in ref else ref, commit)
    return commit


def bundle_of(repo: Path, path: Path, *refs: str) -> Path:
    git(repo, "bundle", "create", "-q", str(path), *(refs or ("main",)))
    return path


@pytest.fixture
def source(tmp_path: Path) -> ProgramStorage:
    """A registry with one program (and its tag) to build hostile commits on."""
    storage = new_storage(tmp_path / "source")
    storage.save_program(workload.program_state(1), workload.optimization_result(1), tags=["prod"])
    return storage


@pytest.fixture
def target(tmp_path: Path) -> ProgramStorage:
    """The registry a hostile bundle is imported into: it has a program of its own."""
    storage = new_storage(tmp_path / "target")
    storage.save_program(workload.program_state(2), workload.optimization_result(2))
    return storage


def refused(target: ProgramStorage, bundle: Path, error: type[ProgregError], match: str) -> None:
    """Importing ``bundle`` raises ``error`` matching ``match``, leaving ``target`` as it was."""
    before = registry_state(target.path)
    with pytest.raises(error, match=match):
        target.import_programs(bundle)
    assert registry_state(target.path) == before
    assert not list((target.path / "objects").glob("incoming-*"))
    assert_fsck_clean(target.path)


def hostile_main(source: ProgramStorage, path: list[bytes], mode: bytes, oid: str) -> str:
    root = git(source.path, "rev-parse", "main^{tree}").strip()
    return commit_tree(source.path, with_entry(source.path, root, path, mode, oid))


def a_document(source: ProgramStorage) -> bytes:
    program_id = source.list_programs()[0].program_id
    return git(source.path, "cat-file", "blob", f"main:{program_file(program_id)}").encode()


# -- hostile trees --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "mode", "match"),
    [
        ("program", b"120000", "symbolic link"),
        ("program", b"160000", "submodule"),
        ("readme", b"120000", "symbolic link"),
        ("github", b"160000", "submodule"),
    ],
)
def test_links_and_submodules_are_refused_anywhere(
    source: ProgramStorage,
    target: ProgramStorage,
    tmp_path: Path,
    where: str,
    mode: bytes,
    match: str,
) -> None:
    program_id = "0123456789abcdef"
    # A link whose target text is a valid document would pass every content check.
    document = json.loads(a_document(source))
    document["program_id"] = program_id
    content = blob(source.path, encode(document))
    if mode == b"160000":
        content = "ab" * 20  # a commit no repository has
    path = {
        "program": [b"programs", b"01", b"23", f"{program_id}.json".encode()],
        "readme": [b"README.md"],
        "github": [b".github", b"vendored"],
    }[where]
    hostile_main(source, path, mode, content)
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, match)


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ([b"programs", b"..", b"progreg.json"], "'..'"),
        ([b"programs", b"."], "'.'"),
        ([b".github", b".git", b"config"], "'.git'"),
        ([b".github", b".GiT"], "'.GiT'"),
        ([b".git", b"hooks", b"post-checkout"], "'.git'"),
    ],
)
def test_names_git_refuses_are_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path, path: list[bytes], match: str
) -> None:
    hostile_main(source, path, b"100644", blob(source.path, b"#!/bin/sh\necho owned\n"))
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, match)


def test_a_name_with_a_slash_is_a_malformed_tree(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    root = git(source.path, "rev-parse", "main^{tree}").strip()
    entries = tree_entries(source.path, root)
    entries.append((b"100644", b"programs/../escape.json", blob(source.path, b"{}\n")))
    commit_tree(source.path, raw_tree(source.path, entries))
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, "malformed")


@pytest.mark.parametrize(
    ("name", "match"),
    [(b"line\nbreak.yml", "control character"), (b"bell\x07", "control character")],
)
def test_control_characters_in_names_are_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path, name: bytes, match: str
) -> None:
    hostile_main(source, [b".github", name], b"100644", blob(source.path, b"x\n"))
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, match)


def test_a_name_that_is_not_utf8_is_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    hostile_main(source, [b".github", b"caf\xe9.yml"], b"100644", blob(source.path, b"x\n"))
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, "not UTF-8")


@pytest.mark.parametrize("depth", [MAX_PATH_DEPTH + 1, 400])
def test_deep_trees_are_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path, depth: int
) -> None:
    oid = blob(source.path, b"deep\n")
    tree = raw_tree(source.path, [(b"100644", b"leaf", oid)])
    for _ in range(depth - 2):
        tree = raw_tree(source.path, [(b"40000", b"d", tree)])
    hostile_main(source, [b".github"], b"40000", tree)
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, "levels deep")


def test_huge_trees_are_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    oid = blob(source.path, b"x\n")
    entries = [(b"100644", f"f{n:06d}".encode(), oid) for n in range(MAX_TREE_ENTRIES + 1)]
    hostile_main(source, [b".github"], b"40000", raw_tree(source.path, entries))
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, "entries")


def test_objects_over_the_size_limit_are_refused_even_in_history(
    source: ProgramStorage, tmp_path: Path
) -> None:
    program_id = source.list_programs()[0].program_id
    big = json.loads(a_document(source))
    big["metadata"]["padding"] = "x" * 50_000
    commit_file(source.path, program_file(program_id), encode(big), "A large version")
    commit_file(source.path, program_file(program_id), a_document(source), "Back to small")
    target = new_storage(tmp_path / "small", max_program_bytes=20_000)
    target.save_program({"own": 1})
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, "over the limit")


def test_a_checkpoint_branch_with_a_stray_program_is_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    Checkpoints(source.registry).create({"step": 1}, None, "run")
    ref = "refs/heads/checkpoints/run"
    tree = git(source.path, "rev-parse", f"{ref}^{{tree}}").strip()
    other = json.loads(a_document(source))
    other["program_id"] = "fedcba9876543210"
    stray = with_entry(
        source.path,
        tree,
        [b"programs", b"fe", b"dc", b"fedcba9876543210.json"],
        b"100644",
        blob(source.path, encode(other)),
    )
    commit_tree(source.path, stray, ref=ref)
    bundle = bundle_of(source.path, tmp_path / "x.bundle", "main", ref)
    refused(target, bundle, BundleError, "holds only the program")


def test_main_passed_off_as_a_checkpoint_branch_is_refused_without_reading_it(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    for n in range(3):
        source.save_program({"n": n})
    ref = "refs/heads/checkpoints/run"
    git(source.path, "update-ref", ref, "main")
    refused(
        target, bundle_of(source.path, tmp_path / "x.bundle", "main", ref), BundleError, "missing"
    )


def test_a_lightweight_tag_is_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    program_id = source.list_programs()[0].program_id
    git(source.path, "update-ref", f"refs/tags/evil/{program_id}", "main")
    bundle = bundle_of(source.path, tmp_path / "x.bundle", "main", f"refs/tags/evil/{program_id}")
    refused(target, bundle, BundleError, "annotated tag")


def test_a_tag_on_a_commit_without_its_program_is_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    ref = "refs/tags/prod/0123456789abcdef"
    git(source.path, "tag", "-a", "-m", "Tag", "prod/0123456789abcdef", "main", env=CLI_IDENTITY)
    bundle = bundle_of(source.path, tmp_path / "x.bundle", "main", ref)
    refused(target, bundle, BundleError, "has no programs/01/23")


@pytest.mark.parametrize("ref", ["refs/notes/commits", "refs/heads/checkpoints/a/b", "refs/stash"])
def test_refs_outside_the_namespaces_are_refused_before_reading_the_pack(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path, ref: str
) -> None:
    git(source.path, "update-ref", ref, "main")
    refused(target, bundle_of(source.path, tmp_path / "x.bundle", "main", ref), BundleError, ref)


def test_the_registry_is_unchanged_and_usable_after_every_refusal(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    hostile_main(source, [b"README.md"], b"120000", blob(source.path, b"/etc/passwd"))
    refused(target, bundle_of(source.path, tmp_path / "x.bundle"), BundleError, "symbolic link")
    saved = target.save_program({"after": "refusal"})
    assert target.load_program(saved.program_id) is not None
    assert_fsck_clean(target.path)


# -- bombs: small inputs that would take memory or time without bounds ---------------------


def _zero_blob_pack(path: Path, count: int, size: int, with_ref_delta: bool) -> bytes:
    """A pack of ``count`` blobs of ``size`` zero bytes (each a few hundred bytes of zlib)."""
    blobs = [bytes(size - n) for n in range(count)]  # all different
    oids = [objects.object_id(objects.OBJ_BLOB, blob) for blob in blobs]
    with open(path, "w+b") as out:
        writer = packs.PackWriter(out, level=9)
        for oid, blob in zip(oids, blobs, strict=True):
            writer.add(oid, objects.OBJ_BLOB, blob)
        if with_ref_delta:  # a REF_DELTA makes every object a possible base
            target = blobs[0][:-1] + b"x"
            writer.add_delta(objects.object_id(objects.OBJ_BLOB, target), b"\x01" * 20, b"")
        writer.finish()
    return path.read_bytes()


def test_a_delta_cannot_build_more_than_it_announces() -> None:
    base = bytes(1 << 20)
    copy_whole_base = bytes([0x80 | 0x10 | 0x20 | 0x40, 0x00, 0x00, 0x10])
    bomb = delta_varint(len(base)) + delta_varint(len(base)) + copy_whole_base * 100  # 406 bytes
    tracemalloc.start()
    with pytest.raises(MalformedObjectError, match="more than its announced size"):
        apply_delta(base, bomb, 16 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20  # it would have built 100 MiB


def test_indexing_a_zlib_bomb_holds_a_bounded_amount_of_memory(tmp_path: Path) -> None:
    pack = _zero_blob_pack(tmp_path / "bomb.pack", count=48, size=1 << 20, with_ref_delta=True)
    assert len(pack) < 200_000  # 48 MiB of objects
    tracemalloc.start()
    with pytest.raises(MalformedObjectError, match="thin"):
        packs.index_pack(
            memoryview(pack),
            external=lambda _: None,
            visit=lambda *_: None,
            max_object_size=2 << 20,
            max_retained_bytes=4 << 20,
        )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20, peak  # not the 48 MiB every object of the pack takes


def test_a_pack_that_expands_too_much_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs, "MIN_WORK_BYTES", 8 << 20)
    pack = _zero_blob_pack(tmp_path / "bomb.pack", count=32, size=1 << 20, with_ref_delta=False)
    with pytest.raises(MalformedObjectError, match="expands to more than"):
        packs.index_pack(
            memoryview(pack),
            external=lambda _: None,
            visit=lambda *_: None,
            max_object_size=2 << 20,
        )


# -- the tree diff behind the hostile checks ------------------------------------------------


def test_the_raw_tree_diff_agrees_with_libgit2(source: ProgramStorage, tmp_path: Path) -> None:
    ids = [source.save_program({"n": n}).program_id for n in range(6)]
    source.delete_program(ids[0])
    source.save_programs([({"n": 10 + n}, None, None) for n in range(3)])
    commit_file(source.path, "README.md", b"hello\n")
    commit_file(source.path, ".github/ci.yml", b"on: push\n")
    root = git(source.path, "rev-parse", "main^{tree}").strip()
    tree = with_entry(
        source.path, root, [b"README.md", b"inner"], b"100644", blob(source.path, b"x")
    )
    commit_tree(source.path, tree)  # a file becomes a directory
    repo = pygit2.Repository(str(source.path))
    differ = TreeDiffer(repo, cache_size=4)
    checked = 0
    for commit in repo.walk(repo.references["refs/heads/main"].target):
        if not commit.parents:
            continue
        files, deleted = differ.changes(commit.parents[0].tree_id, commit.tree_id)
        diff = commit.parents[0].tree.diff_to_tree(commit.tree)
        expected_files = sorted(
            (d.new_file.path, d.new_file.mode, d.new_file.id)
            for d in diff.deltas
            if d.status != pygit2.enums.DeltaStatus.DELETED
        )
        expected_deleted = sorted(
            d.old_file.path for d in diff.deltas if d.status == pygit2.enums.DeltaStatus.DELETED
        )
        assert (files, deleted) == (expected_files, expected_deleted), str(commit.id)
        checked += 1
    assert checked >= 10


# -- secrets ------------------------------------------------------------------------------

SECRETS = {
    "openai": "sk-proj-" + "AbC9" * 10,
    "anthropic": "sk-ant-api03-" + "Xy7_" * 10,
    "github": "ghp_" + "a1B2c3D4e5" * 4,
    "github_pat": "github_pat_11ABCDEFG0" + "x" * 30,
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "slack": "xoxb-123456789012-abcdefABCDEF",
    "google": "AIzaSyA-" + "1234567890abcdefghijklmnopqrstu",
    "bearer": "Bearer " + "eyJ0eXAiOiJKV1Qi" + "abc123" * 4,
    "pem": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0\n-----END PRIVATE KEY-----\n",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
}


@pytest.mark.parametrize("kind", sorted(SECRETS))
@pytest.mark.parametrize("part", ["state", "optimization_result", "metadata"])
def test_a_credential_is_refused_wherever_it_is_named_never_echoed(
    storage: ProgramStorage, kind: str, part: str
) -> None:
    secret = SECRETS[kind]
    state: dict[str, Any] = {"demos": [{"q": "hi"}]}
    result: dict[str, Any] = {"metadata": {}}
    metadata: dict[str, Any] = {}
    {"state": state, "optimization_result": result["metadata"], "metadata": metadata}[part][
        "note"
    ] = f"my credential: {secret}"
    storage.save_program({"seed": 1})
    before = registry_state(storage.path)
    with pytest.raises(SecretDetectedError) as caught:
        storage.save_program(state, result, metadata)
    expected = {
        "state": "state.note",
        "optimization_result": "optimization_result.metadata.note",
        "metadata": "metadata.note",
    }[part]
    assert caught.value.paths == [expected]
    assert expected in str(caught.value) and "secrets='redact'" in str(caught.value)
    for piece in (secret, secret.strip()[-12:]):
        assert piece not in str(caught.value) and piece not in repr(caught.value)
    assert registry_state(storage.path) == before


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("api_key", "state.predict.lm.api_key"),
        ("apikey", "state.predict.lm.apikey"),
        ("token", "state.predict.lm.token"),
        ("secret", "state.predict.lm.secret"),
        ("password", "state.predict.lm.password"),
        ("Authorization", "state.predict.lm.Authorization"),
    ],
)
def test_credential_keys_in_lm_settings_are_refused(
    storage: ProgramStorage, key: str, path: str
) -> None:
    state = {"predict": {"lm": {"model": "openai/gpt-4o", key: "abc", "max_tokens": 100}}}
    with pytest.raises(SecretDetectedError) as caught:
        storage.save_program(state)
    assert caught.value.paths == [path]


@pytest.mark.parametrize(
    "key", ["api_key", "OPENAI_API_KEY", "github_token", "db_password", "authorization", "apiKey"]
)
def test_credential_keys_anywhere_with_token_like_values_are_refused(
    storage: ProgramStorage, key: str
) -> None:
    with pytest.raises(SecretDetectedError, match=f"metadata.config.{key}"):
        storage.save_program({"a": 1}, None, {"config": {key: "c0ffee-5ecret-va1ue"}})


def test_redaction_replaces_each_credential_and_says_so(storage: ProgramStorage) -> None:
    state = {
        "predict": {
            "lm": {"model": "openai/gpt-4o", "api_key": SECRETS["openai"], "temperature": 0.7},
            "demos": [{"question": f"why does {SECRETS['github']} fail?", "answer": "revoked"}],
        }
    }
    metadata = {"deploy": {"aws_key": SECRETS["aws"]}, "owner": "ml-team"}
    saved = storage.save_program(state, None, metadata, secrets="redact")
    assert saved.state["predict"]["lm"] == {
        "model": "openai/gpt-4o",
        "api_key": REDACTED,
        "temperature": 0.7,
    }
    assert saved.state["predict"]["demos"][0]["question"] == f"why does {REDACTED} fail?"
    assert saved.metadata["deploy"]["aws_key"] == REDACTED
    assert saved.metadata[REDACTED_KEY] == sorted(
        [
            "metadata.deploy.aws_key",
            "state.predict.demos[0].question",
            "state.predict.lm.api_key",
        ]
    )
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None and loaded.state == saved.state
    stored = subprocess.run(
        ["git", "-C", str(storage.path), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    for secret in (SECRETS["openai"], SECRETS["github"], SECRETS["aws"]):
        assert secret.encode() not in stored
    # A redacted program saves again as it is: nothing is left to find.
    again = storage.save_program(loaded.state, None, loaded.metadata)
    assert again.state == saved.state


def test_a_batch_with_one_credential_writes_nothing(storage: ProgramStorage) -> None:
    storage.save_program({"seed": 1})
    before = registry_state(storage.path)
    items = [({"n": n}, None, None) for n in range(3)] + [({"token": SECRETS["slack"]}, None, None)]
    with pytest.raises(SecretDetectedError, match=r"state\.token"):
        storage.save_programs(items)
    assert registry_state(storage.path) == before
    saved = storage.save_programs(items, secrets="redact")
    assert saved[-1].state == {"token": REDACTED}


def test_the_policy_is_checked(storage: ProgramStorage) -> None:
    with pytest.raises(InvalidInputError, match="not a secrets policy"):
        storage.save_program({"a": 1}, secrets="allow")  # type: ignore[arg-type]


def test_storage_config_and_environment_choose_redaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = {"optimized_program": {"lm": {"api_key": SECRETS["openai"]}}, "best_score_value": 1}
    manager = StorageManager(StorageConfig(storage_path=tmp_path / "refusing"))
    with pytest.raises(SecretDetectedError):
        manager.save_optimization_result(result)
    with pytest.raises(SecretDetectedError):
        manager.create_checkpoint(result, "run")
    monkeypatch.setenv("PROGREG_SECRETS", "redact")
    config = StorageConfig(storage_path=tmp_path / "redacting")
    assert config.secrets == "redact"
    manager = StorageManager(config)
    saved = manager.save_optimization_result(result)
    assert saved is not None and saved.state == {"lm": {"api_key": REDACTED}}
    checkpoint = manager.create_checkpoint(result, "run")
    assert checkpoint.state == {"lm": {"api_key": REDACTED}}
    monkeypatch.setenv("PROGREG_SECRETS", "ignore")
    with pytest.raises(InvalidInputError, match="PROGREG_SECRETS"):
        StorageConfig(storage_path=tmp_path / "x")


def test_the_command_line_refuses_then_redacts(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    program = tmp_path / "program.json"
    program.write_text(json.dumps({"program": {"lm": {"api_key": SECRETS["anthropic"]}}}))
    runner = CliRunner()
    refused_run = runner.invoke(cli, ["--registry", registry, "save", str(program)])
    assert refused_run.exit_code != 0
    assert "state.lm.api_key" in refused_run.output
    assert SECRETS["anthropic"] not in refused_run.output
    # The way out is the command's own option, and no id that was never saved is named.
    assert "--redact-secrets" in refused_run.stderr
    assert "secrets='redact'" not in refused_run.stderr
    assert not re.search(r"[0-9a-f]{16}", refused_run.stderr), refused_run.stderr
    done = runner.invoke(cli, ["--registry", registry, "save", str(program), "--redact-secrets"])
    assert done.exit_code == 0, done.output
    shown = runner.invoke(cli, ["--registry", registry, "list", "--json"])
    assert SECRETS["anthropic"] not in shown.output


NORMAL_VALUES = [
    "0123456789abcdef" * 4,  # a sha256 digest in hex
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "U29tZSBiYXNlNjQgZW5jb2RlZCBkZW1vIHRleHQgdGhhdCBpcyBsb25nIGVub3VnaA==",
    "eyJ1c2VyIjogImRlbW8ifQ==",  # base64 JSON: one segment, not a token
    "550e8400-e29b-41d4-a716-446655440000",
    "Please reset my password, the token in the email expired.",
    "https://docs.example.com/guide?page=2&lang=en",
    "sk-learn is a library",
    "Bearer of bad news",
    "ASIA is a continent; AKIA is not a word",
    "-----BEGIN CERTIFICATE-----",
]


@pytest.mark.parametrize("value", NORMAL_VALUES)
def test_normal_values_are_not_flagged(storage: ProgramStorage, value: str) -> None:
    state = {"demos": [{"text": value}], "lm": {"model": "x", "max_tokens": 512}}
    metadata = {"dataset_sha256": value, "token_count": 1200, "password_reset_flow": "v2"}
    assert find_secrets(state) == [] and find_secrets(metadata) == []
    storage.save_program(state, {"best_score_value": 0.5}, metadata)


def test_a_thousand_realistic_programs_are_not_flagged() -> None:
    flagged = []
    for i in range(1000):
        document = {
            "state": workload.program_state(i),
            "result": workload.optimization_result(i),
        }
        if may_hold_secrets(encode(document)) or find_secrets(document):
            flagged.append(i)
    assert flagged == []


def test_reference_imports_refuse_or_redact_credentials(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    export = tmp_path / "export.json"
    document = {
        "program_id": "0123456789abcdef",
        "saved_at": "2025-03-01T10:00:00+00:00",
        "program_data": {"class_name": None, "state": {"lm": {"api_key": SECRETS["openai"]}}},
        "optimization_result": None,
        "metadata": {},
    }
    export.write_text(json.dumps({"programs": [document]}))
    before = registry_state(storage.path)
    with pytest.raises(SecretDetectedError, match=r"state\.lm\.api_key"):
        storage.import_programs(export)
    assert registry_state(storage.path) == before
    result = storage.import_programs(export, secrets="redact")
    assert result.imported == ["0123456789abcdef"]
    loaded = storage.load_program("0123456789abcdef")
    assert loaded is not None and loaded.state == {"lm": {"api_key": REDACTED}}


@pytest.mark.parametrize("where", ["main", "history", "checkpoint"])
def test_bundles_holding_credentials_are_refused_history_included(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path, where: str
) -> None:
    program_id = source.list_programs()[0].program_id
    leaked = json.loads(a_document(source))
    leaked["program_data"]["state"]["predict"]["lm"] = {"api_key": SECRETS["openai"]}
    refs = ["main"]
    if where == "checkpoint":
        checkpoint = Checkpoints(source.registry).create({"step": 1}, None, "run")
        ref = "refs/heads/checkpoints/run"
        tree = git(source.path, "rev-parse", f"{ref}^{{tree}}").strip()
        leaked["program_id"] = checkpoint.program_id
        path = [part.encode() for part in program_file(checkpoint.program_id).split("/")]
        commit_tree(
            source.path,
            with_entry(source.path, tree, path, b"100644", blob(source.path, encode(leaked))),
            ref=ref,
        )
        refs.append(ref)
    else:
        commit_file(source.path, program_file(program_id), encode(leaked), "Leak a key")
        if where == "history":
            commit_file(source.path, program_file(program_id), a_document(source), "Remove it")
    bundle = bundle_of(source.path, tmp_path / "x.bundle", *refs)
    refused(target, bundle, SecretDetectedError, "api_key")


# -- limits -------------------------------------------------------------------------------


def test_the_size_limit_covers_reference_imports(tmp_path: Path) -> None:
    storage = new_storage(tmp_path / "registry", max_program_bytes=4096)
    export = tmp_path / "export.json"
    document = {
        "program_id": "0123456789abcdef",
        "saved_at": "2025-03-01T10:00:00+00:00",
        "program_data": {"state": {"text": "x" * 10_000}},
    }
    export.write_text(json.dumps({"programs": [document]}))
    with pytest.raises(ProgramTooLargeError, match="max_program_bytes"):
        storage.import_programs(export)


def test_many_demos_within_the_size_limit_round_trip(storage: ProgramStorage) -> None:
    demos = [{"question": f"question {n}?", "answer": f"answer {n}"} for n in range(20_000)]
    saved = storage.save_program({"predict": {"demos": demos}})
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None and loaded.state["predict"]["demos"] == demos


def test_control_characters_are_stored_exactly_and_bytes_are_refused(
    storage: ProgramStorage,
) -> None:
    text = "nul\x00 bell\x07 del\x7f line\u2028sep tab\t \U0001f600 \ufeff"
    saved = storage.save_program({"text": text, text: "as a key"})
    loaded = storage.load_program(saved.program_id)
    assert loaded is not None and loaded.state == {"text": text, text: "as a key"}
    with pytest.raises(NotJSONError, match="base64"):
        storage.save_program({"raw": b"\xff\xfe"})
    with pytest.raises(
        NotJSONError, match=r"program state\.text: a string holds the lone surrogate"
    ):
        storage.save_program({"text": "caf\udce9"})  # what surrogateescape makes of b"caf\xe9"


def test_nesting_is_refused_at_the_limit_with_a_clear_error(storage: ProgramStorage) -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH * 50):
        value = [value]
    with pytest.raises(NotJSONError, match=f"deeper than {MAX_DEPTH} levels"):
        storage.save_program({"deep": value})


def test_a_deep_hand_committed_document_is_refused_on_load(storage: ProgramStorage) -> None:
    saved = storage.save_program({"a": 1})
    data = git(storage.path, "cat-file", "blob", f"main:{program_file(saved.program_id)}")
    deep = data.replace('"a": 1', '"a": ' + "[" * 500 + "1" + "]" * 500).encode()
    commit_file(storage.path, program_file(saved.program_id), deep)
    with pytest.raises(CorruptProgramError, match="deeper than"):
        storage.load_program(saved.program_id)


def test_duplicate_keys_are_refused_naming_the_key(storage: ProgramStorage, tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text(
        '{"programs": [{"program_id": "0123456789abcdef", "saved_at": "2025-03-01T10:00:00Z",'
        ' "program_data": {"state": {"temperature": 0.2, "temperature": 0.9}}}]}'
    )
    with pytest.raises(BundleError, match="repeats the key 'temperature'"):
        storage.import_programs(export)
    saved = storage.save_program({"a": 1})
    data = git(storage.path, "cat-file", "blob", f"main:{program_file(saved.program_id)}")
    doubled = data.replace('"a": 1', '"a": 1, "a": 2', 1).encode()
    commit_file(storage.path, program_file(saved.program_id), doubled)
    with pytest.raises(CorruptProgramError, match="repeats the key 'a'"):
        storage.load_program(saved.program_id)


def test_integers_beyond_64_bits_in_hand_written_json_are_refused(
    storage: ProgramStorage,
) -> None:
    saved = storage.save_program({"n": 1})
    data = git(storage.path, "cat-file", "blob", f"main:{program_file(saved.program_id)}")
    big = data.replace('"n": 1', '"n": 18446744073709551616').encode()
    commit_file(storage.path, program_file(saved.program_id), big)
    with pytest.raises(CorruptProgramError, match="64-bit"):
        storage.load_program(saved.program_id)


def test_a_time_out_of_range_in_utc_is_refused(storage: ProgramStorage) -> None:
    saved = storage.save_program({"n": 1})
    data = git(storage.path, "cat-file", "blob", f"main:{program_file(saved.program_id)}")
    moment = json.loads(data)["saved_at"]
    commit_file(
        storage.path,
        program_file(saved.program_id),
        data.replace(moment, "9999-12-31T23:00:00-05:00").encode(),
    )
    with pytest.raises(CorruptProgramError, match="out of range"):
        storage.load_program(saved.program_id)


# -- nothing stored is ever executed or imported by name ----------------------------------

#: Built-ins that turn text or names into code or modules.
_FORBIDDEN_BUILTINS = {"eval", "exec", "compile", "__import__"}
#: Modules that turn bytes into objects (or load modules by name).
_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
_FORBIDDEN_MODULES |= {"importlib", "imp", "pkgutil", "runpy", "code", "codeop"}
#: Methods that do the same wherever they come from.
_FORBIDDEN_METHODS = {"import_module", "load_module", "exec_module", "run_module", "run_path"}


def forbidden_uses(tree: ast.AST) -> list[str]:
    """Every construct in ``tree`` that could run or import something named by data."""
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [
                f"{line}: import {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] in _FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in _FORBIDDEN_MODULES:
                found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_BUILTINS:
                found.append(f"{line}: {node.func.id}()")
            elif isinstance(node.func, ast.Attribute) and node.func.attr in _FORBIDDEN_METHODS:
                found.append(f"{line}: .{node.func.attr}()")
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            found.append(f"{line}: {node.id}")
    return found


def test_no_source_file_can_unpickle_or_import_by_name() -> None:
    root = Path(__file__).resolve().parents[2] / "src" / "progreg"
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found += [f"{path.relative_to(root)}:{use}" for use in forbidden_uses(tree)]
    assert found == [], "stored data must never become code:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "offender",
    [
        "import pickle",
        "from marshal import loads",
        "import importlib.util",
        "from importlib import import_module",
        "x = eval('1')",
        "exec('x = 1')",
        "m = __import__('os')",
        "code = compile('1', 'f', 'eval')",
        "m = something.import_module('os')",
        "runpy.run_path('x.py')",
        "f = __builtins__",
    ],
)
def test_the_scan_catches_each_forbidden_use(offender: str) -> None:
    """The scan above is not vacuous: it flags each construct it looks for."""
    assert forbidden_uses(ast.parse(offender)), offender


def test_the_scan_leaves_ordinary_code_alone() -> None:
    assert forbidden_uses(ast.parse("import re\nPATTERN = re.compile('x')\n")) == []


def test_loading_never_imports_the_stored_class_name(
    storage: ProgramStorage, tmp_path: Path
) -> None:
    marker = tmp_path / "imported.txt"
    module = tmp_path / "evil_module_for_progreg.py"
    module.write_text(f"open({str(marker)!r}, 'w').write('imported')\nclass Evil:\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        saved = storage.save_program({"a": 1})
        path = program_file(saved.program_id)
        data = json.loads(git(storage.path, "cat-file", "blob", f"main:{path}"))
        data["program_data"]["class_name"] = "evil_module_for_progreg.Evil"
        commit_file(storage.path, path, encode(data))
        loaded = storage.load_program(saved.program_id)
        assert loaded is not None and loaded.program == {"a": 1}
        storage.list_programs()
        assert not marker.exists()
        assert "evil_module_for_progreg" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))


def test_tree_problem_reads_entries_not_bytes() -> None:
    """The quick look only decides whether to parse: names and modes decide the verdict."""
    oid = b"\x20\x2e" * 10  # an id holding " ." by chance: parsed, and found safe

    def tree(*entries: tuple[bytes, bytes]) -> bytes:
        return b"".join(mode + b" " + name + b"\x00" + oid for mode, name in entries)

    links = frozenset({b"120000", b"160000"})
    safe = tree((b"100644", b".gitignore"), (b"40000", b"programs"), (b"100644", b"x.git"))
    assert tree_problem(safe, links) is None
    assert tree_problem(tree((b"100644", b".GIT")), links) == "a tree holds an entry named '.GIT'"
    assert "'..'" in (tree_problem(tree((b"40000", b"..")), links) or "")
    assert "symbolic link" in (tree_problem(tree((b"120000", b"a")), links) or "")
    assert "submodule" in (tree_problem(tree((b"160000", b"a")), links) or "")
    assert tree_problem(tree((b"120000", b"a"))) is None  # links allowed by the caller
    executable = tree_problem(tree((b"100755", b"run")), frozenset({b"100755"}))
    assert executable == "a tree holds an entry of mode 100755 ('run'), which is refused"
    crowded = tree(*[(b"100644", b"f%d" % i) for i in range(5)])
    assert "5 entries" in (tree_problem(crowded, links, max_entries=4) or "")


def test_a_redacted_checkpoint_keeps_no_credential_in_its_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """secrets='redact' covers checkpoint.json too: through Checkpoints and the manager."""
    key = SECRETS["openai"]
    result = {"optimized_program": {"lm": {"model": "x"}}, "best_score_value": 1}
    storage = ProgramStorage(tmp_path / "direct")
    created = Checkpoints(storage.registry).create(
        {"lm": {"model": "x"}}, None, "run-a", {"api_key": key, "step": 3}, secrets="redact"
    )
    monkeypatch.setenv("PROGREG_SECRETS", "redact")
    manager = StorageManager(StorageConfig(storage_path=tmp_path / "managed"))
    managed = manager.create_checkpoint(result, "run-b", metadata={"openai_api_key": key})
    for registry, run, record in (
        (tmp_path / "direct", "run-a", created),
        (tmp_path / "managed", "run-b", managed),
    ):
        manifest = json.loads(
            subprocess.run(
                ["git", "-C", str(registry), "show", f"checkpoints/{run}:checkpoint.json"],
                capture_output=True,
                check=True,
            ).stdout
        )
        assert key not in json.dumps(manifest)
        assert REDACTED in json.dumps(manifest["metadata"])
        assert key not in json.dumps(record.metadata)
        every_object = subprocess.run(
            ["git", "-C", str(registry), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True,
            check=True,
        ).stdout
        assert key.encode() not in every_object
    assert created.metadata["step"] == 3


@pytest.mark.parametrize("kind", ["openai", "github", "aws"])
def test_a_name_that_is_a_credential_is_refused_never_echoed(
    source: ProgramStorage, kind: str
) -> None:
    """Names go into refs, commit messages and trailers, which nothing redacts later."""
    name = SECRETS[kind]
    manager = StorageManager(StorageConfig(storage_path=source.path, secrets="redact"))
    program_id = source.list_programs()[0].program_id
    before = registry_state(source.path)
    attempts: dict[str, Callable[[], object]] = {
        "tag": lambda: manager.tag_program(program_id, name),
        "tag on save": lambda: source.save_program({"x": 1}, tags=[name], secrets="redact"),
        "checkpoint": lambda: manager.create_checkpoint({"optimized_program": {"x": 1}}, name),
        "remote": lambda: source.add_remote(name, "https://example.com/registry.git"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(InvalidNameError, match="choose a name that is not a credential") as e:
            attempt()
        assert name not in str(e.value), what
    assert registry_state(source.path) == before
    config = (source.path / "config").read_text()
    assert name not in config


def test_a_bundle_whose_tag_name_is_a_credential_is_refused(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path
) -> None:
    program_id = source.list_programs()[0].program_id
    tag = f"{SECRETS['github']}/{program_id}"
    git(source.path, "tag", "-a", "-m", "Tag", tag, "main", env=CLI_IDENTITY)
    bundle = bundle_of(source.path, tmp_path / "x.bundle", "main", f"refs/tags/{tag}")
    refused(target, bundle, BundleError, re.escape(f"refs/tags/{REDACTED}/{program_id}"))
    with pytest.raises(BundleError) as refusal:
        target.import_programs(bundle)
    assert SECRETS["github"] not in str(refusal.value)


@pytest.mark.parametrize(
    "written",
    ["minified", "escaped", "escaped slashes"],
)
def test_a_credential_in_history_is_found_however_its_json_is_written(
    source: ProgramStorage, target: ProgramStorage, tmp_path: Path, written: str
) -> None:
    """History blobs need not be canonical JSON: the screen reads what they decode to."""
    program_id = source.list_programs()[0].program_id
    leaked = json.loads(a_document(source))
    if written == "minified":  # an Azure-style key under lm.api_key, no layout at all
        leaked["program_data"]["state"]["predict"]["lm"] = {"api_key": "0f" * 16}
        data = json.dumps(leaked, separators=(",", ":")).encode()
    elif written == "escaped":  # an OpenAI key whose first letter is a JSON escape
        leaked["program_data"]["state"]["note"] = SECRETS["openai"]
        data = json.dumps(leaked).replace('"sk-proj-', '"\\u0073k-proj-').encode()
    else:  # a URL with a password, its slashes escaped
        leaked["program_data"]["state"]["endpoint"] = "https://bot:hunter2hunter2@api.example"
        data = json.dumps(leaked).replace("/", "\\/").encode()
    assert json.loads(data) == leaked
    commit_file(source.path, program_file(program_id), data, "Leak a key")
    commit_file(source.path, program_file(program_id), a_document(source), "Remove it")
    field = {"minified": "api_key", "escaped": "note", "escaped slashes": "endpoint"}[written]
    refused(
        target, bundle_of(source.path, tmp_path / "x.bundle", "main"), SecretDetectedError, field
    )
