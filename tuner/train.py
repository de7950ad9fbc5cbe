"""`python -m tuner.train`: one trial without Ray (tuner/training/trainer.py)."""

from tuner.config.spec import run_cli
from tuner.training.trainer import main

if __name__ == "__main__":
    run_cli(main)
