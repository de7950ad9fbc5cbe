import json

import pytest

from tuner.config.spec import (
    DEFAULTS,
    SPEC,
    ConfigError,
    evaluation_steps,
    load_config_file,
    parse_set,
    resolve,
)

REQUIRED_KEYS = [
    "data",
    "seed",
    "train.steps",
    "train.batch",
    "train.lr",
    "weighting",
    "weighting.p",
    "weighting.k",
    "weighting.min_snr_gamma",
    "weighting.normalize",
    "noise",
    "sampler",
    "sampler.steps",
    "tiw.strength",
    "ambient.consistency",
    "cdl.coef",
    "eval.samples",
    "eval.every",
]


def test_required_keys_exist_and_defaults_resolve() -> None:
    for key in REQUIRED_KEYS:
        assert key in SPEC
    assert resolve() == DEFAULTS
    json.dumps(DEFAULTS)  # JSON-able


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("data", "mnist", "one of ring8"),
        ("weighting", "snr", "one of constant"),
        ("sampler", "euler", "one of ddim"),
        ("noise", "karras", "one of cosine"),
        ("train.steps", 0, "an integer in [1, inf]"),
        ("train.steps", 2.5, "an integer"),
        ("train.lr", "fast", "a number"),
        ("train.lr", float("nan"), "a number"),
        ("weighting.normalize", 1, "true or false"),
        ("tiw.strength", -1.0, "a number in [0, 4]"),
        ("seed", True, "an integer"),
    ],
)
def test_bad_values_name_key_and_allowed(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve({key: value})
    msg = str(err.value)
    assert "\n" not in msg
    assert key in msg and fragment in msg


def test_unknown_key_and_cross_checks() -> None:
    with pytest.raises(ConfigError, match="unknown key 'train.stepz'"):
        resolve({"train.stepz": 3})
    with pytest.raises(ConfigError, match="logsnr_min"):
        resolve({"noise.logsnr_min": 0.0, "noise.logsnr_max": 0.0})


@pytest.mark.parametrize(
    ("steps", "every", "growth", "expected"),
    [
        (300, 100, 1.0, [100, 200, 300]),
        (250, 100, 1.0, [100, 200, 250]),  # the last step is always evaluated
        (300, 100, 3.0, [100, 300]),  # ASHA's rungs with reduction factor 3
        (1000, 100, 3.0, [100, 300, 900, 1000]),
        (1000, 100, 1.5, [100, 150, 225, 338, 506, 759, 1000]),
        (5, 1, 1.1, [1, 2, 3, 4, 5]),  # growth too small to move a step: one step at a time
        (50, 100, 3.0, [50]),
    ],
)
def test_evaluation_steps(steps: int, every: int, growth: float, expected: list[int]) -> None:
    assert evaluation_steps(steps, every, growth) == expected


def test_types_are_normalised() -> None:
    c = resolve({"train.lr": 1, "train.steps": 10.0, "data": "folder:/tmp/x"})
    assert isinstance(c["train.lr"], float) and c["train.steps"] == 10
    assert c["data"] == "folder:/tmp/x"


def test_parse_set() -> None:
    assert parse_set("weighting=debiased") == ("weighting", "debiased")
    assert parse_set("train.lr=1e-3") == ("train.lr", 1e-3)
    assert parse_set("weighting.normalize=false") == ("weighting.normalize", False)
    assert parse_set("data.root=null") == ("data.root", None)
    for bad in ["weighting", "=3", ""]:
        with pytest.raises(ConfigError, match="malformed --set"):
            parse_set(bad)
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        parse_set("nope=1")


def test_load_config_file(tmp_path) -> None:
    flat = tmp_path / "best.json"
    flat.write_text(json.dumps({"weighting": "p2"}))
    assert load_config_file(str(flat)) == {"weighting": "p2"}
    wrapped = tmp_path / "metrics.json"
    wrapped.write_text(json.dumps({"config": {"seed": 3}, "history": []}))
    assert load_config_file(str(wrapped)) == {"seed": 3}
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(str(broken))
    with pytest.raises(ConfigError, match="no such file"):
        load_config_file(str(tmp_path / "missing.json"))
