"""One search as a user runs it, measured: `python -m tuner.run ARGS` in a fresh scratch folder
(its own ./ray_results and ./mlruns), as bench/search_default.py measures the default search.

`run_search` samples the memory of the driver and every process under it (Ray's raylet, GCS and
trial workers) twice a second, and reads back what the search wrote before its scratch folder is
removed: the leaderboard it printed, the plan (search.json), the confirmation's verdict.json and
every result each trial reported to Ray (`read_trials`).
"""

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import harness
from harness import ROOT, Result

from tuner.search.reaper import adopt_descendants, processes

GIB = 1024**3
PLAN_KEYS = ("search", "scheduler", "trials", "max_steps", "eval_every", "eval_steps")


# -- memory of a process tree ---------------------------------------------------------------------
def descendants(root: int) -> list[int]:
    """root and every process under it, from /proc (as tuner/search/reaper.py tracks them)."""
    table = processes()
    tree = {root: table[root][1]} if root in table else {}
    adopt_descendants(tree, table)
    return list(tree)


def memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in bytes; (0, 0) once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        fields = dict(line.split(":", 1) for line in lines)
        return int(fields["Pss"].split()[0]) * 1024, int(fields["Rss"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0, 0


def sample_peaks(root: int, done: threading.Event, peak: dict[str, int]) -> None:
    """Until `done` is set, twice a second: the peak PSS and RSS summed over root and its
    descendants, and the peak number of them, into `peak`."""
    while not done.is_set():
        pids = descendants(root)
        mems = [memory(pid) for pid in pids]
        now = {"pss": sum(m[0] for m in mems), "rss": sum(m[1] for m in mems)}
        peak |= {k: max(peak[k], v) for k, v in (now | {"processes": len(pids)}).items()}
        done.wait(0.5)


# -- what a search wrote ----------------------------------------------------------------------------
def parse_leaderboard(out: str) -> list[dict[str, str]]:
    """The search stage's leaderboard as the run printed it: one dict per row, by column."""
    if "leaderboard (" not in out:
        return []
    lines = out[out.index("leaderboard (") :].splitlines()[1:]
    head = re.split(r"\s{2,}", lines[0].strip())
    rows = itertools.takewhile(lambda line: line[:1].isdigit(), lines[1:])
    return [dict(zip(head, re.split(r"\s{2,}", row.strip()), strict=False)) for row in rows]


def read_trials(exp: Path, param_keys: list[str], metric: str) -> list[dict[str, Any]]:
    """Every trial's reported results from Ray's <exp>/trial_*/result.json (one JSON object per
    line): its searched values and, per report, the step, the metric (NaN where it has none),
    Ray's timestamp and the trial's time_total_s."""
    trials = []
    for file in sorted(exp.glob("trial_*/result.json")):
        reports = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        config = next((r["config"] for r in reversed(reports) if "config" in r), {})
        rows = [{"step": int(r["step"]), "timestamp": int(r["timestamp"]), "time_total_s": float(r["time_total_s"]),
                 "fid": float(r[metric]) if isinstance(r.get(metric), (int, float)) else float("nan")} for r in reports]  # fmt: skip
        trials.append({"trial": file.parent.name.removeprefix("trial_"), "params": {k: config.get(k) for k in param_keys}, "results": rows})  # fmt: skip
    return trials


def read_stages(scratch: Path) -> Result:
    """Where the search's time went, from its MLflow store: the parent run's seconds and, per
    stage, its trials' first start and last end (seconds after the parent run's start) and their
    summed seconds (trial time on all cores)."""
    from mlflow.tracking import MlflowClient

    from tuner.tracking.store import TAG_ROLE, TAG_STAGE

    if not (store := scratch / "mlruns" / "mlflow.db").exists():  # (a search that failed early)
        return {}
    client = MlflowClient(f"sqlite:///{store}")
    runs = [(r.info, r.data.tags) for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=10_000)]  # fmt: skip
    parent = [info for info, tags in runs if tags.get(TAG_ROLE) == "search"]
    if len(parent) != 1 or parent[0].end_time is None:
        return {}
    t0, out = parent[0].start_time, {"parent_s": (parent[0].end_time - parent[0].start_time) / 1000}
    for stage in ("search", "confirmation"):
        trials = [i for i, tags in runs if tags.get(TAG_ROLE) == "trial" and tags.get(TAG_STAGE) == stage and i.end_time]  # fmt: skip
        if trials:
            out[stage] = {"trials": len(trials), "first_start_s": (min(i.start_time for i in trials) - t0) / 1000,
                          "last_end_s": (max(i.end_time for i in trials) - t0) / 1000,
                          "trial_s": sum(i.end_time - i.start_time for i in trials) / 1000}  # fmt: skip
    return out


def read_experiment(scratch: Path) -> Result:
    """The search's plan, its verdict.json and its trials' results, from the scratch folder."""
    found = [p.parent for p in scratch.glob("ray_results/*/search.json")]
    if len(found) != 1:
        return {"experiment": None, "plan": None, "params": [], "verdict": None, "trial_results": []}  # fmt: skip
    exp = found[0]
    plan, verdict = json.loads((exp / "search.json").read_text())["plan"], exp / "verdict.json"
    return {"experiment": exp.name, "plan": {k: plan[k] for k in PLAN_KEYS}, "params": list(plan["params"]),
            "verdict": json.loads(verdict.read_text()) if verdict.exists() else None,
            "trial_results": read_trials(exp, list(plan["params"]), plan["metric"])}  # fmt: skip


def run_search(args: list[str], scratch: Path) -> Result:
    """`python -m tuner.run *args` with scratch (new, empty) as its working folder: wall time,
    peak memory, the leaderboard's counts by status and what the search wrote."""
    scratch.mkdir(parents=True)
    env = os.environ | {"PYTHONPATH": str(ROOT)}  # the project, from a scratch working folder
    load_before, t0 = harness.loadavg(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tuner.run", *args], cwd=scratch, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    done, peak = threading.Event(), dict.fromkeys(("pss", "rss", "processes"), 0)
    sampler = threading.Thread(target=sample_peaks, args=(proc.pid, done, peak), daemon=True)
    sampler.start()
    out = proc.communicate()[0]
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    (scratch / "output.txt").write_text(out)
    rows, written = parse_leaderboard(out), read_experiment(scratch)
    statuses, verdict = [r.get("status", "") for r in rows], written["verdict"]
    return {"args": args, "command": "python " + shlex.join(["-m", "tuner.run", *args]), "returncode": proc.returncode,
            "output_tail": out[-3000:] if proc.returncode else "", "wall_s": round(wall, 1),
            "peak_pss_gib": round(peak["pss"] / GIB, 3), "peak_rss_gib": round(peak["rss"] / GIB, 3),
            "peak_processes": peak["processes"], "trials": len(rows), "finished": statuses.count("FINISHED"),
            "stopped_by_asha": statuses.count("KILLED"), "failed": statuses.count("FAILED"),
            "resolved": None if verdict is None else verdict["resolved"], "loadavg_before": load_before,
            "loadavg_after": harness.loadavg(), "leaderboard": rows, "stages": read_stages(scratch), **written}  # fmt: skip
