"""mkdocs hooks of the progreg documentation site (see ``hooks:`` in mkdocs.yml).

**The CLI reference.** :func:`on_page_markdown` replaces the line
``<!-- progreg-cli-reference -->`` of ``cli.md`` with the help of ``progreg``
and of every subcommand, rendered by click itself (exactly what ``progreg ...
--help`` prints on an 80-column terminal), so the page cannot drift from the
code: a command added to :data:`progreg.cli.cli` appears on its own.

**Nav entries to a section.** Nav entries may point at a section of a page,
``index.md#a-first-tour``. mkdocs itself only links whole pages from the nav:
it takes ``page.md#anchor`` for a missing file and warns (an error with
``strict: true``). So :func:`on_config` marks such entries as external links,
which mkdocs accepts as they are, :func:`on_nav` turns them back into links to
the section of the built page, and :func:`on_page_content` checks that the
section exists: a missing page or heading is a warning, so a renamed heading
fails the build.

**Examples the tests do not run.** A block opened with ```` ```python skip ````
is shown but not executed by ``tests/project/test_docs.py``. ``skip`` is for the
tests only: Python-Markdown's fences take no such word, and would show the
block as text (its ``# ...`` comments as headings). :func:`on_page_markdown`
drops it before the page is rendered, and so the word ``output`` of a
```` ```text output ```` block (what the example above it prints, which the
tests check).

This file is excluded from the site (``exclude_docs`` in mkdocs.yml).
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import click
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import Files
from mkdocs.structure.nav import Link, Navigation, Section
from mkdocs.structure.pages import Page

from progreg.cli import cli

log = logging.getLogger("mkdocs.hooks.progreg")

#: The opening fence of an example the tests show but do not run, and what the site renders.
SKIPPED_FENCE = re.compile(r"^(\s*```(?:python|text)) (?:skip|output)$", re.MULTILINE)
#: The line of ``cli.md`` that the CLI reference replaces.
CLI_MARKER = "<!-- progreg-cli-reference -->"
#: The width of the terminal the help is rendered for.
CLI_WIDTH = 80

#: Marks a nav entry ``page.md#anchor`` between on_config and on_nav.
SCHEME = "progreg-section:"

#: ``(page source path, anchor)`` of every section the nav links to.
_sections: set[tuple[str, str]] = set()


def _mark(item: Any) -> Any:
    """The nav config ``item`` with every ``page.md#anchor`` entry marked."""
    if isinstance(item, list):
        return [_mark(child) for child in item]
    if isinstance(item, dict):
        return {title: _mark(value) for title, value in item.items()}
    if isinstance(item, str) and ".md#" in item and ":" not in item:
        return SCHEME + item
    return item


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Mark the nav entries that point at a section of a page."""
    _sections.clear()
    config.nav = _mark(config.nav)
    return config


def _links(items: list[Any]) -> list[Link]:
    found: list[Link] = []
    for item in items:
        if isinstance(item, Section):
            found.extend(_links(item.children))
        elif isinstance(item, Link):
            found.append(item)
    return found


def on_nav(nav: Navigation, config: MkDocsConfig, files: Files) -> Navigation:
    """Point each marked nav entry at its section of the built page."""
    for link in _links(nav.items):
        if not link.url.startswith(SCHEME):
            continue
        path, _, anchor = link.url.removeprefix(SCHEME).partition("#")
        file = files.get_file_from_path(path)
        if file is None or not file.is_documentation_page():
            log.warning(
                "nav entry %r points at %r, which is not a page of the docs", link.title, path
            )
            continue
        _sections.add((file.src_uri, anchor))
        # Relative to the site's root; mkdocs makes it relative to each page.
        link.url = f"{file.url or './'}#{anchor}"
    return nav


def on_page_content(output: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Check that the sections the nav links to exist on this page."""
    for src_uri, anchor in sorted(_sections):
        if src_uri == page.file.src_uri and f'id="{anchor}"' not in output:
            log.warning(
                "the nav links to %s#%s, but that page has no such heading", src_uri, anchor
            )
    return output


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Drop the tests' ``skip`` from fences; put the CLI reference into ``cli.md``."""
    markdown = SKIPPED_FENCE.sub(r"\1", markdown)
    if page.file.src_uri != "cli.md":
        return markdown
    if CLI_MARKER not in markdown:
        log.warning("cli.md has no %s line: the CLI reference is missing", CLI_MARKER)
        return markdown
    return markdown.replace(CLI_MARKER, cli_reference(), 1)


def cli_reference() -> str:
    """Markdown: a table of every command, then each command's ``--help``."""
    settings = {**cli.context_settings, "terminal_width": CLI_WIDTH, "color": False}
    root = click.Context(cli, info_name="progreg", **settings)
    contexts = _contexts(root)
    rows = [
        f"| [`{ctx.command_path}`](#{anchor(ctx)}) | {_cell(ctx.command.get_short_help_str(200))} |"
        for ctx in contexts[1:]
    ]
    parts = ["| Command | What it does |", "|---|---|", *rows, ""]
    for ctx in contexts:
        level = "###" if ctx.parent is None or ctx.parent.parent is None else "####"
        text = ctx.command.get_help(ctx)
        fence = "`" * max(3, _longest_backtick_run(text) + 1)
        parts += [
            f"{level} {ctx.command_path} {{ #{anchor(ctx)} }}",
            "",
            f"{fence}text",
            text,
            fence,
            "",
        ]
    return "\n".join(parts)


def anchor(ctx: click.Context) -> str:
    """The id of a command's heading: ``progreg-checkpoint-create``."""
    return ctx.command_path.replace(" ", "-")


def _contexts(ctx: click.Context) -> list[click.Context]:
    """``ctx`` and a context for each visible subcommand under it, depth first, by name."""
    found = [ctx]
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                child = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
                found.extend(_contexts(child))
    return found


def _cell(text: str) -> str:
    """``text`` as literal text in a Markdown table cell."""
    for char in "\\`*_[]|":
        text = text.replace(char, "\\" + char)
    return html.escape(text, quote=False)


def _longest_backtick_run(text: str) -> int:
    longest = current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        longest = max(longest, current)
    return longest
