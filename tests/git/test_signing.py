"""Signed saves, merges and tags, checked by progreg verify and by git verify-commit/-tag."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from progreg import ProgramStorage, SigningError, StorageConfig, StorageManager
from progreg.cli import cli
from progreg.core.ids import program_path
from progreg.sharing.merging import merge_into_main
from support.gitcli import commit_file, git, git_status

needs_ssh_keygen = pytest.mark.skipif(
    shutil.which("ssh-keygen") is None, reason="ssh-keygen (OpenSSH) is not installed"
)
needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


def ssh_key(directory: Path, email: str = "signer@example.com") -> tuple[Path, Path]:
    """A fresh ed25519 key and an allowed-signers file trusting it for ``email``."""
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", email, "-f", str(key)],
        check=True,
    )
    allowed = directory / "allowed_signers"
    public = key.with_suffix(".pub").read_text().split()
    allowed.write_text(f'{email} namespaces="git" {public[0]} {public[1]}\n')
    return key, allowed


def configure_ssh_signing(registry: Path, key: Path, allowed: Path) -> None:
    for name, value in (
        ("gpg.format", "ssh"),
        ("user.signingKey", str(key)),
        ("commit.gpgSign", "true"),
        ("tag.gpgSign", "true"),
        ("gpg.ssh.allowedSignersFile", str(allowed)),
    ):
        git(registry, "config", name, value)


@needs_ssh_keygen
def test_ssh_signed_saves_tags_and_merges_agree_with_git(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    manager = StorageManager(StorageConfig(storage_path=registry))
    storage = manager.storage
    key, allowed = ssh_key(tmp_path)
    first = storage.save_program({"instructions": "unsigned"})
    configure_ssh_signing(registry, key, allowed)

    saved = storage.save_program({"instructions": "signed"}, {"best_score_value": 0.5})
    manager.tag_program(saved.program_id, "production")
    assert storage.delete_program(first.program_id)

    assert git_status(registry, "verify-commit", saved.commit) == 0
    assert git_status(registry, "verify-commit", "main") == 0
    assert git_status(registry, "verify-commit", "main~2") != 0  # the unsigned first save
    assert git_status(registry, "verify-tag", f"production/{saved.program_id}") == 0

    report = storage.verify()
    assert report.ok
    assert report.programs_checked == 1
    by_id = {record.id: record for record in report.signatures}
    signed = by_id[saved.commit]
    assert (signed.signed, signed.format, signed.signer, signed.valid) == (
        True,
        "ssh",
        "signer@example.com",
        True,
    )
    assert by_id[first.commit].signed is False
    tags = [record for record in report.signatures if record.kind == "tag"]
    assert len(tags) == 1
    assert tags[0].valid is True
    assert report.signed == 3  # save, delete, tag
    assert report.unsigned == 1

    # A merge is signed too.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "--bare", str(registry), str(other))
    theirs = ProgramStorage(other).save_program({"instructions": "from the other clone"})
    git(registry, "fetch", "-q", str(other), "main:refs/remotes/other/main")
    storage.save_program({"instructions": "diverge"})
    merged = merge_into_main(storage.registry, theirs.commit, action="merge", source="other")
    assert merged.commit is not None
    assert git_status(registry, "verify-commit", merged.commit) == 0


@needs_ssh_keygen
def test_untrusted_key_is_reported_bad_as_git_does(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    storage = ProgramStorage(registry)
    key, _ = ssh_key(tmp_path)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    _, other_allowed = ssh_key(stranger)
    configure_ssh_signing(registry, key, other_allowed)
    saved = storage.save_program({"instructions": "signed by a stranger"})
    assert git_status(registry, "verify-commit", saved.commit) != 0
    report = storage.verify()
    assert not report.ok
    assert [record.id for record in report.bad_signatures] == [saved.commit]
    result = CliRunner().invoke(cli, ["--registry", str(registry), "verify"])
    assert result.exit_code == 1
    assert "BAD ssh" in result.output
    assert "NOT OK" in result.output


@pytest.fixture
def gnupg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A GnuPG home of its own; the gpg-agent that signing starts there is stopped after."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    yield home
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], check=False, capture_output=True)


@needs_gpg
def test_openpgp_signed_saves_agree_with_git(tmp_path: Path, gnupg_home: Path) -> None:
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Registry Signer <gpg@example.com>",
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    registry = tmp_path / "registry"
    storage = ProgramStorage(registry)
    git(registry, "config", "commit.gpgSign", "true")
    git(registry, "config", "user.signingKey", "gpg@example.com")
    saved = storage.save_program({"instructions": "signed with OpenPGP"})
    assert git_status(registry, "verify-commit", saved.commit) == 0
    report = storage.verify()
    [record] = report.signatures
    assert record.signed
    assert record.format == "openpgp"
    assert record.valid is True
    assert record.signer is not None
    assert "gpg@example.com" in record.signer


def test_signing_misconfigured_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    storage = ProgramStorage(registry)
    storage.save_program({"a": 1})
    before = git(registry, "rev-parse", "main")
    git(registry, "config", "commit.gpgSign", "true")
    git(registry, "config", "gpg.format", "ssh")
    with pytest.raises(SigningError, match=r"user\.signingKey"):
        storage.save_program({"a": 2})
    git(registry, "config", "user.signingKey", str(tmp_path / "missing_key"))
    with pytest.raises(SigningError, match="ssh-keygen could not sign"):
        storage.save_program({"a": 3})
    git(registry, "config", "gpg.format", "x509")
    with pytest.raises(SigningError, match="not supported"):
        storage.save_program({"a": 4})
    assert git(registry, "rev-parse", "main") == before


def test_verify_reports_damaged_programs_by_path(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    storage = ProgramStorage(registry)
    good = storage.save_program({"a": 1})
    bad = storage.save_program({"a": 2})
    path = program_path(bad.program_id)
    data = git(registry, "show", f"main:{path}").encode()
    commit_file(registry, path, data.replace(b"  ", b"    "), "Reindent by hand")
    commit_file(registry, "programs/zz/not-a-program.json", b"{}\n", "Stray file")
    report = storage.verify()
    assert report.programs_checked == 3
    problems = {p.path: p.message for p in report.problems}
    assert set(problems) == {path, "programs/zz/not-a-program.json"}
    assert "is not canonical JSON" in problems[path]
    assert "progreg validate --fix" in problems[path]
    assert "is not a program file" in problems["programs/zz/not-a-program.json"]
    assert not report.ok
    result = CliRunner().invoke(cli, ["--registry", str(registry), "verify", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    assert data["programs_checked"] == 3
    assert [problem["path"] for problem in data["problems"]] == [
        path,
        "programs/zz/not-a-program.json",
    ]
    assert program_path(good.program_id) not in {p["path"] for p in data["problems"]}
