"""The search command: options, plan, tracking, and one smoke search whose driver is killed
and resumed (shared by the end-to-end tests below)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from search_spaces import SMOKE, SMOKE_NUM_SAMPLES
from tuner.config.spec import SPEC, resolve
from tuner.search.cli import build_parser, main
from tuner.search.options import ASHA_REDUCTION, SMOKE_CONFIRM, SMOKE_CONFIRM_SEEDS
from tuner.search.plan import Plan, make_plan
from tuner.search.results import leaderboard, summarize
from tuner.search.tuning import clip_to_ranges, make_scheduler

ROOT = Path(__file__).resolve().parents[2]
ENDED = re.compile(r"^\[diffsearch\] trial (\S+) ended ", re.M)


def plan_of(*argv: str) -> Plan:
    return make_plan(build_parser().parse_args(list(argv)))


# -- options and plan (no Ray started) ----------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--space", "nope"], "--space 'nope' is not known; choose one of debias_family"),
        (
            ["--search", "bayes"],
            "--search 'bayes' is not known; choose one of optuna, qmc, random, grid",
        ),
        (["--scheduler", "bohb"], "--scheduler 'bohb' is not known"),
        (["--set", "weighting.p"], "malformed --set 'weighting.p'"),
        (["--set", "nokey=1"], "unknown key 'nokey'"),
        (["--set", "weighting.p=9"], "weighting.p=9 is not allowed"),
        (["--set", "data=mnist"], 'data="mnist" is not allowed'),
        (
            ["--scheduler", "pbt", "--search", "grid"],
            "--scheduler pbt takes its initial population",
        ),
        (["--num-samples", "0"], "--num-samples 0 must be at least 1"),
        (
            ["--scheduler", "asha", "--set", "eval.growth=2"],
            "eval.growth=2 puts evaluations off ASHA's rungs",
        ),
        (
            ["--scheduler", "pbt", "--set", "eval.growth=3"],
            "eval.growth=3 with --scheduler pbt: PBT exploits at a fixed interval",
        ),
        (["--bogus"], "unrecognized arguments: --bogus"),
        # objectives that do not compose are refused at plan time, by the dry run too
        (
            ["--space", "ambient", "--set", "cdl.coef=1", "--dry-run"],
            "cdl.coef=1 does not compose with ambient.tweedie=true on noisy data",
        ),
        (
            ["--space", "debias_family", "--set", "data=digits", "--dry-run"],
            "tiw.strength=1 needs data with a reference set; data=digits has none",
        ),
        (
            ["--space", "snr_weighting", "--set", "ambient.consistency=0.1", "--dry-run"],
            "ambient.consistency=0.1 needs noisy data (data=digits is clean)",
        ),
        (
            ["--space", "ambient", "--set", "ambient.tweedie=false", "--dry-run"],
            "ambient.consistency=0.003 needs ambient.tweedie=true",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err.count("\n") == 1
        and captured.err.startswith("error: ")
        and needle in captured.err
    )
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--space", "debias_family", "--set", "weighting.k=1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "space       debias_family  (data digits_biased)" in out
    assert "optuna TPE (seed 0)" in out
    assert "fifo (no early stopping: every trial runs to step 900; evaluations at steps 300" in out
    assert f"experiment  {tmp_path}/ray_results/debias_family-" in out
    assert f"sqlite:///{tmp_path}/mlruns/mlflow.db" in out
    assert "weighting.k            1" in out  # fixed by --set, no longer searched
    assert list(tmp_path.iterdir()) == []


def test_resume_without_a_search_exits_2_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init called"))
    assert main(["--smoke-test", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: no search to resume at ") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_plan_defaults_and_asha_follows_the_evaluations() -> None:
    default = plan_of("--space", "debias_family")
    assert default.search == "optuna" and default.scheduler == "fifo"  # (README: why no ASHA)
    assert default.metric == "eval/fid" and default.num_samples >= 8
    assert default.data == "digits_biased" and default.eval_steps == [300, 600, 900]
    plan = plan_of("--space", "debias_family", "--scheduler", "asha")
    asha = make_scheduler(plan)
    assert asha._time_attr == "step" and asha._max_t == plan.max_steps
    rungs = [milestone for milestone, _ in asha._brackets[0]._rungs]
    assert rungs and all(m % plan.eval_every == 0 and m <= plan.max_steps for m in rungs)
    assert min(rungs) == plan.eval_every  # grace period: the first evaluation
    # The trials evaluate on ASHA's rungs (and at the end), not in between.
    assert plan.fixed["eval.growth"] == ASHA_REDUCTION
    assert sorted(set(rungs) | {plan.max_steps}) == plan.eval_steps == [300, 900]
    gpu = plan_of("--space", "debias_family_cifar10", "--scheduler", "asha")
    gpu_rungs = [m for m, _ in make_scheduler(gpu)._brackets[0]._rungs]
    assert sorted(set(gpu_rungs) | {gpu.max_steps}) == gpu.eval_steps == [2000, 6000, 18000]
    every = plan_of("--space", "debias_family", "--scheduler", "asha", "--set", "eval.growth=1")
    assert every.eval_steps == [300, 600, 900]  # every eval.every steps: also on the rungs
    # Same options, same experiment (so rerunning resumes); other options, another one.
    assert plan_of("--space", "debias_family").name == default.name
    assert plan_of("--space", "debias_family", "--seed", "1").name != default.name
    assert plan_of("--space", "debias_family", "--smoke-test").name != default.name
    assert plan.name != default.name  # --scheduler asha


def test_set_fixes_a_parameter_and_smoke_budget_applies() -> None:
    plan = plan_of("--space", "debias_family", "--set", "tiw.strength=0", "--smoke-test")
    assert "tiw.strength" not in plan.params and plan.fixed["tiw.strength"] == 0
    assert all(plan.fixed[k] == v for k, v in SMOKE.items())
    assert plan.num_samples == SMOKE_NUM_SAMPLES
    lowdim = plan_of("--space", "density_ratio")
    assert lowdim.metric == "eval/nll" and lowdim.mode == "min"
    assert plan_of("--space", "debias_family", "--set", "data=bimodal_biased").metric == "eval/nll"


def test_baselines_grid_and_pbt_schedule() -> None:
    grid = plan_of("--space", "baselines")
    assert grid.search == "grid" and grid.trials == 8
    pbt = plan_of("--space", "debias_family", "--scheduler", "pbt")
    assert pbt.search == "random"
    scheduler = make_scheduler(pbt)
    assert scheduler._time_attr == "step" and scheduler._perturbation_interval == pbt.eval_every
    mutations = scheduler._hyperparam_mutations
    assert set(mutations) == {k for k in pbt.params if k.startswith("weighting.")}
    assert mutations["weighting.clamp"] == pbt.params["weighting.clamp"]["choices"]  # shifted
    clipped = clip_to_ranges(
        {"weighting.p": 1.8, "weighting.k": -0.1},
        {"weighting.p": (0.0, 1.5), "weighting.k": (0.0, 5.0)},
    )
    assert clipped == {"weighting.p": 1.5, "weighting.k": 0.0}


def _result(
    config: dict, steps: list[int], fids: list[float], error: Exception | None = None
) -> SimpleNamespace:
    import pandas as pd

    frame = pd.DataFrame({"step": steps, "eval/fid": fids}) if steps else None
    return SimpleNamespace(
        config=config,
        metrics_dataframe=frame,
        error=error,
        metrics={"trial_id": config["id"]},
        path=f"/x/trial_{config['id']}",
    )


def test_leaderboard_never_ranks_a_failed_trial_best() -> None:
    plan = plan_of("--space", "debias_family")
    base = plan.fixed | {"weighting.p": 0.5, "weighting.k": 1.0, "weighting.clamp": 0.0}
    base |= {"weighting.normalize": True, "tiw.strength": 0.0, "cdl.coef": 0.0}
    steps = plan.max_steps
    results = [
        _result(base | {"id": "ok"}, [100, steps], [12.0, 10.0]),
        _result(base | {"id": "diverged"}, [100], [1.0], error=RuntimeError("loss became nan")),
        _result(base | {"id": "stopped"}, [100], [11.0]),
        _result(base | {"id": "empty"}, [], []),
    ]
    for r in results:
        r.config.pop("id")
    rows = summarize(results, plan)
    assert [r.trial for r in rows][:2] == ["ok", "stopped"]
    assert {r.trial: r.status for r in rows} == {
        "ok": "FINISHED",
        "stopped": "KILLED",  # MLflow's word for a trial ASHA stopped
        "diverged": "FAILED",
        "empty": "KILLED",
    }
    board = leaderboard(rows, plan)
    assert board.splitlines()[1].split()[:3] == ["1", "ok", "FINISHED"] and "FAILED" in board


def test_a_trial_that_never_started_has_no_row() -> None:
    """Ray gives a trial it never started (a search ended by its stopper while the trial waited)
    no config and no metrics: it is left out, not a crash."""
    plan = plan_of("--space", "debias_family")
    config = plan.fixed | {"weighting.p": 0.5, "weighting.k": 1.0, "weighting.clamp": 0.0}
    config |= {"weighting.normalize": True, "tiw.strength": 0.0, "cdl.coef": 0.0, "id": "ran"}
    ran = _result(config, [plan.max_steps], [10.0])
    ran.config.pop("id")
    waiting = SimpleNamespace(config=None, metrics_dataframe=None, error=None, metrics={},
                              path="/x/trial_waiting")  # fmt: skip
    assert [r.trial for r in summarize([ran, waiting], plan)] == ["ran"]


# -- end to end: a smoke search, its driver killed after the first trial ends, then rerun ----------
def _kill_once_saved(driver: subprocess.Popen, log: Path, storage: Path, after: str) -> list[str]:
    """SIGKILL the driver once a trial whose end is logged after the line `after` is marked
    ended in the experiment state Ray saved; returns the trials ended after `after`."""
    deadline = time.time() + 300

    def ended() -> list[str]:
        text = log.read_text()
        return ENDED.findall(text[text.index(after) :]) if after in text else []

    while not ended() or not _saved_ended(storage, ended()):
        assert driver.poll() is None, f"the search ended too soon:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"no trial ended after {after!r} in 300 s"
        time.sleep(0.1)
    driver.kill()  # SIGKILL: no clean-up in the driver
    driver.wait()
    time.sleep(2)
    for pid in _group(driver.pid):  # ours that Ray's fate-sharing has not ended yet
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return ended()


@pytest.fixture(scope="module")
def resumed_search(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A smoke search killed after its first trial ended, rerun, killed again after its first
    confirmation trial ended, and rerun to the end."""
    root = tmp_path_factory.mktemp("search")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    cmd = [sys.executable, "-m", "tuner.run", "--smoke-test", "--storage", str(root / "ray")]
    cmd += ["--mlflow-uri", uri, "--verbose"]  # (a line per evaluation and per trial's end)
    logs, finished, results = [], [], []
    for i, after in enumerate(("[diffsearch]", "confirmation: ")):
        log = root / f"run{i}.log"
        with log.open("w") as f:
            driver = subprocess.Popen(
                cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
            )
        finished.append(_kill_once_saved(driver, log, root / "ray", after))
        logs.append(log.read_text())
        results.append(
            {p.parent.name: p.read_text() for p in (root / "ray").glob("*/trial_*/result.json")}
        )
    last = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    experiment = next(p for p in (root / "ray").iterdir() if "-confirm" not in p.name)
    return {
        "root": root,
        "uri": uri,
        "experiment": experiment,
        "confirm_dir": next(p for p in (root / "ray").iterdir() if "-confirm" in p.name),
        "first": logs[0],
        "second": logs[1],
        "last": last.stdout,
        "finished_before_kill": finished[0],
        "confirmed_before_kill": finished[1],
        "results_before_kill": results[0],
        "results_before_second_kill": results[1],
    }


def _saved_ended(storage: Path, ended: list[str]) -> bool:
    """Whether the newest experiment state Ray saved in `storage` marks every `ended` trial done."""
    states = sorted(storage.glob("*/experiment_state-*.json"))
    if not states or not ended:
        return False
    try:
        saved = json.loads(states[-1].read_text())
    except (OSError, json.JSONDecodeError):  # being written
        return False
    status = {}
    for trial_state, _ in saved["trial_data"]:
        trial = json.loads(trial_state)
        status[trial["trial_id"]] = trial["status"]
    return all(status.get(t) in ("TERMINATED", "ERROR") for t in ended)


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
    return pids


def _runs(uri: str, stage: str = "search") -> tuple:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("diffsearch-debias_family")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("diffsearch.role") == "search"]
    children = [r for r in runs if r.data.tags.get("diffsearch.role") == "trial"]
    return client, parents, [r for r in children if r.data.tags["diffsearch.stage"] == stage]


def test_resume_after_killed_driver_loses_and_reruns_nothing(resumed_search: dict) -> None:
    assert "resuming" in resumed_search["second"]
    experiment = resumed_search["experiment"]
    trial_dirs = sorted(p.name for p in experiment.glob("trial_*"))
    assert len(trial_dirs) == SMOKE_NUM_SAMPLES
    client, parents, children = _runs(resumed_search["uri"])
    assert len(parents) == 1
    ids = [r.data.tags["ray.trial_id"] for r in children]
    assert len(ids) == len(set(ids)) == SMOKE_NUM_SAMPLES  # one MLflow run per trial
    assert {f"trial_{i}" for i in ids} == set(trial_dirs)
    for trial_id in resumed_search["finished_before_kill"]:
        # A trial finished before the kill was not run again: its results are as they were.
        name = f"trial_{trial_id}"
        assert (experiment / name / "result.json").read_text() == resumed_search[
            "results_before_kill"
        ][name]
        assert f"[diffsearch] trial {trial_id} " not in resumed_search["second"]
    for run in children:  # no step logged twice
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/fid")]
        assert steps == sorted(set(steps)) and steps


def test_mlflow_rows_of_the_search(resumed_search: dict) -> None:
    client, (parent,), children = _runs(resumed_search["uri"])
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "best.json",
        "leaderboard.txt",
    }
    statuses = []
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        params = run.data.params
        assert (
            len(params) == len(SPEC)
            and params["data"] == "digits_biased"
            and params["train.steps"] == "40"
        )
        fid = client.get_metric_history(run.info.run_id, "eval/fid")
        loss = client.get_metric_history(run.info.run_id, "loss/total")
        assert fid and all(m.step % 20 == 0 for m in fid)
        # loss/... every train.log_every (4) steps and at every evaluation, each step once
        steps = sorted(m.step for m in loss)
        assert len(steps) == len(set(steps)) and {m.step for m in fid} <= set(steps)
        assert steps == list(range(4, max(steps) + 1, 4))
        last = max(m.step for m in fid)
        assert run.info.status == ("FINISHED" if last == 40 else "KILLED")
        statuses.append(run.info.status)
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"samples", "weighting.png", "best_checkpoint"} <= top
        samples = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
        assert f"samples/samples_{last:07d}.png" in samples
        best = {a.path for a in client.list_artifacts(run.info.run_id, "best_checkpoint")}
        assert {"best_checkpoint/state.pt", "best_checkpoint/config.json"} <= best
    assert "FINISHED" in statuses
    assert (
        "mlflow ui --backend-store-uri " + resumed_search["uri"] + " --host 127.0.0.1"
        in resumed_search["second"]
    )


def test_confirmation_resumes_without_rerunning_finished_trials(resumed_search: dict) -> None:
    confirm = resumed_search["confirm_dir"]
    assert resumed_search["confirmed_before_kill"]
    assert "(resuming)" in resumed_search["last"].split("confirmation: ", 1)[1].splitlines()[0]
    for trial_id in resumed_search["confirmed_before_kill"]:
        name = f"trial_{trial_id}"
        before = resumed_search["results_before_second_kill"][name]
        assert (confirm / name / "result.json").read_text() == before
        assert f"[diffsearch] trial {trial_id} " not in resumed_search["last"]
    # (K + 2) configurations (the top K, the baseline, the reference) × N seeds, each one MLflow
    # run under the search's parent run
    k, n = SMOKE_CONFIRM, SMOKE_CONFIRM_SEEDS
    assert len(list(confirm.glob("trial_*"))) == (k + 2) * n
    client, (parent,), runs = _runs(resumed_search["uri"], stage="confirmation")
    assert len(runs) == (k + 2) * n
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.params["seed"] for r in runs} == {str(s) for s in range(1, n + 1)}


def test_verdict_json_and_the_parent_run_hold_the_verdict(resumed_search: dict) -> None:
    verdict = json.loads((resumed_search["experiment"] / "verdict.json").read_text())
    assert set(verdict) == {
        "metric", "mode", "seeds", "baseline", "candidates", "winner", "resolved", "conclusion",
        "reference", "beats_reference", "early_stopping",
    }  # fmt: skip
    assert verdict["metric"] == "eval/fid" and verdict["mode"] == "min"
    assert verdict["seeds"] == list(range(1, SMOKE_CONFIRM_SEEDS + 1))  # the search used 0
    base = verdict["baseline"]
    assert base["config"]["weighting"] == "constant" and base["config"]["tiw.strength"] == 0
    assert len(base["values"]) == SMOKE_CONFIRM_SEEDS and None not in base["values"]
    (candidate,) = verdict["candidates"]
    fields = {"trial", "config", "values", "mean", "ci", "improvement", "improvement_ci"}
    assert fields <= set(candidate) and candidate["config"] == resolve(candidate["config"])
    # paired, positive = better: the baseline's FID minus the candidate's, seed by seed
    gains = [b - c for b, c in zip(base["values"], candidate["values"], strict=True)]
    assert candidate["improvement"] == pytest.approx(sum(gains) / len(gains))
    low, high = candidate["improvement_ci"]
    assert low <= candidate["improvement"] <= high
    assert verdict["winner"] == candidate and verdict["resolved"] == (low > 0)
    first = verdict["conclusion"].split("resolved.")[0]  # the sentence on the baseline
    assert first.endswith("not ") == (not verdict["resolved"])
    # the paper's recipe (TIW-DSM as published) on the same seeds, and the winner against it
    ref = verdict["reference"]
    assert ref["config"]["weighting"] == "constant" and ref["config"]["tiw.strength"] == 1.0
    assert len(ref["values"]) == SMOKE_CONFIRM_SEEDS and None not in ref["values"]
    gains = [r - c for r, c in zip(ref["values"], candidate["values"], strict=True)]
    assert candidate["vs_reference"] == pytest.approx(sum(gains) / len(gains))
    low, high = candidate["vs_reference_ci"]
    beats = verdict["beats_reference"]
    assert beats == (True if low > 0 else False if high < 0 else None)
    assert ("use the paper's recipe" in verdict["conclusion"]) == (beats is not True)
    assert verdict["early_stopping"]["final_step"] == 40
    best = json.loads((resumed_search["experiment"] / "best.json").read_text())
    assert best == candidate["config"]  # best.json is the confirmed winner
    client, (parent,), _ = _runs(resumed_search["uri"])
    assert parent.data.metrics["verdict/resolved"] == float(verdict["resolved"])
    assert parent.data.metrics["verdict/improvement"] == pytest.approx(candidate["improvement"])
    assert parent.data.metrics["verdict/vs_reference"] == pytest.approx(candidate["vs_reference"])
    assert "verdict.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "not resolved" in resumed_search["last"] or verdict["resolved"]
    out = resumed_search["last"]
    assert "parameter importance (fANOVA" in out and out.index("leaderboard (") < out.index(
        "parameter importance"
    )


def test_leaderboard_and_best_json_reproduce(resumed_search: dict, tmp_path: Path) -> None:
    out = resumed_search["second"]
    board = out[out.index("leaderboard (") :].splitlines()
    assert (
        board[1].split()[:2] == ["#", "trial"]
        and len([r for r in board[2:] if r[:1].isdigit()]) >= SMOKE_NUM_SAMPLES
    )
    best_path = resumed_search["experiment"] / "best.json"
    best = json.loads(best_path.read_text())
    assert best == resolve(best)
    client, (parent,), children = _runs(resumed_search["uri"])
    best_id = parent.data.tags["diffsearch.best_trial"]
    assert board[2].split()[1] == best_id
    run = next(r for r in children if r.data.tags["ray.trial_id"] == best_id)
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/fid")}
    # The best config retrained from scratch by the plain CLI gives the same FID at every step.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tuner.train",
            "--config",
            str(best_path),
            "--out",
            str(tmp_path / "re"),
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    history = json.loads((tmp_path / "re" / "metrics.json").read_text())["history"]
    again = {h["step"]: h["eval/fid"] for h in history}
    for step, value in logged.items():
        assert again[step] == pytest.approx(value, rel=1e-4), (step, again, logged)


DIVERGING_SEARCH = """
import sys
import search_spaces
from search_spaces.budgets import SMOKE
from tuner.search.cli import main

# Two trials on ring8: one sane learning rate, one that blows the loss up in a few steps.
search_spaces.SPACES["diverging"] = {
    "description": "test only", "data": "ring8", "search": "grid", "num_samples": 1,
    "params": {"train.lr": {"type": "categorical", "choices": [2e-3, 1e6]}},
    "fixed": SMOKE | {"train.warmup": 0},
}
sys.exit(main(sys.argv[1:]))
"""


def test_diverging_trial_errors_fails_in_mlflow_and_is_never_best(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    argv = ["--space", "diverging", "--scheduler", "fifo", "--storage", str(tmp_path / "ray")]
    argv += ["--max-concurrent", "1"]  # a grid search too keeps to it (Ray ignores it there)
    out = subprocess.run(
        [sys.executable, "-c", DIVERGING_SEARCH, *argv, "--mlflow-uri", uri],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "DivergenceError" in out.stdout + out.stderr  # Ray reports the trial's error
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("diffsearch-diverging")
    runs = client.search_runs([experiment.experiment_id])
    trials = {
        float(r.data.params["train.lr"]): r
        for r in runs
        if r.data.tags["diffsearch.role"] == "trial"
    }
    assert {lr: r.info.status for lr, r in trials.items()} == {2e-3: "FINISHED", 1e6: "FAILED"}
    assert "DivergenceError: loss became" in trials[1e6].data.tags["diffsearch.error"]
    first, second = sorted(trials.values(), key=lambda r: r.info.start_time)
    assert second.info.start_time >= first.info.end_time, "two trials ran at once"
    (parent,) = (r for r in runs if r.data.tags["diffsearch.role"] == "search")
    assert parent.data.tags["diffsearch.best_trial"] == trials[2e-3].data.tags["ray.trial_id"]
    board = out.stdout[out.stdout.index("leaderboard (") :].splitlines()
    assert board[2].split()[2] == "FINISHED" and board[3].split()[2] == "FAILED"
    best = json.loads(next((tmp_path / "ray").glob("*/best.json")).read_text())
    assert best["train.lr"] == 2e-3
