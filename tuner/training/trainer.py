"""Train one configuration, without Ray: `python -m tuner.train --set KEY=VALUE ... --out DIR`.

The same `run_trial` loop runs under Ray Tune (tuner/search/trainable.py). Every step is
seeded from (seed, step) and a checkpoint holds every stateful object, so a
resumed trial continues bit-identically.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.objective import Objective
from models.param import EpsModel
from tuner.config.build import (
    build_dataset,
    build_density,
    build_net,
    build_objective,
    build_sampler,
    build_weighting,
)
from tuner.config.spec import (
    ConfigError,
    evaluation_steps,
    load_config_file,
    parse_set,
    resolve,
)
from tuner.data.presets import DataError, Dataset, preset_entry
from tuner.evaluation import metrics, plots
from tuner.training import discriminators
from tuner.training.checkpoint import LAYOUT
from tuner.training.seeds import EVAL_STREAM, TRAIN_STREAM, step_generator

Report = Callable[[dict[str, Any], "str | None"], None]
EVAL_BATCH = {"cpu": 1000, "cuda": 4096}  # samples drawn at once, by device type


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and the term."""


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt, or not ours)."""


def flips(config: dict[str, Any], kind: str) -> bool:
    """Whether training images get random horizontal flips (data.flip, auto by the preset)."""
    if config["data.flip"] == "auto":
        return kind == "image" and bool(preset_entry(config["data"]).info.get("flip", False))
    return config["data.flip"] == "on"


def _compiled(model: EpsModel) -> EpsModel:
    """The model with its backbone compiled by torch.compile (state_dict keys unchanged)."""
    import torch._dynamo  # torch.compile's front end: only a compiled trial pays its import

    if not torch._dynamo.is_dynamo_supported():
        raise ConfigError(
            f"train.compile=true: torch.compile is not available with torch {torch.__version__} "
            "on this platform; use train.compile=false"
        )
    model.backbone.compile()
    return model


def _check_fid_weights(config: dict[str, Any]) -> None:
    """Natural images' FID weights checked now, not at the first evaluation."""
    if metrics.default_extractor(config["data"]) == "inception-v3-compat":
        try:
            metrics.inception_weights(config["eval.fid_weights"])
        except ValueError as e:
            raise ConfigError(str(e)) from None


class Trainer:
    """Everything one trial needs: data, model, EMA, optimiser, objective, evaluation.

    Args:
        config: flat configuration (defaults fill what is missing).
        model: an ε-model to train instead of the config's net (an ``EpsModel``).
        objective: a training objective instead of the config's (``build_objective``); a
            pre-trained discriminator in it needs no pre-training.
        dataset: the data instead of ``build_dataset(config)``.
        device: torch device that trains and samples.
        disc_cache: folder or URI of the shared TIW discriminators (discriminators.py).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        model: EpsModel | None = None,
        objective: Objective | None = None,
        dataset: Dataset | None = None,
        device: str = "cpu",
        disc_cache: str | None = None,
    ) -> None:
        self.config = resolve(config)
        self.disc_cache = disc_cache
        self.device = torch.device(device)
        c = self.config
        if c["train.threads"]:
            torch.set_num_threads(c["train.threads"])
        # Subnormal floats are many times slower on CPUs, and a step with the contrastive term
        # makes many of them: flushed to zero a CDL step on digits took 0.32 s instead of 0.51 s
        # (a plain step 0.16 s either way), with the same losses. CPU only; a no-op on GPUs.
        torch.set_flush_denormal(True)
        torch.manual_seed(c["seed"])  # initialisation only; every step has its own generator
        self.dataset = build_dataset(c) if dataset is None else dataset
        if self.dataset.kind == "image":
            _check_fid_weights(c)
        self.train_data = self.dataset.train.to(self.device)
        self.flip = flips(c, self.dataset.kind)
        self.model = self._placed(build_net(c, self.dataset) if model is None else model)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)  # evaluates in float32
        if c["train.precision"] == "bf16":
            self.model.autocast = torch.bfloat16
        if c["train.compile"]:
            self.model = _compiled(self.model)
        self.density = build_density(c)
        self.weighting = build_weighting(c, self.density)
        if objective is None:
            objective = build_objective(c, self.dataset, self.weighting, self.density)
        self.objective = objective
        for module in self.objective.modules().values():
            module.to(self.device)
        params = list(self.model.parameters()) + self.objective.parameters()
        # foreach: one call per operation over all parameters instead of a loop over them (CUDA's
        # default; on the CPU the same values, bit for bit, in fewer calls)
        self.opt = torch.optim.AdamW(
            params, lr=c["train.lr"], weight_decay=c["train.weight_decay"], foreach=True
        )
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.last_samples: torch.Tensor | None = None

    def _placed(self, model: EpsModel) -> EpsModel:
        """The model on the trial's device (channels-last for images on CUDA)."""
        model = model.to(self.device)
        self.channels_last = self.device.type == "cuda" and self.dataset.kind == "image"
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    # -- training ------------------------------------------------------------------------------
    @property
    def prepared(self) -> bool:
        """Whether the objective's pre-trained parts are trained (the TIW discriminator)."""
        return self.objective.prepared

    def prepare(self) -> dict[str, float]:
        """One-off work before step 0: the TIW discriminator, from the cache or pre-trained;
        its metrics ({} when there is nothing to prepare)."""
        if self.prepared:
            return {}
        _, metrics = discriminators.get_or_train(
            self.disc_cache,
            self.config,
            self.dataset,
            tiw=self.objective.tiw,
            device=self.device,
        )
        return metrics

    def lr_at(self, step: int) -> float:
        warmup = self.config["train.warmup"]
        return (
            self.config["train.lr"] * min(1.0, (step + 1) / warmup)
            if warmup
            else self.config["train.lr"]
        )

    def batch(self, gen: torch.Generator) -> torch.Tensor:
        """The step's examples (and their flips), drawn on the trial's device."""
        n = self.config["train.batch"]
        idx = torch.randint(len(self.train_data), (n,), generator=gen, device=gen.device)
        x0 = self.train_data[idx]
        if self.flip:
            mirror = torch.rand(n, generator=gen, device=gen.device) < 0.5
            x0 = torch.where(mirror[:, None, None, None], x0.flip(-1), x0)
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        return x0

    def train_step(self) -> dict[str, float]:
        """One optimiser step seeded from (seed, step); returns its loss/... metrics."""
        if not self.prepared:
            self.prepare()
        c = self.config
        gen = step_generator(c["seed"], self.step, TRAIN_STREAM, self.device)
        x0 = self.batch(gen)
        self.model.train()
        terms = self.objective(self.model, x0, gen)
        loss = terms["loss"].mean()
        means = {k: v.mean() for k, v in terms.items() if k != "loss"} | {"loss/total": loss}
        values = dict(zip(means, torch.stack(list(means.values())).tolist(), strict=True))
        if not math.isfinite(values["loss/total"]):  # one device sync per step, here
            bad = [k for k, v in values.items() if k != "loss/total" and not math.isfinite(v)]
            raise DivergenceError(
                f"loss became {values['loss/total']} at step {self.step} in term "
                f"{', '.join(bad) or 'loss'}"
            )
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c["train.grad_clip"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(
                [p for g in self.opt.param_groups for p in g["params"]], c["train.grad_clip"]
            )
            if not torch.isfinite(norm):
                raise DivergenceError(f"gradient norm became {norm.item()} at step {self.step}")
        self.opt.step()
        with torch.no_grad():
            decay = c["train.ema"]
            for p_ema, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                p_ema.lerp_(p, 1.0 - decay)
        self.step += 1
        return values

    # -- evaluation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, n: int, draw: int = 0) -> torch.Tensor:
        """`n` samples in data space from the EMA model (the same starting noise every call)."""
        c = self.config
        sampler, grid = build_sampler(c, self.objective.logsnr_stop)
        gen = step_generator(c["seed"], draw, EVAL_STREAM, self.device)
        self.ema.eval()
        out = []
        grid = grid.to(self.device)
        batch = EVAL_BATCH.get(self.device.type, EVAL_BATCH["cpu"])
        for start in range(0, n, batch):
            shape = (min(batch, n - start), *self.dataset.shape)
            x = torch.randn(shape, generator=gen, device=gen.device)
            out.append(sampler(self.ema, x, grid, generator=gen).cpu())
        samples = torch.cat(out)
        return samples.clamp(-1, 1) if self.dataset.kind == "image" else samples

    def evaluate(self) -> dict[str, float]:
        """eval/... metrics of `eval.samples` samples; keeps them in `last_samples`."""
        c = self.config
        t0 = time.perf_counter()
        samples = self.sample(c["eval.samples"])
        t1 = time.perf_counter()
        self.last_samples = samples
        if self.dataset.kind == "lowdim":
            result = metrics.lowdim_metrics(
                samples, self.dataset.truth, self.dataset.test, self.dataset.minority
            )
        else:
            result = metrics.image_metrics(
                samples,
                c["data"],
                self.dataset.test,
                metrics.default_extractor(c["data"]),
                weights_path=c["eval.fid_weights"],
                minority=self.dataset.minority,
                device=self.device,
            )
        return result | {"time/sample_s": t1 - t0, "time/eval_s": time.perf_counter() - t0}

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "prepared": self.prepared,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "objective": {k: m.state_dict() for k, m in self.objective.modules().items()},
            "history": json.dumps(self.history),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.objective.restore(state["objective"], prepared=bool(state["prepared"]))
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])

    def save(self, path: str | Path) -> None:
        """Write the state atomically (a killed writer never leaves a half file behind)."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load(self, path: str | Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.load_state_dict(state)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path} does not exist") from None
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
            raise CheckpointError(
                f"checkpoint {path} is damaged or not a checkpoint of this trial: {e}"
            ) from None


def resolve_device(name: str) -> str:
    """ "auto" -> "cuda" when a GPU is visible, else "cpu"; other names are checked by torch."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device is visible; use auto or cpu")
    return name


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest checkpoint folder under `out_dir` that holds a state file."""
    found = LAYOUT.states(out_dir)
    return found[-1].parent if found else None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _say(text: str, overwrite: bool = False) -> None:
    end = "\r" if overwrite and sys.stderr.isatty() else "\n"
    print(text, end=end, file=sys.stderr, flush=True)


HEADLINE = ("eval/fid", "eval/nll")  # the metric a sample grid's caption shows, if present


class _Window:
    """Losses and step times since the last logged point (every train.log_every steps)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count, self.seconds = 0, 0.0

    def add(self, losses: dict[str, float], seconds: float) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count, self.seconds = self.count + 1, self.seconds + seconds

    def point(self, step: int) -> dict[str, Any]:
        """The window's means as one logged point, and a fresh window."""
        out = {"step": step} | {k: v / self.count for k, v in self.sums.items()}
        out["time/step_s"] = self.seconds / self.count
        self.__init__()
        return out


def _open(
    config: dict[str, Any],
    out: Path,
    resume_from: str | Path | None,
    device: str,
    disc_cache: str | None,
) -> Trainer:
    """The trial's trainer (resumed from a checkpoint folder if given) and its output folder."""
    trainer = Trainer(config, device=device, disc_cache=disc_cache)
    if resume_from is not None:
        trainer.load(Path(resume_from) / LAYOUT.state)
    out.mkdir(parents=True, exist_ok=True)
    (out / LAYOUT.config).write_text(json.dumps(trainer.config, indent=2) + "\n")
    if not (out / LAYOUT.weighting).exists():
        plots.save_weighting_plot(trainer.weighting, trainer.density, out / LAYOUT.weighting)
    return trainer


def _show_step(point: dict[str, Any], steps: int, eta_s: float, keep: bool) -> None:
    _say(
        f"step {point['step']}/{steps}  loss {point['loss/total']:.4f}  "
        f"{1 / point['time/step_s']:.1f} steps/s  eta {_duration(eta_s)}",
        overwrite=not keep,
    )


def _checkpoint(
    trainer: Trainer, out: Path, result: dict[str, Any], curve: list[dict], keep: int
) -> Path:
    """After an evaluation: the checkpoint folder (state, config, the curve since the last one),
    the captioned sample grid, and only the `keep` newest checkpoints left."""
    ckpt = out / LAYOUT.checkpoint_at(trainer.step)
    ckpt.mkdir(exist_ok=True)
    trainer.save(ckpt / LAYOUT.state)
    (ckpt / LAYOUT.config).write_text(json.dumps(trainer.config, indent=2) + "\n")
    (ckpt / LAYOUT.curve).write_text(json.dumps(curve) + "\n")
    headline = next((k for k in HEADLINE if k in result), None)
    caption = f"step {trainer.step}" + (f" · {headline} {result[headline]:.4g}" if headline else "")
    plots.save_sample_grid(
        trainer.last_samples,
        out / LAYOUT.samples_at(trainer.step),
        trainer.dataset.kind,
        truth=trainer.dataset.truth,
        caption=caption,
    )
    for old in sorted(out.glob(LAYOUT.checkpoint_glob))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return ckpt


def run_trial(
    config: dict[str, Any],
    out_dir: str | Path,
    report: Report | None = None,
    resume_from: str | Path | None = None,
    progress: bool = False,
    keep_checkpoints: int = 2,
    device: str = "cpu",
    disc_cache: str | None = None,
) -> dict[str, Any]:
    """Train one configuration, evaluating and checkpointing at `evaluation_steps`.

    Args:
        config: flat configuration (defaults fill what is missing).
        out_dir: folder for checkpoints, pictures, metrics.json and samples.npy.
        report: called after every evaluation with (metrics, checkpoint folder).
        resume_from: a checkpoint folder to continue from.
        progress: print progress lines on stderr.
        keep_checkpoints: how many of the newest checkpoint folders to keep.
        device: torch device that trains and samples ("cpu", "cuda", "cuda:1").
        disc_cache: folder or URI of the shared TIW discriminators (tuner/training/discriminators.py);
            None trains the trial's own.
    Returns:
        The metrics of the last evaluation.
    """
    out = Path(out_dir)
    trainer = _open(config, out, resume_from, device, disc_cache)
    c = trainer.config
    steps, log_every = c["train.steps"], c["train.log_every"]
    evaluate_at = set(evaluation_steps(steps, c["eval.every"], c["eval.growth"]))
    shown_every = log_every * max(1, round(steps / 20 / log_every))  # about 20 progress lines
    extra: dict[str, float] = {}
    if not trainer.prepared:
        t0 = time.perf_counter()
        extra = trainer.prepare() | {"time/prepare_s": time.perf_counter() - t0}
    window, curve = _Window(), []
    start_step, t_start = trainer.step, time.perf_counter()
    result: dict[str, Any] = trainer.history[-1] if trainer.history else {}
    while trainer.step < steps:
        t0 = time.perf_counter()
        window.add(trainer.train_step(), time.perf_counter() - t0)
        at_eval = trainer.step in evaluate_at
        if trainer.step % log_every and not at_eval:
            continue
        point = window.point(trainer.step)  # what is logged is what is shown
        if progress and (trainer.step % shown_every == 0 or at_eval):
            seconds_per_step = (time.perf_counter() - t_start) / (trainer.step - start_step)
            _show_step(point, steps, seconds_per_step * (steps - trainer.step), at_eval)
        if not at_eval:
            curve.append(point)
            continue
        if progress:
            _say(f"evaluating at step {trainer.step}: {c['eval.samples']} samples ...")
        result = point | extra | trainer.evaluate()
        result["time/total_s"] = time.perf_counter() - t_start
        trainer.history.append(result)
        extra = {}
        ckpt = _checkpoint(trainer, out, result, curve, keep_checkpoints)
        curve = []
        if progress:
            shown = {k: round(v, 4) for k, v in result.items() if k.startswith("eval/")}
            _say(f"eval at step {trainer.step} ({result['time/eval_s']:.1f} s): {shown}")
        if report is not None:
            report(result, str(ckpt))
    if trainer.last_samples is None:  # resumed at the end: sample once more for samples.npy
        trainer.last_samples = trainer.sample(c["eval.samples"])
    (out / "metrics.json").write_text(
        json.dumps({"config": c, "history": trainer.history, "final": result}, indent=2) + "\n"
    )
    np.save(out / "samples.npy", trainer.last_samples.numpy())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="set a config key"
    )
    parser.add_argument("--config", help="a saved flat configuration (e.g. best.json)")
    parser.add_argument("--out", help="output folder (default runs/<data>-<weighting>-seed<seed>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --out"
    )
    parser.add_argument(
        "--fid-weights", help="local Inception weights file (config key eval.fid_weights)"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:N"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    try:
        overrides = load_config_file(args.config) if args.config else {}
        overrides |= dict(parse_set(item) for item in args.set)
        if args.fid_weights:
            overrides["eval.fid_weights"] = args.fid_weights
        config = resolve(overrides)
        device = resolve_device(args.device)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(
        args.out
        or f"runs/{config['data'].replace(':', '_').replace('/', '_')}-{config['weighting']}-seed{config['seed']}"
    )
    resume_from = latest_checkpoint(out) if args.resume else None
    if args.resume and resume_from is None:
        print(
            f"error: --resume: no {LAYOUT.checkpoint_glob}/{LAYOUT.state} under {out}",
            file=sys.stderr,
        )
        return 2
    try:
        t0 = time.perf_counter()
        cache = str(Path(discriminators.DEFAULT_CACHE).expanduser())
        final = run_trial(
            config,
            out,
            resume_from=resume_from,
            progress=not args.quiet,
            device=device,
            disc_cache=cache,
        )
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DivergenceError as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        return 1
    shown = {k: round(v, 4) for k, v in final.items() if k.startswith("eval/")}
    print(f"done in {time.perf_counter() - t0:.1f}s: {shown}")
    print(f"wrote {out / 'metrics.json'} and {out / 'samples.npy'}")
    return 0
