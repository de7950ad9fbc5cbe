"""The GPU trial path, measured on a CUDA machine: a CIFAR-10-shaped trial of the cluster search.

The trial of `debias_family_cifar10` (GPU_IMAGE_BUDGET: the width-64 UNet at batch 128 on
3×32×32 images): steps/s and images/s of training at float32 and at bf16 autocast (after a
warm-up, CUDA-synchronised), the step's FLOP/s against the bf16 and float32 (no TF32) matmul
peaks of the same run, and the peak GPU memory; at bf16 also each other term of the space on its
own (TIW-DSM only with `--cifar-root`, else the images are random stand-ins); the evaluation's
seconds per 10k samples (sampling and Inception FID/KID, random weights: timing only); and 1, 2
and 4 concurrent trials on the one GPU, their summed steps/s. Without a CUDA device it says so
in one line and exits 0; `--smoke` runs every measurement with tiny sizes on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from claims import table
from fakes import random_inception_weights
from harness import Args, Result
from throughput import step_flops

from search_spaces.budgets import GPU_IMAGE_BUDGET
from tuner.config.spec import evaluation_steps
from tuner.data.presets import cifar10_present
from tuner.evaluation.extractors import INCEPTION_EXTRACTOR
from tuner.evaluation.metrics import image_metrics
from tuner.training.trainer import Trainer

NAME = "gpu_trial"
TITLE = "The GPU trial path"
TRIAL = {"data": "cifar10", "train.threads": 0} | {
    k: GPU_IMAGE_BUDGET[k] for k in ("net.width", "train.batch", "train.lr", "sampler.steps")
}
CDL = {"cdl.coef": 0.1}  # the contrastive term at the space's smallest non-zero coefficient
# TIW at strength 1 (on cifar10_biased); per-step cost only: a short pre-training, not timed
TIW = {"tiw.strength": 1.0, "tiw.disc_steps": 100}
# A measurement's sizes, and --smoke's (tiny, on the CPU): the trial's net, training steps,
# evaluation samples, the matmuls' side and repeats by precision, and stand-in images.
SIZES = {"device": "cuda", "trial": {}, "steps": 200, "warmup": 20, "eval_n": 10_000,
         "matmul_n": 8192, "matmul_repeats": {"bf16": 50, "float32": 20},
         "images": 60_000}  # fmt: skip
SMOKE = {"device": "cpu", "trial": {"net.width": 8, "train.batch": 8, "sampler.steps": 2},
         "steps": 3, "warmup": 1, "eval_n": 16, "matmul_n": 256,
         "matmul_repeats": {"bf16": 5, "float32": 2}, "images": 64}  # fmt: skip


def matmul_peak(device: str, precision: str, n: int, repeats: int) -> float:
    """Measured FLOP/s of an n×n matmul (float32 without TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = {"bf16": torch.bfloat16, "float32": torch.float32}[precision]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    return 2 * n**3 * repeats / timed(device, lambda: [a @ b for _ in range(repeats)])


def timed(device: str, fn: Callable[[], object]) -> float:
    """Seconds of fn, the device synchronised before and after."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    sync()
    return harness.seconds(lambda: [fn(), sync()])[0]


def training(config: dict[str, Any], device: str, steps: int, warmup: int) -> dict[str, float]:
    trainer = Trainer(config, device=device)
    trainer.prepare()  # the TIW discriminator's pre-training, outside the timing
    flops, cuda = step_flops(trainer, warmup), device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(device, lambda: [trainer.train_step() for _ in range(steps)])
    out = {"steps_per_s": steps / seconds, "images_per_s": steps * config["train.batch"] / seconds,
           "step_flops": flops, "achieved_flops": flops * steps / seconds}  # fmt: skip
    if cuda:
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
    return out


def evaluation(config: dict[str, Any], device: str, n: int, weights: str) -> dict[str, float]:
    """Seconds to sample n images and score them with Inception (random weights), per 10k."""
    trainer, box = Trainer(config, device=device), []
    sample_s = timed(device, lambda: box.append(trainer.sample(n)))
    with tempfile.TemporaryDirectory() as cache:
        fid_s = harness.seconds(lambda: image_metrics(box[0], config["data"], trainer.dataset.test[:n], INCEPTION_EXTRACTOR,
                                                      weights_path=weights, cache_dir=cache))[0]  # fmt: skip
    return {"samples": n, "sample_s_per_10k": sample_s * 1e4 / n, "fid_s_per_10k": fid_s * 1e4 / n,
            "eval_s_per_10k": (sample_s + fid_s) * 1e4 / n}  # fmt: skip


def concurrent(config: dict[str, Any], device: str, steps: int, k: int) -> dict[str, float]:
    """k trials at once on the one device, each its own process: their summed steps/s."""
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import gpu_trial; "
        f"print(json.dumps(gpu_trial.training(json.loads(sys.argv[1]), {device!r}, {steps}, 5)))"
    )
    cmd = [sys.executable, "-c", code, json.dumps(config)]
    procs = [
        subprocess.Popen(cmd, cwd=harness.ROOT, stdout=subprocess.PIPE, text=True) for _ in range(k)
    ]
    rates = [json.loads(p.communicate()[0].strip().splitlines()[-1])["steps_per_s"] for p in procs]
    return {"trials": k, "steps_per_s_each": rates, "steps_per_s_total": sum(rates)}


def summarise(result: Result) -> Result:
    """Shares of the matmul peaks, each term's cost against a plain bf16 step, and the
    evaluation's share of a whole GPU_IMAGE_BUDGET trial (its training steps at bf16 plus an
    evaluation of eval.samples at each of ASHA's rungs)."""
    raw, b = result["raw"], GPU_IMAGE_BUDGET
    s = {p: {"share_of_matmul_peak": raw[p]["achieved_flops"] / raw["matmul_peak_flops"][p]} for p in ("float32", "bf16")}  # fmt: skip
    s["terms_bf16"] = {t: {"cost_vs_plain": raw["bf16"]["steps_per_s"] / v["steps_per_s"]} for t, v in raw["terms_bf16"].items()}  # fmt: skip
    evals = len(evaluation_steps(b["train.steps"], b["eval.every"], 3.0))
    train_s = b["train.steps"] / raw["bf16"]["steps_per_s"]
    eval_s = evals * raw["evaluation"]["eval_s_per_10k"] * b["eval.samples"] / 1e4
    s["budget_trial"] = {"steps": b["train.steps"], "evaluations": evals, "train_s": train_s, "eval_s": eval_s,
                         "eval_share": eval_s / (train_s + eval_s)}  # fmt: skip
    rows = []
    for p in ("float32", "bf16"):
        rate = f"{raw[p]['steps_per_s']:.2f} steps/s, {raw[p]['images_per_s']:.0f} images/s"
        share = 100 * s[p]["share_of_matmul_peak"]
        rows.append([f"training at {p}", rate, f"{share:.1f} % of the {p} matmul peak"])
    for t, v in s["terms_bf16"].items():
        rate = f"{raw['terms_bf16'][t]['steps_per_s']:.2f} steps/s"
        rows.append([f"{t} term at bf16", rate, f"{v['cost_vs_plain']:.2f}× a plain step"])
    e, share = raw["evaluation"]["eval_s_per_10k"], 100 * s["budget_trial"]["eval_share"]
    rows.append(["evaluation", f"{e:.1f} s per 10k samples", f"{share:.1f} % of a budget trial"])
    for c in raw["concurrent"]:
        total = f"{c['steps_per_s_total']:.2f} steps/s in all"
        rows.append([f"{c['trials']} trials on the GPU", total, ""])
    body = [f"`{result['command']}` on {raw['device']} ({raw['data']}; Inception with random weights):",
            table(["measured", "rate", "against"], rows)]  # fmt: skip
    return harness.page(result, TITLE, body, [], summary=s)


def data_of(args: Args, folder: Path) -> tuple[str, dict[str, Any]]:
    """CIFAR-10 from --cifar-root when it holds it, else random RGB PNGs of its shape in `folder`
    (the data preset `folder:PATH`)."""
    if args.cifar_root is not None:
        if not cifar10_present(str(args.cifar_root)):
            raise SystemExit(f"--cifar-root {args.cifar_root}: no cifar-10-batches-py there")
        return "CIFAR-10", {"data": "cifar10", "data.root": str(args.cifar_root)}
    from PIL import Image  # torchvision's dependency, needed here only

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(args.images):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")  # fmt: skip
    return "stand-in images, 3x32x32", {"data": f"folder:{folder}"}


def measure(args: Args) -> None:
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_trial: no CUDA device is visible; nothing measured (run it on a GPU machine)")
        return
    device = args.device
    train = partial(training, device=device, steps=args.steps, warmup=args.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        described, data = data_of(args, Path(tmp, "images"))
        weights = str(Path(tmp, "inception.pth"))
        random_inception_weights(weights)
        base = TRIAL | args.trial | data | {"eval.fid_weights": weights}
        raw: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                               "torch": torch.__version__, "data": described, "config": base}  # fmt: skip
        n, repeats = args.matmul_n, args.matmul_repeats
        raw["matmul_peak_flops"] = {p: matmul_peak(device, p, n, r) for p, r in repeats.items()}
        for precision in ("float32", "bf16"):
            raw[precision] = train(base | {"train.precision": precision})
        bf16 = base | {"train.precision": "bf16"}
        raw["terms_bf16"] = {"cdl": train(bf16 | CDL)}
        if data["data"] == "cifar10":  # TIW needs the biased preset's reference set
            raw["terms_bf16"]["tiw"] = train(bf16 | TIW | {"data": "cifar10_biased"})
        raw["evaluation"] = evaluation(bf16, device, args.eval_n, weights)
        raw["concurrent"] = [concurrent(bf16, device, args.steps, k) for k in (1, 2, 4)]
    harness.finish(args, harness.new(args, {"plain": {}, "cdl": CDL, "tiw": TIW}, raw), summarise)


if __name__ == "__main__":
    p = harness.parser(NAME, __doc__)
    p.add_argument("--cifar-root", type=Path, help="a folder holding cifar-10-batches-py")
    p.set_defaults(**SIZES)
    raise SystemExit(harness.cli(p, summarise, measure, SMOKE))
