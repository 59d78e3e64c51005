"""Signing commits and tags with SSH or OpenPGP keys, and checking signatures.

Configured the way Git is: ``commit.gpgSign`` / ``tag.gpgSign`` turn signing
on, ``gpg.format`` chooses ``openpgp`` (the default) or ``ssh``,
``user.signingKey`` names the key (for SSH, a key file; a public key file
signs through the SSH agent), ``gpg.program`` / ``gpg.ssh.program`` name the
programs, and ``gpg.ssh.allowedSignersFile`` lists the SSH keys trusted when
verifying. Signatures are made by the same programs Git runs
(``ssh-keygen -Y sign -n git``, ``gpg --detach-sign --armor``), so
``git verify-commit`` and ``git verify-tag`` agree with what is written here.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pygit2

from progreg.errors import SigningError

SSH_NAMESPACE = "git"
_TIMEOUT = 60


def _config(config: pygit2.Config, key: str) -> str | None:
    try:
        value = config[key]
    except (KeyError, pygit2.GitError):
        return None
    return str(value) if value else None


def _flag(config: pygit2.Config, key: str) -> bool:
    try:
        return bool(config.get_bool(key))
    except (KeyError, pygit2.GitError):
        return False


def _run(command: list[str], data: bytes, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            command, input=data, capture_output=True, timeout=_TIMEOUT, check=False
        )
    except FileNotFoundError as exc:
        raise SigningError(f"cannot {what}: {command[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise SigningError(f"cannot {what}: {command[0]} did not answer in {_TIMEOUT} s") from exc


@dataclass(frozen=True)
class Signer:
    """How to sign: the signature format, the key and the program that signs."""

    format: str
    key: str | None
    program: str

    @classmethod
    def from_config(cls, config: pygit2.Config, kind: str = "commit") -> Signer | None:
        """The signer configured for ``kind`` (``commit`` or ``tag``), or ``None``."""
        if not _flag(config, f"{kind}.gpgSign"):
            return None
        fmt = (_config(config, "gpg.format") or "openpgp").lower()
        key = _config(config, "user.signingKey")
        if fmt == "ssh":
            if key is None:
                raise SigningError(
                    f"{kind}.gpgSign is on with gpg.format=ssh but user.signingKey is not set"
                )
            program = _config(config, "gpg.ssh.program") or "ssh-keygen"
        elif fmt == "openpgp":
            program = (
                _config(config, "gpg.openpgp.program") or _config(config, "gpg.program") or "gpg"
            )
        else:
            raise SigningError(f"gpg.format={fmt} is not supported; use ssh or openpgp")
        return cls(fmt, os.path.expanduser(key) if key else None, program)

    def sign(self, payload: bytes) -> str:
        """An armored detached signature of ``payload``."""
        if self.format == "ssh":
            return self._sign_ssh(payload)
        command = [self.program, "--status-fd=2", "--detach-sign", "--armor"]
        if self.key:
            command += ["--local-user", self.key]
        done = _run(command, payload, "sign with gpg")
        if done.returncode != 0 or b"-----BEGIN PGP SIGNATURE-----" not in done.stdout:
            raise SigningError(f"gpg could not sign: {_tail(done.stderr)}")
        return done.stdout.decode()

    def _sign_ssh(self, payload: bytes) -> str:
        assert self.key is not None
        with tempfile.TemporaryDirectory(prefix="progreg-sign-") as tmp:
            message = Path(tmp) / "payload"
            message.write_bytes(payload)
            command = [
                self.program,
                "-Y",
                "sign",
                "-n",
                SSH_NAMESPACE,
                "-f",
                self.key,
                str(message),
            ]
            done = _run(command, b"", "sign with ssh-keygen")
            signature = message.with_suffix(".sig")
            if done.returncode != 0 or not signature.exists():
                raise SigningError(
                    f"ssh-keygen could not sign with {self.key}: {_tail(done.stderr)}"
                )
            return signature.read_text()


@dataclass(frozen=True)
class SignatureCheck:
    """What checking one signature found."""

    format: str
    signer: str | None
    valid: bool | None
    reason: str


def signature_format(signature: bytes) -> str:
    """``ssh``, ``openpgp`` or ``x509`` from the armor of a signature."""
    if b"BEGIN SSH SIGNATURE" in signature:
        return "ssh"
    if b"BEGIN PGP SIGNATURE" in signature:
        return "openpgp"
    return "x509"


def check_signature(signature: bytes, payload: bytes, config: pygit2.Config) -> SignatureCheck:
    """Verify ``signature`` over ``payload`` as ``git verify-commit`` would."""
    fmt = signature_format(signature)
    if fmt == "ssh":
        return _check_ssh(signature, payload, config)
    if fmt == "openpgp":
        return _check_gpg(signature, payload, config)
    return SignatureCheck(fmt, None, None, "x509 signatures are not checked")


def _check_ssh(signature: bytes, payload: bytes, config: pygit2.Config) -> SignatureCheck:
    allowed = _config(config, "gpg.ssh.allowedSignersFile")
    program = _config(config, "gpg.ssh.program") or "ssh-keygen"
    if allowed is None:
        return SignatureCheck("ssh", None, None, "gpg.ssh.allowedSignersFile is not set")
    allowed = os.path.expanduser(allowed)
    with tempfile.TemporaryDirectory(prefix="progreg-verify-") as tmp:
        sig_path = Path(tmp) / "signature"
        sig_path.write_bytes(signature)
        found = _run(
            [program, "-Y", "find-principals", "-f", allowed, "-s", str(sig_path)],
            b"",
            "check an SSH signature",
        )
        principal = found.stdout.decode().strip().splitlines()[0] if found.stdout.strip() else None
        if found.returncode != 0 or principal is None:
            return SignatureCheck("ssh", None, False, "the key is not in the allowed signers")
        done = _run(
            [
                program,
                "-Y",
                "verify",
                "-f",
                allowed,
                "-I",
                principal,
                "-n",
                SSH_NAMESPACE,
                "-s",
                str(sig_path),
            ],
            payload,
            "check an SSH signature",
        )
    if done.returncode == 0:
        return SignatureCheck("ssh", principal, True, "good signature")
    return SignatureCheck("ssh", principal, False, _tail(done.stderr + done.stdout))


def _check_gpg(signature: bytes, payload: bytes, config: pygit2.Config) -> SignatureCheck:
    program = _config(config, "gpg.openpgp.program") or _config(config, "gpg.program") or "gpg"
    with tempfile.TemporaryDirectory(prefix="progreg-verify-") as tmp:
        sig_path = Path(tmp) / "signature.asc"
        sig_path.write_bytes(signature)
        done = _run(
            [program, "--status-fd=1", "--verify", str(sig_path), "-"],
            payload,
            "check an OpenPGP signature",
        )
    signer = None
    good = False
    for line in done.stdout.decode(errors="replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == "[GNUPG:]" and parts[1] in {"GOODSIG", "BADSIG"}:
            signer = parts[3] if len(parts) > 3 else parts[2]
            good = parts[1] == "GOODSIG"
    if good and done.returncode == 0:
        return SignatureCheck("openpgp", signer, True, "good signature")
    return SignatureCheck("openpgp", signer, False, _tail(done.stderr))


def _tail(output: bytes) -> str:
    lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def tag_signature(raw: bytes) -> tuple[bytes, bytes] | None:
    """Split a raw tag object into ``(signature, signed payload)``, or ``None`` if unsigned."""
    for marker in (b"-----BEGIN SSH SIGNATURE-----", b"-----BEGIN PGP SIGNATURE-----"):
        index = raw.rfind(marker)
        if index != -1:
            return raw[index:], raw[:index]
    return None
