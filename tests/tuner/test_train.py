import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tuner.train import CheckpointError, DivergenceError, Trainer, latest_checkpoint, run_trial

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "data": "ring8",
    "train.steps": 40,
    "train.batch": 64,
    "eval.every": 20,
    "eval.samples": 200,
    "sampler.steps": 10,
    "net.width": 32,
    "net.depth": 1,
}


def _params(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.model.parameters()] + [
        p.detach().clone() for p in trainer.ema.parameters()
    ]


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"weighting": "learned"},
        {"weighting": "parametric", "weighting.p": 1.0, "cdl.coef": 0.5},
    ],
)
def test_resume_is_bit_identical(tmp_path: Path, extra: dict) -> None:
    config = TINY | extra
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


def test_run_trial_writes_outputs_and_resumes(tmp_path: Path) -> None:
    reports = []
    final = run_trial(TINY, tmp_path / "a", report=lambda m, c: reports.append((m, c)))
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
    again = run_trial(TINY, tmp_path / "b", resume_from=first)
    assert again["eval/nll"] == final["eval/nll"]
    assert np.array_equal(np.load(tmp_path / "b" / "samples.npy"), samples)


def test_divergence_is_reported(tmp_path: Path) -> None:
    trainer = Trainer(TINY | {"train.lr": 1e6, "train.grad_clip": 0.0, "train.warmup": 0})
    with pytest.raises(DivergenceError, match="at step"):
        for _ in range(200):
            trainer.train_step()


def test_damaged_checkpoint_is_named(tmp_path: Path) -> None:
    trainer = Trainer(TINY)
    trainer.save(tmp_path / "state.pt")
    data = (tmp_path / "state.pt").read_bytes()
    (tmp_path / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="state.pt"):
        Trainer(TINY).load(tmp_path / "state.pt")


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


def test_cli_config_file_runs(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(TINY | {"train.steps": 20}))
    proc = _cli("--config", "c.json", "--out", "out", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["final"]["step"] == 20
