"""The Ray Tune trainable: the same `run_trial` loop as `python -m tuner.train`.

It only orchestrates: expand the trial's config, resume from `tune.get_checkpoint()`, and turn
every evaluation into one `tune.report(metrics, checkpoint=...)`. The sample grid and the
weighting plot ride in the checkpoint folder, so they reach Ray's storage with it.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from ray import tune

import search_spaces
from tuner.config.spec import ConfigError, resolve
from tuner.data.presets import DATASETS, DataError
from tuner.evaluation.metrics import preset_metrics
from tuner.tracking.store import FAULT_ERROR, FAULT_IO, FAULT_KIND, FAULT_REPEATS, io_problem
from tuner.training.checkpoint import LAYOUT
from tuner.training.trainer import CheckpointError, DivergenceError, run_trial

ARTIFACTS = (LAYOUT.samples, LAYOUT.weighting)  # pictures copied into the checkpoint folders


# Errors a retry of the trial would meet again: not retried (tuner/search/faults.py, FaultWatch).
REPEATS = (DivergenceError, DataError, ConfigError, KeyError)
FAULT_WAIT_S = 120.0  # an I/O-faulted trial waits this long for the driver to stop the search
CANDIDATE_KEY = "candidate"  # a confirmation trial's label of the configuration it retrains


def trial_overrides(
    config: dict[str, Any], candidates: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A Ray trial config as config keys: a named point expanded, or a confirmation trial's
    candidate looked up and given the trial's seed."""
    if CANDIDATE_KEY in config:
        if not candidates or config[CANDIDATE_KEY] not in candidates:
            raise KeyError(f"unknown confirmation candidate {config[CANDIDATE_KEY]!r}")
        return candidates[config[CANDIDATE_KEY]] | {"seed": config["seed"]}
    return search_spaces.expand(config)


def trial_config(
    config: dict[str, Any], candidates: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The full flat configuration of a Ray trial config (named point expanded, defaults filled)."""
    return resolve(trial_overrides(config, candidates))


def _reportable(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numbers only; a non-finite metric becomes NaN so that no search ranks it best."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = value if isinstance(value, int) or math.isfinite(value) else float("nan")
    return out


def _device() -> str:
    """ "cuda" when the trial holds a GPU (Ray sets CUDA_VISIBLE_DEVICES to it), else "cpu"."""
    gpus = tune.get_context().get_trial_resources().required_resources.get("GPU", 0)
    if not gpus:
        return "cpu"
    if not torch.cuda.is_available():
        warnings.warn(
            "this trial holds a GPU but torch sees none: training on the CPU", stacklevel=2
        )
        return "cpu"
    return "cuda"


def run_with_fallback(
    overrides: dict[str, Any],
    out_dir: Path,
    report: Any,
    folders: list[Path],
    **kwargs: Any,
) -> dict[str, Any]:
    """run_trial resumed from the first of the checkpoint `folders` that loads.

    A damaged checkpoint is named in a warning and the next (older) candidate is tried; when none
    loads, the trial starts again from step 0. It never resumes from a half-read state.
    """
    for folder in folders:
        try:
            return run_trial(overrides, out_dir, report=report, resume_from=folder, **kwargs)
        except CheckpointError as e:
            warnings.warn(f"{e}; trying an older checkpoint, else step 0", stacklevel=2)
    return run_trial(overrides, out_dir, report=report, **kwargs)


def _fault_metrics(config: dict[str, Any], candidates: dict[str, dict] | None) -> list[str]:
    """The metrics a flagged result holds as NaN (Ray's searchers read theirs from every result)."""
    try:
        names = [trial_config(config, candidates)["data"]]
    except Exception:  # noqa: BLE001 - an unreadable config: every preset's names
        names = list(DATASETS)
    return sorted({m for name in names for m in preset_metrics(name)})


def flag_fault(error: Exception, config: dict[str, Any], candidates: dict | None) -> None:
    """Tell the driver, in a last result, about an error it must act on before Ray does: one a
    retry would repeat (it is not retried), or an I/O fault (the search stops; this trial waits
    to be stopped, and a resume continues it from its last checkpoint). Others: nothing."""
    if isinstance(error, REPEATS):
        kind = FAULT_REPEATS
    elif io_problem(error, "") is not None:
        kind = FAULT_IO
    else:
        return
    result: dict[str, Any] = {m: math.nan for m in _fault_metrics(config, candidates)}
    # Step 0: schedulers need a time, and 0 is before every ASHA rung and PBT perturbation.
    result |= {"step": 0, FAULT_KIND: kind, FAULT_ERROR: f"{type(error).__name__}: {error}"}
    tune.report(result)
    if kind == FAULT_IO:
        time.sleep(FAULT_WAIT_S)


def train_trial(
    config: dict[str, Any],
    disc_cache: str | None = None,
    candidates: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Ray Tune function trainable: one trial of `tuner.training.trainer.run_trial`.

    Args:
        config: the trial's config from the search (a named point expanded), or, in the
            confirmation stage, ``{"candidate": label, "seed": s}`` naming one of `candidates`.
        disc_cache: folder or URI of the search's shared TIW discriminators.
        candidates: the confirmation stage's configurations by label.
    """
    try:
        _train_trial(config, disc_cache, candidates)
    except Exception as e:
        flag_fault(e, config, candidates)
        raise


def _train_trial(
    config: dict[str, Any],
    disc_cache: str | None = None,
    candidates: dict[str, dict[str, Any]] | None = None,
) -> None:
    """`train_trial`'s work: resume, train, report every evaluation."""
    # Ray runs each trial in a working folder of its own on the node (not synced to storage);
    # what must survive goes into the checkpoints, which Ray persists.
    out_dir = Path.cwd() / f"trial_{tune.get_context().get_trial_id()}"

    def report(metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        if checkpoint_dir is None:
            tune.report(_reportable(metrics))
            return
        step = int(metrics["step"])
        for pattern in ARTIFACTS:
            path = out_dir / pattern.format(step=step)
            if path.exists():
                shutil.copy2(path, Path(checkpoint_dir) / path.name)
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir)
        tune.report(_reportable(metrics), checkpoint=checkpoint)

    overrides = trial_overrides(config, candidates)
    kwargs = {"device": _device(), "disc_cache": disc_cache}
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(overrides, out_dir, report=report, **kwargs)
        return
    # Ray's checkpoint first, then the trial's own older ones on this node (newest first).
    local = LAYOUT.states(out_dir)[::-1]
    with checkpoint.as_directory() as resume_from:
        folders = [Path(resume_from)] + [p.parent for p in local]
        run_with_fallback(overrides, out_dir, report, folders, **kwargs)
