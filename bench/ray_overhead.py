"""Overhead of a trial under Ray Tune with MLflow logging, against the bare tuner.train loop.

1. Overhead: one debias_family point trained by `run_trial` in a plain process and by
   `python -m tuner.run` as a one-trial search, in an order that turns round every repeat. Per
   repeat: loop = Ray's time_total_s of the trainable over the plain run_trial time (target
   <= 1.05); trial = the trial's MLflow run span, and command = the whole search command (Ray
   start-up, MLflow set-up), over the plain process's wall time; the medians of the repeats.
2. Concurrency: four identical trials, --max-concurrent 1 and then 2 (one CPU each); the
   throughput ratio is the first span over the second (target >= 1.8 on 2 idle cores), per
   repeat, and its median. The machine's own ceiling: the same four trials on plain worker
   processes that each run their share in turn (as Ray reuses a trial's worker), one worker
   then two; per-trial times, alone and two at a time, separate the cores' slowdown from Ray's.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from claims import ci, direction, median_interval, negate, table, target_holds, verdict
from harness import ROOT, Args, Result

from tuner.stats import paired_improvement

NAME = "ray_overhead"
TITLE = "Ray Tune and MLflow overhead, and concurrency"
# One point of debias_family, every searched key fixed (TIW and CDL off: the plain loop).
POINT = {"data": "digits_biased", "weighting": "parametric", "weighting.p": 0.5, "weighting.k": 1.0,
         "weighting.clamp": 0.0, "weighting.normalize": True, "tiw.strength": 0.0, "cdl.coef": 0.0, "train.batch": 64,
         "net.width": 16, "eval.samples": 500, "sampler.steps": 20, "train.threads": 1}  # fmt: skip
ENV = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# A plain worker process: run_trial of the config (argv 1) into folders under argv 2, argv 3 times.
WORKER = """
import json, sys, time
from pathlib import Path
from tuner.training.trainer import run_trial
config = json.load(open(sys.argv[1]))
loops = []
for i in range(int(sys.argv[3])):
    t0 = time.perf_counter()
    run_trial(config, Path(sys.argv[2]) / str(i))
    loops.append(time.perf_counter() - t0)
print(json.dumps({"loop_s": loops}))
"""


def bare_workers(config: dict, scratch: Path, n: int, workers: int) -> dict:
    """n trials on `workers` plain processes, each running its share one after another (as
    Ray's reused trial workers do): the wall time of all, and each run_trial's own time."""
    (path := scratch / "config.json").write_text(json.dumps(config))
    t0, loops, busy = time.perf_counter(), [], []
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(scratch / f"worker{w}"), str(n // workers)],
                              cwd=scratch, env=os.environ | ENV, stdout=subprocess.PIPE, text=True) for w in range(workers)]  # fmt: skip
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0
        loops += (mine := json.loads(out.strip().splitlines()[-1])["loop_s"])
        busy.append(sum(mine))
    # span: the busiest worker's run_trial time (as Ray's span, no process start-up in it)
    return {"wall_s": time.perf_counter() - t0, "loop_s": loops, "span_s": max(busy)}


def search(config: dict, scratch: Path, samples: int, concurrent: int) -> dict:
    """Run a search of `samples` copies of `config`; return its wall time and its trials' times.
    Without the confirmation stage (--confirm 0): it would add its own trials to the spans, the
    loop times and the command's wall time."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{scratch}/mlruns/mlflow.db"
    cmd = [sys.executable, "-m", "tuner.run", "--space", "debias_family", "--scheduler", "fifo", "--num-samples", str(samples),
           "--max-concurrent", str(concurrent), "--confirm", "0", "--storage", str(scratch / "ray"), "--mlflow-uri", uri,
           *[a for k, v in config.items() for a in ("--set", f"{k}={json.dumps(v)}")]]  # fmt: skip
    wall = harness.seconds(lambda: subprocess.run(cmd, cwd=scratch, env=os.environ | ENV, check=True, capture_output=True))[0]  # fmt: skip
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("diffsearch-debias_family")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("diffsearch.role") == "trial"]  # fmt: skip
    assert all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    spans = [(r.info.start_time / 1000, r.info.end_time / 1000) for r in runs]
    # Ray's own account of each trainable's running time (its last result's time_total_s).
    loops = [json.loads(p.read_text().strip().splitlines()[-1])["time_total_s"] for p in (scratch / "ray").glob("*/trial_*/result.json")]  # fmt: skip
    return {"wall_s": wall, "loop_s": loops, "trial_s": [b - a for a, b in spans], "span_s": max(b for _, b in spans) - min(a for a, _ in spans)}  # fmt: skip


def median_verdict(claim: str, per_repeat: list[float], target: float, at_least: bool) -> dict:
    """Whether the median of the repeats meets `target` (a floor if at_least, else a ceiling),
    by its bootstrap interval (tuner.stats.median_interval)."""
    (low, high), met = median_interval(per_repeat), sum(r >= target if at_least else r <= target for r in per_repeat)  # fmt: skip
    return verdict(claim, target_holds(low, high, target, at_least),
                   f"median {statistics.median(per_repeat):.3f}×, 95 % bootstrap interval [{low:.3f}, {high:.3f}] over {len(per_repeat)} "
                   f"repeats (they run {min(per_repeat):.3f}–{max(per_repeat):.3f}×; {met} of them "
                   f"{'at or above' if at_least else 'at or below'} {target:g}×)")  # fmt: skip


def summarise(result: Result) -> Result:
    """The table of ratios and the verdicts on the targets, from the per-repeat ratios."""
    d = result["raw"]
    c, sec = d["concurrency"], d["seconds"]
    ray, plain = c["throughput_ratio_per_repeat"], c["machine_ceiling_ratio_per_repeat"]
    mean, low, high = paired_improvement(ray, plain, "max")
    verdicts = [
        median_verdict("The trainable's loop under Ray Tune with MLflow logging takes at most "
                       "1.05× the bare loop", d["loop_overhead_ratio_per_repeat"], 1.05, False),
        median_verdict(f"{c['trials']} trials two at a time give at least 1.8× the throughput of "
                       "one at a time under Ray Tune", ray, 1.8, True),
        median_verdict("The same on plain worker processes (the cores' ceiling) gives at least "
                       "1.8×", plain, 1.8, True),
        verdict("Ray's throughput ratio falls short of the plain workers' (paired by repeat)",
                negate(direction(low, high)),
                f"Ray − plain {ci(mean, low, high)} (95 % t over {len(ray)} repeats); Ray keeps "
                f"{100 * c['ray_share_of_ceiling']:.0f} % of the ceiling by the medians"),
    ]  # fmt: skip
    rows = [
        ["trainable loop under Ray + MLflow / bare run_trial", f"{d['loop_overhead_ratio']:.3f}", "≤ 1.05"],
        ["trial's MLflow run span / bare process", f"{d['trial_overhead_ratio']:.3f}", ""],
        ["whole search command (Ray start, MLflow) / bare process", f"{d['command_ratio']:.3f}", ""],
        [f"throughput, {c['trials']} trials 2 at a time / 1 at a time", f"{c['throughput_ratio']:.3f}", "≥ 1.8"],
        ["the same on plain worker processes, by run_trial time (the cores' ceiling)", f"{c['machine_ceiling_ratio']:.3f}", ""],
        ["the same on plain worker processes, by wall time (start-ups overlap)", f"{c['machine_wall_ceiling_ratio']:.3f}", ""],
        ["Ray's throughput ratio / the cores' ceiling", f"{c['ray_share_of_ceiling']:.3f}", ""],
        ["a Ray trial's time, 2 at a time / alone (means)", f"{c['ray_trial_slowdown_2_at_a_time']:.3f}", ""],
        ["a plain run_trial's time, 2 at a time / alone (means)", f"{c['plain_loop_slowdown_2_at_a_time']:.3f}", ""],
    ]  # fmt: skip
    body = [
        f"`{result['command']}` — one debias_family point ({d['config']['train.steps']} steps, "
        "TIW and CDL off) as a bare `run_trial` and as a one-trial search, each ratio taken "
        f"within one repeat and the median shown; seconds per repeat: bare loop "
        f"{sec['bare_loop']}, Ray loop {sec['ray_loop']}, search command {sec['ray_command']}. "
        f"Concurrency: {c['trials']} trials of {c['train.steps']} steps, 1 CPU each, on Ray's "
        "reused trial workers and on plain worker processes (one, then two), each ratio taken "
        f"within one of {c['repeats']} repeats and the median shown; per repeat, Ray "
        f"{c['throughput_ratio_per_repeat']}, plain workers "
        f"{c['machine_ceiling_ratio_per_repeat']} (load average before: "
        f"{d['loadavg_before'][0]:.2f}).",
        table(["ratio", "measured", "target"], rows),
    ]
    return harness.page(result, TITLE, body, verdicts)


def overhead(config: dict, repeats: int) -> dict:
    """The bare and the Ray run of `config`, in turn (the order turning round every repeat, so
    that a drift of the machine's speed falls on both): their seconds and ratios per repeat."""
    runs: dict[str, list[float]] = {k: [] for k in ("bare_loop", "bare_process", "ray_loop", "ray_trial", "ray_command")}  # fmt: skip
    got: dict[str, dict] = {}
    for i in range(repeats):
        for kind in ("bare", "ray") if i % 2 == 0 else ("ray", "bare"):  # one trial each
            with tempfile.TemporaryDirectory() as tmp:
                got[kind] = (bare_workers if kind == "bare" else search)(config, Path(tmp), 1, 1)
        b, r = got["bare"], got["ray"]
        for k, v in zip(runs, (b["loop_s"][0], b["wall_s"], r["loop_s"][0], r["trial_s"][0], r["wall_s"]), strict=True):  # fmt: skip
            runs[k].append(v)
        print(f"repeat {i}: " + "  ".join(f"{k} {v[-1]:.1f}s" for k, v in runs.items()), flush=True)
    ratio = {k: [a / b for a, b in zip(runs[num], runs[den], strict=True)]
             for k, num, den in (("loop", "ray_loop", "bare_loop"), ("trial", "ray_trial", "bare_process"), ("command", "ray_command", "bare_process"))}  # fmt: skip
    med = {k: statistics.median(v) for k, v in ratio.items()}
    return {"seconds": {k: [round(x, 2) for x in v] for k, v in runs.items()}, "loop_overhead_ratio": round(med["loop"], 3),
            "loop_overhead_ratio_per_repeat": [round(x, 3) for x in ratio["loop"]], "trial_overhead_ratio": round(med["trial"], 3),
            "command_ratio": round(med["command"], 3)}  # fmt: skip


def concurrency(config: dict, repeats: int) -> dict:
    """Four trials one and two at a time, on Ray and on plain worker processes, the four runs of
    a repeat back to back in an order that turns round every repeat; each ratio is taken within
    one repeat, so that a drift of the machine's speed falls on both of its terms."""
    rows = {c: {"ray_span": [], "ray_loop": [], "plain_wall": [], "plain_span": [], "plain_loop": []} for c in (1, 2)}  # fmt: skip
    runs4 = [("ray", 1), ("ray", 2), ("plain", 1), ("plain", 2)]
    for i in range(repeats):
        for kind, concurrent in runs4 if i % 2 == 0 else runs4[::-1]:
            with tempfile.TemporaryDirectory() as tmp:
                r = (search if kind == "ray" else bare_workers)(config, Path(tmp), 4, concurrent)
            row = rows[concurrent]
            if kind == "plain":
                row["plain_wall"].append(r["wall_s"])
            row[f"{kind}_span"].append(r["span_s"])
            row[f"{kind}_loop"] += r["loop_s"]
            print(f"repeat {i}: 4 trials, {concurrent} at a time, {kind}: span {r['span_s']:.1f}s", flush=True)  # fmt: skip
    med = {c: {k: statistics.median(v) for k, v in row.items()} for c, row in rows.items()}
    # Per-trial times: means, since a worker's first trial pays its imports (1 such trial of 4
    # one at a time, 2 of 4 two at a time, for Ray's reused workers and the plain ones alike).
    mean = {c: {k: statistics.fmean(v) for k, v in row.items()} for c, row in rows.items()}

    def ratios(key: str) -> list[float]:  # two at a time against one: trials per second
        return [a / b for a, b in zip(rows[1][key], rows[2][key], strict=True)]

    ray, plain = ratios("ray_span"), ratios("plain_span")
    throughput, ceiling = statistics.median(ray), statistics.median(plain)
    return {
        "train.steps": config["train.steps"], "trials": 4, "repeats": repeats,
        "seconds": {str(c): {k: [round(x, 2) for x in v] for k, v in row.items()} for c, row in rows.items()},
        "ray_span_1_at_a_time_s": round(med[1]["ray_span"], 1), "ray_span_2_at_a_time_s": round(med[2]["ray_span"], 1),
        "throughput_ratio": round(throughput, 3), "throughput_ratio_per_repeat": [round(x, 3) for x in ray],
        "machine_ceiling_ratio_per_repeat": [round(x, 3) for x in plain],
        "ray_trial_slowdown_2_at_a_time": round(mean[2]["ray_loop"] / mean[1]["ray_loop"], 3),
        "plain_span_1_at_a_time_s": round(med[1]["plain_span"], 1), "plain_span_2_at_a_time_s": round(med[2]["plain_span"], 1),
        "machine_ceiling_ratio": round(ceiling, 3), "ray_share_of_ceiling": round(throughput / ceiling, 3),
        "plain_processes_1_at_a_time_s": round(med[1]["plain_wall"], 1), "plain_processes_2_at_a_time_s": round(med[2]["plain_wall"], 1),
        "machine_wall_ceiling_ratio": round(statistics.median(ratios("plain_wall")), 3),
        "plain_loop_slowdown_2_at_a_time": round(mean[2]["plain_loop"] / mean[1]["plain_loop"], 3),
    }  # fmt: skip


def measure(args: Args) -> None:
    load_before = harness.loadavg()
    config = POINT | {"train.steps": args.steps, "eval.every": args.every}
    raw = {"config": config, **overhead(config, args.repeats)}
    small = POINT | {"train.steps": args.concurrency_steps, "eval.every": args.concurrency_steps // 2}  # fmt: skip
    raw["concurrency"] = concurrency(small, args.repeats_concurrency)
    raw |= {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": harness.loadavg()}  # fmt: skip
    harness.finish(args, harness.new(args, {}, raw), summarise)


if __name__ == "__main__":
    p = harness.parser(NAME, __doc__, steps=1500)
    p.set_defaults(every=300, repeats=6, concurrency_steps=600, repeats_concurrency=6)
    smoke = {"steps": 40, "every": 20, "repeats": 1, "concurrency_steps": 40, "repeats_concurrency": 1}  # fmt: skip
    raise SystemExit(harness.cli(p, summarise, measure, smoke))
