import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.nets import MLP
from models.param import EpsModel
from tuner.config.build import build_dataset, build_net, build_objective
from tuner.config.spec import ConfigError, resolve
from tuner.training.trainer import (
    CheckpointError,
    DivergenceError,
    Trainer,
    latest_checkpoint,
    resolve_device,
    run_trial,
)

ROOT = Path(__file__).resolve().parents[2]


def _params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()] + [
        p.detach().clone() for p in trainer.ema.parameters()
    ]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"weighting": "edm", "weighting.learned": True},
        {"weighting": "parametric", "weighting.p": 1.0, "cdl.coef": 0.5},
    ],
)
def test_resume_is_bit_identical(tiny: dict, tmp_path: Path, extra: dict) -> None:
    config = tiny | extra
    straight = Trainer(config)
    for _ in range(30):
        straight.train_step()
    resumed = Trainer(config)
    for _ in range(12):
        resumed.train_step()
    resumed.save(tmp_path / "state.pt")
    fresh = Trainer(config)
    fresh.load(tmp_path / "state.pt")
    assert fresh.step == 12
    for _ in range(18):
        fresh.train_step()
    for a, b in zip(_params(straight), _params(fresh), strict=True):
        assert torch.equal(a, b)


def test_a_trainer_flushes_subnormal_floats_to_zero(tiny: dict) -> None:
    torch.set_flush_denormal(False)
    try:
        tiny_value = torch.tensor([1e-30], dtype=torch.float32)
        assert (tiny_value * 1e-10).item() != 0.0  # a subnormal float32 while not flushed
        Trainer(tiny)
        assert (tiny_value * 1e-10).item() == 0.0
    finally:
        torch.set_flush_denormal(True)


def test_injected_components_train_as_the_ones_it_builds(tiny: dict) -> None:
    config = resolve(tiny | {"weighting": "edm", "weighting.learned": True})
    own = Trainer(config)
    dataset = build_dataset(config)
    torch.manual_seed(config["seed"])  # the trainer's own order of initialisation draws
    model = build_net(config, dataset)
    objective = build_objective(config, dataset)
    injected = Trainer(config, model=model, objective=objective, dataset=dataset)
    assert injected.dataset is dataset and injected.objective is objective
    assert injected.model is model  # on the CPU: placed where it already was
    for _ in range(5):
        assert injected.train_step() == own.train_step()
    for a, b in zip(_params(own), _params(injected), strict=True):
        assert torch.equal(a, b)


def test_an_injected_model_is_the_one_trained(tiny: dict) -> None:
    model = EpsModel(MLP(2, width=8, depth=1))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(tiny, model=model)
    trainer.train_step()
    assert trainer.model is model and trainer.ema is not model
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_run_trial_writes_outputs_and_resumes(tiny: dict, tmp_path: Path) -> None:
    reports = []
    final = run_trial(tiny, tmp_path / "a", report=lambda m, c: reports.append((m, c)))
    assert [m["step"] for m, _ in reports] == [20, 40]
    assert all(Path(c, "state.pt").exists() for _, c in reports[-1:])
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["config"]["data"] == "ring8" and len(metrics["history"]) == 2
    assert metrics["final"]["step"] == 40 and "eval/nll" in final
    samples = np.load(tmp_path / "a" / "samples.npy")
    assert samples.shape == (200, 2) and np.isfinite(samples).all()
    assert (tmp_path / "a" / "weighting.png").exists()
    assert (tmp_path / "a" / "samples_0000040.png").exists()
    # Resuming from the first checkpoint reproduces the uninterrupted run exactly.
    first = reports[0][1]
    again = run_trial(tiny, tmp_path / "b", resume_from=first)
    assert again["eval/nll"] == final["eval/nll"]
    assert np.array_equal(np.load(tmp_path / "b" / "samples.npy"), samples)
    # Resuming from the last checkpoint (a trial that had ended) trains and reports nothing.
    more: list = []
    last = run_trial(
        tiny, tmp_path / "c", report=lambda m, c: more.append(m), resume_from=reports[-1][1]
    )
    assert more == [] and last == reports[-1][0]


def test_run_trial_evaluates_on_a_geometric_schedule(tiny: dict, tmp_path: Path) -> None:
    reports = []
    config = tiny | {"train.steps": 60, "eval.every": 10, "eval.growth": 3.0}
    run_trial(config, tmp_path, report=lambda m, c: reports.append((m, c)))
    assert [m["step"] for m, _ in reports] == [10, 30, 60]
    assert [Path(c).name for _, c in reports] == [f"checkpoint_{s:07d}" for s in (10, 30, 60)]


def test_divergence_is_reported(tiny: dict, tmp_path: Path) -> None:
    trainer = Trainer(tiny | {"train.lr": 1e6, "train.grad_clip": 0.0, "train.warmup": 0})
    with pytest.raises(DivergenceError, match="at step"):
        for _ in range(200):
            trainer.train_step()


def test_damaged_checkpoint_is_named(tiny: dict, tmp_path: Path) -> None:
    trainer = Trainer(tiny)
    trainer.save(tmp_path / "state.pt")
    data = (tmp_path / "state.pt").read_bytes()
    (tmp_path / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="state.pt"):
        Trainer(tiny).load(tmp_path / "state.pt")


def test_latest_checkpoint(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    for step in (5, 10):
        (tmp_path / f"checkpoint_{step:07d}").mkdir()
        (tmp_path / f"checkpoint_{step:07d}" / "state.pt").write_bytes(b"x")
    assert latest_checkpoint(tmp_path).name == "checkpoint_0000010"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuner.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "weighting=snr"], 'weighting="snr" is not allowed'),
        (["--set", "bogus=1"], "unknown key 'bogus'"),
        (["--set", "weighting"], "malformed --set"),
        (["--set", "train.steps=-3"], "train.steps=-3"),
        (["--set", "data=folder:/nonexistent/dir"], "/nonexistent/dir"),
        (["--config", "missing.json"], "no such file"),
        (["--resume", "--out", "empty"], "--resume"),
        (["--device", "gpu"], "--device 'gpu' is not a device"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, args: list, fragment: str
) -> None:
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_config_file_runs(tiny: dict, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(tiny | {"train.steps": 20}))
    proc = _cli("--config", "c.json", "--out", "out", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["final"]["step"] == 20


def test_resolve_device() -> None:
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == want and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="cuda:x"):
        resolve_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device is visible"):
            resolve_device("cuda")


def test_gpu_space_trial_runs_on_stand_in_cifar10(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_inception_weights
) -> None:
    """debias_family_cifar10's path end to end on the CPU: cifar10_biased (random stand-in images
    in CIFAR-10's shapes, no download), TIW on 3-channel images, CDL, Inception FID (weights of
    the real shapes, random values)."""
    from search_spaces import SPACES
    from tuner.data import presets as data
    from tuner.evaluation import metrics

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(20)  # 20 per class

    def split(root: object, download: object) -> tuple[torch.Tensor, ...]:
        x_tr = torch.rand(len(labels), 3, 32, 32, generator=gen) * 2 - 1
        x_te = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
        return x_tr, labels, x_te, torch.tensor([0, 5, 9])

    monkeypatch.setattr(data, "_cifar10_split", split)
    monkeypatch.setattr(metrics, "DEFAULT_CACHE_DIR", str(tmp_path / "fid"))
    weights = tmp_path / "inception.pth"
    random_inception_weights(weights, live_features=16)
    space = SPACES["debias_family_cifar10"]
    config = {"data": space["data"]} | space["fixed"]
    config |= {"tiw.strength": 0.5, "cdl.coef": 0.1, "weighting.p": 0.5, "weighting.k": 1.0}
    config |= {
        "train.steps": 2,
        "train.batch": 8,
        "eval.every": 2,
        "eval.samples": 3,
        "sampler.steps": 2,
        "net.width": 8,
        "tiw.disc_steps": 2,
        "tiw.disc_batch": 8,
        "eval.fid_weights": str(weights),
    }
    trainer = Trainer(config)
    counts = torch.bincount(trainer.dataset.labels_train, minlength=10)
    assert counts[:5].tolist() == [20] * 5 and counts[5:].tolist() == [4] * 5
    assert trainer.dataset.reference.shape[1:] == (3, 32, 32)
    final = run_trial(config, tmp_path / "out")
    assert final["step"] == 2 and math.isfinite(final["eval/fid"])
    assert {"loss/denoise", "loss/cdl", "loss/ratio"} <= set(final)


# -- the accelerator path, checked on the CPU ---------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"data": "bimodal_biased", "tiw.strength": 1.0, "tiw.disc_steps": 10},
        {"data": "digits", "net": "unet", "net.width": 8, "data.flip": "on"},
        {"weighting": "edm", "weighting.learned": True},
        {"cdl.coef": 0.1, "cdl.fraction": 0.1},  # the quasi-random net and the odd coin
        {"cdl.coef": 0.1, "cdl.fraction": 0.1, "cdl.mc_points": 4},
        {"data": "mixture_noisy"},  # the Tweedie objective's draws
        {"data": "mixture_noisy", "ambient.consistency": 1.0, "ambient.chain_steps": 2},
        {"data": "mixture_noisy", "ambient.consistency": 1.0, "ambient.gap": 1.0},
    ],
)
def test_a_training_step_creates_every_tensor_on_the_trial_device(tiny: dict, extra: dict) -> None:
    """With the default device set to "meta", a tensor created without naming its device (a
    draw on the host, a constant) would be a meta tensor and break the step."""
    trainer = Trainer(tiny | extra)
    trainer.prepare()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    torch.set_default_device("meta")
    try:
        losses = trainer.train_step()
    finally:
        torch.set_default_device(None)
    assert all(math.isfinite(v) for v in losses.values())
    after = list(trainer.model.parameters())
    assert all(p.device.type == "cpu" for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_flips_mirror_about_half_the_batch_and_only_where_asked(tiny: dict) -> None:
    digits = tiny | {"data": "digits", "net": "unet", "net.width": 8}
    plain, flipped = Trainer(digits), Trainer(digits | {"data.flip": "on"})
    assert not plain.flip and flipped.flip  # auto: off for digits
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a, b = plain.batch(gen()), flipped.batch(gen())
    mirrored = [
        not torch.equal(x, y) and torch.equal(x.flip(-1), y) for x, y in zip(a, b, strict=True)
    ]
    same = [torch.equal(x, y) for x, y in zip(a, b, strict=True)]
    assert (
        all(m or s for m, s in zip(mirrored, same, strict=True))
        and 0.3 < sum(mirrored) / len(a) < 0.7
    )
    from tuner.config.spec import resolve
    from tuner.training.trainer import flips

    assert flips(resolve({"data": "cifar10"}), "image")  # auto: on for natural images
    assert not flips(resolve({"data": "digits_biased"}), "image")


def test_bf16_autocast_trains_and_stays_finite(tiny: dict) -> None:
    config = tiny | {"train.precision": "bf16", "train.steps": 30}
    trainer = Trainer(config)
    assert trainer.model.autocast is torch.bfloat16 and trainer.ema.autocast is None
    losses = [trainer.train_step()["loss/total"] for _ in range(30)]
    assert all(math.isfinite(v) for v in losses) and np.mean(losses[-10:]) < np.mean(losses[:10])
    x = torch.randn(8, 2)
    lam = torch.zeros(8)
    assert trainer.model(x, lam).dtype == torch.float32  # the loss is reduced in float32


def test_compile_where_unavailable_is_one_line(tiny: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(ConfigError, match=r"^train.compile=true: torch.compile is not available"):
        Trainer(tiny | {"train.compile": True})


def test_channels_last_steps_match_the_contiguous_ones(tiny: dict) -> None:
    """On CUDA an image trial keeps its net, EMA and batches in channels_last; that path is
    taken here on the CPU (the same attribute and conversions as Trainer.__init__ on CUDA), and
    its steps must equal the contiguous ones up to the convolutions' summation order: a net
    that reshaped a channels_last activation with .view, or a batch left contiguous, fails."""
    config = tiny | {"data": "digits", "net": "unet", "net.width": 8, "eval.samples": 4}
    plain, fast = Trainer(config), Trainer(config)
    fast.channels_last = True
    fast.model.to(memory_format=torch.channels_last)
    fast.ema.to(memory_format=torch.channels_last)
    conv = next(p for p in fast.model.parameters() if p.dim() == 4 and min(p.shape[1:]) > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x0 = fast.batch(torch.Generator().manual_seed(0))
    assert x0.is_contiguous(memory_format=torch.channels_last)  # one channel: either layout
    for _ in range(3):
        a, b = plain.train_step(), fast.train_step()
        assert a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    for p, q in zip(_params(plain), _params(fast), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
