"""tuner/search/pretrain.py: the search trains the discriminators it knows in advance, once per
key, as Ray tasks, into the cache the trials read."""

from __future__ import annotations

from pathlib import Path

import ray

from tuner.config.spec import resolve
from tuner.search.cli import build_parser
from tuner.search.plan import make_plan
from tuner.search.pretrain import known_disc_configs, pretrain
from tuner.training import discriminators

TIW = {
    "data": "bimodal_biased",
    "tiw.strength": 1.0,
    "tiw.disc_steps": 30,
    "tiw.disc_batch": 64,
    "net.width": 32,
    "net.depth": 1,
}


def test_known_configs_unless_a_searched_parameter_changes_the_key() -> None:
    plan = make_plan(build_parser().parse_args(["--space", "debias_family", "--smoke-test"]))
    (config,) = known_disc_configs(plan)  # the weighting and the strength leave the key alone
    assert config["data"] == "digits_biased" and config["tiw.strength"] == 1.0
    ratio = make_plan(build_parser().parse_args(["--space", "density_ratio", "--smoke-test"]))
    assert "tiw.disc_lr" in ratio.params and known_disc_configs(ratio) == []


def test_pretrain_trains_each_missing_key_once(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    configs = [resolve(TIW | {"seed": s, "weighting": w}) for s in (0, 1) for w in ("x0", "edm")]
    configs.append(resolve(TIW | {"tiw.strength": 0.0}))  # needs none
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        assert pretrain(configs, cache, cpus=1, gpus=0) == 2
        assert pretrain(configs, cache, cpus=1, gpus=0) == 0  # all cached
    finally:
        ray.shutdown()
    assert len(list(Path(cache).glob("*.pt"))) == 2
    assert {p.stem for p in Path(cache).glob("*.pt")} == {
        discriminators.disc_key(c) for c in configs[:4]
    }
