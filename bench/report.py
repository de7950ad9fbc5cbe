"""Render docs/results.md from the benchmark results in bench/results/*.json.

`--check` exits 1 where the page is stale (tests/test_results_page.py checks it is current).
Every results file has one schema (bench/harness.py), all of it computed by its script from its
raw measurements; this only lays the files out, one section each in ORDER, with the verdicts of
the files in GLANCE_OF gathered in one table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import verdict_word  # noqa: E402

from tuner import tables  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS, PAGE = ROOT / "bench" / "results", ROOT / "docs" / "results.md"
GLANCE = "Performance at a glance"
# The sections in page order; a new results file joins ORDER or UNLISTED (a test checks).
ORDER = [
    "weighting_ring", "weighting_digits", "tiw_bimodal", "tiw_digits", "ambient_gaussian",
    "cdl_mismatch", GLANCE, "objectives_cost", "search_default", "search_strategies",
    "default_budget", "ring8_default", "ray_overhead", "throughput", "eval_cost", "fid_small_n",
    "digits_classifier",
]  # fmt: skip
# Files on no section of their own: kept as evidence that the text cites.
UNLISTED = {
    "learning_curves": "the learning-curve table (issue 25), bench/search_strategies.py's data",
    "default_run": "README's default-output block: the default search's terminal",
    "search_default_rerun": "bench/search_default.py before the fresh seeds' discriminators were pre-trained early (README)",
    "search_default_preflush": "bench/search_default.py before the subnormal flush, on a quiet machine (its note)",
}
# The files whose verdicts the glance gathers, and its word for each.
GLANCE_OF = {"objectives_cost": "objectives", "ray_overhead": "Ray", "eval_cost": "evaluation",
             "search_default": "default search", "search_strategies": "search strategies"}  # fmt: skip
Results = dict[str, dict[str, Any]]


def current(d: dict[str, Any] | None) -> bool:
    """Whether a results file is in the schema this page renders."""
    return d is not None and "raw" in d and "verdicts" in d


def block(b: str | dict[str, list]) -> str:
    """A paragraph, or a table {"head", "rows"} drawn by the search's own renderer."""
    return b if isinstance(b, str) else tables.table(b["head"], b["rows"], fmt="markdown")


def script(name: str, d: dict[str, Any]) -> str:
    """The script that writes a results file (from its command; else named after the file)."""
    found = re.search(r"bench/(\w+\.py)", d.get("command", ""))
    return found.group(1) if found else f"{name}.py"


def section(name: str, d: dict[str, Any] | None) -> list[str]:
    """A results file's part of the page: body, figures, verdicts and notes."""
    if d is None:
        return [f"*Not measured yet: run `.venv/bin/python bench/{name}.py` to write "
                f"`bench/results/{name}.json`.*"]  # fmt: skip
    if not current(d):
        return [f"*Re-measurement pending: `bench/results/{name}.json` was written by an earlier "
                f"version of `bench/{script(name, d)}`; `.venv/bin/python bench/{script(name, d)}` "
                "measures it again.*"]  # fmt: skip
    parts = [block(b) for b in d["body"]]
    parts += [f"![{cap}](../bench/results/{f})" for f, cap in d["figures"] if (RESULTS / f).exists()]  # fmt: skip
    lines = [f"- **{verdict_word(v['holds'])}** — {v['claim'].rstrip('.')}. *{v['evidence']}*"
             for v in d["verdicts"]]  # fmt: skip
    if lines:
        head = f"**Verdicts** (computed by `bench/{script(name, d)}` from these results):\n\n"
        parts.append(head + "\n".join(lines))
    return parts + [f"*Note ({n['date']}): {n['text']}*" for n in d["notes"]]


def glance(results: Results) -> list[str]:
    """The verdicts of the cost and overhead files, in one table."""
    rows = [[word, v["claim"], verdict_word(v["holds"]), v["evidence"]]
            for name, word in GLANCE_OF.items() if current(results.get(name))
            for v in results[name]["verdicts"]]  # fmt: skip
    return ["Gathered from the sections below (the same files and verdicts).",
            block({"head": ["", "claim", "verdict", "evidence"], "rows": rows})]  # fmt: skip


def machines(results: Results) -> str:
    """What the results files say of the machine that ran them."""
    cores: dict[int, list[str]] = {}
    for name, d in results.items():
        raw = d.get("raw", {})
        if (n := raw.get("cpus", raw.get("machine", {}).get("cpu_count"))) is not None:
            cores.setdefault(n, []).append(f"`{name}`")
    return "; ".join(f"{n} CPU cores in {', '.join(names)}" for n, names in sorted(cores.items()))


def render(results: Results | None = None) -> str:
    if results is None:
        results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    parts = [
        "# Results",
        "Small-scale reproductions and benchmarks. Every number below is read from "
        "`bench/results/*.json`, written by the command shown with it; this page is rendered "
        "from those files by `.venv/bin/python bench/report.py` (a test checks it is current). "
        "Spreads are the standard deviation over seeds. Each claim is a verdict its script "
        "computed (through `bench/claims.py` and `tuner/stats.py`) from its measurements: "
        "**holds**, **does not hold**, or **not resolved** where its 95 % interval (Student-t "
        "over seeds unless said) still holds both answers. A note is written by hand and carries "
        f"its date. The files that record their machine say: {machines(results)}.",
    ]
    for name in ORDER:
        d = results.get(name)
        title = GLANCE if name == GLANCE else (d or {}).get("title", name)
        body = glance(results) if name == GLANCE else section(name, d)
        parts += [f"## {title}", "\n\n".join(p for p in body if p)]
    return "\n\n".join(p for p in parts if p) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    if not parser.parse_args().check:
        PAGE.write_text(render())
        print(f"wrote {PAGE}")
    elif (PAGE.read_text() if PAGE.exists() else "") != render():
        print(f"{PAGE} is stale: run .venv/bin/python bench/report.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
