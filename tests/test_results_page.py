"""docs/results.md is what bench/report.py renders from the committed bench/results files (one
schema, bench/harness.py), and every claim on it is a verdict that its script computes from the
raw data the file holds."""

from __future__ import annotations

import copy
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tuner.stats import paired_improvement

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
    "search_default": "search_default",
    "eval_cost": "eval_cost",
    "fid_small_n": "fid_small_n",
    "objectives_cost": "objectives_cost",
    "throughput": "throughput",
    "ambient_gaussian": "ambient_gaussian",
    "cdl_mismatch": "cdl_mismatch",
    "default_budget": "default_budget",
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
    assert "Re-measurement pending" not in page, "every results file is in the current schema"


def test_every_results_file_has_its_section_or_a_reason_for_none() -> None:
    report = _bench("report")
    assert set(_results()) <= set(report.ORDER) - {report.GLANCE} | set(report.UNLISTED)
    assert set(SCRIPTS) <= set(_results())


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_committed_verdicts_are_what_the_script_computes_from_the_raw_data(name: str) -> None:
    committed = _results()[name]
    if not _bench("report").current(committed):
        pytest.skip(f"{name}.json predates the results schema: re-measurement pending")
    assert committed["name"] == name and committed["command"].startswith((".venv/bin/python bench/", "OMP_NUM_THREADS=1 .venv/bin/python bench/"))  # fmt: skip
    again = _bench(SCRIPTS[name]).summarise(copy.deepcopy(committed))
    assert again == committed, f"run `.venv/bin/python bench/{SCRIPTS[name]}.py --resummarise`"


def test_resummarise_recomputes_a_results_file_from_its_raw_data(tmp_path: Path) -> None:
    """The CLI: a file whose derived parts were lost gets them back from its raw data alone."""
    committed = _results()["fid_small_n"]
    path = tmp_path / "fid_small_n.json"
    keep = ("name", "command", "arms", "raw")
    path.write_text(json.dumps({k: committed[k] for k in keep}))
    script = BENCH / "fid_small_n.py"
    out = subprocess.run([sys.executable, str(script), "--resummarise", "--out", str(path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(path.read_text()) == committed
    assert "changed: title, body, figures, verdicts, notes" in out.stdout


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
    concurrency = changed["raw"]["concurrency"]
    per_repeat = [low + 0.01 * i for i in range(len(concurrency["seconds"]["1"]["ray_span"]))]
    concurrency["throughput_ratio_per_repeat"] = per_repeat
    results["ray_overhead"] = _bench("ray_overhead").summarise(changed)
    line = _throughput_line(_bench("report").render(results))
    assert line.startswith(f"- **{word}** —"), line
    assert f"they run {low:.3f}–{per_repeat[-1]:.3f}×" in line


def test_a_file_of_an_earlier_format_is_marked_pending_without_its_old_verdicts() -> None:
    report, results = _bench("report"), _results()
    results["search_default"] = {"command": "x", "verdicts": [{"claim": "Old claim", "holds": True, "evidence": "e"}]}  # fmt: skip
    section = report.render(results).split("## search_default")[1].split("\n## ")[0]
    assert "Re-measurement pending" in section and "Old claim" not in section
    glance = report.render(results).split("## Performance at a glance")[1].split("\n## ")[0]
    assert "Old claim" not in glance


def test_a_file_of_another_script_drops_in_with_its_tables_figures_and_verdicts() -> None:
    """One renderer for every script: a results file in the schema renders whatever it holds."""
    report, results = _bench("report"), _results()
    claim = {"claim": "Naive training inflates the variance", "holds": False, "evidence": "x ± y"}
    results["ambient_gaussian"] = {
        "name": "ambient_gaussian", "title": "Something new", "command": ".venv/bin/python bench/new.py",
        "arms": {}, "body": ["Made by `new.py`.", {"head": ["arm", "v"], "rows": [["a", "1.0 ± 0.1"]]}],
        "figures": [["ambient_gaussian.png", "a figure"], ["missing.png", "none"]],
        "verdicts": [claim], "notes": [{"date": "2027-01-01", "text": "by hand."}], "raw": {},
    }  # fmt: skip
    section = report.render(results).split("## Something new")[1].split("\n## ")[0]
    assert "Made by `new.py`.\n\n| arm | v |\n|---|---|\n| a | 1.0 ± 0.1 |" in section
    assert "![a figure](../bench/results/ambient_gaussian.png)" in section
    assert "missing.png" not in section
    assert "(computed by `bench/new.py` from these results)" in section
    assert "- **does not hold** — Naive training inflates the variance. *x ± y*" in section
    assert "*Note (2027-01-01): by hand.*" in section


def _verdict_json(gain: float) -> dict[str, Any]:
    """A verdict.json whose winner improves on the baseline by gain ± 0.1 over 3 seeds."""
    base = {"config": {"weighting": "constant"}, "values": [4.0, 4.2, 4.4], "mean": 4.2, "ci": [3.7, 4.7]}  # fmt: skip
    values = [v - gain + d for v, d in zip(base["values"], (-0.1, 0.0, 0.1), strict=True)]
    config = {"weighting": "parametric", "weighting.p": 0.5, "weighting.k": 1.0,
              "weighting.clamp": 5.0, "weighting.normalize": True, "tiw.strength": 0.8, "cdl.coef": 0.0}  # fmt: skip
    mean, low, high = paired_improvement(values, base["values"], "min")
    winner = {"trial": "t1", "config": config, "values": values, "mean": sum(values) / 3,
              "ci": [min(values), max(values)], "improvement": mean, "improvement_ci": [low, high]}  # fmt: skip
    return {"metric": "eval/fid", "mode": "min", "seeds": [1, 2, 3], "baseline": base,
            "candidates": [winner], "winner": winner, "resolved": low > 0, "conclusion": ""}  # fmt: skip


def _search_run(arm: str, seed: int | None, gain: float) -> dict[str, Any]:
    """A run as bench/searches.py records it: two trials evaluated at 100, 300 and 900 steps."""
    trials = [{"trial": f"{arm}{seed}_{i}", "params": {"cdl.coef": 0.1 * i, "point": None},
               "results": [{"step": s, "fid": 9.0 - s / 300 + i, "timestamp": 10 * s + i, "time_total_s": s / 10}
                           for s in (100, 300, 900)]} for i in range(2)]  # fmt: skip
    plan = {"search": "optuna", "scheduler": "asha", "trials": 2, "max_steps": 900,
            "eval_every": 100, "eval_steps": [100, 300, 900]}  # fmt: skip
    return {"arm": arm, "seed": seed, "source": "run", "args": [], "returncode": 0, "wall_s": 60.0,
            "peak_pss_gib": 2.5, "peak_rss_gib": 3.1, "trials": 2, "stopped_by_asha": 1, "failed": 0,
            "resolved": gain > 0.5, "plan": plan, "params": ["cdl.coef"], "trial_results": trials,
            "verdict": _verdict_json(gain), "leaderboard": [], "rung_check": "off", "stopped_strong_tiw": 0,
            "reference_judged": True}  # fmt: skip


@pytest.mark.parametrize(("gain", "word"), [(1.0, "holds"), (-1.0, "does not hold")])
def test_the_remeasured_default_search_file_renders_and_its_claims_follow_the_data(
    gain: float, word: str
) -> None:
    """A file in the current format of search_default renders its table, and the claim that the
    search's confirmed winner beats the baseline follows the data."""
    report, default = _bench("report"), _bench("search_default")
    raw = {"search_command": "d", "cpus": 2, "seeds": [0], "runs": [_search_run("tpe_asha", 0, gain)]}  # fmt: skip
    results = _results()
    results["search_default"] = default.summarise({"name": "search_default", "command": "e", "arms": {}, "raw": raw})  # fmt: skip
    page = report.render(results)
    section = page.split("## The default search")[1].split("\n## ")[0]
    claim = "The default search on 2 cores, search seeds 0: its confirmed winner beats the baseline"
    assert f"- **{word}** — {claim}" in section
    assert "Re-measurement pending" not in page
    assert "| 0 | 60 | 2 | 1 | 0 | 2.50 | 3.10 |" in section
