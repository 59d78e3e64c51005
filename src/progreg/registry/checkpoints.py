"""Checkpoints: the progress of a long optimization as a branch per run.

``create`` adds one commit to ``refs/heads/checkpoints/<name>``; its tree holds
``checkpoint.json`` (name, program id, time, the caller's metadata) and the
checkpoint's program file at its usual path, replacing the previous one. So
``git log checkpoints/<name>`` is the run's progress, the branch's tip is the
newest checkpoint, and ``<name>~2`` is the one two steps before. Checkpoint
branches share no history with ``main`` and never clutter it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pygit2
from pydantic import BaseModel, ConfigDict

from progreg import events
from progreg.core import canonical
from progreg.core.document import ProgramDocument, decode_document, format_time
from progreg.core.ids import check_program_id, new_program_id, program_path
from progreg.core.layout import CHECKPOINTS_PREFIX
from progreg.core.models import SavedProgram
from progreg.core.names import check_name
from progreg.core.secrets import SecretsPolicy
from progreg.errors import CorruptProgramError, InvalidNameError, ProgregError
from progreg.git import CommitPlan, Tip
from progreg.git.maintenance import auto_maintenance
from progreg.git.objects.trees import Edit
from progreg.registry.messages import save_message
from progreg.registry.store import Registry

MANIFEST = "checkpoint.json"
_REVISION = re.compile(r"(?P<name>[^~]+)(?:~(?P<back>[0-9]{1,9}))?")


class CheckpointInfo(BaseModel):
    """One checkpoint: a commit on a checkpoint branch."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    revision: str
    commit: str
    program_id: str
    created_at: datetime
    best_score: float | None
    optimizer: str | None
    signature_class: str | None
    metadata: dict[str, Any]


def checkpoint_ref(name: str) -> str:
    """The branch of checkpoint ``name`` (validated)."""
    return CHECKPOINTS_PREFIX + check_name("checkpoint", name, CHECKPOINTS_PREFIX)


def parse_revision(spec: str) -> tuple[str, int]:
    """Split ``"name"`` or ``"name~N"`` into the name and how many steps back."""
    match = _REVISION.fullmatch(spec) if isinstance(spec, str) else None
    if match is None:
        raise InvalidNameError(f"invalid checkpoint revision {spec!r}: use NAME or NAME~N")
    check_name("checkpoint", match["name"], CHECKPOINTS_PREFIX)
    return match["name"], int(match["back"] or 0)


class Checkpoints:
    """The checkpoint branches of a registry."""

    def __init__(self, storage: Registry) -> None:
        self._storage = storage
        self._git = storage.git

    def create(
        self,
        program: object,
        optimization_result: object,
        name: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        secrets: SecretsPolicy = "refuse",
        trailers: Sequence[tuple[str, str]] = (),
    ) -> SavedProgram:
        """Record ``program`` as the newest checkpoint of run ``name``.

        ``secrets`` is as for :meth:`~progreg.ProgramStorage.save_program`;
        ``trailers`` are added to the commit's (after ``Checkpoint``).
        """
        ref = checkpoint_ref(name)
        meta = dict(metadata or {})
        canonical.check_json(meta, "checkpoint metadata")
        doc = self._storage.document_for(
            program,
            optimization_result,
            {**meta, "checkpoint": name},
            new_program_id(),
            secrets=secrets,
            where=f"the checkpoint of run {name}",
        )
        data = doc.encode()
        self._storage.check_size(len(data), doc.program_id)
        # The caller's metadata as the document holds it: screened, and redacted with it.
        screened = {key: doc.metadata[key] for key in meta if key in doc.metadata}
        manifest = canonical.encode(
            {
                "name": name,
                "program_id": doc.program_id,
                "created_at": format_time(doc.saved_at),
                "metadata": screened,
            },
            MANIFEST,
        )
        author, committer = self._storage.identity()
        message = save_message(
            doc,
            action="checkpoint",
            extra=[("Checkpoint", name), *trailers],
            verb=f"Checkpoint {name}:",
        )
        try:

            def plan(tip: Tip | None) -> CommitPlan:
                edits: dict[str, Edit] = {program_path(doc.program_id): data, MANIFEST: manifest}
                previous = self._manifest(tip) if tip is not None else None
                if previous is not None and previous["program_id"] != doc.program_id:
                    edits[program_path(previous["program_id"])] = None
                edits = self._storage.with_marker(tip, edits, main=False)
                return CommitPlan(edits, message, author, committer, doc.saved_at)

            commit = self._git.update_ref(ref, plan)
        except ProgregError:
            raise
        except (pygit2.GitError, OSError) as exc:
            raise self._storage.write_error(exc) from exc
        assert commit is not None
        auto_maintenance(self._git)
        events.emit(
            "progreg.checkpoint.create",
            checkpoint=name,
            program_id=doc.program_id,
            commit=str(commit),
            size_bytes=len(data),
        )
        return self._storage.saved_program(doc, program, str(commit))

    def _manifest(self, commit: pygit2.Commit | Tip) -> dict[str, Any] | None:
        data = self._git.read(commit.tree, MANIFEST)
        if data is None:
            return None
        manifest = canonical.decode(data, f"{MANIFEST} of checkpoint commit {commit.id}")
        if not isinstance(manifest, dict):
            raise CorruptProgramError(f"{MANIFEST} of commit {commit.id} is not an object")
        try:
            check_program_id(manifest.get("program_id"))
        except ProgregError as exc:
            raise CorruptProgramError(f"{MANIFEST} of commit {commit.id}: {exc}") from exc
        return manifest

    def _resolve(self, spec: str) -> tuple[str, int, pygit2.Commit | None]:
        name, back = parse_revision(spec)
        commit = self._git.tip(CHECKPOINTS_PREFIX + name)
        for _ in range(back):
            if commit is None or not commit.parents:
                return name, back, None
            commit = commit.parents[0]
        return name, back, commit

    def restore(self, spec: str, *, into: object = None) -> SavedProgram | None:
        """The checkpoint ``NAME`` (newest) or ``NAME~N``; ``None`` if there is none."""
        name, _, commit = self._resolve(spec)
        if commit is None:
            return None
        _, doc = self._load(commit, spec)
        program = self._storage.rebuild(doc, into)
        events.emit(
            "progreg.checkpoint.restore",
            checkpoint=name,
            revision=spec,
            program_id=doc.program_id,
            commit=str(commit.id),
        )
        return self._storage.saved_program(doc, program, str(commit.id))

    def _load(self, commit: pygit2.Commit, revision: str) -> tuple[dict[str, Any], ProgramDocument]:
        """The manifest and program document of checkpoint commit ``commit``."""
        where = f"checkpoint {revision} (commit {commit.id})"
        manifest = self._manifest(commit)
        if manifest is None:
            raise CorruptProgramError(f"{where} has no {MANIFEST}")
        program_id = manifest["program_id"]
        data = self._git.read(commit.tree, program_path(program_id))
        if data is None:
            raise CorruptProgramError(f"{where} lacks its program {program_id}")
        return manifest, decode_document(data, where, program_id)

    def _info(self, name: str, back: int, commit: pygit2.Commit) -> CheckpointInfo:
        revision = name if back == 0 else f"{name}~{back}"
        manifest, doc = self._load(commit, revision)
        meta = manifest.get("metadata")
        return CheckpointInfo(
            name=name,
            revision=revision,
            commit=str(commit.id),
            program_id=doc.program_id,
            created_at=doc.saved_at,
            best_score=doc.best_score,
            optimizer=doc.optimizer,
            signature_class=doc.signature_class,
            metadata=meta if isinstance(meta, dict) else {},
        )

    def latest(self) -> list[CheckpointInfo]:
        """The newest checkpoint of every run, by name."""
        infos = []
        for ref in sorted(self._git.refs_under(CHECKPOINTS_PREFIX)):
            name = ref[len(CHECKPOINTS_PREFIX) :]
            tip = self._git.tip(ref)
            if tip is not None:
                infos.append(self._info(name, 0, tip))
        return infos

    def history(self, name: str) -> list[CheckpointInfo]:
        """Every checkpoint of run ``name``, newest first (``name``, ``name~1``, ...)."""
        commit = self._git.tip(checkpoint_ref(name))
        infos = []
        back = 0
        while commit is not None:
            infos.append(self._info(name, back, commit))
            commit = commit.parents[0] if commit.parents else None
            back += 1
        return infos

    def newest(self, name: str) -> CheckpointInfo | None:
        """The newest checkpoint of run ``name``; ``None`` when it has none."""
        commit = self._git.tip(checkpoint_ref(name))
        return None if commit is None else self._info(name, 0, commit)

    def manifests(self, name: str) -> list[tuple[str, str, dict[str, Any]]]:
        """``(revision, commit, checkpoint.json)`` of every checkpoint of ``name``, newest first.

        Only the manifests are read, not the programs: what a long run's
        trajectory needs.
        """
        commit = self._git.tip(checkpoint_ref(name))
        found = []
        back = 0
        while commit is not None:
            manifest = self._manifest(commit)
            if manifest is None:
                raise CorruptProgramError(
                    f"checkpoint {name}~{back} (commit {commit.id}) has no {MANIFEST}"
                )
            revision = name if back == 0 else f"{name}~{back}"
            found.append((revision, str(commit.id), manifest))
            commit = commit.parents[0] if commit.parents else None
            back += 1
        return found

    def delete(self, name: str) -> bool:
        """Delete the branch of run ``name``; ``False`` if there was none."""
        deleted = self._git.delete_ref(checkpoint_ref(name))
        if deleted:
            events.emit("progreg.checkpoint.delete", checkpoint=name)
        return deleted
