"""Where credentials for a remote come from, and how a refusal stops instead of looping.

In order, the first source that has something wins:

1. what the caller passed (``credentials=``): a pygit2 credential object
   (``pygit2.UserPass``, ``pygit2.Keypair``, ``pygit2.KeypairFromAgent``...)
   or a callback ``(url, username_from_url, allowed_types) -> credential``;
2. the environment: for HTTP(S), ``PROGREG_GIT_USERNAME`` with
   ``PROGREG_GIT_PASSWORD``, or ``PROGREG_GIT_TOKEN`` (user name
   ``PROGREG_GIT_USERNAME``, the URL's, else ``x-access-token``); for SSH,
   the key file ``PROGREG_GIT_SSH_KEY`` (its ``.pub`` beside it if present,
   passphrase ``PROGREG_GIT_SSH_PASSPHRASE``), else the SSH agent
   (``SSH_AUTH_SOCK``).

libgit2 asks again, without end, as long as the server refuses what it was
given; :class:`CredentialSource` raises :class:`~progreg.AuthenticationError`
on the second request of one operation instead. Nothing here is ever written
to disk, and the secrets it hands out are known to :meth:`CredentialSource.secrets`
so that messages can be scrubbed of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import pygit2
from pygit2.enums import CredentialType

from progreg.errors import AuthenticationError, InvalidInputError
from progreg.git.wire.urls import CREDENTIALS_HELP, redact_url

Credential = pygit2.Username | pygit2.UserPass | pygit2.Keypair
CredentialCallback = Callable[[str, str | None, CredentialType], Credential]

USERNAME_VAR = "PROGREG_GIT_USERNAME"
PASSWORD_VAR = "PROGREG_GIT_PASSWORD"
TOKEN_VAR = "PROGREG_GIT_TOKEN"
SSH_KEY_VAR = "PROGREG_GIT_SSH_KEY"
SSH_PASSPHRASE_VAR = "PROGREG_GIT_SSH_PASSPHRASE"
TOKEN_USERNAME = "x-access-token"


def check_credentials(credentials: object) -> CredentialCallback | None:
    """The caller's ``credentials`` as a callback, or ``None``; raise if unusable."""
    if credentials is None:
        return None
    if hasattr(credentials, "credential_type") and hasattr(credentials, "credential_tuple"):
        credential = cast(Credential, credentials)
        return lambda _url, _user, _allowed: credential
    if callable(credentials):
        return cast(CredentialCallback, credentials)
    raise InvalidInputError(
        "credentials must be a pygit2 credential (pygit2.UserPass, pygit2.Keypair...) or a"
        f" callable (url, username_from_url, allowed_types) -> credential, not"
        f" {type(credentials).__name__}"
    )


def from_environment(
    username_from_url: str | None, allowed: CredentialType, env: Mapping[str, str]
) -> tuple[Credential | None, str]:
    """Credentials the environment offers for a request allowing ``allowed``, and their source."""
    if allowed & CredentialType.USERPASS_PLAINTEXT:
        user = env.get(USERNAME_VAR) or username_from_url
        if env.get(PASSWORD_VAR):
            if not user:
                raise AuthenticationError(
                    f"{PASSWORD_VAR} is set but no user name: set {USERNAME_VAR} too"
                )
            return pygit2.UserPass(user, env[PASSWORD_VAR]), f"{USERNAME_VAR}/{PASSWORD_VAR}"
        if env.get(TOKEN_VAR):
            return pygit2.UserPass(user or TOKEN_USERNAME, env[TOKEN_VAR]), TOKEN_VAR
        return None, ""
    user = username_from_url or env.get(USERNAME_VAR) or "git"
    if allowed & CredentialType.SSH_KEY:
        key = env.get(SSH_KEY_VAR)
        if key:
            private = Path(key).expanduser()
            public = private.with_name(private.name + ".pub")
            passphrase = env.get(SSH_PASSPHRASE_VAR, "")
            credential = pygit2.Keypair(
                user, public if public.exists() else None, private, passphrase
            )
            return credential, SSH_KEY_VAR
        if env.get("SSH_AUTH_SOCK"):
            return pygit2.KeypairFromAgent(user), "the SSH agent"
    if allowed & CredentialType.USERNAME:
        return pygit2.Username(user), "the URL"
    return None, ""


class CredentialSource:
    """Answers libgit2's credential requests for one operation on one remote."""

    def __init__(
        self, url: str, supplied: object = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.url = url
        self.callback = check_credentials(supplied)
        self.env = os.environ if env is None else env
        self.attempts = 0
        self.source = ""
        self._secrets: list[str] = []

    def secrets(self) -> tuple[str, ...]:
        """Every secret handed out (and the environment's), to scrub from messages."""
        names = (PASSWORD_VAR, TOKEN_VAR, SSH_PASSPHRASE_VAR)
        return tuple(self._secrets) + tuple(self.env[n] for n in names if self.env.get(n))

    def __call__(
        self, url: str, username_from_url: str | None, allowed: CredentialType
    ) -> Credential:
        """libgit2's credential callback: the next credential to try, or raise."""
        if allowed == CredentialType.USERNAME:  # SSH asks for the user name first
            return pygit2.Username(username_from_url or self.env.get(USERNAME_VAR) or "git")
        self.attempts += 1
        shown = redact_url(self.url)
        if self.attempts > 1:
            raise AuthenticationError(
                f"{shown} refused the credentials from {self.source}: check them"
                " (they are never stored by progreg)"
            )
        credential: Credential | None
        if self.callback is not None:
            credential, self.source = self.callback(url, username_from_url, allowed), "the caller"
        else:
            credential, self.source = from_environment(username_from_url, allowed, self.env)
        if credential is None:
            raise AuthenticationError(
                f"{shown} asks for credentials and none are set: {_help(allowed)}"
            )
        self._remember(credential)
        return credential

    def _remember(self, credential: object) -> None:
        values: tuple[object, ...] = tuple(getattr(credential, "credential_tuple", ()))
        if isinstance(credential, pygit2.UserPass):
            secrets = values[1:2]
        elif isinstance(credential, pygit2.Keypair):
            secrets = values[3:4]
        else:
            secrets = ()
        self._secrets.extend(s for s in secrets if isinstance(s, str) and s)


def _help(allowed: CredentialType) -> str:
    if allowed & CredentialType.USERPASS_PLAINTEXT:
        return CREDENTIALS_HELP
    return (
        f"start an SSH agent with your key (ssh-add), or set {SSH_KEY_VAR} to the private"
        " key's path, or pass credentials= to the call"
    )
