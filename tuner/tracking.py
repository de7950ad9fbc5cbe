"""MLflow tracking of a search: one parent run per search, one child run per trial.

`MlflowTracking` is a Ray Tune callback that runs in the driver. Every run is found by a tag
before one is created (the search by `diffsearch.search`, a trial by `ray.trial_id`), so a
search whose driver was killed and resumed keeps one run per trial; a resumed trial skips the
steps its run already holds. Artifacts travel with Ray's checkpoints (the trainable puts the
sample grid, the weighting plot and the trainer's `curve.json` in each checkpoint folder), so
the driver reads them from the Ray storage whichever node ran the trial.

What a reviewer sees in the MLflow UI (3.x):
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

import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

TAG_SEARCH = "diffsearch.search"
TAG_ROLE = "diffsearch.role"
TAG_STAGE = "diffsearch.stage"
TAG_END = "diffsearch.end"
TAG_TRIAL = "ray.trial_id"
TAG_LAST_STEP = "diffsearch.last_step"
TAG_CURVE_STEP = "diffsearch.curve_step"
TAG_BEST_CKPT = "diffsearch.best_checkpoint_step"
TAG_PARENT = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"  # a run's (or experiment's) description, markdown
TAG_KIND = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"  # MLflow 3's kind for model training
TAG_VIEW = "mlflow.sharedViewState."  # + view id: a saved view of the experiment's runs page
METRIC_PREFIXES = ("eval/", "loss/", "time/")
CURVE_FILE = "curve.json"  # the trainer's points between two evaluations (loss/…, time/…)
SEARCH_CURVES = "search_curves.png"
PARAMS_PER_BATCH = 100  # MLflow's limits for one log_batch
METRICS_PER_BATCH = 900  # of 1000 entities a batch may hold, leaving room for its tags
MAX_TAG_CHARS = 8000  # MLflow's limit on a run tag's value (the description is one)
MAX_RUN_NAME = 250
SCHEDULER_NAMES = {"asha": "ASHA", "pbt": "PBT", "fifo": "the scheduler"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DIVERGED = re.compile(r"DivergenceError\b.*?\bat step (\d+)")
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b.*")


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


def ui_base(uri: str, port: int = 5000) -> str:
    """Where the UI of `uri` is served: `mlflow ui` on 127.0.0.1:port, or the server itself."""
    return f"http://127.0.0.1:{port}" if is_local_store(uri) else uri.rstrip("/")


def review_link(base: str, experiment_id: str, view: str | None = None) -> str:
    """The UI page of an experiment's runs in the "Model training" view, opened on `view`."""
    query = "workflowType=machine_learning"
    if view:
        query = f"viewStateShareKey={view}&{query}"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def review_url(uri: str, experiment: str, search: str | None = None, port: int = 5000) -> str:
    """The link that opens a search's saved review view in the MLflow UI (see `ui_command`)."""
    mlflow = client(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return ui_base(uri, port)
    view = search if search and f"{TAG_VIEW}{search}" in found.tags else None
    return review_link(ui_base(uri, port), found.experiment_id, view)


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    if is_local_store(uri):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(mlflow: Any, name: str, uri: str) -> str:
    """The experiment's id, created if needed, and tagged a training experiment."""
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        root = artifact_root(uri)
        location = str(Path(root) / name) if root else None
        try:
            experiment_id = mlflow.create_experiment(
                name, artifact_location=location, tags={TAG_KIND: TRAINING_KIND}
            )
        except Exception:  # noqa: BLE001 - created concurrently by another driver
            found = mlflow.get_experiment_by_name(name)
            experiment_id = found.experiment_id
    else:
        experiment_id = found.experiment_id
    if found is not None and found.tags.get(TAG_KIND) != TRAINING_KIND:
        mlflow.set_experiment_tag(experiment_id, TAG_KIND, TRAINING_KIND)
    return experiment_id


def find_run(mlflow: Any, experiment_id: str, tags: dict[str, str]) -> Any | None:
    """The oldest run whose tags match `tags` (None if there is none)."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlflow.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time ASC"]
    )
    return runs[0] if runs else None


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def param_value(value: Any) -> str:
    """A param as MLflow shows it: strings bare, everything else a JSON literal (null, false)."""
    return value if isinstance(value, str) else json.dumps(value)


def short_value(value: Any) -> str:
    """A value for a run name: 2 significant digits, whole numbers bare, JSON words otherwise."""
    if isinstance(value, str):
        return value
    if _numeric(value):
        if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.2g}"
    return json.dumps(value)


def short_labels(keys: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Labels for searched keys: `weighting.` dropped where that stays unambiguous.

    The weighting's knobs are what a search varies most (`p`, `k`, `clamp`); the other axes
    keep their prefix (`tiw.strength`, `cdl.coef`), so every label names one config key.
    """
    keys = list(keys)
    short = {k: k.removeprefix("weighting.") if k.startswith("weighting.") else k for k in keys}
    taken: dict[str, int] = {}
    for label in short.values():
        taken[label] = taken.get(label, 0) + 1
    return {
        k: label if taken[label] == 1 and (label == k or label not in keys) else k
        for k, label in short.items()
    }


def run_name(config: dict[str, Any], searched: tuple[str, ...], trial_id: str) -> str:
    """`p=0.52 k=1.3 clamp=5 tiw.strength=0.8 cdl.coef=0 · 3f2a_00004` (the trial id last)."""
    labels = short_labels([k for k in searched if k in config])
    parts = " ".join(f"{labels[k]}={short_value(config[k])}" for k in labels)
    if not parts:
        return trial_id
    tail = f" · {trial_id}"
    if len(parts) + len(tail) > MAX_RUN_NAME:
        parts = parts[: MAX_RUN_NAME - len(tail) - 1].rstrip() + "…"
    return parts + tail


def trial_status(trial: Any, max_steps: int) -> str:
    """MLflow status of a finished Ray trial: FAILED (error), FINISHED, or KILLED (stopped early)."""
    if trial.status == "ERROR":
        return "FAILED"
    step = (trial.last_result or {}).get("step", 0)
    return "FINISHED" if step >= max_steps else "KILLED"


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
    path = Path(folder, CURVE_FILE)
    try:
        points = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(points, list):
        return []
    return [p for p in points if isinstance(p, dict) and _numeric(p.get("step"))]


def log_metrics(
    mlflow: Any, run_id: str, metrics: list[Any], tags: list[Any] | None = None
) -> None:
    """`log_batch` within MLflow's batch limits; the tags go with the last batch."""
    chunks = [metrics[i : i + METRICS_PER_BATCH] for i in range(0, len(metrics), METRICS_PER_BATCH)]
    chunks = chunks or [[]]
    for i, chunk in enumerate(chunks):
        extra = list(tags or []) if i == len(chunks) - 1 else []
        if chunk or extra:
            mlflow.log_batch(run_id, metrics=chunk, tags=extra)


# -- the saved review view ------------------------------------------------------------------------
def _parallel_chart(metric: str, searched: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "PARALLEL",
        "uuid": "diffsearch-parallel",
        "metricSectionId": "diffsearch-search",
        "selectedParams": list(searched),
        "selectedMetrics": [metric],
        "showAllRuns": True,
        "runsCountToCompare": 100,
        "deleted": False,
        "isGenerated": False,
        "displayName": f"searched parameters against {metric}",
    }


def _line_chart(key: str) -> dict[str, Any]:
    return {
        "type": "LINE",
        "uuid": f"diffsearch-line-{key}",
        "metricSectionId": "diffsearch-search",
        "metricKey": key,
        "displayName": key,
        "runsCountToCompare": 100,
        "lineSmoothness": 0,
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "range": {},
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "ignoreOutliers": False,
        "useGlobalXaxisKey": False,
        "useGlobalLineSmoothing": False,
        "deleted": False,
        "isGenerated": False,
    }


def view_state(search: str, metric: str, mode: str, searched: tuple[str, ...]) -> dict[str, Any]:
    """The runs page of one search as a reviewer wants it (MLflow 3.17's view-state keys).

    The search's runs only, best first by the metric; the metric, the searched parameters, the
    stage and the end reason as columns; every run shown in the charts (the UI's default shows
    10); and charts: parallel coordinates of the searched parameters against the metric, the
    metric and the denoising loss over steps.
    """
    charts = [_parallel_chart(metric, searched)]
    charts += [_line_chart(key) for key in (metric, "loss/denoise")]
    section = {
        "uuid": "diffsearch-search",
        "name": "search",
        "display": True,
        "isReordered": False,
        "deleted": False,
        "isGenerated": False,
    }
    return {
        "searchFilter": f"tags.`{TAG_SEARCH}` = '{search}'",
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": mode == "min",
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": [
            f"metrics.`{metric}`",
            *(f"params.`{k}`" for k in searched),
            f"tags.`{TAG_STAGE}`",
            f"tags.`{TAG_END}`",
        ],
        "columnOrder": [],
        "columnWidths": {},
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": [section],
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": True,
        "groupBy": None,
        "groupsExpanded": {},
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0},
    }


def save_view(mlflow: Any, experiment_id: str, view: str, name: str, state: dict) -> None:
    """Write a saved view as the UI's "Save view" does (an experiment tag; kept if present)."""
    tags = mlflow.get_experiment(experiment_id).tags
    if f"{TAG_VIEW}{view}" in tags:
        return
    now = int(time.time() * 1000)
    envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    mlflow.set_experiment_tag(experiment_id, f"{TAG_VIEW}{view}", json.dumps(envelope))


# -- the parent run's description ---------------------------------------------------------------
def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plan_markdown(search: str, search_params: dict[str, Any]) -> str:
    """The plan of a search as markdown: its settings, searched ranges and fixed keys."""
    settings = {k: v for k, v in search_params.items() if not k.startswith(("fixed.", "param."))}
    params = {k[6:]: v for k, v in search_params.items() if k.startswith("param.")}
    fixed = {k[6:]: v for k, v in search_params.items() if k.startswith("fixed.")}
    parts = [f"### Search `{search}`", ""]
    parts.append(", ".join(f"{k} **{param_value(v)}**" for k, v in settings.items()))
    if params:
        parts += ["", "Searched:", "", markdown_table(["key", "range"], list(params.items()))]
    if fixed:
        fixed_text = ", ".join(f"`{k}`={param_value(v)}" for k, v in fixed.items())
        parts += ["", f"Fixed: {fixed_text}"]
    return "\n".join(parts)


def _short_param(text: str) -> str:
    """A param string for a table: numbers to 3 significant digits, anything else as it is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if _numeric(value) and not float(value).is_integer():
        return f"{value:.3g}"
    return text


def leaderboard_markdown(rows: list[dict[str, Any]], searched: tuple[str, ...], metric: str) -> str:
    """Ranked trials as a markdown table, with MLflow's status words and full key names."""
    head = ["#", "trial", "status", "end", f"best {metric}", "steps", *searched]
    table = [
        [
            i + 1,
            r["trial"],
            r["status"],
            r["end"],
            "-" if r["best"] is None else f"{r['best']:.4g}",
            r["steps"],
            *(_short_param(r["params"].get(k, "-")) for k in searched),
        ]
        for i, r in enumerate(rows)
    ]
    return markdown_table(head, table)


def fit_note(text: str) -> str:
    """A description within MLflow's tag limit (cut at a line, saying so)."""
    if len(text) <= MAX_TAG_CHARS:
        return text
    cut = text[: MAX_TAG_CHARS - 80].rsplit("\n", 1)[0]
    return cut + "\n\n… (cut to MLflow's 8000-character limit; see leaderboard.txt)"


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
        self._synced: set[str] = set()  # trials whose logged steps were read from their tags

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
        # Ray saved this state at some step before the driver died; the runs' tags say what was
        # logged after it, and are read again before a remembered run logs anything.
        self._synced = set()

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
        elif parent.info.status != "RUNNING":
            self._mlflow.update_run(parent.info.run_id, status="RUNNING")
        self.parent_run_id = parent.info.run_id
        save_view(
            self._mlflow,
            self._experiment_id,
            self.search,
            f"review {self.search}",
            view_state(self.search, self.metric, self.mode, self.searched),
        )

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._mlflow.log_batch(run_id, params=items[i : i + PARAMS_PER_BATCH])

    def run_id(self, trial: Any) -> str:
        """The trial's run: remembered, found by its tag, or created (with the config as params)."""
        trial_id = trial.trial_id
        if trial_id in self._runs:
            run_id = self._runs[trial_id]
            if trial_id not in self._synced:  # restored state: what the tags add to it
                tags = self._mlflow.get_run(run_id).data.tags
                for steps, tag in (
                    (self._last_step, TAG_LAST_STEP),
                    (self._curve_step, TAG_CURVE_STEP),
                ):
                    steps[trial_id] = max(steps.get(trial_id, -1), int(tags.get(tag, -1)))
                self._synced.add(trial_id)
            return run_id
        found = find_run(
            self._mlflow, self._experiment_id, {TAG_TRIAL: trial_id, TAG_SEARCH: self.search}
        )
        if found is not None:
            self._last_step[trial_id] = int(found.data.tags.get(TAG_LAST_STEP, -1))
            self._curve_step[trial_id] = int(found.data.tags.get(TAG_CURVE_STEP, -1))
            run_id = found.info.run_id
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
        log_metrics(self._mlflow, self.run_id(trial), metrics, [RunTag(TAG_LAST_STEP, str(step))])
        self._last_step[trial.trial_id] = step
        shown = " ".join(
            f"{k} {v:.4g}" for k, v in result.items() if k.startswith("eval/") and _numeric(v)
        )
        print(f"[diffsearch] trial {trial.trial_id} step {step}: {shown}", flush=True)

    def _log_curve(self, trial: Any, run_id: str, folder: str) -> None:
        """The points between two evaluations (curve.json), each step once, in one batch."""
        from mlflow.entities import Metric, RunTag

        done = self._curve_step.get(trial.trial_id, -1)
        points = [p for p in read_curve(folder) if int(p["step"]) > done]
        if not points:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, int(p["step"]))
            for p in points
            for k, v in p.items()
            if k.startswith(METRIC_PREFIXES) and _numeric(v)
        ]
        last = max(int(p["step"]) for p in points)
        log_metrics(self._mlflow, run_id, metrics, [RunTag(TAG_CURVE_STEP, str(last))])
        self._curve_step[trial.trial_id] = last

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        pending = self._pending.pop(trial.trial_id, None)
        run_id = self.run_id(trial)
        with checkpoint.as_directory() as folder:
            self._log_curve(trial, run_id, folder)
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
        error = ""
        if status == "FAILED":
            error = _first_error_line(trial) if trial.error_file else "error (no error file)"
            self._mlflow.set_tag(run_id, "diffsearch.error", error)
        step = int((trial.last_result or {}).get("step", self._last_step.get(trial.trial_id, 0)))
        end = end_reason(status, step, error, self.stopper)
        self._mlflow.set_tag(run_id, TAG_END, end)
        self._mlflow.set_tag(run_id, TAG_NOTE, fit_note(self._trial_note(trial, end)))
        self._mlflow.set_terminated(run_id, status)
        print(
            f"[diffsearch] trial {trial.trial_id} ended {status} at step {step} (mlflow run {run_id})",
            flush=True,
        )

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
                f"samples/samples_{best[1]:07d}.png)."
            )
        return "\n\n".join(lines)

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
        if self.parent_run_id is None:
            return
        self._delete_orphans({trial.trial_id for trial in trials})
        if self.stage == "search":
            self._summarize()
        self._mlflow.set_terminated(self.parent_run_id, "FINISHED")

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
        from mlflow.entities import Metric

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
        histories = {r["trial"]: r["history"] for r in rows if r["history"]}
        if not histories:
            return
        from tuner import plots

        steps = sorted({s for h in histories.values() for s, _ in h})
        rungs = steps[:-1] if self.stopper == "ASHA" else []  # ASHA's rungs are the evaluations
        labels = {r["trial"]: r["name"] for r in rows}
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
        return error_line(Path(trial.error_file).read_text())
    except OSError:
        return "error (no error file)"


def search_rows(
    mlflow: Any, experiment_id: str, search: str, metric: str, mode: str, stage: str = "search"
) -> list[dict[str, Any]]:
    """The trials of one stage of a search as MLflow holds them, best first.

    Each row: name, status, end, best (the metric's best value, None without one), steps (the
    last step logged), params (the run's params), history ([(step, value)] of the metric).
    """
    runs = mlflow.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_SEARCH}` = '{search}' and tags.`{TAG_ROLE}` = 'trial'",
        max_results=10000,
    )
    rows = []
    for run in runs:
        if run.data.tags.get(TAG_STAGE, "search") != stage:
            continue
        history = sorted(
            (m.step, m.value)
            for m in mlflow.get_metric_history(run.info.run_id, metric)
            if math.isfinite(m.value)
        )
        values = [v for _, v in history]
        best = (min(values) if mode == "min" else max(values)) if values else None
        rows.append(
            {
                "trial": run.data.tags.get(TAG_TRIAL, run.info.run_name),
                "name": run.info.run_name,
                "status": run.info.status,
                "end": run.data.tags.get(TAG_END, "-"),
                "best": None if run.info.status == "FAILED" else best,
                "steps": int(run.data.tags.get(TAG_LAST_STEP, 0)),
                "params": dict(run.data.params),
                "history": history,
            }
        )
    sign = 1 if mode == "min" else -1
    rows.sort(key=lambda r: (r["best"] is None, sign * (r["best"] or 0.0), r["name"]))
    return rows


def summary_metrics(rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """best/<metric>, trials/run, trials/finished, trials/stopped, trials/failed."""
    count = {s: sum(r["status"] == s for r in rows) for s in ("FINISHED", "KILLED", "FAILED")}
    out = {
        "trials/run": float(len(rows)),
        "trials/finished": float(count["FINISHED"]),
        "trials/stopped": float(count["KILLED"]),
        "trials/failed": float(count["FAILED"]),
    }
    ranked = [r for r in rows if r["best"] is not None]
    if ranked:
        out[f"best/{metric}"] = float(ranked[0]["best"])
    return out


def log_summary(
    uri: str,
    experiment: str,
    search: str,
    files: list[str],
    best: dict[str, Any],
    metrics: dict[str, float] | None = None,
    description: str = "",
    tags: dict[str, str] | None = None,
    append: str = "",
) -> str | None:
    """Attach files, metrics, a markdown description and tags to the search's parent run.

    Args:
        uri, experiment, search: the store, experiment name and search id of the parent run.
        files: local files logged as artifacts (the leaderboard, best.json, plots).
        best: tagged `diffsearch.best_<key>` (e.g. trial, metric).
        metrics: logged at step 0 (e.g. `best/eval/fid`, `trials/run`, `verdict/...`).
        description: markdown, the run's description in the UI (`mlflow.note.content`); an
            empty one keeps the description the tracking callback wrote.
        tags: further tags.
        append: markdown added under the description (e.g. the confirmation's verdict).

    Returns:
        The parent run's id, or None if the search has no parent run.
    """
    from mlflow.entities import Metric, RunTag

    mlflow = client(uri)
    experiment_id = get_or_create_experiment(mlflow, experiment, uri)
    parent = find_run(mlflow, experiment_id, {TAG_SEARCH: search, TAG_ROLE: "search"})
    if parent is None:
        return None
    run_id = parent.info.run_id
    for path in files:
        mlflow.log_artifact(run_id, path)
    now = int(time.time() * 1000)
    logged = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if _numeric(v)]
    all_tags = {f"diffsearch.best_{k}": str(v) for k, v in best.items()} | dict(tags or {})
    if description or append:
        note = description or parent.data.tags.get(TAG_NOTE, "")
        all_tags[TAG_NOTE] = fit_note(f"{note}\n\n{append}" if append else note)
    log_metrics(mlflow, run_id, logged, [RunTag(k, v) for k, v in all_tags.items()])
    return run_id
