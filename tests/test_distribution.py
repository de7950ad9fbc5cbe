"""The packages this project imports are this checkout's, installed by this distribution alone,
and they show their dependencies: imports at the top of a module, save a few that keep a heavy
dependency off a light path, each saying why (STYLE.md 13).

torch-fidelity installs a top-level `tests` package too, so no test imports from `tests.`;
shared test data lives in tests/conftest.py (the `tiny` fixture).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import io
import os
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "tuner", "search_spaces")
MAX_LOCAL_IMPORTS = 20  # issue 24: function-local imports in the runtime packages
HEAVY = ("ray", "mlflow", "optuna")  # what the command line imports only once a search starts
# Print which of HEAVY the command line imported after it answered the arguments given.
IMPORTED = f"""
import sys
from tuner.search.cli import main
try:
    main(sys.argv[1:])
except SystemExit:  # --help
    pass
print(sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r})))
"""


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


def local_imports(source: str) -> list[tuple[int, bool]]:
    """(line, explained) of each import inside a function: explained when a comment is on one
    of its lines or on a line of its own just above it."""
    comments = {}  # line -> whether the comment is the whole line
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = not tok.line[: tok.start[1]].strip()
    found = set()
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    own = any(n in comments for n in range(node.lineno, node.end_lineno + 1))
                    found.add((node.lineno, own or comments.get(node.lineno - 1, False)))
    return sorted(found)


def test_local_imports_are_counted_with_their_reasons() -> None:
    source = """
import os
if os.name:
    import sys
def f():
    import json  # (why)
    x = 1  # not about the import below
    import csv
    def g():
        # why, for the import below
        from math import (
            pi,
        )
        import re
"""
    assert local_imports(source) == [(6, True), (8, False), (11, True), (14, False)]


def test_few_function_local_imports_each_with_its_reason() -> None:
    found = {
        f"{path.relative_to(ROOT)}:{line}": explained
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, explained in local_imports(path.read_text())
    }
    assert len(found) <= MAX_LOCAL_IMPORTS, sorted(found)
    assert [where for where, explained in found.items() if not explained] == []


@pytest.mark.parametrize("args", [["--help"], ["--bogus"], ["--dry-run"]], ids=" ".join)
def test_help_a_usage_error_and_a_local_dry_run_import_no_ray_mlflow_or_optuna(
    args: list[str], tmp_path: Path
) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", IMPORTED, *args]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []
