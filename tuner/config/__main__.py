"""`python -m tuner.config`: the configuration table (README's)."""

from tuner.config.spec import markdown_table, run_cli

run_cli(lambda: print(markdown_table()))
