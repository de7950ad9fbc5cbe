"""Objective composition (models/objective.py) and its construction from the flat config."""

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from models.ambient import AmbientLoss, ConsistencyLoss, ambient_logsnr_stop
from models.cdl import CDLLoss
from models.discriminator import MLPDiscriminator
from models.losses import DenoiseLoss
from models.nets import MLP
from models.objective import Objective
from models.param import EpsModel
from models.schedules import CosineDensity
from models.tiw import TIWCorrection, TIWLoss
from models.weighting import Constant, Debiased, LogVarHead
from tuner.config.build import build_objective
from tuner.config.spec import ConfigError, resolve
from tuner.data.presets import load_dataset


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ZeroLogit(nn.Module):
    """A discriminator that says r = 1 everywhere (zero logit and zero input gradient)."""

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return 0.0 * x.flatten(1).sum(1) + 0.0 * logsnr


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = EpsModel(MLP(2, width=32, depth=1))
    nn.init.normal_(model.backbone.out.weight, std=0.3)
    return model


def _x0() -> Tensor:
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "tiw",
    [
        None,
        TIWCorrection(MLPDiscriminator(2), 0.0),
        TIWCorrection(ZeroLogit(), 1.0, "full"),
        TIWCorrection(ZeroLogit(), 2.0, "weight"),
    ],
)
def test_strength_zero_or_unit_ratio_is_plain_denoising_exactly(tiw: TIWCorrection | None) -> None:
    denoise = DenoiseLoss(Debiased(), CosineDensity())
    model, x0 = _model(), _x0()
    plain = denoise(model, x0, torch.Generator().manual_seed(5))
    term = denoise if tiw is None else TIWLoss(denoise, tiw)
    terms = Objective([term])(model, x0, torch.Generator().manual_seed(5))
    assert torch.equal(terms["loss/denoise"], plain) and torch.equal(terms["loss"], plain)
    assert set(terms) == {"loss", "loss/denoise"}


def test_all_terms_at_once() -> None:
    ds = load_dataset("bimodal_biased", seed=0)
    density = CosineDensity()
    head = LogVarHead()
    tiw = TIWCorrection(MLPDiscriminator(2, width=32), 1.0, steps=30, batch=64)
    denoise = TIWLoss(AmbientLoss(0.5, Constant(), density, head), tiw)
    cdl = CDLLoss(ds.train.mean(0), torch.cov(ds.train.T), mc_points=2, fraction=0.5, coef=2.0)
    objective = Objective([denoise, ConsistencyLoss(0.5, chain_steps=2, coef=0.1), cdl])
    assert not objective.prepared and objective.tiw is tiw
    metrics = tiw.fit(ds.train, ds.reference, density, torch.Generator().manual_seed(0))
    assert 0.0 < metrics["loss/ratio"] < 1.0 and metrics["ratio/steps"] > 0
    assert objective.prepared  # trained: nothing left to prepare
    assert set(objective.modules()) == {"discriminator", "logvar_head"}  # both checkpointed
    model = _model()
    terms = objective(model, ds.train[:64], torch.Generator().manual_seed(1))
    assert set(terms) == {"loss", "loss/denoise", "loss/consistency", "loss/cdl"}
    for value in terms.values():
        assert value.shape == (64,) and torch.isfinite(value).all()
    total = terms["loss/denoise"] + 0.1 * terms["loss/consistency"] + 2.0 * terms["loss/cdl"]
    torch.testing.assert_close(terms["loss"], total)
    terms["loss"].mean().backward()
    assert model.backbone.out.weight.grad.abs().sum() > 0
    assert head.linear.weight.grad.abs().sum() > 0
    assert objective.logsnr_stop is None


def test_each_term_draws_then_computes_its_loss_as_its_call_does() -> None:
    """draw() then loss() is the term's own call, value for value, for every term."""
    ds = load_dataset("gaussian_noisy", seed=0)
    y, density = ds.train[:32], CosineDensity()
    terms = [
        DenoiseLoss(Debiased(), density),
        AmbientLoss(0.5, Constant(), density),
        ConsistencyLoss(0.5, chain_steps=2, gap=1.0),
        CDLLoss(y.mean(0), torch.cov(y.T), mc_points=3, fraction=0.3),
    ]
    model = _model()
    for term in terms:
        called = term(model, y, torch.Generator().manual_seed(4))
        drawn = term.draw(y, torch.Generator().manual_seed(4))
        assert torch.equal(term.loss(model, y, drawn), called), type(term).__name__


def test_logsnr_stop_and_inactive_terms() -> None:
    density = CosineDensity()
    denoise = DenoiseLoss(Constant(), density)
    ambient = AmbientLoss(0.5, Constant(), density)
    assert Objective([denoise]).logsnr_stop is None
    assert Objective([ambient]).logsnr_stop == pytest.approx(ambient_logsnr_stop(0.5))
    assert Objective([TIWLoss(ambient, TIWCorrection(ZeroLogit(), 1.0))]).logsnr_stop == (
        pytest.approx(ambient_logsnr_stop(0.5))
    )
    # the consistency term trains the levels above the data's: sampling goes to the top
    assert Objective([ambient, ConsistencyLoss(0.5)]).logsnr_stop is None
    x0 = _x0()
    terms = Objective([ambient])(_model(), x0, torch.Generator().manual_seed(2))
    assert set(terms) == {"loss", "loss/denoise"}
    want = ambient(_model(), x0, torch.Generator().manual_seed(2))
    assert torch.equal(terms["loss/denoise"], want)
    assert Objective([denoise]).prepared and Objective([denoise]).tiw is None
    assert Objective([denoise]).modules() == {}
    with pytest.raises(ValueError, match="two objective terms are named 'denoise'"):
        Objective([denoise, ambient])


def _build(overrides: dict, **kwargs: object) -> tuple[Objective, object]:
    config = resolve(overrides)
    ds = load_dataset(config["data"], seed=0)
    density = CosineDensity()
    return build_objective(config, ds, Constant(), density, **kwargs), ds


def test_build_objective_from_config() -> None:
    objective, _ = _build({"data": "bimodal_biased", "tiw.strength": 1.0, "tiw.mode": "weight"})
    assert objective.tiw is not None and objective.tiw.mode == "weight"
    assert isinstance(objective.terms["denoise"], TIWLoss) and not objective.prepared
    assert isinstance(objective.terms["denoise"].base, DenoiseLoss)
    objective, ds = _build({"data": "gaussian_noisy", "ambient.consistency": 0.015})
    ambient, consistency = objective.terms["denoise"], objective.terms["consistency"]
    assert isinstance(ambient, AmbientLoss) and ambient.sigma_n == ds.noise_sigma
    assert consistency.coef == 0.015 and objective.logsnr_stop is None
    objective, _ = _build({"data": "bimodal_biased", "cdl.coef": 1.0})
    assert objective.terms["cdl"].mc_points == 32 and objective.terms["cdl"].coef == 1.0
    objective, _ = _build({"data": "gaussian_noisy"})
    assert objective.logsnr_stop == pytest.approx(ambient_logsnr_stop(0.5))
    objective, _ = _build({"data": "gaussian_noisy", "ambient.tweedie": False})
    assert type(objective.terms["denoise"]) is DenoiseLoss and objective.logsnr_stop is None
    with pytest.raises(ConfigError, match="tiw.strength"):
        _build({"data": "ring8", "tiw.strength": 1.0})
    with pytest.raises(ConfigError, match="ambient.consistency"):
        _build({"data": "ring8", "ambient.consistency": 0.1})
    # CDL's classifier would learn the noisy law that the Tweedie objective corrects: refused;
    # with naive denoising of the noisy data (which fits the noisy law too) it composes.
    with pytest.raises(ConfigError, match=r"cdl.coef=1 .* ambient.tweedie=true"):
        _build({"data": "gaussian_noisy", "cdl.coef": 1.0})
    naive, _ = _build({"data": "gaussian_noisy", "cdl.coef": 1.0, "ambient.tweedie": False})
    assert set(naive.terms) == {"denoise", "cdl"} and type(naive.terms["denoise"]) is DenoiseLoss


def test_a_given_discriminator_is_used_as_trained() -> None:
    disc = MLPDiscriminator(2).train()
    objective, _ = _build({"data": "bimodal_biased", "tiw.strength": 0.5}, disc=disc)
    assert objective.tiw.disc is disc and not disc.training and objective.prepared
    assert objective.modules()["discriminator"] is disc


class LinearLogit(nn.Module):
    """log r = x₁ + λ/10: a discriminator whose ratio is known at every input."""

    def forward(self, x: Tensor, logsnr: Tensor) -> Tensor:
        return x[:, 0] + logsnr / 10.0


@pytest.mark.parametrize(
    ("strength", "mode"), [(1.0, "full"), (0.5, "weight"), (1.0, "correction")]
)
def test_cdl_with_tiw_weights_its_examples_by_the_clean_ratio(strength: float, mode: str) -> None:
    density = CosineDensity()
    x0 = _x0()
    seen: list[Tensor | None] = []

    class Recorded(CDLLoss):
        def loss(self, model: nn.Module, x0: Tensor, drawn: tuple, weight=None) -> Tensor:  # noqa: ANN001
            if weight is None and self.example_weight is not None:
                weight = self.example_weight(x0)
            seen.append(weight)
            return super().loss(model, x0, drawn, weight)

    cdl = Recorded(x0.mean(0), torch.cov(x0.T))
    tiw = TIWLoss(DenoiseLoss(Constant(), density), TIWCorrection(LinearLogit(), strength, mode))
    cdl.example_weight = tiw.example_weight  # as tuner/config/terms.py composes them
    terms = Objective([tiw, cdl])(_model(), x0, torch.Generator().manual_seed(3))
    (weight,) = seen
    # r^a of each clean example, read at the density's cleanest level (λ = 15): exp(a(x₁ + 1.5)),
    # where the correction moves the target law (full, correction); weight-only keeps p_obs
    want = torch.exp(strength * (x0[:, 0] + 1.5)) if mode != "weight" else torch.ones(64)
    torch.testing.assert_close(weight, want)
    assert torch.isfinite(terms["loss/cdl"]).all()
    cdl.example_weight = None
    Objective([DenoiseLoss(Constant(), density), cdl])(
        _model(), x0, torch.Generator().manual_seed(3)
    )
    assert seen[-1] is None  # without TIW the classifier's examples are not reweighted


def test_the_built_cdl_term_takes_tiws_example_weight() -> None:
    objective, _ = _build({"data": "bimodal_biased", "tiw.strength": 1.0, "cdl.coef": 0.1})
    assert objective.terms["cdl"].example_weight == objective.terms["denoise"].example_weight
    plain, _ = _build({"data": "bimodal_biased", "cdl.coef": 0.1})
    assert plain.terms["cdl"].example_weight is None
