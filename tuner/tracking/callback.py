"""MLflow tracking of a search: one parent run per search, one child run per trial.

`MlflowTracking` is a Ray Tune callback that runs in the driver. Every run is found by a tag
before one is created (the search by `diffsearch.search`, a trial by `ray.trial_id`), so a
search whose driver was killed and resumed keeps one run per trial; a resumed trial skips the
steps its run already holds. Artifacts travel with Ray's checkpoints (the trainable puts the
sample grid, the weighting plot and the trainer's `curve.json` in each checkpoint folder), so
the driver reads them from the Ray storage whichever node ran the trial.

The store, its links and the tags that find runs are tuner/tracking/store.py's; the names, the
saved view, the descriptions and the summary it writes are tuner/tracking/review.py's. What a reviewer
sees in the MLflow UI (3.x):
- the experiment is tagged a training experiment (`mlflow.experimentKind`), and the review link
  (`review_url`) opens its runs in the UI's "Model training" view, which MLflow 3.17 picks from
  the link's `workflowType` (its default view is GenAI's);
- the link opens a saved view of the search (an experiment tag `mlflow.sharedViewState.<id>`,
  the same one the UI's "Views > Save view" writes): the search's runs sorted by the metric,
  with the metric, the searched parameters and the end reason as columns, every run in the
  charts, and a parallel-coordinates chart of the searched parameters against the metric;
- a child run is named by its searched values and trial id, tagged with its stage and why it
  ended; its losses and timings have a point every `train.log_every` steps;
- the parent run carries the summary metrics, a markdown description (plan, leaderboard) and
  a plot of the metric over steps of every trial.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from ray import tune

from tuner.evaluation import plots
from tuner.records import status_of
from tuner.tracking.console import LOG
from tuner.tracking.review import (
    fit_note,
    leaderboard_markdown,
    plan_markdown,
    run_name,
    save_view,
    search_rows,
    summary_metrics,
    view_state,
)
from tuner.tracking.store import (
    FAULT_KIND,
    PARAMS_PER_BATCH,
    TAG_BEST_CKPT,
    TAG_CURVE_STEP,
    TAG_END,
    TAG_LAST_STEP,
    TAG_NOTE,
    TAG_PARENT,
    TAG_ROLE,
    TAG_SEARCH,
    TAG_STAGE,
    TAG_TRIAL,
    client,
    find_run,
    get_or_create_experiment,
    io_problem,
    is_local_store,
    log_metrics,
    numeric,
    param_value,
)
from tuner.training.checkpoint import LAYOUT

METRIC_PREFIXES = ("eval/", "loss/", "time/")
SEARCH_CURVES = "search_curves.png"
SCHEDULER_NAMES = {"asha": "ASHA", "hyperband": "HyperBand", "pbt": "PBT", "fifo": "the scheduler"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DIVERGED = re.compile(r"DivergenceError\b.*?\bat step (\d+)")
TAG_ERROR = "diffsearch.error"  # a failed run's exception line
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def trial_status(trial: Any, max_steps: int) -> str:
    """MLflow status of a finished Ray trial (tuner.records.status_of)."""
    step = (trial.last_result or {}).get("step", 0)
    return status_of(trial.status == "ERROR", step, max_steps)


def error_line(text: str) -> str:
    """The exception line of a Ray error file (`Name: message`), else its last line."""
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "error"
    found = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (found[-1] if found else lines[-1])[:500]


def end_reason(status: str, step: int, error: str = "", stopper: str = "ASHA") -> str:
    """Why a trial's run ended: finished, stopped by ASHA at step N, diverged at step N, failed."""
    if status == "FINISHED":
        return "finished"
    if status == "KILLED":
        return f"stopped by {stopper} at step {step}"
    diverged = _DIVERGED.search(error)
    if diverged:
        return f"diverged at step {diverged.group(1)}"
    return f"failed: {error or 'error'}"


def read_curve(folder: str | Path) -> list[dict[str, Any]]:
    """The trainer's `curve.json` in a checkpoint folder ([] if it is absent or unreadable)."""
    path = Path(folder, LAYOUT.curve)
    try:
        points = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(points, list):
        return []
    return [p for p in points if isinstance(p, dict) and numeric(p.get("step"))]


def _guarded(hook: Callable[..., None]) -> Callable[..., None]:
    """A hook whose MLflow writes may meet an I/O fault of the store (a full disk): the fault is
    kept in `fault`, for the search to stop on (tuner/search/faults.py), instead of raising in
    Ray's loop; once there is one, hooks are skipped until the runs are closed at the end."""

    @functools.wraps(hook)
    def guarded(self: MlflowTracking, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "fault", None):
            return
        try:
            hook(self, *args, **kwargs)
        except Exception as e:
            problem = io_problem(e, self.store_path)
            if problem is None:
                raise
            self.fault = problem

    return guarded


class MlflowTracking(tune.Callback):
    """Driver-side Tune callback: a child run per trial under one parent run per search.

    Args:
        tracking_uri: MLflow store (sqlite:///… or http://…).
        experiment: MLflow experiment name (one per search space).
        search: unique id of this search (the Ray experiment name and a random suffix kept in
            the experiment folder); tags the parent run and every child run.
        search_params: flat description of the search, logged on the parent run.
        metric: the metric ranking checkpoints (e.g. "eval/fid"); mode: "min" or "max".
        resolve_config: maps a Ray trial config to the full flat config logged as params.
        config_metrics: searched keys logged as metrics at every step (a PBT schedule).
        searched: the config keys a run's name shows (default: the `param.*` keys of
            `search_params`).
        stage: tags every child run (`diffsearch.stage`): "search", or "confirmation" for the
            retraining of candidates under the same parent run.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        search: str,
        search_params: dict[str, Any],
        metric: str,
        mode: str,
        resolve_config: Any,
        config_metrics: tuple[str, ...] = (),
        searched: tuple[str, ...] = (),
        stage: str = "search",
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.search = search
        self.search_params = search_params
        self.metric, self.mode = metric, mode
        self.resolve_config = resolve_config
        self.config_metrics = config_metrics
        self.searched = tuple(searched) or tuple(
            k.removeprefix("param.") for k in search_params if k.startswith("param.")
        )
        self.stage = stage
        self.stopper = SCHEDULER_NAMES.get(str(search_params.get("scheduler")), "the scheduler")
        self._mlflow: Any = None
        self._experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._runs: dict[str, str] = {}  # trial_id -> run_id
        self._last_step: dict[str, int] = {}
        self._curve_step: dict[str, int] = {}  # trial_id -> last curve step logged
        self._pending: dict[str, dict[str, Any]] = {}  # trial_id -> result awaiting its checkpoint
        self._best: dict[str, tuple[float, int, Any]] = {}  # trial_id -> (score, step, checkpoint)
        self._logged_weighting: set[str] = set()
        self._synced: set[str] = set()  # trials whose logged steps were read from their run
        self._recheck_curve: set[str] = set()  # trials whose next curve batch may be logged

    # -- state across driver restarts (saved with Ray's experiment checkpoint) ------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "runs": self._runs,
            "last_step": self._last_step,
            "curve_step": self._curve_step,
            "best": self._best,
            "weighting": self._logged_weighting,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._runs = dict(state.get("runs", {}))
        self._last_step = dict(state.get("last_step", {}))
        self._curve_step = dict(state.get("curve_step", {}))
        self._best = dict(state.get("best", {}))
        self._logged_weighting = set(state.get("weighting", set()))
        # Ray saved this state at some step before the driver died; the runs say what was logged
        # after it, and are read again before a remembered run logs anything (`_sync`).
        self._synced, self._recheck_curve = set(), set()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mlflow"] = None  # the client is made again where the callback is unpickled
        return state

    # -- runs -------------------------------------------------------------------------------------
    @property
    def store_path(self) -> str:
        """What an I/O fault of the store names: the SQLite file, or the server."""
        uri = self.tracking_uri
        return uri.removeprefix("sqlite:///") if is_local_store(uri) else uri

    def setup(self, **info: Any) -> None:
        # How this fit ends, if not as planned: an I/O fault of the store (set by the hooks), and
        # the search's stop (kind, reason), set before the end by tuner.search.faults.FaultWatch.
        self.fault: str | None = None
        self.stopping: tuple[str, str] | None = None
        self._live: set[str] = set()  # trials started by this driver and not ended yet
        self._setup()

    @_guarded
    def _setup(self) -> None:
        self._mlflow = client(self.tracking_uri)
        self._experiment_id = get_or_create_experiment(
            self._mlflow, self.experiment, self.tracking_uri
        )
        role = {TAG_SEARCH: self.search, TAG_ROLE: "search"}
        parent = find_run(self._mlflow, self._experiment_id, role)
        if parent is None:
            note = plan_markdown(self.search, self.search_params)
            parent = self._mlflow.create_run(
                self._experiment_id,
                run_name=self.search.rsplit("-", 1)[0],
                tags=role | {TAG_NOTE: fit_note(note)},
            )
            # The plan's settings and ranges as params; the fixed keys are every child's params
            # already (and in the description), so they do not crowd the runs table's columns.
            self._log_params(
                parent.info.run_id,
                {k: v for k, v in self.search_params.items() if not k.startswith("fixed.")},
            )
        else:
            self._reopen(parent)
        self.parent_run_id = parent.info.run_id
        save_view(
            self._mlflow,
            self._experiment_id,
            self.search,
            f"review {self.search}",
            view_state(self.search, self.metric, self.mode, self.searched),
        )

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(k, param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._mlflow.log_batch(run_id, params=items[i : i + PARAMS_PER_BATCH])

    def run_id(self, trial: Any) -> str:
        """The trial's run: remembered, found by its tag, or created (with the config as params)."""
        trial_id = trial.trial_id
        if trial_id in self._runs:
            run_id = self._runs[trial_id]
            if trial_id not in self._synced:  # restored state: what the run adds to it
                self._sync(trial_id, run_id, self._mlflow.get_run(run_id).data.tags)
            return run_id
        found = find_run(
            self._mlflow, self._experiment_id, {TAG_TRIAL: trial_id, TAG_SEARCH: self.search}
        )
        if found is not None:
            run_id = found.info.run_id
            self._sync(trial_id, run_id, found.data.tags)
            if not found.data.params:  # a driver killed between creating the run and this
                self._log_params(run_id, self.resolve_config(trial.config))
        else:
            run = self._mlflow.create_run(
                self._experiment_id,
                run_name=run_name(trial.config, self.searched, trial_id),
                tags={
                    TAG_TRIAL: trial_id,
                    TAG_SEARCH: self.search,
                    TAG_PARENT: self.parent_run_id,
                    TAG_ROLE: "trial",
                    TAG_STAGE: self.stage,
                },
            )
            run_id = run.info.run_id
            self._log_params(run_id, self.resolve_config(trial.config))
        self._runs[trial_id] = run_id
        self._synced.add(trial_id)
        return run_id

    def _sync(self, trial_id: str, run_id: str, tags: dict[str, str]) -> None:
        """What an earlier driver logged to a trial's run. The tags say it, but MLflow writes a
        batch's metrics and its tags in two transactions, so a driver killed between them leaves
        a last batch its tag does not count: the metric's history tells the last result, and
        the next curve batch is checked against its history (`_log_curve`)."""
        logged = self._mlflow.get_metric_history(run_id, self.metric)
        self._last_step[trial_id] = max(
            self._last_step.get(trial_id, -1),
            int(tags.get(TAG_LAST_STEP, -1)),
            *(int(m.step) for m in logged),
        )
        self._curve_step[trial_id] = max(
            self._curve_step.get(trial_id, -1), int(tags.get(TAG_CURVE_STEP, -1))
        )
        self._recheck_curve.add(trial_id)
        self._synced.add(trial_id)

    @_guarded
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._live.add(trial.trial_id)
        self._reopen(self._mlflow.get_run(self.run_id(trial)))

    def _reopen(self, run: Any) -> None:
        """A run the search continues: RUNNING again, without how an earlier stop ended it."""
        if run.info.status == "RUNNING":
            return
        self._mlflow.update_run(run.info.run_id, status="RUNNING")
        for tag in (TAG_END, TAG_ERROR):
            if tag in run.data.tags:
                self._mlflow.delete_tag(run.info.run_id, tag)

    @_guarded
    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if FAULT_KIND in result:
            return  # the trainable's word on its error, for the search (not a measurement)
        step = int(result.get("step", result.get("training_iteration", 0)))
        self._pending[trial.trial_id] = {"step": step, "score": result.get(self.metric)}
        run_id = self.run_id(trial)  # (first: a restored trial's logged steps are read here)
        if step <= self._last_step.get(trial.trial_id, -1):
            return  # already logged before the driver was restarted
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in result.items()
            if k.startswith(METRIC_PREFIXES) and numeric(v)
        ]
        metrics += [
            Metric(f"config/{k}", float(trial.config[k]), now, step)
            for k in self.config_metrics
            if numeric(trial.config.get(k))
        ]
        log_metrics(self._mlflow, run_id, metrics, [RunTag(TAG_LAST_STEP, str(step))])
        self._last_step[trial.trial_id] = step
        shown = " ".join(
            f"{k} {v:.4g}" for k, v in result.items() if k.startswith("eval/") and numeric(v)
        )
        LOG.info("[diffsearch] trial %s step %d: %s", trial.trial_id, step, shown)  # (--verbose)

    def _log_curve(self, trial: Any, run_id: str, folder: str) -> None:
        """The points between two evaluations (curve.json), each step once, in one batch."""
        done = self._curve_step.get(trial.trial_id, -1)
        points = [p for p in read_curve(folder) if int(p["step"]) > done]
        if points and trial.trial_id in self._recheck_curve:  # its tag may have missed (`_sync`)
            self._recheck_curve.discard(trial.trial_id)
            shared = set.intersection(*(set(p) for p in points))
            key = min((k for k in shared if k.startswith(METRIC_PREFIXES)), default=None)
            if key is not None:
                logged = {int(m.step) for m in self._mlflow.get_metric_history(run_id, key)}
                points = [p for p in points if int(p["step"]) not in logged]
        if not points:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, int(p["step"]))
            for p in points
            for k, v in p.items()
            if k.startswith(METRIC_PREFIXES) and numeric(v)
        ]
        last = max(int(p["step"]) for p in points)
        log_metrics(self._mlflow, run_id, metrics, [RunTag(TAG_CURVE_STEP, str(last))])
        self._curve_step[trial.trial_id] = last

    @_guarded
    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        pending = self._pending.pop(trial.trial_id, None)
        run_id = self.run_id(trial)
        with checkpoint.as_directory() as folder:
            self._log_curve(trial, run_id, folder)
            for png in sorted(Path(folder).glob(LAYOUT.samples_glob)):
                self._mlflow.log_artifact(run_id, str(png), "samples")
            weighting = Path(folder, LAYOUT.weighting)
            if weighting.exists() and trial.trial_id not in self._logged_weighting:
                self._mlflow.log_artifact(run_id, str(weighting))
                self._logged_weighting.add(trial.trial_id)
        if pending is None or not numeric(pending["score"]) or not math.isfinite(pending["score"]):
            return
        score = pending["score"] if self.mode == "min" else -pending["score"]
        best = self._best.get(trial.trial_id)
        if best is None or score < best[0]:
            self._best[trial.trial_id] = (score, pending["step"], checkpoint)

    def _log_best_checkpoint(self, trial: Any, run_id: str) -> None:
        best = self._best.get(trial.trial_id)
        if best is None:  # no scored checkpoint seen by this driver: Ray's latest one
            checkpoint = getattr(trial, "checkpoint", None)
            if checkpoint is None:
                return
            best = (math.nan, (trial.last_result or {}).get("step", 0), checkpoint)
        _, step, checkpoint = best
        try:
            with checkpoint.as_directory() as folder, tempfile.TemporaryDirectory() as tmp:
                keep = Path(tmp, "best_checkpoint")
                keep.mkdir()
                for name in (LAYOUT.state, LAYOUT.config):
                    if Path(folder, name).exists():
                        shutil.copy2(Path(folder, name), keep / name)
                self._mlflow.log_artifacts(run_id, str(keep), "best_checkpoint")
            self._mlflow.set_tag(run_id, TAG_BEST_CKPT, str(step))
        except FileNotFoundError:  # removed by Ray's retention; the latest is kept instead
            pass

    def _end(self, trial: Any, status: str) -> None:
        run_id = self.run_id(trial)
        if TAG_BEST_CKPT not in self._mlflow.get_run(run_id).data.tags:
            self._log_best_checkpoint(trial, run_id)
        error = ""
        if status == "FAILED":
            error = _first_error_line(trial) if trial.error_file else "error (no error file)"
            self._mlflow.set_tag(run_id, TAG_ERROR, error)
            if trial.error_file and Path(trial.error_file).is_file():  # the full traceback
                self._mlflow.log_artifact(run_id, trial.error_file)
        step = self._step(trial)
        end = end_reason(status, step, error, self.stopper)
        self._mlflow.set_tag(run_id, TAG_END, end)
        self._mlflow.set_tag(run_id, TAG_NOTE, fit_note(self._trial_note(trial, end)))
        self._mlflow.set_terminated(run_id, status)
        diverged = _DIVERGED.search(error)
        step = int(diverged.group(1)) if diverged else step
        why = f": {error}" if error else ""
        # a failed trial always, one that finished or was stopped with --verbose
        LOG.log(
            logging.WARNING if status == "FAILED" else logging.INFO,
            "[diffsearch] trial %s ended %s at step %d%s (mlflow run %s)",
            trial.trial_id,
            status,
            step,
            why,
            run_id,
        )

    def _step(self, trial: Any) -> int:
        """The trial's last step (a flagged result's step 0 is no step of its own)."""
        result = trial.last_result or {}
        if FAULT_KIND in result or "step" not in result:
            return int(self._last_step.get(trial.trial_id, 0))
        return int(result["step"])

    def _trial_note(self, trial: Any, end: str) -> str:
        """A trial run's description: how it ended, its searched values, its best score."""
        lines = [f"Trial `{trial.trial_id}` ({self.stage} stage of `{self.search}`): **{end}**."]
        values = ", ".join(
            f"`{k}` = {param_value(trial.config[k])}" for k in self.searched if k in trial.config
        )
        if values:
            lines.append(f"Searched: {values}.")
        best = self._best.get(trial.trial_id)
        if best is not None and math.isfinite(best[0]):
            score = best[0] if self.mode == "min" else -best[0]
            lines.append(
                f"Best {self.metric}: {score:.4g} at step {best[1]} (artifacts: best_checkpoint/, "
                f"samples/{LAYOUT.samples_at(best[1])})."
            )
        return "\n\n".join(lines)

    @_guarded
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._live.discard(trial.trial_id)
        self._end(trial, trial_status(trial, self._max_steps(trial)))

    @_guarded
    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._live.discard(trial.trial_id)
        self._end(trial, "FAILED")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _first_error_line(trial) if trial.error_file else "error (no error file)"
        LOG.warning(
            "[diffsearch] trial %s crashed at step %d: %s; Ray retries it from its last "
            "checkpoint (--max-failures)",
            trial.trial_id,
            self._step(trial),
            error,
        )

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        stop = getattr(self, "stopping", None) or self._aborted()
        if stop is not None:
            with contextlib.suppress(Exception):  # a store that still refuses: nothing to add
                self._close_stopped(trials, *stop)
            return
        if getattr(self, "fault", None):
            return  # (no FaultWatch stopped the search: nothing more can be written)
        # A trial that ended while the driver was down: close its run now.
        for trial in trials:
            if trial.status not in ("TERMINATED", "ERROR") or trial.trial_id not in self._runs:
                continue
            if self._mlflow.get_run(self._runs[trial.trial_id]).info.status == "RUNNING":
                self._end(trial, trial_status(trial, self._max_steps(trial)))
        if self.parent_run_id is None:
            return
        self._delete_orphans({trial.trial_id for trial in trials})
        if self.stage == "search":
            self._summarize()
        self._mlflow.set_terminated(self.parent_run_id, "FINISHED")

    def _aborted(self) -> tuple[str, str] | None:
        """Why the fit ended early when nothing asked it to stop: the store's own I/O fault, or
        the exception Ray's loop raised (Ray ends the callbacks inside its `except`)."""
        if getattr(self, "fault", None):
            return "io", self.fault
        error = sys.exc_info()[1]
        if error is None:
            return None
        where = self.store_path  # (a SQLite error names no file: the stores' folder, then)
        problem = io_problem(
            error, str(Path(where).parent) if is_local_store(self.tracking_uri) else where
        )
        return ("io", problem) if problem else ("error", f"{type(error).__name__}: {error}")

    def _close_stopped(self, trials: list, kind: str, reason: str) -> None:
        """End the runs left RUNNING, and the parent run, with why the search stopped."""
        status = "KILLED" if kind == "interrupt" else "FAILED"
        for trial in trials:
            run_id = self._runs.get(trial.trial_id)
            if run_id is None or self._mlflow.get_run(run_id).info.status != "RUNNING":
                continue
            ending = self._stopped_end(trial, status, reason)
            if ending is None:
                continue
            ended, end, error = ending
            if error:
                self._mlflow.set_tag(run_id, TAG_ERROR, error)
            self._mlflow.set_tag(run_id, TAG_END, end)
            self._mlflow.set_tag(run_id, TAG_NOTE, fit_note(self._trial_note(trial, end)))
            self._mlflow.set_terminated(run_id, ended)
        if self.parent_run_id is not None:
            self._mlflow.set_tag(self.parent_run_id, TAG_END, f"{reason} (a resume continues it)")
            self._mlflow.set_terminated(self.parent_run_id, status)

    def _stopped_end(self, trial: Any, status: str, reason: str) -> tuple[str, str, str] | None:
        """(status, end, error) of a RUNNING run when the search stops: a trial this driver was
        training ends `status` (KILLED on Ctrl-C, FAILED on a fault; a resume sets it RUNNING
        again and continues it), never "stopped by" the scheduler; a trial that had ended gets
        its own end (its artifacts not logged); None for one not started."""
        step = self._step(trial)
        if trial.trial_id in getattr(self, "_live", ()):
            end = f"{reason} (at step {step}; a resume continues it)"
            return status, end, reason if status == "FAILED" else ""
        if trial.status not in ("TERMINATED", "ERROR"):
            return None
        ended = trial_status(trial, self._max_steps(trial))
        error = _first_error_line(trial) if ended == "FAILED" else ""
        end = f"{end_reason(ended, step, error, self.stopper)} (artifacts not logged: {reason})"
        return ended, end, error

    def _delete_orphans(self, trial_ids: set[str]) -> None:
        """Delete this stage's runs of trials Ray does not know: a trial the killed driver had
        started but not yet saved in its experiment state is run again under a new id, so its
        first run holds nothing the search kept."""
        query = (
            f"tags.`{TAG_SEARCH}` = '{self.search}' and tags.`{TAG_ROLE}` = 'trial' "
            f"and tags.`{TAG_STAGE}` = '{self.stage}'"
        )
        runs = self._mlflow.search_runs(
            [self._experiment_id], filter_string=query, max_results=10000
        )
        for run in runs:
            if run.data.tags.get(TAG_TRIAL) not in trial_ids:
                self._mlflow.delete_run(run.info.run_id)

    def _summarize(self) -> None:
        """Summary metrics, the leaderboard in the description and the search-curve plot."""
        rows = search_rows(self._mlflow, self._experiment_id, self.search, self.metric, self.mode)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in summary_metrics(rows, self.metric).items()]
        log_metrics(self._mlflow, self.parent_run_id, metrics)
        note = "\n\n".join(
            [
                plan_markdown(self.search, self.search_params),
                "### Leaderboard",
                leaderboard_markdown(rows, self.searched, self.metric),
            ]
        )
        self._mlflow.set_tag(self.parent_run_id, TAG_NOTE, fit_note(note))
        histories = {r.trial: r.history for r in rows if r.history}
        if not histories:
            return
        steps = sorted({s for h in histories.values() for s, _ in h})
        rungs = steps[:-1] if self.stopper == "ASHA" else []  # ASHA's rungs are the evaluations
        labels = {r.trial: r.name for r in rows}
        with tempfile.TemporaryDirectory() as tmp:
            path = plots.save_search_curves(
                histories, Path(tmp, SEARCH_CURVES), self.metric, rungs, labels=labels
            )
            self._mlflow.log_artifact(self.parent_run_id, str(path))

    def _max_steps(self, trial: Any) -> int:
        return int(self.resolve_config(trial.config)["train.steps"])


def _first_error_line(trial: Any) -> str:
    """The exception line of the trial's error file."""
    try:
        return error_line(Path(trial.error_file or "").read_text())
    except OSError:
        return "error (no error file)"
