"""tuner/search/trainable.py: what a Ray trial's config means, and what it may report."""

from __future__ import annotations

import math

import pytest

from search_spaces import POINT_KEY, SPACES
from tuner.config.spec import resolve
from tuner.search.trainable import CANDIDATE_KEY, _reportable, trial_config, trial_overrides


def test_a_named_point_expands_and_a_set_key_wins() -> None:
    space = SPACES["baselines"]
    assert trial_overrides({POINT_KEY: "min_snr_5"}) == space["points"]["min_snr_5"]
    mine = trial_overrides({POINT_KEY: "p2", "weighting.p": 0.5})
    assert mine["weighting"] == "p2" and mine["weighting.p"] == 0.5
    with pytest.raises(KeyError, match="unknown point 'nope'"):
        trial_overrides({POINT_KEY: "nope"})


def test_a_confirmation_trial_is_its_candidate_on_its_own_seed() -> None:
    candidates = {"trial a1": resolve({"weighting": "x0", "seed": 0}), "baseline": resolve({})}
    config = trial_config({CANDIDATE_KEY: "trial a1", "seed": 3}, candidates)
    assert config == candidates["trial a1"] | {"seed": 3}
    with pytest.raises(KeyError, match="unknown confirmation candidate 'trial zz'"):
        trial_overrides({CANDIDATE_KEY: "trial zz", "seed": 1}, candidates)
    with pytest.raises(KeyError, match="unknown confirmation candidate"):
        trial_overrides({CANDIDATE_KEY: "baseline", "seed": 1}, None)


def test_only_numbers_are_reported_and_a_non_finite_one_is_nan() -> None:
    out = _reportable(
        {"step": 20, "eval/fid": math.inf, "loss/total": 0.5, "note": "x", "ok": True}
    )
    assert set(out) == {"step", "eval/fid", "loss/total"}
    assert out["step"] == 20 and math.isnan(out["eval/fid"]) and out["loss/total"] == 0.5
