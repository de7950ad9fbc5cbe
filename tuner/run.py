"""Search over training objectives: `python -m tuner.run --space debias_family`.

Ray Tune runs the trials (tuner/trainable.py), Optuna's TPE proposes configurations, ASHA stops
hopeless ones at the evaluation steps, and MLflow records a parent run per search with a child
run per trial (tuner/tracking.py). Rerunning the same command (or --resume) continues a search
whose driver was killed; the experiment folder is <storage>/<name>, the name derived from the
space and the options that define the search.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import search_spaces
from search_spaces import POINT_KEY, SMOKE, SMOKE_NUM_SAMPLES, SPACES
from tuner.config import ConfigError, evaluation_steps, parse_set, resolve
from tuner.tracking import default_tracking_uri

SEARCHES = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "pbt", "fifo")
IMAGE_METRIC = "eval/fid"
LOWDIM_METRIC = "eval/nll"
ASHA_REDUCTION = 3
OBJECT_STORE_BYTES = 256 * 1024**2  # small trials pass nothing big through the object store
SEARCH_FILE = "search.json"  # in the experiment folder: the search's id and plan


class UsageError(ValueError):
    """A command-line value that is not allowed (one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m tuner.run", description=__doc__.split("\n")[0])
    p.add_argument("--space", default="debias_family", help="search space (see --list-spaces)")
    p.add_argument("--list-spaces", action="store_true", help="print the spaces and exit")
    p.add_argument("--search", help=f"{', '.join(SEARCHES)} (default: optuna; grid for baselines)")
    p.add_argument("--scheduler", default="asha", help=f"{', '.join(SCHEDULERS)} (default asha)")
    p.add_argument("--num-samples", type=int, help="trials (grid: repeats of the grid)")
    p.add_argument(
        "--max-concurrent", type=int, help="trials at once (default: what the cluster holds now)"
    )
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a config key for all trials",
    )
    p.add_argument(
        "--metric", help="metric to optimise (default eval/fid for images, eval/nll otherwise)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the search algorithm")
    p.add_argument(
        "--storage", default="ray_results", help="Ray results folder or a cloud URI (s3://, gs://)"
    )
    p.add_argument("--name", help="experiment name (default: derived from the space and options)")
    p.add_argument(
        "--resume", action="store_true", help="continue the search (an error if there is none)"
    )
    p.add_argument("--max-failures", type=int, default=1, help="retries of a trial that crashed")
    p.add_argument(
        "--mlflow-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlruns/mlflow.db)"
    )
    p.add_argument("--address", help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:10001")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--smoke-test", action="store_true", help="a tiny search (about two minutes)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit")
    return p


# -- the plan: everything decided before Ray starts ---------------------------------------------
def _is_uri(path: str) -> bool:
    return "://" in path


def metric_for(data: str) -> str:
    """eval/fid for image presets (digits, CIFAR-10, folders), eval/nll for low-dim mixtures."""
    image = data.startswith(("digits", "cifar", "folder:"))
    return IMAGE_METRIC if image else LOWDIM_METRIC


def _check_choice(option: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise UsageError(f"{option} {value!r} is not known; choose one of {', '.join(allowed)}")


def make_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Validate the options and resolve them into a plan (raises UsageError / ConfigError)."""
    _check_choice("--space", args.space, list(SPACES))
    _check_choice("--scheduler", args.scheduler, SCHEDULERS)
    space = SPACES[args.space]
    search = args.search or ("random" if args.scheduler == "pbt" else space.get("search", "optuna"))
    _check_choice("--search", search, SEARCHES)
    if args.scheduler == "pbt" and search != "random":
        raise UsageError(
            f"--scheduler pbt takes its initial population from --search random, not {search}"
        )
    for option in ("num_samples", "max_concurrent", "max_failures"):
        value = getattr(args, option)
        if value is not None and value < (0 if option == "max_failures" else 1):
            raise UsageError(
                f"--{option.replace('_', '-')} {value} must be at least {0 if option == 'max_failures' else 1}"
            )
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise UsageError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")

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
    base = resolve(fixed)  # every fixed value checked
    for key, spec in params.items():  # every value a parameter can take checked too
        if key == POINT_KEY:
            for name in spec["choices"]:
                resolve(search_spaces.expand(fixed | {POINT_KEY: name}, space))
            continue
        ends = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        for value in ends:
            resolve(fixed | {key: value})
    growth = base["eval.growth"]
    if args.scheduler == "asha" and growth not in (1.0, float(ASHA_REDUCTION)):
        raise UsageError(
            f"eval.growth={growth:g} puts evaluations off ASHA's rungs (every·{ASHA_REDUCTION}^k): "
            f"use eval.growth=1 or {ASHA_REDUCTION}"
        )
    if args.scheduler == "pbt" and growth != 1.0:
        raise UsageError(
            f"eval.growth={growth:g} with --scheduler pbt: PBT exploits at a fixed interval, "
            "use eval.growth=1"
        )
    if not params and search != "grid":
        search = "grid"  # nothing to sample: one trial of the fixed config
    metric = args.metric or metric_for(base["data"])
    if args.metric is not None and not metric.startswith("eval/"):
        raise UsageError(
            f"--metric {metric!r} must be an eval/... metric, e.g. {IMAGE_METRIC} or {LOWDIM_METRIC}"
        )
    mode = "max" if metric.endswith(("fraction", "accuracy")) else "min"
    if args.scheduler == "pbt":
        mutable = [k for k, s in params.items() if k.startswith("weighting.")]
        mutable = mutable or [
            k for k, s in params.items() if s["type"] != "categorical" and k != POINT_KEY
        ]
        if not mutable:
            raise UsageError(
                f"--scheduler pbt needs numeric parameters; space {args.space} has none left"
            )
    else:
        mutable = []
    if search == "grid":
        num_samples = args.num_samples or 1
        trials = num_samples * max(1, len(search_spaces.grid({"params": params})))
    else:
        num_samples = args.num_samples or (
            SMOKE_NUM_SAMPLES if args.smoke_test else space["num_samples"]
        )
        trials = num_samples

    storage = args.storage if _is_uri(args.storage) else str(Path(args.storage).resolve())
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
    name = (
        args.name
        or f"{args.space}{'-smoke' if args.smoke_test else ''}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    )
    return {
        "space": args.space,
        "data": base["data"],
        "metric": metric,
        "mode": mode,
        "search": search,
        "scheduler": args.scheduler,
        "num_samples": num_samples,
        "trials": trials,
        "seed": args.seed,
        "max_steps": base["train.steps"],
        "eval_every": base["eval.every"],
        "eval_steps": evaluation_steps(base["train.steps"], base["eval.every"], growth),
        "fixed": fixed,
        "params": params,
        "pbt_mutations": mutable,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_concurrent": args.max_concurrent,
        "max_failures": args.max_failures,
        "storage": storage,
        "name": name,
        "experiment_dir": f"{storage.rstrip('/')}/{name}",
        "mlflow_uri": args.mlflow_uri or default_tracking_uri(),
        "mlflow_experiment": f"diffsearch-{args.space}",
        "address": args.address,
        "num_cpus": args.num_cpus,
        "smoke_test": args.smoke_test,
    }


def _writable_folder(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is a folder we may write in, else None."""
    for parent in (path, *path.parents):
        if parent.exists():
            ok = parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
            return parent if ok else None
    return None


def check_environment(plan: dict[str, Any], resume: bool) -> None:
    """Checks that need the file system or the network; each failure is one UsageError line."""
    data = plan["data"]
    if data.startswith("folder:"):
        from tuner.data import IMAGE_EXTENSIONS

        folder = Path(data[len("folder:") :]).expanduser()
        if not folder.is_dir():
            raise UsageError(f"data={data!r}: folder {folder} does not exist")
        images = (
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if next(images, None) is None or next(images, None) is None:
            raise UsageError(
                f"data={data!r}: folder {folder} holds fewer than 2 images with extensions "
                f"{', '.join(IMAGE_EXTENSIONS)}"
            )
    if not _is_uri(plan["storage"]) and _writable_folder(Path(plan["storage"])) is None:
        raise UsageError(f"--storage {plan['storage']} is not a folder this user can write")
    uri = plan["mlflow_uri"]
    if uri.startswith("sqlite:///"):
        if _writable_folder(Path(uri.removeprefix("sqlite:///")).parent) is None:
            raise UsageError(f"--mlflow-uri {uri}: its folder is not one this user can write")
    elif uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except urllib.error.HTTPError:
            pass  # a server answered
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise UsageError(
                f"--mlflow-uri {uri} is unreachable ({reason}); start the server or pass "
                "sqlite:///PATH"
            ) from None
    if resume and _read_text(f"{plan['experiment_dir']}/{SEARCH_FILE}") is None:
        raise UsageError(
            f"--resume: no search to resume at {plan['experiment_dir']} "
            "(run the same command without --resume to start it)"
        )


def _fmt_spec(spec: dict[str, Any]) -> str:
    if spec["type"] == "categorical":
        return "choice " + json.dumps(spec["choices"])
    return f"{spec['type']} [{spec['low']:g}, {spec['high']:g}]"


def describe_plan(plan: dict[str, Any], resuming: bool | None) -> str:
    scheduler = plan["scheduler"]
    if scheduler == "asha":
        scheduler = (
            f"asha on {plan['metric']} (time: step, grace {plan['eval_every']}, max {plan['max_steps']}, "
            f"reduction {ASHA_REDUCTION}; evaluations at steps {', '.join(map(str, plan['eval_steps']))})"
        )
    elif scheduler == "pbt":
        scheduler = (
            f"pbt every {plan['eval_every']} steps, mutating {', '.join(plan['pbt_mutations'])}"
        )
    search = {
        "optuna": f"optuna TPE (seed {plan['seed']})",
        "random": f"random (seed {plan['seed']})",
    }.get(plan["search"], "grid")
    lines = [
        f"space       {plan['space']}  (data {plan['data']})",
        f"objective   {plan['mode']} {plan['metric']}",
        f"search      {search}, {plan['trials']} trials",
        f"scheduler   {scheduler}",
        f"resources   {plan['cpus_per_trial']:g} CPU, {plan['gpus_per_trial']:g} GPU per trial; "
        f"max concurrent {plan['max_concurrent'] or 'auto'}; max failures {plan['max_failures']}",
        f"ray         {plan['address'] or 'local instance'}",
        f"experiment  {plan['experiment_dir']}"
        + ("" if resuming is None else ("  (resuming)" if resuming else "  (new)")),
        f"mlflow      {plan['mlflow_uri']}  experiment {plan['mlflow_experiment']}",
        "parameters",
    ]
    lines += [f"  {k:<22} {_fmt_spec(s)}" for k, s in plan["params"].items()] or ["  (none)"]
    lines.append("fixed")
    lines += [f"  {k:<22} {json.dumps(v)}" for k, v in plan["fixed"].items()]
    return "\n".join(lines)


# -- Ray objects --------------------------------------------------------------------------------
def tune_domain(spec: dict[str, Any]) -> Any:
    from ray import tune

    kind = spec["type"]
    if kind == "categorical":
        return tune.choice(spec["choices"])
    if kind == "int":
        return tune.randint(spec["low"], spec["high"] + 1)
    if kind == "loguniform":
        return tune.loguniform(spec["low"], spec["high"])
    return tune.uniform(spec["low"], spec["high"])


def param_space(plan: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    space = dict(plan["fixed"])
    for key, spec in plan["params"].items():
        if plan["search"] == "grid":
            space[key] = tune.grid_search(search_spaces.grid_values(spec))
        else:
            space[key] = tune_domain(spec)
    return space


def make_search_alg(plan: dict[str, Any], max_concurrent: int = 0) -> Any:
    """The searcher; max_concurrent (0: no limit) caps the trials it lets run at once."""
    if plan["search"] == "optuna":
        import optuna
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = max(2, min(10, plan["num_samples"] // 3))  # TPE takes over after these
        sampler = optuna.samplers.TPESampler(seed=plan["seed"], n_startup_trials=startup)
        searcher = OptunaSearch(sampler=sampler)
        return ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
    from ray.tune.search import BasicVariantGenerator

    # Ray ignores TuneConfig.max_concurrent_trials for a generator like this one (with only a
    # warning): the limit has to be given to the generator itself.
    return BasicVariantGenerator(random_state=plan["seed"], max_concurrent=max_concurrent)


def make_scheduler(plan: dict[str, Any]) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if plan["scheduler"] == "asha":
        # Rungs at grace·3^k are multiples of eval.every: every rung is an evaluation.
        return ASHAScheduler(
            time_attr="step",
            max_t=plan["max_steps"],
            grace_period=min(plan["eval_every"], plan["max_steps"]),
            reduction_factor=ASHA_REDUCTION,
        )
    if plan["scheduler"] == "pbt":
        # The weighting parameters become a schedule over training: at every evaluation a
        # bottom-quartile trial continues from a top trial's checkpoint with perturbed values.
        return PopulationBasedTraining(
            time_attr="step",
            perturbation_interval=plan["eval_every"],
            hyperparam_mutations={k: _mutation(plan["params"][k]) for k in plan["pbt_mutations"]},
            quantile_fraction=0.25,
            resample_probability=0.25,
            custom_explore_fn=functools.partial(clip_to_ranges, ranges=_ranges(plan)),
        )
    return FIFOScheduler()


def _mutation(spec: dict[str, Any]) -> Any:
    """PBT shifts a list's value to a neighbour; a Tune domain is resampled or scaled by 0.8/1.2."""
    return list(spec["choices"]) if spec["type"] == "categorical" else tune_domain(spec)


def _ranges(plan: dict[str, Any]) -> dict[str, tuple[float, float]]:
    params = plan["params"]
    return {
        k: (params[k]["low"], params[k]["high"])
        for k in plan["pbt_mutations"]
        if "low" in params[k]
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


def _read_text(path: str) -> str | None:
    import pyarrow.fs

    fs, fs_path = (
        pyarrow.fs.FileSystem.from_uri(path)
        if _is_uri(path)
        else (pyarrow.fs.LocalFileSystem(), path)
    )
    try:
        with fs.open_input_stream(fs_path) as f:
            return f.read().decode()
    except (FileNotFoundError, OSError):
        return None


def _write_text(path: str, text: str) -> None:
    import pyarrow.fs

    if not _is_uri(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        return
    fs, fs_path = pyarrow.fs.FileSystem.from_uri(path)
    with fs.open_output_stream(fs_path) as f:
        f.write(text.encode())


def init_ray(plan: dict[str, Any]) -> None:
    import ray

    if plan["address"]:
        ray.init(address=plan["address"], log_to_driver=True)
        return
    ray.init(
        num_cpus=plan["num_cpus"] or os.cpu_count(),
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        configure_logging=True,
        logging_level="WARNING",
    )


# -- results ------------------------------------------------------------------------------------
def summarize(results: Any, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per trial, best first; failed trials (and ones without the metric) last."""
    from tuner.trainable import trial_config

    rows = []
    for result in results:
        config = trial_config(result.config)
        history = result.metrics_dataframe
        values: list[float] = []
        step = 0
        if history is not None and plan["metric"] in history:
            values = [
                v
                for v in history[plan["metric"]].tolist()
                if isinstance(v, float) and math.isfinite(v)
            ]
            step = int(history["step"].max()) if "step" in history else 0
        if result.error is not None:
            status = "FAILED"
        else:
            status = "FINISHED" if step >= config["train.steps"] else "STOPPED"
        best = (min(values) if plan["mode"] == "min" else max(values)) if values else None
        trial_id = Path(result.path).name.removeprefix(
            "trial_"
        )  # (PBT copies other trials' metrics)
        rows.append(
            {
                "trial": trial_id,
                "status": status,
                "best": best,
                "step": step,
                "config": config,
                "raw": result.config,
            }
        )
    sign = 1 if plan["mode"] == "min" else -1

    def order(row: dict[str, Any]) -> tuple:
        rankable = row["status"] != "FAILED" and row["best"] is not None
        return (not rankable, sign * row["best"] if rankable else 0.0, row["trial"])

    return sorted(rows, key=order)


def leaderboard(rows: list[dict[str, Any]], plan: dict[str, Any]) -> str:
    keys = [k for k in plan["params"] if k != POINT_KEY]
    point = POINT_KEY in plan["params"]
    head = (
        ["#", "trial", "status"]
        + (["point"] if point else [])
        + [k.split(".", 1)[-1] if "." in k else k for k in keys]
    )
    head += [f"best {plan['metric']}", "steps"]
    table = [head]
    for i, row in enumerate(rows, 1):
        cells = [str(i), row["trial"], row["status"]] + (
            [str(row["raw"].get(POINT_KEY, ""))] if point else []
        )
        for k in keys:
            v = row["config"][k]
            cells.append(
                f"{v:.3g}"
                if isinstance(v, float)
                else str(v).lower()
                if isinstance(v, bool)
                else str(v)
            )
        cells += ["-" if row["best"] is None else f"{row['best']:.4g}", str(row["step"])]
        table.append(cells)
    widths = [max(len(r[c]) for r in table) for c in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in table
    )


# -- the command --------------------------------------------------------------------------------
def run(plan: dict[str, Any], resume_required: bool) -> int:
    from ray import tune

    from tuner import tracking
    from tuner.trainable import train_trial, trial_config

    exp_dir = plan["experiment_dir"]
    if not _is_uri(exp_dir):
        # Save the experiment state at every controller step: a trial that ended (or started)
        # is on disk at once, so a killed driver neither loses nor reruns it, nor leaves behind
        # a trial it had started. (Saving once a second instead spares the driver most of its
        # CPU while trials train, but a kill orphans a trial started in that second: the
        # killed-driver resume test caught it.)
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    saved = _read_text(f"{exp_dir}/{SEARCH_FILE}")
    resuming = saved is not None and tune.Tuner.can_restore(exp_dir)
    if resume_required and not resuming:
        print(f"error: --resume: no search to resume at {exp_dir}", file=sys.stderr)
        return 2
    print(describe_plan(plan, resuming), flush=True)
    print(f"review in MLflow: {tracking.ui_command(plan['mlflow_uri'])}", flush=True)
    init_ray(plan)
    trainable = tune.with_resources(
        train_trial, {"cpu": plan["cpus_per_trial"], "gpu": plan["gpus_per_trial"]}
    )
    if resuming:
        print(f"resuming {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(exp_dir, trainable, resume_unfinished=True, resume_errored=False)
        search_id = json.loads(saved)["search_id"]
    else:
        search_id = f"{plan['name']}-{uuid.uuid4().hex[:8]}"
        _write_text(
            f"{exp_dir}/{SEARCH_FILE}",
            json.dumps({"search_id": search_id, "plan": _plain(plan)}, indent=2),
        )
        max_concurrent = plan["max_concurrent"] or _default_concurrency(plan)
        callback = tracking.MlflowTracking(
            tracking_uri=plan["mlflow_uri"],
            experiment=plan["mlflow_experiment"],
            search=search_id,
            search_params=_search_params(plan),
            metric=plan["metric"],
            mode=plan["mode"],
            resolve_config=trial_config,
            config_metrics=tuple(plan["pbt_mutations"]),
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(plan),
            tune_config=tune.TuneConfig(
                metric=plan["metric"],
                mode=plan["mode"],
                search_alg=make_search_alg(plan, max_concurrent),
                scheduler=make_scheduler(plan),
                num_samples=plan["num_samples"],
                trial_dirname_creator=trial_dirname,
                # A finished trial's worker process runs the next trial: no new process (and
                # no new import of torch) between trials.
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=plan["name"],
                storage_path=plan["storage"],
                callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=plan["max_failures"]),
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=1,  # the best by the metric, and always the latest
                    checkpoint_score_attribute=plan["metric"],
                    checkpoint_score_order=plan["mode"],
                ),
                verbose=0,  # the tracking callback prints one line per evaluation instead
            ),
        )
    t0 = time.perf_counter()
    results = tuner.fit()
    rows = summarize(results, plan)
    board = leaderboard(rows, plan)
    print(
        f"\nleaderboard ({plan['mode']} {plan['metric']}; {time.perf_counter() - t0:.0f}s)\n{board}",
        flush=True,
    )
    best = next((r for r in rows if r["status"] != "FAILED" and r["best"] is not None), None)
    files = []
    local_dir = Path(exp_dir) if not _is_uri(exp_dir) else Path(os.getcwd())
    (local_dir / "leaderboard.txt").write_text(board + "\n")
    files.append(str(local_dir / "leaderboard.txt"))
    if best is None:
        print("no trial produced the metric; nothing written to best.json", file=sys.stderr)
    else:
        best_json = json.dumps(best["config"], indent=2) + "\n"
        _write_text(f"{exp_dir}/best.json", best_json)
        if _is_uri(exp_dir):
            (local_dir / "best.json").write_text(best_json)
        files.append(str(local_dir / "best.json"))
        print(
            f"best: trial {best['trial']}  {plan['metric']} {best['best']:.4g} at up to step {best['step']}"
        )
        print(
            f"wrote {exp_dir}/best.json; reproduce with: python -m tuner.train --config {exp_dir}/best.json"
        )
        tracking.log_summary(
            plan["mlflow_uri"],
            plan["mlflow_experiment"],
            search_id,
            files,
            {"trial": best["trial"], "metric": f"{best['best']:.6g}"},
        )
    print(f"review in MLflow: {tracking.ui_command(plan['mlflow_uri'])}", flush=True)
    return 0 if best is not None else 1


def _default_concurrency(plan: dict[str, Any]) -> int:
    """As many trials as the cluster holds now (an autoscaling cluster: pass --max-concurrent)."""
    import ray

    resources = ray.cluster_resources()
    fits = resources.get("CPU", 0) // plan["cpus_per_trial"]
    if plan["gpus_per_trial"]:
        fits = min(fits, resources.get("GPU", 0) // plan["gpus_per_trial"])
    return max(1, int(fits))


def _plain(plan: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(plan, default=str))


def _search_params(plan: dict[str, Any]) -> dict[str, Any]:
    out = {
        k: plan[k]
        for k in (
            "space",
            "data",
            "metric",
            "mode",
            "search",
            "scheduler",
            "num_samples",
            "seed",
            "name",
        )
    }
    out |= {f"fixed.{k}": v for k, v in plan["fixed"].items()}
    out |= {f"param.{k}": _fmt_spec(s) for k, s in plan["params"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.list_spaces:
            print("\n\n".join(search_spaces.describe(name) for name in SPACES))
            return 0
        plan = make_plan(args)
        check_environment(plan, resume=args.resume)
    except (UsageError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(describe_plan(plan, None))
        return 0
    return run(plan, resume_required=args.resume)


if __name__ == "__main__":
    sys.exit(main())
