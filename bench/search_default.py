"""Measure the embedded default search: `python -m tuner.run --space debias_family`, nothing else,
once per search seed (`--seed S`, the search algorithm's seed).

Each runs in a fresh scratch folder (a new search, not a resumed one) through bench/searches.py,
which samples the memory of the driver and every process under it twice a second. Per seed: the
wall time (confirmation included), peak memory (PSS: shared pages counted once; RSS too), trials,
how many were stopped early, the leaderboard, verdict.json and every result the trials reported
to Ray; the machine's speed just before it (`step_ms`: a training step of the search's baseline
on one thread, as its trials train: this shared machine's speed varies by the hour, and the
wall time with it); and issue 25's checks: the early stopping's rung correlations (or "off"),
the stopped trials with strong TIW, and the verdict against the space's reference.

    .venv/bin/python bench/search_default.py [--seeds 0 1 2] [--keep DIR] [-- extra options]
    .venv/bin/python bench/search_default.py --smoke           # --smoke-test, to a temporary folder
    .venv/bin/python bench/search_default.py --resummarise     # the targets' verdicts again
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
from claims import iv, table, verdict
from harness import Result
from searches import run_search

from search_spaces import SPACES
from tuner.training.trainer import Trainer

NAME = "search_default"
TITLE = "The default search"
DEFAULT = ["--space", "debias_family"]  # the default search's tuner.run arguments
# The targets, by their name in the results file: (claim, field, test), each to hold in every
# search seed's run.
TARGETS: dict[str, tuple[str, str, Callable[[Any], bool]]] = {
    "wall_s <= 600": ("it finishes within 10 minutes, confirmation included", "wall_s", lambda v: v <= 600),
    "trials >= 12": ("it runs at least 12 trials", "trials", lambda v: v >= 12),
    "peak memory < 4 GiB": ("its peak memory (PSS) stays under 4 GiB", "peak_pss_gib", lambda v: v < 4),
    "resolved": ("its confirmed winner beats the baseline on fresh seeds (verdict.json resolved)", "resolved",
                 lambda v: v is True),
    "rungs keep the order": ("its early stopping is off, or every rung's rank correlation with the final FID is at "
                             "least 0.5 (verdict.json early_stopping)", "rung_check", lambda v: v == "off" or v >= 0.5),
    "strong TIW kept": ("at most one stopped trial has tiw.strength ≥ 0.8", "stopped_strong_tiw", lambda v: v <= 1),
    "reference judged": ("its verdict judges the winner against the paper's recipe, paired by seed (verdict.json "
                         "winner.vs_reference_ci; resolved or not)", "reference_judged", lambda v: v is True),
}  # fmt: skip
STAGES = ("Where the time went, from each search's MLflow store (`searches.read_stages`): outside the parent run "
          "(Ray's start, the stores, pre-training the discriminators, shutdown), the spans of the search's and the "
          "confirmation's trials and the time between them, and all the trials' time over the cores.")  # fmt: skip
SPEED = "the machine's speed just before it (milliseconds per training step of the search's baseline on one thread), "
# The note of the runs before the machine's speed was recorded (search_default_preflush.json).
NOTE = ("These runs were taken before the trainer began flushing subnormal floats to zero (commit 99c0463), without "
        "a record of the machine's speed. The same command after the flush gave every trial's FID and every verdict "
        "bit for bit the same in each later run: bench/results/search_default_rerun.json (634, 624 and 665 s, a "
        "baseline step at 28, 29 and 26 ms before each search), in which the trials without CDL took 1.39, 1.33 and "
        "1.33 times as long as here (42, 41 and 37 s against 30, 31 and 28 s on average) with code of the same speed "
        "(the seed-0 winner's trial, timed alone by hand at commit 4f29b99 and after the flush, took 41 and 39 s), and its CDL "
        "trials 0.99, 1.05 and 0.78 times as long (72, 71 and 61 s against 73, 68 and 79 s): the flush; and "
        "bench/results/search_default.json, after the confirmation's discriminators were pre-trained with the "
        "search's and the optimiser ran foreach. Other re-runs after the flush: 728, 838 and 1122 s with a baseline step "
        "at 34 to 54 ms (that file as of commit 332fbef); 542, 649 and 695 s with other work on the machine; 564 and 715 "
        "s (seeds 0 and 1) with a plain step at 43 to 55 ms; after the discriminators' change, 494, 514 and 663 s at 28, "
        "24 and 24.5 ms (that file as of commit 39d0783) and 484, 506 and 602 s at 23.2, 23.3 and 22.8 ms, its trials' "
        "time over the cores 424, 448 and 533 s (before the optimiser's change, on the morning of the committed run).")  # fmt: skip


def default_args(seed: int, extra: list[str]) -> list[str]:
    """The tuner.run arguments of the default search with one search seed."""
    return [*DEFAULT, "--seed", str(seed), *extra]


def summarise(result: Result) -> Result:
    """The table, and each target's verdict over the search seeds' runs (it holds when it holds
    in every one)."""
    raw = result["raw"]
    runs, seeds = raw["runs"], ", ".join(str(run["seed"]) for run in raw["runs"])
    targets = {name: all(test(run[field]) for run in runs) for name, (_, field, test) in TARGETS.items()}  # fmt: skip
    verdicts = [verdict(f"The default search on {raw['cpus']} cores, search seeds {seeds}: {claim}", targets[name],
                        f"{field} = {', '.join(str(run[field]) for run in runs)} (one run per seed)")
                for name, (claim, field, _) in TARGETS.items()]  # fmt: skip
    won = [(r["verdict"] or {}).get("winner") or {} for r in runs]
    speed = any("step_ms" in r for r in runs)  # (recorded since 2026-12-06)
    rows = [[str(r["seed"]), f"{r['wall_s']:.0f}", *([str(r.get("step_ms", "—"))] if speed else []), str(r["trials"]), str(r["stopped_by_asha"]), str(r["failed"]), f"{r['peak_pss_gib']:.2f}", f"{r['peak_rss_gib']:.2f}",
             str(r["resolved"]).lower(), iv(w.get("improvement"), w.get("improvement_ci")), iv(w.get("vs_reference"), w.get("vs_reference_ci"))]
            for r, w in zip(runs, won, strict=True)]  # fmt: skip
    body = [
        f"`{result['command']}` runs `{raw['search_command'].strip()}` once per search seed S ({', '.join(map(str, raw['seeds']))}), each in a fresh "
        f"folder, on {raw['cpus']} cores: wall time with the confirmation stage, {SPEED if speed else ''}peak memory summed over the driver, Ray and the workers (PSS: shared pages "
        "counted once; RSS for reference), and the confirmed winner's paired improvement in FID over the baseline and over the paper's recipe (the space's reference) on the fresh "
        "seeds (95 % t intervals).",
        table(["seed", "wall s", *(["baseline step ms before"] if speed else []), "trials", "stopped early", "failed", "peak PSS GiB", "peak RSS GiB", "resolved", "improvement [95 %]",
               "vs the reference [95 %]"], rows),
    ]  # fmt: skip
    if all("search" in r.get("stages", {}) for r in runs):  # (recorded since 2026-12-06)
        body += [STAGES, table(["seed", "outside the parent run s", "search s", "between the stages s", "confirmation s",
                                f"trial time / {raw['cpus']} cores s"], [stage_row(r, raw["cpus"]) for r in runs])]  # fmt: skip
    return harness.page(result, TITLE, body, verdicts, summary={"targets": targets},
                        notes=[] if speed else [{"date": "2026-12-06", "text": NOTE}])  # fmt: skip


def stage_row(run: Result, cpus: int) -> list[str]:
    """Where one search's wall time went (searches.read_stages): outside the parent MLflow run
    (start-up, pre-training, shutdown), each stage's span, the time between them, and all its
    trials' time over the cores (the wall time of the trials alone, packed without a gap)."""
    st, search, confirm = run["stages"], run["stages"]["search"], run["stages"].get("confirmation")
    cells = [run["wall_s"] - st["parent_s"], search["last_end_s"] - search["first_start_s"]]
    if confirm:
        cells += [
            confirm["first_start_s"] - search["last_end_s"],
            confirm["last_end_s"] - confirm["first_start_s"],
        ]
    trial_s = search["trial_s"] + (confirm or {}).get("trial_s", 0.0)
    return [
        str(run["seed"]),
        *(f"{c:.0f}" for c in cells),
        *(["—"] * (4 - len(cells))),
        f"{trial_s / cpus:.0f}",
    ]


def checks(run: Result) -> Result:
    """Issue 25's fields of one run: its early stopping's weakest rung correlation ("off" under
    FIFO), its stopped trials with strong TIW, and whether the verdict judged the reference."""
    verdict = run["verdict"] or {}
    rungs = (verdict.get("early_stopping") or {}).get("rungs", [])
    rhos = [r["rho"] for r in rungs if r["rho"] is not None]
    stopping = run["plan"] is None or run["plan"]["scheduler"] != "fifo"  # (no plan: a failed run)
    strong = [r for r in run["leaderboard"] if r.get("status") == "KILLED"
              and float(r.get("tiw.strength", 0)) >= 0.8]  # fmt: skip
    return {
        "scheduler": run["plan"] and run["plan"]["scheduler"],
        "rung_rhos": rhos,
        "rung_check": (min(rhos) if rhos else -1.0) if stopping else "off",
        "stopped_strong_tiw": len(strong),
        "reference_judged": bool(verdict.get("reference"))
        and (verdict.get("winner") or {}).get("vs_reference_ci") is not None,
    }


def step_ms(steps: int = 100) -> float:
    """Milliseconds per training step of the default search's baseline (its data and fixed
    config, constant weighting, no TIW or CDL) on one thread as a trial trains, after 5 warm-up
    steps: the machine's speed now."""
    space = SPACES[DEFAULT[1]]
    trainer = Trainer({"data": space["data"], **space["fixed"], **space["baseline"], "train.threads": 1})  # fmt: skip
    for _ in range(5):
        trainer.train_step()
    (wall,) = harness.seconds(lambda: [trainer.train_step() for _ in range(steps)])
    return round(1000 * wall / steps, 1)


def measure(seed: int, extra: list[str], keep: str | None) -> Result:
    """One default search with `--seed seed` in a fresh folder, read back before it is removed."""
    root = Path(keep or tempfile.mkdtemp(prefix="search_default_"))
    scratch = root / f"seed{seed}"
    shutil.rmtree(scratch, ignore_errors=True)  # a fresh search, not a resumed one
    try:
        speed = step_ms()
        run = run_search(default_args(seed, extra), scratch)
        return {"seed": seed, "step_ms": speed, **run, **checks(run)}
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = harness.parser(NAME, __doc__, seeds=[0, 1, 2])
    parser.add_argument("--keep", help="scratch folder to use and keep (default: a temp folder, removed)")  # fmt: skip
    parser.add_argument("extra", nargs="*", help="extra tuner.run options (after --)")
    args = parser.parse_args()
    if args.resummarise:
        return harness.resummarise(args, summarise)
    args.extra += ["--smoke-test"] if args.smoke else []
    runs = []
    for seed in args.seeds:
        runs.append(measure(seed, args.extra, args.keep))
        brief = ("leaderboard", "verdict", "trial_results")
        print(json.dumps({k: v for k, v in runs[-1].items() if k not in brief}), flush=True)
    raw = {"search_command": " ".join(["python -m tuner.run", *DEFAULT, "--seed S", *args.extra]),
           "cpus": os.cpu_count(), "seeds": args.seeds, "runs": runs}  # fmt: skip
    harness.finish(args, harness.new(args, {"default": DEFAULT}, raw), summarise)
    return 0 if all(run["returncode"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
