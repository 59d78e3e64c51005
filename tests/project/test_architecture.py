"""The package's layout is its architecture (docs/architecture.md), and it holds.

The import contracts of ``[tool.importlinter]`` in pyproject.toml (layers,
and a command line that reaches Git only through the library), no import
cycle between any two modules, only the public entry points at the top of
the package, and one definition of each name of the on-disk layout.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

from progreg import ProgramStorage

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "progreg"

#: The modules directly under ``progreg/``: the public surface and the base layer.
TOP_LEVEL = {"__init__", "_version", "errors", "events", "hooks", "manager", "storage"}
#: The packages under ``progreg/``, one per layer (docs/architecture.md).
PACKAGES = {"cli", "core", "git", "integrations", "registry", "sharing"}
#: The modules directly under ``progreg/git/``: the repository itself.
GIT_MODULES = {
    "__init__",
    "durability",
    "errors",
    "failures",
    "locking",
    "maintenance",
    "permissions",
    "processes",
    "repository",
    "settings",
}
#: The parts of the Git plumbing, one package each (docs/architecture.md).
GIT_PACKAGES = {"bundle", "objects", "pack", "refs", "wire"}


def test_the_import_contracts_hold() -> None:
    # In a process of its own: import-linter configures logging, which the event tests use.
    code = (
        "import sys; from importlinter.cli import lint_imports;"
        " sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "4 kept" in done.stdout, done.stdout


def test_the_command_line_may_import_only_the_public_surface() -> None:
    # Every module and package of progreg but the command line's own is forbidden to
    # it (progreg.git by a contract of its own), so a new one is forbidden too; what
    # it may still import is the package itself and a short list of named exceptions.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(
        c for c in config["contracts"] if c["name"].startswith("The command line uses only")
    )
    forbidden = {name.removeprefix("progreg.") for name in contract["forbidden_modules"]}
    assert forbidden == (TOP_LEVEL | PACKAGES) - {"__init__", "cli", "git"}
    assert contract["source_modules"] == ["progreg.cli"]
    for ignored in contract["ignore_imports"]:
        importer, _, imported = ignored.partition(" -> ")
        assert "*" not in ignored and importer.startswith("progreg.cli."), ignored
        assert imported.split(".")[1] in {"core", "registry", "integrations"}, ignored


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_another_that_imports_it_back() -> None:
    graph = grimp.build_graph("progreg")
    assert _cycles(graph) == []
    # The check finds a cycle when there is one.
    graph.add_import(importer="progreg.core.ids", imported="progreg.registry.store")
    assert any("progreg.core.ids" in cycle for cycle in _cycles(graph))


def test_the_top_of_the_package_holds_only_the_entry_points_and_the_layers() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert modules == TOP_LEVEL
    assert packages == PACKAGES


def test_the_git_plumbing_is_split_into_its_parts() -> None:
    git = PACKAGE / "git"
    assert {path.stem for path in git.glob("*.py")} == GIT_MODULES
    assert {path.parent.name for path in git.glob("*/__init__.py")} == GIT_PACKAGES
    # One level of parts, and each part's __init__ is its docstring only: no re-exports.
    assert not list(git.glob("*/*/__init__.py"))
    for part in GIT_PACKAGES:
        body = ast.parse((git / part / "__init__.py").read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), part
        assert isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
    # Every module and part of the plumbing has its place in the plumbing's layers.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = next(c for c in config["contracts"] if c.get("containers") == ["progreg.git"])
    placed = {name.strip() for layer in contract["layers"] for name in layer.split("|")}
    assert placed == (GIT_MODULES - {"__init__"}) | GIT_PACKAGES


def test_each_name_of_the_layout_is_defined_once() -> None:
    names = {"MAIN", "MARKER", "PROGRAMS_DIR", "TAGS_PREFIX", "CHECKPOINTS_PREFIX"}
    definitions: dict[str, list[str]] = {name: [] for name in names}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id in names:
                        definitions[target.id].append(str(path.relative_to(PACKAGE)))
    assert definitions == {name: ["core/layout.py"] for name in names}


def test_the_push_transport_loads_only_for_a_push() -> None:
    # dulwich and urllib3 add about a third to what `progreg list` costs to start.
    code = (
        "import sys, progreg.storage, progreg.manager;"
        " print(sorted(set(sys.modules) & {'dulwich', 'urllib3'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_reading_commands_load_no_sharing_maintenance_or_manager(tmp_path: Path) -> None:
    """`progreg list` and `show` start without bundles, remotes, pushes, fsck, packing or
    the manager: they are imported by the calls that use them (start-up is a benchmark row)."""
    registry = tmp_path / "registry"
    ProgramStorage(registry).save_program({"instructions": "Be brief."})
    code = (
        "import sys\n"
        "from progreg.cli.main import main\n"
        "try:\n"
        f"    main(['--registry', {str(registry)!r}, 'list'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('progreg.sharing', 'progreg.registry.verify', 'progreg.git.maintenance',"
        " 'progreg.git.bundle.format', 'progreg.git.objects.fsck', 'progreg.manager')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "[]", done.stderr
