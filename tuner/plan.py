"""The plan of a search: every option checked and resolved before Ray starts.

`make_plan` turns the parsed command line into a frozen `Plan` (or raises `UsageError` /
`ConfigError` with one line); `describe_plan` prints it. Nothing here starts Ray, MLflow or a
trial, or touches the file system (tuner/checks.py does what needs them).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import search_spaces
from search_spaces import POINT_KEY, SMOKE, SMOKE_NUM_SAMPLES, SPACES
from tuner.config import ConfigError, evaluation_steps, parse_set, resolve
from tuner.data import DATASETS, FOLDER
from tuner.storage import is_uri
from tuner.tracking import default_tracking_uri

SEARCHES = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "pbt", "fifo")
IMAGE_METRIC = "eval/fid"
LOWDIM_METRIC = "eval/nll"
ASHA_REDUCTION = 3
CONFIRM, CONFIRM_SEEDS = 2, 3  # image spaces' default confirmation: top 2 on 3 fresh seeds
SMOKE_CONFIRM, SMOKE_CONFIRM_SEEDS = 1, 2
CONNECT_TIMEOUT = 5.0  # seconds a Ray at --address (or a download server) has to answer in
MAX_SEED = 2**32 - 1  # numpy's and Optuna's seeds are 32-bit


class UsageError(ValueError):
    """A command-line value that is not allowed (one line, exit status 2)."""


@dataclass(frozen=True)
class Plan:
    """What a search will do, decided before Ray starts (saved with the experiment)."""

    space: str
    data: str
    metric: str
    mode: str  # "min" or "max"
    search: str  # one of SEARCHES
    scheduler: str  # one of SCHEDULERS
    num_samples: int
    trials: int
    seed: int  # the search algorithm's seed
    max_steps: int
    eval_every: int
    eval_steps: list[int]
    fixed: dict[str, Any]  # config keys shared by every trial
    params: dict[str, dict[str, Any]]  # the searched parameters' specs
    pbt_mutations: list[str]
    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int | None
    max_failures: int
    storage: str
    name: str
    experiment_dir: str
    mlflow_uri: str
    mlflow_experiment: str
    address: str | None
    num_cpus: int | None
    smoke_test: bool
    confirm: int = 0  # top trials retrained on fresh seeds with the baseline (0 = off)
    confirm_seeds: int = 0  # fresh training seeds of the confirmation
    connect_timeout: float = CONNECT_TIMEOUT  # seconds --address has to answer in
    wait_for_nodes: bool = False  # trials no node fits wait for nodes to join instead of failing

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def metric_for(data: str) -> str:
    """eval/fid for image presets (digits, CIFAR-10, folders), eval/nll for low-dim mixtures."""
    entry = DATASETS.entry(FOLDER if data.startswith("folder:") else data)
    return IMAGE_METRIC if entry.info["kind"] == "image" else LOWDIM_METRIC


def _check_choice(option: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise UsageError(f"{option} {value!r} is not known; choose one of {', '.join(allowed)}")


def _check_range(option: str, value: float | None, low: float, high: float, kind: str) -> None:
    """A numeric option in [low, high] (and finite), worded like a --set value."""
    if value is None:
        return
    if not (math.isfinite(value) and low <= value <= high):
        lo, hi = (f"{v:.0f}" if float(v).is_integer() else f"{v:g}" for v in (low, high))
        raise UsageError(f"{option} {value:g} is not allowed; expected {kind} in [{lo}, {hi}]")


def _check_counts(args: argparse.Namespace) -> None:
    for option, least in (("num_samples", 1), ("max_concurrent", 1), ("max_failures", 0)):
        value = getattr(args, option)
        if value is not None and value < least:
            raise UsageError(f"--{option.replace('_', '-')} {value} must be at least {least}")
    _check_range("--seed", args.seed, 0, MAX_SEED, "an integer")
    _check_range("--num-cpus", args.num_cpus, 1, math.inf, "an integer")
    _check_range("--cpus-per-trial", args.cpus_per_trial, 1e-4, math.inf, "a number")
    _check_range("--gpus-per-trial", args.gpus_per_trial, 0, math.inf, "a number")
    _check_range("--connect-timeout", args.connect_timeout, 0.1, 600, "a number of seconds")
    if args.address is not None and args.num_cpus is not None:
        raise UsageError(
            f"--num-cpus {args.num_cpus} sizes the local Ray instance; with --address "
            f"{args.address} the cluster's nodes say how many CPUs there are"
        )
    if args.name is not None and (args.name in ("", ".", "..") or "/" in args.name):
        raise UsageError(
            f"--name {args.name!r} is not allowed; expected a folder name (no '/', not '.' or '..')"
        )


def _confirmation(args: argparse.Namespace, metric: str) -> tuple[int, int]:
    """(K, N): on by default for image spaces (K = 0 turns it off)."""
    smoke = args.smoke_test
    default_k = (SMOKE_CONFIRM if smoke else CONFIRM) if metric == IMAGE_METRIC else 0
    k = default_k if args.confirm is None else args.confirm
    default_n = SMOKE_CONFIRM_SEEDS if smoke else CONFIRM_SEEDS
    n = default_n if args.confirm_seeds is None else args.confirm_seeds
    if k < 0:
        raise UsageError(f"--confirm {k} must be at least 0 (0 turns the confirmation off)")
    if n < 2:
        raise UsageError(f"--confirm-seeds {n} must be at least 2 (an interval needs 2 seeds)")
    if k and "baseline" not in SPACES[args.space]:
        raise UsageError(f"--confirm {k}: space {args.space} names no baseline to compare with")
    return k, (n if k else 0)


def _search_of(args: argparse.Namespace, space: dict[str, Any]) -> str:
    search = args.search or ("random" if args.scheduler == "pbt" else space.get("search", "optuna"))
    _check_choice("--search", search, SEARCHES)
    if args.scheduler == "pbt" and search != "random":
        raise UsageError(
            f"--scheduler pbt takes its initial population from --search random, not {search}"
        )
    return search


def _check_values(
    fixed: dict[str, Any], params: dict[str, dict[str, Any]], space: dict[str, Any]
) -> dict[str, Any]:
    """The resolved fixed config; every value a parameter can take is checked with it."""
    base = resolve(fixed)
    for key, spec in params.items():
        if key == POINT_KEY:
            for name in spec["choices"]:
                resolve(search_spaces.expand(fixed | {POINT_KEY: name}, space))
            continue
        ends = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        for value in ends:
            resolve(fixed | {key: value})
    return base


def _check_schedule(scheduler: str, growth: float) -> None:
    if scheduler == "asha" and growth not in (1.0, float(ASHA_REDUCTION)):
        raise UsageError(
            f"eval.growth={growth:g} puts evaluations off ASHA's rungs (every·{ASHA_REDUCTION}^k): "
            f"use eval.growth=1 or {ASHA_REDUCTION}"
        )
    if scheduler == "pbt" and growth != 1.0:
        raise UsageError(
            f"eval.growth={growth:g} with --scheduler pbt: PBT exploits at a fixed interval, "
            "use eval.growth=1"
        )


def _metric_and_mode(args: argparse.Namespace, data: str) -> tuple[str, str]:
    """The metric to optimise, checked against what the trainer reports for the data (the one
    list, tuner.metrics), and whether lower or higher is better."""
    from tuner.metrics import METRICS, preset_metrics

    reported = preset_metrics(data)
    metric = args.metric or metric_for(data)
    if metric not in reported:
        raise UsageError(
            f"--metric {metric!r} is not reported for data {data}; choose one of "
            f"{', '.join(reported)}"
        )
    return metric, METRICS[metric]


def _pbt_mutations(scheduler: str, params: dict[str, dict[str, Any]], space: str) -> list[str]:
    """The parameters PBT perturbs: the weighting's, else every numeric one."""
    if scheduler != "pbt":
        return []
    mutable = [k for k in params if k.startswith("weighting.")]
    mutable = mutable or [
        k for k, s in params.items() if s["type"] != "categorical" and k != POINT_KEY
    ]
    if not mutable:
        raise UsageError(f"--scheduler pbt needs numeric parameters; space {space} has none left")
    return mutable


def _experiment_name(
    args: argparse.Namespace, search: str, num_samples: int, sets: dict, metric: str
) -> str:
    """Derived from the options that define the search, so that rerunning it resumes it."""
    if args.name:
        return args.name
    key = json.dumps(
        [
            args.space,
            search,
            args.scheduler,
            num_samples,
            sorted(sets.items()),
            args.seed,
            metric,
            args.smoke_test,
        ],
        default=str,
    )
    smoke = "-smoke" if args.smoke_test else ""
    return f"{args.space}{smoke}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def make_plan(args: argparse.Namespace) -> Plan:
    """Validate the options and resolve them into a plan (raises UsageError / ConfigError)."""
    _check_choice("--space", args.space, list(SPACES))
    _check_choice("--scheduler", args.scheduler, SCHEDULERS)
    _check_counts(args)
    space = SPACES[args.space]
    search = _search_of(args, space)

    sets = dict(parse_set(item) for item in args.set)
    fixed = {"data": space["data"]} | space["fixed"]
    if args.smoke_test:
        fixed |= SMOKE
    fixed["train.threads"] = max(1, int(args.cpus_per_trial))
    if args.scheduler == "asha":  # evaluate where ASHA decides, not in between
        fixed["eval.growth"] = float(ASHA_REDUCTION)
    fixed |= sets
    fixed_keys = set(sets) | (set(SMOKE) if args.smoke_test else set())  # smoke budget wins
    params = search_spaces.params_of(space, fixed_keys=fixed_keys)
    base = _check_values(fixed, params, space)
    growth = base["eval.growth"]
    _check_schedule(args.scheduler, growth)
    if not params and search != "grid":
        search = "grid"  # nothing to sample: one trial of the fixed config
    metric, mode = _metric_and_mode(args, base["data"])
    if search == "grid":
        num_samples = args.num_samples or 1
        trials = num_samples * max(1, len(search_spaces.grid({"params": params})))
    else:
        num_samples = args.num_samples or (
            SMOKE_NUM_SAMPLES if args.smoke_test else space["num_samples"]
        )
        trials = num_samples
    storage = args.storage if is_uri(args.storage) else str(Path(args.storage).resolve())
    name = _experiment_name(args, search, num_samples, sets, metric)
    confirm, confirm_seeds = _confirmation(args, metric)
    return Plan(
        space=args.space,
        data=base["data"],
        metric=metric,
        mode=mode,
        search=search,
        scheduler=args.scheduler,
        num_samples=num_samples,
        trials=trials,
        seed=args.seed,
        max_steps=base["train.steps"],
        eval_every=base["eval.every"],
        eval_steps=evaluation_steps(base["train.steps"], base["eval.every"], growth),
        fixed=fixed,
        params=params,
        pbt_mutations=_pbt_mutations(args.scheduler, params, args.space),
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        max_failures=args.max_failures,
        storage=storage,
        name=name,
        experiment_dir=f"{storage.rstrip('/')}/{name}",
        mlflow_uri=args.mlflow_uri or default_tracking_uri(),
        mlflow_experiment=f"diffsearch-{args.space}",
        address=args.address,
        num_cpus=args.num_cpus,
        smoke_test=args.smoke_test,
        confirm=confirm,
        confirm_seeds=confirm_seeds,
        connect_timeout=args.connect_timeout,
        wait_for_nodes=args.wait_for_nodes,
    )


def _scheduler_line(plan: Plan) -> str:
    if plan.scheduler == "asha":
        return (
            f"asha on {plan.metric} (time: step, grace {plan.eval_every}, max {plan.max_steps}, "
            f"reduction {ASHA_REDUCTION}; evaluations at steps {', '.join(map(str, plan.eval_steps))})"
        )
    if plan.scheduler == "pbt":
        return f"pbt every {plan.eval_every} steps, mutating {', '.join(plan.pbt_mutations)}"
    return plan.scheduler


def _confirm_line(plan: Plan) -> str:
    if not plan.confirm:
        return "off"
    return (
        f"top {plan.confirm} and the baseline on {plan.confirm_seeds} fresh seeds "
        f"({plan.confirm_seeds * (plan.confirm + 1)} trials)"
    )


def _ray_line(plan: Plan) -> str:
    if not plan.address:
        return "local instance"
    wait = "; trials no node fits wait for nodes" if plan.wait_for_nodes else ""
    return f"{plan.address} (answering within {plan.connect_timeout:g} s{wait})"


def describe_plan(plan: Plan, resuming: bool | None) -> str:
    search = {
        "optuna": f"optuna TPE (seed {plan.seed})",
        "random": f"random (seed {plan.seed})",
    }.get(plan.search, "grid")
    state = "" if resuming is None else ("  (resuming)" if resuming else "  (new)")
    lines = [
        f"space       {plan.space}  (data {plan.data})",
        f"objective   {plan.mode} {plan.metric}",
        f"search      {search}, {plan.trials} trials",
        f"scheduler   {_scheduler_line(plan)}",
        f"resources   {plan.cpus_per_trial:g} CPU, {plan.gpus_per_trial:g} GPU per trial; "
        f"max concurrent {plan.max_concurrent or 'auto'}; max failures {plan.max_failures}",
        f"confirm     {_confirm_line(plan)}",
        f"ray         {_ray_line(plan)}",
        f"experiment  {plan.experiment_dir}{state}",
        f"mlflow      {plan.mlflow_uri}  experiment {plan.mlflow_experiment}",
        "parameters",
    ]
    params = plan.params.items()
    lines += [f"  {k:<22} {search_spaces.describe_param(s)}" for k, s in params] or ["  (none)"]
    lines.append("fixed")
    lines += [f"  {k:<22} {json.dumps(v)}" for k, v in plan.fixed.items()]
    return "\n".join(lines)


def search_params(plan: Plan) -> dict[str, Any]:
    """The flat description of a search that MLflow logs on its parent run."""
    keys = ("space", "data", "metric", "mode", "search", "scheduler", "num_samples", "seed", "name")
    out: dict[str, Any] = {k: getattr(plan, k) for k in keys}
    out |= {f"fixed.{k}": v for k, v in plan.fixed.items()}
    out |= {f"param.{k}": search_spaces.describe_param(s) for k, s in plan.params.items()}
    return out


__all__ = ["ConfigError", "Plan", "UsageError", "describe_plan", "make_plan", "metric_for"]
