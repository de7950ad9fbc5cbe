"""Measure the embedded default search: `python -m tuner.run --space debias_family`, nothing else.

Runs it in a fresh scratch folder (so it starts a new search rather than resuming one), samples
the memory of the driver and every process under it (Ray's raylet, GCS and trial workers) twice
a second, and writes bench/results/search_default.json: wall time, peak memory (PSS: shared
pages counted once; RSS for reference), trials, how many ASHA stopped, and the leaderboard.

    .venv/bin/python bench/search_default.py [--keep DIR] [-- extra tuner.run options]
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
# The targets of the default search, by their name in the results file: (claim, field, test).
TARGETS: dict[str, tuple[str, str, Callable[[float], bool]]] = {
    "wall_s <= 600": ("it finishes within 10 minutes", "wall_s", lambda v: v <= 600),
    "trials >= 8": ("it runs at least 8 trials", "trials", lambda v: v >= 8),
    "asha stopped some": ("ASHA stops some trials early", "stopped_by_asha", lambda v: v > 0),
    "peak memory < 4 GiB": ("its peak memory (PSS) stays under 4 GiB", "peak_pss_gib",
                            lambda v: v < 4),
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
    """The targets and their verdicts (one run: no spread)."""
    result["targets"] = {name: test(result[field]) for name, (_, field, test) in TARGETS.items()}
    result["verdicts"] = [
        verdict(
            f"The default search on {result['cpus']} cores: {claim}",
            result["targets"][name],
            f"{field} = {result[field]} (one run, no spread measured)",
        )
        for name, (claim, field, _) in TARGETS.items()
    ]
    return result


def main() -> int:
    parser = harness.parser(NAME, __doc__)
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
    scratch = Path(args.keep or tempfile.mkdtemp(prefix="search_default_"))
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tuner.run", "--space", "debias_family", *args.extra]
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
    metric = next((k for k in (rows[0] if rows else {}) if k.startswith("best ")), None)
    result = {
        "command": "python -m tuner.run --space debias_family " + " ".join(args.extra),
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_pss_gib": round(sampler.peak_pss / GIB, 3),
        "peak_rss_gib": round(sampler.peak_rss / GIB, 3),
        "peak_processes": sampler.peak_processes,
        "trials": len(rows),
        "finished": statuses.count("FINISHED"),
        "stopped_by_asha": statuses.count("STOPPED"),
        "failed": statuses.count("FAILED"),
        "best": {"trial": rows[0]["trial"], metric: rows[0][metric]} if rows and metric else None,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "leaderboard": rows,
    }  # fmt: skip
    result = harness.finish(args, result, summarise)
    print(json.dumps({k: v for k, v in result.items() if k != "leaderboard"}, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
