"""How a search stops before its end: Ctrl-C, or an I/O fault (a full disk, a read-only or failing
file system). Either way the search stops the way Ray Tune's own Ctrl-C handling does, so that it
can be resumed: Ray leaves its loop, saves the experiment state with the running trials still
RUNNING (a resume continues them from their last checkpoints), stops the trials and ends the
callbacks; `StoppableTuner.fit` then raises `Stopped` instead of returning a partial result, so
that no later stage runs on it.

- The driver owns SIGINT (`TUNE_DISABLE_SIGINT_HANDLER=1`). The first one asks Ray to stop through
  the SIGUSR1 handler `tune.run` installs for that (ray/tune/tune.py, `_setup_signal_catching`);
  outside a fit it unwinds at once. A second one ends the process at once (exit status 130; the
  local Ray instance's reaper ends Ray with it).
- An I/O fault is found where it happens: in a trial (the trainable reports it in a flagged result,
  `tuner.tracking.store.FAULT_KIND`), in the tracking callback's writes, or in what Ray logs when it
  cannot write the experiment state to storage (it logs such failures and goes on). A reserve file
  in each store folder is freed first, so that the state and the MLflow runs can still be written.
- A trial error that will repeat (a divergence, a data or configuration error: the trainable flags
  it before raising it) is not retried: Ray 2.60's FailureConfig retries every error a trial raises
  (`Trial.should_recover` compares only counts), so `FaultWatch` sets that trial's `max_failures`
  to 0 when it sees the flag; `--max-failures` is then spent on crashes only (a killed worker, an
  out-of-memory kill).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray import tune

from tuner.search.plan import Plan
from tuner.storage import is_uri
from tuner.tracking.store import FAULT_ERROR, FAULT_KIND, FAULT_REPEATS, io_problem, is_local_store

INTERRUPT, IO = "interrupt", "io"
EXIT_STATUS = {INTERRUPT: 130, IO: 1}  # 130: the shell's status for a process ended by SIGINT
RESERVE_BYTES = 1 << 20  # freed on an I/O fault: room to save the state and close the runs
# Ray's loggers that report what could not be written to storage, or that the run was stopped.
RAY_LOGGERS = (
    "ray.train._internal.syncer",
    "ray.tune.execution.experiment_state",
    "ray.tune.tune",
)
MLFLOW_LOGGER = "mlflow.store.db.utils"  # logs a failed write with its traceback, then raises
_stop: dict[str, Any] = {"kind": None, "reason": "", "fitting": False}  # process-wide, as signals
_reserves: dict[str, Path] = {}  # "state" (Ray's storage), "mlflow" (the SQLite stores' folder)


class Stopped(Exception):  # noqa: N818 - a stop, not an error
    """The search stopped before its end: `kind` is INTERRUPT or IO, `reason` one line."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def stop_requested() -> tuple[str, str] | None:
    """(kind, reason) once the search was asked to stop, else None."""
    return (_stop["kind"], _stop["reason"]) if _stop["kind"] else None


def request_stop(kind: str, reason: str) -> None:
    """Stop the search at the end of Ray's current step (the first reason is kept)."""
    if _stop["kind"] is not None:
        return
    _stop.update(kind=kind, reason=reason)
    if kind == IO:
        free_reserves("state")  # (the stores' reserve goes just before the runs are closed)
    handler = signal.getsignal(signal.SIGUSR1)
    if _stop["fitting"] and callable(handler):
        handler(signal.SIGUSR1, None)  # Ray's: leave the loop, save the state, stop the trials
    elif kind == INTERRUPT:
        raise KeyboardInterrupt  # no Ray loop to leave: unwind now


def _on_sigint(signum: int, frame: Any) -> None:
    if _stop["kind"] is not None:
        print("second Ctrl-C: stopped at once", file=sys.stderr, flush=True)
        os._exit(EXIT_STATUS[INTERRUPT])
    print(
        "stopping: saving the search's state (Ctrl-C again to stop at once)",
        file=sys.stderr,
        flush=True,
    )
    request_stop(INTERRUPT, "interrupted by Ctrl-C")


def _log_text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "".join(traceback.format_exception(*record.exc_info))
    return text


class _QuietIOFaults(logging.Filter):
    """MLflow logs a store's error, with a traceback, before it raises it: an I/O fault is said
    in one line instead (by the tracking callback's stop, or the driver's last line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return io_problem(_log_text(record), "") is None


class _RayStorageFaults(logging.Filter):
    """Ray logs (with a traceback) and goes on when it cannot write the experiment state, at every
    step; such a record stops the search instead. Ray's list of the trials it did not complete
    is not shown (the leaderboard says how each ended), nor, once the search is stopping, its
    own lines about that (its `Tuner.restore` advice)."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def filter(self, record: logging.LogRecord) -> bool:
        text = _log_text(record)
        problem = io_problem(text, self.where)
        if problem is not None:
            request_stop(IO, problem)
            return False
        if record.name != "ray.tune.tune":
            return True
        return not (_stop["kind"] or text.startswith("Trials did not complete"))


# (Ray's new output engine prints every trial error with its last result, whatever the verbosity:
# ray/tune/experimental/output.py; the old one, at verbosity 0, prints nothing.)
RAY_ENV = {
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """While the block runs: these environment variables set, then restored as they were."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _log_filters(plan: Plan) -> Iterator[None]:
    filters = [(name, _RayStorageFaults(plan.experiment_dir)) for name in RAY_LOGGERS]
    filters.append((MLFLOW_LOGGER, _QuietIOFaults()))
    for name, watch in filters:
        logging.getLogger(name).addFilter(watch)
    try:
        with warnings.catch_warnings():
            # A trial resumed after an I/O fault reports again at the iteration of its flagged
            # result, which Ray's OptunaSearch gave the study (as NaN): Optuna keeps the first.
            warnings.filterwarnings("ignore", "The reported value is ignored", UserWarning)
            yield
    finally:
        for name, watch in filters:
            logging.getLogger(name).removeFilter(watch)


@contextlib.contextmanager
def handling(plan: Plan) -> Iterator[None]:
    """While the block runs: own SIGINT, keep Ray's trial tracebacks off the terminal (the
    tracking callback prints one line per failed trial; the traceback is in the trial's error.txt
    and its MLflow run), and watch Ray's storage logs. What it changed is restored after."""
    _stop.update(kind=None, reason="", fitting=False)
    handlers = {
        signal.SIGINT: signal.signal(signal.SIGINT, _on_sigint),
        signal.SIGUSR1: signal.getsignal(signal.SIGUSR1),
    }
    try:
        with environment(RAY_ENV), _log_filters(plan):
            yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        free_reserves()


@contextlib.contextmanager
def fitting() -> Iterator[None]:
    """While a Tuner fits: SIGUSR1 ignored until `tune.run` installs its handler (a handler left
    by an earlier fit would stop nothing)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    _stop["fitting"] = True
    try:
        yield
    finally:
        _stop["fitting"] = False


def raise_if_stopped() -> None:
    found = stop_requested()
    if found is not None:
        raise Stopped(*found)


class StoppableTuner:
    """Ray's Tuner whose `fit` raises `Stopped` when the search was stopped (Ctrl-C, an I/O
    fault) instead of returning a partial result."""

    def __init__(self, tuner: Any) -> None:
        self.tuner = tuner

    def fit(self) -> Any:
        raise_if_stopped()
        with fitting():
            results = self.tuner.fit()
        raise_if_stopped()
        return results


# -- reserves: room to end cleanly on a full disk ----------------------------------------------
def reserve_folders(plan: Plan) -> dict[str, Path]:
    """The local folders a search writes much to: Ray's (the experiment folder) and the SQLite
    stores'."""
    folders = {} if is_uri(plan.experiment_dir) else {"state": Path(plan.experiment_dir)}
    if is_local_store(plan.mlflow_uri):
        folders["mlflow"] = Path(plan.mlflow_uri.removeprefix("sqlite:///")).parent
    return folders


def make_reserves(plan: Plan) -> None:
    """RESERVE_BYTES held in each folder (allocated, not sparse) until the search ends or an
    I/O fault frees them; a disk without that room is an I/O fault at once."""
    for role, folder in reserve_folders(plan).items():
        path = folder / f".diffsearch-reserve-{plan.name}"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except OSError as e:
            path.unlink(missing_ok=True)
            raise OSError(e.errno, os.strerror(e.errno or errno.EIO), str(folder)) from None
        finally:
            os.close(fd)
        _reserves[role] = path


def free_reserves(*roles: str) -> None:
    """Free the reserves of `roles` (all when none is named)."""
    for role in roles or list(_reserves):
        path = _reserves.pop(role, None)
        if path is not None:
            path.unlink(missing_ok=True)


class FaultWatch(tune.Callback):
    """The stop and retry decisions of a stage, in the driver (before the tracking callback,
    which `tracking.stopping` tells how the stage ends)."""

    def __init__(self, tracking: Any, where: str) -> None:
        self.tracking = tracking
        self.where = where  # the experiment folder: named by a fault that names no path

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        kind = result.get(FAULT_KIND)
        if kind == FAULT_REPEATS:
            # A Ray internal (Trial.max_failures), allowed in tuner/versions.py's Ray range only.
            trial.max_failures = 0  # it would fail the same way again (see the module's doc)
        elif kind is not None:
            error = str(result.get(FAULT_ERROR, ""))
            request_stop(IO, io_problem(error, self.where) or error)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        fault = getattr(self.tracking, "fault", None)  # its own writes failed
        if fault:
            request_stop(IO, fault)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        stop = stop_requested()
        self.tracking.stopping = stop
        ended_early = stop or getattr(self.tracking, "fault", None) or sys.exc_info()[1]
        if ended_early:
            free_reserves()  # room for the tracking callback to close its runs, next


def resume_line(stop: Stopped, argv: list[str], saved: bool) -> str:
    """The one line a stopped search ends with: why, and the command that continues it."""
    args = [a for a in argv if a != "--resume"] + (["--resume"] if saved else [])
    command = shlex.join(["python", "-m", "tuner.run", *args])
    then = "continue it with" if saved else "nothing was saved yet; start it again with"
    if stop.kind == INTERRUPT:
        return f"interrupted (Ctrl-C): {then}: {command}"
    return (
        f"error: {stop.reason}; free space there (or mend the file system), then {then}: {command}"
    )
