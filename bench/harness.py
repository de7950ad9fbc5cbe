"""What every bench script shares: the preamble, the common arguments, the arm × seed loop with
its cache, and writing (or re-summarising) a results file.

A script imports it before the project (`from harness import ...`; bench/ is on sys.path when a
script runs), which puts the repository root on sys.path for `models` and `tuner`.

A results file bench/results/<name>.json holds the script's raw measurements (per seed, per
repeat) and what `summarise(result)` — the script's own pure function of those raw fields —
adds to them: the summary and a "verdicts" list of {"claim": sentence, "holds": true | false |
null (not resolved), "evidence": the numbers with their spread or interval}, computed through
tuner/stats.py. `finish` runs it after measuring; `--resummarise` runs the same function on the
committed file, so a summary or verdict can be recomputed without measuring again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tuner import stats  # noqa: E402

Result = dict[str, Any]
Summarise = Callable[[Result], Result]
CACHE = Path(tempfile.gettempdir()) / "diffsearch_bench"


def parser(
    name: str,
    doc: str,
    *,
    seeds: list[int] | None = None,
    steps: int | None = None,
    cache: bool = False,
) -> argparse.ArgumentParser:
    """--smoke, --out and --resummarise; --seeds, --steps and --cache where a default is given."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.set_defaults(name=name)
    p.add_argument("--smoke", action="store_true", help="seconds; writes to a temporary folder")
    p.add_argument("--out", type=Path, help=f"results file (default bench/results/{name}.json)")
    p.add_argument(
        "--resummarise",
        action="store_true",
        help="recompute the summary and verdicts of the results file from its raw data",
    )
    if seeds is not None:
        p.add_argument("--seeds", type=int, nargs="+", default=seeds)
    if steps is not None:
        p.add_argument("--steps", type=int, default=steps, help="training steps per run")
    if cache:
        p.add_argument("--cache", type=Path, default=CACHE / name, help="finished runs, by key")
    return p


def out_path(args: argparse.Namespace) -> Path:
    """--out, else bench/results/<name>.json, or a temporary file for --smoke."""
    if args.out is not None:
        return Path(args.out)
    return (CACHE / "smoke" if args.smoke else RESULTS) / f"{args.name}.json"


def cache_dir(args: argparse.Namespace) -> Path | None:
    """The run cache; none for --smoke, whose runs are not worth keeping."""
    return None if args.smoke else args.cache


def command(args: argparse.Namespace, env: str = "") -> str:
    """The command line that made a results file, as the page prints it."""
    argv = shlex.join(sys.argv[1:])
    return f"{env}.venv/bin/python bench/{args.name}.py {argv}".strip()


def cache_key(config: dict[str, Any], extra: dict[str, Any]) -> str:
    text = json.dumps({"config": config, "extra": extra}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cached(
    cache: Path | None, config: dict[str, Any], extra: dict[str, Any], fn: Callable[[], Result]
) -> Result:
    """fn() once per (config, extra); the result is kept as JSON under `cache`."""
    file = None if cache is None else cache / f"{cache_key(config, extra)}.json"
    if file is not None and file.exists():
        return json.loads(file.read_text())
    result = fn()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(result))
    return result


def arm_seed_loop(
    arms: Iterable[str], seeds: Iterable[int], run: Callable[[str, int], Result]
) -> dict[str, list[Result]]:
    """run(arm, seed) for every seed and, within a seed, every arm: {arm: [result per seed]}."""
    runs: dict[str, list[Result]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm, rows in runs.items():
            rows.append(run(arm, seed))
    return runs


def write(path: Path, result: Result) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def finish(args: argparse.Namespace, result: Result, summarise: Summarise) -> Result:
    """summarise(result), written to the results file; returns it (for the plot)."""
    result = summarise(result)
    path = out_path(args)
    write(path, result)
    for v in result.get("verdicts", []):
        print(f"{verdict_word(v['holds'])}: {v['claim']}")
    print(f"wrote {path}")
    return result


def resummarise(args: argparse.Namespace, summarise: Summarise) -> None:
    """The same summarise on the raw data of the existing results file, written back."""
    path = out_path(args)
    old = json.loads(path.read_text())
    new = summarise(json.loads(path.read_text()))
    write(path, new)
    changed = [k for k in new if old.get(k) != new[k]]
    print(f"rewrote {path}; changed: {', '.join(changed) or 'nothing'}")


# -- verdicts and their evidence --------------------------------------------------------------------
def verdict_word(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "not resolved"}[holds]


def verdict(claim: str, holds: bool | None, evidence: str) -> dict[str, Any]:
    return {"claim": claim, "holds": holds, "evidence": evidence}


def _decimals(spread: float) -> int:
    """Decimals that show a spread to its first significant digit (two for 0.1x, 0.2x)."""
    exponent = math.floor(math.log10(abs(spread)))
    leading = abs(spread) / 10**exponent
    return max(0, -exponent + (1 if leading < 3 else 0))


def pm(mean: float, std: float, digits: int = 3) -> str:
    """mean ± std, the mean rounded where the std's first significant digit is."""
    if abs(mean) < 1e-3 and mean != 0 or not math.isfinite(std):
        return f"{mean:.2g} ± {std:.1g}"
    if std <= 1e-6 * abs(mean):  # constant over seeds, up to float noise
        return f"{mean:.{digits}g} ± 0"
    d = _decimals(std)
    return f"{mean:.{d}f} ± {std:.{d}f}"


def ci(mean: float, low: float, high: float) -> str:
    """mean [low, high], rounded where the interval's half-width's first significant digit is
    (and finer where that would round an end of the interval to 0)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.3g} [no interval from one value]"
    half = (high - low) / 2
    if half <= 1e-9 * max(abs(mean), 1e-12):
        return f"{mean:.3g} [{low:.3g}, {high:.3g}]"
    d = _decimals(half)
    while d < 12 and any(v != 0 and round(v, d) == 0 for v in (low, high)):
        d += 1
    return f"{mean:.{d}f} [{low:.{d}f}, {high:.{d}f}]"


def paired(candidate: list[float], baseline: list[float], mode: str) -> tuple[bool | None, str]:
    """Whether candidate beats baseline (paired by seed; mode "min" or "max"), and the
    improvement's 95 % t interval with how many seeds it is better in."""
    mean, low, high = stats.paired_improvement(candidate, baseline, mode)
    pairs = zip(candidate, baseline, strict=True)
    better = sum((c < b) if mode == "min" else (c > b) for c, b in pairs)
    return stats.direction(low, high), f"{ci(mean, low, high)}, better in {better}/{len(baseline)}"


def compare(
    columns: dict[str, list[float]], pairs: Iterable[tuple[str, str]], mode: str
) -> tuple[bool | None, str]:
    """Whether each candidate beats its baseline on one metric (columns: arm -> value per seed;
    pairs: (candidate, baseline)), all together (see `every`), and the evidence."""
    pairs = list(pairs)
    names = list(dict.fromkeys([b for _, b in pairs] + [c for c, _ in pairs]))
    parts = [", ".join(f"{n} {pm(*stats.mean_std(columns[n]))}" for n in names)]
    holds = []
    for cand, base in pairs:
        h, text = paired(columns[cand], columns[base], mode)
        holds.append(h)
        parts.append(f"{cand} over {base} {text}")
    return every(holds), "; ".join(parts) + " (improvements paired by seed, 95 % t intervals)"


def exceeds(values: list[float], ref: float) -> tuple[bool | None, str]:
    """Whether the mean of values lies above ref (False: below), by its 95 % t interval."""
    mean, low, high = stats.mean_interval(values)
    return stats.direction(low - ref, high - ref), ci(mean, low, high)


def every(holds: Iterable[bool | None]) -> bool | None:
    """A claim over several comparisons: False if any fails, None if any is not resolved."""
    holds = list(holds)
    return False if False in holds else None if None in holds else True


def some(holds: Iterable[bool | None]) -> bool | None:
    """A claim that one of several comparisons holds: True if any does, False if all fail."""
    holds = list(holds)
    return True if True in holds else None if None in holds else False
