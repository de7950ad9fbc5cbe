"""MLflow tracking of a search: one parent run per search, one child run per trial.

`MlflowTracking` is a Ray Tune callback that runs in the driver. Every run is found by a tag
before one is created (the search by `diffsearch.search`, a trial by `ray.trial_id`), so a
search whose driver was killed and resumed keeps one run per trial; a resumed trial skips the
steps its run already holds. Artifacts travel with Ray's checkpoints (the trainable puts the
sample grid and the weighting plot in each checkpoint folder), so the driver reads them from the
Ray storage whichever node ran the trial.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

TAG_SEARCH = "diffsearch.search"
TAG_SPACE = "diffsearch.space"
TAG_TRIAL = "ray.trial_id"
TAG_LAST_STEP = "diffsearch.last_step"
TAG_BEST_CKPT = "diffsearch.best_checkpoint_step"
TAG_PARENT = "mlflow.parentRunId"
METRIC_PREFIXES = ("eval/", "loss/", "time/")
PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch


def default_tracking_uri(root: str | os.PathLike = "mlruns") -> str:
    """A SQLite store under `root` (no server needed): sqlite:////abs/mlruns/mlflow.db."""
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:")


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store lie beside the database; a server chooses its own."""
    if is_local_store(uri):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
    return None


def ui_command(uri: str, port: int = 5000) -> str:
    """The command that serves the MLflow UI for `uri`, bound to 127.0.0.1 only."""
    if is_local_store(uri):
        return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port {port}"
    return f"open {uri} in a browser (an MLflow server; keep it bound to 127.0.0.1 and forward the port)"


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if is_local_store(uri):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(mlflow: Any, name: str, uri: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = artifact_root(uri)
    location = str(Path(root) / name) if root else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # noqa: BLE001 - created concurrently by another driver
        return mlflow.get_experiment_by_name(name).experiment_id


def find_run(mlflow: Any, experiment_id: str, tags: dict[str, str]) -> Any | None:
    """The oldest run whose tags match `tags` (None if there is none)."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlflow.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time ASC"]
    )
    return runs[0] if runs else None


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def trial_status(trial: Any, max_steps: int) -> str:
    """MLflow status of a finished Ray trial: FAILED (error), FINISHED, or KILLED (stopped early)."""
    if trial.status == "ERROR":
        return "FAILED"
    step = (trial.last_result or {}).get("step", 0)
    return "FINISHED" if step >= max_steps else "KILLED"


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
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.search = search
        self.search_params = search_params
        self.metric, self.mode = metric, mode
        self.resolve_config = resolve_config
        self.config_metrics = config_metrics
        self._mlflow: Any = None
        self._experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._runs: dict[str, str] = {}  # trial_id -> run_id
        self._last_step: dict[str, int] = {}
        self._pending: dict[str, dict[str, Any]] = {}  # trial_id -> result awaiting its checkpoint
        self._best: dict[str, tuple[float, int, Any]] = {}  # trial_id -> (score, step, checkpoint)
        self._logged_weighting: set[str] = set()

    # -- state across driver restarts (saved with Ray's experiment checkpoint) ------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "runs": self._runs,
            "last_step": self._last_step,
            "best": self._best,
            "weighting": self._logged_weighting,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._runs = dict(state.get("runs", {}))
        self._last_step = dict(state.get("last_step", {}))
        self._best = dict(state.get("best", {}))
        self._logged_weighting = set(state.get("weighting", set()))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_mlflow"] = None  # the client is made again where the callback is unpickled
        return state

    # -- runs -------------------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        self._mlflow = client(self.tracking_uri)
        self._experiment_id = get_or_create_experiment(
            self._mlflow, self.experiment, self.tracking_uri
        )
        parent = find_run(
            self._mlflow,
            self._experiment_id,
            {TAG_SEARCH: self.search, "diffsearch.role": "search"},
        )
        if parent is None:
            parent = self._mlflow.create_run(
                self._experiment_id,
                run_name=self.search.rsplit("-", 1)[0],
                tags={TAG_SEARCH: self.search, "diffsearch.role": "search"},
            )
            self._log_params(parent.info.run_id, self.search_params)
        elif parent.info.status != "RUNNING":
            self._mlflow.update_run(parent.info.run_id, status="RUNNING")
        self.parent_run_id = parent.info.run_id

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._mlflow.log_batch(run_id, params=items[i : i + PARAMS_PER_BATCH])

    def run_id(self, trial: Any) -> str:
        """The trial's run: remembered, found by its tag, or created (with the config as params)."""
        trial_id = trial.trial_id
        if trial_id in self._runs:
            return self._runs[trial_id]
        found = find_run(
            self._mlflow, self._experiment_id, {TAG_TRIAL: trial_id, TAG_SEARCH: self.search}
        )
        if found is not None:
            self._last_step[trial_id] = int(found.data.tags.get(TAG_LAST_STEP, -1))
            run_id = found.info.run_id
        else:
            run = self._mlflow.create_run(
                self._experiment_id,
                run_name=trial_id,
                tags={
                    TAG_TRIAL: trial_id,
                    TAG_SEARCH: self.search,
                    TAG_PARENT: self.parent_run_id,
                    "diffsearch.role": "trial",
                },
            )
            run_id = run.info.run_id
            self._log_params(run_id, self.resolve_config(trial.config))
        self._runs[trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.run_id(trial)
        if self._mlflow.get_run(run_id).info.status != "RUNNING":
            self._mlflow.update_run(run_id, status="RUNNING")

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        from mlflow.entities import Metric, RunTag

        step = int(result.get("step", result.get("training_iteration", 0)))
        self._pending[trial.trial_id] = {"step": step, "score": result.get(self.metric)}
        if step <= self._last_step.get(trial.trial_id, -1):
            return  # already logged before the driver was restarted
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in result.items()
            if k.startswith(METRIC_PREFIXES) and _numeric(v)
        ]
        metrics += [
            Metric(f"config/{k}", float(trial.config[k]), now, step)
            for k in self.config_metrics
            if _numeric(trial.config.get(k))
        ]
        self._mlflow.log_batch(
            self.run_id(trial), metrics=metrics, tags=[RunTag(TAG_LAST_STEP, str(step))]
        )
        self._last_step[trial.trial_id] = step
        shown = " ".join(
            f"{k} {v:.4g}" for k, v in result.items() if k.startswith("eval/") and _numeric(v)
        )
        print(f"[diffsearch] trial {trial.trial_id} step {step}: {shown}", flush=True)

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        pending = self._pending.pop(trial.trial_id, None)
        run_id = self.run_id(trial)
        with checkpoint.as_directory() as folder:
            for png in sorted(Path(folder).glob("samples_*.png")):
                self._mlflow.log_artifact(run_id, str(png), "samples")
            weighting = Path(folder, "weighting.png")
            if weighting.exists() and trial.trial_id not in self._logged_weighting:
                self._mlflow.log_artifact(run_id, str(weighting))
                self._logged_weighting.add(trial.trial_id)
        if pending is None or not _numeric(pending["score"]) or not math.isfinite(pending["score"]):
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
                for name in ("state.pt", "config.json"):
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
        if status == "FAILED" and trial.error_file:
            self._mlflow.set_tag(run_id, "diffsearch.error", _first_error_line(trial))
        self._mlflow.set_terminated(run_id, status)
        step = self._last_step.get(trial.trial_id, 0)
        print(
            f"[diffsearch] trial {trial.trial_id} ended {status} at step {step} (mlflow run {run_id})",
            flush=True,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, trial_status(trial, self._max_steps(trial)))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end(trial, "FAILED")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # A trial that ended while the driver was down: close its run now.
        for trial in trials:
            if trial.status not in ("TERMINATED", "ERROR") or trial.trial_id not in self._runs:
                continue
            if self._mlflow.get_run(self._runs[trial.trial_id]).info.status == "RUNNING":
                self._end(trial, trial_status(trial, self._max_steps(trial)))
        if self.parent_run_id is not None:
            self._mlflow.set_terminated(self.parent_run_id, "FINISHED")

    def _max_steps(self, trial: Any) -> int:
        return int(self.resolve_config(trial.config)["train.steps"])


def _first_error_line(trial: Any) -> str:
    """The last line of the trial's error file (the exception and its message)."""
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
    except OSError:
        return "error (no error file)"
    return lines[-1][:500] if lines else "error"


def log_summary(
    uri: str, experiment: str, search: str, files: list[str], best: dict[str, Any]
) -> str | None:
    """Attach the leaderboard and best.json to the search's parent run; returns its run id."""
    mlflow = client(uri)
    experiment_id = get_or_create_experiment(mlflow, experiment, uri)
    parent = find_run(mlflow, experiment_id, {TAG_SEARCH: search, "diffsearch.role": "search"})
    if parent is None:
        return None
    for path in files:
        mlflow.log_artifact(parent.info.run_id, path)
    for key, value in best.items():
        mlflow.set_tag(parent.info.run_id, f"diffsearch.best_{key}", str(value))
    return parent.info.run_id
