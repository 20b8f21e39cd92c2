"""The import layering the README promises: each package imports only the packages below it.

    core  <  weights  <  models  <  preprocess  <  submission  <  train  <  bench

``bench`` (the benchmarks) sits on top: it may import anything, and nothing shipped imports it.

Read from the source with ``ast`` (every ``import``, at module level or inside a function), so
a lazy import cannot hide an arrow that runs back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "weights", "models", "preprocess", "submission", "train", "bench")


def imported_packages(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports(package: str, source: str) -> list[str]:
    """The imports in a module of ``package`` that reach a layer above it."""
    level = LAYERS.index(package)
    return [
        f"line {line}: imports {target}"
        for line, target in imported_packages(source)
        if target in LAYERS and LAYERS.index(target) > level
    ]


def test_the_checker_sees_module_level_and_lazy_imports():
    source = (
        "import numpy\n"
        "from core.preprocess_data import Sample\n"
        "from models.registry import load_model\n"
        "def late():\n"
        "    import submission.cli\n"
        "    from train import demo\n"
    )
    assert upward_imports("models", source) == ["line 5: imports submission", "line 6: imports train"]
    assert upward_imports("train", source) == []
    assert upward_imports("core", source) == [
        "line 3: imports models",
        "line 5: imports submission",
        "line 6: imports train",
    ]


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_a_layer_above_it(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"{package}/ has no modules"
    problems = {
        str(path.relative_to(ROOT)): found
        for path in modules
        if (found := upward_imports(package, path.read_text(encoding="utf-8")))
    }
    assert problems == {}, f"{package}/ imports a higher layer: {problems}"


def test_every_package_is_in_the_layering():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(LAYERS), f"top-level packages not in LAYERS: {packages ^ set(LAYERS)}"


def test_nothing_below_the_benchmarks_imports_them():
    """The benchmarks left the shipped packages: an import of ``bench`` from any of them (or from
    ``train``) is an arrow back up."""
    assert upward_imports("submission", "from bench.pipeline import tiny_detector\n") == [
        "line 1: imports bench"
    ]
    assert upward_imports("bench", "import train.cli\nfrom submission.scoring import DetectorScorer\n") == []
    shipped = ("core", "weights", "models", "preprocess", "submission")
    leftovers = [p.relative_to(ROOT) for pkg in shipped for p in (ROOT / pkg).glob("*bench*.py")]
    assert leftovers == [], f"benchmarks inside shipped packages: {leftovers}"
