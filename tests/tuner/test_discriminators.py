"""tuner/training/discriminators.py: one TIW discriminator per distinct key, shared through a
cache, keyed by the config keys the "tiw" term's builder reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.objective import TERMS
from models.tiw import TIWCorrection
from tuner.config.build import build_dataset, build_objective
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
    return {k: v.clone() for k, v in trainer.objective.tiw.disc.state_dict().items()}


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


def test_the_key_is_read_from_the_builders_record_of_its_config_keys() -> None:
    config = resolve(TIW)
    key = discriminators.disc_key(config)
    fields = discriminators.key_fields(config)
    tiw = TERMS.entry("tiw")
    # every key the builder reads is in it, but those that only use the trained discriminator
    assert {"tiw.disc_steps", "tiw.disc_lr", "tiw.disc_batch"} <= set(fields)
    assert not {"tiw.strength", "tiw.mode", "tiw.clip"} & set(fields)
    # the density's keys are its registry entry's: the cosine density reads no location
    assert "noise.loc" not in fields
    assert discriminators.disc_key(resolve(TIW | {"noise.loc": 2.0})) == key
    logistic = resolve(TIW | {"noise": "logistic"})
    assert discriminators.disc_key(logistic | {"noise.loc": 2.0}) != discriminators.disc_key(
        logistic
    )
    # a key added to the builder is in the key at once: no hand list to forget it in
    params = dict(tiw.params) | {"depth": "net.depth"}
    with TERMS.replaced("tiw", tiw.obj, params=params, **tiw.info):
        assert "net.depth" in discriminators.key_fields(config)
        assert discriminators.disc_key(config) != key
        assert discriminators.disc_key(config | {"net.depth": 2}) != discriminators.disc_key(config)
    assert discriminators.disc_key(config) == key


def test_get_or_train_alone_trains_the_trials_own_discriminator(fits: list[int]) -> None:
    config = resolve(TIW | {"weighting.learned": True})
    tiw, metrics = discriminators.get_or_train(None, config, build_dataset(config))
    assert tiw.fitted and not tiw.disc.training and len(fits) == 1
    trial = Trainer(config)
    assert trial.prepare() == metrics
    a, b = tiw.disc.state_dict(), _disc_state(trial)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit, without building a Trainer


def test_an_injected_pretrained_discriminator_needs_no_pretraining(fits: list[int]) -> None:
    config = resolve(TIW)
    dataset = build_dataset(config)
    trained, _ = discriminators.get_or_train(None, config, dataset)
    objective = build_objective(config, dataset, disc=trained.disc)
    injected = Trainer(config, dataset=dataset, objective=objective)
    assert injected.prepared and injected.prepare() == {} and len(fits) == 1
    own = Trainer(config)
    own.prepare()
    for _ in range(3):  # the same steps as the trial that trained the discriminator itself
        assert injected.train_step() == own.train_step()
    assert len(fits) == 2
