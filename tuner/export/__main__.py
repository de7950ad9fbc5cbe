"""`python -m tuner.export BEST.json --to diffusers|kohya|onetrainer|edm2|python`."""

from tuner.config.spec import run_cli
from tuner.export.cli import main

run_cli(main)
