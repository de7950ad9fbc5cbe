"""The generated parts of README.md and docs/architecture.md, between `<!-- NAME:begin -->` and
`<!-- NAME:end -->` markers: the configuration and registry tables (from the code), the default
search's measured figures (from bench/results/search_default.json) and its terminal (from
bench/results/default_run.json). `python bench/readme.py` rewrites them, `--check` exits 1 when
one is stale (tests/test_readme.py checks them). A development helper: it reads bench/results, so
it lives in bench/, not in the tuner package."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tuner.config.spec import markdown_table, registry_table

ROOT = Path(__file__).resolve().parents[1]


def search_default_rows() -> str:
    """README's rows of the default search as bench/search_default.py measured it, per seed."""
    runs = json.loads((ROOT / "bench/results/search_default.json").read_text())["raw"]["runs"]
    rows = [
        "| search seed | wall time | trials | stopped early | failed | peak memory (PSS / RSS) "
        "| confirmed winner's FID improvement over the baseline | over the paper's recipe "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        winner = (run["verdict"] or {}).get("winner") or {}
        word = "resolved" if run["resolved"] else "not resolved"
        rows.append(
            f"| {run['seed']} | {run['wall_s']:.0f} s | {run['trials']} | {run['stopped_by_asha']} "
            f"| {run['failed']} | {run['peak_pss_gib']:.2f} / {run['peak_rss_gib']:.2f} GiB "
            f"| {_gain(winner, 'improvement')} | {_gain(winner, 'vs_reference')} | {word} |"
        )
    return "\n".join(rows)


def _gain(winner: dict, key: str) -> str:
    """A paired improvement with its interval, or — where the verdict has none."""
    gain, ci = winner.get(key), winner.get(f"{key}_ci")
    return "—" if gain is None else f"{gain:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] (95 %)"


def default_output() -> str:
    """The default search's terminal as bench/default_run.py kept it, with its command."""
    run = json.loads((ROOT / "bench/results/default_run.json").read_text())["raw"]
    return "\n".join(["```text", f"$ {run['search_command']}", *run["screen"], "```"])


BLOCKS: dict[str, Callable[[], str]] = {
    "config-table": markdown_table,
    "registries": registry_table,
    "search-default": search_default_rows,
    "default-output": default_output,
}
FILES = ("README.md", "docs/architecture.md")


def render(text: str) -> str:
    """`text` with every generated block it holds replaced by its current content."""
    for name, make in BLOCKS.items():
        begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
        if begin not in text:
            continue
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{begin}{make()}\n{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/readme.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    args = parser.parse_args(argv)
    stale = []
    for name in FILES:
        path = ROOT / name
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(name)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(
            f"stale generated blocks in {', '.join(stale)}: run python bench/readme.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
