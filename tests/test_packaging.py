"""Declared dependencies are the ones the package uses, and the package uses only declared ones."""

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
# Code that ships (or runs on a cluster) against the declarations it may rely on: the package and
# the notebooks need the dependencies or a runtime extra; the tests may also use the dev extra.
RUNTIME = [*(ROOT / "tokenmill").rglob("*.py"), *(ROOT / "notebooks").glob("*.py")]
TESTS = list((ROOT / "tests").glob("*.py"))


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(specs) -> set[str]:
    return {normalized(re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0]) for spec in specs}


def declared(groups=None) -> set[str]:
    """Distributions in the dependencies and the extras ``groups`` (every extra when None)."""
    extras = project()["optional-dependencies"]
    chosen = extras if groups is None else {g: extras[g] for g in groups}
    return names(project()["dependencies"]) | {n for group in chosen.values() for n in names(group)}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(files) -> set[str]:
    """Top-level modules imported anywhere in ``files``, lazy imports inside functions included."""
    modules = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules


def imported_distributions(files) -> set[str]:
    """Installed third-party distributions that own the modules ``files`` import (not tokenmill)."""
    owners = packages_distributions()
    found = {normalized(dist) for module in imported_modules(files) for dist in owners.get(module, [])}
    return found - {normalized(project()["name"])}


def test_every_dependency_is_imported_or_has_a_reason():
    unused = declared() - imported_distributions(RUNTIME + TESTS) - set(NOT_IMPORTED)
    assert unused == set(), f"declared in pyproject.toml but never imported: {sorted(unused)}"
    assert set(NOT_IMPORTED) <= declared()


def undeclared(files, allowed: set[str]) -> dict[str, list[str]]:
    """Imported third-party modules none of whose distributions is in ``allowed`` -> their distributions.

    A module several distributions ship (mlflow: mlflow, mlflow-skinny, mlflow-tracing) needs one declared.
    """
    owners = packages_distributions()
    ours = normalized(project()["name"])
    found = {m: sorted({normalized(d) for d in owners.get(m, [])} - {ours}) for m in imported_modules(files)}
    return {m: dists for m, dists in found.items() if dists and not set(dists) & allowed}


def test_every_imported_distribution_is_declared():
    runtime_extras = [g for g in project()["optional-dependencies"] if g != "dev"]
    assert {"torch", "presidio-analyzer", "mlflow"} <= imported_distributions(RUNTIME)  # lazy imports seen too
    missing = undeclared(RUNTIME, declared(runtime_extras))
    assert missing == {}, f"imported by tokenmill/ or notebooks/, not in dependencies or a runtime extra: {missing}"
    missing = undeclared(TESTS, declared())
    assert missing == {}, f"imported by tests/ but not declared (the dev extra): {missing}"
