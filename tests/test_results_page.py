"""docs/results.md is what bench/report.py renders from the committed bench/results files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_results_page_is_current() -> None:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    page = (ROOT / "docs" / "results.md").read_text()
    assert page == report.render(), "run `.venv/bin/python bench/report.py` and commit the page"
    assert "Not measured yet" not in page, "every section of the page has its results file"
