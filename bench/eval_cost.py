"""Cost of one evaluation for N = 1k / 2k / 5k samples, and its share of a trial's wall time.

Digits: FID + KID (digits CNN) against the 450-image test split with a cold reference cache (a
trial's first evaluation) and a warm one, FID alone and the sample-grid PNG; ring8: lowdim_metrics
and the scatter PNG; Inception with random weights of the real shapes (the cost does not depend
on the values) at a small N. Stand-in samples: noised train digits and ring8 truth samples.
Generation: seconds to draw N samples with each configuration's sampler. Share: a whole
default-search trial and the README's ring8 command through run_trial, and the part of their
wall time spent in evaluation (sampling and metrics; target <= 20 %).
"""

import json
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import harness
import torch
import torch_fidelity
from claims import table, verdict
from fakes import random_inception_weights
from harness import Args, Result

from search_spaces.budgets import IMAGE_BUDGET
from tuner.data.presets import load_dataset, load_digits_split
from tuner.evaluation.extractors import DIGITS_EXTRACTOR, INCEPTION_EXTRACTOR
from tuner.evaluation.metrics import image_metrics, lowdim_metrics
from tuner.evaluation.plots import save_sample_grid
from tuner.search.cli import build_parser
from tuner.search.plan import make_plan
from tuner.training.trainer import Trainer, run_trial

NAME = "eval_cost"
TITLE = "Evaluation cost"
SHARE_TARGET = 0.2  # evaluation's share of a trial's wall time
GENERATION = {"default search trial (digits_biased, UNet width 16)": {"data": "digits_biased", **IMAGE_BUDGET},
              "trainer default on digits (UNet width 32)": {"data": "digits"},
              "trainer default on ring8 (MLP 256x3)": {"data": "ring8"}}  # fmt: skip


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of `repeats` calls, seconds."""
    return round(statistics.median(harness.seconds(fn, repeats)), 4)


def digits_row(n: int, x_train: torch.Tensor, x_test: torch.Tensor, out: str) -> dict:
    gen = torch.Generator().manual_seed(n)
    idx = torch.randint(len(x_train), (n,), generator=gen)
    samples = (x_train[idx] + 0.1 * torch.randn((n, 1, 8, 8), generator=gen)).clamp(-1, 1)
    with tempfile.TemporaryDirectory() as cache:

        def run(kid: bool = True) -> dict:
            return image_metrics(samples, "digits", x_test, DIGITS_EXTRACTOR, kid=kid, cache_dir=cache)  # fmt: skip

        return {"n": n, "fid_kid_cold_cache_s": timed(run), "fid_kid_s": timed(run, 3),
                "fid_only_s": timed(lambda: run(kid=False), 3),
                "grid_png_s": timed(lambda: save_sample_grid(samples, f"{out}/g.png", "image"), 3), "metrics": run()}  # fmt: skip


def lowdim_row(n: int, out: str) -> dict:
    data, gen = load_dataset("ring8"), torch.Generator().manual_seed(n)
    samples = data.truth.sample(n, gen) + 0.05 * torch.randn((n, 2), generator=gen)
    return {"n": n, "n_test": len(data.test),
            "lowdim_metrics_s": timed(lambda: lowdim_metrics(samples, data.truth, data.test, None), 3),
            "scatter_png_s": timed(lambda: save_sample_grid(samples, f"{out}/s.png", "lowdim", truth=data.truth), 3)}  # fmt: skip


def inception_row(n: int, out: str) -> dict:
    weights, gen = f"{out}/inception_random.pth", torch.Generator().manual_seed(0)
    random_inception_weights(weights)
    samples, reference = (torch.rand((n, 3, 32, 32), generator=gen) * 2 - 1 for _ in range(2))

    def run() -> dict:
        return image_metrics(samples, "cifar10", reference, INCEPTION_EXTRACTOR, weights_path=weights, cache_dir=f"{out}/cache")  # fmt: skip

    return {"n": n, "n_reference": n, "note": "random weights of the real shapes; all 2048 features live",
            "fid_kid_cold_cache_s": timed(run), "fid_kid_s": timed(run)}  # fmt: skip


def generation_rows(sizes: list[int]) -> list[dict]:
    """Seconds to draw N samples with each configuration's sampler (an untrained net: the same)."""
    rows = []
    for name, config in GENERATION.items():
        t = Trainer(config)
        rows += [{"config": name, "sampler": t.config["sampler"], "steps": t.config["sampler.steps"], "n": n,
                  "sample_s": timed(lambda n=n, t=t: t.sample(n))} for n in sizes]  # fmt: skip
    return rows


def share_rows(out: str, smoke: bool) -> list[dict]:
    """The evaluations' share of a whole trial's wall time (run_trial): a default-search trial (the
    plan's fixed part) at one point of the space, and the README's ring8 command."""
    fixed = make_plan(build_parser().parse_args(["--space", "debias_family"])).fixed
    point = {"weighting": "parametric", "weighting.p": 0.5, "weighting.k": 1.0, "tiw.strength": 0.5}
    configs = {"default search trial (digits_biased, TIW 0.5)": fixed | point,
               "README ring8 command (weighting=debiased)": {"data": "ring8", "weighting": "debiased"}}  # fmt: skip
    rows = []
    for i, (name, config) in enumerate(configs.items()):
        config |= {"train.steps": 20, "eval.every": 10, "eval.samples": 100} if smoke else {}
        total = harness.seconds(lambda c=config, i=i: run_trial(c, f"{out}/{i}"))[0]
        history = json.loads(Path(f"{out}/{i}/metrics.json").read_text())["history"]
        eval_s = sum(h["time/eval_s"] for h in history)
        rows.append({"trial": name, "config": config, "evaluations": len(history), "steps": [h["step"] for h in history],
                     "threads": config.get("train.threads"), "total_s": total, "eval_s": eval_s, "share": eval_s / total})  # fmt: skip
    return rows


def summarise(result: Result) -> Result:
    """The tables, and the verdict on each trial's evaluation share (one run each: no spread)."""
    raw = result["raw"]
    rows = [[str(r["n"]), f"{r['fid_kid_cold_cache_s']:.1f}", f"{r['fid_kid_s']:.1f}", f"{r['fid_only_s']:.1f}", f"{r['grid_png_s']:.2f}"]
            for r in raw["digits"]]  # fmt: skip
    gen = [[r["config"], f"{r['sampler']} {r['steps']}", str(r["n"]), f"{r['sample_s']:.1f}"] for r in raw["generation"]]  # fmt: skip
    share = [[r["trial"], ", ".join(map(str, r["steps"])), f"{r['total_s']:.0f}", f"{r['eval_s']:.1f}", f"{100 * r['share']:.1f} %"]
             for r in raw["share"]]  # fmt: skip
    i = raw.get("inception")
    body = [
        f"`{result['command']}` — seconds for the metrics of N digits samples against the "
        f"{raw['digits_reference']}-image test split (digits CNN):",
        table(["N", "FID+KID, cold cache", "FID+KID", "FID only", "sample grid PNG"], rows),
        table(["configuration", "sampler", "N", "sampling s"], gen),
        table(["trial", "evaluated at steps", "wall s", "evaluation s", "share (target ≤ 20 %)"], share),
        f"Inception (random weights of the real shapes): FID+KID of {i['n']} against "
        f"{i['n_reference']} images takes {i['fid_kid_s']:.0f} s on this CPU." if i else "",
    ]  # fmt: skip
    verdicts = [verdict(f"Evaluation (sampling and metrics, at the trial's evaluation steps) takes at most "
                        f"{100 * SHARE_TARGET:.0f} % of the wall time of the {r['trial']}", r["share"] <= SHARE_TARGET,
                        f"{100 * r['share']:.1f} % ({r['eval_s']:.1f} s of {r['total_s']:.0f} s; one run, no spread measured)")
                for r in raw["share"]]  # fmt: skip
    return harness.page(result, TITLE, body, verdicts)


def measure(args: Args) -> None:
    x_train, _, x_test, _ = load_digits_split()
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "torch_fidelity": torch_fidelity.__version__, "load_avg_before": harness.loadavg()}  # fmt: skip
    raw = {"machine": machine, "digits_reference": len(x_test)}
    with tempfile.TemporaryDirectory() as out:
        raw["digits"] = [digits_row(n, x_train, x_test, out) for n in args.sizes]
        raw["lowdim_ring8"] = [lowdim_row(n, out) for n in args.sizes]
        raw["generation"] = generation_rows(args.sizes)
        raw["share"] = share_rows(out, args.smoke)
        if args.inception_n:
            raw["inception"] = inception_row(args.inception_n, out)
    machine["load_avg_after"] = harness.loadavg()
    harness.finish(args, harness.new(args, {}, raw), summarise)


if __name__ == "__main__":
    p = harness.parser(NAME, __doc__)
    p.set_defaults(sizes=[1000, 2000, 5000], inception_n=100)  # inception_n 0 skips Inception
    raise SystemExit(harness.cli(p, summarise, measure, {"sizes": [200], "inception_n": 0}))
