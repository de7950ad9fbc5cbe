"""Achieved training throughput against this CPU's float32 matmul peak.

The peak: the best of several timed square float32 matmuls (n = 1024, 2048) on 1 and 2 threads.
A training step: `tuner.training.trainer.Trainer.train_step` of three configurations (the ring8 default, the
default search's digits budget, the trainer's digits default), its FLOPs counted by
`torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions, forward and backward; the
elementwise work it does not count is the rest of the step), its time the median of timed steps
after warm-up. Achieved GFLOP/s = counted FLOPs / step time, and its fraction of the peak on the
same number of threads.

    .venv/bin/python bench/throughput.py            # writes bench/results/throughput.json
    .venv/bin/python bench/throughput.py --smoke    # a few steps, to a temporary folder
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import harness
import torch
from claims import table
from harness import Result
from torch.utils.flop_counter import FlopCounterMode

from search_spaces.budgets import IMAGE_BUDGET
from tuner.training.trainer import Trainer

NAME = "throughput"
TITLE = "Training throughput against the CPU's peak"
CONFIGS = {
    "ring8 default (MLP 256x3, batch 256)": {"data": "ring8"},
    "digits, default search budget (UNet width 16, batch 64)": {
        "data": "digits",
        **{k: v for k, v in IMAGE_BUDGET.items() if k.startswith(("train.", "net."))},
    },
    "digits, trainer default (UNet width 32, batch 256)": {"data": "digits"},
}


def matmul_peak(threads: int, sizes: tuple[int, ...], repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    best = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        best[str(n)] = 2 * n**3 / min(times) / 1e9
    return best


def step_throughput(config: dict, threads: int, warmup: int, steps: int) -> dict[str, float]:
    trainer = Trainer(config | {"train.threads": threads})
    for _ in range(warmup):
        trainer.train_step()
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.train_step()
    flops = counter.get_total_flops()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    return {"gflop_per_step": flops / 1e9, "step_ms": 1e3 * step_s, "gflops": flops / step_s / 1e9}


def summarise(result: Result) -> Result:
    """The measured rates in one table; no claims: throughput has no target."""
    raw = result["raw"]
    peak = raw["peak_gflops"]
    rows = [[name, t, f"{r['gflop_per_step']:.3f}", f"{r['step_ms']:.1f}", f"{r['gflops']:.1f}", f"{100 * r['fraction_of_peak']:.1f} %"]
            for name, by_threads in raw["steps"].items() for t, r in by_threads.items()]  # fmt: skip
    body = [
        f"`{result['command']}` — float32 matmul peak {peak['1']['best']:.0f} GFLOP/s on 1 thread, "
        f"{peak['2']['best']:.0f} GFLOP/s on 2; a training step's matmul and convolution FLOPs "
        "(forward and backward, counted by torch's FlopCounterMode) over its median time.",
        table(["configuration", "threads", "GFLOP/step", "ms/step", "GFLOP/s", "of peak"], rows),
    ]
    return harness.page(result, TITLE, body, [])


def main() -> int:
    parser = harness.parser(NAME, __doc__, steps=40)
    args = parser.parse_args()
    if args.resummarise:
        harness.resummarise(args, summarise)
        return 0
    steps, warmup, repeats = (3, 1, 2) if args.smoke else (args.steps, 10, 10)
    load_before = os.getloadavg()
    result: dict = {"peak_gflops": {}, "steps": {}}
    for threads in (1, 2):
        peak = matmul_peak(threads, (512,) if args.smoke else (1024, 2048), repeats)
        result["peak_gflops"][str(threads)] = {"by_n": peak, "best": max(peak.values())}
    for name, config in CONFIGS.items():
        result["steps"][name] = {}
        for threads in (1, 2):
            row = step_throughput(config, threads, warmup, steps)
            row["fraction_of_peak"] = row["gflops"] / result["peak_gflops"][str(threads)]["best"]
            result["steps"][name][str(threads)] = row
            print(
                f"{name}, {threads} thread(s): {row['gflop_per_step']:.3f} GFLOP/step, "
                f"{row['step_ms']:.1f} ms, {row['gflops']:.1f} GFLOP/s "
                f"({100 * row['fraction_of_peak']:.1f} % of peak)",
                flush=True,
            )
    result |= {
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result["peak_gflops"], indent=2))
    harness.finish(args, harness.new(args, CONFIGS, result), summarise)
    return 0


if __name__ == "__main__":
    sys.exit(main())
