"""The search once its command line is valid (tuner/search/cli.py hands it over): join the
cluster at --address or start the local Ray instance, hold the experiment folder, and run the
stages — the search, the confirmation on fresh seeds — then report: the leaderboard, the
importances, the early-stopping check, the verdict, best.json and the commands that go further.

Ray, MLflow, Optuna and torch-fidelity are imported here, at the top: the command line imports
this module only once a search (or a dry run on a cluster) is to start, so `--help`, a usage
error and a local `--dry-run` never pay for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ray import tune

from tuner.records import TrialRow, Verdict, ranked
from tuner.search import faults, rungs
from tuner.search.checks import SEARCH_FILE, create_stores, store_paths
from tuner.search.cluster import default_concurrency, init_ray, shutdown_ray, tune_output
from tuner.search.confirm import (
    confirmation_disc_configs,
    confirmation_table,
    run_confirmation,
    verdict_markdown,
    verdict_metrics,
)
from tuner.search.importance import describe, param_importances
from tuner.search.locks import check_experiment_free, hold_experiment
from tuner.search.options import OPTUNA_SEARCHES, UsageError
from tuner.search.plan import Plan, describe_plan, optuna_storage
from tuner.search.pretrain import known_disc_configs, pretrain
from tuner.search.results import leaderboard, summarize
from tuner.search.trainable import train_trial, trial_config
from tuner.search.tuning import (
    make_scheduler,
    make_search_alg,
    make_tuner,
    param_space,
    save_state_at_every_step,
    tracking_callback,
)
from tuner.storage import is_uri, read_text, write_text
from tuner.tracking.review import log_summary
from tuner.tracking.store import io_problem, review_url, ui_command


def start(plan: Plan, args: argparse.Namespace) -> bool:
    """Join the cluster at --address and hold the experiment folder (one driver per folder: a
    second one is refused here, touching nothing); True when that was a dry run, whose plan it
    printed. Raises UsageError or ConfigError for the caller's one line and exit status 2."""
    if plan.address:  # join the cluster and check its nodes (a dry run leaves again)
        init_ray(plan, args.verbose)
    (check_experiment_free if args.dry_run else hold_experiment)(plan)
    if not args.dry_run:
        return False
    if plan.address:
        shutdown_ray()
    print(describe_plan(plan, None))
    return True


def drive(plan: Plan, args: argparse.Namespace, argv: list[str]) -> int:
    """Run the search `start` prepared; a refusal only the started Ray can tell is one line and
    exit status 2, a Ctrl-C outside Ray's loop exit status 130.

    Args:
        plan: the checked plan (tuner.search.checks.check_environment passed).
        args: the parsed command line (--resume, --verbose).
        argv: the command line, for the line that says how to resume a stopped search.
    """
    try:
        return run(plan, resume_required=args.resume, argv=argv, verbose=args.verbose)
    except UsageError as e:  # what only the started local instance could tell (init_ray)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside Ray's loop (the first Ctrl-C unwinds at once there)
        print("interrupted (Ctrl-C): rerun the same command to continue", file=sys.stderr)
        return 130


def _search_stage(plan: Plan, search_id: str, resuming: bool, cache: str) -> Any:
    """Run (or resume) the search's trials; returns Ray's ResultGrid."""
    if not resuming:
        tiw = plan.fixed.get("tiw.strength", 0) > 0 or "tiw.strength" in plan.params
        if tiw:
            configs = known_disc_configs(plan)
            configs += confirmation_disc_configs(plan, configs)
            pretrain(configs, cache, plan.cpus_per_trial, plan.gpus_per_trial)
    callback = tracking_callback(
        plan, search_id, trial_config, config_metrics=tuple(plan.pbt_mutations)
    )
    max_concurrent = 0 if resuming else plan.max_concurrent or default_concurrency(plan)
    tuner = make_tuner(
        plan,
        tune.with_parameters(train_trial, disc_cache=cache),
        name=plan.name,
        param_space=None if resuming else param_space(plan),
        search_alg=None if resuming else make_search_alg(plan, max_concurrent, study=search_id),
        scheduler=None if resuming else make_scheduler(plan),
        num_samples=plan.num_samples,
        callback=callback,
        resume=resuming,
    )
    return tuner.fit()


def _write_best(plan: Plan, config: dict[str, Any], local_dir: Path) -> Path:
    best_json = json.dumps(config, indent=2) + "\n"
    write_text(f"{plan.experiment_dir}/best.json", best_json)
    if is_uri(plan.experiment_dir):
        (local_dir / "best.json").write_text(best_json)
    return local_dir / "best.json"


def _report(
    plan: Plan,
    rows: list[TrialRow],
    importance: dict | None,
    verdict: Verdict | None,
    search_id: str,
    early: dict[str, Any],
) -> int:
    """Write best.json (the confirmed winner, else the search's best), attach the summary to the
    parent run, and print the verdict and the commands that go further."""
    exp_dir = plan.experiment_dir
    local_dir = Path(exp_dir) if not is_uri(exp_dir) else Path(os.getcwd())
    board = leaderboard(rows, plan)
    (local_dir / "leaderboard.txt").write_text(board + "\n")
    files = [str(local_dir / "leaderboard.txt")]
    # (the tracking callback has logged the trial counts and the best value already)
    metrics = {f"importance/{k}": v for k, v in (importance or {}).get("importances", {}).items()}
    metrics |= rungs.metrics(early)
    best = next(iter(ranked(rows)), None)
    winner = verdict.winner if verdict else None
    retrain = None
    if verdict is not None:
        if is_uri(exp_dir):  # confirm.py wrote it to the experiment folder
            (local_dir / "verdict.json").write_text(verdict.dumps())
        files.append(str(local_dir / "verdict.json"))
        metrics |= verdict_metrics(verdict)
        print(f"verdict: {verdict.conclusion}", flush=True)
    if best is None:
        print("no trial produced the metric; nothing written to best.json", file=sys.stderr)
    else:
        chosen = winner.config if winner else best.config
        files.append(str(_write_best(plan, chosen, local_dir)))
        which = f"the winner (trial {winner.trial}, confirmed)" if winner else "the best trial"
        which += "" if winner else f" ({best.trial})"
        retrain = (f"retrain {which}", f"python -m tuner.train --config {exp_dir}/best.json")
        tag = {
            "trial": winner.trial if winner else best.trial,
            "metric": f"{best.best:.6g}",
        }
        log_summary(
            plan.mlflow_uri,
            plan.mlflow_experiment,
            search_id,
            files,
            tag,
            metrics=metrics,
            append=verdict_markdown(plan, verdict) if verdict else "",
        )
    print(_further(plan, search_id, retrain), flush=True)
    return 0 if best is not None else 1


def _further(plan: Plan, search_id: str, retrain: tuple[str, str] | None) -> str:
    """The run's last lines: the commands that retrain the winner, open MLflow on the search (its
    review link) and open the Optuna study."""
    rows = [retrain] if retrain else []
    rows.append(("open MLflow, then the review link", ui_command(plan.mlflow_uri)))
    rows.append(("", review_url(plan.mlflow_uri, plan.mlflow_experiment, search_id)))
    if plan.search in OPTUNA_SEARCHES:
        dashboard = f"optuna-dashboard {optuna_storage(plan)} --host 127.0.0.1"
        rows.append(("open the Optuna study", dashboard))
    width = max(len(label) for label, _ in rows)
    return "\n" + "\n".join(f"{label:<{width}}  {command}" for label, command in rows)


def run(
    plan: Plan, resume_required: bool, argv: list[str] | None = None, verbose: bool = False
) -> int:
    """Run (or resume) the search's stages; a stop (Ctrl-C, an I/O fault) ends in one line that
    says how to continue (exit status 130 or 1). `verbose`: Ray's own output too."""
    with faults.handling(plan), tune_output(verbose):
        try:
            return _run_stages(plan, resume_required, verbose)
        except faults.Stopped as stop:
            found = stop
        except Exception as e:  # an I/O fault that stopped no Ray loop (e.g. the Optuna store's)
            found = faults.Stopped(faults.IO, _io_problem(plan, e))
    saved = tune.Tuner.can_restore(plan.experiment_dir)
    print(faults.resume_line(found, argv or sys.argv[1:], saved), file=sys.stderr)
    return faults.EXIT_STATUS[found.kind]


def _io_problem(plan: Plan, error: Exception) -> str:
    """The one line of an I/O fault (`no space left on device: PATH`); anything else is a bug,
    raised with its traceback."""
    stores = [path.parent for path in store_paths(plan).values()]  # (SQLite names no file)
    problem = io_problem(error, str(stores[0] if stores else plan.experiment_dir))
    if problem is None:
        raise error
    return problem


def _run_stages(plan: Plan, resume_required: bool, verbose: bool) -> int:
    exp_dir = plan.experiment_dir
    save_state_at_every_step(exp_dir)
    saved = read_text(f"{exp_dir}/{SEARCH_FILE}")
    resuming = saved is not None and tune.Tuner.can_restore(exp_dir)
    if resume_required and not resuming:
        print(f"error: --resume: no search to resume at {exp_dir}", file=sys.stderr)
        return 2
    print(describe_plan(plan, resuming), flush=True)
    print(f"review in MLflow: {ui_command(plan.mlflow_uri)}", flush=True)
    create_stores(plan)
    faults.make_reserves(plan)
    init_ray(plan, verbose)
    if resuming:
        print(f"resuming {exp_dir}", flush=True)
        search_id = json.loads(saved)["search_id"]
    else:
        search_id = f"{plan.name}-{uuid.uuid4().hex[:8]}"
        record = {"search_id": search_id, "plan": plan.to_json()}
        write_text(f"{exp_dir}/{SEARCH_FILE}", json.dumps(record, indent=2))
    cache = f"{exp_dir.rstrip('/')}/discriminators"
    t0 = time.perf_counter()
    rows = summarize(_search_stage(plan, search_id, resuming, cache), plan)
    board = leaderboard(rows, plan)
    wall = time.perf_counter() - t0
    print(f"\nleaderboard ({plan.mode} {plan.metric}; {wall:.0f}s)\n{board}", flush=True)
    importance = param_importances(rows, plan)
    print(describe(importance, plan.metric), flush=True)
    early = rungs.check(rows, plan.eval_steps)
    print(rungs.describe(early, plan.metric, plan.scheduler), flush=True)
    verdict = None
    if plan.confirm and ranked(rows):
        verdict = run_confirmation(plan, rows, search_id, cache, early_stopping=early)
        print(f"\nconfirmed on fresh seeds ({plan.mode} {plan.metric})", flush=True)
        print(confirmation_table(plan, verdict), flush=True)
    return _report(plan, rows, importance, verdict, search_id, early)
