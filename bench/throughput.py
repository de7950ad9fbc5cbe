"""Achieved training throughput against this CPU's float32 matmul peak.

The peak: the best of timed square float32 matmuls (n = 1024, 2048) on 1 and 2 threads. A
training step (Trainer.train_step of the ring8 default, the default search's digits budget and
the trainer's digits default): its matmul and convolution FLOPs, forward and backward, counted by
torch's FlopCounterMode (the elementwise rest is not counted), over the median of timed steps
after warm-up, and that rate's fraction of the peak on the same number of threads.
"""

import json
import os
import statistics

import harness
import torch
from claims import table
from harness import Args, Result
from torch.utils.flop_counter import FlopCounterMode

from search_spaces.budgets import IMAGE_BUDGET
from tuner.training.trainer import Trainer

NAME = "throughput"
TITLE = "Training throughput against the CPU's peak"
CONFIGS = {
    "ring8 default (MLP 256x3, batch 256)": {"data": "ring8"},
    "digits, default search budget (UNet width 16, batch 64)": {"data": "digits"}
    | {k: v for k, v in IMAGE_BUDGET.items() if k.startswith(("train.", "net."))},
    "digits, trainer default (UNet width 32, batch 256)": {"data": "digits"},
}


def matmul_peak(threads: int, sizes: tuple[int, ...], repeats: int) -> dict[str, float]:
    """GFLOP/s of the fastest of `repeats` n×n float32 matmuls (the first, warm-up call apart)."""
    torch.set_num_threads(threads)
    mats = {n: (torch.randn(n, n), torch.randn(n, n)) for n in sizes}
    return {str(n): 2 * n**3 / min(harness.seconds(lambda a=a, b=b: a @ b, repeats + 1)[1:]) / 1e9 for n, (a, b) in mats.items()}  # fmt: skip


def step_throughput(config: dict, threads: int, warmup: int, steps: int) -> dict[str, float]:
    trainer = Trainer(config | {"train.threads": threads})
    for _ in range(warmup):
        trainer.train_step()
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    flops, step_s = counter.get_total_flops(), statistics.median(harness.seconds(trainer.train_step, steps))  # fmt: skip
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


def measure(args: Args) -> None:
    load_before = harness.loadavg()
    raw: dict = {"peak_gflops": {}, "steps": {name: {} for name in CONFIGS}}
    for threads in (1, 2):
        peak = matmul_peak(threads, args.sizes, args.repeats)
        raw["peak_gflops"][str(threads)] = {"by_n": peak, "best": max(peak.values())}
    for name, config in CONFIGS.items():
        for threads in (1, 2):
            row = step_throughput(config, threads, args.warmup, args.steps)
            row["fraction_of_peak"] = row["gflops"] / raw["peak_gflops"][str(threads)]["best"]
            raw["steps"][name][str(threads)] = row
            print(f"{name}, {threads} thread(s): {json.dumps(row)}", flush=True)
    raw |= {"torch": torch.__version__, "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": harness.loadavg()}  # fmt: skip
    harness.finish(args, harness.new(args, CONFIGS, raw), summarise)


if __name__ == "__main__":
    p = harness.parser(NAME, __doc__, steps=40)
    p.set_defaults(warmup=10, repeats=10, sizes=(1024, 2048))  # sizes, repeats: the matmul peak
    smoke = {"steps": 3, "warmup": 1, "repeats": 2, "sizes": (512,)}
    raise SystemExit(harness.cli(p, summarise, measure, smoke))
