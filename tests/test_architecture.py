"""The package graph of docs/architecture.md, as a test.

Every module of every package (and of bench/) is read with ``ast`` and each import of one of
our packages is checked against :data:`ALLOWED`: a package may import itself and what its
row lists, nothing else. There is no exceptions list. Imports under ``if TYPE_CHECKING:``
count (a type is a dependency too), relative imports stay inside their package, and an
import of our packages inside a function body is refused outright: it is how a cycle hides.

The distribution squats a fixed set of top-level names (:data:`TOP_LEVEL`); a new top-level
package fails here until it is added to the graph, the docs and pyproject.toml on purpose.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Who may import whom (besides itself). docs/architecture.md draws this graph.
ALLOWED: dict[str, frozenset[str]] = {
    "storage": frozenset(),
    "skills": frozenset({"storage"}),
    "scheduler": frozenset({"skills", "storage"}),
    "bot": frozenset({"skills", "scheduler", "storage"}),
    "sandbox": frozenset({"skills", "storage"}),
    "evals": frozenset({"skills", "storage"}),
    "switchboard": frozenset({"bot", "skills", "scheduler", "storage", "sandbox", "evals"}),
}
#: The top-level names the ``switchboard`` distribution installs.
TOP_LEVEL = frozenset(ALLOWED)
#: bench/ (not packaged) assembles processes with the root's builders, like a deployment;
#: it brings its own fakes (``switchboard.testing``, the sandbox emulator), never tests/.
ALLOWED["bench"] = TOP_LEVEL
OURS = TOP_LEVEL | {"bench", "tests"}

Import = tuple[str, int, str, bool]  # (file, line, imported module, inside a function)


def _modules(package: str) -> Iterator[Path]:
    yield from sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path, root: Path = ROOT) -> Iterator[Import]:
    """Every import in ``path`` of one of our packages (``tests`` included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(root).as_posix()
    package = path.relative_to(root).parts[0]

    def visit(node: ast.AST, in_function: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] in OURS:
                        yield where, child.lineno, alias.name, in_function
            elif isinstance(child, ast.ImportFrom):
                module = child.module or ""
                if child.level:  # relative: inside its own package by construction
                    yield where, child.lineno, package, in_function
                elif module.split(".")[0] in OURS:
                    yield where, child.lineno, module, in_function
            elif isinstance(child, ast.Call) and (target := _dynamic_import(child)):
                yield where, child.lineno, target, True
            yield from visit(child, inner)

    yield from visit(tree, False)


def _dynamic_import(call: ast.Call) -> str | None:
    """The module of ``importlib.import_module("bot…")`` / ``__import__("bot…")`` (an
    import by string) when it is one of ours."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name not in {"import_module", "__import__"} or not call.args:
        return None
    first = call.args[0]
    if (
        isinstance(first, ast.Constant)
        and isinstance(first.value, str)
        and first.value.split(".")[0] in OURS
    ):
        return first.value
    return None


def _scan() -> list[Import]:
    return [found for package in ALLOWED for path in _modules(package) for found in _imports(path)]


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    """:func:`_scan` in a fresh interpreter (CPython 3.11's ``ast.parse`` can fail when
    another thread changes the recursion limit meanwhile; see tests/bot/test_manifest.py)."""
    script = "import json; from tests.test_architecture import _scan; print(json.dumps(_scan()))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [tuple(row) for row in json.loads(result.stdout)]  # type: ignore[misc]


def test_the_scan_sees_every_package_and_their_imports(imports: list[Import]) -> None:
    """The scan is not vacuous: every package is read and edges we know of are found."""
    files = {where.split("/")[0] for where, *_ in imports}
    assert files == set(ALLOWED)
    edges = {(where.split("/")[0], module.split(".")[0]) for where, _, module, _ in imports}
    assert {("bot", "skills"), ("skills", "storage"), ("switchboard", "bot")} <= edges


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_graph_allows(package: str, imports: list[Import]) -> None:
    allowed = ALLOWED[package] | {package}
    offenders = [
        f"{where}:{line} imports {module}"
        for where, line, module, _ in imports
        if where.split("/")[0] == package and module.split(".")[0] not in allowed
    ]
    assert not offenders, (
        f"{package} may import only {sorted(allowed)} (docs/architecture.md): {offenders}"
    )


def test_only_the_root_imports_the_root_and_only_the_root_imports_bot(
    imports: list[Import],
) -> None:
    """Feature packages never import ``switchboard`` or ``bot`` (issue #13): only the root
    (and the benchmarks, which assemble processes as it does) imports them."""
    above = {"switchboard", "bench"}  # bench assembles processes as the root does
    offenders = [
        f"{where}:{line} imports {module}"
        for where, line, module, _ in imports
        if where.split("/")[0] not in above
        and (
            module.split(".")[0] == "switchboard"
            or (module.split(".")[0] == "bot" and where.split("/")[0] != "bot")
        )
    ]
    assert not offenders, offenders


def test_no_import_of_our_packages_inside_a_function(imports: list[Import]) -> None:
    """A function-level import is how a cycle hides (it still runs, just later): every
    import of our packages sits at the top of its module, no exceptions."""
    offenders = [
        f"{where}:{line} imports {module} inside a function"
        for where, line, module, in_function in imports
        if in_function
    ]
    assert not offenders, offenders


def test_the_detector_sees_type_only_lazy_and_dynamic_imports(tmp_path: Path) -> None:
    """The detector itself: a type-only, a lazy and a dynamic import are all seen."""
    (tmp_path / "storage").mkdir()
    probe = tmp_path / "storage" / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "import importlib\n"
        "if TYPE_CHECKING:\n"
        "    from bot.app import Bot\n"
        "def f():\n"
        "    from skills.registry import Skill\n"
        "    return importlib.import_module('switchboard.cli')\n",
        encoding="utf-8",
    )
    found = list(_imports(probe, tmp_path))
    assert [(module, lazy) for _, _, module, lazy in found] == [
        ("bot.app", False),
        ("skills.registry", True),
        ("switchboard.cli", True),
    ]


def test_the_distribution_claims_exactly_the_fixed_top_level_names() -> None:
    """``pip install switchboard`` squats these names and no others (issue #13)."""
    claimed = {name for name, dists in packages_distributions().items() if "switchboard" in dists}
    assert claimed == set(TOP_LEVEL)


def test_pyproject_and_the_tree_agree_with_the_graph() -> None:
    """What gets packaged, type-checked and exists as a package is the graph's set, so a
    new top-level package fails here (and in the test above once installed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.removesuffix("*") for pattern in include} == set(TOP_LEVEL)
    assert set(project["tool"]["mypy"]["packages"]) == set(TOP_LEVEL)
    assert project["project"]["scripts"] == {"switchboard": "switchboard.cli:main"}
    on_disk = {
        path.parent.name for path in ROOT.glob("*/__init__.py") if path.parent.name not in {"tests"}
    }
    assert on_disk == set(TOP_LEVEL)


def test_every_logger_of_ours_is_under_the_switchboard_root() -> None:
    """``logging.getLogger("switchboard")`` configures all of our code at once: no module
    logs under a bare ``bot.``/``skills.``… name."""
    script = (
        "import importlib, json, logging, pkgutil\n"
        f"for top in {sorted(TOP_LEVEL)!r}:\n"
        "    package = importlib.import_module(top)\n"
        "    for info in pkgutil.walk_packages(package.__path__, top + '.'):\n"
        "        if '.migrations' not in info.name:\n"
        "            importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(logging.Logger.manager.loggerDict)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    names = json.loads(result.stdout)
    ours = [n for n in names if n.split(".")[0] in TOP_LEVEL]
    assert ours, "no logger of ours was created: the check would pass vacuously"
    strays = [n for n in ours if n != "switchboard" and not n.startswith("switchboard.")]
    assert not strays, f"loggers outside the switchboard. root: {strays}"
