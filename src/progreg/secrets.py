"""Credentials in program documents: found, then refused or redacted, never stored.

Every save (``save_program``, ``save_programs``, checkpoints) and every import
of a reference JSON export or ``dspy_storage/`` folder looks for credentials
in the program's state, its optimization result and its metadata. A bundle
import looks into every program it brings to ``main``. The rules:

* inside LM settings (any object under an ``"lm"`` key, as DSPy keeps each
  predictor's), a non-empty value whose **key name** says it is a credential:
  it contains ``secret``, ``password``/``passwd``/``passphrase``,
  ``credential(s)``, ``auth``/``authorization``, ``cookie``, ``bearer``, the
  word ``token`` (not ``tokens``: ``max_tokens`` is fine), or ``api key``/
  ``access key``/``private key``/``session key``/``subscription key`` in any
  spelling (``api_key``, ``apiKey``, ``x-api-key``...);
* anywhere else, a key whose name *ends* with such a word (``api_key``,
  ``github_token``, ``db_password``, ``authorization``; not ``token_type`` or
  ``password_hint``) holding a token-like string: at least 8 characters, no
  whitespace, not a placeholder such as ``${OPENAI_API_KEY}``;
* anywhere (demos, instructions, metadata...), a string that **looks like**
  a credential: ``sk-...`` keys (OpenAI ``sk-proj-``, Anthropic
  ``sk-ant-``...), GitHub (``ghp_``, ``github_pat_``...), Hugging Face, Groq,
  Slack (``xoxb-``...), Stripe and Google (``AIza...``) keys, AWS access key
  ids (``AKIA...``), JSON Web Tokens, ``Bearer``/``Basic`` authorization
  values, PEM private keys, a URL with ``user:password@`` or a
  ``?key=``/``token=``... query.

:func:`find_secrets` applies them precisely (a Python walk);
:func:`may_hold_secrets` is the quick test on a document's encoded bytes that
lets a save skip the walk when nothing could match. A finding names the path
of the value (``state.predict.lm.api_key``) and the rule, never the value.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from progreg.document import ProgramDocument
from progreg.errors import InvalidInputError, SecretDetectedError

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
#: Words that make ``token`` a count rather than a credential (``token_limit``).
_TOKEN_COUNT_WORDS = frozenset({"max", "min", "limit", "count", "num", "budget", "usage"})
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


@functools.lru_cache(maxsize=4096)
def secret_key_reason(key: str) -> str | None:
    """Why a settings key names a credential (``"its name says api key"``), or ``None``."""
    words = _key_words(key)
    pairs = set(itertools.pairwise(words)) & _SECRET_PAIRS
    if pairs:
        return f"its name says {' '.join(min(pairs))}"
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


@dataclass(frozen=True)
class _Pattern:
    """A credential format: ``pattern`` is tried only on texts holding one of ``hints``."""

    reason: str
    pattern: re.Pattern[str]
    hints: tuple[str, ...]
    lowercase: bool = False  # look for the hints in the lowercased text


#: Texts that look like credentials, with what they look like. The literal hints
#: keep the scan of a large state (thousands of demos) fast.
_SECRET_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "looks like an sk-... API key",
        re.compile(r"\bsk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}"),
        ("sk-",),
    ),
    _Pattern(
        "looks like a GitHub token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _Pattern("looks like a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}"), ("hf_",)),
    _Pattern("looks like a Groq API key", re.compile(r"\bgsk_[A-Za-z0-9]{20,}"), ("gsk_",)),
    _Pattern("looks like a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), ("xox",)),
    _Pattern(
        "looks like a Stripe key",
        re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"),
        ("k_live_", "k_test_"),
    ),
    _Pattern("looks like a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), ("AIza",)),
    _Pattern(
        "looks like an AWS access key id",
        re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("AKIA", "ASIA"),
    ),
    _Pattern(
        "looks like a JSON Web Token",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        ("eyJ",),
    ),
    _Pattern(
        "looks like a bearer token",
        re.compile(r"(?ai)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*"),
        ("bearer",),
        lowercase=True,
    ),
    _Pattern(
        "looks like basic-auth credentials",
        re.compile(r"(?ai)\bbasic\s+[A-Za-z0-9+/]{16,}=*"),
        ("basic",),
        lowercase=True,
    ),
    _Pattern(
        "holds a private key",
        # the whole block (to the END line, or to the end of the text) is the secret
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*)",
            re.DOTALL,
        ),
        ("PRIVATE KEY",),
    ),
    _Pattern(
        "a URL with a user and password in it",
        re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),
        ("://",),
    ),
    _Pattern(
        "a URL with a credential in its query",
        re.compile(
            r"(?ai)[?&](?:api[-_]?key|key|token|access[-_]?token|auth|password|secret|sig|signature)"
            r"=[^&#\s]+"
        ),
        ("=",),
    ),
)


def _matching(text: str) -> list[_Pattern]:
    """The credential formats found in ``text``."""
    lowered: str | None = None
    found = []
    for entry in _SECRET_PATTERNS:
        haystack = text
        if entry.lowercase:
            lowered = text.lower() if lowered is None else lowered
            haystack = lowered
        if any(hint in haystack for hint in entry.hints) and entry.pattern.search(text):
            found.append(entry)
    return found


def _pattern_reason(text: str) -> str | None:
    found = _matching(text)
    return found[0].reason if found else None


def _is_empty(value: object) -> bool:
    return value is None or isinstance(value, bool) or value in ("", [], {})


# -- the quick test on encoded bytes -----------------------------------------------------

#: The value formats above, loosened for JSON text (``\\n`` may precede a key, so no
#: word boundaries), each tried only when one of its hints is in the lowercased bytes:
#: ``(hints, pattern, on the lowercased bytes)``. A superset of what the walk finds.
_QUICK_VALUES: tuple[tuple[tuple[bytes, ...], re.Pattern[bytes], bool], ...] = (
    ((b"sk-",), re.compile(rb"sk-[A-Za-z0-9_-]{20,}"), False),
    (
        (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
        re.compile(rb"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_"),
        False,
    ),
    ((b"hf_",), re.compile(rb"hf_[A-Za-z0-9]{30,}"), False),
    ((b"gsk_",), re.compile(rb"gsk_[A-Za-z0-9]{20,}"), False),
    ((b"xox",), re.compile(rb"xox[abposr]-"), False),
    ((b"k_live_", b"k_test_"), re.compile(rb"[rs]k_(?:live|test)_"), False),
    ((b"aiza",), re.compile(rb"AIza[0-9A-Za-z_-]{35}"), False),
    ((b"akia", b"asia"), re.compile(rb"(?:AKIA|ASIA)[0-9A-Z]{16}"), False),
    ((b"eyj",), re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ"), False),
    ((b"private key",), re.compile(rb"PRIVATE KEY-----"), False),
    (
        (b"bearer", b"basic"),
        re.compile(rb"(?:bearer|basic)[^a-z0-9._~+/-]+[a-z0-9._~+/-]{16,}"),
        True,
    ),
    ((b"://",), re.compile(rb"://[^/\s:@]+:[^/\s@]+@"), False),
    (
        (b"key=", b"token=", b"auth=", b"password=", b"secret=", b"sig=", b"signature="),
        re.compile(
            rb"[?&](?:api[-_]?key|key|token|access[-_]?token|auth|password|secret|sig|signature)="
        ),
        True,
    ),
)
#: Every key of a JSON text, in any layout: a string followed by ``:`` is always a key
#: (a value is followed by ``,``, ``}`` or ``]``).
_KEYS = re.compile(rb'"((?:[^"\\]|\\.)*)"[ \t\r\n]*:')
#: JSON escapes that can spell a credential's characters in another form (``\u0073k-``,
#: ``https:\/\/``): a text holding one is walked, whatever its bytes look like.
_DISGUISING_ESCAPES = (b"\\u", b"\\/")


def _caseless(word: bytes) -> bytes:
    return b"".join(b"[%c%c]" % (c, c ^ 32) if 97 <= c <= 122 else bytes([c]) for c in word)


#: One fast pass over the bytes for what every format of :data:`_QUICK_VALUES` but
#: ``bearer``/``basic`` contains: each branch starts with a rare byte (``_ - = /``,
#: capitals) and looks behind it, so the scan skips everything else at C speed.
_SIEVE = re.compile(
    rb"_(?:(?<=gh[pousr]_)|(?<=github_pat_)|(?<=hf_)|(?<=gsk_)|(?<=k_live_)|(?<=k_test_))"
    rb"|-(?:(?<=sk-)|(?<=xox[abposr]-)|(?<=KEY-))"
    rb"|=(?:"
    + b"|".join(
        b"(?<=%s=)" % _caseless(word)
        for word in (b"key", b"token", b"auth", b"password", b"secret", b"sig", b"signature")
    )
    + rb")|/(?<=://)|J(?<=eyJ)|z(?<=AIz)|K(?<=AK)|S(?<=AS)"
)


@functools.lru_cache(maxsize=4096)
def _suspicious_key(raw: bytes) -> bool:
    if b"\\" in raw:
        return True  # an escaped key: let the walk decide
    key = raw.decode("utf-8", errors="replace")
    return secret_key_reason(key) is not None or credential_key_reason(key) is not None


def may_hold_secrets(data: bytes) -> bool:
    """False when the JSON text ``data`` certainly holds no credential :func:`find_secrets`
    would report in its decoded value; True when it may (then decode and walk it).

    Tests the value formats on the bytes and the key-name rules on each distinct key,
    whatever the layout (canonical, minified...). A text using a ``\\u`` or ``\\/``
    escape, which could spell a credential's characters differently, may hold one.
    """
    if any(escape in data for escape in _DISGUISING_ESCAPES):
        return True
    lowered = data.lower()
    if _SIEVE.search(data) is not None or b"bearer" in lowered or b"basic" in lowered:
        for hints, pattern, on_lowered in _QUICK_VALUES:
            for hint in hints:
                if hint in lowered:
                    if pattern.search(lowered if on_lowered else data) is not None:
                        return True
                    break
    return any(_suspicious_key(raw) for raw in set(_KEYS.findall(data)))


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
            reason = _pattern_reason(item)
            if reason is not None:
                findings.append(SecretFinding(path, reason, in_lm))
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    continue
                where = _join(path, key)
                key_reason = _pattern_reason(key)
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
                if isinstance(key, str) and _pattern_reason(key) is not None:
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


def _mask(text: str) -> str:
    for entry in _matching(text):
        text = entry.pattern.sub(REDACTED, text)
    return text


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
