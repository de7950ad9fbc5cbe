"""A denoiser of your own: net=python:PACKAGE.MODULE:FACTORY in tuner.train and in a search.

The tests' own factories are a module written to a temporary folder on sys.path, as a user's
would be on PYTHONPATH."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from models.external import NOISE_INPUTS, PREDICTIONS, ExternalEpsModel
from models.schedules import alpha_sigma, bcast
from tuner.config.build import build_dataset, build_external_net, build_net
from tuner.config.spec import ConfigError, resolve
from tuner.search.cli import main as search_main
from tuner.training.trainer import Trainer, run_trial

ROOT = Path(__file__).resolve().parents[2]
UNET = "python:models.diffusers_unet:unet2d"
# A digits trial of a few seconds with the diffusers UNet2DModel.
TINY_DIGITS = {
    "data": "digits_biased",
    "net": UNET,
    "net.width": 16,
    "net.depth": 1,
    "train.steps": 12,
    "train.batch": 16,
    "eval.every": 6,
    "eval.samples": 60,
    "sampler.steps": 4,
}


# -- factories the tests name: a module of the user's own, written where the tests import it ------
NETS_MODULE = "diffsearch_test_nets"  # not under tests/: torch-fidelity ships a `tests` package
NETS_SOURCE = """
import torch
from torch import nn


class Linear(nn.Module):
    \"\"\"A per-pixel linear map with a noise embedding: enough to train and to check shapes.\"\"\"

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.emb = nn.Linear(1, channels)

    def forward(self, x, noise):
        return self.conv(x) + self.emb(noise[:, None].float())[:, :, None, None]


class Halves(Linear):
    def forward(self, x, noise):
        return super().forward(x, noise)[..., ::2]


def linear_eps(shape, width=0, depth=0):
    net = Linear(shape[0])
    net.prediction, net.noise_input = "eps", "sigma"
    return net


def undeclared(shape, width=0, depth=0):
    return Linear(shape[0])


def not_a_module(shape, width=0, depth=0):
    return "a string"


def wrong_shape(shape, width=0, depth=0):
    net = Halves(shape[0])
    net.prediction, net.noise_input = "eps", "logsnr"
    return net


def failing(shape, width=0, depth=0):
    raise RuntimeError("no GPU here\\nsecond line")
"""
HERE = f"python:{NETS_MODULE}"


@pytest.fixture(scope="module")
def nets_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the factories' module, on sys.path while this module's tests run."""
    folder = tmp_path_factory.mktemp("user_nets")
    (folder / f"{NETS_MODULE}.py").write_text(NETS_SOURCE)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(NETS_MODULE, None)


# -- the wrapper: every prediction type and noise input, in closed form ----------------------------
class _Oracle(nn.Module):
    """Returns the exact target of its prediction type for known (x0, ε), and records its inputs."""

    def __init__(
        self, x0: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor, kind: str
    ) -> None:
        super().__init__()
        self.x0, self.eps, self.logsnr, self.kind = x0, eps, logsnr, kind
        self.seen: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        self.seen = (x, noise)
        a, s = (bcast(v, self.x0) for v in alpha_sigma(self.logsnr))
        return {
            "eps": self.eps,
            "v": a * self.eps - s * self.x0,  # Salimans & Ho 2022
            "x0": self.x0,
            "flow": self.eps - self.x0,  # rectified-flow velocity (SD3)
        }[self.kind]


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("noise_input", NOISE_INPUTS)
def test_wrapper_turns_each_prediction_into_eps(prediction: str, noise_input: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    logsnr = torch.tensor([-12.0, -4.0, -0.5, 0.0, 3.0, 9.0], dtype=torch.float64)
    a, s = (bcast(v, x0) for v in alpha_sigma(logsnr))
    x = a * x0 + s * eps
    oracle = _Oracle(x0, eps, logsnr, prediction)
    model = ExternalEpsModel(oracle, prediction, noise_input)
    torch.testing.assert_close(model(x, logsnr), eps, rtol=1e-9, atol=1e-9)
    seen_x, seen_noise = oracle.seen
    # flow models see x_t = (1 − t) x0 + t ε with t = σ/(α + σ), the others x_λ itself
    t = s / (a + s)
    want_x = (1 - t) * x0 + t * eps if prediction == "flow" else x
    torch.testing.assert_close(seen_x, want_x, rtol=1e-12, atol=1e-12)
    want_noise = {
        "logsnr": logsnr,
        "sigma": torch.exp(-logsnr / 2),  # EDM's σ: SNR = 1/σ²
        "timestep": 1000 * torch.sigmoid(-logsnr / 2),  # 1000·t, t the rectified-flow time
    }[noise_input]
    torch.testing.assert_close(seen_noise, want_noise, rtol=1e-12, atol=0)


# -- bad factories: one line, before anything trains -----------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"net": "python:no_such_package.mod:f"}, "cannot import no_such_package.mod"),
        ({"net": f"{HERE}:missing"}, "has no function missing"),
        ({"net": f"{HERE}:not_a_module"}, "returned str, not a torch.nn.Module"),
        ({"net": f"{HERE}:wrong_shape"}, "returned shape (2, 1, 8, 4) for input (2, 1, 8, 8)"),
        ({"net": f"{HERE}:failing"}, "the factory failed for examples of shape (1, 8, 8)"),
        ({"net": f"{HERE}:undeclared"}, "the module declares none; set net.prediction"),
        (
            {"net": f"{HERE}:undeclared", "net.prediction": "v"},
            "declares none; set net.noise_input",
        ),
        (
            {"net": f"{HERE}:linear_eps", "net.prediction": "x0", "net.noise_input": "timestep"},
            None,  # the config keys win over the module's attributes
        ),
    ],
)
def test_a_bad_factory_is_one_config_error(
    overrides: dict, needle: str | None, nets_dir: Path
) -> None:
    config = resolve({"data": "digits"} | overrides)
    if needle is None:
        model = build_external_net(config, (1, 8, 8))
        assert (model.prediction, model.noise_input) == ("x0", "timestep")
        return
    with pytest.raises(ConfigError) as info:
        build_external_net(config, (1, 8, 8))
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"net": "python:not a path"}, "expected python:PACKAGE.MODULE:FACTORY"),
        ({"net": "python:mod"}, "expected python:PACKAGE.MODULE:FACTORY"),
        ({"net.prediction": "v"}, "net.prediction=v describes a net of your own"),
        ({"net": "unet", "net.noise_input": "sigma"}, "net=unet takes net.noise_input=auto"),
    ],
)
def test_net_keys_are_checked_by_resolve(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        resolve(overrides)
    assert needle in str(info.value)


def _cli(*args: str, cwd: Path, path: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"PYTHONPATH": os.pathsep.join(map(str, (ROOT, *path)))},
    )


def test_train_cli_refuses_a_bad_factory_with_one_line(tmp_path: Path, nets_dir: Path) -> None:
    argv = ("--set", "data=digits", "--set", f"net={HERE}:wrong_shape")
    proc = _cli(*argv, cwd=tmp_path, path=(nets_dir,))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "a net must return a tensor of its input's shape" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_search_refuses_a_bad_factory_before_ray_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    nets_dir: Path,
) -> None:
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("ray.init called"))
    for dry in ([], ["--dry-run"]):
        argv = ["--smoke-test", "--set", f"net={HERE}:not_a_module", *dry]
        assert search_main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a torch.nn.Module" in err
    assert list(tmp_path.iterdir()) == []


# -- the shipped diffusers UNet2DModel factory (the [diffusers] extra) ---------------------------
needs_diffusers = pytest.mark.skipif(
    importlib.util.find_spec("diffusers") is None, reason="the [diffusers] extra is not installed"
)


@needs_diffusers
def test_unet2d_factory_is_the_models_parameters_and_checkpoint() -> None:
    import diffusers

    config = resolve(TINY_DIGITS)
    model = build_net(config, build_dataset(config))
    assert isinstance(model.backbone, diffusers.UNet2DModel)
    assert (model.prediction, model.noise_input) == ("v", "timestep")
    trainer = Trainer(config)
    n = sum(p.numel() for p in trainer.model.parameters())
    assert n == sum(p.numel() for p in trainer.model.backbone.parameters()) > 0
    keys = trainer.state_dict()["model"].keys()
    assert keys and all(k.startswith("backbone.") for k in keys)


@needs_diffusers
def test_unet2d_resume_is_bit_identical(tmp_path: Path) -> None:
    straight = Trainer(TINY_DIGITS)
    for _ in range(8):
        straight.train_step()
    part = Trainer(TINY_DIGITS)
    for _ in range(3):
        part.train_step()
    part.save(tmp_path / "state.pt")
    resumed = Trainer(TINY_DIGITS)
    resumed.load(tmp_path / "state.pt")
    for _ in range(5):
        resumed.train_step()
    for trainer in (straight, resumed):
        assert trainer.step == 8
    models = (straight.state_dict()["model"], resumed.state_dict()["model"])
    for a, b in zip(*(m.values() for m in models), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.parameters(), resumed.ema.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.fixture(scope="module")
def unet_search(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A smoke search of the debias_family space on digits_biased with the UNet2DModel factory."""
    root = tmp_path_factory.mktemp("unet_search")
    cmd = [sys.executable, "-m", "tuner.run", "--smoke-test", "--set", f"net={UNET}"]
    # TIW off: its discriminator would come from the search's cache in the trials but from the
    # user's ~/.cache in tuner.train, which this test does not own
    cmd += ["--set", "tiw.strength=0", "--confirm", "0", "--storage", str(root / "ray")]
    cmd += ["--mlflow-uri", f"sqlite:///{root}/mlruns/mlflow.db"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    experiment = next((root / "ray").iterdir())
    return {"root": root, "experiment": experiment, "stdout": out.stdout}


def _history(path: Path) -> dict[int, float]:
    """eval/fid by step from Ray's result.json of a trial (one JSON object a line)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["step"]: r["eval/fid"] for r in rows if "eval/fid" in r}


@needs_diffusers
def test_search_with_the_unet2d_factory_runs_and_reproduces(
    unet_search: dict, tmp_path: Path
) -> None:
    experiment = unet_search["experiment"]
    trials = sorted(experiment.glob("trial_*"))
    assert len(trials) >= 4
    finished = [t for t in trials if 40 in _history(t / "result.json")]
    assert finished, "no trial reached its last step"
    best = json.loads((experiment / "best.json").read_text())
    assert best["net"] == UNET and best == resolve(best)
    # best.json retrained from scratch by the plain CLI gives the search's FID at every step
    trial = next(t for t in trials if resolve(_config_of(t)) == best)
    logged = _history(trial / "result.json")
    proc = _cli("--config", str(experiment / "best.json"), "--out", "re", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "re" / "metrics.json").read_text())["history"]
    fids = {h["step"]: h["eval/fid"] for h in again}
    for step, value in logged.items():
        assert math.isclose(fids[step], value, rel_tol=1e-4), (step, fids, logged)
    # and resuming from the search's own first checkpoint of that trial is bit-identical
    first = sorted(trial.glob("checkpoint_*"))[0]
    resumed = run_trial(best, tmp_path / "resumed", resume_from=first)
    assert resumed["eval/fid"] == fids[max(fids)]


def _config_of(trial: Path) -> dict:
    from tuner.search.trainable import trial_overrides

    return trial_overrides(json.loads((trial / "params.json").read_text()))
