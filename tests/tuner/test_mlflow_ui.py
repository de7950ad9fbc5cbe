"""What a reviewer sees of a search: its MLflow store read with the MLflow client, the MLflow UI
(`mlflow ui` on 127.0.0.1) and the Optuna dashboard on its study (`optuna-dashboard` on
127.0.0.1), both opened in headless Chromium, driven by Playwright.

The search is a smoke search run here, or, with DIFFSEARCH_UI_STORE=DIR, the last search whose
stores lie in DIR (a search's `mlruns` folder: mlflow.db and optuna.db). The browser tests need
Debian's `chromium` and Playwright's Python package (`.ci/run` installs both; Playwright's own
browser download is never used) and are skipped, saying which is missing, without them. With
DIFFSEARCH_SCREENSHOTS=DIR they keep their screenshots of the runs view, the chart view and the
Optuna study there; README's are of the default search, taken by `bench/default_run.py`
(`DIFFSEARCH_SCREENSHOTS=docs DIFFSEARCH_UI_STORE=<its folder>/mlruns python -m pytest
tests/tuner/test_mlflow_ui.py`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from search_spaces import SMOKE
from tuner.tracking.store import review_link, review_url

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "diffsearch-debias_family"
METRIC = "eval/fid"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium's own connections are refused by a closed
# network and slow every page down.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
PAGE_TIMEOUT_MS = 60_000
SCREENSHOTS = os.environ.get("DIFFSEARCH_SCREENSHOTS")
STORE = os.environ.get("DIFFSEARCH_UI_STORE")  # a search's mlruns folder, instead of a smoke one


# -- the search and its store ---------------------------------------------------------------------
def _smoke_search(root: Path) -> str:
    """A smoke search in `root`; its MLflow store's URI."""
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    cmd = [sys.executable, "-m", "tuner.run", "--smoke-test", "--storage", str(root / "ray")]
    cmd += ["--mlflow-uri", uri]
    cmd += ["--set", "train.log_every=2"]  # a loss point every 2 of the smoke test's 40 steps
    # one trial at a time: the trials reach ASHA's rung in TPE's (seeded) order, so which of them
    # ASHA stops does not depend on the machine's timing (here: the last one, the worst at 20)
    cmd += ["--max-concurrent", "1"]
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=os.environ | QUIET
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return uri


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The search: a smoke search run here, or the last one in DIFFSEARCH_UI_STORE's stores."""
    from mlflow.tracking import MlflowClient

    if STORE:
        uri = f"sqlite:///{Path(STORE).resolve() / 'mlflow.db'}"
    else:
        uri = _smoke_search(tmp_path_factory.mktemp("ui"))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("diffsearch.role") == "search"]
    assert len(parents) == 1 or STORE, parents
    parent = max(parents, key=lambda r: r.info.start_time)  # (a store may hold earlier ones)
    search = parent.data.tags["diffsearch.search"]
    runs = [r for r in runs if r.data.tags.get("diffsearch.search") == search]
    trials = [r for r in runs if r.data.tags.get("diffsearch.role") == "trial"]
    children = [r for r in trials if r.data.tags.get("diffsearch.stage") == "search"]
    confirmation = [r for r in trials if r.data.tags.get("diffsearch.stage") == "confirmation"]
    assert len(children) + len(confirmation) == len(trials)
    searched = [k.removeprefix("param.") for k in parent.data.params if k.startswith("param.")]
    return {
        "uri": uri,
        "client": client,
        "experiment": experiment,
        "search": search,
        "parent": parent,
        "children": children,  # the search stage's trials
        "confirmation": confirmation,  # the retrained candidates, if the search confirms
        "searched": searched,
    }


def _fid_steps(smoke: dict, run: Any) -> list[int]:
    return sorted(m.step for m in smoke["client"].get_metric_history(run.info.run_id, METRIC))


def test_parent_run_has_the_summary_metrics(smoke: dict) -> None:
    metrics = smoke["parent"].data.metrics
    children = smoke["children"]
    assert metrics["trials/run"] == len(children) > 0
    counts = [metrics[f"trials/{k}"] for k in ("finished", "stopped", "failed")]
    assert sum(counts) == len(children)
    assert counts == [
        sum(r.info.status == s for r in children) for s in ("FINISHED", "KILLED", "FAILED")
    ]
    fids = [
        m.value
        for r in children
        if r.info.status != "FAILED"
        for m in smoke["client"].get_metric_history(r.info.run_id, METRIC)
    ]
    assert metrics[f"best/{METRIC}"] == min(fids)
    note = smoke["parent"].data.tags["mlflow.note.content"]
    assert "### Leaderboard" in note and smoke["search"] in note
    artifacts = {a.path for a in smoke["client"].list_artifacts(smoke["parent"].info.run_id)}
    assert "search_curves.png" in artifacts


def test_every_child_run_name_holds_its_searched_values(smoke: dict) -> None:
    searched = smoke["searched"]
    assert searched
    for run in smoke["children"]:
        values, trial = run.info.run_name.split(" · ")
        assert trial == run.data.tags["ray.trial_id"]
        shown = dict(part.split("=", 1) for part in values.split(" "))
        # each label names one searched key (the weighting's knobs without their prefix)
        keys = {k if k in searched else f"weighting.{k}": v for k, v in shown.items()}
        assert sorted(keys) == sorted(searched), run.info.run_name
        for key, text in keys.items():
            logged = json.loads(run.data.params[key])
            if isinstance(logged, bool) or not isinstance(logged, (int, float)):
                assert text == json.dumps(logged), (key, text, logged)
            else:  # two significant digits
                assert math.isclose(float(text), logged, rel_tol=0.05, abs_tol=1e-12), key


def test_confirmation_run_names_hold_the_candidate_and_seed(smoke: dict) -> None:
    trials = {r.data.tags["ray.trial_id"] for r in smoke["children"]}
    for run in smoke["confirmation"]:
        values, trial = run.info.run_name.split(" · ")
        assert trial == run.data.tags["ray.trial_id"]
        candidate, seed = values.rsplit(" seed=", 1)
        assert seed == run.data.params["seed"]
        name = candidate.removeprefix("candidate=")
        fixed = ("baseline", "reference")  # the space's own two, and the search's top trials
        assert name in fixed or name.removeprefix("trial ") in trials, run.info.run_name
        assert "candidate" not in run.data.params


def test_a_finished_trial_has_a_loss_curve(smoke: dict) -> None:
    finished = [r for r in smoke["children"] if r.info.status == "FINISHED"]
    assert finished
    for run in finished:
        steps = [
            m.step for m in smoke["client"].get_metric_history(run.info.run_id, "loss/denoise")
        ]
        assert len(steps) >= 10 and len(set(steps)) == len(steps), steps


def test_every_stopped_trial_says_at_which_step_asha_stopped_it(smoke: dict) -> None:
    if smoke["parent"].data.params["scheduler"] == "asha":
        assert any(r.info.status == "KILLED" for r in smoke["children"])  # ASHA stopped one
    for run in smoke["children"] + smoke["confirmation"]:
        end = run.data.tags["diffsearch.end"]
        if run.info.status == "KILLED":
            assert end == f"stopped by ASHA at step {_fid_steps(smoke, run)[-1]}"
        elif run.info.status == "FINISHED":
            steps = int(run.data.params["train.steps"])
            assert end == "finished" and _fid_steps(smoke, run)[-1] == steps
    if not STORE:
        assert all(
            r.data.params["train.steps"] == str(SMOKE["train.steps"]) for r in smoke["children"]
        )
    assert all(r.info.status != "KILLED" for r in smoke["confirmation"])  # no early stopping


def test_the_experiment_is_a_training_experiment(smoke: dict) -> None:
    tags = smoke["experiment"].tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert f"mlflow.sharedViewState.{smoke['search']}" in tags
    params = smoke["children"][0].data.params
    assert params["data"] == "digits_biased" and params["eval.fid_weights"] == "null"
    assert params["weighting.normalize"] in ("true", "false")


# -- the MLflow UI in headless Chromium ---------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright's Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(server: subprocess.Popen, url: str, log: Path, what: str) -> None:
    deadline = time.time() + 180
    while True:
        assert server.poll() is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"{what} not up in 180 s:\n{log.read_text()[-3000:]}"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.5)


def _stop(server: subprocess.Popen) -> None:
    """The server we started and its workers (its own process group), nothing else."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def ui(smoke: dict, browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow ui` over the smoke search's store on 127.0.0.1; yields its base URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("mlflow_ui") / "server.log"
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", smoke["uri"]]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as f:
        server = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ | QUIET
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(server, f"{base}/health", log, "mlflow ui")
        yield base
    finally:
        _stop(server)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1800, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def _close_assistant(page: Any) -> None:
    """MLflow 3.17 opens its assistant panel on a first visit; a reviewer closes it."""
    close = page.get_by_role("button", name="Close")
    with contextlib.suppress(Exception):
        close.first.click(timeout=5000)


def _screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS, name)))


def _review(page: Any, ui: str, smoke: dict) -> None:
    port = int(ui.rsplit(":", 1)[1])
    page.goto(review_url(smoke["uri"], EXPERIMENT, smoke["search"], port=port))
    best = min(
        (r for r in smoke["children"] if r.info.status != "FAILED"),
        key=lambda r: r.data.metrics.get(METRIC, math.inf),
    )
    page.get_by_text(best.info.run_name, exact=True).first.wait_for()
    _close_assistant(page)


def test_the_review_link_opens_the_search_in_the_runs_view(page: Any, ui: str, smoke: dict) -> None:
    _review(page, ui, smoke)
    assert "/runs" in page.url and "workflowType=machine_learning" in page.url
    text = page.inner_text("body")
    assert "Token Usage" not in text  # not MLflow's GenAI overview
    for run in smoke["children"]:
        assert page.get_by_text(run.info.run_name, exact=True).first.is_visible()
    assert page.get_by_test_id(f"sort-header-{METRIC}").is_visible()  # a metric column
    for key in smoke["searched"]:
        assert page.get_by_test_id(f"sort-header-{key}").count() == 1, key
    assert "Sort: eval/fid" in text
    _screenshot(page, "mlflow_runs.png")


def test_the_trials_are_nested_under_the_search(page: Any, ui: str, smoke: dict) -> None:
    page.goto(review_link(ui, smoke["experiment"].experiment_id))
    parent = smoke["parent"].info.run_name
    page.get_by_text(parent, exact=True).first.wait_for()
    child = smoke["children"][0].info.run_name
    assert page.get_by_text(child, exact=True).count() == 0  # collapsed under the parent
    row = page.locator("[role=row]", has=page.get_by_text(parent, exact=True))
    row.locator("button").first.click()  # the expand button in the run-name cell
    for run in smoke["children"]:
        page.get_by_text(run.info.run_name, exact=True).first.wait_for()


def test_the_chart_view_compares_the_searched_parameters(page: Any, ui: str, smoke: dict) -> None:
    _review(page, ui, smoke)
    page.locator("label:has(input[value=CHART])").click()
    page.get_by_text("Parallel Coordinates", exact=True).first.wait_for()
    page.get_by_text("Showing all runs", exact=False).first.wait_for()
    for run in smoke["children"]:  # every run in the eval/fid chart, not the UI's default 10
        page.get_by_text(f"{run.info.run_name} ({METRIC})", exact=True).first.wait_for(
            state="attached"
        )
    # The parallel-coordinates chart (the first card) full screen, as a reviewer reads it.
    page.locator("[data-component-id=fullscreen_button_chartcard]").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Parallel Coordinates", exact=False).first.wait_for()
    page.wait_for_timeout(1500)  # let the plot finish drawing
    _screenshot(page, "mlflow_compare.png")


def test_a_trial_page_shows_its_fid_chart_and_sample_grid(page: Any, ui: str, smoke: dict) -> None:
    run = next(r for r in smoke["children"] if r.info.status == "FINISHED")
    experiment_id = smoke["experiment"].experiment_id
    page.goto(f"{ui}/#/experiments/{experiment_id}/runs/{run.info.run_id}")
    page.get_by_text(run.info.run_name, exact=True).first.wait_for()
    _close_assistant(page)
    overview = page.inner_text("body")
    assert "diffsearch.end" in overview and run.data.tags["diffsearch.end"] in overview
    page.get_by_role("tab", name="Model metrics").click()
    # the eval/fid chart: the card titled "fid" whose plot draws one point per evaluation
    title = page.get_by_text("fid", exact=True)
    card = page.locator("div").filter(has=title).filter(has=page.locator(".js-plotly-plot")).last
    points = card.locator(".scatterlayer .trace .points path")
    points.first.wait_for()
    assert points.count() == len(_fid_steps(smoke, run))
    assert f"{run.info.run_name} ({METRIC})" in card.inner_text()  # the legend names the run
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("samples", exact=True).first.click()
    last = _fid_steps(smoke, run)[-1]
    page.get_by_text(f"samples_{last:07d}.png", exact=True).first.click()
    image = page.locator("img[src^='blob:']").first
    image.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    width = image.evaluate("img => img.naturalWidth")
    assert width >= 512  # the upscaled grid, not 8-px digits


# -- the Optuna dashboard on the search's study -------------------------------------------------
@pytest.fixture(scope="module")
def dashboard(
    smoke: dict, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """`optuna-dashboard` on the search's study store (beside its MLflow store), as the run's last
    line says, on 127.0.0.1; yields its base URL and the study as Optuna reads it."""
    import optuna

    found = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert found, "optuna-dashboard is a dependency (pyproject.toml)"
    storage = f"sqlite:///{Path(smoke['uri'].removeprefix('sqlite:///')).parent / 'optuna.db'}"
    study = optuna.load_study(study_name=smoke["search"], storage=storage)
    port = _free_port()
    log = tmp_path_factory.mktemp("optuna_dashboard") / "server.log"
    cmd = [found, storage, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as f:
        server = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(server, f"{base}/api/meta", log, "optuna-dashboard")
        yield {"base": base, "study": study}
    finally:
        _stop(server)


def test_the_optuna_dashboard_lists_the_study_with_its_trials(
    page: Any, dashboard: dict, smoke: dict
) -> None:
    study = dashboard["study"]
    n = len(study.trials)
    assert n == len(smoke["children"]) > 0  # every trial of the search is in TPE's study
    page.goto(f"{dashboard['base']}/dashboard")
    page.get_by_text(smoke["search"], exact=False).first.click()  # the study list names it
    page.wait_for_url(re.compile(r"/dashboard/studies/\d+$"))
    page.get_by_role("heading", name="History", exact=True).wait_for()  # the study's page
    page.get_by_role("heading", name="Hyperparameter Importance", exact=True).first.wait_for()
    page.wait_for_timeout(2000)  # let the plots finish drawing
    _screenshot(page, "optuna_dashboard.png")
    page.goto(f"{page.url}/trials")
    page.get_by_text(f"{n} Trials", exact=True).wait_for()
    for number in range(n):
        page.get_by_text(f"Trial {number}", exact=True).first.wait_for()
    states = page.inner_text("body")
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    assert states.count("Pruned") >= pruned and states.count("Complete") >= n - pruned
