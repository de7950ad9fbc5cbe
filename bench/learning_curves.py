"""The learning-curve table of the default space (issue 25 §1): every configuration trained to
the end on several seeds with no early stopping, evaluated every 100 steps.

Made with the project's own search, so the trials are Ray trials and MLflow runs like any other:

    python -m tuner.run --space debias_family_density --search qmc --scheduler fifo \\
        --num-samples 48 --confirm 0 --set eval.every=100 --set seed=S --name lc-short-sS
    python -m tuner.run ... --num-samples 12 --set train.steps=2700 ... --name lc-long-sS

for training seeds S = 0, 1, 2. `--search qmc` is Optuna's scrambled Sobol sampler with a fixed
seed (the search's seed, 0), so every training seed trains the same configurations, and the
first 12 of the 48 are the 12 that also run 3x longer (the Sobol sequence does not depend on the
number of trials). A configuration's first 900 steps are the same in both runs (every step is
seeded from (seed, step) and the learning rate is constant after warm-up), which `collect`
checks (`long_matches_short`). The space is debias_family's parameters plus a normal density
over log-SNR (`noise.loc`, `noise.scale`).

    .venv/bin/python bench/learning_curves.py run        # resumable: rerun after a kill
    .venv/bin/python bench/learning_curves.py collect    # writes bench/results/learning_curves.json

`run` works in --workdir (default bench/.runs/learning_curves, git-ignored: ./ray_results and
./mlruns of the searches); a killed run continues where it stopped when rerun (each search
resumes). `collect` reads every trial's reported results from Ray's result.json files and writes
the table: per configuration its searched values and, per training seed and budget, the curve
of eval/fid, eval/kid and eval/minority_fraction at every evaluated step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import RESULTS, ROOT, write

NAME = "learning_curves"
SPACE = "debias_family_density"
SEEDS = (0, 1, 2)
SHORT, LONG = 48, 12  # configurations; the first LONG of the SHORT ones also run 3x longer
STEPS, LONG_STEPS, EVERY = 900, 2700, 100
METRICS = ("eval/fid", "eval/kid", "eval/minority_fraction")


def search_args(budget: str, seed: int) -> list[str]:
    """The tuner.run arguments of one search: `short` (48 configurations, 900 steps) or `long`
    (the first 12, 2700 steps), for one training seed."""
    n, steps = (SHORT, STEPS) if budget == "short" else (LONG, LONG_STEPS)
    return [
        "--space", SPACE, "--search", "qmc", "--seed", "0", "--scheduler", "fifo",
        "--num-samples", str(n), "--confirm", "0",
        "--set", f"eval.every={EVERY}", "--set", f"train.steps={steps}", "--set", f"seed={seed}",
        "--name", f"lc-{budget}-s{seed}",
    ]  # fmt: skip


def searches() -> list[tuple[str, int]]:
    return [("short", s) for s in SEEDS] + [("long", s) for s in SEEDS]


def run(workdir: Path) -> int:
    """Each search in turn (a finished one returns at once when rerun; a killed one resumes)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for budget, seed in searches():
        cmd = [sys.executable, "-m", "tuner.run", *search_args(budget, seed)]
        log = workdir / f"lc-{budget}-s{seed}.log"
        t0 = time.time()
        with log.open("a") as out:
            code = subprocess.call(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        print(f"{budget} seed {seed}: exit {code} after {time.time() - t0:.0f} s ({log})")
        if code != 0:
            return code
    return 0


def read_curves(exp: Path, params: list[str]) -> list[dict[str, Any]]:
    """Every trial of one search: its searched values, wall time and curve (one row per
    evaluation: step and METRICS), from Ray's trial_*/result.json."""
    trials = []
    for file in sorted(exp.glob("trial_*/result.json")):
        config, curve, wall = {}, [], 0.0
        for r in reported(file):
            config = r.get("config", config)
            wall = float(r.get("time_total_s", wall))
            if all(isinstance(r.get(m), (int, float)) for m in METRICS):
                curve.append({"step": int(r["step"])} | {m: float(r[m]) for m in METRICS})
        if not config:  # started, nothing reported yet
            continue
        trials.append(
            {
                "trial": file.parent.name.removeprefix("trial_"),
                "params": {k: config[k] for k in params},
                "wall_s": round(wall, 1),
                "curve": curve,
            }
        )
    return trials


def reported(file: Path) -> list[dict[str, Any]]:
    """The results Ray logged for one trial: its result.json, or, where that file came back empty
    after a resume (seen once, on a search killed when a session ended), the same rows from
    progress.csv beside it with the config of the trial's last checkpoint (config.json)."""
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    checkpoints = sorted(file.parent.glob("checkpoint_*/config.json"))
    if rows or not checkpoints or not (file.parent / "progress.csv").exists():
        return rows
    with (file.parent / "progress.csv").open() as f:
        rows = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
    config = json.loads(checkpoints[-1].read_text())
    return [{"config": config, **row} for row in rows]


def _number(text: str) -> Any:
    try:
        return float(text) if text else None
    except ValueError:
        return text


def key_of(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def collect(workdir: Path) -> dict[str, Any]:
    """The table from the searches' folders: configurations in Sobol order (the short search of
    seed 0 gives the order), each with its curves by budget and seed; unfinished curves are kept
    and marked by their last step."""
    configs: dict[str, dict[str, Any]] = {}
    commands: list[str] = []
    params: list[str] = []
    for budget, seed in searches():
        exp = workdir / "ray_results" / f"lc-{budget}-s{seed}"
        if not (exp / "search.json").exists():
            continue
        plan = json.loads((exp / "search.json").read_text())["plan"]
        params = list(plan["params"])
        commands.append("python -m tuner.run " + " ".join(search_args(budget, seed)))
        for trial in read_curves(exp, params):
            entry = configs.setdefault(key_of(trial["params"]), {"params": trial["params"]})
            entry.setdefault(budget, {})[str(seed)] = {
                "trial": trial["trial"],
                "wall_s": trial["wall_s"],
                "curve": trial["curve"],
            }
    rows = list(configs.values())
    return {
        "long_matches_short": overlap(rows),
        "name": NAME,
        "space": SPACE,
        "params": params,
        "metrics": list(METRICS),
        "seeds": list(SEEDS),
        "budgets": {"short": STEPS, "long": LONG_STEPS},
        "eval_every": EVERY,
        "commands": commands,
        "command": f".venv/bin/python bench/{NAME}.py run && .venv/bin/python bench/{NAME}.py collect",
        "configs": rows,
    }


def overlap(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether each long run's first STEPS steps are its short run's (same seed): the runs
    compared, those equal at every evaluation, and the largest difference in FID."""
    diffs = []
    for c in rows:
        for seed, run in c.get("long", {}).items():
            short = {
                p["step"]: p["eval/fid"] for p in c.get("short", {}).get(seed, {}).get("curve", [])
            }
            pairs = [(p["eval/fid"], short[p["step"]]) for p in run["curve"] if p["step"] in short]
            if pairs:
                diffs.append(max(abs(a - b) for a, b in pairs))
    return {
        "runs": len(diffs),
        "equal": sum(d == 0 for d in diffs),
        "max_fid_difference": max(diffs, default=0.0),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("run", "collect"))
    p.add_argument("--workdir", type=Path, default=ROOT / "bench" / ".runs" / NAME)
    p.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    args = p.parse_args(argv)
    if args.what == "run":
        return run(args.workdir)
    table = collect(args.workdir)
    write(args.out, table)
    done = sum(
        len(c.get("short", {})) == len(SEEDS)
        and all(r["curve"] and r["curve"][-1]["step"] == STEPS for r in c["short"].values())
        for c in table["configs"]
    )
    print(f"wrote {args.out}: {len(table['configs'])} configurations, {done} with every seed done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
