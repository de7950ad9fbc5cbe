"""tuner/search/study.py: the Optuna study records each evaluation at its training step and a
trial the scheduler stopped early as PRUNED (or, asked, as Ray's OptunaSearch tells it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray import tune

from tuner.search.study import StudySearcher

ROOT = Path(__file__).resolve().parents[2]
SPACE = {"weighting.p": tune.uniform(0.0, 1.5), "train.steps": 900}


def _searcher(stopped: str = "pruned") -> StudySearcher:
    searcher = StudySearcher(optuna.samplers.RandomSampler(seed=0), max_steps=900, stopped=stopped)
    assert searcher.set_search_properties("eval/fid", "min", SPACE)
    return searcher


def _run(searcher: StudySearcher) -> dict[str, optuna.trial.FrozenTrial]:
    for trial_id in ("finished", "stopped", "errored"):
        params = searcher.suggest(trial_id)
        assert set(params) == {"weighting.p"} and 0 <= params["weighting.p"] <= 1.5
    searcher.on_trial_result("finished", {"eval/fid": 5.0, "step": 300})
    searcher.on_trial_complete("finished", {"eval/fid": 2.0, "step": 900})
    # Tune hands the result on which the scheduler stops a trial to on_trial_complete only
    searcher.on_trial_complete("stopped", {"eval/fid": 6.0, "step": 300})
    searcher.on_trial_result("errored", {"eval/fid": 7.0, "step": 300})
    searcher.on_trial_complete("errored", None, error=True)
    trials = searcher.study.get_trials()
    return dict(zip(("finished", "stopped", "errored"), trials, strict=True))


def test_a_stopped_trial_is_pruned_with_its_values_at_training_steps() -> None:
    trials = _run(_searcher())
    assert trials["finished"].state == TrialState.COMPLETE and trials["finished"].value == 2.0
    assert trials["finished"].intermediate_values == {300: 5.0, 900: 2.0}
    assert trials["stopped"].state == TrialState.PRUNED
    assert trials["stopped"].intermediate_values == {300: 6.0}
    assert trials["errored"].state == TrialState.FAIL


def test_told_as_final_a_stopped_trial_completes_with_its_partial_value() -> None:
    trials = _run(_searcher(stopped="final"))
    assert trials["stopped"].state == TrialState.COMPLETE and trials["stopped"].value == 6.0


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="stopped='bogus'; choose one of pruned, final"):
        StudySearcher(optuna.samplers.RandomSampler(), max_steps=1, stopped="bogus")


def test_save_and_restore_keep_the_study_and_its_open_trials(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = StudySearcher(
        optuna.samplers.RandomSampler(seed=0), max_steps=900, storage=storage, study_name="s"
    )
    searcher.set_search_properties("eval/fid", "min", SPACE)
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"eval/fid": 5.0, "step": 300})
    searcher.save(str(tmp_path / "searcher.json"))
    restored = StudySearcher(
        optuna.samplers.RandomSampler(seed=0), max_steps=900, storage=storage, study_name="s"
    )
    restored.restore(str(tmp_path / "searcher.json"))  # (Tune restores before any property)
    assert restored.metric == "eval/fid" and set(restored.suggest("t2")) == {"weighting.p"}
    restored.on_trial_complete("t1", {"eval/fid": 4.0, "step": 900})
    trial, new = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert new.state == TrialState.RUNNING and set(new.params) == {"weighting.p"}
    assert trial.state == TrialState.COMPLETE and trial.intermediate_values == {300: 5.0, 900: 4.0}


def test_a_smoke_search_with_asha_records_its_stopped_trials_as_pruned(tmp_path: Path) -> None:
    """The study's trial states after a real search: ASHA's stopped trials are PRUNED with their
    evaluations at training steps, the others COMPLETE with every evaluation."""
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    cmd = [sys.executable, "-m", "tuner.run", "--smoke-test", "--scheduler", "asha"]
    cmd += ["--confirm", "0", "--num-samples", "6", "--max-concurrent", "1"]
    cmd += ["--storage", str(tmp_path / "ray"), "--mlflow-uri", uri]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    board = out.stdout[out.stdout.index("leaderboard (") :].splitlines()[2:8]
    status = {line.split()[1]: line.split()[2] for line in board}
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/mlruns/optuna.db")
    study = optuna.load_study(
        study_name=summary.study_name, storage=f"sqlite:///{tmp_path}/mlruns/optuna.db"
    )
    states = [t.state for t in study.trials]
    assert (
        len(states) == 6
        and list(status.values()).count("KILLED") == states.count(TrialState.PRUNED) > 0
    )
    for trial in study.trials:
        steps = list(trial.intermediate_values)
        if trial.state == TrialState.PRUNED:
            assert steps == [20]  # ASHA's rung, at the training step (smoke: evaluations 20, 40)
        else:
            assert trial.state == TrialState.COMPLETE and steps == [20, 40]
            assert trial.value == trial.intermediate_values[40]
