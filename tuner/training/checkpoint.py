"""The files a trial writes, named once: its output folder and each checkpoint folder in it.

The trainer writes them (tuner/training/trainer.py), the Ray trainable copies the pictures into
the checkpoint folders that Ray persists (tuner/search/trainable.py), and the MLflow callback
logs them from there (tuner/tracking/callback.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CheckpointLayout:
    """File names of a trial's output folder and of its checkpoint folders."""

    state: str = "state.pt"  # every stateful object of the trainer (torch.save)
    config: str = "config.json"  # the flat configuration
    curve: str = "curve.json"  # the logged points (loss/…, time/…) since the last evaluation
    weighting: str = "weighting.png"  # the effective-weighting plot
    samples: str = "samples_{step:07d}.png"  # the captioned sample grid of an evaluation
    checkpoint: str = "checkpoint_{step:07d}"  # a checkpoint folder, by its step

    def samples_at(self, step: int) -> str:
        return self.samples.format(step=step)

    def checkpoint_at(self, step: int) -> str:
        return self.checkpoint.format(step=step)

    @property
    def samples_glob(self) -> str:
        return self.samples.split("{")[0] + "*.png"

    @property
    def checkpoint_glob(self) -> str:
        return self.checkpoint.split("{")[0] + "*"

    def states(self, out_dir: str | Path) -> list[Path]:
        """The state files of the checkpoint folders under `out_dir`, oldest first."""
        return sorted(Path(out_dir).glob(f"{self.checkpoint_glob}/{self.state}"))


LAYOUT = CheckpointLayout()
