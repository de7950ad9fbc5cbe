"""The GPU trial path, measured on a CUDA machine: a CIFAR-10-shaped trial of the cluster search.

For the trial of `debias_family_cifar10` (GPU_IMAGE_BUDGET: the width-64 UNet at batch 128 on
3×32×32 images), at float32 and at bf16 autocast: steps/s and images/s of training (after a
warm-up, CUDA-synchronised), the step's FLOPs (torch's FlopCounterMode) and the achieved FLOP/s
against the bf16 and float32 (no TF32) matmul peaks measured in the same run, and the peak GPU
memory; at bf16 also each other term of the space on its own: the contrastive term (cdl.coef
0.1) and, with `--cifar-root`, TIW-DSM at strength 1 on cifar10_biased (its pre-training not
timed); the evaluation's seconds per 10k samples (sampling and Inception FID/KID on the GPU);
and 1, 2 and 4 concurrent trials on the one GPU (separate processes), their summed steps/s.
Images are CIFAR-10's with `--cifar-root PATH`, else random stand-in PNGs of the real shape;
Inception has the real shapes and random weights (timing only).

Without a CUDA device it says so in one line and exits 0. `--smoke` runs every measurement with
tiny sizes on the CPU (to a temporary folder), to check the script itself.

    .venv/bin/python bench/gpu_trial.py                           # on a CUDA machine
    .venv/bin/python bench/gpu_trial.py --cifar-root ~/data/cifar # with CIFAR-10 and TIW
    .venv/bin/python bench/gpu_trial.py --smoke                   # tiny, on the CPU
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch
from claims import table
from fakes import random_inception_weights
from harness import Result
from torch.utils.flop_counter import FlopCounterMode

from search_spaces.budgets import GPU_IMAGE_BUDGET
from tuner.config.spec import evaluation_steps
from tuner.evaluation.extractors import INCEPTION_EXTRACTOR
from tuner.evaluation.metrics import image_metrics
from tuner.training.trainer import Trainer

NAME = "gpu_trial"
TITLE = "The GPU trial path"
TRIAL = {"data": "cifar10", "train.threads": 0} | {
    k: GPU_IMAGE_BUDGET[k] for k in ("net.width", "train.batch", "train.lr", "sampler.steps")
}
SMOKE = {"net.width": 8, "train.batch": 8, "sampler.steps": 2}
CDL = {"cdl.coef": 0.1}  # the contrastive term at the space's smallest non-zero coefficient
TIW = {"tiw.strength": 1.0, "tiw.disc_steps": 100}  # per-step cost only: a short pre-training


def matmul_peak(device: str, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Measured FLOP/s of an n×n matmul (float32 without TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    return 2 * n**3 * repeats / timed(device, lambda: [a @ b for _ in range(repeats)])


def timed(device: str, fn: Callable[[], object]) -> float:
    """Seconds of fn, the device synchronised before and after."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    sync()
    return harness.seconds(lambda: [fn(), sync()])[0]


def stand_in_images(folder: Path, n: int, side: int = 32) -> str:
    """n random RGB PNGs of CIFAR-10's shape: the data preset `folder:PATH` of them."""
    from PIL import Image  # torchvision's dependency, needed here only

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")  # fmt: skip
    return f"folder:{folder}"


def training(config: dict[str, Any], device: str, steps: int, warmup: int) -> dict[str, float]:
    trainer = Trainer(config, device=device)
    trainer.prepare()  # the TIW discriminator's pre-training, outside the timing
    for _ in range(warmup):
        trainer.train_step()
    with FlopCounterMode(display=False) as counter:  # one step's forward and backward
        trainer.train_step()
    flops = float(counter.get_total_flops())
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(device, lambda: [trainer.train_step() for _ in range(steps)])
    out = {"steps_per_s": steps / seconds, "images_per_s": steps * config["train.batch"] / seconds,
           "step_flops": flops, "achieved_flops": flops * steps / seconds}  # fmt: skip
    if device.startswith("cuda"):
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
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(config)],
            cwd=harness.ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(k)
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
    rows = [
        [
            f"training at {p}",
            f"{raw[p]['steps_per_s']:.2f} steps/s, {raw[p]['images_per_s']:.0f} images/s",
            f"{100 * s[p]['share_of_matmul_peak']:.1f} % of the {p} matmul peak",
        ]
        for p in ("float32", "bf16")
    ]
    rows += [
        [
            f"{t} term at bf16",
            f"{raw['terms_bf16'][t]['steps_per_s']:.2f} steps/s",
            f"{v['cost_vs_plain']:.2f}× a plain step",
        ]
        for t, v in s["terms_bf16"].items()
    ]
    rows += [
        [
            "evaluation",
            f"{raw['evaluation']['eval_s_per_10k']:.1f} s per 10k samples",
            f"{100 * s['budget_trial']['eval_share']:.1f} % of a budget trial",
        ]
    ]
    rows += [
        [f"{c['trials']} trials on the GPU", f"{c['steps_per_s_total']:.2f} steps/s in all", ""]
        for c in raw["concurrent"]
    ]
    body = [f"`{result['command']}` on {raw['device']} ({raw['data']}; Inception with random weights):",
            table(["measured", "rate", "against"], rows)]  # fmt: skip
    return harness.page(result, TITLE, body, [], summary=s)


def data_of(args: Any, folder: Path) -> tuple[str, dict[str, Any]]:
    """CIFAR-10 from --cifar-root when it holds it, else stand-in images in `folder`."""
    from tuner.data.presets import cifar10_present

    if args.cifar_root is not None:
        if not cifar10_present(str(args.cifar_root)):
            raise SystemExit(f"--cifar-root {args.cifar_root}: no cifar-10-batches-py there")
        return "CIFAR-10", {"data": "cifar10", "data.root": str(args.cifar_root)}
    n = 64 if args.smoke else 60_000
    return "stand-in images, 3x32x32", {"data": stand_in_images(folder, n)}


def main() -> int:
    parser = harness.parser(NAME, __doc__)
    parser.add_argument("--cifar-root", type=Path, help="a folder holding cifar-10-batches-py")
    args = parser.parse_args()
    if args.resummarise:
        return harness.resummarise(args, summarise)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_trial: no CUDA device is visible; nothing measured (run it on a GPU machine)")
        return 0
    device = "cpu" if args.smoke else "cuda"
    steps, warmup, n_eval, n = (3, 1, 16, 256) if args.smoke else (200, 20, 10_000, 8192)
    with tempfile.TemporaryDirectory() as tmp:
        described, data = data_of(args, Path(tmp, "images"))
        weights = str(Path(tmp, "inception.pth"))
        random_inception_weights(weights)
        base = TRIAL | (SMOKE if args.smoke else {}) | data | {"eval.fid_weights": weights}
        peaks = {"bf16": (torch.bfloat16, 5 if args.smoke else 50), "float32": (torch.float32, 2 if args.smoke else 20)}  # fmt: skip
        raw: dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                               "torch": torch.__version__, "data": described, "config": base,
                               "matmul_peak_flops": {p: matmul_peak(device, t, n, r) for p, (t, r) in peaks.items()}}  # fmt: skip
        for precision in ("float32", "bf16"):
            raw[precision] = training(base | {"train.precision": precision}, device, steps, warmup)
        bf16 = base | {"train.precision": "bf16"}
        raw["terms_bf16"] = {"cdl": training(bf16 | CDL, device, steps, warmup)}
        if data["data"] == "cifar10":  # TIW needs the biased preset's reference set
            raw["terms_bf16"]["tiw"] = training(bf16 | TIW | {"data": "cifar10_biased"}, device, steps, warmup)  # fmt: skip
        raw["evaluation"] = evaluation(bf16, device, n_eval, weights)
        raw["concurrent"] = [concurrent(bf16, device, steps, k) for k in (1, 2, 4)]
    harness.finish(args, harness.new(args, {"plain": {}, "cdl": CDL, "tiw": TIW}, raw), summarise)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
