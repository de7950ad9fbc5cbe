"""tuner/search/pretrain.py: the search trains the discriminators it knows in advance, once per
key, as Ray tasks, into the cache the trials read."""

from __future__ import annotations

from pathlib import Path

import ray

from tuner.config.spec import resolve
from tuner.records import FINISHED, TrialRow
from tuner.search.cli import build_parser
from tuner.search.confirm import choose, confirmation_disc_configs
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


def test_the_confirmations_discriminators_are_known_before_the_search() -> None:
    """The search pre-trains every discriminator its confirmation will need (a winner's and the
    reference's on each fresh seed), so the stages have no pre-training between them."""
    args = ["--space", "debias_family", "--smoke-test"]
    plan = make_plan(build_parser().parse_args(args))
    known = known_disc_configs(plan)
    ahead = {discriminators.disc_key(c) for c in known + confirmation_disc_configs(plan, known)}
    config = resolve(plan.fixed | {"tiw.strength": 0.7, "weighting.p": 0.3})
    row = TrialRow.from_history([(plan.max_steps, 1.0)], plan.max_steps, "min", trial="a",
                                status=FINISHED, config=config, raw=config)  # fmt: skip
    chosen = choose(plan, [row])
    configs = [resolve(c | {"seed": s}) for c in chosen["candidates"].values() for s in chosen["seeds"]]  # fmt: skip
    needed = {discriminators.disc_key(c) for c in configs if discriminators.needs_discriminator(c)}
    assert len(needed) == plan.confirm_seeds and needed <= ahead
    # without a confirmation, nothing more than the search's own
    off = make_plan(build_parser().parse_args([*args, "--confirm", "0"]))
    assert confirmation_disc_configs(off, known_disc_configs(off)) == []


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
