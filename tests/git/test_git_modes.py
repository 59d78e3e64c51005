"""File modes, reflogs and object formats exactly as Git has them.

Modes: in a registry made with ``git init --bare --shared=<value>`` every
file and directory progreg creates must have the mode Git itself gives the
same kind of file in a twin repository made the same way under the same
umask (refs, reflogs, ``packed-refs``, packs and indexes, loose objects,
directories, bundles). Reflogs: with ``core.logAllRefUpdates`` each entry
names the committer progreg used and says what happened, read back with
``git reflog``; Git's rules decide which refs get one. SHA-256 repositories
and bundles, made by ``git``, are refused with a typed error.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pygit2
import pytest

from progreg import (
    BundleError,
    NotARegistryError,
    ProgramStorage,
    RegistryError,
    StorageManager,
    UnsupportedFormatError,
    UnsupportedObjectFormatError,
)
from progreg.git.bundle import format as bundles
from progreg.git.locking import write_lock
from progreg.git.permissions import (
    PERM_EVERYBODY,
    PERM_GROUP,
    PERM_UMASK,
    parse_shared,
    shared_mode,
)
from progreg.git.refs import refpack
from progreg.integrations.hooks import install
from progreg.registry.history import LogIndex
from progreg.sharing.transfer import export_registry, import_programs
from support.gitcli import CLI_IDENTITY, assert_fsck_clean, git

COMMITTER = "Ann Committer <ann@example.com>"
AUTHOR = "Bob Author <bob@example.com>"
#: ``core.sharedRepository`` values compared (``umask``: no sharing, the umask alone).
SHARED_VALUES = ["group", "all", "0660", "umask"]


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run the test under umask 022 (a common default), restoring the previous umask."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def init_bare(path: Path, *options: str) -> Path:
    """``git init --bare <options> <path>``."""
    subprocess.run(["git", "init", "-q", "--bare", *options, str(path)], check=True)
    return path


def modes(root: Path) -> dict[str, int]:
    """``{relative path: permission bits with setgid}`` of everything under ``root``."""
    found = {}
    for directory, names, files in os.walk(root):
        for name in [*names, *files]:
            path = Path(directory) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def git_reference_modes(twin: Path, bundle: Path) -> dict[str, int]:
    """The modes Git gives each kind of file, from Git's own commands in ``twin``."""
    env = {**os.environ, **CLI_IDENTITY}
    git(twin, "config", "core.logAllRefUpdates", "always")
    tree = git(twin, "mktree", input=b"").strip()
    commit = git(twin, "commit-tree", tree, "-m", "by git", env=env).strip()
    git(twin, "update-ref", "refs/tags/deep/er/x", commit, env=env)
    loose = twin / "objects" / commit[:2] / commit[2:]
    kinds = {
        "directory": modes(twin)["refs/tags/deep/er"],
        "ref": modes(twin)["refs/tags/deep/er/x"],
        "reflog": modes(twin)["logs/refs/tags/deep/er/x"],
        "loose": stat.S_IMODE(loose.stat().st_mode),
        "objects directory": stat.S_IMODE(loose.parent.stat().st_mode),
    }
    git(twin, "pack-refs", "--all")
    kinds["packed-refs"] = modes(twin)["packed-refs"]
    git(twin, "repack", "-a", "-d", "-q")
    packs = sorted((twin / "objects" / "pack").glob("pack-*"))
    kinds["pack"] = stat.S_IMODE(next(p for p in packs if p.suffix == ".pack").stat().st_mode)
    kinds["idx"] = stat.S_IMODE(next(p for p in packs if p.suffix == ".idx").stat().st_mode)
    git(twin, "bundle", "create", "-q", str(bundle), "--all")
    kinds["bundle"] = stat.S_IMODE(bundle.stat().st_mode)
    return kinds


def kind_of(path: str, is_dir: bool) -> str:
    """Which kind of Git file (see :func:`git_reference_modes`) ``path`` in a registry is."""
    parts = path.split("/")
    if is_dir:
        return "objects directory" if parts[0] == "objects" else "directory"
    if parts[0] == "objects" and parts[1] == "pack":
        return "pack" if path.endswith(".pack") else "idx" if path.endswith(".idx") else "?"
    if parts[0] == "objects" and len(parts[1]) == 2:
        return "loose"
    if parts[0] == "logs":
        return "reflog"
    if path == "packed-refs":
        return "packed-refs"
    if parts[0] in ("refs", "progreg-cache") or path in (
        "HEAD",
        "progreg.lock",
        "progreg-maintenance.lock",
    ):
        return "ref"  # opened 0666 like a ref (Git's lock files and refs)
    return "?"


def exercise(registry: Path, elsewhere: Path) -> Path:
    """Do everything that writes into a registry: saves, tags, checkpoints, gc, ref packing,
    an export and an import (into ``elsewhere``). Returns the exported bundle."""
    storage = ProgramStorage(registry, committer=COMMITTER, author=AUTHOR)
    manager = StorageManager(storage=storage)
    first = storage.save_program({"v": 1}, {"best_score_value": 0.1}, tags=["first"])
    storage.save_program({"v": 2}, {"best_score_value": 0.2}, program_id=first.program_id)
    for i in range(3):
        storage.save_program({"i": i}, {"best_score_value": i / 10}, tags=[f"t{i}"])
    manager.tag_program(first.program_id, "later")
    manager.untag_program(first.program_id, "first")
    outcome = SimpleNamespace(optimized_program={"run": 1}, best_score_value=0.3)
    manager.create_checkpoint(outcome, "run-a")
    manager.create_checkpoint(
        SimpleNamespace(optimized_program={"run": 2}, best_score_value=0.4), "run-a"
    )
    manager.create_checkpoint(outcome, "run-b")
    manager.delete_checkpoint("run-b")
    index = LogIndex(storage.registry.git, "refs/heads/main")
    index.persist_after = 0  # write the log cache now (it waits for 128 commits)
    index.entries()
    storage.gc()
    with write_lock(registry, 5.0):
        refpack.pack_refs(registry)
    storage.save_program({"after": "gc"}, tags=["post"])
    bundle = registry.parent / "export.bundle"
    export_registry(storage.registry, bundle)
    import_programs(ProgramStorage(elsewhere, committer=COMMITTER).registry, bundle)
    return bundle


@pytest.mark.parametrize("shared", SHARED_VALUES)
def test_every_file_progreg_creates_has_the_mode_git_gives_it(
    tmp_path: Path, shared: str, umask_022: None
) -> None:
    registry = init_bare(tmp_path / "registry", f"--shared={shared}")
    elsewhere = init_bare(tmp_path / "elsewhere", f"--shared={shared}")
    for repo in (registry, elsewhere):
        git(repo, "config", "core.logAllRefUpdates", "always")
    made_by_git = set(modes(registry))
    expected = git_reference_modes(
        init_bare(tmp_path / "twin", f"--shared={shared}"), tmp_path / "git.bundle"
    )
    bundle = exercise(registry, elsewhere)
    assert (registry / "progreg-cache").is_dir()  # the log cache was written: checked too
    assert (registry / "packed-refs").is_file()
    assert stat.S_IMODE(bundle.stat().st_mode) == expected["bundle"]
    for repo in (registry, elsewhere):
        wrong = {}
        for path, mode in modes(repo).items():
            if repo == registry and path in made_by_git and not path.startswith(("refs", "logs")):
                continue  # git init's own files (config, hooks...)
            if path in ("config", "description") or path.startswith(("hooks", "info")):
                continue
            kind = kind_of(path, (repo / path).is_dir())
            if expected.get(kind) != mode:
                wrong[path] = f"{oct(mode)} where git gives a {kind} {oct(expected.get(kind, 0))}"
        assert not wrong, f"core.sharedRepository={shared}: {wrong}"
        assert_fsck_clean(repo)


def test_without_sharing_the_umask_decides_as_for_git(tmp_path: Path) -> None:
    """Under umask 002 Git makes refs 0664: so does progreg (it used to force 0644)."""
    previous = os.umask(0o002)
    try:
        registry = init_bare(tmp_path / "registry")
        expected = git_reference_modes(init_bare(tmp_path / "twin"), tmp_path / "git.bundle")
        storage = ProgramStorage(registry, committer=COMMITTER)
        storage.save_program({"a": 1}, tags=["t"])
        bundle = tmp_path / "out.bundle"
        export_registry(storage.registry, bundle)
    finally:
        os.umask(previous)
    found = modes(registry)
    assert found["refs/heads/main"] == expected["ref"] == 0o664
    assert found["progreg.lock"] == 0o664
    tag_dir = next(p for p in found if p.startswith("refs/tags/t") and (registry / p).is_dir())
    assert found[tag_dir] == expected["directory"] == 0o775
    pack = next(p for p in found if p.endswith(".pack"))
    assert found[pack] == expected["pack"] == 0o444
    assert stat.S_IMODE(bundle.stat().st_mode) == expected["bundle"] == 0o664


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_an_exported_bundle_gets_the_mode_git_bundle_create_gives(
    tmp_path: Path, mask: int
) -> None:
    registry = init_bare(tmp_path / "registry")
    storage = ProgramStorage(registry, committer=COMMITTER)
    storage.save_program({"a": 1})
    previous = os.umask(mask)
    try:
        export_registry(storage.registry, tmp_path / "progreg.bundle")
        git(registry, "bundle", "create", "-q", str(tmp_path / "git.bundle"), "--all")
    finally:
        os.umask(previous)
    ours = stat.S_IMODE((tmp_path / "progreg.bundle").stat().st_mode)
    assert ours == stat.S_IMODE((tmp_path / "git.bundle").stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("umask", PERM_UMASK),
        ("false", PERM_UMASK),
        ("0", PERM_UMASK),
        ("group", PERM_GROUP),
        ("true", PERM_GROUP),
        ("1", PERM_GROUP),
        ("all", PERM_EVERYBODY),
        ("world", PERM_EVERYBODY),
        ("everybody", PERM_EVERYBODY),
        ("2", PERM_EVERYBODY),
        ("0660", -0o660),
        ("0640", -0o640),
        ("0777", -0o666),  # others never get write bits, x is for directories alone
        (None, PERM_GROUP),
    ],
)
def test_core_shared_repository_is_read_as_git_reads_it(value: str | None, expected: int) -> None:
    assert parse_shared(value) == expected


def test_a_shared_mode_without_owner_write_is_refused_as_git_refuses_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="owner of files must always have read and write"):
        parse_shared("0440")
    registry = init_bare(tmp_path / "registry")
    git(registry, "config", "core.sharedRepository", "0440")
    with pytest.raises(RegistryError, match=r"core\.sharedRepository"):
        ProgramStorage(registry).save_program({"a": 1})


@pytest.mark.parametrize(("shared", "value"), [(PERM_GROUP, "group"), (-0o660, "0660")])
def test_mode_rules_match_git_on_a_read_only_and_a_directory_file(
    tmp_path: Path, shared: int, value: str
) -> None:
    """Git's own files of a twin: a loose object (created 0444) and a new directory."""
    previous = os.umask(0o022)
    try:
        twin = init_bare(tmp_path / "twin", f"--shared={value}")
        blob = git(twin, "hash-object", "-w", "--stdin", input=b"x").strip()
    finally:
        os.umask(previous)
    obj = twin / "objects" / blob[:2] / blob[2:]
    assert stat.S_IMODE(obj.stat().st_mode) == stat.S_IMODE(
        shared_mode(stat.S_IFREG | 0o444, shared)
    )
    assert stat.S_IMODE(obj.parent.stat().st_mode) == stat.S_IMODE(
        shared_mode(stat.S_IFDIR | 0o755, shared, directory=True)
    )


# -- a second user of a shared registry --------------------------------------------------


def _run_as(user: str, action: Callable[[], None]) -> int:
    """Run ``action`` in a child process as ``user`` (with its groups); its exit status."""
    entry = pwd.getpwnam(user)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.setgroups([g.gr_gid for g in grp.getgrall() if user in g.gr_mem])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            os.umask(0o022)
            action()
            status = 0
        except BaseException as exc:
            with contextlib.suppress(Exception):
                os.write(2, f"{user}: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(status)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@contextlib.contextmanager
def _users(group: str, *names: str) -> Iterator[None]:
    """Create ``group`` and users ``names`` in it, removed afterwards."""
    subprocess.run(["groupadd", "-f", group], check=True)
    try:
        for name in names:
            subprocess.run(["userdel", name], capture_output=True, check=False)
            subprocess.run(
                ["useradd", "-M", "-N", "-g", group, "-s", "/usr/sbin/nologin", name], check=True
            )
        yield
    finally:
        for name in names:
            subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", group], capture_output=True, check=False)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="creating the second and third Unix users of a shared group needs root and useradd",
)
def test_other_members_of_the_group_save_into_a_shared_registry(umask_022: None) -> None:
    tag = os.getpid() % 100000  # distinct names for concurrent runs
    group, second, third = f"prgshare{tag}", f"prgsecond{tag}", f"prgthird{tag}"
    top = Path(tempfile.mkdtemp(prefix="progreg-shared-"))
    try:
        top.chmod(0o755)  # the users must reach it (pytest's tmp_path is root's alone)
        with _users(group, second, third):
            registry = init_bare(top / "registry", "--shared=group")
            # what an administrator does: the repository belongs to the group (and the
            # setgid directories give what is created inside that group)
            subprocess.run(["chgrp", "-R", group, str(registry)], check=True)
            config = top / "gitconfig"
            config.write_text("[safe]\n\tdirectory = *\n")  # libgit2's ownership check
            config.chmod(0o644)
            first = ProgramStorage(registry, committer=COMMITTER)
            saved = first.save_program({"by": "root"}, tags=["root"])
            ids: list[str] = [saved.program_id]

            def save(who: str) -> Callable[[], None]:
                def action() -> None:
                    pygit2.settings.search_path[pygit2.enums.ConfigLevel.GLOBAL] = str(top)
                    pygit2.option(pygit2.enums.Option.SET_OWNER_VALIDATION, 0)
                    storage = ProgramStorage(registry, committer=f"{who} <{who}@example.com>")
                    storage.save_program({"by": who}, tags=[who])
                    storage.save_program({"by": who, "again": True}, program_id=ids[0])

                return action

            assert _run_as(second, save(second)) == 0, f"{second} could not save"
            assert _run_as(third, save(third)) == 0, f"{third} could not save after {second}"
            log = git(registry, "log", "--format=%cn", "main").split()
            assert log[:4] == [third, third, second, second]
            assert_fsck_clean(registry)
    finally:
        shutil.rmtree(top, ignore_errors=True)


# -- reflogs ---------------------------------------------------------------------------------


def reflog(registry: Path, ref: str) -> list[str]:
    """``name email message`` of each entry of ``ref``'s reflog, newest first, as git reads it."""
    out = git(registry, "reflog", "show", "--format=%gn %ge %gs", ref, "--")
    return out.splitlines()


def log_lines(registry: Path, ref: str) -> list[str]:
    """The raw lines of ``logs/<ref>`` (``git reflog`` shows only entries for commits)."""
    return (registry / "logs" / ref).read_text().splitlines()


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    registry = init_bare(tmp_path / "registry")
    git(registry, "config", "core.logAllRefUpdates", "always")
    return registry


def test_saves_are_logged_with_their_committer_and_subject(logged: Path) -> None:
    storage = ProgramStorage(logged, committer=COMMITTER, author=AUTHOR)
    saved = storage.save_program({"a": 1})
    storage.save_program({"a": 2}, program_id=saved.program_id)
    subjects = git(logged, "log", "--format=%s", "main").splitlines()
    expected = [
        f"Ann Committer ann@example.com commit: {subjects[0]}",
        f"Ann Committer ann@example.com commit (initial): {subjects[1]}",
    ]
    assert reflog(logged, "main") == expected
    assert reflog(logged, "HEAD") == expected  # HEAD names main: Git logs it there too
    ids = [line.split()[:2] for line in log_lines(logged, "refs/heads/main")]
    commits = git(logged, "rev-list", "main").split()
    assert ids == [["0" * 40, commits[1]], [commits[1], commits[0]]]


def test_the_global_identity_is_not_what_a_save_logs(
    logged: Path, isolated_git_config: Path
) -> None:
    isolated_git_config.write_text("[user]\n\tname = Global Person\n\temail = global@example.com\n")
    ProgramStorage(logged, committer=COMMITTER).save_program({"a": 1})
    [entry] = reflog(logged, "main")
    assert entry.startswith("Ann Committer ann@example.com commit (initial): ")


def test_tags_checkpoints_imports_and_deletions_are_logged_as_git_would(
    logged: Path, tmp_path: Path
) -> None:
    storage = ProgramStorage(logged, committer=COMMITTER)
    manager = StorageManager(storage=storage)
    saved = storage.save_program({"a": 1}, tags=["with-save"])
    manager.tag_program(saved.program_id, "by-hand")
    commit = git(logged, "rev-parse", "main").strip()
    subject = git(logged, "log", "-1", "--format=%s", "main").strip()
    for tag in ("with-save", "by-hand"):
        [line] = log_lines(logged, f"refs/tags/{tag}/{saved.program_id}")
        assert line.split("\t")[1] == f"tag: tagging {commit[:7]} ({subject})"
        assert " Ann Committer <ann@example.com> " in line
    manager.create_checkpoint(
        SimpleNamespace(optimized_program={"c": 1}, best_score_value=0.5), "run"
    )
    [entry] = reflog(logged, "refs/heads/checkpoints/run")
    assert entry.startswith("Ann Committer ann@example.com commit (initial): ")
    manager.untag_program(saved.program_id, "by-hand")
    assert not (logged / "logs" / "refs" / "tags" / "by-hand" / saved.program_id).exists()
    assert manager.delete_checkpoint("run")
    assert not (logged / "logs" / "refs" / "heads" / "checkpoints" / "run").exists()

    bundle = tmp_path / "all.bundle"
    manager.create_checkpoint(
        SimpleNamespace(optimized_program={"c": 2}, best_score_value=0.6), "shipped"
    )
    export_registry(storage.registry, bundle)
    target = init_bare(tmp_path / "target")
    git(target, "config", "core.logAllRefUpdates", "always")
    import_programs(
        ProgramStorage(target, committer="Imp Orter <imp@example.com>").registry, bundle
    )
    [entry] = reflog(target, "refs/heads/checkpoints/shipped")
    assert entry == "Imp Orter imp@example.com import all.bundle: fast-forward"
    [line] = log_lines(target, f"refs/tags/with-save/{saved.program_id}")
    assert line.endswith("\timport all.bundle: storing tag")


def test_gc_and_ref_packing_keep_the_reflogs(logged: Path) -> None:
    storage = ProgramStorage(logged, committer=COMMITTER)
    for i in range(3):
        storage.save_program({"i": i}, tags=[f"t{i}"])
    before = reflog(logged, "main")
    storage.gc()
    with write_lock(logged, 5.0):
        refpack.pack_refs(logged)
    assert reflog(logged, "main") == before
    storage.save_program({"i": 9})
    assert len(reflog(logged, "main")) == 4
    assert_fsck_clean(logged)


def test_true_logs_branches_only_and_the_bare_default_logs_nothing(tmp_path: Path) -> None:
    normal = init_bare(tmp_path / "normal")
    git(normal, "config", "core.logAllRefUpdates", "true")
    ProgramStorage(normal, committer=COMMITTER).save_program({"a": 1}, tags=["t"])
    assert len(reflog(normal, "main")) == 1
    assert not (normal / "logs" / "refs" / "tags").exists()

    default = init_bare(tmp_path / "default")
    ProgramStorage(default, committer=COMMITTER).save_program({"a": 1}, tags=["t"])
    assert not (default / "logs").exists()


def test_an_existing_reflog_is_appended_to_even_when_logging_is_off(tmp_path: Path) -> None:
    registry = init_bare(tmp_path / "registry")
    storage = ProgramStorage(registry, committer=COMMITTER)
    saved = storage.save_program({"a": 1})
    assert not (registry / "logs").exists()
    (registry / "logs" / "refs" / "heads").mkdir(parents=True)
    (registry / "logs" / "refs" / "heads" / "main").touch()  # what `git reflog` would read
    git(registry, "config", "core.logAllRefUpdates", "false")
    storage.save_program({"a": 2}, program_id=saved.program_id)
    [entry] = reflog(registry, "main")
    assert entry.startswith("Ann Committer ann@example.com commit: ")
    assert not (registry / "logs" / "HEAD").exists()  # none there: none made


def test_moves_without_a_given_entry_name_the_configured_committer(
    logged: Path, isolated_git_config: Path
) -> None:
    isolated_git_config.write_text("[user]\n\tname = Config Person\n\temail = conf@example.com\n")
    storage = ProgramStorage(logged, committer=COMMITTER)
    storage.save_program({"a": 1})
    commit = pygit2.Oid(hex=git(logged, "rev-parse", "main").strip())
    assert storage.registry.git.create_refs({"refs/heads/copy": str(commit)}) == ["refs/heads/copy"]
    assert reflog(logged, "refs/heads/copy") == ["Config Person conf@example.com created"]


# -- SHA-256 ---------------------------------------------------------------------------------


def test_a_sha256_repository_is_refused_with_a_typed_error(tmp_path: Path) -> None:
    registry = init_bare(tmp_path / "sha256", "--object-format=sha256")
    with pytest.raises(
        UnsupportedObjectFormatError, match="SHA-256 repositories are not supported"
    ):
        ProgramStorage(registry)
    assert issubclass(UnsupportedObjectFormatError, UnsupportedFormatError)
    assert issubclass(UnsupportedObjectFormatError, BundleError)
    assert not issubclass(UnsupportedObjectFormatError, NotARegistryError)


def test_a_sha256_bundle_is_refused_with_a_typed_error(tmp_path: Path) -> None:
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--object-format=sha256", str(work)], check=True)
    (work / "a").write_text("a")
    git(work, "add", "a")
    git(work, "commit", "-q", "-m", "a", env=CLI_IDENTITY)
    bundle = tmp_path / "sha256.bundle"
    git(work, "bundle", "create", "-q", str(bundle), "--all")
    assert bundle.read_bytes().startswith(b"# v3 git bundle\n@object-format=sha256\n")
    with pytest.raises(UnsupportedObjectFormatError, match="SHA-256 bundles are not supported"):
        bundles.read_header(bundle)
    storage = ProgramStorage(tmp_path / "registry")
    before = git(storage.path, "for-each-ref")
    with pytest.raises(BundleError, match="SHA-256 bundles are not supported"):
        import_programs(storage.registry, bundle)
    assert git(storage.path, "for-each-ref") == before


@pytest.mark.parametrize("shared", SHARED_VALUES)
def test_the_installed_hook_has_the_mode_of_gits_own_hooks(
    tmp_path: Path, shared: str, umask_022: None
) -> None:
    registry = init_bare(tmp_path / "registry", f"--shared={shared}")
    hook = install(registry)
    sample = registry / "hooks" / "pre-receive.sample"  # copied and adjusted by git init
    assert stat.S_IMODE(hook.stat().st_mode) == stat.S_IMODE(sample.stat().st_mode)


def test_a_hook_is_not_installed_in_a_sha256_repository(tmp_path: Path) -> None:
    registry = init_bare(tmp_path / "sha256", "--object-format=sha256")
    with pytest.raises(UnsupportedObjectFormatError, match="SHA-256 repositories"):
        install(registry)
    assert not (registry / "hooks" / "pre-receive").exists()


def test_a_push_to_a_registry_on_disk_logs_and_shares_as_git_would(
    tmp_path: Path, umask_022: None
) -> None:
    target = init_bare(tmp_path / "target", "--shared=group")
    git(target, "config", "core.logAllRefUpdates", "always")
    git(target, "config", "user.name", "Target Owner")
    git(target, "config", "user.email", "owner@example.com")
    source = ProgramStorage(tmp_path / "source", committer=COMMITTER)
    source.save_program({"a": 1}, tags=["pushed"])
    source.add_remote("origin", str(target))
    assert source.push().created
    assert reflog(target, "main") == ["Target Owner owner@example.com push"]
    expected = git_reference_modes(
        init_bare(tmp_path / "twin", "--shared=group"), tmp_path / "git.bundle"
    )
    for path, mode in modes(target).items():
        if path.startswith(("refs/", "logs/", "objects/")):  # loose objects copied by the push
            kind = kind_of(path, (target / path).is_dir())
            assert mode == expected[kind], (path, oct(mode), kind)


@pytest.mark.parametrize("shared", SHARED_VALUES)
def test_a_loose_object_libgit2_writes_gets_the_mode_git_gives_one(
    tmp_path: Path, shared: str, umask_022: None
) -> None:
    """Reference imports write their blobs through libgit2, which ignores the setting."""
    registry = init_bare(tmp_path / "registry", f"--shared={shared}")
    expected = git_reference_modes(
        init_bare(tmp_path / "twin", f"--shared={shared}"), tmp_path / "git.bundle"
    )
    oid = str(ProgramStorage(registry).registry.git.write_blob(b"a blob of a reference import\n"))
    loose = registry / "objects" / oid[:2] / oid[2:]
    assert stat.S_IMODE(loose.stat().st_mode) == expected["loose"]
    assert stat.S_IMODE(loose.parent.stat().st_mode) == expected["objects directory"]
