"""What each trainer can set, as families of settings with their effective weighting w(λ)·q(λ)
in the notation of METHODS.md §5, read from the trainers' current sources:

- diffusers (huggingface/diffusers): ``src/diffusers/training_utils.py``
  ``compute_snr``, ``compute_density_for_timestep_sampling``, ``compute_loss_weighting_for_sd3``;
  ``examples/text_to_image/train_text_to_image.py`` (``--snr_gamma``: min(SNR, γ)/SNR on ε,
  /(SNR + 1) on v); ``examples/dreambooth/train_dreambooth_flux.py`` and ``_lora_flux.py``
  (``--weighting_scheme``, ``--logit_mean``, ``--logit_std``, ``--mode_scale``; the velocity MSE
  times the scheme's weight). The draw u picks ``noise_scheduler.timesteps[int(u·1000)]``, whose
  σ run from 1 down (``schedulers/scheduling_flow_match_euler_discrete.py``): σ = shift(1 − u),
  so ``--logit_mean m`` puts λ at N(2m, 2s), the opposite sign of SD3's paper.
- kohya-ss/sd-scripts: ``library/custom_train_functions.py`` (``apply_snr_weight``,
  ``apply_debiased_estimation``: 1/√min(SNR, 1000) on ε, 1/(min(SNR, 1000) + 1) on v;
  ``scale_v_prediction_loss_like_noise_prediction``), ``train_network.py`` (they multiply);
  ``library/flux_train_utils.py`` ``get_noisy_model_input_and_timesteps`` (``--timestep_sampling``
  sigmoid/shift/uniform draw σ itself; ``sigma`` draws through the scheduler as diffusers does,
  with ``--discrete_flow_shift``) and ``apply_model_prediction_type`` (the scheme's weight under
  the default ``--model_prediction_type sigma_scaled``).
- OneTrainer (Nerogar/OneTrainer): ``modules/util/enum/LossWeight.py``,
  ``TimestepDistribution.py``; ``modules/modelSetup/mixin/ModelSetupNoiseMixin.py``
  (``_get_timestep_discrete``: LOGIT_NORMAL is sigmoid(N(noising_bias, noising_weight + 1)),
  HEAVY_TAIL SD3's mode with scale noising_weight, COS_MAP, ``timestep_shift``; τ is σ itself,
  ``ModelSetupFlowMatchingMixin.py``) and ``ModelSetupDiffusionLossMixin.py`` (P2 (1 + SNR)^−γ,
  debiased 1/√min(SNR, 1000), both with SNR + 1 under v; SIGMA weight σ for flow models).
- NVlabs/edm2: ``training/training_loop.py`` ``EDM2Loss`` (ln σ ~ N(P_mean, P_std²), weight
  (σ² + σ_d²)/(σ σ_d)² on the x0 error with σ_d = 0.5, plus the learned u(σ)); ``train_edm2.py``
  ``--P_mean``, ``--P_std``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from models.schedules import (
    CosineDensity,
    LogisticDensity,
    ModeDensity,
    NoiseDensity,
    NormalDensity,
)
from tuner.export.curves import (
    WIDE,
    Curve,
    Family,
    FlowSchedule,
    Param,
    Schedule,
    flow_sigma,
    mse_factor,
    schedule,
)

Config = dict[str, Any]
PREDICTIONS = ("epsilon", "v_prediction", "flow")


@dataclass(frozen=True)
class Context:
    """The user's model: its prediction type and (ε and v models) its noise schedule."""

    prediction: str = "epsilon"
    schedule: str = "cosine"

    def trainer_schedule(self) -> Schedule:
        return FlowSchedule() if self.prediction == "flow" else schedule(self.schedule)


# -- what the config implies, as starting values ----------------------------------------------------
def _normal(config: Config) -> tuple[float, float]:
    """The found density as N(μ, sd) over λ before its shift (SD3's default N(0, 2) otherwise)."""
    if config["noise"] == "normal":
        return config["noise.loc"], config["noise.scale"]
    if config["noise"] == "edm":
        return 2.4, 2.4  # ln s ~ N(−1.2, 1.2²)
    return 0.0, 2.0


def _log_shift(config: Config) -> float:
    return math.log(config["noise.shift"])


def _gamma(config: Config) -> float:
    return config["weighting.min_snr_gamma"] if config["weighting"] == "min_snr" else 5.0


def _p2_gamma(config: Config) -> float:
    return config["weighting.p"] if config["weighting"] == "p2" else 1.0


def _mode_scale(config: Config) -> float:
    return config["noise.mode_scale"] if config["noise"] == "mode" else 1.29


def _shift(config: Config) -> float:
    return config["noise.shift"]


SHIFT = Param("shift", 0.05, 20.0, _shift)
GAMMA = Param("gamma", 0.05, 100.0, _gamma)
MODE = Param("mode_scale", -1.0, 1.6, _mode_scale)


# -- time densities, over λ_F = −2 logit τ ---------------------------------------------------------
def uniform_time(shift: float = 1.0) -> NoiseDensity:
    """τ ~ U(0, 1): logit τ is logistic(0, 1), so λ_F is logistic(0, 2)."""
    return LogisticDensity(*WIDE, loc=0.0, scale=2.0, shift=shift)


def logit_normal(mean: float, std: float, shift: float = 1.0) -> NoiseDensity:
    """logit τ ~ N(mean, std²) (SD3's paper, OneTrainer, kohya's sigmoid): λ_F ~ N(−2 mean, 2 std)."""
    return NormalDensity(*WIDE, loc=-2.0 * mean, scale=2.0 * std, shift=shift)


# -- weights on a prediction's MSE, as functions of λ ---------------------------------------------
def _snr(lam: Tensor, cap: float = math.inf) -> Tensor:
    return torch.exp(lam.clamp(max=math.log(cap)))


def _eps_weight(prediction: str, weight: Curve) -> Curve:
    """A weight on the P-MSE as a weight on the ε-MSE: w·c_P."""
    return lambda lam: weight(lam) * mse_factor(prediction, lam)


def _min_snr(gamma: float, v: bool) -> Curve:
    """min(SNR, γ)/SNR, or /(SNR + 1) under v (diffusers, kohya, OneTrainer)."""
    return lambda lam: _snr(lam).clamp(max=gamma) / (_snr(lam) + float(v))


def _cosmap_weight(lam: Tensor) -> Tensor:
    """SD3's cosmap as a weight on uniform σ: 2/(π(1 − 2σ + 2σ²)) (diffusers training_utils)."""
    s = flow_sigma(lam)
    return 2.0 / (math.pi * (1.0 - 2.0 * s + 2.0 * s**2))


def _sigma_sqrt_weight(lam: Tensor) -> Tensor:
    return flow_sigma(lam) ** -2.0


def _one(lam: Tensor) -> Tensor:
    return torch.ones_like(lam)


def _family(
    ctx: Context,
    name: str,
    flags: Callable[[dict[str, float]], str],
    weight: Callable[[dict[str, float]], Curve],
    density: Callable[[dict[str, float]], NoiseDensity],
    params: tuple[Param, ...] = (),
) -> Family:
    """A family from its flags, its weight on the P-MSE and its time density, all of its values."""
    sched = ctx.trainer_schedule()

    def make(v: dict[str, float]) -> tuple[str, Curve]:
        curve = sched.effective(_eps_weight(ctx.prediction, weight(v)), density(v))
        return flags(v), curve

    return Family(name, make, params)


def _g(value: float) -> str:
    return f"{value:g}"


# -- diffusers -------------------------------------------------------------------------------------
def diffusers(ctx: Context, config: Config) -> tuple[str, list[Family]]:
    if ctx.prediction == "flow":
        return _diffusers_flow(ctx, config)
    v = ctx.prediction == "v_prediction"
    pred = f" --prediction_type {ctx.prediction}" if v else ""
    families = [
        _family(ctx, "none", lambda _: f"(no weighting flag){pred}", lambda _: _one, _uniform),
        _family(
            ctx,
            "snr_gamma",
            lambda p: f"--snr_gamma {_g(p['gamma'])}{pred}",
            lambda p: _min_snr(p["gamma"], v),
            _uniform,
            (GAMMA,),
        ),
    ]
    where = "examples/text_to_image/train_text_to_image.py (and the SD/SDXL dreambooth scripts)"
    return where, families


def _uniform(_: dict[str, float]) -> NoiseDensity:
    return uniform_time()


def _diffusers_flow(ctx: Context, config: Config) -> tuple[str, list[Family]]:
    def sched(p: dict[str, float]) -> str:
        return f'  [scheduler_config.json: "shift": {_g(p.get("shift", _shift(config)))}]'

    mean = Param("logit_mean", -4.0, 4.0, lambda c: (_normal(c)[0]) / 2.0)
    std = Param("logit_std", 0.05, 5.0, lambda c: _normal(c)[1] / 2.0)
    families = [
        _family(
            ctx,
            "logit_normal",
            lambda p: (
                "--weighting_scheme logit_normal --logit_mean "
                f"{_g(p['logit_mean'])} --logit_std {_g(p['logit_std'])}{sched(p)}"
            ),
            lambda _: _one,
            # σ = shift(1 − u) with logit u ~ N(m, s): λ ~ N(2m, 2s), then shifted (the shift
            # is the found one: it and the mean move λ alike)
            lambda p: logit_normal(-p["logit_mean"], p["logit_std"], _shift(config)),
            (mean, std),
        ),
        _family(
            ctx,
            "mode",
            lambda p: f"--weighting_scheme mode --mode_scale {_g(p['mode_scale'])}{sched(p)}",
            lambda _: _one,
            lambda p: ModeDensity(*WIDE, scale=p["mode_scale"], shift=p["shift"]),
            (MODE, SHIFT),
        ),
    ]
    for scheme, weight in (
        ("cosmap", _cosmap_weight),
        ("sigma_sqrt", _sigma_sqrt_weight),
        ("none", _one),
    ):
        families.append(
            _family(
                ctx,
                scheme,
                lambda p, scheme=scheme: f"--weighting_scheme {scheme}{sched(p)}",
                lambda _, weight=weight: weight,
                lambda p: uniform_time(p["shift"]),
                (SHIFT,),
            )
        )
    where = (
        "examples/dreambooth/train_dreambooth_flux.py, _lora_flux.py "
        "(train_dreambooth_sd3.py, _lora_sd3.py: add --precondition_outputs 0)"
    )
    return where, families


# -- kohya sd-scripts ------------------------------------------------------------------------------
def _kohya_debiased(v: bool) -> Curve:
    """apply_debiased_estimation: 1/√min(SNR, 1000) on ε, 1/(min(SNR, 1000) + 1) on v."""
    if v:
        return lambda lam: 1.0 / (_snr(lam, 1000.0) + 1.0)
    return lambda lam: _snr(lam, 1000.0) ** -0.5


def _kohya_scale_v(lam: Tensor) -> Tensor:
    """scale_v_prediction_loss_like_noise_prediction: min(SNR, 1000)/(min(SNR, 1000) + 1)."""
    snr = _snr(lam, 1000.0)
    return snr / (snr + 1.0)


def _product(*weights: Curve) -> Curve:
    def curve(lam: Tensor) -> Tensor:
        out = torch.ones_like(lam)
        for w in weights:
            out = out * w(lam)
        return out

    return curve


def kohya(ctx: Context, config: Config) -> tuple[str, list[Family]]:
    if ctx.prediction == "flow":
        return _kohya_flow(ctx, config)
    v = ctx.prediction == "v_prediction"
    base = " --v_parameterization" if v else ""
    combos: list[tuple[str, str, Callable[[dict[str, float]], Curve], tuple[Param, ...]]] = [
        ("none", "", lambda _: _one, ()),
        ("min_snr", "--min_snr_gamma {gamma}", lambda p: _min_snr(p["gamma"], v), (GAMMA,)),
        ("debiased", "--debiased_estimation_loss", lambda _: _kohya_debiased(v), ()),
        (
            "min_snr+debiased",
            "--min_snr_gamma {gamma} --debiased_estimation_loss",
            lambda p: _product(_min_snr(p["gamma"], v), _kohya_debiased(v)),
            (GAMMA,),
        ),
    ]
    if v:
        scale = "--scale_v_pred_loss_like_noise_pred"
        combos += [
            (
                f"scale_v+{n}",
                f"{f} {scale}".strip(),
                lambda p, w=w: _product(w(p), _kohya_scale_v),
                ps,
            )
            for n, f, w, ps in list(combos)
        ]
    families = [
        _family(
            ctx,
            name,
            lambda p, f=flags: (
                (f.format(gamma=_g(p.get("gamma", 0))) + base).strip() or "(no weighting flag)"
            ),
            weight,
            _uniform,
            params,
        )
        for name, flags, weight, params in combos
    ]
    return "train_network.py, sdxl_train_network.py (library/custom_train_functions.py)", families


def _kohya_flow(ctx: Context, config: Config) -> tuple[str, list[Family]]:
    scale = Param("sigmoid_scale", 0.05, 5.0, lambda c: _normal(c)[1] / 2.0)
    # --timestep_sampling shift: N(0, 2s) shifted by k; the found N(μ, sd) shifted by k' is that
    # with k = k'·e^(−μ/2)
    flow_shift = Param("shift", 0.05, 20.0, lambda c: _shift(c) * math.exp(-_normal(c)[0] / 2.0))
    mean = Param("logit_mean", -4.0, 4.0, lambda c: _normal(c)[0] / 2.0)
    std = Param("logit_std", 0.05, 5.0, lambda c: _normal(c)[1] / 2.0)

    def sigma(p: dict[str, float]) -> str:
        return (
            f"--timestep_sampling sigma --discrete_flow_shift {_g(p.get('shift', _shift(config)))}"
        )

    families = [
        _family(
            ctx,
            "sigmoid",
            lambda p: f"--timestep_sampling sigmoid --sigmoid_scale {_g(p['sigmoid_scale'])}",
            lambda _: _one,
            lambda p: logit_normal(0.0, p["sigmoid_scale"]),
            (scale,),
        ),
        _family(
            ctx,
            "shift",
            lambda p: (
                f"--timestep_sampling shift --sigmoid_scale {_g(p['sigmoid_scale'])} "
                f"--discrete_flow_shift {_g(p['shift'])}"
            ),
            lambda _: _one,
            lambda p: logit_normal(0.0, p["sigmoid_scale"], p["shift"]),
            (scale, flow_shift),
        ),
        _family(
            ctx,
            "uniform",
            lambda _: "--timestep_sampling uniform",
            lambda _: _one,
            _uniform,
        ),
        _family(
            ctx,
            "logit_normal",
            lambda p: (
                f"{sigma(p)} --weighting_scheme logit_normal --logit_mean "
                f"{_g(p['logit_mean'])} --logit_std {_g(p['logit_std'])}"
            ),
            lambda _: _one,
            lambda p: logit_normal(
                -p["logit_mean"], p["logit_std"], _shift(config)
            ),  # as diffusers
            (mean, std),
        ),
        _family(
            ctx,
            "mode",
            lambda p: f"{sigma(p)} --weighting_scheme mode --mode_scale {_g(p['mode_scale'])}",
            lambda _: _one,
            lambda p: ModeDensity(*WIDE, scale=p["mode_scale"], shift=p["shift"]),
            (MODE, SHIFT),
        ),
    ]
    for scheme, weight in (("cosmap", _cosmap_weight), ("sigma_sqrt", _sigma_sqrt_weight)):
        families.append(
            _family(
                ctx,
                scheme,
                lambda p, scheme=scheme: (
                    f"{sigma(p)} --weighting_scheme {scheme} --model_prediction_type sigma_scaled"
                ),
                lambda _, weight=weight: weight,
                lambda p: uniform_time(p["shift"]),
                (SHIFT,),
            )
        )
    return "flux_train_network.py (library/flux_train_utils.py)", families


# -- OneTrainer ------------------------------------------------------------------------------------
def _ot_debiased(v: bool) -> Curve:
    """OneTrainer's DEBIASED_ESTIMATION: 1/√min(SNR, 1000) on ε, 1/√(min(SNR, 1000) + 1) on v."""
    return lambda lam: (_snr(lam, 1000.0) + float(v)) ** -0.5


def _ot_p2(gamma: float, v: bool) -> Curve:
    """OneTrainer's P2: (1 + SNR)^−γ on ε, (2 + SNR)^−γ on v."""
    return lambda lam: (1.0 + float(v) + _snr(lam)) ** -gamma


def onetrainer(ctx: Context, config: Config) -> tuple[str, list[Family]]:
    v, flow = ctx.prediction == "v_prediction", ctx.prediction == "flow"
    strength = Param("strength", 0.05, 100.0, lambda c: _gamma(c))
    p2 = Param("strength", 0.0, 4.0, _p2_gamma)
    weights: list[tuple[str, Callable[[dict[str, float]], Curve], tuple[Param, ...]]]
    if flow:
        weights = [("CONSTANT", lambda _: _one, ()), ("SIGMA", lambda _: flow_sigma, ())]
    else:
        weights = [
            ("CONSTANT", lambda _: _one, ()),
            ("MIN_SNR_GAMMA", lambda p: _min_snr(p["strength"], v), (strength,)),
            ("DEBIASED_ESTIMATION", lambda _: _ot_debiased(v), ()),
            ("P2", lambda p: _ot_p2(p["strength"], v), (p2,)),
        ]
    bias = Param("noising_bias", -4.0, 4.0, lambda c: -_normal(c)[0] / 2.0)
    width = Param("noising_weight", -0.95, 4.0, lambda c: _normal(c)[1] / 2.0 - 1.0)
    heavy = Param("noising_weight", -1.0, 1.6, _mode_scale)
    found_shift = _shift(config)
    times: list[tuple[str, Callable[[dict[str, float]], NoiseDensity], tuple[Param, ...]]] = [
        ("UNIFORM", lambda p: uniform_time(p["timestep_shift"]), (_ot_shift(),)),
        (
            "LOGIT_NORMAL",
            lambda p: logit_normal(p["noising_bias"], p["noising_weight"] + 1.0, found_shift),
            (bias, width),
        ),
        (
            "HEAVY_TAIL",
            lambda p: ModeDensity(*WIDE, scale=p["noising_weight"], shift=p["timestep_shift"]),
            (heavy, _ot_shift()),
        ),
        ("COS_MAP", lambda p: CosineDensity(*WIDE, shift=p["timestep_shift"]), (_ot_shift(),)),
    ]
    families = []
    for wname, weight, wparams in weights:
        for tname, time, tparams in times:
            families.append(
                _family(
                    ctx,
                    f"{wname}/{tname}",
                    lambda p, w=wname, t=tname: _ot_keys(w, t, p, found_shift),
                    weight,
                    time,
                    wparams + tparams,
                )
            )
    return "training config (modules/util/config/TrainConfig.py keys)", families


def _ot_shift() -> Param:
    return Param("timestep_shift", 0.05, 20.0, _shift)


def _ot_keys(weight: str, time: str, p: dict[str, float], found_shift: float) -> str:
    keys: dict[str, Any] = {"loss_weight_fn": weight}
    if "strength" in p:
        keys["loss_weight_strength"] = p["strength"]
    keys["timestep_distribution"] = time
    for key in ("noising_weight", "noising_bias"):
        if key in p:
            keys[key] = p[key]
    keys["timestep_shift"] = p.get("timestep_shift", found_shift)
    keys = {k: v + 0.0 if isinstance(v, float) else v for k, v in keys.items()}  # no -0.0
    return json.dumps(keys)


# -- EDM2 ------------------------------------------------------------------------------------------
def _edm_weight(lam: Tensor) -> Tensor:
    """EDM2Loss's (σ² + σ_d²)/(σ σ_d)² on the x0 error, σ_d = 0.5, σ² = 1/SNR, as a weight on
    the ε error (‖x0 − x̂0‖² = ‖ε − ε̂‖²/SNR): 1 + 1/(SNR σ_d²)."""
    return 1.0 + torch.exp(-lam) / 0.25


def edm2(ctx: Context, config: Config) -> tuple[str, list[Family]]:
    del ctx  # EDM2 has one parameterisation and no scheduler
    mean = Param("P_mean", -4.0, 4.0, lambda c: -(_normal(c)[0] - 2.0 * _log_shift(c)) / 2.0)
    std = Param("P_std", 0.05, 5.0, lambda c: _normal(c)[1] / 2.0)

    def make(p: dict[str, float]) -> tuple[str, Curve]:
        # ln σ ~ N(P_mean, P_std²), λ = −2 ln σ: λ ~ N(−2 P_mean, 2 P_std)
        density = NormalDensity(*WIDE, loc=-2.0 * p["P_mean"], scale=2.0 * p["P_std"])
        flags = f"--P_mean={_g(p['P_mean'])} --P_std={_g(p['P_std'])}"
        return flags, lambda lam: _edm_weight(lam) * density.log_prob(lam).exp()

    return "train_edm2.py (training/training_loop.py EDM2Loss)", [Family("EDM2", make, (mean, std))]


TARGETS: dict[str, Callable[[Context, Config], tuple[str, list[Family]]]] = {
    "diffusers": diffusers,
    "kohya": kohya,
    "onetrainer": onetrainer,
    "edm2": edm2,
}
