"""Search over training objectives: `python -m tuner.run --space debias_family`.

Ray Tune runs the trials (tuner/search/trainable.py), Optuna's TPE proposes configurations, ASHA stops
hopeless ones at the evaluation steps, and MLflow records a parent run per search with a child
run per trial (tuner/tracking/callback.py). Rerunning the same command (or --resume) continues a search
whose driver was killed; the experiment folder is <storage>/<name>, the name derived from the
space and the options that define the search.

The terminal shows the plan, one live status line per stage (tuner/tracking/progress.py), a line
for a trial that failed, and at the end one screen: the leaderboard, the importances, the
early-stopping check, the confirmation's verdict and the commands that go further. --verbose adds
a line per evaluation and per trial's end, and Ray's and MLflow's own output.

This module reads and checks the command line; tuner/search/driver.py starts Ray and runs the
search.
"""

from __future__ import annotations

import argparse
import math
import sys

import search_spaces
from search_spaces import SPACES
from tuner.config.spec import ConfigError
from tuner.search.checks import check_environment
from tuner.search.locks import check_experiment_free
from tuner.search.options import (
    CONNECT_TIMEOUT,
    SCHEDULERS,
    SEARCHES,
    STOPPED_POLICIES,
    UsageError,
)
from tuner.search.plan import describe_plan, make_plan
from tuner.tracking import console
from tuner.tracking.store import store_logging


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m tuner.run", description=__doc__.split("\n")[0])
    p.add_argument("--space", default="debias_family", help="search space (see --list-spaces)")
    p.add_argument("--list-spaces", action="store_true", help="print the spaces and exit")
    p.add_argument("--search", help=f"{', '.join(SEARCHES)} (default: optuna; grid for baselines)")
    p.add_argument(
        "--scheduler",
        default="fifo",  # bench/search_strategies.py: early stopping did not beat FIFO (README)
        help=f"{', '.join(SCHEDULERS)} (default fifo: every trial runs to the end)",
    )
    p.add_argument("--brackets", type=int, default=1, help="ASHA's brackets (default 1)")
    p.add_argument(
        "--stopped",
        default="pruned",
        help=f"how a trial stopped early is told to an Optuna searcher: {', '.join(STOPPED_POLICIES)} "
        "(default pruned)",
    )
    p.add_argument("--num-samples", type=int, help="trials (grid: repeats of the grid)")
    p.add_argument(
        "--max-concurrent", type=int, help="trials at once (default: what the cluster holds now)"
    )
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fix a config key"
    )
    p.add_argument(
        "--metric", help="metric to optimise (default eval/fid for images, eval/nll otherwise)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the search algorithm")
    p.add_argument(
        "--confirm",
        type=int,
        metavar="K",
        help="retrain the top K trials and the baseline on fresh seeds (default 2 for image "
        "spaces, 0 = off)",
    )
    p.add_argument(
        "--confirm-seeds", type=int, metavar="N", help="fresh training seeds (default 3)"
    )
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
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT,
        metavar="S",
        help=f"seconds a Ray at --address has to answer in (default {CONNECT_TIMEOUT:g})",
    )
    p.add_argument(
        "--wait-for-nodes",
        action="store_true",
        help="with --address: trials that no node fits wait for nodes to join (as on an "
        "autoscaling cluster) instead of an error",
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--smoke-test", action="store_true", help="a tiny search (about two minutes)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also a line per evaluation and per trial's end, and Ray's and MLflow's own output",
    )
    p.add_argument(
        "--progress-every",
        type=float,
        default=console.EVERY_S,
        metavar="S",
        help=f"seconds between progress lines when stdout is not a terminal "
        f"(default {console.EVERY_S:g})",
    )
    return p


def _check_output(args: argparse.Namespace) -> None:
    every = args.progress_every
    if not (math.isfinite(every) and every > 0):
        raise UsageError(f"--progress-every {every:g} is not allowed; expected seconds above 0")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser.parse_args(argv)
        _check_output(args)
        console.configure(args.verbose, args.progress_every)
        store_logging(args.verbose)
        if args.list_spaces:
            print("\n\n".join(search_spaces.describe(name) for name in SPACES))
            return 0
        plan = make_plan(args)
        check_environment(plan, resume=args.resume, fetch=not args.dry_run)
        if args.dry_run and not plan.address:  # (one on a cluster joins it: tuner/search/driver.py)
            check_experiment_free(plan)  # a search's driver holding the folder is named
            print(describe_plan(plan, None))
            return 0
        # ray, mlflow, optuna, torch-fidelity (seconds): --help, a usage error and a local
        # --dry-run never import them; a search, or a dry run that joins a cluster, does here
        from tuner.search.driver import drive, start

        if start(plan, args):  # a dry run that joined a cluster: its plan printed
            return 0
    except (UsageError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C) before the search started", file=sys.stderr)
        return 130
    return drive(plan, args, argv)
