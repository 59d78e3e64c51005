"""A labelled corpus for the credential screen: secrets that must be found, text that must not.

Everything is generated from fixed seeds, so every run sees the same corpus.
Secret values have their providers' real shapes (prefix, length, alphabet,
GitHub's CRC32 checksum); each is placed several ways in a realistic program
(``workload.program_state``): under a telling key (in LM settings and in
metadata), under a neutral key, inside the prose of instructions and demos,
inside a URL, base64-encoded and percent-encoded. The harmless documents are
workload programs carrying prose about keys, tokens, passwords and auth,
tokenizer settings, pagination tokens, library names, hashes, UUIDs and base64
of ordinary text.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import random
import string
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from support import workload

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
UPPER32 = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class Case:
    """One labelled document: its name (kind/placement) and the program state."""

    name: str
    state: dict[str, Any]


def _pick(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _base62(number: int, width: int) -> str:
    digits = string.digits + string.ascii_uppercase + string.ascii_lowercase
    out = ""
    while number:
        number, rest = divmod(number, 62)
        out = digits[rest] + out
    return out.rjust(width, "0")


def _github(rng: random.Random, prefix: str) -> str:
    body = _pick(rng, ALNUM, 30)
    return prefix + body + _base62(binascii.crc32(body.encode()), 6)


def _pem(rng: random.Random, label: str) -> str:
    lines = [_pick(rng, B64, 64) for _ in range(rng.randint(3, 8))]
    body = "\n".join([*lines, _pick(rng, B64, 20) + "=="])
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def _jwt(rng: random.Random) -> str:
    def part(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")

    header = part('{"alg":"HS256","typ":"JWT"}')
    claims = part(f'{{"sub":"{rng.randrange(10**9)}","name":"user","iat":{rng.randrange(10**9)}}}')
    return f"{header}.{claims}.{_pick(rng, B64URL, 43)}"


#: Each provider's generator, with the key name a user would store it under.
GENERATORS: dict[str, tuple[str, Callable[[random.Random], str]]] = {
    "openai-legacy": (
        "openai_api_key",
        lambda r: "sk-" + _pick(r, ALNUM, 20) + "T3BlbkFJ" + _pick(r, ALNUM, 20),
    ),
    "openai-project": ("openai_key", lambda r: "sk-proj-" + _pick(r, B64URL, 156)),
    "openai-service": ("OPENAI_API_KEY", lambda r: "sk-svcacct-" + _pick(r, B64URL, 156)),
    "openai-admin": ("openai_admin_key", lambda r: "sk-admin-" + _pick(r, B64URL, 64)),
    "anthropic": (
        "anthropic_key",
        lambda r: "sk-ant-api03-" + _pick(r, B64URL, 93) + "AA",
    ),
    "deepseek": ("deepseek_api_key", lambda r: "sk-" + _pick(r, HEX, 32)),
    "azure-openai": ("azure_openai_key", lambda r: _pick(r, HEX, 32)),
    "google-api": ("google_api_key", lambda r: "AIza" + _pick(r, B64URL, 35)),
    "google-oauth-access": ("access_token", lambda r: "ya29." + _pick(r, B64URL, 160)),
    "google-oauth-client-secret": (
        "client_secret",
        lambda r: "GOCSPX-" + _pick(r, B64URL, 28),
    ),
    "aws-key-id": ("aws_access_key_id", lambda r: "AKIA" + _pick(r, UPPER32, 16)),
    "aws-session-key-id": ("aws_access_key_id", lambda r: "ASIA" + _pick(r, UPPER32, 16)),
    "aws-secret-key": ("aws_secret_access_key", lambda r: _pick(r, B64, 40)),
    "github-classic": ("github_token", lambda r: _github(r, "ghp_")),
    "github-oauth": ("github_token", lambda r: _github(r, "gho_")),
    "github-app": ("github_token", lambda r: _github(r, "ghs_")),
    "github-fine-grained": (
        "GITHUB_TOKEN",
        lambda r: "github_pat_" + "11" + _pick(r, UPPER32, 20) + "_" + _pick(r, ALNUM, 59),
    ),
    "gitlab": ("gitlab_token", lambda r: "glpat-" + _pick(r, B64URL, 20)),
    "huggingface": ("hf_token", lambda r: "hf_" + _pick(r, string.ascii_letters, 34)),
    "groq": ("groq_api_key", lambda r: "gsk_" + _pick(r, ALNUM, 52)),
    "slack-bot": (
        "slack_token",
        lambda r: f"xoxb-{r.randrange(10**12)}-{r.randrange(10**12)}-{_pick(r, ALNUM, 24)}",
    ),
    "slack-user": (
        "slack_token",
        lambda r: f"xoxp-{r.randrange(10**12)}-{r.randrange(10**12)}-{_pick(r, HEX, 32)}",
    ),
    "slack-app": (
        "slack_app_token",
        lambda r: f"xapp-1-A{_pick(r, UPPER32, 10)}-{r.randrange(10**12)}-{_pick(r, HEX, 64)}",
    ),
    "stripe-live": ("stripe_secret_key", lambda r: "sk_live_" + _pick(r, ALNUM, 99)),
    "stripe-restricted": ("stripe_key", lambda r: "rk_test_" + _pick(r, ALNUM, 24)),
    "stripe-webhook": ("webhook_secret", lambda r: "whsec_" + _pick(r, ALNUM, 32)),
    "sendgrid": (
        "sendgrid_api_key",
        lambda r: "SG." + _pick(r, B64URL, 22) + "." + _pick(r, B64URL, 43),
    ),
    "npm": ("npm_token", lambda r: "npm_" + _pick(r, ALNUM, 36)),
    "pypi": (
        "pypi_token",
        lambda r: "pypi-AgEIcHlwaS5vcmc" + _pick(r, B64URL, 140),
    ),
    "jwt": ("id_token", _jwt),
    "pem-rsa": ("private_key", lambda r: _pem(r, "RSA PRIVATE KEY")),
    "pem-ec": ("private_key", lambda r: _pem(r, "EC PRIVATE KEY")),
    "pem-openssh": ("ssh_private_key", lambda r: _pem(r, "OPENSSH PRIVATE KEY")),
    "pem-plain": ("private_key", lambda r: _pem(r, "PRIVATE KEY")),
    "pem-encrypted": ("private_key", lambda r: _pem(r, "ENCRYPTED PRIVATE KEY")),
    "pgp": ("pgp_private_key", lambda r: _pem(r, "PGP PRIVATE KEY BLOCK")),
}

#: Formats recognised only under a telling key name (they have no prefix of their own).
KEY_NAME_ONLY = frozenset({"azure-openai"})
#: Multi-line blocks: not placed in a URL path.
BLOCKS = frozenset(name for name in GENERATORS if name.startswith(("pem-", "pgp")))


def _program(index: int) -> dict[str, Any]:
    return workload.program_state(index, demos=3)


def _set_instructions(state: dict[str, Any], text: str) -> dict[str, Any]:
    signature = state["predict"]["signature"]
    signature["instructions"] = signature["instructions"] + " " + text
    return state


def _set_demo(state: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    state["predict"]["demos"][0][key] = value
    return state


def _percent_variants(secret: str) -> list[str]:
    first = f"%{ord(secret[0]):02X}" + secret[1:]
    separators = "".join(f"%{ord(c):02X}" if c in "-_. \n" else c for c in secret)
    every = urllib.parse.quote(secret, safe="")
    return list(dict.fromkeys(v for v in (first, separators, every) if v != secret))


def _placements(kind: str, key: str, secret: str, index: int) -> Iterator[Case]:
    """``secret`` placed in the program ``index`` in each realistic way."""

    def state() -> dict[str, Any]:
        return _program(index)

    lm = state()
    lm["predict"]["lm"] = {"model": "openai/gpt-4o-mini", "temperature": 0.0, "api_key": secret}
    yield Case(f"{kind}/lm-api_key", lm)
    told = state()
    told["metadata"][key] = secret
    yield Case(f"{kind}/metadata-{key}", told)
    if kind in KEY_NAME_ONLY:
        return
    if kind == "aws-secret-key":
        key_id = "AKIA" + _pick(random.Random(secret), UPPER32, 16)
        beside = f"Use access key {key_id} with secret {secret} for the S3 reader."
        yield Case(f"{kind}/prose-beside-key-id", _set_instructions(state(), beside))
        yield Case(f"{kind}/neutral-alone", _set_demo(state(), "note", secret))
        return
    yield Case(f"{kind}/neutral-key", _set_demo(state(), "note", secret))
    prose = f"When the tool asks, pass {secret} as the credential and continue."
    yield Case(f"{kind}/prose-instructions", _set_instructions(state(), prose))
    yield Case(f"{kind}/prose-demo", _set_demo(state(), "reasoning", "I will reuse " + secret))
    if kind not in BLOCKS:
        url = f"https://hooks.example.com/v1/{secret}/events?limit=10"
        yield Case(f"{kind}/url-path", _set_demo(state(), "context", f"Post to {url} daily."))
    encoded = base64.b64encode(secret.encode()).decode()
    yield Case(f"{kind}/base64", _set_demo(state(), "note", encoded))
    urlsafe = base64.urlsafe_b64encode(f"key={secret}".encode()).decode().rstrip("=")
    yield Case(f"{kind}/base64url-in-prose", _set_instructions(state(), f"Config: {urlsafe}"))
    for number, variant in enumerate(_percent_variants(secret)):
        text = f"https://api.example.com/login?next=%2Fhome&x={variant}"
        yield Case(f"{kind}/percent-{number}", _set_demo(state(), "context", text))


def _extra_secret_cases(rng: random.Random) -> Iterator[Case]:
    """Credentials that are not a single provider token."""
    for number in range(6):
        user, password = _pick(rng, string.ascii_lowercase, 6), _pick(rng, ALNUM, 12)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        bearer = _pick(rng, B64URL, 40)
        state = _set_demo(_program(900 + number), "headers", f"Authorization: Basic {basic}")
        yield Case(f"basic-auth/{number}", state)
        state = _set_demo(_program(910 + number), "headers", f"Authorization: Bearer {bearer}")
        yield Case(f"bearer/{number}", state)
        url = f"postgresql://{user}:{password}@db.internal:5432/app"
        yield Case(f"url-userinfo/{number}", _set_demo(_program(920 + number), "context", url))
        query = f"https://maps.example.com/api?key={_pick(rng, ALNUM, 32)}&q=paris"
        yield Case(f"url-query/{number}", _set_demo(_program(930 + number), "context", query))
    example = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    yield Case("aws-secret-key/documentation-example", _set_demo(_program(940), "note", example))


def secret_cases() -> list[Case]:
    """Every document that holds a credential (several per provider and placement)."""
    rng = random.Random("secrets-corpus")
    cases: list[Case] = []
    for number, (kind, (key, generate)) in enumerate(GENERATORS.items()):
        for copy_number in range(2):
            cases += _placements(kind, key, generate(rng), number * 2 + copy_number)
    cases += _extra_secret_cases(rng)
    return cases


# -- harmless ----------------------------------------------------------------------------

#: Prose that talks about credentials, auth and tokens without holding any.
HARMLESS_PROSE = (
    "Requires basic internationalization skills.",
    "Give basic information/instructions to the customer about resetting a password.",
    "Sort by ?key=name and then by ?key=date.",
    "Use sk-learn-2024-compatible-models-list to pick a classifier.",
    "The Authorization header carries a Bearer token; never print it.",
    "Explain basic authentication and bearer authentication to a beginner.",
    "If the user forgot their password, send them the reset link.",
    "Tokens are counted with the model's tokenizer; the limit is 4096 tokens.",
    "Never reveal an API key, a secret key or a private key in your answer.",
    "Basic plan customers get email support; premium customers get phone support.",
    "Bearer bonds were common in the twentieth century.",
    "The key=value pairs in the config file are separated by newlines.",
    "Refer to https://docs.example.com/auth?section=tokens for the token lifecycle.",
    "See https://example.com/search?q=password+reset&page=2 for more.",
    "Our sklearn pipeline uses sk-learn style estimators and scikit-learn 1.5.",
    "The password must be at least 12 characters long and contain a digit.",
    "Rotate the access key every 90 days and store it in the vault.",
    "Set the OPENAI_API_KEY environment variable before running the script.",
    "A JWT has three parts: header, payload and signature, separated by dots.",
    "PEM files start with a BEGIN line and end with an END line.",
    "The token_type is 'Bearer' and expires_in is 3600 seconds.",
    "Use basic English and avoid jargon in the summary.",
    "Bearer: the person holding the card is its bearer.",
    "The secret to a good summary is brevity.",
    "Answer with the word token if the input is a single token.",
    "Check the ssh-keygen manual for how keys are generated.",
    "Email me at jane.doe@example.com or call +1 555 0100.",
    "Visit https://user@example.com/profile to see the public profile.",
    "The session key in the cookie banner refers to cookie consent categories.",
    "Look up model sk-v2 in the catalogue (short name).",
)

#: Harmless key/value pairs, some under names that contain credential words.
HARMLESS_FIELDS: tuple[tuple[str, object], ...] = (
    ("next_page_token", "CiAKGjBpNDd2Nmp2ZmZiaXZxdGxhYWJlYXN1bHRzEgIIAQ"),
    ("page_token", "eyJvZmZzZXQiOiAxMDB9"),
    ("continuation_token", "AQIDBAUGBwgJ"),
    ("eos_token", "END_OF_ANSWER"),
    ("bos_token", "<|begin_of_text|>"),
    ("pad_token", "<|finetune_right_pad_id|>"),
    ("stop_token", "</answer>"),
    ("token_type", "Bearer"),
    ("password_hint", "your first pet's name"),
    ("max_tokens", 1024),
    ("auth_mode", "environment"),
    ("api_key_env", "OPENAI_API_KEY"),
    ("tokenizer", "cl100k_base"),
    ("sort_key", "created_at_descending"),
    ("cache_key", "predict:v2:classify-text"),
    ("primary_key", "ticket_id"),
    ("commit", "9fceb02d0ae598e95dc970b74767f19372d61af8"),
)


def _harmless_values(rng: random.Random) -> Iterator[tuple[str, str]]:
    """Ids, digests and encodings that look random but hold no credential."""
    yield "sha256", hashlib.sha256(rng.randbytes(32)).hexdigest()
    yield "sha1", hashlib.sha1(rng.randbytes(32)).hexdigest()
    yield "md5", hashlib.md5(rng.randbytes(8)).hexdigest()
    yield "uuid", str(uuid.UUID(bytes=rng.randbytes(16)))
    yield "git", hashlib.sha1(rng.randbytes(16)).hexdigest()[:12]
    sentence = workload._message(rng, 2)
    yield "base64-text", base64.b64encode(sentence.encode()).decode()
    yield "base64-short", base64.b64encode(sentence[:30].encode()).decode()
    yield "base64url-json", base64.urlsafe_b64encode(b'{"page": 3, "size": 50}').decode()
    yield "model", rng.choice(["gpt-4o-mini", "claude-3-5-sonnet-20241022", "llama-3.1-8b"])
    yield "path", "models/Qwen2.5-7B-Instruct/tokenizer_config.json"
    yield "camel", "ClassifyTextPredictorWithReasoningStepV2"
    yield "model-path", "models/Llama3/Instruct8B/checkpoints/v12"
    yield "route", "api/v2/Tickets/Escalated/ByAgent/2024Q31"


def harmless_cases(count: int = 400) -> list[Case]:
    """``count`` documents holding no credential: workload programs plus harmless text."""
    rng = random.Random("harmless-corpus")
    fields = list(HARMLESS_FIELDS)
    values: list[tuple[str, str]] = []
    cases: list[Case] = []
    for index in range(count):
        if not values:
            values = list(_harmless_values(rng))
        state = workload.program_state(index)
        sentence = HARMLESS_PROSE[index % len(HARMLESS_PROSE)]
        _set_instructions(state, sentence)
        demo = state["predict"]["demos"][index % len(state["predict"]["demos"])]
        demo["reasoning"] += " " + rng.choice(HARMLESS_PROSE)
        key, value = fields[index % len(fields)]
        state["metadata"][key] = value
        name, text = values.pop()
        state["metadata"][name] = text
        demo["note"] = f"{name}: {text}"
        if index % 7 == 0:
            state["predict"]["lm"] = {
                "model": "openai/gpt-4o-mini",
                "max_tokens": 1000,
                "stop_token": "</answer>",
                "auth_mode": "env",
                "api_key_env": "OPENAI_API_KEY",
                "api_base": "https://api.openai.com/v1",
            }
        cases.append(Case(f"harmless/{index}/{key}/{name}", copy.deepcopy(state)))
    return cases
