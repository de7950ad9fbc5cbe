"""Overhead of a trial under Ray Tune with MLflow logging, against the bare tuner.train loop.

1. Overhead: one configuration (a debias_family point, longer) trained by `run_trial` in a plain
   process and by `python -m tuner.run` as a one-trial search. Ratios (medians of the repeats):
   loop = Ray's time_total_s of the trainable (the same run_trial with tune.report, checkpoint
   persistence, and the driver's MLflow logging in the loop) over the plain run_trial time
   (target <= 1.05); trial = the trial's MLflow run span over the plain process's wall time;
   command = the whole search command (Ray start-up, MLflow set-up) over the plain process.
2. Concurrency: four identical trials, --max-concurrent 1 and then 2 (one CPU each); the
   throughput ratio is the first span over the second (target >= 1.8 on 2 idle cores), the
   median over --repeats-concurrency interleaved repeats. The same four runs as plain
   processes, one and two at a time, give the machine's own ceiling: by wall time (each
   process's Python start-up included, which two at a time overlap) and by run_trial's own
   time (2 x the loop time alone over the loop time of two at once: what two busy cores give).
   Ray's per-trial loop times alone and two at a time separate Ray's own cost from the cores'.

Writes bench/results/ray_overhead.json.  `.venv/bin/python bench/ray_overhead.py [--repeats N]`
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# One point of debias_family, every searched key fixed (TIW and CDL off: the plain loop).
POINT = {
    "data": "digits_biased",
    "weighting": "parametric",
    "weighting.p": 0.5,
    "weighting.k": 1.0,
    "weighting.clamp": 0.0,
    "weighting.normalize": True,
    "tiw.strength": 0.0,
    "cdl.coef": 0.0,
    "train.batch": 64,
    "net.width": 16,
    "eval.samples": 500,
    "sampler.steps": 20,
    "train.threads": 1,
}


def _sets(config: dict) -> list[str]:
    out = []
    for k, v in config.items():
        out += ["--set", f"{k}={json.dumps(v)}"]
    return out


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


BARE = """
import json, sys, time
from tuner.train import run_trial
config = json.load(open(sys.argv[1]))
t0 = time.perf_counter()
run_trial(config, sys.argv[2])
print(json.dumps({"loop_s": time.perf_counter() - t0}))
"""


def bare(config: dict, scratch: Path) -> dict:
    """The plain loop in a fresh process: run_trial's own time, and the process's wall time."""
    path = scratch / "config.json"
    path.write_text(json.dumps(config))
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", BARE, str(path), str(scratch / "bare")],
        cwd=scratch, env=_env(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    return {"loop_s": json.loads(out.stdout.strip().splitlines()[-1])["loop_s"], "process_s": wall}


def bare_many(config: dict, scratch: Path, n: int, concurrent: int) -> dict:
    """n plain processes, `concurrent` at a time: the wall time (with each process's start-up)
    and each run_trial's own time (the machine's own ceiling)."""
    t0 = time.perf_counter()
    loops = []
    for start in range(0, n, concurrent):
        procs = []
        for i in range(start, min(n, start + concurrent)):
            path = scratch / f"config{i}.json"
            path.write_text(json.dumps(config))
            cmd = [sys.executable, "-c", BARE, str(path), str(scratch / f"bare{i}")]
            procs.append(
                subprocess.Popen(cmd, cwd=scratch, env=_env(), stdout=subprocess.PIPE, text=True)
            )
        for proc in procs:
            out, _ = proc.communicate()
            assert proc.returncode == 0
            loops.append(json.loads(out.strip().splitlines()[-1])["loop_s"])
    return {"wall_s": time.perf_counter() - t0, "loop_s": loops}


def search(config: dict, scratch: Path, samples: int, concurrent: int) -> dict:
    """Run a search of `samples` copies of `config`; return its wall time and its trials' times."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{scratch}/mlruns/mlflow.db"
    cmd = [
        sys.executable, "-m", "tuner.run", "--space", "debias_family", "--scheduler", "fifo",
        "--num-samples", str(samples), "--max-concurrent", str(concurrent),
        "--storage", str(scratch / "ray"), "--mlflow-uri", uri, *_sets(config),
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=scratch, env=_env(), check=True, capture_output=True)
    wall = time.perf_counter() - t0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("diffsearch-debias_family")
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("diffsearch.role") == "trial"
    ]
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    spans = [(r.info.start_time / 1000, r.info.end_time / 1000) for r in runs]
    # Ray's own account of each trainable's running time (its last result's time_total_s).
    loops = [
        json.loads(p.read_text().strip().splitlines()[-1])["time_total_s"]
        for p in (scratch / "ray").glob("*/trial_*/result.json")
    ]
    return {
        "wall_s": wall,
        "loop_s": loops,
        "trial_s": [b - a for a, b in spans],
        "span_s": max(b for _, b in spans) - min(a for a, _ in spans),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="train.steps of the overhead trial")
    parser.add_argument("--every", type=int, default=300, help="eval.every of the overhead trial")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-overhead", action="store_true", help="only the concurrency part")
    parser.add_argument("--concurrency-steps", type=int, default=600)
    parser.add_argument("--out", default=str(RESULTS / "ray_overhead.json"))
    parser.add_argument("--repeats-concurrency", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    config = POINT | {"train.steps": args.steps, "eval.every": args.every}
    runs: dict[str, list[float]] = {
        k: [] for k in ("bare_loop", "bare_process", "ray_loop", "ray_trial", "ray_command")
    }
    for i in range(
        0 if args.skip_overhead else args.repeats
    ):  # interleaved, so that a change of machine load hits both
        with tempfile.TemporaryDirectory() as tmp:
            b = bare(config, Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            r = search(config, Path(tmp), samples=1, concurrent=1)
        runs["bare_loop"].append(b["loop_s"])
        runs["bare_process"].append(b["process_s"])
        runs["ray_loop"].append(r["loop_s"][0])
        runs["ray_trial"].append(r["trial_s"][0])
        runs["ray_command"].append(r["wall_s"])
        print(f"repeat {i}: " + "  ".join(f"{k} {v[-1]:.1f}s" for k, v in runs.items()), flush=True)
    med = {k: statistics.median(v) if v else math.nan for k, v in runs.items()}
    small = POINT | {
        "train.steps": args.concurrency_steps,
        "eval.every": args.concurrency_steps // 2,
    }
    # Per concurrency: Ray's span of the 4 trials, Ray's per-trial loop times, and the same for
    # plain processes (wall time of all 4, and each run_trial's own time).
    rows: dict[int, dict[str, list[float]]] = {
        c: {"ray_span": [], "ray_loop": [], "plain_wall": [], "plain_loop": []} for c in (1, 2)
    }
    for _ in range(args.repeats_concurrency):
        for concurrent in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                r = search(small, Path(tmp), samples=4, concurrent=concurrent)
            with tempfile.TemporaryDirectory() as tmp:
                p = bare_many(small, Path(tmp), 4, concurrent)
            row = rows[concurrent]
            row["ray_span"].append(r["span_s"])
            row["ray_loop"] += r["loop_s"]
            row["plain_wall"].append(p["wall_s"])
            row["plain_loop"] += p["loop_s"]
            print(
                f"4 trials, {concurrent} at a time: Ray span {r['span_s']:.1f}s "
                f"(trials {', '.join(f'{x:.1f}' for x in r['loop_s'])}s), plain processes "
                f"{p['wall_s']:.1f}s (loops {', '.join(f'{x:.1f}' for x in p['loop_s'])}s)",
                flush=True,
            )
    cmed = {c: {k: statistics.median(v) for k, v in row.items()} for c, row in rows.items()}
    # Two at a time against one: trials per second, i.e. the span (or loop time) ratio, x2 for
    # the per-trial loop times since two run at once.
    throughput = cmed[1]["ray_span"] / cmed[2]["ray_span"]
    result = {
        "config": config,
        "seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "loop_overhead_ratio": round(med["ray_loop"] / med["bare_loop"], 3),
        "trial_overhead_ratio": round(med["ray_trial"] / med["bare_process"], 3),
        "command_ratio": round(med["ray_command"] / med["bare_process"], 3),
        "concurrency": {
            "train.steps": args.concurrency_steps,
            "trials": 4,
            "repeats": args.repeats_concurrency,
            "seconds": {str(c): {k: [round(x, 2) for x in v] for k, v in row.items()}
                        for c, row in rows.items()},
            "ray_span_1_at_a_time_s": round(cmed[1]["ray_span"], 1),
            "ray_span_2_at_a_time_s": round(cmed[2]["ray_span"], 1),
            "throughput_ratio": round(throughput, 3),
            "ray_trial_slowdown_2_at_a_time": round(cmed[2]["ray_loop"] / cmed[1]["ray_loop"], 3),
            "plain_processes_1_at_a_time_s": round(cmed[1]["plain_wall"], 1),
            "plain_processes_2_at_a_time_s": round(cmed[2]["plain_wall"], 1),
            "machine_ceiling_ratio": round(cmed[1]["plain_wall"] / cmed[2]["plain_wall"], 3),
            "plain_loop_slowdown_2_at_a_time": round(
                cmed[2]["plain_loop"] / cmed[1]["plain_loop"], 3
            ),
            "machine_loop_ceiling_ratio": round(
                2 * cmed[1]["plain_loop"] / cmed[2]["plain_loop"], 3
            ),
        },
        "targets": {"loop_overhead_ratio <= 1.05": med["ray_loop"] / med["bare_loop"] <= 1.05,
                    "throughput_ratio >= 1.8": throughput >= 1.8},
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
