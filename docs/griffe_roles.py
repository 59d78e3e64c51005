"""A griffe extension: render the reST of progreg's docstrings as Markdown.

progreg's docstrings are written for Sphinx-style readers: they cite code with
roles (``:class:`~progreg.ProgramStorage```, ``:func:`pull```) and introduce
literal blocks with a trailing ``::``. mkdocstrings renders docstrings as
Markdown, where both would show as they are written. Once the package is
loaded, this extension rewrites every docstring:

* a role becomes inline code, linked to the object's entry in the API
  reference when the name resolves (from the documented object's scope, as
  Sphinx does) to an object of the package. The link is an *optional*
  cross-reference: an object the reference does not render (a private
  helper) gives plain code, never a broken link or a warning. ``~`` shows the
  last component of the name only, as in Sphinx;
* a paragraph's trailing ``::`` before an indented block becomes ``:`` (a
  lone ``::`` line disappears), as Sphinx renders it;
* a definition list (a paragraph at the left margin directly followed by
  indented lines, its definition) becomes the ``Term`` / ``:   definition``
  syntax of Markdown's ``def_list`` extension (enabled in mkdocs.yml), where
  Markdown would otherwise show the definition as a code block.

Loaded by mkdocstrings (``extensions:`` in mkdocs.yml); excluded from the site.
"""

from __future__ import annotations

import html
import re
from functools import partial
from typing import Any

from griffe import (
    Alias,
    AliasResolutionError,
    CyclicAliasError,
    Extension,
    Module,
    NameResolutionError,
    Object,
)

#: ``:role:`target``` or ``:py:role:`~target```, and ``Title <target>`` targets.
ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|attr|mod|exc|data|obj|const):"
    r"`(?P<tilde>~?)(?P<text>[^`]+)`"
)
EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
LIST_ITEM = re.compile(r"^([-*+]|\d+[.)])\s")


class ReSTRoles(Extension):
    """Rewrite the roles, literal-block markers and definition lists of the package's docstrings."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of ``pkg`` and of everything it defines."""
        for obj in _objects(pkg):
            if obj.docstring is not None:
                value = _definition_lists(_literal_blocks(obj.docstring.value))
                obj.docstring.value = ROLE.sub(partial(_role, scope=obj, pkg=pkg), value)


def _objects(obj: Object) -> list[Object]:
    """``obj`` and the objects defined inside it (not the names it imports)."""
    found = [obj]
    for member in obj.members.values():
        if not isinstance(member, Alias):
            found.extend(_objects(member))
    return found


def _role(match: re.Match[str], *, scope: Object, pkg: Module) -> str:
    """A role as inline code, an optional link to its object when the name resolves."""
    text = match["text"].strip()
    explicit = EXPLICIT_TITLE.match(text)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        target = text.removeprefix(".")
        title = target.rsplit(".", 1)[-1] if match["tilde"] else target
    code = f"<code>{html.escape(title)}</code>"
    identifier = _resolve(target, scope, pkg)
    if identifier is None:
        return code
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def _resolve(target: str, scope: Object, pkg: Module) -> str | None:
    """The canonical path of the package's object named ``target`` in ``scope``, if any."""
    first, _, rest = target.partition(".")
    if first == pkg.name:
        path = target
    else:
        try:
            path = scope.resolve(first)
        except NameResolutionError:
            return None
        if rest:
            path = f"{path}.{rest}"
    if path == pkg.name:
        return pkg.canonical_path
    if not path.startswith(pkg.name + "."):
        return None
    try:
        return str(pkg[path.removeprefix(pkg.name + ".")].canonical_path)
    except (KeyError, AliasResolutionError, CyclicAliasError):
        # No such member, or an alias whose target is outside the loaded package.
        return None


def _literal_blocks(text: str) -> str:
    """Turn reST's ``paragraph::`` + indented block into Markdown's ``paragraph:`` + code."""
    lines = text.split("\n")
    for index, line in enumerate(lines[:-1]):
        if not line.rstrip().endswith("::") or line.rstrip().endswith(":::"):
            continue
        if lines[index + 1].strip():
            continue
        stripped = line.rstrip()
        lines[index] = "" if stripped.strip() == "::" else stripped[:-1]
    return "\n".join(lines)


def _indent(line: str) -> int:
    """How many spaces ``line`` starts with."""
    return len(line) - len(line.lstrip())


def _definition_lists(text: str) -> str:
    """Turn reST definition lists at the left margin into Markdown ``def_list`` ones."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        # A term: the lines of a left-margin paragraph, up to the first indented line.
        start = index
        while index < len(lines) and lines[index].strip() and _indent(lines[index]) == 0:
            index += 1
        term = lines[start:index]
        first_of_paragraph = start == 0 or not lines[start - 1].strip()
        is_term = (
            term
            and first_of_paragraph
            and index < len(lines)
            and lines[index].strip()
            and not LIST_ITEM.match(term[0])
            and not term[-1].rstrip().endswith(":")
        )
        if not is_term:
            out.extend(term)
            if index < len(lines) and index == start:
                out.append(lines[index])
                index += 1
            continue
        body_indent = _indent(lines[index])
        body: list[str] = []
        while index < len(lines) and (
            not lines[index].strip() or _indent(lines[index]) >= body_indent
        ):
            body.append(lines[index][body_indent:])
            index += 1
        trailing = 0
        while body and not body[-1].strip():
            body.pop()
            trailing += 1
        out.append(" ".join(line.strip() for line in term))
        out.extend(
            (":   " if number == 0 else "    ") + line if line.strip() else ""
            for number, line in enumerate(body)
        )
        out.extend([""] * trailing)
    return "\n".join(out)
