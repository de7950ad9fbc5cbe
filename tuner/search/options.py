"""The search's command-line options, checked one by one before a plan is made.

Each check raises `UsageError` (or `ConfigError` for a configuration value) with one line that
names the option and what is allowed; `tuner.search.plan.make_plan` calls them in order. Nothing here
starts Ray, MLflow or a trial, or touches the file system.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from typing import Any

import search_spaces
from search_spaces import POINT_KEY, SPACES
from tuner.config.spec import resolve
from tuner.data.presets import DATASETS, FOLDER

SEARCHES = ("optuna", "qmc", "random", "grid")
OPTUNA_SEARCHES = ("optuna", "qmc")  # kept in an Optuna study (TPE; quasi-random Sobol)
SCHEDULERS = ("asha", "hyperband", "pbt", "fifo")
# How a trial the scheduler stopped early is told to an Optuna searcher: as PRUNED with its
# intermediate values, or as COMPLETE with its last value (Ray's OptunaSearch's way).
STOPPED_POLICIES = ("pruned", "final")
IMAGE_METRIC = "eval/fid"
LOWDIM_METRIC = "eval/nll"
ASHA_REDUCTION = 3
CONFIRM, CONFIRM_SEEDS = 2, 3  # image spaces' default confirmation: top 2 on 3 fresh seeds
SMOKE_CONFIRM, SMOKE_CONFIRM_SEEDS = 1, 2
CONNECT_TIMEOUT = 5.0  # seconds a Ray at --address (or a download server) has to answer in
MAX_SEED = 2**32 - 1  # numpy's and Optuna's seeds are 32-bit


class UsageError(ValueError):
    """A command-line value that is not allowed (one line, exit status 2)."""


def metric_for(data: str) -> str:
    """eval/fid for image presets (digits, CIFAR-10, folders), eval/nll for low-dim mixtures."""
    entry = DATASETS.entry(FOLDER if data.startswith("folder:") else data)
    return IMAGE_METRIC if entry.info["kind"] == "image" else LOWDIM_METRIC


def check_choice(option: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise UsageError(f"{option} {value!r} is not known; choose one of {', '.join(allowed)}")


def _check_range(option: str, value: float | None, low: float, high: float, kind: str) -> None:
    """A numeric option in [low, high] (and finite), worded like a --set value."""
    if value is None:
        return
    if not (math.isfinite(value) and low <= value <= high):
        lo, hi = (f"{v:.0f}" if float(v).is_integer() else f"{v:g}" for v in (low, high))
        raise UsageError(f"{option} {value:g} is not allowed; expected {kind} in [{lo}, {hi}]")


def check_counts(args: argparse.Namespace) -> None:
    for option, least in (
        ("num_samples", 1),
        ("max_concurrent", 1),
        ("max_failures", 0),
        ("brackets", 1),
    ):
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


def confirmation(args: argparse.Namespace, metric: str) -> tuple[int, int]:
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


def search_of(args: argparse.Namespace, space: dict[str, Any]) -> str:
    search = args.search or ("random" if args.scheduler == "pbt" else space.get("search", "optuna"))
    check_choice("--search", search, SEARCHES)
    if args.scheduler == "pbt" and search != "random":
        raise UsageError(
            f"--scheduler pbt takes its initial population from --search random, not {search}"
        )
    return search


def check_values(
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


def check_schedule(scheduler: str, growth: float) -> None:
    if scheduler == "asha" and growth not in (1.0, float(ASHA_REDUCTION)):
        raise UsageError(
            f"eval.growth={growth:g} puts evaluations off ASHA's rungs (every·{ASHA_REDUCTION}^k): "
            f"use eval.growth=1 or {ASHA_REDUCTION}"
        )
    fixed_interval = {"pbt": "PBT exploits", "hyperband": "HyperBand decides"}
    if scheduler in fixed_interval and growth != 1.0:
        raise UsageError(
            f"eval.growth={growth:g} with --scheduler {scheduler}: {fixed_interval[scheduler]} at "
            "a fixed interval, use eval.growth=1"
        )


def metric_and_mode(args: argparse.Namespace, data: str) -> tuple[str, str]:
    """The metric to optimise, checked against what the trainer reports for the data (the one
    list, tuner.evaluation.metrics), and whether lower or higher is better."""
    # torch-fidelity (seconds): --help and a usage error import this module, a plan's check of
    # the metric needs the list of what the trainer reports
    from tuner.evaluation.metrics import METRICS, preset_metrics

    reported = preset_metrics(data)
    metric = args.metric or metric_for(data)
    if metric not in reported:
        raise UsageError(
            f"--metric {metric!r} is not reported for data {data}; choose one of "
            f"{', '.join(reported)}"
        )
    return metric, METRICS[metric]


def pbt_mutations(scheduler: str, params: dict[str, dict[str, Any]], space: str) -> list[str]:
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


def experiment_name(
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
        ]
        + ([] if args.stopped == STOPPED_POLICIES[0] else [args.stopped])
        + ([] if args.brackets == 1 else [f"brackets={args.brackets}"]),
        default=str,
    )
    smoke = "-smoke" if args.smoke_test else ""
    return f"{args.space}{smoke}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
