"""Recall, precision and speed of the credential screen on the labelled corpus.

Usage: .venv/bin/python benchmarks/bench_secrets.py [--repeat 5] [--detect-secrets]

The corpus is ``tests/support/secrets_corpus.py``: documents holding a credential (each
provider's format in several placements and encodings) and harmless programs
that talk about keys, tokens and auth. Prints, for ``find_secrets`` (the walk
over the decoded document) and ``may_hold_secrets`` (the byte pre-test every
save runs first): recall on the secret documents, precision (flagged secret
documents / all flagged documents), the harmless documents flagged, and the
time per 5 KB of canonical JSON (median of the repeats over the whole corpus).
The last row is the save path's hot case: ``may_hold_secrets`` on clean 5 KB
workload programs. With ``--detect-secrets`` (needs the ``detect-secrets``
package, which progreg does not depend on) the same numbers are measured for
its default plugins run on each string value, written as a ``"key": "value"``
line (each line of a multi-line value on its own).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from common import secrets_corpus, workload

from progreg.core.canonical import encode
from progreg.core.secrets import find_secrets, may_hold_secrets

FIVE_KB = 5 * 1024


def pairs(value: object, key: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(key, string)`` of a JSON-like value (a list item has its list's key)."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from pairs(item, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from pairs(item, key)


def detect_secrets_engine() -> Callable[[dict[str, Any]], bool]:
    """detect-secrets' default plugins over each string value of a state."""
    from detect_secrets.core.scan import scan_line  # noqa: PLC0415 (optional package)
    from detect_secrets.settings import default_settings  # noqa: PLC0415

    def flagged(state: dict[str, Any]) -> bool:
        with default_settings():
            for key, text in pairs(state):
                for line in text.splitlines() or [""]:
                    if any(True for _ in scan_line(f"{json.dumps(key)}: {json.dumps(line)}")):
                        return True
        return False

    return flagged


def measure(
    name: str,
    flagged: Callable[[Any], bool],
    secret: list[Any],
    harmless: list[Any],
    size: int,
    repeat: int,
) -> None:
    """Print recall, precision and ms per 5 KB of ``flagged`` over the corpus."""
    found = sum(1 for item in secret if flagged(item))
    false_alarms = sum(1 for item in harmless if flagged(item))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in (*secret, *harmless):
            flagged(item)
        times.append(time.perf_counter() - start)
    per_5kb = statistics.median(times) * 1000 * FIVE_KB / size
    precision = found / (found + false_alarms) if found + false_alarms else 1.0
    print(
        f"{name:<34}{found / len(secret):>8.4f}{precision:>11.4f}"
        f"{false_alarms:>7}/{len(harmless):<5}{per_5kb:>12.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--detect-secrets", action="store_true")
    args = parser.parse_args()
    secret = [case.state for case in secrets_corpus.secret_cases()]
    harmless = [case.state for case in secrets_corpus.harmless_cases()]
    secret_bytes = [encode(state) for state in secret]
    harmless_bytes = [encode(state) for state in harmless]
    size = sum(map(len, secret_bytes)) + sum(map(len, harmless_bytes))
    print(
        f"corpus: {len(secret)} secret documents, {len(harmless)} harmless documents,"
        f" {size / 1024:.0f} KB of canonical JSON"
    )
    print(f"{'engine':<34}{'recall':>8}{'precision':>11}{'false alarms':>13}{'ms / 5 KB':>12}")
    measure(
        "find_secrets (walk)",
        lambda state: bool(find_secrets(state)),
        secret,
        harmless,
        size,
        args.repeat,
    )
    measure(
        "may_hold_secrets (bytes)",
        may_hold_secrets,
        secret_bytes,
        harmless_bytes,
        size,
        args.repeat,
    )
    clean = [encode(workload.program_state(i)) for i in range(200)]
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        for data in clean:
            may_hold_secrets(data)
        times.append(time.perf_counter() - start)
    clean_size = sum(map(len, clean))
    walked = sum(1 for data in clean if may_hold_secrets(data))
    print(
        f"save path: may_hold_secrets on {len(clean)} clean workload programs"
        f" ({clean_size / len(clean) / 1024:.1f} KB each, {walked} sent to the walk):"
        f" {statistics.median(times) * 1e6 * FIVE_KB / clean_size:.1f} us per 5 KB"
    )
    if args.detect_secrets:
        engine = detect_secrets_engine()
        measure("detect-secrets (default plugins)", engine, secret, harmless, size, 1)


if __name__ == "__main__":
    main()
