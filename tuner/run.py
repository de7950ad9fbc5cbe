"""`python -m tuner.run`: the search's command line (tuner/search/cli.py)."""

from tuner.config.spec import run_cli
from tuner.search.cli import main

if __name__ == "__main__":
    run_cli(main)
