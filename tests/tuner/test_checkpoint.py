"""tuner/training/checkpoint.py: a trial's output folder holds exactly the files of the layout."""

from __future__ import annotations

from pathlib import Path

from tuner.training.checkpoint import LAYOUT
from tuner.training.trainer import run_trial


def test_the_output_folder_follows_the_checkpoint_layout(tiny: dict, tmp_path: Path) -> None:
    run_trial(tiny | {"train.steps": 20}, tmp_path)
    ckpt = LAYOUT.checkpoint_at(20)
    want = {LAYOUT.config, LAYOUT.weighting, LAYOUT.samples_at(20), "metrics.json", "samples.npy"}
    want |= {ckpt} | {f"{ckpt}/{f}" for f in (LAYOUT.state, LAYOUT.config, LAYOUT.curve)}
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} == want
    assert LAYOUT.states(tmp_path) == [tmp_path / ckpt / LAYOUT.state]
    assert (ckpt, LAYOUT.samples_at(20)) == ("checkpoint_0000020", "samples_0000020.png")
    assert list(tmp_path.glob(LAYOUT.samples_glob)) == [tmp_path / LAYOUT.samples_at(20)]
