"""Remote URLs: which ones are accepted, which are local paths, and how to show them safely.

A remote URL is stored in the repository's configuration, so it must never
hold a secret. Refused, with a message that does not echo the secret and
points at the environment variables that carry credentials instead:

* a password in the user information (``https://user:pw@host/...``), also
  percent-encoded (``user%3Apw@``), and a well-known access-token prefix in
  place of a user name (``https://ghp_...@host/...``);
* any query or fragment (``...?access_token=...``, ``#token=...``): Git's
  transports build their own queries, and a remote URL needs neither.

Whenever a URL is shown (messages, events, results, commit messages), its
user information, query and fragment are stripped by :func:`redact_url`, and
:func:`scrub` removes user information that a libgit2 message might echo.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from progreg.errors import InvalidInputError

#: Transports progreg talks to (through libgit2, dulwich or its safe local push).
SCHEMES = frozenset({"http", "https", "ssh", "git", "file"})
CREDENTIALS_HELP = (
    "set PROGREG_GIT_USERNAME and PROGREG_GIT_PASSWORD (or PROGREG_GIT_TOKEN) in the"
    " environment instead, or pass credentials= to the call"
)
#: Prefixes of access tokens that people paste as the user name of an https URL.
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_SCP = re.compile(r"^(?:(?P<user>[^@/]*)@)?(?P<host>[^/:]{2,}):(?P<path>.*)$")


def redact_url(url: str) -> str:
    """``url`` without any user name or password, for messages and events."""
    if _SCHEME.match(url):
        try:
            parts = urlsplit(url)
        except ValueError:
            return _USERINFO.sub(r"\1", url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=host, query="", fragment=""))
    scp = _SCP.match(url)
    if scp is not None and not _is_drive(url):
        return f"{scp['host']}:{scp['path']}"
    return url


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with user information removed from URLs and every secret replaced by ``***``."""
    text = _USERINFO.sub(r"\1", text)
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def _is_drive(url: str) -> bool:
    return len(url) >= 2 and url[1] == ":" and url[0].isalpha()


def is_local(url: str) -> bool:
    """True when ``url`` names a repository on this machine (a path or ``file://``)."""
    match = _SCHEME.match(url)
    if match is not None:
        return match.group(1).lower() == "file"
    return _SCP.match(url) is None or _is_drive(url) or url.startswith(("/", "./", "../", "~"))


def local_path(url: str) -> Path:
    """The directory a local ``url`` (a path or ``file://`` URL) names."""
    if _SCHEME.match(url):
        return Path(unquote(urlsplit(url).path))
    return Path(url).expanduser()


def _looks_like_token(user: str) -> bool:
    """A user name that is a password in disguise: a token prefix, or ``user:pw`` encoded."""
    decoded = unquote(user)
    return decoded.startswith(_TOKEN_PREFIXES) or ":" in decoded


def check_url(url: object) -> str:
    """Return ``url`` as it should be stored (local paths made absolute), or raise.

    Raises :class:`~progreg.InvalidInputError` for anything that is not a
    plain Git URL or path, and for a URL that carries a password or token.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidInputError("a remote URL must be a non-empty string")
    if url != url.strip() or any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidInputError("a remote URL cannot contain control characters or edge spaces")
    if url.startswith("-"):
        raise InvalidInputError(f"a remote URL cannot start with '-': {redact_url(url)!r}")
    shown = redact_url(url)
    match = _SCHEME.match(url)
    if match is not None:
        return _check_scheme_url(url, match.group(1).lower(), shown)
    if "::" in url.split("/", 1)[0]:
        raise InvalidInputError(
            f"remote helpers ({url.split('::', 1)[0]}::...) are not supported: {shown!r}"
        )
    scp = _SCP.match(url)
    if scp is not None and not is_local(url):
        user = scp["user"] or ""
        if ":" in user or _looks_like_token(user):
            raise InvalidInputError(
                f"remote URL {shown!r} seems to contain a password or token: remove it and"
                f" {CREDENTIALS_HELP}"
            )
        return url
    return str(local_path(url).absolute())


def _check_scheme_url(url: str, scheme: str, shown: str) -> str:
    if scheme not in SCHEMES:
        raise InvalidInputError(
            f"unsupported remote URL scheme {scheme!r} in {shown!r}:"
            f" use one of {', '.join(sorted(SCHEMES))}, or a path"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise InvalidInputError(f"malformed remote URL {shown!r}: {exc}") from None
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInputError(f"file:// URLs must name a local path: {shown!r}")
        return url
    if not parts.hostname:
        raise InvalidInputError(f"remote URL {shown!r} has no host")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InvalidInputError(
            f"remote URL {shown!r} has a query or fragment (after '?' or '#'), where tokens"
            f" hide and which Git remotes never need: remove it and {CREDENTIALS_HELP}"
        )
    if parts.password is not None or _looks_like_token(parts.username or ""):
        raise InvalidInputError(
            f"remote URL {shown!r} contains a password or token, which would be stored in"
            f" the registry's configuration: remove it and {CREDENTIALS_HELP}"
        )
    return url
