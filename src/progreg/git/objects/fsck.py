"""Git's object checks (``git fsck --strict``, Git 2.39), one raw object at a time.

:func:`check_object` judges a raw object (its type and body, without the
``"<type> <size>\\0"`` header) by the rules of Git's ``fsck.c`` as
``git fsck --strict``, ``index-pack --strict`` and a server with
``receive.fsckObjects`` apply them with Git's default severities:

* every message id Git classes as an *error* or a *fatal* error is an error
  (``badTree``, ``duplicateEntries``, ``treeNotSorted``, ``missingEmail``,
  ``badTimezone``, ``nulInHeader``, ``gitmodulesSymlink`` ...);
* ``--strict`` promotes Git's *warnings* to errors: ``emptyName``,
  ``fullPathname``, ``hasDot``, ``hasDotdot``, ``hasDotgit`` (``.git`` in any
  case, its NTFS forms ``git~1`` and ``.git . .``, ``.git::$DATA``, and its
  HFS+ forms with ignorable code points such as ``.g\\u200cit``), ``nullSha1``,
  ``zeroPaddedFilemode`` and ``nulInCommit``;
* Git's *infos* stay warnings (``badFilemode``, ``badTagName``,
  ``missingTaggerEntry``, ``gitignoreSymlink``, ``gitattributesSymlink``,
  ``mailmapSymlink``): they never refuse an object;
* ``extraHeaderEntry`` is ignored, as Git ignores it.

Git also refuses an object its parser cannot read even when no fsck message
applies (``object could not be parsed``: a tag shorter than 64 bytes); that
is reported as ``badObject``, an error. A verdict lists the problems Git
would print for the object, in Git's order (a commit or tag stops at its
first error, as Git's checks do).

Two checks of Git need more than one object: the blobs a tree names
``.gitmodules`` and ``.gitattributes`` are checked by their content.
:attr:`Verdict.gitmodules` and :attr:`Verdict.gitattributes` list those blob
ids; :func:`check_gitattributes` applies Git's rules to such a blob. The
code works on bytes with ``find``/slicing, no regular expression per byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from progreg.git.objects.encoding import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_TAG,
    OBJ_TREE,
    TYPE_NAMES,
    RawObject,
)

Severity = Literal["error", "warning"]

#: Git's message ids and their severity under ``--strict`` with default settings.
#: Ids Git ignores by default (``extraHeaderEntry``) are not reported at all.
STRICT_SEVERITY: dict[str, Severity] = {
    # fatal (always errors)
    "nulInHeader": "error",
    "unterminatedHeader": "error",
    # errors
    "badDate": "error",
    "badDateOverflow": "error",
    "badEmail": "error",
    "badName": "error",
    "badObjectSha1": "error",
    "badParentSha1": "error",
    "badTimezone": "error",
    "badTree": "error",
    "badTreeSha1": "error",
    "badType": "error",
    "duplicateEntries": "error",
    "missingAuthor": "error",
    "missingCommitter": "error",
    "missingEmail": "error",
    "missingNameBeforeEmail": "error",
    "missingObject": "error",
    "missingSpaceBeforeDate": "error",
    "missingSpaceBeforeEmail": "error",
    "missingTag": "error",
    "missingTagEntry": "error",
    "missingTree": "error",
    "missingType": "error",
    "missingTypeEntry": "error",
    "multipleAuthors": "error",
    "treeNotSorted": "error",
    "unknownType": "error",
    "zeroPaddedDate": "error",
    "gitmodulesMissing": "error",
    "gitmodulesBlob": "error",
    "gitmodulesLarge": "error",
    "gitmodulesName": "error",
    "gitmodulesSymlink": "error",
    "gitmodulesUrl": "error",
    "gitmodulesPath": "error",
    "gitmodulesUpdate": "error",
    "gitattributesMissing": "error",
    "gitattributesLarge": "error",
    "gitattributesLineLength": "error",
    "gitattributesBlob": "error",
    # warnings, promoted to errors by --strict
    "emptyName": "error",
    "fullPathname": "error",
    "hasDot": "error",
    "hasDotdot": "error",
    "hasDotgit": "error",
    "nullSha1": "error",
    "zeroPaddedFilemode": "error",
    "nulInCommit": "error",
    # infos: reported as warnings
    "badFilemode": "warning",
    "gitmodulesParse": "warning",
    "gitignoreSymlink": "warning",
    "gitattributesSymlink": "warning",
    "mailmapSymlink": "warning",
    "badTagName": "warning",
    "missingTaggerEntry": "warning",
    # not a fsck message: Git's object parser refuses the object
    "badObject": "error",
}

#: Git's limits for a ``.gitattributes`` blob (``attr.h``).
ATTR_MAX_FILE_SIZE = 100 * 1024 * 1024
ATTR_MAX_LINE_LENGTH = 2048

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000
_STANDARD_MODES = frozenset({0o100755, 0o100644, _S_IFLNK, _S_IFDIR, 0o160000})
_NULL_OID = bytes(20)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")
#: What C's ``isspace`` accepts (``strtoumax`` skips it).
_SPACE = frozenset(b" \t\n\v\f\r")
#: Code points HFS+ ignores in file names (``next_hfs_char`` in Git's utf8.c).
_HFS_IGNORED = frozenset(
    {0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E}
    | set(range(0x206A, 0x2070))
    | {0xFEFF}
)
_OBJECT_TYPES = frozenset({b"commit", b"tree", b"blob", b"tag"})


@dataclass(frozen=True)
class FsckProblem:
    """One message Git's fsck gives for an object."""

    message_id: str
    description: str
    #: The tree entry name that brought the problem (the first one), for tree problems.
    name: bytes | None = None

    @property
    def severity(self) -> Severity:
        """``error`` (the object is refused) or ``warning``, as ``git fsck --strict`` says."""
        return STRICT_SEVERITY[self.message_id]

    def __str__(self) -> str:
        shown = f" (entry {self.name.decode('utf-8', 'backslashreplace')!r})" if self.name else ""
        return f"{self.message_id}: {self.description}{shown}"


@dataclass(frozen=True)
class Verdict:
    """What ``git fsck --strict`` says of one object."""

    problems: tuple[FsckProblem, ...] = ()
    #: Blob ids a tree names ``.gitmodules`` (in any spelling Git recognises).
    gitmodules: tuple[bytes, ...] = ()
    #: Blob ids a tree names ``.gitattributes``.
    gitattributes: tuple[bytes, ...] = ()

    @property
    def errors(self) -> list[FsckProblem]:
        """The problems that make Git refuse the object."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[FsckProblem]:
        """The problems Git only warns about."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when ``git fsck --strict`` accepts the object."""
        return not self.errors


@dataclass
class _Found:
    """Problems gathered while checking one object."""

    problems: list[FsckProblem] = field(default_factory=list)

    def report(self, message_id: str, description: str, name: bytes | None = None) -> bool:
        """Record a problem; True when it is an error (Git's ``report`` returning non-zero)."""
        self.problems.append(FsckProblem(message_id, description, name))
        return STRICT_SEVERITY[message_id] == "error"


def check_object(kind: int, data: bytes) -> Verdict:
    """Judge the raw object ``data`` of type ``kind`` (``OBJ_*``) as ``git fsck --strict``."""
    if kind == OBJ_TREE:
        return check_tree(data)
    if kind == OBJ_COMMIT:
        return check_commit(data)
    if kind == OBJ_TAG:
        return check_tag(data)
    if kind == OBJ_BLOB:
        return Verdict()
    return Verdict((FsckProblem("unknownType", f"unknown object type {kind}"),))


# -- names -------------------------------------------------------------------------


def _next_hfs_char(name: bytes, pos: int) -> tuple[int, int]:
    """``(code point, next position)`` as Git's ``next_hfs_char``; ``(0, -1)`` when malformed."""
    while True:
        first = name[pos] if pos < len(name) else 0
        if first < 0x80:
            char, size = first, 1
        elif first & 0xE0 == 0xC0:
            second = name[pos + 1] if pos + 1 < len(name) else 0
            if second & 0xC0 != 0x80 or first & 0xFE == 0xC0:
                return 0, -1
            char, size = ((first & 0x1F) << 6) | (second & 0x3F), 2
        elif first & 0xF0 == 0xE0:
            second, third = (name[pos + 1 : pos + 3] + b"\x00\x00")[:2]
            if (
                second & 0xC0 != 0x80
                or third & 0xC0 != 0x80
                or (first == 0xE0 and second & 0xE0 == 0x80)
                or (first == 0xED and second & 0xE0 == 0xA0)
                or (first == 0xEF and second == 0xBF and third & 0xFE == 0xBE)
            ):
                return 0, -1
            char, size = ((first & 0x0F) << 12) | ((second & 0x3F) << 6) | (third & 0x3F), 3
        elif first & 0xF8 == 0xF0:
            second, third, fourth = (name[pos + 1 : pos + 4] + b"\x00\x00\x00")[:3]
            if (
                second & 0xC0 != 0x80
                or third & 0xC0 != 0x80
                or fourth & 0xC0 != 0x80
                or (first == 0xF0 and second & 0xF0 == 0x80)
                or (first == 0xF4 and second > 0x8F)
                or first > 0xF4
            ):
                return 0, -1
            char = (
                ((first & 0x07) << 18)
                | ((second & 0x3F) << 12)
                | ((third & 0x3F) << 6)
                | (fourth & 0x3F)
            )
            size = 4
        else:
            return 0, -1
        pos += size
        if char not in _HFS_IGNORED:
            return char, pos


def is_hfs_dot(name: bytes, needle: bytes) -> bool:
    """Whether HFS+ would read ``name`` as ``.<needle>`` (Git's ``is_hfs_dot_generic``)."""
    if not name or (name[0] != 0x2E and name[0] < 0x80):
        return False  # the usual case: the first character is not a dot nor ignorable
    char, pos = _next_hfs_char(name, 0)
    if char != 0x2E:
        return False
    for wanted in needle:
        if pos < 0:
            return False
        char, pos = _next_hfs_char(name, pos)
        if char > 127 or _lower(char) != wanted:
            return False
    if pos < 0:
        return False
    char, pos = _next_hfs_char(name, pos)
    return not (char and char != 0x2F)


def _lower(char: int) -> int:
    return char + 32 if 0x41 <= char <= 0x5A else char


def _at(name: bytes, index: int) -> int:
    return name[index] if index < len(name) else 0


def is_ntfs_dotgit(name: bytes) -> bool:
    """Whether NTFS would read ``name`` as ``.git`` (Git's ``is_ntfs_dotgit``)."""
    lowered = name[:5].lower()
    if lowered[:4] == b".git":
        rest = 4
    elif lowered == b"git~1":
        rest = 5
    else:
        return False
    for char in name[rest:]:
        if char in (0x2F, 0x5C, 0x3A):
            return True
        if char not in (0x2E, 0x20):
            return False
    return True


def _only_spaces_and_periods(name: bytes, index: int) -> bool:
    for char in name[index:]:
        if char == 0x3A:
            return True
        if char not in (0x20, 0x2E):
            return False
    return True


def is_ntfs_dot(name: bytes, needle: bytes, short_prefix: bytes) -> bool:
    """Whether NTFS would read ``name`` as ``.<needle>`` (Git's ``is_ntfs_dot_generic``)."""
    length = len(needle)
    if name[:1] == b"." and name[1 : 1 + length].lower() == needle:
        return _only_spaces_and_periods(name, length + 1)
    if name[:6].lower() == needle[:6] and _at(name, 6) == 0x7E and 0x31 <= _at(name, 7) <= 0x34:
        return _only_spaces_and_periods(name, 8)
    index, saw_tilde = 0, False
    while index < 8:
        char = _at(name, index)
        if char == 0:
            return False
        if saw_tilde:
            if not 0x30 <= char <= 0x39:
                return False
        elif char == 0x7E:
            index += 1
            if not 0x31 <= _at(name, index) <= 0x39:
                return False
            saw_tilde = True
        elif index >= 6 or char & 0x80 or _lower(char) != short_prefix[index]:
            return False
        index += 1
    return _only_spaces_and_periods(name, index)


def is_dotgit(name: bytes) -> bool:
    """Whether ``name`` is ``.git`` to HFS+ or NTFS (Git's ``hasDotgit``)."""
    return is_hfs_dot(name, b"git") or is_ntfs_dotgit(name)


def _is_dot_file(name: bytes, needle: bytes, short_prefix: bytes) -> bool:
    return is_hfs_dot(name, needle) or is_ntfs_dot(name, needle, short_prefix)


def is_gitmodules(name: bytes) -> bool:
    """Whether ``name`` is ``.gitmodules`` to HFS+ or NTFS."""
    return _is_dot_file(name, b"gitmodules", b"gi7eba")


# -- trees -------------------------------------------------------------------------

_TREE_UNORDERED = -1
_TREE_HAS_DUPS = -2


def _verify_ordered(
    mode1: int, name1: bytes, mode2: int, name2: bytes, candidates: list[bytes]
) -> int:
    """Git's ``verify_ordered``: 0, :data:`_TREE_UNORDERED` or :data:`_TREE_HAS_DUPS`."""
    length = min(len(name1), len(name2))
    head1, head2 = name1[:length], name2[:length]
    if head1 < head2:
        return 0
    if head1 > head2:
        return _TREE_UNORDERED
    c1, c2 = _at(name1, length), _at(name2, length)
    if not c1 and not c2:
        return _TREE_HAS_DUPS
    if not c1 and mode1 & _S_IFMT == _S_IFDIR:
        c1 = 0x2F
    if not c2 and mode2 & _S_IFMT == _S_IFDIR:
        c2 = 0x2F
    if not c1 and 0 < c2 < 0x2F:
        candidates.append(name1)
    elif c2 == 0x2F and 0 < c1 < 0x2F:
        while candidates:
            candidate = candidates.pop()
            if not name2.startswith(candidate):
                continue
            if len(name2) == len(candidate):
                return _TREE_HAS_DUPS
            if 0 < name2[len(candidate)] < 0x2F:
                candidates.append(candidate)
                break
    return 0 if c1 < c2 else _TREE_UNORDERED


def _decode_entry(data: bytes, pos: int) -> tuple[int, bytes, bytes, int, bool] | None:
    """Git's ``decode_tree_entry`` at ``pos``: ``(mode, name, id, end, zero padded)`` or None."""
    size = len(data) - pos
    if size < 23 or data[-21] != 0:
        return None
    space = data.find(b" ", pos)
    nul = data.find(b"\x00", pos)
    if space <= pos or (0 <= nul < space):
        return None
    mode = 0
    for char in data[pos:space]:
        if not 0x30 <= char <= 0x37:
            return None
        mode = ((mode << 3) + char - 0x30) & 0xFFFF  # Git keeps an unsigned short
    name = data[space + 1 : nul]
    if not name:
        return None
    return mode, name, data[nul + 1 : nul + 21], nul + 21, data[pos] == 0x30


#: A whole tree of entries of standard modes and names without ``/`` (one pass in C).
_PLAIN_TREE = re.compile(
    rb"(?:(?:100644|100755|40000|120000|160000) [^\x00/]+\x00.{20})*", re.DOTALL
)
_NULL_ENTRY = b"\x00" + _NULL_OID
#: The id after each name's NUL, in a tree :data:`_PLAIN_TREE` matched.
_ENTRY_IDS = re.compile(rb"\x00.{20}", re.DOTALL)
#: How many tree shapes :func:`_plainly_sound` remembers (a few MB at most).
SHAPES_REMEMBERED = 4096
_shapes: dict[bytes, bool] = {}


def _plainly_sound(data: bytes) -> bool:
    """True when the tree certainly draws no message at all from Git (the common case, fast).

    Standard modes only, ASCII names that start with no dot and hold no
    ``~``, ``\\`` or ``/`` (so no ``.git`` or dot-file spelling), no null id,
    names unique and strictly in Git's order (a directory sorting as
    ``name/``): then ``verify_ordered`` finds nothing either. Anything else
    takes the entry-by-entry path that mirrors ``fsck_tree``.

    Past the null ids and the layout, the verdict depends on the modes and
    names alone, which successive versions of a directory mostly share: it is
    remembered by the tree's *shape* (the tree without its ids).
    """
    if _NULL_ENTRY in data or _PLAIN_TREE.fullmatch(data) is None:
        return False  # perhaps a null id (or a name ending where an id starts with zeros)
    # The layout matched: each NUL that ends a name is followed by its 20-byte id.
    shape = _ENTRY_IDS.sub(b"\x00", data)
    verdict = _shapes.get(shape)
    if verdict is None:
        verdict = _plain_shape(shape)
        if len(_shapes) >= SHAPES_REMEMBERED:
            _shapes.clear()
        _shapes[shape] = verdict
    return verdict


def _plain_shape(shape: bytes) -> bool:
    """:func:`_plainly_sound` for a tree of standard modes without its ids (``mode name\\0``...)."""
    # A name starting with a dot follows its mode's space; " ." elsewhere only costs the
    # entry-by-entry path.
    if not shape.isascii() or b" ." in shape or b"~" in shape or b"\\" in shape:
        return False
    entries = [entry.partition(b" ") for entry in shape[:-1].split(b"\x00")]
    names = [name for _mode, _space, name in entries]
    keys = [name + b"/" if mode == b"40000" else name for mode, _space, name in entries]
    return len(set(names)) == len(names) == len(set(keys)) and sorted(keys) == keys


def check_tree(data: bytes) -> Verdict:
    """Judge a tree object (Git's ``fsck_tree``)."""
    if _plainly_sound(data):
        return Verdict()
    return check_tree_entries(data)


def check_tree_entries(data: bytes) -> Verdict:
    """:func:`check_tree` entry by entry, as ``fsck_tree`` reads a tree (no fast path)."""
    found = _Found()
    entry = _decode_entry(data, 0) if data else None
    if data and entry is None:
        found.report("badTree", "cannot be parsed as a tree")
        return Verdict(tuple(found.problems))
    flags: dict[str, bytes] = {}
    gitmodules: list[bytes] = []
    gitattributes: list[bytes] = []
    candidates: list[bytes] = []
    previous: tuple[int, bytes] | None = None
    while entry is not None:
        mode, name, oid, end, zero_padded = entry
        _entry_names(found, flags, name, oid, mode, zero_padded, gitmodules, gitattributes)
        if end < len(data):
            entry = _decode_entry(data, end)
            if entry is None:
                found.report("badTree", "cannot be parsed as a tree", name)
                break
        else:
            entry = None
        if mode not in _STANDARD_MODES:
            flags.setdefault("badFilemode", name)
        if previous is not None:
            order = _verify_ordered(previous[0], previous[1], mode, name, candidates)
            if order == _TREE_UNORDERED:
                flags.setdefault("treeNotSorted", name)
            elif order == _TREE_HAS_DUPS:
                flags.setdefault("duplicateEntries", name)
        previous = (mode, name)
    for message_id, description in _TREE_FLAGS:
        if message_id in flags:
            found.report(message_id, description, flags[message_id])
    return Verdict(tuple(found.problems), tuple(gitmodules), tuple(gitattributes))


def _entry_names(
    found: _Found,
    flags: dict[str, bytes],
    name: bytes,
    oid: bytes,
    mode: int,
    zero_padded: bool,
    gitmodules: list[bytes],
    gitattributes: list[bytes],
) -> None:
    """The checks ``fsck_tree`` makes of one entry before reading the next one."""
    is_link = mode & _S_IFMT == _S_IFLNK
    if oid == _NULL_OID:
        flags.setdefault("nullSha1", name)
    if b"/" in name:
        flags.setdefault("fullPathname", name)
    if name == b".":
        flags.setdefault("hasDot", name)
    elif name == b"..":
        flags.setdefault("hasDotdot", name)
    if is_dotgit(name):
        flags.setdefault("hasDotgit", name)
    if zero_padded:
        flags.setdefault("zeroPaddedFilemode", name)
    if _looks_special(name):
        _special_names(found, name, oid, is_link, gitmodules, gitattributes)
    backslash = name.find(b"\\")
    while backslash >= 0:  # Git checks what follows each backslash, to the end
        part = name[backslash + 1 :]
        backslash = name.find(b"\\", backslash + 1)
        if is_ntfs_dotgit(part):
            flags.setdefault("hasDotgit", name)
        if is_ntfs_dot(part, b"gitmodules", b"gi7eba"):
            if is_link:
                found.report("gitmodulesSymlink", ".gitmodules is a symbolic link", name)
            else:
                gitmodules.append(oid)


_TREE_FLAGS = (
    ("nullSha1", "contains entries pointing to null sha1"),
    ("fullPathname", "contains full pathnames"),
    ("emptyName", "contains empty pathname"),
    ("hasDot", "contains '.'"),
    ("hasDotdot", "contains '..'"),
    ("hasDotgit", "contains '.git'"),
    ("zeroPaddedFilemode", "contains zero-padded file modes"),
    ("badFilemode", "contains bad file modes"),
    ("duplicateEntries", "contains duplicate file entries"),
    ("treeNotSorted", "not properly sorted"),
)


def _looks_special(name: bytes) -> bool:
    """Whether ``name`` could be one of the dot files Git treats specially (a cheap test)."""
    first = name[0]
    return first == 0x2E or first >= 0x80 or b"~" in name[:8]


def _special_names(
    found: _Found,
    name: bytes,
    oid: bytes,
    is_link: bool,
    gitmodules: list[bytes],
    gitattributes: list[bytes],
) -> None:
    """``fsck_tree`` on ``.gitmodules``, ``.gitattributes``, ``.gitignore`` and ``.mailmap``."""
    if _is_dot_file(name, b"gitmodules", b"gi7eba"):
        if is_link:
            found.report("gitmodulesSymlink", ".gitmodules is a symbolic link", name)
        else:
            gitmodules.append(oid)
    if _is_dot_file(name, b"gitattributes", b"gi7d29"):
        if is_link:
            found.report("gitattributesSymlink", ".gitattributes is a symlink", name)
        else:
            gitattributes.append(oid)
    if is_link:
        if _is_dot_file(name, b"gitignore", b"gi250a"):
            found.report("gitignoreSymlink", ".gitignore is a symlink", name)
        if _is_dot_file(name, b"mailmap", b"maba30"):
            found.report("mailmapSymlink", ".mailmap is a symlink", name)


def check_gitattributes(data: bytes | None) -> Verdict:
    """Judge a blob a tree names ``.gitattributes`` (``None``: too large to read)."""
    found = _Found()
    if data is None or len(data) > ATTR_MAX_FILE_SIZE:
        found.report("gitattributesLarge", ".gitattributes too large to parse")
        return Verdict(tuple(found.problems))
    text = data.split(b"\x00", 1)[0]  # Git reads it as a C string
    if any(len(line) >= ATTR_MAX_LINE_LENGTH for line in text.split(b"\n")):
        found.report("gitattributesLineLength", ".gitattributes has too long lines to parse")
    return Verdict(tuple(found.problems))


# -- commits and tags --------------------------------------------------------------


def _verify_headers(data: bytes, found: _Found) -> bool:
    """Git's ``verify_headers``: True when the header is sound."""
    end = data.find(b"\n\n")
    header = data if end < 0 else data[:end]
    nul = header.find(b"\x00")
    if nul >= 0:
        found.report("nulInHeader", f"unterminated header: NUL at offset {nul}")
        return False
    if end >= 0 or data.endswith(b"\n"):
        return True
    found.report("unterminatedHeader", "unterminated header")
    return False


def _oid_line(data: bytes, pos: int) -> int:
    """Where the line after a 40-hex id at ``pos`` starts, or -1 (Git's ``parse_oid_hex`` + LF)."""
    hexa = data[pos : pos + 40]
    if len(hexa) != 40 or not _HEX.issuperset(hexa) or _at(data, pos + 40) != 0x0A:
        return -1
    return pos + 41


def _strtoumax(data: bytes, pos: int) -> tuple[int, int]:
    """C's ``strtoumax(data + pos, &end, 10)`` on NUL-terminated ``data``: (value, end)."""
    start = pos
    while _at(data, pos) in _SPACE:
        pos += 1
    negative = False
    if _at(data, pos) in (0x2B, 0x2D):
        negative = _at(data, pos) == 0x2D
        pos += 1
    digits = pos
    while _at(data, pos) in _DIGITS:
        pos += 1
    if pos == digits:
        return 0, start
    value = int(data[digits:pos])
    if value > 2**64 - 1:
        return 2**64 - 1, pos
    return ((-value) % 2**64 if negative else value), pos


def _cspn(data: bytes, pos: int) -> int:
    """Position of the first ``<``, ``>``, LF or NUL at or after ``pos`` (C's ``strcspn``)."""
    ends = [i for i in (data.find(c, pos) for c in (b"<", b">", b"\n", b"\x00")) if i >= 0]
    return min(ends) if ends else len(data)


def _check_ident(data: bytes, pos: int, found: _Found) -> tuple[bool, int]:
    """Git's ``fsck_ident`` on the line at ``pos``: (is an error, where the next line starts)."""
    newline = data.find(b"\n", pos)
    nul = data.find(b"\x00", pos)
    line_end = min(i for i in (newline, nul, len(data)) if i >= 0)
    after = line_end + 1 if line_end == newline else line_end
    if _at(data, pos) == 0x3C:
        return found.report(
            "missingNameBeforeEmail",
            "invalid author/committer line - missing space before email",
        ), after
    pos = _cspn(data, pos)
    if _at(data, pos) == 0x3E:
        return found.report("badName", "invalid author/committer line - bad name"), after
    if _at(data, pos) != 0x3C:
        return found.report("missingEmail", "invalid author/committer line - missing email"), after
    if data[pos - 1] != 0x20:
        return found.report(
            "missingSpaceBeforeEmail",
            "invalid author/committer line - missing space before email",
        ), after
    pos = _cspn(data, pos + 1)
    if _at(data, pos) != 0x3E:
        return found.report("badEmail", "invalid author/committer line - bad email"), after
    pos += 1
    if _at(data, pos) != 0x20:
        return found.report(
            "missingSpaceBeforeDate", "invalid author/committer line - missing space before date"
        ), after
    pos += 1
    if _at(data, pos) == 0x30 and _at(data, pos + 1) != 0x20:
        return found.report(
            "zeroPaddedDate", "invalid author/committer line - zero-padded date"
        ), after
    value, end = _strtoumax(data, pos)
    if value >= 2**63:
        return found.report(
            "badDateOverflow", "invalid author/committer line - date causes integer overflow"
        ), after
    if end == pos or _at(data, end) != 0x20:
        return found.report("badDate", "invalid author/committer line - bad date"), after
    pos = end + 1
    if (
        _at(data, pos) not in (0x2B, 0x2D)
        or not all(_at(data, pos + i) in _DIGITS for i in range(1, 5))
        or _at(data, pos + 5) != 0x0A
    ):
        return found.report("badTimezone", "invalid author/committer line - bad time zone"), after
    return False, after


def check_commit(data: bytes) -> Verdict:
    """Judge a commit object (Git's ``fsck_commit``)."""
    found = _Found()
    _commit_problems(data, found)
    return Verdict(tuple(found.problems))


def _commit_problems(data: bytes, found: _Found) -> None:
    if not _verify_headers(data, found):
        return
    if not data.startswith(b"tree "):
        found.report("missingTree", "invalid format - expected 'tree' line")
        return
    pos = _oid_line(data, 5)
    if pos < 0:
        found.report("badTreeSha1", "invalid 'tree' line format - bad sha1")
        return
    while data.startswith(b"parent ", pos):
        pos = _oid_line(data, pos + 7)
        if pos < 0:
            found.report("badParentSha1", "invalid 'parent' line format - bad sha1")
            return
    authors = 0
    while data.startswith(b"author ", pos):
        authors += 1
        error, pos = _check_ident(data, pos + 7, found)
        if error:
            return
    if authors == 0:
        found.report("missingAuthor", "invalid format - expected 'author' line")
        return
    if authors > 1:
        found.report("multipleAuthors", "invalid format - multiple 'author' lines")
        return
    if not data.startswith(b"committer ", pos):
        found.report("missingCommitter", "invalid format - expected 'committer' line")
        return
    error, pos = _check_ident(data, pos + 10, found)
    if error:
        return
    if b"\x00" in data:
        found.report("nulInCommit", "NUL byte in the commit object body")


def check_tag(data: bytes) -> Verdict:
    """Judge a tag object (Git's ``fsck_tag`` and ``parse_tag_buffer``)."""
    found = _Found()
    _tag_problems(data, found)
    if found.problems and any(p.severity == "error" for p in found.problems):
        return Verdict(tuple(found.problems))
    if len(data) < 64:  # parse_tag_buffer refuses it before any fsck message
        found.report("badObject", "Git cannot parse a tag object shorter than 64 bytes")
    return Verdict(tuple(found.problems))


def _tag_problems(data: bytes, found: _Found) -> None:
    if not _verify_headers(data, found):
        return
    if not data.startswith(b"object "):
        found.report("missingObject", "invalid format - expected 'object' line")
        return
    pos = _oid_line(data, 7)
    if pos < 0:
        found.report("badObjectSha1", "invalid 'object' line format - bad sha1")
        return
    if not data.startswith(b"type ", pos):
        found.report("missingTypeEntry", "invalid format - expected 'type' line")
        return
    eol = _line_end(data, pos + 5)
    if eol < 0:
        found.report("missingType", "invalid format - unexpected end after 'type' line")
        return
    if data[pos + 5 : eol] not in _OBJECT_TYPES:
        found.report("badType", "invalid 'type' value")
        return
    pos = eol + 1
    if not data.startswith(b"tag ", pos):
        found.report("missingTagEntry", "invalid format - expected 'tag' line")
        return
    eol = _line_end(data, pos + 4)
    if eol < 0:
        found.report("missingTag", "invalid format - unexpected end after 'type' line")
        return
    tag_name = data[pos + 4 : eol]
    if not is_valid_refname(b"refs/tags/" + tag_name):
        found.report("badTagName", f"invalid 'tag' name: {tag_name.decode('utf-8', 'replace')}")
    pos = eol + 1
    if data.startswith(b"tagger ", pos):
        _check_ident(data, pos + 7, found)
    else:
        found.report("missingTaggerEntry", "invalid format - expected 'tagger' line")
    # What follows the tagger (extraHeaderEntry) is ignored by default, as in Git.


def _line_end(data: bytes, pos: int) -> int:
    """The next LF at or after ``pos`` before any NUL (C's ``strchr`` on a C string), or -1."""
    newline = data.find(b"\n", pos)
    nul = data.find(b"\x00", pos)
    if newline < 0 or (0 <= nul < newline):
        return -1
    return newline


#: Bytes Git never allows in a ref name (``refname_disposition`` 4), with ``*`` (5).
_REFNAME_FORBIDDEN = frozenset(range(0x20)) | frozenset(b"\x7f ~^:?[\\*")


def is_valid_refname(name: bytes) -> bool:
    """Whether ``name`` passes Git's ``check_refname_format(name, 0)``."""
    if name == b"@" or not name:
        return False
    if b".." in name or b"@{" in name or _REFNAME_FORBIDDEN.intersection(name):
        return False
    if name.endswith(b"/") or name.endswith(b"."):
        return False
    components = name.split(b"/")
    for component in components:
        if not component or component.startswith(b".") or component.endswith(b".lock"):
            return False
    return len(components) >= 2


def describe(kind: int, oid: bytes, problem: FsckProblem) -> str:
    """A line naming the object, Git's message id and the entry, as an error message shows it."""
    return f"{TYPE_NAMES.get(kind, b'object').decode()} {oid.hex()}: {problem}"


class IncomingObjects:
    """Judges objects as they arrive, then the blobs their trees name specially.

    :meth:`refusal` checks one object (as ``index-pack --strict`` does);
    :meth:`finish` then checks the blobs that trees named ``.gitattributes``
    (Git's ``fsck_finish``) and refuses any named ``.gitmodules``: Git parses
    those as configuration (submodule names, URLs, paths, update commands),
    which this module does not; a registry holds no submodules, so progreg
    refuses them rather than judge them loosely.
    """

    def __init__(self) -> None:
        #: How many objects :meth:`refusal` checked.
        self.checked = 0
        self._gitattributes: dict[bytes, bytes] = {}
        self._gitmodules: dict[bytes, bytes] = {}

    def refusal(self, oid: bytes, kind: int, data: bytes) -> str | None:
        """Why ``git fsck --strict`` refuses this object (object, message id, entry), or None."""
        self.checked += 1
        if kind == OBJ_BLOB:
            return None
        verdict = check_object(kind, data)
        for blob in verdict.gitattributes:
            self._gitattributes.setdefault(blob, oid)
        for blob in verdict.gitmodules:
            self._gitmodules.setdefault(blob, oid)
        errors = verdict.errors
        if not errors:
            return None
        more = f" (and {', '.join(p.message_id for p in errors[1:])})" if len(errors) > 1 else ""
        return describe(kind, oid, errors[0]) + more

    def finish(self, read: Callable[[bytes], RawObject | None]) -> str | None:
        """Check the blobs trees named ``.gitattributes`` or ``.gitmodules``; the first refusal.

        ``read(oid)`` gives an object or ``None`` when it is not there (a
        missing object is the completeness check's business, not this one's).
        """
        if self._gitmodules:
            blob, tree = next(iter(self._gitmodules.items()))
            return (
                f"tree {tree.hex()} names a .gitmodules file (blob {blob.hex()}): Git checks"
                " its submodule settings (gitmodulesName, gitmodulesUrl...), which progreg"
                " does not parse, and a registry holds no submodules"
            )
        for blob, tree in self._gitattributes.items():
            found = read(blob)
            if found is None:
                continue
            kind, data = found
            where = f" (named .gitattributes in tree {tree.hex()})"
            if kind != OBJ_BLOB:
                problem = FsckProblem("gitattributesBlob", "non-blob found at .gitattributes")
                return describe(kind, blob, problem) + where
            errors = check_gitattributes(data).errors
            if errors:
                return describe(OBJ_BLOB, blob, errors[0]) + where
        return None


__all__ = [
    "ATTR_MAX_FILE_SIZE",
    "ATTR_MAX_LINE_LENGTH",
    "STRICT_SEVERITY",
    "FsckProblem",
    "IncomingObjects",
    "Verdict",
    "check_commit",
    "check_gitattributes",
    "check_object",
    "check_tag",
    "check_tree",
    "describe",
    "is_dotgit",
    "is_gitmodules",
    "is_hfs_dot",
    "is_ntfs_dot",
    "is_ntfs_dotgit",
    "is_valid_refname",
]
