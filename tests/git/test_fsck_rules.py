"""Differential proof: progreg's object checks say what ``git fsck --strict`` (2.39) says.

Every object here, from a fixed list of the cases that matter to a registry
(duplicate entries, ``040000``, ``GIT~1``, ``.g\\u200cit``, ``.GIT ``, NUL in
a commit message...) and from hypothesis strategies that build adversarial
trees, commits and tags, is written into a real repository with ``git
hash-object --literally -w`` and checked by ``git fsck --strict`` (see
``tests/support/fsck_oracle.py``). progreg's verdict (:func:`progreg.git.objects.fsck.check_object`)
must be the same: refused or clean, and, when Git names them, the same error
and warning message ids. Each run prints how many objects it compared
(``pytest -s``) and asserts that count; there is no allowed disagreement.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from progreg.git.objects import fsck
from progreg.git.objects.encoding import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE, object_id
from support.fsck_oracle import GitVerdict, git_verdicts

RawObject = tuple[int, bytes]
_counter = [0]


def fresh_oid(salt: bytes = b"") -> bytes:
    """An id no other object of a batch uses (so Git sees no type clash between references)."""
    _counter[0] += 1
    return hashlib.sha1(b"%d:" % _counter[0] + salt).digest()


def entry(mode: bytes, name: bytes, oid: bytes | None = None) -> bytes:
    """One raw tree entry."""
    return mode + b" " + name + b"\x00" + (oid if oid is not None else fresh_oid())


def ident(name: bytes = b"A U Thor", email: bytes = b"a@example.com") -> bytes:
    """A well-formed identity with a date."""
    return name + b" <" + email + b"> 1700000000 +0000"


def commit(
    headers: bytes | None = None, message: bytes = b"message\n", tree: bytes | None = None
) -> bytes:
    """A commit object, well formed unless ``headers`` say otherwise."""
    if headers is None:
        headers = b"author " + ident() + b"\ncommitter " + ident() + b"\n"
    return b"tree " + (tree or fresh_oid()).hex().encode() + b"\n" + headers + b"\n" + message


def tag(rest: bytes, kind: bytes = b"commit") -> bytes:
    """A tag object on a fresh id."""
    return b"object " + fresh_oid().hex().encode() + b"\ntype " + kind + b"\n" + rest


def _fixed_cases() -> list[tuple[str, RawObject, str | None]]:
    """``(what, object, the error id git gives or None)``: the cases the task names and more."""
    T, C, G = OBJ_TREE, OBJ_COMMIT, OBJ_TAG
    return [
        ("a sound tree", (T, entry(b"100644", b"a") + entry(b"40000", b"b")), None),
        ("duplicate entries", (T, entry(b"100644", b"a") + entry(b"100644", b"a")),
         "duplicateEntries"),
        ("a file and a directory of one name", (T, entry(b"100644", b"a") + entry(b"40000", b"a")),
         "duplicateEntries"),
        ("non-adjacent duplicates", (T, entry(b"100644", b"foo") + entry(b"100644", b"foo.bar")
                                     + entry(b"40000", b"foo")), "duplicateEntries"),
        ("zero-padded 040000", (T, entry(b"040000", b"d")), "zeroPaddedFilemode"),
        ("zero-padded 0100644", (T, entry(b"0100644", b"f")), "zeroPaddedFilemode"),
        (".git", (T, entry(b"40000", b".git")), "hasDotgit"),
        (".GIT", (T, entry(b"40000", b".GIT")), "hasDotgit"),
        ("GIT~1 (NTFS short name)", (T, entry(b"40000", b"GIT~1")), "hasDotgit"),
        ("git~1 as a file", (T, entry(b"100644", b"git~1")), "hasDotgit"),
        (".g\\u200cit (HFS ignorable)", (T, entry(b"40000", ".g\u200cit".encode())),
         "hasDotgit"),
        ("\\ufeff.git (HFS ignorable)", (T, entry(b"40000", "\ufeff.git".encode())),
         "hasDotgit"),
        (".GIT with a trailing space (NTFS)", (T, entry(b"40000", b".GIT ")), "hasDotgit"),
        (".git. . (NTFS)", (T, entry(b"40000", b".git. .")), "hasDotgit"),
        (".git::$INDEX_ALLOCATION", (T, entry(b"40000", b".git::$INDEX_ALLOCATION")),
         "hasDotgit"),
        ("a\\.git (backslash)", (T, entry(b"100644", b"a\\.git")), "hasDotgit"),
        (".github is fine", (T, entry(b"40000", b".github")), None),
        (".gitx is fine", (T, entry(b"40000", b".gitx")), None),
        (".", (T, entry(b"40000", b".")), "hasDot"),
        ("..", (T, entry(b"40000", b"..")), "hasDotdot"),
        ("a name with a slash", (T, entry(b"100644", b"a/b")), "fullPathname"),
        ("an empty name", (T, entry(b"100644", b"")), "badTree"),
        ("a null id", (T, entry(b"100644", b"a", bytes(20))), "nullSha1"),
        ("unsorted", (T, entry(b"100644", b"b") + entry(b"100644", b"a")), "treeNotSorted"),
        ("a directory sorts as name/", (T, entry(b"40000", b"a") + entry(b"100644", b"a.c")),
         "treeNotSorted"),
        ("100664 is only a warning", (T, entry(b"100664", b"a")), None),
        ("a bad mode is only a warning", (T, entry(b"100600", b"a")), None),
        ("a truncated tree", (T, entry(b"100644", b"a")[:-3]), "badTree"),
        ("a mode with a letter", (T, entry(b"10064x", b"a")), "badTree"),
        (".gitmodules as a symlink", (T, entry(b"120000", b".gitmodules")), "gitmodulesSymlink"),
        ("GITMOD~1 as a symlink", (T, entry(b"120000", b"GITMOD~1")), "gitmodulesSymlink"),
        (".gitattributes as a symlink is a warning", (T, entry(b"120000", b".gitattributes")),
         None),
        (".mailmap as a symlink is a warning", (T, entry(b"120000", b".mailmap")), None),
        ("a sound commit", (C, commit()), None),
        ("NUL in a commit message", (C, commit(message=b"hi\x00there\n")), "nulInCommit"),
        ("NUL in a commit header", (C, commit(b"author " + ident() + b"\ncommitter "
                                               + ident() + b"\nx \x00y\n")), "nulInHeader"),
        ("no blank line nor final LF", (C, commit()[:-1].replace(b"\n\n", b"\n")),
         "unterminatedHeader"),
        ("no tree", (C, b"author " + ident() + b"\ncommitter " + ident() + b"\n\nm\n"),
         "missingTree"),
        ("a short tree id", (C, b"tree abc\nauthor " + ident() + b"\ncommitter " + ident()
                             + b"\n\nm\n"), "badTreeSha1"),
        ("a bad parent", (C, commit(b"parent 123\nauthor " + ident() + b"\ncommitter "
                                    + ident() + b"\n")), "badParentSha1"),
        ("no author", (C, commit(b"committer " + ident() + b"\n")), "missingAuthor"),
        ("two authors", (C, commit(b"author " + ident() + b"\nauthor " + ident()
                                   + b"\ncommitter " + ident() + b"\n")), "multipleAuthors"),
        ("no committer", (C, commit(b"author " + ident() + b"\n")), "missingCommitter"),
        ("no email", (C, commit(b"author A U Thor 1 +0000\ncommitter " + ident() + b"\n")),
         "missingEmail"),
        ("a bad time zone", (C, commit(b"author A <a> 1 +000\ncommitter " + ident() + b"\n")),
         "badTimezone"),
        ("a zero-padded date", (C, commit(b"author A <a> 01 +0000\ncommitter " + ident()
                                          + b"\n")), "zeroPaddedDate"),
        ("a date past 2^63", (C, commit(b"author A <a> 9223372036854775808 +0000\ncommitter "
                                        + ident() + b"\n")), "badDateOverflow"),
        ("no name before the email", (C, commit(b"author <a> 1 +0000\ncommitter " + ident()
                                                + b"\n")), "missingNameBeforeEmail"),
        ("a sound tag", (G, tag(b"tag v1\ntagger " + ident() + b"\n\nmessage\n")), None),
        ("a NUL in a tag message is accepted", (G, tag(b"tag v1\ntagger " + ident()
                                                      + b"\n\nm\x00\n")), None),
        ("a tag of a bad type", (G, tag(b"tag v1\ntagger " + ident() + b"\n\nm\n", b"bob")),
         "badType"),
        ("a tag without tag line", (G, tag(b"tagger " + ident() + b"\n\nm\n")),
         "missingTagEntry"),
        ("a tag with a bad tagger", (G, tag(b"tag v1\ntagger T <t 1 +0000\n\nm\n")),
         "badEmail"),
        ("a bad tag name is a warning", (G, tag(b"tag a..b\ntagger " + ident() + b"\n\nm\n")),
         None),
        ("a tag Git cannot parse (under 64 bytes)", (G, tag(b"tag a\n", b"tag")), "badObject"),
    ]  # fmt: skip


FIXED = _fixed_cases()


def compare(directory: Path, objects: list[RawObject]) -> list[str]:
    """Check ``objects`` with git and with progreg; return the disagreements."""
    verdicts = git_verdicts(directory, objects)
    disagreements = []
    for kind, data in objects:
        oid = object_id(kind, data)
        mine = fsck.check_object(kind, data)
        if kind == OBJ_TREE:  # the fast path for plain trees says what the full reading says
            assert fsck.check_tree_entries(data) == mine, data
        theirs = verdicts[oid]
        problem = _disagreement(mine, theirs)
        if problem is not None:
            disagreements.append(f"{kind} {data!r}: {problem}")
    return disagreements


def _disagreement(mine: fsck.Verdict, theirs: GitVerdict) -> str | None:
    errors = {p.message_id for p in mine.errors}
    warnings = {p.message_id for p in mine.warnings}
    if mine.ok == theirs.refused:
        return f"git refused={theirs.refused} ({theirs}), progreg errors={errors}"
    if theirs.other and not theirs.errors:
        return None  # Git could not parse it: no message ids to compare, both refuse it
    if errors != theirs.errors or (not theirs.other and warnings != theirs.warnings):
        return f"git errors={theirs.errors} warnings={theirs.warnings}; progreg {errors} {warnings}"
    return None


def test_the_named_cases_agree_with_git(tmp_path: Path) -> None:
    objects = [raw for _what, raw, _expected in FIXED]
    assert compare(tmp_path, objects) == []
    for what, (kind, data), expected in FIXED:
        verdict = fsck.check_object(kind, data)
        assert [p.message_id for p in verdict.errors][:1] == ([expected] if expected else []), what
    print(f"\nfsck differential (named cases): {len(objects)} objects, 0 disagreements")


def test_gitattributes_blobs_are_judged_as_git_judges_them(tmp_path: Path) -> None:
    long_line = b"*.json " + b"x" * fsck.ATTR_MAX_LINE_LENGTH + b"\n"
    after_nul = b"*.json text\n\x00" + long_line
    blobs = [b"*.json text\n", long_line, after_nul, b"a" * (fsck.ATTR_MAX_LINE_LENGTH - 1)]
    objects: list[RawObject] = [(OBJ_BLOB, blob) for blob in blobs]
    for blob in blobs:
        tree = entry(b"100644", b".gitattributes", object_id(OBJ_BLOB, blob))
        objects.append((OBJ_TREE, tree))
        assert fsck.check_tree(tree).gitattributes == (object_id(OBJ_BLOB, blob),)
    verdicts = git_verdicts(tmp_path, objects)
    for blob in blobs:
        theirs = verdicts[object_id(OBJ_BLOB, blob)]
        mine = fsck.check_gitattributes(blob)
        assert {p.message_id for p in mine.errors} == theirs.errors, blob[:40]
    assert verdicts[object_id(OBJ_BLOB, long_line)].errors == {"gitattributesLineLength"}


def test_gitmodules_entries_are_listed_for_the_caller() -> None:
    oid = fresh_oid()
    for name in (b".gitmodules", b".GITMODULES ", b"GITMOD~1", b"gi7eba~9", b"a\\.gitmodules"):
        assert fsck.check_tree(entry(b"100644", name, oid)).gitmodules == (oid,), name


def test_a_remembered_tree_shape_never_hides_what_its_ids_say() -> None:
    # Plain trees are judged once per shape (modes and names); the ids are looked at anew.
    names = (b"a", b"b", b"c")
    sound = b"".join(entry(b"100644", name, fresh_oid()) for name in names)
    assert not fsck.check_tree(sound).errors
    null = b"".join(entry(b"100644", name, b"\x00" * 20) for name in names)
    assert [p.message_id for p in fsck.check_tree(null).errors] == ["nullSha1"]
    disordered = b"".join(entry(b"100644", name, fresh_oid()) for name in reversed(names))
    assert [p.message_id for p in fsck.check_tree(disordered).errors] == ["treeNotSorted"]
    assert not fsck.check_tree(sound).errors


# -- generated objects -------------------------------------------------------------

_NAMES = [
    b"a", b"b", b"a.c", b"a-", b"a0", b"foo", b"foo.bar", b"foo.bar.baz", b"programs",
    b".git", b".GIT", b".Git", b".git ", b".git.", b".git. .", b".git::$DATA", b".git:x",
    b".gitx", b"git~1", b"GIT~1", b"git~2", b"git~10", b".git\\x", b"a\\.git", b"a\\git~1",
    b".git/", b"a/b", b"/", b".", b"..", b"...", b".\\", b"\\",
    ".g\u200cit".encode(), ".\u200dgit".encode(), "\u200e.git".encode(), ".gi\u206ft".encode(),
    ".git\ufeff".encode(), ".gi\u200ct\u200c".encode(), ".g\u0131t".encode(), b".git\xff",
    b"\xe2\x80", b".g\xc3", b".g\xe2\x80\x8c", b"\xef\xbb\xbf.git",
    b".gitmodules", b".GITMODULES", b".gitmodules ", b".gitmodules:x", b"gitmod~1", b"GITMOD~4",
    b"gitmod~5", b"gi7eba~1", b"gi7eb~12", b"gi7eba~", b"a\\.gitmodules",
    b".gitattributes", b"gitatt~1", b"gi7d29~1", b".gitignore", b"gitign~1", b"gi250a~1",
    b".mailmap", b"mailma~1", b"maba30~2", ".mail\u200cmap".encode(),
    b" ", b"a b", b"-", b"~", b"~1", b"\x01", b"\x7f", b"\xff\xfe", "é".encode(),
]  # fmt: skip
_MODES = [
    b"100644", b"100755", b"40000", b"120000", b"160000", b"100664", b"100600", b"040000",
    b"0100644", b"00", b"0", b"644", b"1", b"7", b"777777", b"1100644", b"17777777", b"140000",
    b"20000", b"100000", b"1040000", b"10064x", b"", b"8", b"100644 ", b" 100644",
]  # fmt: skip


def _mostly(draw: st.DrawFn, good: bytes, others: list[bytes]) -> bytes:
    """``good`` seven times in eight, else one of ``others``."""
    return good if draw(st.integers(0, 7)) > 0 else draw(st.sampled_from(others))


@st.composite
def names(draw: st.DrawFn) -> bytes:
    """An entry name: a plain one, one that matters to Git, or bytes without NUL."""
    choice = draw(st.integers(0, 7))
    if choice < 4:
        return draw(st.text("abcxyz.-_0", min_size=1, max_size=6)).encode()
    if choice < 7:
        return draw(st.sampled_from(_NAMES))
    return draw(st.binary(min_size=0, max_size=12)).replace(b"\x00", b"")


@st.composite
def trees(draw: st.DrawFn) -> bytes:
    """A tree of adversarial entries, mostly sorted as Git sorts, sometimes mangled."""
    count = draw(st.integers(0, 6))
    entries = []
    for _ in range(count):
        mode = _mostly(draw, b"100644", _MODES)
        oid = bytes(20) if draw(st.integers(0, 30)) == 0 else fresh_oid()
        entries.append((mode, draw(names()), oid))
    if draw(st.integers(0, 3)) > 0:
        entries.sort(key=lambda e: e[1] + (b"/" if e[0] in (b"40000", b"040000") else b""))
    data = b"".join(entry(mode, name, oid) for mode, name, oid in entries)
    mangle = draw(st.integers(0, 19))
    if mangle == 0 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mangle == 1:
        data += draw(st.binary(max_size=30))
    return data


_DATES = [b"1700000000", b"0", b"1", b"01", b"00", b"-1", b"-0", b"+5", b" 5", b"\t5", b"",
          b"abc", b"9223372036854775807", b"9223372036854775808", b"18446744073709551615",
          b"18446744073709551616", b"99999999999999999999999", b"5x", b"\n5"]  # fmt: skip
_ZONES = [b"+0000", b"-0700", b"+000", b"0000", b"+00a0", b"+00000", b"", b"+0000 ", b"*0000",
          b"+\xd9\xa00000"]  # fmt: skip
_PERSONS = [b"A U Thor", b"", b"A", b"A<", b"A>", b"<", b" ", b"\xff"]
_EMAILS = [b"a@example.com", b"", b"a<b", b"a>b", b"x y", b"\xff"]


@st.composite
def idents(draw: st.DrawFn) -> bytes:
    """An identity line's value: name, email, date and zone, each perhaps malformed."""
    parts = [b"A U Thor", b" <", b"a@example.com", b"> ", b"1700000000", b" ", b"+0000"]
    choices = [_PERSONS, [b"<", b"  <", b" "], _EMAILS, [b">", b">  ", b"", b"> > "], _DATES,
               [b"", b"  "], _ZONES]  # fmt: skip
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):  # how many parts to break
        part = draw(st.integers(0, len(parts) - 1))
        parts[part] = draw(st.sampled_from(choices[part]))
    return b"".join(parts)


def _hex_line(draw: st.DrawFn, label: bytes) -> bytes:
    choice = draw(st.integers(0, 19))
    hexa = fresh_oid().hex().encode()
    if choice == 0:
        hexa = hexa.upper()
    elif choice == 1:
        hexa = hexa[: draw(st.integers(0, 39))]
    elif choice == 2:
        hexa = hexa + b"0"
    elif choice == 3:
        hexa = hexa[:10] + b"g" + hexa[11:]
    return label + b" " + hexa + b"\n"


@st.composite
def commits(draw: st.DrawFn) -> bytes:
    """A commit whose every header may be missing, doubled or malformed."""
    lines = []
    if draw(st.integers(0, 19)) > 0:
        lines.append(_hex_line(draw, b"tree"))
    for _ in range(draw(st.integers(0, 2))):
        lines.append(_hex_line(draw, b"parent"))
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 1, 1, 0, 2]))):
        lines.append(b"author " + draw(idents()) + b"\n")
    if draw(st.integers(0, 19)) > 0:
        lines.append(b"committer " + draw(idents()) + b"\n")
    if draw(st.integers(0, 3)) == 0:
        lines.append(draw(st.sampled_from([b"encoding UTF-8\n", b"gpgsig x\n y\n", b"x\x00y\n"])))
    if draw(st.integers(0, 9)) == 0:
        draw(st.randoms()).shuffle(lines)
    body = _mostly(draw, b"\nmessage\n", [b"\nm\x00n\n", b"", b"\n", b"\n\x00"])
    data = b"".join(lines) + body
    if draw(st.integers(0, 19)) == 0 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


@st.composite
def tags(draw: st.DrawFn) -> bytes:
    """A tag whose every header may be missing or malformed."""
    lines = []
    if draw(st.integers(0, 19)) > 0:
        lines.append(_hex_line(draw, b"object"))
    if draw(st.integers(0, 19)) > 0:
        kind = _mostly(draw, b"commit", [b"tree", b"blob", b"tag", b"", b"bob", b"x" * 25])
        lines.append(b"type " + kind + b"\n")
    if draw(st.integers(0, 19)) > 0:
        label = _mostly(
            draw, b"v1", [b"", b"a..b", b"a b", b".a", b"a.lock", b"a/b", b"@", b"x~", b"a/"]
        )
        lines.append(b"tag " + label + b"\n")
    if draw(st.integers(0, 4)) > 0:
        lines.append(b"tagger " + draw(idents()) + b"\n")
    if draw(st.integers(0, 5)) == 0:
        lines.append(b"extra header\n")
    body = _mostly(draw, b"\nmessage\n", [b"\nm\x00n\n", b"", b"\n"])
    data = b"".join(lines) + body
    if draw(st.integers(0, 19)) == 0 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


def batches(size: int) -> st.SearchStrategy[list[RawObject]]:
    """Lists of objects of one type (types never mix in a batch: see fsck_oracle)."""
    return st.one_of(
        st.lists(trees().map(lambda d: (OBJ_TREE, d)), min_size=size, max_size=size),
        st.lists(commits().map(lambda d: (OBJ_COMMIT, d)), min_size=size, max_size=size),
        st.lists(tags().map(lambda d: (OBJ_TAG, d)), min_size=size, max_size=size),
    )


def _run_generated(examples: int, size: int, derandomize: bool) -> tuple[int, int, int]:
    """Compare ``examples`` batches of ``size`` objects: (objects, refused by git, batches)."""
    checked, refused, runs = [0], [0], [0]

    @settings(
        max_examples=examples,
        derandomize=derandomize,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=batches(size))
    def run(batch: list[RawObject]) -> None:
        unique = list(dict.fromkeys(batch))
        with tempfile.TemporaryDirectory() as scratch:
            assert compare(Path(scratch), unique) == []
        checked[0] += len(unique)
        refused[0] += sum(1 for kind, data in unique if not fsck.check_object(kind, data).ok)
        runs[0] += 1

    run()
    return checked[0], refused[0], runs[0]


def test_generated_objects_agree_with_git() -> None:
    checked, refused, runs = _run_generated(examples=18, size=25, derandomize=True)
    print(
        f"\nfsck differential (default): {checked} generated objects in {runs} batches,"
        f" {refused} refused by both, 0 disagreements"
    )
    assert checked >= 300
    assert 0.2 * checked < refused < 0.8 * checked  # both verdicts are well represented


@pytest.mark.slow
def test_many_generated_objects_agree_with_git() -> None:
    checked, refused, runs = _run_generated(examples=100, size=50, derandomize=False)
    print(
        f"\nfsck differential (slow): {checked} generated objects in {runs} batches,"
        f" {refused} refused by both, 0 disagreements"
    )
    assert checked >= 4000
