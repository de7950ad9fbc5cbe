"""The GPU trial path, measured on a CUDA machine: a CIFAR-10-shaped trial of the cluster search.

On the GPU this script measures, for the trial of `debias_family_cifar10` (the width-64 UNet at
batch 128 on 3×32×32 images, `search_spaces/budgets.py`'s GPU_IMAGE_BUDGET) at float32 and at
bf16 autocast:
- steps/s and images/s of training (after a warm-up, CUDA-synchronised): plain ε-MSE at both
  precisions, and at bf16 the space's other terms, each on its own: the contrastive term
  (cdl.coef 0.1, as searched) and, with `--cifar-root`, TIW-DSM at strength 1 on
  cifar10_biased (a reference set is needed; the discriminator's pre-training is not timed);
- the step's FLOPs (torch.utils.flop_counter over one forward and backward) and the achieved
  FLOP/s against the GPU's bf16 and float32 (no TF32) matmul peak measured in the same run;
- peak GPU memory;
- the evaluation's seconds per 10k samples (sampling plus Inception FID/KID on the GPU);
- 1, 2 and 4 concurrent trials on the one GPU (separate processes), their summed steps/s.
Images are CIFAR-10's when `--cifar-root PATH` holds cifar-10-batches-py, else stand-in images of
the real shape (random PNGs in a temporary folder); Inception has the real shapes and random
weights (timing only: no FID value here means anything). Results: bench/results/gpu_trial.json
with the device.

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
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np
import torch

from search_spaces.budgets import GPU_IMAGE_BUDGET
from tests.fakes import random_inception_weights
from tuner.evaluation.extractors import INCEPTION_EXTRACTOR
from tuner.evaluation.metrics import image_metrics
from tuner.training.trainer import Trainer

NAME = "gpu_trial"
TRIAL = {
    "data": "cifar10",
    "net.width": GPU_IMAGE_BUDGET["net.width"],
    "train.batch": GPU_IMAGE_BUDGET["train.batch"],
    "train.lr": GPU_IMAGE_BUDGET["train.lr"],
    "sampler.steps": GPU_IMAGE_BUDGET["sampler.steps"],
    "train.threads": 0,
}
SMOKE = {"net.width": 8, "train.batch": 8, "sampler.steps": 2}
CDL = {"cdl.coef": 0.1}  # the contrastive term at the space's smallest non-zero coefficient
TIW = {"tiw.strength": 1.0, "tiw.disc_steps": 100}  # per-step cost only: a short pre-training


def matmul_peak(device: str, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Measured FLOP/s of an n×n matmul (float32 without TF32)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def stand_in_images(folder: Path, n: int, side: int = 32) -> str:
    """n random RGB PNGs of CIFAR-10's shape: the data preset `folder:PATH` of them."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            folder / f"{i:05d}.png"
        )
    return f"folder:{folder}"


def step_flops(trainer: Trainer) -> float:
    """FLOPs of one training step (forward and backward of every loss term)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return float(counter.get_total_flops())


def training(config: dict[str, Any], device: str, steps: int, warmup: int) -> dict[str, float]:
    trainer = Trainer(config, device=device)
    trainer.prepare()  # the TIW discriminator's pre-training, outside the timing
    for _ in range(warmup):
        trainer.train_step()
    flops = step_flops(trainer)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    _sync(device)
    seconds = time.perf_counter() - t0
    out = {
        "steps_per_s": steps / seconds,
        "images_per_s": steps * config["train.batch"] / seconds,
        "step_flops": flops,
        "achieved_flops": flops * steps / seconds,
    }
    if device.startswith("cuda"):
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 1024**3
    return out


def evaluation(config: dict[str, Any], device: str, n: int, weights: str) -> dict[str, float]:
    """Seconds to sample n images and score them with Inception (random weights), per 10k."""
    trainer = Trainer(config, device=device)
    t0 = time.perf_counter()
    samples = trainer.sample(n)
    _sync(device)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        image_metrics(
            samples,
            config["data"],
            trainer.dataset.test[:n],
            INCEPTION_EXTRACTOR,
            weights_path=weights,
            cache_dir=cache,
        )
    t2 = time.perf_counter()
    return {
        "samples": n,
        "sample_s_per_10k": (t1 - t0) * 1e4 / n,
        "fid_s_per_10k": (t2 - t1) * 1e4 / n,
        "eval_s_per_10k": (t2 - t0) * 1e4 / n,
    }


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


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Shares of the matmul peaks, each term's cost against a plain bf16 step, and the
    evaluation's share of a whole GPU_IMAGE_BUDGET trial (its training steps at bf16 plus an
    evaluation of eval.samples at each evaluation step)."""
    from tuner.config.spec import evaluation_steps

    for precision in ("float32", "bf16"):
        peak = result["matmul_peak_flops"][precision]
        result[precision]["share_of_matmul_peak"] = result[precision]["achieved_flops"] / peak
    for term in result["terms_bf16"].values():  # a step with the term against a plain one
        term["cost_vs_plain"] = result["bf16"]["steps_per_s"] / term["steps_per_s"]
    b = GPU_IMAGE_BUDGET
    evals = len(evaluation_steps(b["train.steps"], b["eval.every"], 3.0))  # ASHA's rungs
    train_s = b["train.steps"] / result["bf16"]["steps_per_s"]
    eval_s = evals * result["evaluation"]["eval_s_per_10k"] * b["eval.samples"] / 1e4
    result["budget_trial"] = {
        "steps": b["train.steps"],
        "evaluations": evals,
        "train_s": train_s,
        "eval_s": eval_s,
        "eval_share": eval_s / (train_s + eval_s),
    }
    return result


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
    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        print("gpu_trial: no CUDA device is visible; nothing measured (run it on a GPU machine)")
        return 0
    device = "cpu" if smoke else "cuda"
    steps, warmup, n_eval, n = (3, 1, 16, 256) if smoke else (200, 20, 10_000, 8192)
    with tempfile.TemporaryDirectory() as tmp:
        described, data = data_of(args, Path(tmp, "images"))
        weights = str(Path(tmp, "inception.pth"))
        random_inception_weights(weights)
        base = TRIAL | (SMOKE if smoke else {}) | data | {"eval.fid_weights": weights}
        result: dict[str, Any] = {
            "command": harness.command(args),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "torch": torch.__version__,
            "data": described,
            "config": base,
            "matmul_peak_flops": {
                "bf16": matmul_peak(device, torch.bfloat16, n, 5 if smoke else 50),
                "float32": matmul_peak(device, torch.float32, n, 2 if smoke else 20),
            },
        }
        for precision in ("float32", "bf16"):
            config = base | {"train.precision": precision}
            result[precision] = training(config, device, steps, warmup)
        bf16 = base | {"train.precision": "bf16"}
        result["terms_bf16"] = {"cdl": training(bf16 | CDL, device, steps, warmup)}
        if data["data"] == "cifar10":  # TIW needs the biased preset's reference set
            biased = bf16 | TIW | {"data": "cifar10_biased"}
            result["terms_bf16"]["tiw"] = training(biased, device, steps, warmup)
        result["evaluation"] = evaluation(bf16, device, n_eval, weights)
        result["concurrent"] = [concurrent(bf16, device, steps, k) for k in (1, 2, 4)]
    harness.finish(args, result, summarise)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
