"""The MLflow store of a search: where it is, its client, its experiment, the tags that find runs.

The small pieces every part of the tracking shares (tuner/tracking/callback.py's callback that logs a
search, tuner/tracking/review.py's pages and summaries): the store's URI and its UI's links, the
experiment (tagged a training experiment, so MLflow 3's UI opens on its runs), finding a run by
its tags, params as JSON literals and metrics within MLflow's batch limits.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

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
PARAMS_PER_BATCH = 100  # MLflow's limits for one log_batch
METRICS_PER_BATCH = 900  # of 1000 entities a batch may hold, leaving room for its tags
MAX_TAG_CHARS = 8000  # MLflow's limit on a run tag's value (the description is one)
MAX_RUN_NAME = 250
# A trial's last result when it fails in a way the search must know before Ray does (the
# trainable reports it, then raises or waits to be stopped): FAULT_REPEATS for an error that would
# repeat if the trial were retried, FAULT_IO for an I/O fault of the file system.
FAULT_KIND, FAULT_ERROR = "fault/kind", "fault/error"
FAULT_REPEATS, FAULT_IO = "repeats", "io"
IO_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
# The same faults in text (a Ray error file, a log line) and in SQLite's words.
_IO_TEXT = {
    errno.ENOSPC: re.compile(
        r"\[errno 28\]|no space left on device|database or disk is full", re.I
    ),
    errno.EDQUOT: re.compile(r"\[errno 122\]|disk quota exceeded", re.I),
    errno.EROFS: re.compile(
        r"\[errno 30\]|read-only file system|attempt to write a readonly database", re.I
    ),
    errno.EIO: re.compile(r"\[errno 5\]|input/output error|disk i/o error", re.I),
}


# Says at INFO what MLflow does to a SQLite store as it creates or migrates it ("Creating initial
# MLflow database tables...", "Updating database tables"); alembic's own migration lines MLflow
# keeps at WARNING itself (mlflow/utils/logging_utils.py).
STORE_LOGGER = "mlflow.store.db.utils"


def store_logging(verbose: bool) -> None:
    """MLflow's lines on creating or migrating a store: shown with --verbose (at MLflow's own
    level), else its warnings and errors only."""
    logging.getLogger(STORE_LOGGER).setLevel(logging.NOTSET if verbose else logging.WARNING)


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
    # mlflow (seconds): the command line and the trials read this module's names and paths,
    # only the driver's tracking opens the store
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


def numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def param_value(value: Any) -> str:
    """A param as MLflow shows it: strings bare, everything else a JSON literal (null, false)."""
    return value if isinstance(value, str) else json.dumps(value)


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


def io_problem(error: BaseException | str, where: str) -> str | None:
    """`no space left on device: PATH` (or another I/O fault of the file system, IO_ERRNOS) when
    `error` — an exception with its causes, or the text of one — is one, else None. PATH is the
    file the error names (a copy's destination), else `where`."""
    chain: list[BaseException | str] = [error]
    while isinstance(chain[-1], BaseException) and len(chain) < 20:
        cause = chain[-1].__cause__ or chain[-1].__context__
        if cause is None:
            break
        chain.append(cause)
    for e in chain:
        if isinstance(e, OSError) and e.errno in IO_ERRNOS:
            return f"{os.strerror(e.errno).lower()}: {e.filename2 or e.filename or where}"
    for e in chain:
        for code, pattern in _IO_TEXT.items():
            if pattern.search(str(e)):
                return f"{os.strerror(code).lower()}: {where}"
    return None
