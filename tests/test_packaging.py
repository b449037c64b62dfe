"""Declared dependencies are the ones the package uses."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Declared but never imported by tokenmill itself, each for a reason.
NOT_IMPORTED = {
    "torchvision": "mosaicml-streaming imports it; pinned to the build that matches torch",
    "pytest-timeout": "a pytest plugin, configured in pyproject.toml",
    "pytest-xdist": "a pytest plugin, make test runs the suite on two workers with it",
    "build": "run as a command (python -m build): the tests build the wheel the way the bundle does",
}


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for group in project["optional-dependencies"].values() for s in group]
    return {normalized(re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0]) for spec in specs}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> set[str]:
    modules = set()
    files = [*(ROOT / "tokenmill").rglob("*.py"), *(ROOT / "notebooks").glob("*.py"), *(ROOT / "tests").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    owners = packages_distributions()
    return {normalized(dist) for module in modules for dist in owners.get(module, [])}


def test_every_dependency_is_imported_or_has_a_reason():
    unused = declared() - imported_distributions() - set(NOT_IMPORTED)
    assert unused == set(), f"declared in pyproject.toml but never imported: {sorted(unused)}"
    assert set(NOT_IMPORTED) <= declared()
