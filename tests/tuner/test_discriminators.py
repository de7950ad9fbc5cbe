"""tuner/training/discriminators.py: one TIW discriminator per distinct key, shared through a cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.tiw import TIWCorrection
from tuner.config.spec import resolve
from tuner.training import discriminators
from tuner.training.trainer import Trainer, run_trial

TIW = {
    "data": "bimodal_biased",
    "tiw.strength": 1.0,
    "tiw.disc_steps": 30,
    "tiw.disc_batch": 64,
    "train.steps": 20,
    "train.batch": 64,
    "eval.every": 10,
    "eval.samples": 200,
    "sampler.steps": 8,
    "net.width": 32,
    "net.depth": 1,
}


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the discriminator trainings (TIWCorrection.fit calls)."""
    calls: list[int] = []
    fit = TIWCorrection.fit

    def counted(self: TIWCorrection, *args: object, **kwargs: object) -> dict[str, float]:
        calls.append(1)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(TIWCorrection, "fit", counted)
    return calls


def _disc_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.objective.discriminator.state_dict().items()}


def test_two_trials_with_one_key_train_one_discriminator(tmp_path: Path, fits: list[int]) -> None:
    cache = str(tmp_path / "cache")
    first = Trainer(TIW | {"weighting": "debiased"}, disc_cache=cache)
    m1 = first.prepare()
    second = Trainer(TIW | {"weighting": "constant", "tiw.strength": 0.5}, disc_cache=cache)
    m2 = second.prepare()
    assert len(fits) == 1 and m1 == m2  # the second trial loaded the first one's
    a, b = _disc_state(first), _disc_state(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(list(Path(cache).glob("*.pt"))) == 1
    # the cached discriminator is the one a trial would have trained itself, bit for bit
    alone = Trainer(TIW | {"weighting": "debiased"})
    alone.prepare()
    c = _disc_state(alone)
    assert all(torch.equal(a[k], c[k]) for k in a) and len(fits) == 2


def test_two_keys_train_two(tmp_path: Path, fits: list[int]) -> None:
    cache = str(tmp_path / "cache")
    Trainer(TIW, disc_cache=cache).prepare()
    Trainer(TIW | {"seed": 1}, disc_cache=cache).prepare()
    Trainer(TIW | {"tiw.disc_lr": 1e-3}, disc_cache=cache).prepare()
    assert len(fits) == 3 and len(list(Path(cache).glob("*.pt"))) == 3
    # the weighting, the strength and the budget of the denoiser are not part of the key
    same = [TIW | {"weighting": "x0"}, TIW | {"tiw.strength": 2.0}, TIW | {"train.steps": 99}]
    assert {discriminators.disc_key(resolve(c)) for c in same} == {
        discriminators.disc_key(resolve(TIW))
    }


def test_a_damaged_entry_is_named_and_retrained(tmp_path: Path, fits: list[int]) -> None:
    cache = str(tmp_path / "cache")
    Trainer(TIW, disc_cache=cache).prepare()
    (entry,) = Path(cache).glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match=rf"discriminator cache entry {entry} is damaged"):
        Trainer(TIW, disc_cache=cache).prepare()
    assert len(fits) == 2
    Trainer(TIW, disc_cache=cache).prepare()  # the retrained entry is whole again
    assert len(fits) == 2


def test_resume_with_a_shared_discriminator_is_bit_identical(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    config = TIW | {"train.steps": 30}
    reports: list = []
    full = run_trial(
        config, tmp_path / "a", disc_cache=cache, report=lambda m, c: reports.append(c)
    )
    resumed = run_trial(
        config, tmp_path / "b", disc_cache=cache, resume_from=reports[-2]
    )  # step 20 (kept)
    assert resumed["eval/nll"] == full["eval/nll"] and resumed["step"] == full["step"]


def test_pretrain_trains_each_missing_key_once(tmp_path: Path) -> None:
    import ray

    cache = str(tmp_path / "cache")
    configs = [resolve(TIW | {"seed": s, "weighting": w}) for s in (0, 1) for w in ("x0", "edm")]
    configs.append(resolve(TIW | {"tiw.strength": 0.0}))  # needs none
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        assert discriminators.pretrain(configs, cache, cpus=1, gpus=0) == 2
        assert discriminators.pretrain(configs, cache, cpus=1, gpus=0) == 0  # all cached
    finally:
        ray.shutdown()
    assert len(list(Path(cache).glob("*.pt"))) == 2
