"""Tests for tuner/tracking/callback.py: run names, end reasons, JSON params, curves logged once across
driver restarts, the parent run's summary, the training-experiment tag and the saved view."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tuner.config.spec import resolve
from tuner.records import TrialRow
from tuner.tracking.callback import MlflowTracking, end_reason, error_line, read_curve
from tuner.tracking.review import (
    leaderboard_markdown,
    log_summary,
    run_name,
    short_labels,
    short_value,
)
from tuner.tracking.store import (
    METRICS_PER_BATCH,
    TAG_KIND,
    TAG_NOTE,
    TAG_VIEW,
    TRAINING_KIND,
    log_metrics,
    param_value,
    review_link,
    review_url,
)
from tuner.training.checkpoint import LAYOUT

SEARCH = "smoke-1234"
EXPERIMENT = "diffsearch-test"
SEARCH_PARAMS = {
    "space": "x",
    "metric": "eval/nll",
    "scheduler": "asha",
    "param.weighting.p": "float [0, 1.5]",
    "param.tiw.strength": "float [0, 1]",
    "fixed.train.steps": 40,
    "fixed.data": "ring8",
}
RAY_ERROR = (
    "Failure # 1 (occurred at 2026-12-02_10-00-00)\n"
    "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=127.0.0.1)\n"
    '  File "tuner/training/trainer.py", line 300, in run_trial\n'
    "    raise DivergenceError(...)\n"
    "tuner.training.trainer.DivergenceError: loss became nan at step 7 in term loss/denoise\n"
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("digits_biased", "digits_biased"),
        (None, "null"),
        (False, "false"),
        (True, "true"),
        (0.5, "0.5"),
        (40, "40"),
        (1e-05, "1e-05"),
        ([0.0, 1.0], "[0.0, 1.0]"),
    ],
)
def test_params_are_json_literals_and_strings_stay_bare(value: Any, text: str) -> None:
    assert param_value(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.5234, "0.52"), (1.27, "1.3"), (5.0, "5"), (0.0, "0"), (20, "20"), (1e-5, "1e-05")]
    + [(True, "true"), (None, "null"), ("baseline", "baseline"), (2.5e7, "2.5e+07")],
)
def test_short_values(value: Any, text: str) -> None:
    assert short_value(value) == text


@pytest.mark.parametrize(
    ("keys", "labels"),
    [
        (
            ("weighting.p", "weighting.k", "tiw.strength", "cdl.coef"),
            ["p", "k", "tiw.strength", "cdl.coef"],
        ),
        (("weighting.p", "noise.loc", "noise.scale"), ["p", "noise.loc", "noise.scale"]),
        (("weighting.seed", "seed"), ["weighting.seed", "seed"]),  # "seed" would name two keys
        (("candidate", "seed"), ["candidate", "seed"]),
    ],
)
def test_short_labels_stay_unambiguous(keys: tuple[str, ...], labels: list[str]) -> None:
    assert list(short_labels(keys).values()) == labels


def test_run_names_show_the_searched_values_then_the_trial_id() -> None:
    config = {
        "data": "digits_biased",
        "weighting.p": 0.5234,
        "weighting.k": 1.27,
        "weighting.clamp": 5.0,
        "weighting.normalize": True,
        "tiw.strength": 0.8,
        "cdl.coef": 0.0,
    }
    searched = tuple(k for k in config if k != "data")
    assert run_name(config, searched, "3f2a_00004") == (
        "p=0.52 k=1.3 clamp=5 normalize=true tiw.strength=0.8 cdl.coef=0 · 3f2a_00004"
    )
    confirmation = {"candidate": "trial 3f2a_00004", "seed": 1}
    assert run_name(confirmation, ("candidate", "seed"), "9c1e_00002") == (
        "candidate=trial 3f2a_00004 seed=1 · 9c1e_00002"
    )
    assert run_name(config, (), "3f2a_00004") == "3f2a_00004"
    long = {f"group.key_{i}": 0.123 for i in range(40)}
    name = run_name(long, tuple(long), "ab12_00001")
    assert len(name) <= 250 and name.endswith("… · ab12_00001")


@pytest.mark.parametrize(
    ("status", "step", "error", "reason"),
    [
        ("FINISHED", 300, "", "finished"),
        ("KILLED", 100, "", "stopped by ASHA at step 100"),
        (
            "FAILED",
            7,
            "tuner.training.trainer.DivergenceError: loss became nan at step 7 in term loss/denoise",
            "diverged at step 7",
        ),
        (
            "FAILED",
            20,
            "RuntimeError: CUDA out of memory",
            "failed: RuntimeError: CUDA out of memory",
        ),
        ("FAILED", 0, "", "failed: error"),
    ],
)
def test_end_reasons(status: str, step: int, error: str, reason: str) -> None:
    assert end_reason(status, step, error) == reason


def test_error_line_is_the_exception_line_without_terminal_colours() -> None:
    assert error_line(RAY_ERROR) == (
        "tuner.training.trainer.DivergenceError: loss became nan at step 7 in term loss/denoise"
    )
    assert error_line("\x1b[31mKilled\x1b[0m\n") == "Killed"
    assert error_line("") == "error"


def test_read_curve_tolerates_a_missing_or_damaged_file(tmp_path: Path) -> None:
    assert read_curve(tmp_path) == []
    (tmp_path / LAYOUT.curve).write_text("[{")
    assert read_curve(tmp_path) == []
    (tmp_path / LAYOUT.curve).write_text(json.dumps([{"step": 2, "loss/denoise": 1.0}, {"x": 1}]))
    assert read_curve(tmp_path) == [{"step": 2, "loss/denoise": 1.0}]


def test_log_metrics_batches_within_mlflow_limits() -> None:
    calls: list[tuple[int, int]] = []
    fake = SimpleNamespace(
        log_batch=lambda run_id, metrics, tags: calls.append((len(metrics), len(tags)))
    )
    log_metrics(fake, "r", list(range(2 * METRICS_PER_BATCH + 5)), ["tag"])
    assert calls == [(METRICS_PER_BATCH, 0), (METRICS_PER_BATCH, 0), (5, 1)]
    calls.clear()
    log_metrics(fake, "r", [], ["tag"])
    log_metrics(fake, "r", [])
    assert calls == [(0, 1)]


def test_review_link_opens_the_runs_in_the_model_training_view() -> None:
    assert review_link("http://127.0.0.1:5000/", "3", "s-1") == (
        "http://127.0.0.1:5000/#/experiments/3/runs?viewStateShareKey=s-1"
        "&workflowType=machine_learning"
    )
    assert review_link("http://h:1", "3") == (
        "http://h:1/#/experiments/3/runs?workflowType=machine_learning"
    )


def test_leaderboard_markdown_uses_mlflow_words_and_full_keys() -> None:
    params = {"tiw.strength": "0.123456", "cdl.coef": "0.0"}
    rows = [
        TrialRow(
            "a", "KILLED", 3.14159, 3.14159, 20, [(20, 3.14159)], {}, params,
            end="stopped by ASHA at step 20",
        )
    ]  # fmt: skip
    table = leaderboard_markdown(rows, ("tiw.strength", "cdl.coef"), "eval/fid").splitlines()
    assert (
        table[0] == "| # | trial | status | end | best eval/fid | steps | tiw.strength | cdl.coef |"
    )
    assert table[2] == "| 1 | a | KILLED | stopped by ASHA at step 20 | 3.142 | 20 | 0.123 | 0.0 |"


# -- the callback with fake trials, across a driver restart -------------------------------------
def _trial(trial_id: str, p: float, strength: float, **extra: Any) -> SimpleNamespace:
    config = {"data": "bimodal_biased", "train.steps": 40, "eval.every": 20}
    config |= {"weighting.p": p, "tiw.strength": strength} | extra
    return SimpleNamespace(
        trial_id=trial_id,
        config=config,
        status="RUNNING",
        last_result={},
        error_file=None,
    )


def _resolve(config: dict[str, Any]) -> dict[str, Any]:
    return resolve({k: v for k, v in config.items() if k != "candidate"})


def _checkpoint(root: Path, name: str, step: int, curve: list[int] | None) -> Any:
    from ray import tune

    folder = root / name
    folder.mkdir()
    (folder / "state.pt").write_bytes(b"x")
    (folder / f"samples_{step:07d}.png").write_bytes(b"png")
    if curve is not None:
        points = [{"step": s, "loss/denoise": 1.0 / s, "time/step_s": 0.01} for s in curve]
        (folder / LAYOUT.curve).write_text(json.dumps(points))
    return tune.Checkpoint.from_directory(folder)


def _tracker(uri: str, **kwargs: Any) -> MlflowTracking:
    cb = MlflowTracking(
        uri, EXPERIMENT, SEARCH, SEARCH_PARAMS, "eval/nll", "min", _resolve, **kwargs
    )
    cb.setup()
    return cb


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A search of three fake trials whose driver dies after their first evaluation."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    ckpt20 = _checkpoint(root, "c20", 20, [5, 10, 15])
    ckpt40 = _checkpoint(root, "c40", 40, [25, 30, 35])
    bare20 = _checkpoint(root, "b20", 20, None)  # a trainer that writes no curve.json
    done, stopped, diverged = (
        _trial("done", 0.5234, 0.25),
        _trial("stopped", 1.2, 0.0),
        _trial("diverged", 0.0, 1.0),
    )
    first = _tracker(uri)
    for trial, checkpoint in ((done, ckpt20), (stopped, bare20)):
        first.on_trial_start(0, [], trial)
        first.on_trial_result(0, [], trial, {"step": 20, "eval/nll": 3.0, "loss/denoise": 0.05})
        first.on_checkpoint(0, [], trial, checkpoint)
    first.on_trial_start(0, [], diverged)
    # A trial the driver started just before it died, which Ray's saved state does not hold:
    # the resumed search runs it again under a new id, so its run must not stay behind.
    first.on_trial_start(0, [], _trial("orphan", 0.3, 0.0))
    # The driver dies here; a new one (no saved callback state) takes over the same search,
    # and the trials replay their last result and checkpoint.
    second = _tracker(uri)
    for trial, checkpoint in ((done, ckpt20), (stopped, bare20)):
        second.on_trial_start(0, [], trial)
        second.on_trial_result(0, [], trial, {"step": 20, "eval/nll": 3.0})
        second.on_checkpoint(0, [], trial, checkpoint)
    second.on_trial_result(0, [], done, {"step": 40, "eval/nll": 2.0, "loss/denoise": 0.04})
    second.on_checkpoint(0, [], done, ckpt40)
    second.on_checkpoint(0, [], done, ckpt40)  # a checkpoint seen twice is logged once
    done.status, done.last_result = "TERMINATED", {"step": 40}
    second.on_trial_complete(0, [], done)
    stopped.status, stopped.last_result = "TERMINATED", {"step": 20}
    second.on_trial_complete(0, [], stopped)
    (root / "error.txt").write_text(RAY_ERROR)
    diverged.status, diverged.error_file = "ERROR", str(root / "error.txt")
    second.on_trial_error(0, [], diverged)
    second.on_experiment_end([done, stopped, diverged])
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    children = {
        r.data.tags["ray.trial_id"]: r for r in runs if r.data.tags["diffsearch.role"] == "trial"
    }
    (parent,) = (r for r in runs if r.data.tags["diffsearch.role"] == "search")
    return {
        "root": root,
        "uri": uri,
        "client": client,
        "experiment": experiment,
        "children": children,
        "parent": parent,
        "first": first,
    }


def test_one_run_per_trial_named_by_its_searched_values(tracked: dict) -> None:
    children = tracked["children"]
    assert set(children) == {"done", "stopped", "diverged"}  # the orphan's run deleted
    assert children["done"].info.run_name == "p=0.52 tiw.strength=0.25 · done"
    assert children["stopped"].info.run_name == "p=1.2 tiw.strength=0 · stopped"
    assert {r.data.tags["diffsearch.stage"] for r in children.values()} == {"search"}
    for run in children.values():
        assert run.data.tags["mlflow.parentRunId"] == tracked["parent"].info.run_id


def test_end_tags_and_statuses(tracked: dict) -> None:
    children = tracked["children"]
    assert {k: r.info.status for k, r in children.items()} == {
        "done": "FINISHED",
        "stopped": "KILLED",
        "diverged": "FAILED",
    }
    assert {k: r.data.tags["diffsearch.end"] for k, r in children.items()} == {
        "done": "finished",
        "stopped": "stopped by ASHA at step 20",
        "diverged": "diverged at step 7",
    }
    assert (
        children["diverged"]
        .data.tags["diffsearch.error"]
        .startswith("tuner.training.trainer.Divergence")
    )
    note = children["stopped"].data.tags[TAG_NOTE]
    assert "**stopped by ASHA at step 20**" in note and "`weighting.p` = 1.2" in note


def test_params_are_json_literals(tracked: dict) -> None:
    params = tracked["children"]["done"].data.params
    assert params["data"] == "bimodal_biased" and params["data.root"] == "null"
    assert params["weighting.normalize"] == "true" and params["data.download"] == "false"
    assert params["train.steps"] == "40" and params["weighting.p"] == "0.5234"
    parent = tracked["parent"].data.params
    assert parent["param.weighting.p"] == "float [0, 1.5]" and parent["space"] == "x"
    assert not any(k.startswith("fixed.") for k in parent)  # in the description instead


def test_curve_points_are_logged_at_their_steps_once(tracked: dict) -> None:
    client, children = tracked["client"], tracked["children"]
    history = client.get_metric_history(children["done"].info.run_id, "loss/denoise")
    assert sorted(m.step for m in history) == [5, 10, 15, 20, 25, 30, 35, 40]
    by_step = {m.step: m.value for m in history}
    assert by_step[10] == pytest.approx(0.1) and by_step[20] == pytest.approx(0.05)
    timing = client.get_metric_history(children["done"].info.run_id, "time/step_s")
    assert sorted(m.step for m in timing) == [5, 10, 15, 25, 30, 35]
    stopped = client.get_metric_history(children["stopped"].info.run_id, "loss/denoise")
    assert [m.step for m in stopped] == [20]  # no curve.json: the evaluations only


def test_parent_run_summary(tracked: dict) -> None:
    client, parent = tracked["client"], tracked["parent"]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics == {
        "trials/run": 3.0,
        "trials/finished": 1.0,
        "trials/stopped": 1.0,
        "trials/failed": 1.0,
        "best/eval/nll": 2.0,
    }
    note = parent.data.tags[TAG_NOTE]
    assert "### Leaderboard" in note and "| 1 | done | FINISHED | finished | 2 | 40 |" in note
    assert "stopped by ASHA at step 20" in note and "`train.steps`=40" in note
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "search_curves.png" in artifacts


def test_experiment_is_a_training_experiment_with_a_review_view(tracked: dict) -> None:
    experiment = tracked["experiment"]
    assert experiment.tags[TAG_KIND] == TRAINING_KIND
    envelope = json.loads(experiment.tags[TAG_VIEW + SEARCH])
    assert envelope["name"] == f"review {SEARCH}" and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == f"tags.`diffsearch.search` = '{SEARCH}'"
    assert state["orderByKey"] == "metrics.`eval/nll`" and state["orderByAsc"] is True
    assert state["selectedColumns"][:3] == [
        "metrics.`eval/nll`",
        "params.`weighting.p`",
        "params.`tiw.strength`",
    ]
    assert state["runsHiddenMode"] == "SHOW_ALL"
    (parallel,) = (c for c in state["compareRunCharts"] if c["type"] == "PARALLEL")
    assert parallel["selectedParams"] == ["weighting.p", "tiw.strength"]
    assert parallel["selectedMetrics"] == ["eval/nll"]
    url = review_url(tracked["uri"], EXPERIMENT, SEARCH, port=5123)
    assert url == review_link("http://127.0.0.1:5123", experiment.experiment_id, SEARCH)


def test_a_confirmation_stage_reuses_the_parent_and_keeps_its_summary(tracked: dict) -> None:
    from mlflow.tracking import MlflowClient

    uri = tracked["uri"]
    confirm = _tracker(uri, searched=("candidate", "seed"), stage="confirmation")
    assert confirm.parent_run_id == tracked["first"].parent_run_id
    trial = _trial("conf1", 0.5234, 0.25, candidate="trial done", seed=1)
    confirm.on_trial_start(0, [], trial)
    confirm.on_trial_result(0, [], trial, {"step": 40, "eval/nll": 2.1})
    trial.status, trial.last_result = "TERMINATED", {"step": 40}
    confirm.on_trial_complete(0, [], trial)
    confirm.on_experiment_end([trial])
    client = MlflowClient(uri)
    run = client.get_run(confirm.run_id(trial))
    assert run.info.run_name == "candidate=trial done seed=1 · conf1"
    assert run.data.tags["diffsearch.stage"] == "confirmation"
    assert "candidate" not in run.data.params and run.data.params["seed"] == "1"
    parent = client.get_run(confirm.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials/run"] == 3.0


def test_log_summary_sets_metrics_description_and_tags(tracked: dict, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    board = tmp_path / "leaderboard.txt"
    board.write_text("1 done FINISHED\n")
    run_id = log_summary(
        tracked["uri"],
        EXPERIMENT,
        SEARCH,
        [str(board)],
        {"trial": "done"},
        metrics={"verdict/improvement": 0.25, "trials/run": 3},
        description="## Verdict\n\nnot resolved",
        tags={"diffsearch.verdict": "not resolved"},
    )
    client = MlflowClient(tracked["uri"])
    parent = client.get_run(run_id)
    assert parent.data.metrics["verdict/improvement"] == 0.25
    assert parent.data.tags[TAG_NOTE] == "## Verdict\n\nnot resolved"
    assert parent.data.tags["diffsearch.verdict"] == "not resolved"
    assert parent.data.tags["diffsearch.best_trial"] == "done"
    assert "leaderboard.txt" in {a.path for a in client.list_artifacts(run_id)}
    assert log_summary(tracked["uri"], EXPERIMENT, "no-such-search", [], {}) is None


def test_a_stale_restored_state_logs_nothing_twice(tmp_path: Path) -> None:
    """Ray saves the callback's state at some step; a driver killed after it logged more
    restores that older state, and the replayed result and checkpoint must not log again."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    trial = _trial("t1", 0.5, 0.0)
    first = _tracker(uri)
    first.on_trial_start(0, [], trial)
    saved = first.get_state()  # what Ray's experiment state holds: the run, nothing logged
    saved = {k: (dict(v) if isinstance(v, dict) else set(v)) for k, v in saved.items()}
    checkpoint = _checkpoint(tmp_path, "c20", 20, [5, 10, 15])
    first.on_trial_result(0, [], trial, {"step": 20, "eval/nll": 3.0, "loss/denoise": 0.05})
    first.on_checkpoint(0, [], trial, checkpoint)
    second = _tracker(uri)  # the resumed driver, with the state Ray had saved
    second.set_state(saved)
    second.on_trial_start(0, [], trial)
    second.on_trial_result(0, [], trial, {"step": 20, "eval/nll": 3.0, "loss/denoise": 0.05})
    second.on_checkpoint(0, [], trial, checkpoint)
    client = MlflowClient(uri)
    run_id = saved["runs"]["t1"]
    steps = sorted(m.step for m in client.get_metric_history(run_id, "loss/denoise"))
    assert steps == [5, 10, 15, 20]
    assert [m.step for m in client.get_metric_history(run_id, "eval/nll")] == [20]


@pytest.mark.parametrize("restored", [True, False], ids=["restored-state", "no-state"])
def test_a_batch_logged_without_its_tag_is_not_logged_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored: bool
) -> None:
    """MLflow writes a batch's metrics and tags in two transactions: a driver killed between
    them leaves the step-40 result and curve logged without the tags that count them."""
    from mlflow.tracking import MlflowClient

    import tuner.tracking.callback as callback

    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    trial = _trial("t1", 0.5, 0.0)
    first = _tracker(uri)
    first.on_trial_start(0, [], trial)
    first.on_trial_result(0, [], trial, {"step": 20, "eval/nll": 3.0, "loss/denoise": 0.05})
    first.on_checkpoint(0, [], trial, _checkpoint(tmp_path, "c20", 20, [5, 10, 15]))
    saved = {k: (dict(v) if isinstance(v, dict) else set(v)) for k, v in first.get_state().items()}
    logged = callback.log_metrics
    monkeypatch.setattr(callback, "log_metrics", lambda m, r, metrics, tags: logged(m, r, metrics))
    ckpt40 = _checkpoint(tmp_path, "c40", 40, [25, 30, 35])
    first.on_trial_result(0, [], trial, {"step": 40, "eval/nll": 2.0, "loss/denoise": 0.04})
    first.on_checkpoint(0, [], trial, ckpt40)
    monkeypatch.setattr(callback, "log_metrics", logged)
    second = _tracker(uri)  # the resumed driver; Ray restarts the trial from step 20
    if restored:
        second.set_state(saved)
    second.on_trial_start(0, [], trial)
    second.on_trial_result(0, [], trial, {"step": 40, "eval/nll": 2.0, "loss/denoise": 0.04})
    second.on_checkpoint(0, [], trial, ckpt40)
    second.on_trial_result(0, [], trial, {"step": 60, "eval/nll": 1.5, "loss/denoise": 0.03})
    second.on_checkpoint(0, [], trial, _checkpoint(tmp_path, "c60", 60, [45, 50, 55]))
    client = MlflowClient(uri)
    run_id = second.run_id(trial)
    steps = sorted(m.step for m in client.get_metric_history(run_id, "loss/denoise"))
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    assert [m.step for m in client.get_metric_history(run_id, "eval/nll")] == [20, 40, 60]
