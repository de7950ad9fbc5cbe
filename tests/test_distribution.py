"""The packages this project imports are this checkout's, installed by this distribution alone.

torch-fidelity installs a top-level `tests` package too, so no test imports from `tests.`;
shared test data lives in tests/conftest.py (the `tiny` fixture).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "tuner", "search_spaces")


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_is_this_distributions_and_this_checkouts(package: str) -> None:
    owners = set(importlib.metadata.packages_distributions().get(package, []))
    assert owners == {"diffsearch"}, f"{package} is also installed by {owners - {'diffsearch'}}"
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().is_relative_to(ROOT), module.__file__


def test_no_test_imports_from_the_tests_package() -> None:
    for path in ROOT.glob("tests/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "tests", f"{path}:{node.lineno}"
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "tests" for a in node.names), path
