"""The documentation site builds with mkdocs, warnings as errors, and is complete.

``mkdocs build --strict`` (``mkdocs.yml``: Material theme, mkdocstrings for
the API reference, ``docs/mkdocs_hooks.py`` for the CLI reference) runs once
for the module; the tests then read the built HTML: the API reference
documents every name ``progreg`` exports, with its docstring, and the CLI
reference has a section for every command and subcommand of ``progreg``.
"""

from __future__ import annotations

import html
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

import progreg
from progreg.cli import cli
from progreg.storage import ProgramStorage

ROOT = Path(__file__).resolve().parents[2]
#: A generous bound: the build takes a few seconds.
BUILD_TIMEOUT = 120

_TAG = re.compile(r"<[^>]+>")
#: A reST role (``:class:`Name```) as it shows when rendered as Markdown text.
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):\s*\S")


def text_of(markup: str) -> str:
    """The visible text of HTML (or of a docstring), whitespace collapsed, code marks dropped."""
    return " ".join(html.unescape(_TAG.sub(" ", markup)).replace("`", "").split())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built from the repository's mkdocs.yml with --strict."""
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed (exit {result.returncode}):\n{result.stderr}"
    )
    return site_dir


def page(site: Path, name: str) -> str:
    """The HTML of the page built from ``docs/<name>.md``."""
    path = site / name / "index.html"
    assert path.is_file(), f"{name}.md was not built"
    return path.read_text(encoding="utf-8")


def reference_pages(site: Path) -> dict[str, str]:
    """The HTML of every page of the API reference, by file name."""
    pages = {
        path.parent.name: path.read_text(encoding="utf-8")
        for path in site.glob("reference/*/index.html")
    }
    assert pages, "the API reference has no pages"
    return pages


def test_api_reference_has_docstrings(site: Path) -> None:
    """save_program's docstring is on the storage page, under its own anchor."""
    storage = page(site, "reference/storage")
    assert 'id="progreg.storage.ProgramStorage.save_program"' in storage
    docstring = inspect.getdoc(ProgramStorage.save_program)
    assert docstring is not None
    for paragraph in docstring.split("\n\n"):
        assert text_of(paragraph) in text_of(storage)
    # The helpers the layers above the registry use are not part of the reference.
    for helper in ("document_for", "with_marker", "write_error", "reading", "rebuild", "git"):
        assert f'id="progreg.storage.ProgramStorage.{helper}"' not in storage, helper


def exported_objects() -> dict[str, str]:
    """``progreg``'s exported classes and functions: name -> the anchor of their entry."""
    found: dict[str, str] = {}
    for name in progreg.__all__:
        value = getattr(progreg, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            found[name] = f"{value.__module__}.{value.__qualname__}"
    return found


def test_api_reference_documents_every_export(site: Path) -> None:
    """Every class and function ``from progreg import ...`` gives has an entry."""
    everything = "\n".join(reference_pages(site).values())
    exported = exported_objects()
    assert {"ProgramStorage", "StorageManager", "ProgregError", "subscribe"} <= set(exported)
    missing = sorted(
        name for name, anchor in exported.items() if f'id="{anchor}"' not in everything
    )
    assert not missing, f"not in the API reference: {missing}"


def test_api_reference_renders_rest_markup(site: Path) -> None:
    """The docstrings' reST roles become code (and links), not literal ``:class:`` text."""
    for name, markup in reference_pages(site).items():
        text = text_of(markup)
        role = _ROLE.search(text)
        assert role is None, (
            f"reference/{name} shows a reST role: {text[role.start() - 60 : role.end() + 60]!r}"
        )
    analytics = page(site, "reference/analytics")
    # A role that names a documented object links to it.
    assert 'href="../storage/#progreg.core.models.HistorySummary"' in analytics
    # The module docstring's reST definition list is a definition list.
    assert "<dt>Order</dt>" in analytics


def command_paths(command: click.Command, path: str = "progreg") -> list[str]:
    """``progreg``, then every visible command and subcommand, as typed."""
    paths = [path]
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None, name
            if not sub.hidden:
                paths.extend(command_paths(sub, f"{path} {name}"))
    return paths


def test_cli_reference_has_every_command(site: Path) -> None:
    """Each command has a section holding its --help, usage line included."""
    cli_page = page(site, "cli")
    paths = command_paths(cli)
    assert {"progreg save", "progreg remote remove", "progreg hooks install"} <= set(paths)
    for path in paths:
        anchor = path.replace(" ", "-")
        assert f'id="{anchor}"' in cli_page, f"no section for `{path}`"
        assert f'href="#{anchor}"' in cli_page or path == "progreg", f"`{path}` not in the table"
        assert f"Usage: {path} [OPTIONS]" in html.unescape(cli_page), f"no usage of `{path}`"


def test_nav_links_to_sections(site: Path) -> None:
    """Nav entries to a section of a page (Getting started) link to the built page."""
    assert 'href="../#a-first-tour"' in page(site, "cli")
    assert 'id="a-first-tour"' in (site / "index.html").read_text(encoding="utf-8")


def test_site_holds_no_build_scripts(site: Path) -> None:
    """The hook and griffe extension under docs/ are not published."""
    assert not list(site.rglob("*.py"))


@pytest.mark.parametrize("name", ["manager", "manager-reference", "sharing", "review"])
def test_every_section_is_in_the_page_contents(site: Path, name: str) -> None:
    """Examples the tests skip render as code, so the page's contents list every section."""
    built = page(site, name)
    assert "```" not in built, f"{name}: a code fence was rendered as text"
    sections = set(re.findall(r'<h2 id="([^"]+)"', built))
    contents = built[built.index('class="md-nav md-nav--secondary"') :]
    listed = set(re.findall(r'href="#([^"]+)"', contents))
    assert len(sections) > 5 and sections <= listed, sorted(sections - listed)
