"""tuner/versions.py: Ray and MLflow within the versions whose internals the search uses, the
same bounds as pyproject.toml's, and another installed version refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tuner import versions
from tuner.search.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", list(versions.ALLOWED))
def test_pyproject_allows_exactly_the_guarded_range(package: str) -> None:
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11 and later)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pattern = rf"{package}(\[[a-z,]+\])?(?P<bounds>[<>=!~].*)"
    found = [m["bounds"] for d in project["dependencies"] if (m := re.fullmatch(pattern, d))]
    assert found == [versions.specifier(package)]


@pytest.mark.parametrize(
    ("package", "version", "allowed"),
    [
        ("ray", "2.60.0", True), ("ray", "2.50.0", True), ("ray", "2.61.0", False),
        ("ray", "2.61.0rc1", False), ("ray", "2.49.9", False), ("ray", "3.0.0", False),
        ("mlflow", "3.17.2", True), ("mlflow", "3.18.0", False), ("mlflow", "3.1.0", False),
    ],
)  # fmt: skip
def test_a_version_outside_the_range_is_one_line_naming_the_range(
    package: str, version: str, allowed: bool
) -> None:
    problem = versions.version_problem(package, version)
    assert (problem is None) == allowed
    if problem is not None:
        assert "\n" not in problem and f"{package} {version} is outside" in problem
        assert f"install {package}{versions.specifier(package)}" in problem


def test_the_installed_versions_are_allowed() -> None:
    assert [versions.version_problem(p) for p in versions.ALLOWED] == [None, None]


def test_a_search_on_another_ray_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = versions.importlib.metadata.version
    monkeypatch.setattr(
        versions.importlib.metadata,
        "version",
        lambda name: "2.70.0" if name == "ray" else real(name),
    )
    monkeypatch.chdir(tmp_path)
    assert main(["--smoke-test", "--dry-run"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ray 2.70.0 is outside"), lines
    assert "ray>=2.50,<2.61" in lines[0] and list(tmp_path.iterdir()) == []
