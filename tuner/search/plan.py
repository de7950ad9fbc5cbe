"""The plan of a search: every option checked and resolved before Ray starts.

`make_plan` turns the parsed command line into a frozen `Plan`, checking each option with
tuner/search/options.py (which raises `UsageError` / `ConfigError` with one line); `describe_plan`
prints it. Nothing here starts Ray, MLflow or a trial, or touches the file system
(tuner/search/checks.py does what needs them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import search_spaces
from search_spaces import SMOKE, SMOKE_NUM_SAMPLES, SPACES
from tuner.config.spec import ConfigError, evaluation_steps, parse_set
from tuner.search.options import (
    ASHA_REDUCTION,
    CONNECT_TIMEOUT,
    OPTUNA_SEARCHES,
    SCHEDULERS,
    STOPPED_POLICIES,
    UsageError,
    check_choice,
    check_counts,
    check_schedule,
    check_values,
    confirmation,
    experiment_name,
    metric_and_mode,
    pbt_mutations,
    search_of,
)
from tuner.storage import is_uri
from tuner.tracking.store import default_tracking_uri, is_local_store


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
    stopped: str = "pruned"  # how a trial the scheduler stopped is told to an Optuna searcher
    brackets: int = 1  # ASHA's brackets (each starts its rungs one rung later)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def _fixed(args: argparse.Namespace, space: dict[str, Any], sets: dict[str, Any]) -> dict:
    """The config keys every trial shares: the space's, the smoke budget, the resources, the
    evaluation steps ASHA decides at, then --set."""
    fixed = {"data": space["data"]} | space["fixed"]
    if args.smoke_test:
        fixed |= SMOKE
    fixed["train.threads"] = max(1, int(args.cpus_per_trial))
    if args.scheduler == "asha":  # evaluate where ASHA decides, not in between
        fixed["eval.growth"] = float(ASHA_REDUCTION)
    return fixed | sets


def _trial_count(
    args: argparse.Namespace, space: dict[str, Any], search: str, params: dict
) -> tuple[int, int]:
    """(num_samples, trials): a grid's points times its repeats, else the samples."""
    if search == "grid":
        num_samples = args.num_samples or 1
        return num_samples, num_samples * max(1, len(search_spaces.grid({"params": params})))
    default = SMOKE_NUM_SAMPLES if args.smoke_test else space["num_samples"]
    num_samples = args.num_samples or default
    return num_samples, num_samples


def make_plan(args: argparse.Namespace) -> Plan:
    """Validate the options and resolve them into a plan (raises UsageError / ConfigError)."""
    check_choice("--space", args.space, list(SPACES))
    check_choice("--scheduler", args.scheduler, SCHEDULERS)
    check_choice("--stopped", args.stopped, STOPPED_POLICIES)
    check_counts(args)
    space = SPACES[args.space]
    search = search_of(args, space)
    sets = dict(parse_set(item) for item in args.set)
    fixed = _fixed(args, space, sets)
    fixed_keys = set(sets) | (set(SMOKE) if args.smoke_test else set())  # smoke budget wins
    params = search_spaces.params_of(space, fixed_keys=fixed_keys)
    base = check_values(fixed, params, space)
    growth = base["eval.growth"]
    check_schedule(args.scheduler, growth)
    if not params and search != "grid":
        search = "grid"  # nothing to sample: one trial of the fixed config
    metric, mode = metric_and_mode(args, base["data"])
    num_samples, trials = _trial_count(args, space, search, params)
    storage = args.storage if is_uri(args.storage) else str(Path(args.storage).resolve())
    name = experiment_name(args, search, num_samples, sets, metric)
    confirm, confirm_seeds = confirmation(args, metric)
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
        pbt_mutations=pbt_mutations(args.scheduler, params, args.space),
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
        stopped=args.stopped,
        brackets=args.brackets,
    )


def _scheduler_line(plan: Plan) -> str:
    if plan.scheduler == "asha":
        told = (
            f"; stopped trials told to Optuna as {plan.stopped}"
            if plan.search in OPTUNA_SEARCHES
            else ""
        )
        brackets = f", {plan.brackets} brackets" if plan.brackets > 1 else ""
        return (
            f"asha on {plan.metric} (time: step, grace {plan.eval_every}, max {plan.max_steps}, "
            f"reduction {ASHA_REDUCTION}{brackets}; evaluations at steps "
            f"{', '.join(map(str, plan.eval_steps))}{told})"
        )
    if plan.scheduler == "hyperband":
        return (
            f"hyperband on {plan.metric} (time: evaluations of {plan.eval_every} steps, max "
            f"{len(plan.eval_steps)}, reduction {ASHA_REDUCTION})"
        )
    if plan.scheduler == "pbt":
        return f"pbt every {plan.eval_every} steps, mutating {', '.join(plan.pbt_mutations)}"
    return (
        f"fifo (no early stopping: every trial runs to step {plan.max_steps}; evaluations at "
        f"steps {', '.join(map(str, plan.eval_steps))})"
    )


def _confirm_line(plan: Plan) -> str:
    if not plan.confirm:
        return "off"
    reference = "reference" in SPACES[plan.space]  # (the paper's recipe, retrained too)
    arms = plan.confirm + 1 + reference
    which = ", the baseline and the reference" if reference else " and the baseline"
    return (
        f"top {plan.confirm}{which} on {plan.confirm_seeds} fresh seeds "
        f"({plan.confirm_seeds * arms} trials)"
    )


def _ray_line(plan: Plan) -> str:
    if not plan.address:
        return "local instance"
    wait = "; trials no node fits wait for nodes" if plan.wait_for_nodes else ""
    return f"{plan.address} (answering within {plan.connect_timeout:g} s{wait})"


def describe_plan(plan: Plan, resuming: bool | None) -> str:
    search = {
        "optuna": f"optuna TPE (seed {plan.seed})",
        "qmc": f"optuna quasi-random (scrambled Sobol, seed {plan.seed})",
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


def optuna_storage(plan: Plan) -> str:
    """Where the search's Optuna study is kept (SQLite, beside a local MLflow store)."""
    uri = plan.mlflow_uri
    folder = Path(uri.removeprefix("sqlite:///")).parent if is_local_store(uri) else Path("mlruns")
    return f"sqlite:///{folder.resolve() / 'optuna.db'}"


__all__ = [
    "ConfigError",
    "Plan",
    "UsageError",
    "describe_plan",
    "make_plan",
    "optuna_storage",
    "search_params",
]
