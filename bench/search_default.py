"""Measure the embedded default search: `python -m tuner.run --space debias_family`, nothing else,
once per search seed (`--seed S`, the search algorithm's seed).

Runs each in a fresh scratch folder (so it starts a new search rather than resuming one),
samples the memory of the driver and every process under it (Ray's raylet, GCS and trial
workers) twice a second, and writes bench/results/search_default.json: per search seed the wall
time (confirmation included), peak memory (PSS: shared pages counted once; RSS for reference),
trials, how many ASHA stopped, the leaderboard, and the confirmation's verdict.json.

    .venv/bin/python bench/search_default.py [--seeds 0 1 2] [--keep DIR] [-- extra options]
    .venv/bin/python bench/search_default.py --smoke           # --smoke-test, to a temporary folder
    .venv/bin/python bench/search_default.py --resummarise     # the targets' verdicts again
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import harness
from harness import ROOT, Result, verdict

NAME = "search_default"
GIB = 1024**3
# The targets of the default search, by their name in the results file: (claim, field, test),
# each to hold in every search seed's run.
TARGETS: dict[str, tuple[str, str, Callable[[float], bool]]] = {
    "wall_s <= 600": ("it finishes within 10 minutes, confirmation included", "wall_s",
                      lambda v: v <= 600),
    "trials >= 16": ("it runs at least 16 trials", "trials", lambda v: v >= 16),
    "asha stopped some": ("ASHA stops some trials early", "stopped_by_asha", lambda v: v > 0),
    "peak memory < 4 GiB": ("its peak memory (PSS) stays under 4 GiB", "peak_pss_gib",
                            lambda v: v < 4),
    "resolved": ("its confirmed winner beats the baseline on fresh seeds (verdict.json "
                 "resolved)", "resolved", lambda v: v is True),
}  # fmt: skip


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in bytes; (0, 0) once it is gone."""
    try:
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        )
        return int(fields["Pss"].split()[0]) * 1024, int(fields["Rss"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0, 0


class Sampler(threading.Thread):
    def __init__(self, root: int, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.period = root, period
        self.peak_pss = self.peak_rss = 0
        self.peak_processes = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids = _descendants(self.root)
            pss = rss = 0
            for pid in pids:
                p, r = _memory(pid)
                pss, rss = pss + p, rss + r
            self.peak_pss, self.peak_rss = max(self.peak_pss, pss), max(self.peak_rss, rss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self.done.wait(self.period)


def parse_leaderboard(out: str) -> list[dict[str, str]]:
    if "leaderboard (" not in out:
        return []
    lines = out[out.index("leaderboard (") :].splitlines()[1:]
    head = re.split(r"\s{2,}", lines[0].strip())
    rows = []
    for line in lines[1:]:
        if not line[:1].isdigit():
            break
        rows.append(dict(zip(head, re.split(r"\s{2,}", line.strip()), strict=False)))
    return rows


def summarise(result: Result) -> Result:
    """Each target's verdict over the search seeds' runs (it holds when it holds in every one)."""
    runs = result["runs"]
    result["targets"] = {
        name: all(test(run[field]) for run in runs) for name, (_, field, test) in TARGETS.items()
    }
    seeds = ", ".join(str(run["seed"]) for run in runs)
    result["verdicts"] = [
        verdict(
            f"The default search on {result['cpus']} cores, search seeds {seeds}: {claim}",
            result["targets"][name],
            f"{field} = {', '.join(str(run[field]) for run in runs)} (one run per seed)",
        )
        for name, (claim, field, _) in TARGETS.items()
    ]
    return result


def run_search(seed: int, extra: list[str], keep: str | None) -> Result:
    """One default search with `--seed seed` in a fresh folder: its figures and verdict."""
    scratch = Path(keep or tempfile.mkdtemp(prefix="search_default_")) / f"seed{seed}"
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tuner.run", "--space", "debias_family", "--seed", str(seed)]
    cmd += extra
    env = os.environ | {"PYTHONPATH": str(ROOT)}  # the project, from a scratch working folder
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = Sampler(proc.pid)
    sampler.start()
    out = proc.stdout.read()
    proc.wait()
    wall = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    (scratch / "output.txt").write_text(out)
    rows = parse_leaderboard(out)
    statuses = [r.get("status", "") for r in rows]
    found = sorted(scratch.glob("ray_results/*/verdict.json"))
    verdict_json = json.loads(found[0].read_text()) if found else None
    run = {
        "seed": seed,
        "command": " ".join(cmd[2:]),
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_pss_gib": round(sampler.peak_pss / GIB, 3),
        "peak_rss_gib": round(sampler.peak_rss / GIB, 3),
        "peak_processes": sampler.peak_processes,
        "trials": len(rows),
        "finished": statuses.count("FINISHED"),
        "stopped_by_asha": statuses.count("KILLED"),
        "failed": statuses.count("FAILED"),
        "resolved": None if verdict_json is None else verdict_json["resolved"],
        "verdict": verdict_json,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "leaderboard": rows,
    }
    if not keep:
        import shutil

        shutil.rmtree(scratch.parent, ignore_errors=True)
    return run


def main() -> int:
    parser = harness.parser(NAME, __doc__, seeds=[0, 1, 2])
    parser.add_argument(
        "--keep", help="scratch folder to use and keep (default: a temp folder, removed)"
    )
    parser.add_argument("extra", nargs="*", help="extra tuner.run options (after --)")
    args = parser.parse_args()
    if args.resummarise:
        harness.resummarise(args, summarise)
        return 0
    if args.smoke:
        args.extra = [*args.extra, "--smoke-test"]
    runs = []
    for seed in args.seeds:
        runs.append(run_search(seed, args.extra, args.keep))
        print(json.dumps({k: v for k, v in runs[-1].items() if k not in ("leaderboard",)}))
    result = {
        "command": "python -m tuner.run --space debias_family --seed S " + " ".join(args.extra),
        "cpus": os.cpu_count(),
        "seeds": args.seeds,
        "runs": runs,
    }
    harness.finish(args, result, summarise)
    return 0 if all(run["returncode"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
