"""Ray Tune's objects for a plan: the parameter space, the searcher, the scheduler, the MLflow
callback, and the Tuner that runs (or resumes) one stage of a search. The Ray instance they
run on is tuner/search/cluster.py's."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    PopulationBasedTraining,
)
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

import search_spaces
from tuner.search.faults import FaultWatch, StoppableTuner
from tuner.search.options import ASHA_REDUCTION, OPTUNA_SEARCHES
from tuner.search.plan import Plan, optuna_storage, search_params
from tuner.search.study import StudySearcher
from tuner.storage import is_uri
from tuner.tracking import callback as tracking
from tuner.tracking.progress import StageProgress


def param_space(plan: Plan) -> dict[str, Any]:
    space = dict(plan.fixed)
    for key, spec in plan.params.items():
        if plan.search == "grid":
            space[key] = tune.grid_search(search_spaces.grid_values(spec))
        else:
            space[key] = search_spaces.tune_domain(spec)
    return space


def make_search_alg(plan: Plan, max_concurrent: int = 0, study: str | None = None) -> Any:
    """The searcher; max_concurrent (0: no limit) caps the trials it lets run at once.

    With `study` (a study name), TPE keeps its trials in `optuna_storage(plan)`, where
    `optuna-dashboard` opens them; a trial the scheduler stopped is told to it as
    `plan.stopped` says (tuner/search/study.py)."""
    if plan.search in OPTUNA_SEARCHES:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if plan.search == "qmc":  # scrambled Sobol points (the first one is a random draw)
            sampler = optuna.samplers.QMCSampler(
                qmc_type="sobol", scramble=True, seed=plan.seed, warn_independent_sampling=False
            )  # categorical parameters are drawn by its seeded random sampler
        else:
            startup = max(2, min(10, plan.num_samples // 3))  # TPE takes over after these
            sampler = optuna.samplers.TPESampler(seed=plan.seed, n_startup_trials=startup)
        kwargs: dict[str, Any] = {}
        if study is not None:
            storage = optuna_storage(plan)
            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            kwargs = {"storage": storage, "study_name": study}
        searcher = StudySearcher(sampler, max_steps=plan.max_steps, stopped=plan.stopped, **kwargs)
        return ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
    # Ray ignores TuneConfig.max_concurrent_trials for a generator like this one (with only a
    # warning): the limit has to be given to the generator itself.
    return BasicVariantGenerator(random_state=plan.seed, max_concurrent=max_concurrent)


def make_scheduler(plan: Plan) -> Any:
    if plan.scheduler == "asha":
        # Rungs at grace·3^k are multiples of eval.every: every rung is an evaluation.
        return ASHAScheduler(
            time_attr="step",
            max_t=plan.max_steps,
            grace_period=min(plan.eval_every, plan.max_steps),
            reduction_factor=ASHA_REDUCTION,
            brackets=plan.brackets,
        )
    if plan.scheduler == "hyperband":
        # Synchronous successive halving in brackets, counted in evaluations (eval.growth=1: one
        # report every eval.every steps), so that its milestones fall on evaluations.
        return HyperBandScheduler(
            time_attr="training_iteration",
            max_t=len(plan.eval_steps),
            reduction_factor=ASHA_REDUCTION,
        )
    if plan.scheduler == "pbt":
        # The weighting parameters become a schedule over training: at every evaluation a
        # bottom-quartile trial continues from a top trial's checkpoint with perturbed values.
        return PopulationBasedTraining(
            time_attr="step",
            perturbation_interval=plan.eval_every,
            hyperparam_mutations={k: _mutation(plan.params[k]) for k in plan.pbt_mutations},
            quantile_fraction=0.25,
            resample_probability=0.25,
            custom_explore_fn=functools.partial(clip_to_ranges, ranges=_ranges(plan)),
        )
    return FIFOScheduler()


def _mutation(spec: dict[str, Any]) -> Any:
    """PBT shifts a list's value to a neighbour; a Tune domain is resampled or scaled by 0.8/1.2."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    return search_spaces.tune_domain(spec)


def _ranges(plan: Plan) -> dict[str, tuple[float, float]]:
    params = plan.params
    return {
        k: (params[k]["low"], params[k]["high"]) for k in plan.pbt_mutations if "low" in params[k]
    }


def clip_to_ranges(
    config: dict[str, Any], ranges: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    """Keep PBT's scaled values inside the space's ranges."""
    for key, (low, high) in ranges.items():
        value = min(max(config[key], low), high)
        config[key] = type(config[key])(value)
    return config


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def tracking_callback(plan: Plan, search_id: str, resolve_config: Any, **kwargs: Any) -> Any:
    """The MLflow callback of one stage of the search (the parent run is the search's)."""
    return tracking.MlflowTracking(
        tracking_uri=plan.mlflow_uri,
        experiment=plan.mlflow_experiment,
        search=search_id,
        search_params=search_params(plan),
        metric=plan.metric,
        mode=plan.mode,
        resolve_config=resolve_config,
        **kwargs,
    )


def save_state_at_every_step(experiment_dir: str) -> None:
    """Save the experiment state at every controller step: a trial that ended (or started) is on
    disk at once, so a killed driver neither loses nor reruns it, nor leaves behind a trial it
    had started. (Saving once a second instead spares the driver most of its CPU while trials
    train, but a kill orphans a trial started in that second: the killed-driver resume test
    caught it.)"""
    if not is_uri(experiment_dir):
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def stage_trials(param_space: dict[str, Any] | None, num_samples: int) -> int:
    """The trials of a stage: its samples times the size of its grid, if it has one."""
    grids = [v for v in (param_space or {}).values() if isinstance(v, dict) and "grid_search" in v]
    return num_samples * math.prod(len(v["grid_search"]) for v in grids)


def stage_progress(
    plan: Plan, stage: str, param_space: dict[str, Any] | None, num_samples: int, scheduler: Any
) -> Any:
    """The live status line of a stage; its estimate counts ASHA's rungs when ASHA stops trials."""
    asha = plan.scheduler == "asha" and scheduler is not None
    return StageProgress(
        stage=stage,
        total=stage_trials(param_space, num_samples),
        final=plan.max_steps,
        rungs=plan.eval_steps[:-1] if asha else [],
        reduction=ASHA_REDUCTION,
        metric=plan.metric,
        mode=plan.mode,
    )


def make_tuner(
    plan: Plan,
    trainable: Any,
    *,
    name: str,
    param_space: dict[str, Any] | None,
    search_alg: Any,
    scheduler: Any,
    num_samples: int,
    callback: Any,
    resume: bool,
) -> Any:
    """A Tuner for one stage of the search (`name` under the plan's storage), or the restored
    one when `resume`: finished trials are kept, unfinished ones continue from checkpoints. Its
    `fit` raises `faults.Stopped` when the stage was stopped (Ctrl-C, an I/O fault). Its
    callbacks: the stop and retry decisions, the MLflow tracking, the stage's status line."""
    resources = tune.with_resources(
        trainable, {"cpu": plan.cpus_per_trial, "gpu": plan.gpus_per_trial}
    )
    path = f"{plan.storage.rstrip('/')}/{name}"
    if resume:  # (with the callbacks the stage was started with, saved in its tuner.pkl)
        restored = tune.Tuner.restore(path, resources, resume_unfinished=True, resume_errored=False)
        return StoppableTuner(restored)
    stage = getattr(callback, "stage", "search")
    progress = stage_progress(plan, stage, param_space, num_samples, scheduler)
    tuner = tune.Tuner(
        resources,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=plan.metric,
            mode=plan.mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=num_samples,
            trial_dirname_creator=trial_dirname,
            # A finished trial's worker process runs the next trial: no new process (and no
            # new import of torch) between trials.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=plan.storage,
            # (in this order: the tracking's lines are written before the status line's redraw)
            callbacks=[FaultWatch(callback, plan.experiment_dir), callback, progress],
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1,  # the best by the metric, and always the latest
                checkpoint_score_attribute=plan.metric,
                checkpoint_score_order=plan.mode,
            ),
            # Ray's status table never: the stage's status line stands for it. (Kept the same
            # for --verbose, which turns Ray's new output engine on instead: a resumed stage
            # keeps the RunConfig it was started with, tuner/search/cluster.py.)
            verbose=0,
        ),
    )
    return StoppableTuner(tuner)
