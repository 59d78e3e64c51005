"""The credential screen measured on a labelled corpus, and each known miss or false alarm.

The corpus (``tests/support/secrets_corpus.py``) holds documents with a credential of
every provider DSPy users hold, placed and encoded several ways, and harmless
programs that talk about keys, tokens and auth. ``find_secrets`` must find at
least 98% of the first and nothing in the second; ``may_hold_secrets`` must
say "maybe" for every document the walk flags.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import pytest

from progreg.core.canonical import encode
from progreg.core.secrets import (
    credential_key_reason,
    find_secrets,
    may_hold_secrets,
    redact_secrets,
    secret_key_reason,
)
from support import secrets_corpus

SECRET_CASES = secrets_corpus.secret_cases()
HARMLESS_CASES = secrets_corpus.harmless_cases()


def test_the_corpus_is_large_and_covers_every_provider_and_placement() -> None:
    assert len(SECRET_CASES) >= 300 and len(HARMLESS_CASES) >= 300
    kinds = {case.name.split("/")[0] for case in SECRET_CASES}
    assert set(secrets_corpus.GENERATORS) <= kinds
    placements = {case.name.split("/")[1].split("-")[0] for case in SECRET_CASES}
    assert {"lm", "metadata", "neutral", "prose", "url", "base64", "percent"} <= placements


def test_recall_is_at_least_98_percent_with_no_false_alarm() -> None:
    missed = [case.name for case in SECRET_CASES if not find_secrets(case.state)]
    false_alarms = [
        f"{case.name}: {[(f.path, f.reason) for f in found]}"
        for case in HARMLESS_CASES
        if (found := find_secrets(case.state))
    ]
    recall = 1 - len(missed) / len(SECRET_CASES)
    assert recall >= 0.98 and not false_alarms, (
        f"recall {recall:.4f}; missed: {missed}; false alarms: {false_alarms}"
    )


def test_the_quick_test_says_maybe_for_every_document_the_walk_flags() -> None:
    for case in (*SECRET_CASES, *HARMLESS_CASES):
        if find_secrets(case.state):
            assert may_hold_secrets(encode(case.state)), case.name


def test_clean_workload_programs_skip_the_walk() -> None:
    from support import workload  # noqa: PLC0415

    assert not any(may_hold_secrets(encode(workload.program_state(i))) for i in range(50))


@pytest.mark.parametrize("case", SECRET_CASES[::7], ids=lambda case: case.name)
def test_redacting_a_corpus_document_leaves_nothing_to_find(case: secrets_corpus.Case) -> None:
    findings = find_secrets(case.state)
    cleaned, redacted = redact_secrets(case.state, findings, remove_lm_keys=False)
    assert find_secrets(cleaned) == []
    assert sorted(redacted) == sorted(f.path for f in findings)


# -- each miss the review found ----------------------------------------------------------

PGP = (
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGN1c2VyAQgAx7k\n=Ab1c\n"
    "-----END PGP PRIVATE KEY BLOCK-----"
)
OPENAI = "sk-proj-" + "Q3vT9xLm2Rk8Pz4Wn7Yb1Hc6Jd0Fg5Sa" * 3


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (PGP, "private key"),
        ("glpat-" + "xY9_kL2mN4pQ7rS1tU3v", "GitLab"),
        ("npm_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5", "npm"),
        ("pypi-AgEIcHlwaS5vcmc" + "CJDk3YzQ5ZmEtNTY3OC00YjI0LWE2ZDQtMTIzNDU2Nzg5YWJj" * 2, "PyPI"),
        ("ya29.a0AfH6SMBx" + "Kq9Lw2Er5Ty8Ui1Op4As7Df0Gh3Jk6Zx9Cv2Bn5M" * 2, "OAuth access"),
        ("GOCSPX-" + "Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9S", "client secret"),
        ("SG.aB3dE5gH7jK9mN1pQ3sT5v." + "wY9zA1bC3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5z", "SendGrid"),
        ("xapp-1-A0123ABCDEF-1234567890123-" + "0a1b2c3d4e5f" * 5, "Slack"),
        ("whsec_" + "Zx8Cv7Bn6Mq5Wr4Et3Yu2Io1Pa0SdFg", "webhook"),
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS secret"),
        ("AKIAIOSFODNN7EXAMPLE and Zt8mQ2vR9kX4pL7wN1cB6yH3jF5dS0gA2eU8iO4r", "AWS"),
        (base64.b64encode(OPENAI.encode()).decode(), "base64-encoded"),
        ("see " + base64.b64encode(b":" + OPENAI.encode()).decode(), "base64-encoded"),
        (base64.urlsafe_b64encode(b"k=" + OPENAI.encode()).decode(), "base64-encoded"),
        ("%73k" + OPENAI[2:], "percent-encoded"),
        ("sk%2Dproj" + OPENAI[7:], "percent-encoded"),
        (urllib.parse.quote(PGP, safe=""), "percent-encoded"),
    ],
)
def test_each_format_the_review_found_missing_is_found(text: str, reason: str) -> None:
    for state in ({"note": text}, {"demos": [{"answer": f"use {text} here"}]}):
        findings = find_secrets(state)
        assert findings and reason in findings[0].reason, (text, findings)
        for data in (encode(state), encode(state).replace(b"\n", b"\n  ")):
            assert may_hold_secrets(data)
        cleaned, _ = redact_secrets(state, findings, remove_lm_keys=False)
        assert find_secrets(cleaned) == []


@pytest.mark.parametrize("key", ["openai_key", "anthropic_key", "azure_openai_key", "groq_key"])
def test_a_provider_name_before_key_names_a_credential(key: str) -> None:
    value = "0123456789abcdef0123456789abcdef"
    assert credential_key_reason(key) is not None and secret_key_reason(key) is not None
    assert [f.path for f in find_secrets({"config": {key: value}})] == [f"config.{key}"]
    assert may_hold_secrets(encode({"config": {key: value}}))


@pytest.mark.parametrize("key", ["sort_key", "cache_key", "primary_key", "keys", "monkey"])
def test_other_names_ending_in_key_are_not_credentials(key: str) -> None:
    assert credential_key_reason(key) is None
    assert find_secrets({"config": {key: "created_at_descending_0123"}}) == []


# -- each false alarm the review found ---------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        {"instructions": "Requires basic internationalization skills."},
        {"instructions": "Give basic information/instructions about the refund policy."},
        {"instructions": "Sort by ?key=name, then by ?key=date."},
        {"note": "sk-learn-2024-compatible-models-list"},
        {"instructions": "Explain Bearer authentication/authorization in two lines."},
        {"response": {"next_page_token": "CiAKGjBpNDd2Nmp2ZmZiaXZxdGxhYWJlYXN1bHRz"}},
        {"tokenizer": {"eos_token": "END_OF_ANSWER", "pad_token": "<|pad|>"}},
        {
            "predict": {
                "lm": {
                    "model": "openai/gpt-4o-mini",
                    "stop_token": "</answer>",
                    "auth_mode": "environment",
                    "api_key_env": "OPENAI_API_KEY",
                    "token_type": "Bearer",
                }
            }
        },
        {"note": "ClassifyTextPredictorWithReasoningStepV2"},
        {"path": "models/Llama3/Instruct8B/checkpoints/v12"},
        {"note": base64.b64encode(b"The quick brown fox jumps over").decode()},
        {"commit": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
    ],
)
def test_each_false_alarm_the_review_found_is_gone(state: dict[str, Any]) -> None:
    assert find_secrets(state) == []


def test_real_credentials_beside_the_false_alarms_are_still_found() -> None:
    basic = base64.b64encode(b"admin:hunter2hunter2").decode()
    state = {
        "instructions": f"Requires basic internationalization skills. Basic {basic}",
        "url": "https://maps.example.com/api?key=AIzaXyZ123abc456&q=1",
        "model": "sk-" + "0123456789abcdef" * 2,
        "predict": {"lm": {"auth_mode": "env", "auth_token": "t0k3n-value"}},
        "response": {"next_page_token": "abc", "access_token": "ya29-opaque-value-123"},
    }
    assert sorted(f.path for f in find_secrets(state)) == [
        "instructions",
        "model",
        "predict.lm.auth_token",
        "response.access_token",
        "url",
    ]
