"""``git fsck --strict`` as an oracle: what Git itself says of a batch of raw objects.

:func:`git_verdicts` writes each object with ``git hash-object --literally -w``
into a fresh bare repository (so nothing but these objects is checked; none
is referenced from a ref, so connectivity is not checked) and reads what
``git fsck --strict --no-dangling`` prints for each object id: its error and
warning message ids, and whether Git refused it at all (a fsck error, an
object Git cannot parse, broken links).

Objects of one batch must not refer to one id as objects of different types
(Git would report the clash on the object that meets it second): the
generators give every reference an id of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from progreg.git.objects.encoding import TYPE_NAMES, object_id

_LINE = re.compile(r"^(error|warning) in (?:commit|tree|blob|tag|unknown) ([0-9a-f]{40}): (.*)$")
_HEX = re.compile(r"[0-9a-f]{40}")


@dataclass
class GitVerdict:
    """What ``git fsck --strict`` printed about one object."""

    refused: bool = False
    errors: set[str] = field(default_factory=set)
    warnings: set[str] = field(default_factory=set)
    #: Git refused the object without a fsck message id (unparsable, broken links).
    other: list[str] = field(default_factory=list)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["LC_ALL"] = "C"
    return env


def git_verdicts(directory: Path, objects: list[tuple[int, bytes]]) -> dict[bytes, GitVerdict]:
    """``{object id: what git fsck --strict says}`` for ``objects`` (type, raw data)."""
    env = _environment()
    repo = directory / "oracle.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, env=env)
    ids: list[bytes] = []
    for kind in sorted({kind for kind, _ in objects}):
        paths, wanted = [], []
        for number, (its_kind, data) in enumerate(objects):
            if its_kind == kind:
                path = directory / f"object-{number}"
                path.write_bytes(data)
                paths.append(str(path))
                wanted.append(object_id(kind, data))
        done = subprocess.run(
            [
                "git",
                "--git-dir",
                str(repo),
                "hash-object",
                "--literally",
                "-w",
                "-t",
                TYPE_NAMES[kind].decode(),
                "--stdin-paths",
            ],
            input="\n".join(paths).encode() + b"\n",
            capture_output=True,
            check=True,
            env=env,
        )
        written = [bytes.fromhex(line) for line in done.stdout.decode().split()]
        assert written == wanted, "git and progreg disagree on the objects' ids"
        ids += written
    done = subprocess.run(
        ["git", "--git-dir", str(repo), "fsck", "--strict", "--no-dangling", "--no-progress"],
        capture_output=True,
        check=False,
        env=env,
    )
    verdicts = {oid: GitVerdict() for oid in ids}
    for line in (done.stdout + done.stderr).decode("utf-8", "replace").splitlines():
        match = _LINE.match(line)
        if match is not None:
            severity, hexa, rest = match.groups()
            verdict = verdicts.get(bytes.fromhex(hexa))
            if verdict is None:
                continue  # an object the batch only refers to (a missing .gitmodules blob)
            message_id = rest.split(":", 1)[0]
            if severity == "warning":
                verdict.warnings.add(message_id)
            elif rest == "broken links":
                verdict.refused = True
                verdict.other.append(line)
            else:
                verdict.refused = True
                verdict.errors.add(message_id)
            continue
        if line.startswith("error"):
            for hexa in _HEX.findall(line):
                verdict = verdicts.get(bytes.fromhex(hexa))
                if verdict is not None:
                    verdict.refused = True
                    verdict.other.append(line)
    return verdicts


__all__ = ["GitVerdict", "git_verdicts"]
