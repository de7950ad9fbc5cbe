"""Every space is well-formed data, and every configuration a search can propose builds."""

from __future__ import annotations

import random

import pytest

import search_spaces
from search_spaces import POINT_KEY, SMOKE, SPACES
from tuner.config.build import build_density, build_weighting
from tuner.config.spec import SPEC, resolve
from tuner.data.presets import DATASETS

TYPES = {"float", "int", "loguniform", "categorical"}
NAMES = list(SPACES)


def _builds(overrides: dict) -> dict:
    """resolve() accepts the config, and its weighting and noise density build."""
    config = resolve(search_spaces.expand(overrides))
    weighting = build_weighting(config, build_density(config))
    assert weighting is not None
    return config


def test_registry_has_the_issue_spaces() -> None:
    assert set(NAMES) >= {
        "debias_family",
        "snr_weighting",
        "density_ratio",
        "contrastive",
        "ambient",
        "baselines",
    }
    assert SPACES["debias_family"]["data"] == "digits_biased"


@pytest.mark.parametrize("name", NAMES)
def test_space_is_well_formed_data(name: str) -> None:
    space = SPACES[name]
    assert set(space) <= {
        "description",
        "data",
        "params",
        "fixed",
        "points",
        "baseline",
        "reference",
        "search",
        "num_samples",
    }
    assert space["description"] and space["data"] in DATASETS and space["num_samples"] >= 1
    # the baseline a confirmation compares with is config keys that resolve over the fixed ones
    assert all(key in SPEC for key in space["baseline"])
    resolve({"data": space["data"]} | space["fixed"] | space["baseline"])
    # the reference (the paper's recipe) likewise, with a label the verdict prints
    if "reference" in space:
        assert set(space["reference"]) == {"label", "config"} and space["reference"]["label"]
        resolve({"data": space["data"]} | space["fixed"] | space["reference"]["config"])
    for key, spec in space["params"].items():
        assert key in SPEC, key
        assert spec["type"] in TYPES, (key, spec)
        if spec["type"] == "categorical":
            assert len(spec["choices"]) >= 2
        else:
            assert spec["low"] < spec["high"], key
            spec_low, spec_high = SPEC[key].low, SPEC[key].high
            assert spec_low is None or spec["low"] >= spec_low, key
            assert spec_high is None or spec["high"] <= spec_high, key
            if spec["type"] == "loguniform":
                assert spec["low"] > 0, key
            for value in spec.get("grid", []):
                assert spec["low"] <= value <= spec["high"], (key, value)
        assert key not in space["fixed"], f"{key} is both searched and fixed"
    assert all(key in SPEC for key in space["fixed"])
    for point in space.get("points", {}).values():
        assert all(key in SPEC for key in point)


@pytest.mark.parametrize("name", NAMES)
def test_random_samples_build(name: str) -> None:
    space = SPACES[name]
    rng = random.Random(0)
    for _ in range(12):
        sampled = search_spaces.sample(space, rng)
        assert set(sampled) == set(search_spaces.params_of(space))
        config = _builds({"data": space["data"]} | space["fixed"] | sampled)
        assert config["data"] == space["data"]
        resolve(search_spaces.expand({"data": space["data"]} | space["fixed"] | sampled | SMOKE))


@pytest.mark.parametrize("name", NAMES)
def test_grid_points_build(name: str) -> None:
    space = SPACES[name]
    points = search_spaces.grid(space)
    assert points
    for point in points[:: max(1, len(points) // 12)]:
        _builds({"data": space["data"]} | space["fixed"] | point)


def test_baselines_are_the_published_points() -> None:
    space = SPACES["baselines"]
    names = set(space["points"])
    assert names == {"constant", "debiased", "p2", "min_snr_5", "x0", "edm", "sigmoid", "learned"}
    configs = {n: _builds(space["fixed"] | {"data": space["data"], POINT_KEY: n}) for n in names}
    assert (
        configs["min_snr_5"]["weighting"] == "min_snr"
        and configs["min_snr_5"]["weighting.min_snr_gamma"] == 5.0
    )
    assert configs["edm"]["noise"] == "edm"
    assert len(search_spaces.grid(space)) == 8
    # A --set key wins over the point's value.
    assert search_spaces.expand({POINT_KEY: "p2", "weighting.p": 0.5})["weighting.p"] == 0.5


@pytest.mark.parametrize("name", NAMES)
def test_searchers_propose_configs_that_build(name: str) -> None:
    """The real Tune domains and Optuna's TPE (the installed versions) propose buildable configs."""
    from tuner.search.cli import build_parser
    from tuner.search.plan import make_plan
    from tuner.search.study import StudySearcher
    from tuner.search.tuning import make_search_alg, param_space

    plan = make_plan(build_parser().parse_args(["--space", name, "--search", "optuna"]))
    space = param_space(plan)
    searcher = make_search_alg(plan)
    assert isinstance(searcher, StudySearcher)
    assert searcher.set_search_properties(plan.metric, plan.mode, space)
    for i in range(6):
        proposed = searcher.suggest(f"t{i}")
        _builds(plan.fixed | proposed)
        searcher.on_trial_complete(f"t{i}", {plan.metric: float(i), "step": plan.max_steps})
    rng = random.Random(1)
    for _ in range(5):  # the random search draws from the same Tune domains
        drawn = {
            k: (v.sample(random_state=rng.randrange(2**31)) if hasattr(v, "sample") else v)
            for k, v in space.items()
        }
        _builds(plan.fixed | drawn)


def test_list_spaces_prints_every_space(capsys: pytest.CaptureFixture[str]) -> None:
    from tuner.search.cli import main

    assert main(["--list-spaces"]) == 0
    out = capsys.readouterr().out
    for name, space in SPACES.items():
        assert f"{name}:" in out and f"data: {space['data']}" in out
        for key in space["params"]:
            assert key in out
    assert "weighting.p            float [0, 1.5]" in out  # as the plan prints it
