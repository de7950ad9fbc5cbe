"""docs/results.md is what bench/report.py renders from the committed bench/results files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_results_page_is_current() -> None:
    report = _report()
    page = (ROOT / "docs" / "results.md").read_text()
    assert page == report.render(), "run `.venv/bin/python bench/report.py` and commit the page"
    assert "Not measured yet" not in page, "every section of the page has its results file"


def test_verdict_needs_the_whole_interval_of_the_median_on_one_side() -> None:
    report = _report()
    low, high = report.median_interval([1.7, 1.8, 1.9, 2.0, 1.6])
    assert 1.6 <= low <= 1.8 <= high <= 2.0
    assert report.median_interval([1.85] * 6) == (1.85, 1.85)
    assert report.verdict([1.85, 1.9, 1.82, 1.95, 1.88], 1.8, at_least=True) == "yes"
    assert report.verdict([1.6, 1.7, 1.75, 1.65, 1.72], 1.8, at_least=True) == "no"
    assert report.verdict([1.6, 1.75, 1.82, 1.9, 2.0, 1.7], 1.8, at_least=True) == "within noise"
    assert report.verdict([0.98, 1.01, 1.03, 0.99], 1.05, at_least=False) == "yes"
    assert report.verdict([1.08, 1.1, 1.07, 1.12], 1.05, at_least=False) == "no"
    assert report.verdict([0.95, 1.03, 1.06, 1.09], 1.05, at_least=False) == "within noise"
