"""Achieved training throughput against this CPU's float32 matmul peak.

The peak: the best of timed square float32 matmuls (n = 1024, 2048) on 1 and 2 threads. A
training step (of the ring8 default, the default search's digits budget and the trainer's digits
default): its FLOPs (`step_flops`) over the median of timed steps after warm-up, and that rate's
fraction of the peak on the same number of threads.
"""

import itertools
import json
import os
import statistics
from typing import Any

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


def matmul_peak(threads: int, sizes: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """GFLOP/s by n of the fastest of `repeats` n×n float32 matmuls (after a warm-up), the best."""
    torch.set_num_threads(threads)
    mats = {n: (torch.randn(n, n), torch.randn(n, n)) for n in sizes}
    by_n = {str(n): 2 * n**3 / min(harness.seconds(lambda a=a, b=b: a @ b, repeats + 1)[1:]) / 1e9 for n, (a, b) in mats.items()}  # fmt: skip
    return {"by_n": by_n, "best": max(by_n.values())}


def step_flops(trainer: Trainer, warmup: int) -> float:
    """`warmup` training steps, then one more: its matmul and convolution FLOPs, forward and
    backward, as torch's FlopCounterMode counts them (the elementwise rest is not counted)."""
    for _ in range(warmup):
        trainer.train_step()
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return float(counter.get_total_flops())


def step_throughput(config: dict, threads: int, peak: float, args: Args) -> dict[str, float]:
    """A step's FLOPs, its median time and their rate, and the rate's fraction of `peak`."""
    trainer = Trainer(config | {"train.threads": threads})
    flops = step_flops(trainer, args.warmup)
    step_s = statistics.median(harness.seconds(trainer.train_step, args.steps))
    gflops = flops / step_s / 1e9
    return {"gflop_per_step": flops / 1e9, "step_ms": 1e3 * step_s, "gflops": gflops, "fraction_of_peak": gflops / peak}  # fmt: skip


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
    peaks = {str(t): matmul_peak(t, args.sizes, args.repeats) for t in (1, 2)}
    raw: dict = {"peak_gflops": peaks, "steps": {name: {} for name in CONFIGS}}
    for (name, config), t in itertools.product(CONFIGS.items(), peaks):
        raw["steps"][name][t] = row = step_throughput(config, int(t), peaks[t]["best"], args)
        print(f"{name}, {t} thread(s): {json.dumps(row)}", flush=True)
    raw |= {"torch": torch.__version__, "cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": harness.loadavg()}  # fmt: skip
    harness.finish(args, harness.new(args, CONFIGS, raw), summarise)


if __name__ == "__main__":
    p = harness.parser(NAME, __doc__, steps=40)
    p.set_defaults(warmup=10, repeats=10, sizes=(1024, 2048))  # sizes, repeats: the matmul peak
    smoke = {"steps": 3, "warmup": 1, "repeats": 2, "sizes": (512,)}
    raise SystemExit(harness.cli(p, summarise, measure, smoke))
