"""README.md stays true: its set-up commands, the CI script, and the configuration table."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from search_spaces import SPACES
from tuner.config.spec import markdown_table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # as when a bench script runs
from readme import FILES, render  # noqa: E402

README = (ROOT / "README.md").read_text()


def results(name: str) -> dict:
    """A bench results file (bench/harness.py's schema)."""
    return json.loads((ROOT / f"bench/results/{name}.json").read_text())


def _first_code_block() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert _first_code_block() == ["./dev run", "./dev test"]
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci[-1] == "./dev test"  # exactly the README's test command, last
    dev = (ROOT / "dev").read_text()
    assert "set -- --space debias_family" in dev  # ./dev run's embedded default


def test_readme_config_table_is_the_generated_one() -> None:
    begin, end = "<!-- config-table:begin -->\n", "<!-- config-table:end -->"
    table = README[README.index(begin) + len(begin) : README.index(end)].strip()
    assert table == markdown_table(), "run `python -m tuner.config` and paste it into README.md"


def test_generated_blocks_of_readme_and_architecture_are_current() -> None:
    for name in FILES:
        text = (ROOT / name).read_text()
        assert "<!-- config-table:begin -->" in text, name
        assert render(text) == text, f"run `python bench/readme.py` ({name} is stale)"


def test_readme_lists_every_space() -> None:
    for name, space in SPACES.items():
        assert f"| `{name}` | `{space['data']}` |" in README, name


def test_readme_figures_are_the_measured_ones() -> None:
    """The figures README quotes are those of the committed bench/results files."""
    # the default search's per-seed table is a generated block (test above); its budget's reason:
    assert "<!-- search-default:begin -->" in README
    budget = results("default_budget")["summary"]
    noise = max(budget[arm]["eval/fid"]["std"] for arm in ("plain (a=0)", "TIW-DSM (a=1)"))
    quoted = (
        f"lowers the FID by {budget['fid_gap']:.2f}, {budget['fid_gap_over_std']:.1f} times the "
        f"larger seed standard deviation ({noise:.2f})"
    )
    assert quoted in " ".join(README.split()), quoted
    ring = results("ring8_default")["summary"]
    dev, wall = ring["max_abs_dev"], ring["wall_s"]
    assert f"**{dev['mean']:.3f} ± {dev['std']:.3f}**" in README
    assert f"{wall['mean']:.1f} ± {wall['std']:.1f} s" in README
    peak = results("throughput")["raw"]["peak_gflops"]
    assert f"{peak['2']['best']:.0f} GFLOP/s on 2 threads" in README


def test_readme_counts_the_bad_inputs_docs_reliability_lists() -> None:
    """README's count of bad inputs is the number of rows (ranges counted) in reliability.md."""
    doc = (ROOT / "docs" / "reliability.md").read_text()
    numbers: list[int] = []
    for first, last in re.findall(r"^\| (\d+)(?:–(\d+))? \|", doc, re.M):
        numbers += list(range(int(first), int(last or first) + 1))
    n = len(numbers)
    assert numbers == list(range(1, n + 1))  # numbered 1..n, none twice or skipped
    assert f"try these {n} bad inputs" in doc
    assert re.search(rf"The tests try\s+{n} bad inputs", README)
    # all but the note (a cluster that will grow) and the closed pipe end with exit status 2
    assert re.search(rf"\(docs/reliability\.md\): {n - 2}\s+end with one line", README)
