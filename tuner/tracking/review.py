"""What a reviewer reads in the MLflow UI: run names, the saved view of a search's runs page, the
parent run's markdown description, and the summary of a search's trials as MLflow holds them.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from mlflow.entities import Metric, RunTag

from tuner.records import (
    END,
    FAILED,
    FINISHED,
    KILLED,
    STATUS,
    STATUSES,
    STEPS,
    TRIAL,
    Column,
    TrialRow,
    best_column,
    leaderboard,
    rank,
    ranked,
)
from tuner.tables import table
from tuner.tracking.store import (
    MAX_RUN_NAME,
    MAX_TAG_CHARS,
    TAG_END,
    TAG_LAST_STEP,
    TAG_NOTE,
    TAG_ROLE,
    TAG_SEARCH,
    TAG_STAGE,
    TAG_TRIAL,
    TAG_VIEW,
    client,
    find_run,
    get_or_create_experiment,
    log_metrics,
    numeric,
    param_value,
)


# -- run names ----------------------------------------------------------------------------------
def short_value(value: Any) -> str:
    """A value for a run name: 2 significant digits, whole numbers bare, JSON words otherwise."""
    if isinstance(value, str):
        return value
    if numeric(value):
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
    """The runs page of one search as a reviewer wants it, in MLflow 3.17's view-state keys (an
    undocumented UI format: MLflow is held to 3.17.x, pyproject.toml and tuner/versions.py).

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
def plan_markdown(search: str, search_params: dict[str, Any]) -> str:
    """The plan of a search as markdown: its settings, searched ranges and fixed keys."""
    settings = {k: v for k, v in search_params.items() if not k.startswith(("fixed.", "param."))}
    params = {k[6:]: v for k, v in search_params.items() if k.startswith("param.")}
    fixed = {k[6:]: v for k, v in search_params.items() if k.startswith("fixed.")}
    parts = [f"### Search `{search}`", ""]
    parts.append(", ".join(f"{k} **{param_value(v)}**" for k, v in settings.items()))
    if params:
        ranges = table(["key", "range"], [list(p) for p in params.items()], fmt="markdown")
        parts += ["", "Searched:", "", ranges]
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
    if numeric(value) and not float(value).is_integer():
        return f"{value:.3g}"
    return text


def leaderboard_markdown(rows: list[TrialRow], searched: tuple[str, ...], metric: str) -> str:
    """Ranked trials as a markdown table, with MLflow's status words and full key names."""
    keys: list[Column] = [(k, lambda r, k=k: _short_param(r.raw.get(k, "-"))) for k in searched]
    columns = [TRIAL, STATUS, END, best_column(metric), STEPS, *keys]
    return leaderboard(rows, columns, fmt="markdown")


def fit_note(text: str) -> str:
    """A description within MLflow's tag limit (cut at a line, saying so)."""
    if len(text) <= MAX_TAG_CHARS:
        return text
    cut = text[: MAX_TAG_CHARS - 80].rsplit("\n", 1)[0]
    return cut + "\n\n… (cut to MLflow's 8000-character limit; see leaderboard.txt)"


# -- the search's trials as MLflow holds them -------------------------------------------------------
def _config(params: dict[str, str]) -> dict[str, Any]:
    """A run's params (JSON literals, strings bare) as config values."""
    out: dict[str, Any] = {}
    for key, text in params.items():
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def _run_row(mlflow: Any, run: Any, metric: str, mode: str) -> TrialRow:
    """A trial's run as a row: its metric's history, its status and end as the run holds them."""
    history = sorted(
        (m.step, m.value)
        for m in mlflow.get_metric_history(run.info.run_id, metric)
        if math.isfinite(m.value)
    )
    params = dict(run.data.params)
    return TrialRow.from_history(
        history,
        int(run.data.tags.get(TAG_LAST_STEP, 0)),
        mode,
        trial=run.data.tags.get(TAG_TRIAL, run.info.run_name),
        status=run.info.status,
        config=_config(params),
        raw=params,
        name=run.info.run_name,
        end=run.data.tags.get(TAG_END, "-"),
    )


def search_rows(
    mlflow: Any, experiment_id: str, search: str, metric: str, mode: str, stage: str = "search"
) -> list[TrialRow]:
    """The trials of one stage of a search as MLflow holds them, ranked (tuner.records.rank)."""
    runs = mlflow.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_SEARCH}` = '{search}' and tags.`{TAG_ROLE}` = 'trial'",
        max_results=10000,
    )
    rows = [
        _run_row(mlflow, run, metric, mode)
        for run in runs
        if run.data.tags.get(TAG_STAGE, "search") == stage
    ]
    return rank(rows, mode)


def summary_metrics(rows: list[TrialRow], metric: str) -> dict[str, float]:
    """best/<metric>, trials/run, trials/finished, trials/stopped, trials/failed."""
    count = {s: float(sum(r.status == s for r in rows)) for s in STATUSES}
    out = {
        "trials/run": float(len(rows)),
        "trials/finished": count[FINISHED],
        "trials/stopped": count[KILLED],
        "trials/failed": count[FAILED],
    }
    best = ranked(rows)
    if best:
        out[f"best/{metric}"] = float(best[0].best)
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
    mlflow = client(uri)
    experiment_id = get_or_create_experiment(mlflow, experiment, uri)
    parent = find_run(mlflow, experiment_id, {TAG_SEARCH: search, TAG_ROLE: "search"})
    if parent is None:
        return None
    run_id = parent.info.run_id
    for path in files:
        mlflow.log_artifact(run_id, path)
    now = int(time.time() * 1000)
    logged = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if numeric(v)]
    all_tags = {f"diffsearch.best_{k}": str(v) for k, v in best.items()} | dict(tags or {})
    if description or append:
        note = description or parent.data.tags.get(TAG_NOTE, "")
        all_tags[TAG_NOTE] = fit_note(f"{note}\n\n{append}" if append else note)
    log_metrics(mlflow, run_id, logged, [RunTag(k, v) for k, v in all_tags.items()])
    return run_id
