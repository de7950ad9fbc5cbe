"""Optuna's ask-and-tell as a Ray Tune searcher whose study records what really happened.

Ray's own `OptunaSearch` reports intermediate values at Ray's iteration count and tells Optuna a
trial the scheduler stopped early as COMPLETE with its last, partial value (by design: ray-project
/ray #5459). Here every evaluation is reported at its training step, and a trial stopped early is
recorded as what it is: PRUNED, with its intermediate values (`stopped="pruned"`, the default),
unless the search asks for Ray's behaviour (`stopped="final"`: COMPLETE with the last value).
Optuna's TPE ranks pruned trials below every completed one, by their last step and value.
It uses only public APIs: Ray's `Searcher` and Optuna's `Study.ask`/`tell`/`Trial.report`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tuner.search.options import STOPPED_POLICIES


class StudySearcher(Searcher):
    """Suggest from an Optuna sampler, record every result in an Optuna study.

    Args:
        sampler: the Optuna sampler (TPE, QMC, ...).
        max_steps: a trial's full budget in training steps; a trial that ends before it without
            an error was stopped by the scheduler.
        stopped: how a stopped trial is told to the study (one of STOPPED_POLICIES).
        storage: an Optuna storage URL (None: in memory); study_name: the study's name there.
    """

    def __init__(
        self,
        sampler: optuna.samplers.BaseSampler,
        *,
        max_steps: int,
        stopped: str = "pruned",
        storage: str | None = None,
        study_name: str | None = None,
        metric: str | None = None,
        mode: str | None = None,
    ) -> None:
        if stopped not in STOPPED_POLICIES:
            raise ValueError(f"stopped={stopped!r}; choose one of {', '.join(STOPPED_POLICIES)}")
        super().__init__(metric=metric, mode=mode)
        self._sampler, self._storage, self._study_name = sampler, storage, study_name
        self._max_steps, self._stopped = max_steps, stopped
        self._space: dict[str, BaseDistribution] = {}
        self._study: optuna.Study | None = None
        self._asked: dict[str, optuna.Trial] = {}  # Ray trial id -> its Optuna trial
        self._steps: dict[str, set[int]] = {}  # the training steps reported for each
        self._done: set[str] = set()

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        """Called by Tune with the Tuner's param_space: its Tune domains become the space."""
        if self._space:
            return False
        self._space = OptunaSearch.convert_search_space(config)
        self._metric, self._mode = metric or self._metric, mode or self._mode
        self._study = optuna.create_study(
            storage=self._storage,
            sampler=self._sampler,
            study_name=self._study_name,
            direction="minimize" if self._mode == "min" else "maximize",
            load_if_exists=True,
        )
        return True

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            raise RuntimeError("StudySearcher has no study yet: Tune sets its space first")
        return self._study

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self.study.ask(fixed_distributions=self._space)
        self._asked[trial_id], self._steps[trial_id] = trial, set()
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        value, step = result.get(self.metric), int(result.get("step", 0))
        if trial_id in self._done or not _finite(value) or step in self._steps[trial_id]:
            return
        self._asked[trial_id].report(float(value), step)
        self._steps[trial_id].add(step)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id in self._done or trial_id not in self._asked:
            return
        if result:  # Tune passes the result that ended the trial here, not to on_trial_result
            self.on_trial_result(trial_id, result)
        self._done.add(trial_id)
        number = self._asked[trial_id].number
        value = (result or {}).get(self.metric)
        step = int((result or {}).get("step", 0))
        if error or not _finite(value):
            self.study.tell(number, state=TrialState.FAIL)
        elif step < self._max_steps and self._stopped == "pruned":
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, float(value))

    def save(self, checkpoint_path: str) -> None:
        """The searcher's own state as JSON (the study itself lives in its storage)."""
        state = {
            "metric": self._metric,
            "mode": self._mode,
            "space": {k: distribution_to_json(d) for k, d in self._space.items()},
            "trials": {t: trial.number for t, trial in self._asked.items()},
            "steps": {t: sorted(steps) for t, steps in self._steps.items()},
            "done": sorted(self._done),
        }
        with open(checkpoint_path, "w") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        """Continue a saved search: the study reloaded from its storage, the trials still open
        found again by their numbers (Optuna's public storage API). Needs a storage URL."""
        if self._storage is None:
            raise RuntimeError("a StudySearcher without a storage cannot be restored")
        with open(checkpoint_path) as f:
            state = json.load(f)
        self._metric, self._mode = state["metric"], state["mode"]
        self._space = {k: json_to_distribution(d) for k, d in state["space"].items()}
        storage = optuna.storages.RDBStorage(self._storage)
        self._study = optuna.load_study(
            study_name=self._study_name, storage=storage, sampler=self._sampler
        )
        study_id = storage.get_study_id_from_name(self._study_name)
        self._asked = {
            t: optuna.Trial(self._study, storage.get_trial_id_from_study_id_trial_number(
                study_id, number))
            for t, number in state["trials"].items()
        }  # fmt: skip
        self._steps = {t: set(steps) for t, steps in state["steps"].items()}
        self._done = set(state["done"])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
