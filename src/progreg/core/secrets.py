"""Credentials in program documents: found, then refused or redacted, never stored.

Every save (``save_program``, ``save_programs``, checkpoints) and every import
of a reference JSON export or ``dspy_storage/`` folder looks for credentials
in the program's state, its optimization result and its metadata. A bundle
import looks into every program it brings to ``main``. The rules:

* inside LM settings (any object under an ``"lm"`` key, as DSPy keeps each
  predictor's), a non-empty value whose **key name** says it is a credential:
  it contains ``secret``, ``password``/``passwd``/``passphrase``,
  ``credential(s)``, ``auth``/``authorization``, ``cookie``, ``bearer``, the
  word ``token`` (not a count, vocabulary entry or page marker: ``max_tokens``,
  ``eos_token``, ``next_page_token`` are fine), ``api key``/``access key``/
  ``private key``/``session key``/``subscription key`` in any spelling
  (``api_key``, ``apiKey``, ``x-api-key``...), or a provider's name before a
  final ``key`` (``openai_key``); not when its last word describes a setting
  (``auth_mode``, ``token_type``, ``api_key_env``);
* anywhere else, a key whose name *ends* with such a word (``api_key``,
  ``github_token``, ``db_password``, ``authorization``, ``openai_key``; not
  ``token_type`` or ``password_hint``) holding a token-like string: at least
  8 characters, no whitespace, not a placeholder such as ``${OPENAI_API_KEY}``;
* anywhere (demos, instructions, metadata...), a string that **looks like**
  a credential (:data:`_SECRET_PATTERNS`): ``sk-...`` keys (OpenAI, Anthropic,
  DeepSeek...), GitHub, GitLab, Hugging Face, Groq, Slack, Stripe (webhook
  secrets too), SendGrid, npm, PyPI, Google (API keys, OAuth access tokens and
  client secrets), AWS access key ids and secret keys, JSON Web Tokens,
  ``Bearer``/``Basic`` authorization values, PEM and PGP private keys, a URL
  with ``user:password@`` or a ``?key=``/``token=``... query;
* the same formats percent-encoded, or base64-encoded in a run of 24 or more
  base64 characters (decoded from each of its first four characters).

:func:`find_secrets` applies them precisely (a Python walk);
:func:`may_hold_secrets` is the quick test on a document's encoded bytes that
lets a save skip the walk when nothing could match. A finding names the path
of the value (``state.predict.lm.api_key``) and the rule, never the value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import itertools
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, AnyStr, Generic, Literal

from progreg.core.document import ProgramDocument
from progreg.errors import InvalidInputError, SecretDetectedError


class _LazyPattern(Generic[AnyStr]):
    """A regular expression compiled at its first use.

    The rules below are some fifty expressions; compiled with the module they
    would cost every command that never screens anything (``progreg list``)
    about 5 ms of its start-up.
    """

    def __init__(self, source: AnyStr, flags: int = 0) -> None:
        self._source: AnyStr = source
        self._flags = flags

    @functools.cached_property
    def _compiled(self) -> re.Pattern[AnyStr]:
        return re.compile(self._source, self._flags)

    def search(self, text: AnyStr) -> re.Match[AnyStr] | None:
        return self._compiled.search(text)

    def finditer(self, text: AnyStr) -> Iterator[re.Match[AnyStr]]:
        return self._compiled.finditer(text)


#: What to do with a credential in a program: refuse the save (the default) or redact it.
SecretsPolicy = Literal["refuse", "redact"]
POLICIES: tuple[SecretsPolicy, ...] = ("refuse", "redact")
#: What replaces a credential when redacting.
REDACTED = "[REDACTED]"
#: The metadata key listing what a redacting save replaced (paths, never values).
REDACTED_KEY = "redacted_secrets"
#: The key of a predictor's LM settings in a DSPy state.
LM_KEY = "lm"
#: Deepest level looked into (canonical JSON refuses anything deeper).
_MAX_DEPTH = 100


@dataclass(frozen=True)
class SecretFinding:
    """One credential found in a program state: where, and by which rule (never the value)."""

    path: str
    reason: str
    in_lm_settings: bool
    #: Found by its key's name (the whole value is the credential), not by its format.
    by_key: bool = False


def check_policy(policy: object) -> SecretsPolicy:
    """Return ``policy`` if it is ``"refuse"`` or ``"redact"``, else raise InvalidInputError."""
    if policy == "refuse":
        return "refuse"
    if policy == "redact":
        return "redact"
    raise InvalidInputError(
        f"secrets={policy!r} is not a secrets policy: use 'refuse' (the default: a program"
        " holding a credential is not saved) or 'redact' (it is saved with the credential"
        f" replaced by {REDACTED!r})"
    )


# -- key names ---------------------------------------------------------------------------

#: Single words (of a key name split on case and punctuation) that name a credential.
_SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "authentication",
        "cookie",
        "bearer",
        "token",
        "apikey",
        "privatekey",
        "accesskey",
        "secretkey",
    }
)
#: Pairs of consecutive words that name a credential (``api_key``, ``x-api-key``...).
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("session", "key"),
        ("subscription", "key"),
        ("client", "secret"),
        ("secret", "key"),
    }
)
#: Words that make ``token`` a count, a vocabulary entry or a page marker rather than a
#: credential (``token_limit``, ``eos_token``, ``stop_token``, ``next_page_token``).
_TOKEN_COUNT_WORDS = frozenset(
    {
        *("max", "min", "limit", "count", "num", "budget", "usage"),
        *("eos", "bos", "pad", "unk", "sep", "cls", "mask", "stop", "start", "end", "special"),
        *("page", "next", "prev", "previous", "continuation", "cursor", "pagination", "sync"),
    }
)
#: Last words that make a key a setting *about* a credential (``auth_mode``,
#: ``api_key_env``, ``token_type``), not the credential itself.
_DESCRIPTOR_WORDS = frozenset(
    {
        *("mode", "type", "method", "scheme", "kind", "provider", "version", "format"),
        *("env", "var", "variable", "name", "hint", "url", "uri", "endpoint", "enabled"),
        *("required", "file", "path", "expiry", "expires", "ttl"),
    }
)
#: Providers whose name before a final ``key`` makes it a credential (``openai_key``).
_PROVIDER_WORDS = frozenset(
    {
        *("openai", "anthropic", "azure", "google", "gemini", "vertex", "groq", "cohere"),
        *("mistral", "together", "huggingface", "hf", "deepseek", "perplexity", "fireworks"),
        *("aws", "bedrock", "github", "gitlab", "slack", "stripe", "sendgrid", "npm", "pypi"),
        *("replicate", "voyage", "pinecone", "langsmith", "langchain", "openrouter", "xai"),
        *("anyscale", "databricks", "cerebras", "nvidia", "ollama", "weaviate", "qdrant"),
    }
)
#: Outside LM settings, the last word of a key that names a credential (``db_password``).
_NOUNS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "passphrase",
        "credential",
        "credentials",
        "authorization",
        "cookie",
        "token",
        "apikey",
        "privatekey",
        "accesskey",
        "secretkey",
    }
)

_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
#: A value that could be a credential: 8 or more characters without whitespace.
_TOKEN_LIKE = re.compile(r"\S{8,}")
#: Values that stand for a credential kept elsewhere: ``${API_KEY}``, ``<token>``, ``****``.
_PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^<>]*>|\{\{[^{}]*\}\}|[*xX.#-]+")


def _key_words(key: str) -> list[str]:
    return [word.lower() for word in _WORDS.findall(key)]


def _provider_key(words: list[str]) -> str | None:
    """``"its name says openai key"`` for a key ending in ``key`` after a provider's name."""
    if len(words) >= 2 and words[-1] == "key":
        for word in words[:-1]:
            if word in _PROVIDER_WORDS:
                return f"its name says {word} key"
    return None


@functools.lru_cache(maxsize=4096)
def secret_key_reason(key: str) -> str | None:
    """Why a settings key names a credential (``"its name says api key"``), or ``None``."""
    words = _key_words(key)
    if len(words) >= 2 and words[-1] in _DESCRIPTOR_WORDS:
        return None
    pairs = set(itertools.pairwise(words)) & _SECRET_PAIRS
    if pairs:
        return f"its name says {' '.join(min(pairs))}"
    provider = _provider_key(words)
    if provider is not None:
        return provider
    for word in words:
        if word == "token" and _TOKEN_COUNT_WORDS.intersection(words):
            continue
        if word in _SECRET_WORDS:
            return f"its name says {word}"
    return None


@functools.lru_cache(maxsize=4096)
def credential_key_reason(key: str) -> str | None:
    """Why a key outside LM settings names a credential: its last word(s), or ``None``."""
    words = _key_words(key)
    if not words:
        return None
    if len(words) >= 2 and (words[-2], words[-1]) in _SECRET_PAIRS:
        return f"its name says {words[-2]} {words[-1]}"
    provider = _provider_key(words)
    if provider is not None:
        return provider
    last = words[-1]
    if last == "token" and _TOKEN_COUNT_WORDS.intersection(words):
        return None
    return f"its name says {last}" if last in _NOUNS else None


def _token_like(value: object) -> bool:
    return (
        isinstance(value, str)
        and _TOKEN_LIKE.fullmatch(value) is not None
        and REDACTED not in value
        and _PLACEHOLDER.fullmatch(value) is None
    )


# -- values ------------------------------------------------------------------------------


def _has_classes(text: str, *, upper: bool = True, lower: bool = True, digit: bool = True) -> bool:
    """Whether ``text`` mixes the wanted character classes (as a random key does)."""
    return (
        (not upper or any(c.isupper() for c in text))
        and (not lower or any(c.islower() for c in text))
        and (not digit or any(c.isdigit() for c in text))
    )


def _b64decode(text: str) -> bytes | None:
    """``text`` (standard or URL-safe base64, padding optional) decoded, or None."""
    stripped = text.rstrip("=").translate(_URLSAFE_TO_STANDARD)
    if len(stripped) % 4 == 1:
        return None
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_URLSAFE_TO_STANDARD_BYTES = bytes.maketrans(b"-_", b"+/")


def _is_text(data: bytes | None) -> bool:
    """Whether decoded bytes read as text (printable ASCII, UTF-8 letters, line breaks)."""
    if not data:
        return False
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in decoded)


def _basic_credentials(match: re.Match[str], text: str) -> bool:
    """``Basic <base64 of user:password>``: the value decodes to text holding a colon."""
    decoded = _b64decode(match.group(1))
    return decoded is not None and _is_text(decoded) and b":" in decoded


def _random_looking(match: re.Match[str], text: str) -> bool:
    """A value with letters and digits, as random tokens have (``?key=name`` has none)."""
    value = match.group(1)
    return _has_classes(value, upper=False) or _has_classes(value, lower=False)


#: An AWS access key id, beside which a 40-character base64 string is its secret key.
_AWS_KEY_ID = _LazyPattern(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def _class_changes(text: str) -> int:
    """How often the next character's class (upper, lower, digit, other) differs: about
    25 in 40 random base64 characters, far fewer in a path or a CamelCase name."""

    def kind(char: str) -> int:
        return 0 if char.isupper() else 1 if char.islower() else 2 if char.isdigit() else 3

    kinds = [kind(char) for char in text]
    return sum(1 for a, b in itertools.pairwise(kinds) if a != b)


def _aws_secret_key(match: re.Match[str], text: str) -> bool:
    """40 base64 characters mixing upper case, lower case and digits as randomly as a key
    does, that do not decode to text, and either beside an AWS key id or holding ``/`` or
    ``+`` (as 72% of keys do)."""
    value = match.group(0)
    if not _has_classes(value) or value.count("/") > 3 or _class_changes(value) < 16:
        return False
    if _is_text(_b64decode(value)):
        return False
    return "/" in value or "+" in value or _AWS_KEY_ID.search(text) is not None


@dataclass(frozen=True)
class _Pattern:
    """A credential format: ``pattern`` is tried only on texts holding one of ``hints``;
    a match counts when ``accept`` (if any) says so."""

    reason: str
    pattern: _LazyPattern[str]
    hints: tuple[str, ...]
    lowercase: bool = False  # look for the hints in the lowercased text
    accept: Callable[[re.Match[str], str], bool] | None = None

    def matches(self, text: str, lowered: str) -> list[re.Match[str]]:
        """The matches of this format in ``text`` (``lowered`` is ``text.lower()``)."""
        if self.hints and not any(
            hint in (lowered if self.lowercase else text) for hint in self.hints
        ):
            return []
        found = self.pattern.finditer(text)
        if self.accept is None:
            first = next(found, None)
            return [] if first is None else [first, *found]
        return [match for match in found if self.accept(match, text)]


#: Texts that look like credentials, with what they look like. The literal hints
#: keep the scan of a large state (thousands of demos) fast.
_SECRET_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "looks like an sk-... API key",
        # OpenAI (sk-proj-, sk-svcacct-, sk-admin-, legacy), Anthropic (sk-ant-): a random
        # part mixing cases and digits; DeepSeek, OpenRouter (sk-or-v1-): 32+ hex digits.
        # ``sk-learn-2024-compatible`` has neither.
        # The providers' own labels (sk-proj-, sk-ant-api03-...) need only a digit.
        _LazyPattern(
            r"\bsk-(?:(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*\d)"
            r"[A-Za-z0-9_-]{20,}|(?:[a-z0-9]+-){0,3}[0-9a-f]{32,}\b"
            r"|(?:proj|svcacct|admin|ant-[a-z]+\d*|or-v\d+)-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,})"
        ),
        ("sk-",),
    ),
    _Pattern(
        "looks like a GitHub token",
        _LazyPattern(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _Pattern("looks like a GitLab token", _LazyPattern(r"\bglpat-[A-Za-z0-9_-]{20,}"), ("glpat-",)),
    _Pattern("looks like a Hugging Face token", _LazyPattern(r"\bhf_[A-Za-z0-9]{30,}"), ("hf_",)),
    _Pattern("looks like a Groq API key", _LazyPattern(r"\bgsk_[A-Za-z0-9]{20,}"), ("gsk_",)),
    _Pattern(
        "looks like a Slack token",
        _LazyPattern(r"\b(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,})"),
        ("xox", "xapp-"),
    ),
    _Pattern(
        "looks like a Stripe key",
        _LazyPattern(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"),
        ("k_live_", "k_test_"),
    ),
    _Pattern(
        "looks like a Stripe webhook secret",
        _LazyPattern(r"\bwhsec_[A-Za-z0-9+/]{24,}"),
        ("whsec_",),
    ),
    _Pattern(
        "looks like a SendGrid API key",
        _LazyPattern(r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
        ("SG.",),
    ),
    _Pattern("looks like an npm token", _LazyPattern(r"\bnpm_[A-Za-z0-9]{36}"), ("npm_",)),
    _Pattern(
        "looks like a PyPI token", _LazyPattern(r"\bpypi-AgE[A-Za-z0-9_-]{50,}"), ("pypi-AgE",)
    ),
    _Pattern("looks like a Google API key", _LazyPattern(r"\bAIza[0-9A-Za-z_-]{35}"), ("AIza",)),
    _Pattern(
        "looks like a Google OAuth access token",
        _LazyPattern(r"\bya29\.[0-9A-Za-z_-]{30,}"),
        ("ya29.",),
    ),
    _Pattern(
        "looks like a Google OAuth client secret",
        _LazyPattern(r"\bGOCSPX-[0-9A-Za-z_-]{24,}"),
        ("GOCSPX-",),
    ),
    _Pattern(
        "looks like an AWS secret access key",
        _LazyPattern(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])"),
        (),
        accept=_aws_secret_key,
    ),
    _Pattern("looks like an AWS access key id", _AWS_KEY_ID, ("AKIA", "ASIA")),
    _Pattern(
        "looks like a JSON Web Token",
        _LazyPattern(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        ("eyJ",),
    ),
    _Pattern(
        "looks like a bearer token",
        _LazyPattern(r"(?ai)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)"),
        ("bearer",),
        lowercase=True,
        accept=_random_looking,
    ),
    _Pattern(
        "looks like basic-auth credentials",
        _LazyPattern(r"(?ai)\bbasic\s+([A-Za-z0-9+/]{16,}=*)"),
        ("basic",),
        lowercase=True,
        accept=_basic_credentials,
    ),
    _Pattern(
        "holds a private key",
        # the whole block (to the END line, or to the end of the text) is the secret
        _LazyPattern(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*)",
            re.DOTALL,
        ),
        ("PRIVATE KEY",),
    ),
    _Pattern(
        "a URL with a user and password in it",
        _LazyPattern(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
        ("://",),
    ),
    _Pattern(
        "a URL with a credential in its query",
        _LazyPattern(
            r"(?ai)[?&](?:api[-_]?key|key|token|access[-_]?token|auth|password|secret|sig|signature)"
            r"=([^&#\s]{6,})"
        ),
        ("=",),
        accept=_random_looking,
    ),
)

#: A run of base64 characters (either alphabet) long enough to be looked into decoded.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{24,}")
MIN_BASE64_RUN = 24
#: A percent-escape (``%2D``): a text holding one is also looked at percent-decoded.
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


#: Whether a text holds any hint of the formats, in one pass.
_HINTS = _LazyPattern(
    "|".join(
        sorted(
            {re.escape(hint) for entry in _SECRET_PATTERNS for hint in entry.hints}
            | {"[Bb][Ee][Aa][Rr][Ee][Rr]", "[Bb][Aa][Ss][Ii][Cc]"}
        )
    )
)
#: The formats without a hint (the lone AWS secret key), tried on every text holding a
#: run of ``_HINTLESS_LENGTH`` base64 characters: each must need such a run.
_HINTLESS = tuple(entry for entry in _SECRET_PATTERNS if not entry.hints)
_HINTLESS_LENGTH = 40


def _plain_matches(
    text: str, runs: list[str] | None = None
) -> list[tuple[_Pattern, list[re.Match[str]]]]:
    """The credential formats found in ``text`` as written, with their matches.

    ``runs``, when given, are ``text``'s base64 runs (:data:`_BASE64_RUN`): a
    hintless format needs a run of 40, so without one it is not tried.
    """
    if _HINTS.search(text) is None:
        if len(text) < _HINTLESS_LENGTH or (
            runs is not None and all(len(run) < _HINTLESS_LENGTH for run in runs)
        ):
            return []
        candidates = _HINTLESS
    else:
        candidates = _SECRET_PATTERNS
    lowered = text.lower()
    found = []
    for entry in candidates:
        matches = entry.matches(text, lowered)
        if matches:
            found.append((entry, matches))
    return found


def _decode_run(run: bytes) -> bytes:
    """A run of base64 characters (either alphabet, no padding) decoded to its last byte."""
    usable = run[: len(run) - 1] if len(run) % 4 == 1 else run
    padded = usable.translate(_URLSAFE_TO_STANDARD_BYTES) + b"=" * (-len(usable) % 4)
    return base64.b64decode(padded)


def _decoded_forms(text: str, runs: list[str]) -> list[tuple[str, str]]:
    """What ``text`` holds encoded: ``(how, decoded text)`` for its percent-decoding and for
    each of its base64 ``runs`` (24+ characters) decoded from each of its first four
    offsets."""
    forms = []
    if "%" in text and _PERCENT_ESCAPE.search(text):
        forms.append(("percent-encoded", urllib.parse.unquote(text, errors="replace")))
    for run in runs:
        for offset in range(4):
            decoded = _decode_run(run[offset:].encode("ascii"))
            forms.append(("base64-encoded", decoded.decode("latin-1")))
    return forms


def _text_reason(text: str) -> str | None:
    """Why ``text`` holds a credential, as written or encoded, or ``None``."""
    if len(text) < MIN_BASE64_RUN and "%" not in text and _HINTS.search(text) is None:
        return None  # too short for a hintless format or an encoded one, and no hint
    runs = _BASE64_RUN.findall(text)
    found = _plain_matches(text, runs)
    if found:
        return found[0][0].reason
    for how, decoded in _decoded_forms(text, runs):
        found = _plain_matches(decoded)
        if found:
            return f"holds a {how} credential ({found[0][0].reason})"
    return None


def credential_in_text(text: str) -> str | None:
    """Why a text (a name, a message) holds a credential, as written or encoded, or ``None``.

    The value rules of :func:`find_secrets` for one string: a provider's key
    format, a private key, a URL with credentials, and their encoded forms.
    """
    return _text_reason(text)


@functools.lru_cache(maxsize=4096)
def _key_text_reason(key: str) -> str | None:
    """:func:`_text_reason` of a key: documents repeat their keys, so it is remembered."""
    return _text_reason(key)


def _is_empty(value: object) -> bool:
    return value is None or isinstance(value, bool) or value in ("", [], {})


# -- the quick test on encoded bytes -----------------------------------------------------

#: The value formats above, loosened for JSON text (``\\n`` may precede a key, so no
#: word boundaries), each tried only when one of its hints is in the lowercased bytes:
#: ``(hints, pattern, on the lowercased bytes)``. A superset of what the walk finds.
_QUICK_VALUES: tuple[tuple[tuple[bytes, ...], _LazyPattern[bytes], bool], ...] = (
    ((b"sk-",), _LazyPattern(rb"sk-[A-Za-z0-9_-]{20,}"), False),
    (
        (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
        _LazyPattern(rb"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_"),
        False,
    ),
    ((b"glpat-",), _LazyPattern(rb"glpat-[A-Za-z0-9_-]{20,}"), False),
    ((b"hf_",), _LazyPattern(rb"hf_[A-Za-z0-9]{30,}"), False),
    ((b"gsk_",), _LazyPattern(rb"gsk_[A-Za-z0-9]{20,}"), False),
    ((b"xox", b"xapp-"), _LazyPattern(rb"xox[abposre]-|xapp-"), False),
    ((b"k_live_", b"k_test_"), _LazyPattern(rb"[rs]k_(?:live|test)_"), False),
    ((b"whsec_",), _LazyPattern(rb"whsec_"), False),
    ((b"sg.",), _LazyPattern(rb"SG\.[A-Za-z0-9_-]{22}\."), False),
    ((b"npm_",), _LazyPattern(rb"npm_[A-Za-z0-9]{36}"), False),
    ((b"pypi-age",), _LazyPattern(rb"pypi-AgE"), False),
    ((b"aiza",), _LazyPattern(rb"AIza[0-9A-Za-z_-]{35}"), False),
    ((b"ya29.",), _LazyPattern(rb"ya29\.[0-9A-Za-z_-]{30,}"), False),
    ((b"gocspx-",), _LazyPattern(rb"GOCSPX-"), False),
    ((b"akia", b"asia"), _LazyPattern(rb"(?:AKIA|ASIA)[0-9A-Z]{16}"), False),
    ((b"eyj",), _LazyPattern(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ"), False),
    ((b"private key",), _LazyPattern(rb"PRIVATE KEY(?: BLOCK)?-----"), False),
    (
        (b"bearer", b"basic"),
        _LazyPattern(rb"(?:bearer|basic)[^a-z0-9._~+/-]+[a-z0-9._~+/-]{16,}"),
        True,
    ),
    ((b"://",), _LazyPattern(rb"://[^/\s:@]+:[^/\s@]+@"), False),
    (
        (b"key=", b"token=", b"auth=", b"password=", b"secret=", b"sig=", b"signature="),
        _LazyPattern(
            rb"[?&](?:api[-_]?key|key|token|access[-_]?token|auth|password|secret|sig|signature)="
        ),
        True,
    ),
)
#: The end of every key of a JSON text, in any layout: a string followed by ``:`` is
#: always a key (a value is followed by ``,``, ``}`` or ``]``).
_KEY_END = re.compile(rb'"[ \t\r\n]*:')
#: JSON escapes that can spell a credential's characters in another form (``\u0073k-``,
#: ``https:\/\/``): a text holding one is walked, whatever its bytes look like.
_DISGUISING_ESCAPES = (b"\\u", b"\\/")
_PERCENT_ESCAPE_BYTES = re.compile(rb"%[0-9A-Fa-f]{2}")


def _caseless(word: bytes) -> bytes:
    return b"".join(b"[%c%c]" % (c, c ^ 32) if 97 <= c <= 122 else bytes([c]) for c in word)


#: One fast pass over the bytes for what every format of :data:`_QUICK_VALUES` but
#: ``bearer``/``basic`` contains: each branch starts with a rare byte (``_ - = / .``,
#: capitals) and looks behind it, so the scan skips everything else at C speed.
_SIEVE = _LazyPattern(
    rb"_(?:(?<=gh[pousr]_)|(?<=github_pat_)|(?<=hf_)|(?<=gsk_)|(?<=k_live_)|(?<=k_test_)"
    rb"|(?<=npm_)|(?<=whsec_))"
    rb"|-(?:(?<=sk-)|(?<=xox[abposre]-)|(?<=xapp-)|(?<=KEY-)|(?<=BLOCK-)|(?<=glpat-)"
    rb"|(?<=GOCSPX-)|(?<=pypi-))"
    rb"|\.(?:(?<=ya29\.)|(?<=SG\.))"
    rb"|=(?:"
    + b"|".join(
        b"(?<=%s=)" % _caseless(word)
        for word in (b"key", b"token", b"auth", b"password", b"secret", b"sig", b"signature")
    )
    + rb")|/(?<=://)|J(?<=eyJ)|z(?<=AIz)|K(?<=AK)|S(?<=AS)"
)


def _byte_table(alphabet: bytes) -> bytes:
    """A ``bytes.translate`` table sending ``alphabet`` to ``a`` and every other byte to space."""
    return bytes(97 if byte in alphabet else 32 for byte in range(256))


_ALNUM = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_STANDARD_BASE64 = _byte_table(_ALNUM + b"+/")
_ANY_BASE64 = _byte_table(_ALNUM + b"+/_-")
_BASE64_RUN_BYTES = re.compile(rb"[A-Za-z0-9+/_-]{24,}")
_AWS_SECRET_RUN_BYTES = re.compile(rb"[A-Za-z0-9+/]{40,}")
_CHARACTER_CLASSES = (re.compile(rb"[A-Z]"), re.compile(rb"[a-z]"), re.compile(rb"[0-9]"))


def _values_may_match(data: bytes) -> bool:
    """Whether a value format may match in ``data`` (JSON text, or decoded bytes)."""
    lowered = data.lower()
    if _SIEVE.search(data) is not None or b"bearer" in lowered or b"basic" in lowered:
        for hints, pattern, on_lowered in _QUICK_VALUES:
            for hint in hints:
                if hint in lowered:
                    if pattern.search(lowered if on_lowered else data) is not None:
                        return True
                    break
    # an AWS secret key: 40 base64 characters mixing upper case, lower case and digits
    if b"a" * 40 in data.translate(_STANDARD_BASE64):
        for run in _AWS_SECRET_RUN_BYTES.findall(data):
            if all(kind.search(run) for kind in _CHARACTER_CLASSES):
                return True
    return False


def _encoded_may_match(data: bytes) -> bool:
    """Whether a base64 run of ``data`` may decode to a credential the walk would find.

    A run the walk decodes lies in a run of these bytes, after at most one letter (that
    of a ``\\n``-like JSON escape just before it): decoding each run from its first five
    offsets covers every offset the walk decodes from."""
    if b"a" * MIN_BASE64_RUN not in data.translate(_ANY_BASE64):
        return False
    for run in _BASE64_RUN_BYTES.findall(data):
        for offset in range(5):
            if _values_may_match(_decode_run(run[offset:])):
                return True
    return False


@functools.lru_cache(maxsize=4096)
def _suspicious_key(raw: bytes) -> bool:
    if b"\\" in raw:
        return True  # an escaped key: let the walk decide
    key = raw.decode("utf-8", errors="replace")
    return secret_key_reason(key) is not None or credential_key_reason(key) is not None


def _keys_may_match(data: bytes) -> bool:
    """Whether a key of the JSON text ``data`` may name a credential.

    Each ``"`` followed by ``:`` may close a key; its opening quote is the ``"`` before it
    (a quote inside a key is escaped: preceded by a backslash, then the walk decides)."""
    seen: set[bytes] = set()
    for match in _KEY_END.finditer(data):
        end = match.start()
        start = data.rfind(b'"', 0, end)
        if start < 0:
            continue
        if start > 0 and data[start - 1] == 0x5C:
            return True
        raw = data[start + 1 : end]
        if raw not in seen:
            seen.add(raw)
            if _suspicious_key(raw):
                return True
    return False


def may_hold_secrets(data: bytes) -> bool:
    """False when the JSON text ``data`` certainly holds no credential :func:`find_secrets`
    would report in its decoded value; True when it may (then decode and walk it).

    Tests the value formats on the bytes and on the base64 runs decoded, and the
    key-name rules on each distinct key, whatever the layout (canonical, minified...).
    A text using a ``\\u`` or ``\\/`` escape, which could spell a credential's characters
    differently, or a percent-escape (``%2D``), may hold one.
    """
    if any(escape in data for escape in _DISGUISING_ESCAPES):
        return True
    if b"%" in data and _PERCENT_ESCAPE_BYTES.search(data) is not None:
        return True
    return _values_may_match(data) or _encoded_may_match(data) or _keys_may_match(data)


# -- the walk ----------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def find_secrets(value: object, prefix: str = "") -> list[SecretFinding]:
    """The credentials in ``value``, by path (``predict.lm.api_key``), in document order.

    ``prefix`` starts every path (``"state"`` gives ``state.predict.lm.api_key``).
    See the module docstring for the rules. Values JSON cannot hold are not
    looked into (storing them fails anyway).
    """
    findings: list[SecretFinding] = []

    def walk(item: object, path: str, in_lm: bool, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        if isinstance(item, str):
            reason = _text_reason(item)
            if reason is not None:
                findings.append(SecretFinding(path, reason, in_lm))
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    continue
                where = _join(path, key)
                key_reason = _key_text_reason(key)
                if key_reason is not None:  # the key itself: never echo it
                    where = _join(path, REDACTED)
                    findings.append(SecretFinding(where, f"its name {key_reason}", in_lm))
                    continue
                if in_lm:
                    reason = secret_key_reason(key)
                    if reason is not None and not _is_empty(child) and child != REDACTED:
                        findings.append(SecretFinding(where, reason, True, by_key=True))
                        continue
                else:
                    reason = credential_key_reason(key)
                    if reason is not None and _token_like(child):
                        findings.append(SecretFinding(where, reason, False, by_key=True))
                        continue
                nested_lm = in_lm or (key == LM_KEY and isinstance(child, Mapping))
                walk(child, where, nested_lm, depth + 1)
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                walk(child, f"{path}[{index}]", in_lm, depth + 1)

    walk(value, prefix, False, 0)
    return findings


_REMOVE = object()


def redact_secrets(
    state: dict[str, Any],
    findings: list[SecretFinding] | None = None,
    *,
    prefix: str = "",
    remove_lm_keys: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``state`` without its credentials, and the paths that were redacted.

    A credential-looking text is masked: the matching part is replaced by
    ``[REDACTED]``, so that a demo keeps its words; a value under a
    credential key becomes ``[REDACTED]``. With ``remove_lm_keys`` (DSPy's
    redaction) a credential in LM settings is removed with its key instead.
    A key that itself looks like a credential is removed with its value.
    ``state`` itself is not changed; ``prefix`` is that of the findings' paths.
    """
    found = find_secrets(state, prefix) if findings is None else findings
    wanted = {finding.path: finding for finding in found}
    redacted: list[str] = []

    def scrub(value: Any, path: str, parent_is_dict: bool) -> Any:
        finding = wanted.get(path)
        if finding is not None:
            redacted.append(path)
            if finding.in_lm_settings and parent_is_dict and remove_lm_keys:
                return _REMOVE
            if finding.by_key or not isinstance(value, str):
                return REDACTED
            return _mask(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if isinstance(key, str) and _text_reason(key) is not None:
                    masked = _join(path, REDACTED)
                    if masked in wanted:
                        if masked not in redacted:
                            redacted.append(masked)
                        continue
                where = _join(path, str(key))
                cleaned = scrub(item, where, True)
                if cleaned is not _REMOVE:
                    out[key] = cleaned
            return out
        if isinstance(value, list | tuple):
            return [scrub(item, f"{path}[{i}]", False) for i, item in enumerate(value)]
        return value

    cleaned = scrub(state, prefix, False)
    assert isinstance(cleaned, dict)
    return cleaned, redacted


def mask_credentials(text: str) -> str:
    """``text`` to show in a message: unchanged unless it holds a credential, which is
    replaced by ``[REDACTED]`` (the whole text when one is encoded in it)."""
    return text if _text_reason(text) is None else _mask(text)


def _mask(text: str) -> str:
    """``text`` with each credential replaced; wholly replaced when one is encoded in it."""
    for entry in _SECRET_PATTERNS:
        for match in reversed(entry.matches(text, text.lower())):
            text = text[: match.start()] + REDACTED + text[match.end() :]
    return REDACTED if _text_reason(text) is not None else text


def secret_error(findings: list[SecretFinding], what: str, fix: str) -> SecretDetectedError:
    """The error refusing ``what`` for ``findings``: paths and rules, never the values."""
    shown = findings[:20]
    listed = "; ".join(f"{finding.path} ({finding.reason})" for finding in shown)
    more = f" and {len(findings) - len(shown)} more" if len(findings) > len(shown) else ""
    return SecretDetectedError(
        f"refusing to store credentials found in {what}: {listed}{more}. progreg never stores"
        " secrets: give them to the LM through the environment (OPENAI_API_KEY...) rather than"
        f" in the program, or {fix}",
        [finding.path for finding in findings],
        listed + more,
    )


_SAVE_FIX = (
    f"save it with secrets='redact' to store it with each credential replaced by {REDACTED!r}"
)


def screen_document(
    doc: ProgramDocument, policy: SecretsPolicy, where: str | None = None, *, fix: str = _SAVE_FIX
) -> ProgramDocument:
    """``doc`` if it holds no credential; else refused, or a copy with them redacted.

    Paths start with the part of the document: ``state.``, ``optimization_result.``
    or ``metadata.``. A redacted copy lists them in ``metadata.redacted_secrets``.
    The document is encoded (and so validated) first.
    """
    if not may_hold_secrets(doc.encode()):
        return doc
    parts = {
        "state": doc.state,
        "optimization_result": doc.optimization_result,
        "metadata": doc.metadata,
    }
    findings = [found for name, part in parts.items() for found in find_secrets(part, name)]
    if not findings:
        return doc
    what = where or f"program {doc.program_id}"
    if policy == "refuse":
        raise secret_error(findings, what, fix)
    cleaned: dict[str, dict[str, Any]] = {}
    paths: list[str] = []
    for name, part in parts.items():
        mine = [found for found in findings if found.path.startswith(f"{name}.")]
        cleaned[name], redacted = redact_secrets(part, mine, prefix=name, remove_lm_keys=False)
        paths += redacted
    metadata = cleaned["metadata"]
    earlier = metadata.get(REDACTED_KEY)
    listed = [p for p in earlier if isinstance(p, str)] if isinstance(earlier, list) else []
    metadata[REDACTED_KEY] = sorted({*listed, *paths})
    return dataclasses.replace(
        doc,
        state=cleaned["state"],
        optimization_result=cleaned["optimization_result"],
        metadata=metadata,
    )
