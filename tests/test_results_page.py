"""docs/results.md is what bench/report.py renders from the committed bench/results files, and
every claim on it is a verdict that its script computes from the data."""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# The results files and the scripts whose summarise() writes their summary and verdicts.
SCRIPTS = {
    "weighting_ring": "weighting_ring",
    "weighting_digits": "weighting_digits",
    "tiw_bimodal": "tiw_bimodal",
    "tiw_digits": "tiw_digits",
    "ring8_default": "ring8_default",
    "ray_overhead": "ray_overhead",
    "search_compare": "search_compare",
    "search_default": "search_default",
    "eval_cost": "eval_cost",
    "fid_small_n": "fid_small_n",
    "objectives_cost": "objectives_cost",
    "throughput": "throughput",
    "digits_classifier": "train_digits_classifier",
}


def _bench(module: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # as when a bench script runs: `import harness`
    return importlib.import_module(module)


def _results() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((BENCH / "results").glob("*.json"))}


def test_results_page_is_current() -> None:
    page = (ROOT / "docs" / "results.md").read_text()
    assert page == _bench("report").render(), "run `.venv/bin/python bench/report.py` and commit it"
    assert "Not measured yet" not in page, "every section of the page has its results file"


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_committed_verdicts_are_what_the_script_computes_from_the_raw_data(name: str) -> None:
    committed = _results()[name]
    if "verdicts" not in committed:
        pytest.skip(f"{name}.json has no verdicts yet (written by another version of its script)")
    again = _bench(SCRIPTS[name]).summarise(copy.deepcopy(committed))
    assert again == committed, f"run `.venv/bin/python bench/{SCRIPTS[name]}.py --resummarise`"


def _throughput_line(page: str) -> str:
    """The verdict on Ray's concurrency target, in the Ray section's list."""
    (line,) = [
        x for x in page.splitlines() if x.startswith("- **") and "throughput of one at a" in x
    ]
    return line


@pytest.mark.parametrize(("low", "word"), [(1.85, "holds"), (1.6, "does not hold")])
def test_a_claim_on_the_page_follows_its_data(low: float, word: str) -> None:
    """Re-summarised from changed per-repeat ratios, the verdict on the page flips."""
    results = _results()
    assert _throughput_line(_bench("report").render(results)).startswith("- **not resolved** —")
    changed = copy.deepcopy(results["ray_overhead"])
    per_repeat = [
        low + 0.01 * i for i in range(len(changed["concurrency"]["seconds"]["1"]["ray_span"]))
    ]
    changed["concurrency"]["throughput_ratio_per_repeat"] = per_repeat
    results["ray_overhead"] = _bench("ray_overhead").summarise(changed)
    line = _throughput_line(_bench("report").render(results))
    assert line.startswith(f"- **{word}** —"), line
    assert f"they run {low:.3f}–{per_repeat[-1]:.3f}×" in line


def test_a_file_of_another_script_drops_in_with_its_verdicts() -> None:
    report, results = _bench("report"), _results()
    results["ambient_gaussian"] = copy.deepcopy(results["ambient_gaussian"])
    results["ambient_gaussian"].pop("verdicts", None)
    interim = "a reading of this file written by hand"
    # a changed file without verdicts: the hand-written reading no longer applies
    results["ambient_gaussian"]["summary"]["naive"]["var_x"] += 0.5
    page = report.render(results)
    assert interim not in page.split("## Ambient")[1].split("## ")[0]
    assert "No verdicts in `bench/results/ambient_gaussian.json` yet" in page
    claim = {"claim": "Naive training inflates the variance", "holds": False, "evidence": "x ± y"}
    results["ambient_gaussian"]["verdicts"] = [claim]
    section = report.render(results).split("## Ambient")[1].split("## ")[0]
    assert "- **does not hold** — Naive training inflates the variance. *x ± y*" in section
    assert interim not in section and "No verdicts" not in section
