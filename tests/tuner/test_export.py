"""python -m tuner.export: the published points round-trip to each trainer's native setting at
distance 0, a searched winner gets its nearest setting and distance, and --to python reproduces
the found weighting and density exactly inside a diffusers training step."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tuner.config.build import build_density, build_weighting
from tuner.config.spec import resolve
from tuner.export.cli import main
from tuner.export.curves import alphas_cumprod, mse_factor

ROOT = Path(__file__).resolve().parents[2]
NO_CAP = {"weighting.snr_max": 1e12}  # the papers' weightings have no SNR cap
FLOW = {"weighting": "flow"}  # SD3/Flux's unweighted velocity MSE
POINTS = {
    "constant": {"weighting": "constant"},
    "debiased": {"weighting": "debiased", "weighting.snr_max": 1000.0},  # kohya's, OneTrainer's cap
    "min_snr_5": {"weighting": "min_snr", "weighting.min_snr_gamma": 5.0} | NO_CAP,
    "p2": {"weighting": "p2", "weighting.k": 1.0, "weighting.p": 1.0} | NO_CAP,
    "edm": {"weighting": "edm", "noise": "edm"} | NO_CAP,
    "logit_normal": FLOW | {"noise": "normal", "noise.loc": 0.0, "noise.scale": 2.0},
    "mode": FLOW | {"noise": "mode", "noise.mode_scale": 1.29},
    "cosmap": FLOW | {"noise": "cosmap"},
}
OT = "{"  # OneTrainer's keys are printed as one JSON object
# (point, --prediction, target): the exact native setting, or None where the target has none.
EXPECTED = {
    ("constant", "epsilon", "diffusers"): "(no weighting flag)",
    ("constant", "epsilon", "kohya"): "(no weighting flag)",
    ("constant", "epsilon", "onetrainer"): {
        "loss_weight_fn": "CONSTANT",
        "timestep_distribution": "UNIFORM",
        "timestep_shift": 1.0,
    },
    ("debiased", "epsilon", "diffusers"): None,
    ("debiased", "epsilon", "kohya"): "--debiased_estimation_loss",
    ("debiased", "epsilon", "onetrainer"): {
        "loss_weight_fn": "DEBIASED_ESTIMATION",
        "timestep_distribution": "UNIFORM",
        "timestep_shift": 1.0,
    },
    ("min_snr_5", "epsilon", "diffusers"): "--snr_gamma 5",
    ("min_snr_5", "v_prediction", "diffusers"): "--snr_gamma 5 --prediction_type v_prediction",
    ("min_snr_5", "epsilon", "kohya"): "--min_snr_gamma 5",
    ("min_snr_5", "v_prediction", "kohya"): "--min_snr_gamma 5 --v_parameterization",
    ("min_snr_5", "epsilon", "onetrainer"): {
        "loss_weight_fn": "MIN_SNR_GAMMA",
        "loss_weight_strength": 5.0,
        "timestep_distribution": "UNIFORM",
        "timestep_shift": 1.0,
    },
    ("p2", "epsilon", "diffusers"): None,
    ("p2", "epsilon", "kohya"): None,
    ("p2", "epsilon", "onetrainer"): {
        "loss_weight_fn": "P2",
        "loss_weight_strength": 1.0,
        "timestep_distribution": "UNIFORM",
        "timestep_shift": 1.0,
    },
    ("edm", "epsilon", "diffusers"): None,
    ("edm", "epsilon", "edm2"): "--P_mean=-1.2 --P_std=1.2",
    ("logit_normal", "flow", "diffusers"): "--weighting_scheme logit_normal --logit_mean 0 "
    '--logit_std 1  [scheduler_config.json: "shift": 1]',
    ("logit_normal", "flow", "kohya"): "--timestep_sampling sigmoid --sigmoid_scale 1",
    ("logit_normal", "flow", "onetrainer"): {
        "loss_weight_fn": "CONSTANT",
        "timestep_distribution": "LOGIT_NORMAL",
        "noising_weight": 0.0,
        "noising_bias": 0.0,
        "timestep_shift": 1.0,
    },
    (
        "mode",
        "flow",
        "diffusers",
    ): '--weighting_scheme mode --mode_scale 1.29  [scheduler_config.json: "shift": 1]',
    ("mode", "flow", "kohya"): "--timestep_sampling sigma --discrete_flow_shift 1 "
    "--weighting_scheme mode --mode_scale 1.29",
    ("mode", "flow", "onetrainer"): {
        "loss_weight_fn": "CONSTANT",
        "timestep_distribution": "HEAVY_TAIL",
        "noising_weight": 1.29,
        "timestep_shift": 1.0,
    },
    (
        "cosmap",
        "flow",
        "diffusers",
    ): '--weighting_scheme cosmap  [scheduler_config.json: "shift": 1]',
    ("cosmap", "flow", "kohya"): "--timestep_sampling sigma --discrete_flow_shift 1 "
    "--weighting_scheme cosmap --model_prediction_type sigma_scaled",
    ("cosmap", "flow", "onetrainer"): {
        "loss_weight_fn": "CONSTANT",
        "timestep_distribution": "COS_MAP",
        "timestep_shift": 1.0,
    },
}


def _export(
    tmp_path: Path, config: dict, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    path = tmp_path / "best.json"
    path.write_text(json.dumps(resolve(config)))
    status = main([str(path), *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(("point", "prediction", "target"), list(EXPECTED))
def test_published_points_round_trip(
    point: str, prediction: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("--to", target, "--prediction", prediction)
    status, out, _ = _export(tmp_path, POINTS[point], capsys, *argv)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{target}: ")
    setting = lines[2 if target != "edm2" else 1].strip()
    expected = EXPECTED[(point, prediction, target)]
    if expected is None:  # no native setting: the nearest, at a distance above 0
        assert "  nearest: L1 distance " in out and "exact" not in out
        d = float(out.split("nearest: L1 distance ")[1].split()[0])
        assert 1e-6 < d <= 2.0
        return
    if isinstance(expected, dict):
        assert json.loads(setting) == expected
    else:
        assert setting == expected
    assert "  exact: L1 distance 0 between the normalised w(λ)·q(λ) over λ in [-15, 15]" in out
    learned = "always learns the log-variance u(σ)" in out
    assert learned == (target == "edm2")  # the found EDM loss has no learned u(λ)


# -- the trainers' semantics, checked against diffusers itself ------------------------------------
def test_diffusers_logit_mean_enters_with_the_opposite_sign(tmp_path: Path) -> None:
    """What the flux/SD3 scripts do with --logit_mean m --logit_std s: u from
    compute_density_for_timestep_sampling, timesteps[int(u·1000)] of FlowMatchEulerDiscreteScheduler
    (shift 3), σ of that timestep. λ = −2 logit σ is N(2m, 2s) moved by −2 log 3, as exported."""
    diffusers = pytest.importorskip("diffusers")
    from diffusers.training_utils import compute_density_for_timestep_sampling

    from tuner.export.targets import logit_normal

    m, s, shift, n = 0.7, 0.8, 3.0, 20000
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    u = compute_density_for_timestep_sampling(
        "logit_normal", n, logit_mean=m, logit_std=s, generator=torch.Generator().manual_seed(0)
    )
    sigmas = scheduler.sigmas[(u * 1000).long()].double()
    lam = (-2 * torch.logit(sigmas)).sort().values
    exported = logit_normal(-m, s, shift)  # the family's density: N(2m, 2s), shifted
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    # the scheduler's 1000 levels round σ down by up to 1/1000: a KS bound loose by that much
    assert float((emp - exported.cdf(lam)).abs().max()) < 1.95 / math.sqrt(n) + 2e-3
    paper = logit_normal(m, s, shift)  # SD3's sign: clearly not what diffusers draws
    assert float((emp - paper.cdf(lam)).abs().max()) > 0.1


def test_diffusers_weights_are_the_exported_ones() -> None:
    training_utils = pytest.importorskip("diffusers.training_utils")
    from tuner.export.targets import _cosmap_weight, _min_snr, _sigma_sqrt_weight

    lam = torch.linspace(-12.0, 12.0, 97, dtype=torch.float64)
    sigma = torch.sigmoid(-lam / 2)  # flow σ
    for scheme, ours in (("cosmap", _cosmap_weight), ("sigma_sqrt", _sigma_sqrt_weight)):
        theirs = training_utils.compute_loss_weighting_for_sd3(scheme, sigmas=sigma).double()
        torch.testing.assert_close(ours(lam), theirs, rtol=1e-6, atol=0)
    # train_text_to_image.py's --snr_gamma: min(snr, γ)/snr (ε) and /(snr + 1) (v), with
    # snr = compute_snr(scheduler, timesteps) = ᾱ/(1 − ᾱ)
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t = torch.arange(0, 1000, 37)
    snr = training_utils.compute_snr(scheduler, t).double()
    lam_t = snr.log()
    for v in (False, True):
        theirs = snr.clamp(max=5.0) / (snr + float(v))
        torch.testing.assert_close(_min_snr(5.0, v)(lam_t), theirs, rtol=1e-6, atol=0)


def test_scaled_linear_schedule_is_diffusers_own() -> None:
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    ours = alphas_cumprod("scaled_linear")
    torch.testing.assert_close(ours, scheduler.alphas_cumprod.double(), rtol=1e-5, atol=0)
    cosine = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    torch.testing.assert_close(
        alphas_cumprod("squaredcos_cap_v2"), cosine.alphas_cumprod.double(), rtol=1e-5, atol=1e-12
    )


# -- a searched winner: the nearest setting, its distance computed another way -----------------------
def _winner() -> dict:
    runs = json.loads((ROOT / "bench/results/search_default.json").read_text())["raw"]["runs"]
    return runs[0]["verdict"]["winner"]["config"]


def test_a_parametric_winner_gets_its_nearest_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = resolve(_winner())
    assert config["weighting"] == "parametric" and config["tiw.strength"] > 0
    status, out, _ = _export(tmp_path, config, capsys, "--to", "diffusers")
    assert status == 0
    flag = out.splitlines()[2].strip()
    assert flag.startswith("--snr_gamma ")
    gamma = float(flag.split()[1])
    printed = float(out.split("nearest: L1 distance ")[1].split()[0])
    # the same distance by hand: (SNR + k)^−p capped, against min(SNR, γ)/SNR, both over the
    # cosine density 1/(2π cosh(λ/2)), each normalised on [−15, 15] (numpy-free trapezoid)
    lam = torch.linspace(-15.0, 15.0, 20001, dtype=torch.float64)
    q = 1 / (2 * math.pi * torch.cosh(lam / 2))
    p, k, clamp = config["weighting.p"], config["weighting.k"], config["weighting.clamp"]
    snr = lam.exp().clamp(max=config["weighting.snr_max"])
    found = torch.minimum((snr + k) ** -p, torch.tensor((clamp + k) ** -p)) * q
    theirs = lam.exp().clamp(max=gamma) / lam.exp() * q
    a, b = found / torch.trapezoid(found, lam), theirs / torch.trapezoid(theirs, lam)
    by_hand = float(torch.trapezoid((a - b).abs(), lam))
    assert printed == pytest.approx(by_hand, rel=2e-2, abs=2e-4)
    assert 0 < printed < 0.05
    assert "cannot express: TIW-DSM (tiw.strength=0.979" in out
    for target in ("kohya", "onetrainer", "edm2"):
        status, out, _ = _export(tmp_path, config, capsys, "--to", target)
        assert status == 0 and "nearest: L1 distance " in out and "TIW-DSM" in out


# -- --to python ------------------------------------------------------------------------------
def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"found_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Every weighting and every density of the registries, in a few combinations.
PYTHON_CASES = {
    "winner": None,
    "sigmoid_mode_shift": {
        "weighting": "sigmoid",
        "weighting.bias": -1.0,
        "noise": "mode",
        "noise.mode_scale": 0.8,
        "noise.shift": 2.5,
    },
    "edm_linear_beta": {"weighting": "edm", "noise": "linear_beta", "noise.shift": 0.7},
    "p2_logistic": {"weighting": "p2", "noise": "logistic", "noise.loc": 1.0, "noise.scale": 1.5},
    "min_snr_normal": {"weighting": "min_snr", "noise": "normal", "noise.scale": 2.4},
    "debiased_edm": {"weighting": "debiased", "noise": "edm", "weighting.normalize": False},
    "x0_cosmap": {"weighting": "x0", "noise": "cosmap", "noise.logsnr_min": -10.0},
    "flow_cosine": {"weighting": "flow", "weighting.normalize": False},
    "constant": {},
}


@pytest.mark.parametrize("case", list(PYTHON_CASES))
def test_python_file_reproduces_the_weighting_and_density(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = resolve(PYTHON_CASES[case] or _winner())
    out = tmp_path / "found_loss.py"
    status, text, _ = _export(tmp_path, config, capsys, "--to", "python", "--out", str(out))
    assert status == 0 and text.startswith(f"wrote {out}: ")
    imports = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(out.read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imports == {"__future__", "math", "torch"}  # self-contained: torch only
    found = _load(out)
    density = build_density(config)
    weighting = build_weighting(config, density)
    for schedule in ("scaled_linear", "squaredcos_cap_v2", "linear"):
        abar = alphas_cumprod(schedule).float()  # what a diffusers scheduler holds
        t = torch.arange(1000)
        lam = found.logsnr(t, abar)
        for prediction in ("epsilon", "v_prediction", "sample", "flow"):
            got = found.loss_weight(t, abar, prediction).double()
            want = weighting(lam) / mse_factor(prediction, lam)
            assert float(((got - want) / want).abs().max()) <= 1e-5, (schedule, prediction)
        probs = found.timestep_probs(abar)
        mid = (lam[1:] + lam[:-1]) / 2
        inf = torch.tensor([math.inf], dtype=torch.float64)
        want = density.cdf(torch.cat([inf, mid])) - density.cdf(torch.cat([mid, -inf]))
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
        big = want > 1e-12  # relative error where there is mass, absolute where there is none
        assert float(((probs[big] - want[big]) / want[big]).abs().max()) <= 1e-5, schedule
        assert float((probs - want).abs().max()) <= 1e-12 + 1e-5 * float(want.max())


def test_python_file_draws_its_timesteps_and_trains_a_diffusers_unet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    diffusers = pytest.importorskip("diffusers")
    out = tmp_path / "found_loss.py"
    status, _, _ = _export(tmp_path, _winner(), capsys, "--to", "python", "--out", str(out))
    assert status == 0
    found = _load(out)
    scheduler = diffusers.DDPMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
        prediction_type="v_prediction",
    )  # fmt: skip
    abar = scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    draws = found.sample_timesteps(40000, abar, g)
    assert draws.dtype == torch.int64 and int(draws.min()) >= 0 and int(draws.max()) < 1000
    freq = torch.bincount(draws, minlength=1000).double() / draws.numel()
    probs = found.timestep_probs(abar)
    bins = torch.linspace(0, 1000, 11).long()  # ten blocks of 100 timesteps
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        p = float(probs[lo:hi].sum())
        assert abs(float(freq[lo:hi].sum()) - p) < 4 * math.sqrt(p * (1 - p) / 40000) + 1e-9
    # one training step of a tiny UNet2DModel, as train_text_to_image.py does it
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    latents = torch.randn(8, 1, 8, 8, generator=g)
    noise = torch.randn(latents.shape, generator=g)
    timesteps = found.sample_timesteps(8, abar, g)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    pred = unet(noisy, timesteps).sample
    mse = ((pred.float() - target.float()) ** 2).mean(dim=[1, 2, 3])
    weights = found.loss_weight(timesteps, abar, scheduler.config.prediction_type)
    assert weights.shape == (8,) and weights.dtype == torch.float32
    loss = (weights * mse).mean()
    before = [p.detach().clone() for p in unet.parameters()]
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert math.isfinite(loss.detach().item())
    assert any(not torch.equal(a, b) for a, b in zip(before, unet.parameters(), strict=True))


# -- bad input: one line, exit status 2, nothing written ----------------------------------------
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["{best}", "--to", "sd-scripts"], "argument --to: invalid choice: 'sd-scripts'"),
        (["{best}"], "the following arguments are required: --to"),
        (["missing.json", "--to", "kohya"], "--config missing.json: no such file"),
        (["{bad}", "--to", "kohya"], 'weighting="snr" is not allowed'),
        (["{best}", "--to", "kohya", "--prediction", "x"], "argument --prediction: invalid choice"),
        (["{best}", "--to", "python", "--out", "no/such/dir/f.py"], "--out no/such/dir/f.py"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "best.json").write_text(json.dumps({"weighting": "debiased"}))
    (inputs / "bad.json").write_text(json.dumps({"weighting": "snr"}))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [a.format(best=inputs / "best.json", bad=inputs / "bad.json") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err
    assert list(work.iterdir()) == []


def test_export_imports_neither_ray_nor_mlflow() -> None:
    code = (
        "import sys, tuner.export.cli; "
        "print(sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_readme_worked_exports_are_the_commands_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every `$ python -m tuner.export best.json ...` block of README's "Use the answer in your
    trainer" prints what the command prints for the winner it names."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(
        r"```text\n\$ python -m tuner\.export best\.json (.*?)\n(.*?)```", readme, re.S
    )
    assert {b[0].split()[1] for b in blocks} == {
        "diffusers",
        "kohya",
        "onetrainer",
        "edm2",
        "python",
    }
    (tmp_path / "best.json").write_text(json.dumps(_winner()))
    monkeypatch.chdir(tmp_path)
    for args, shown in blocks:
        assert main(["best.json", *args.split()]) == 0
        assert capsys.readouterr().out == shown, args
