"""From measurements to what the results page says: spreads, intervals, verdicts and tables.

A verdict is {"claim": sentence, "holds": true | false | null (not resolved), "evidence": the
numbers with their spread or interval}. Means over seeds carry Student-t intervals from
tuner/stats.py, as the search's confirmation does.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from tuner.stats import LEVEL, mean_interval, paired_improvement

Holds = bool | None
Columns = dict[str, list[float]]
# A claim that arms beat others: its sentence, the metric, the (candidate, baseline) pairs that
# must all hold, and whether the metric is better low ("min") or high ("max").
Claim = tuple[str, str, list[tuple[str, str]], str]
BOOTSTRAP_DRAWS = 10_000


# -- spreads and intervals ------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) of `values`; the deviation of one value is 0."""
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def spread(values: Sequence[float]) -> dict[str, float]:
    return dict(zip(("mean", "std"), mean_std(values), strict=True))


def direction(low: float, high: float) -> Holds:
    """True when the interval of a difference lies above 0, False below, None when it holds 0."""
    return True if low > 0.0 else False if high < 0.0 else None


def negate(holds: Holds) -> Holds:
    return None if holds is None else not holds


def median_interval(
    values: Sequence[float], level: float = LEVEL, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of `values` (the repeats), seeded."""
    rng, values, tail = random.Random(seed), list(values), (1 - level) / 2
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return meds[int(tail * draws)], meds[min(draws - 1, int((1 - tail) * draws))]


def target_holds(low: float, high: float, target: float, at_least: bool) -> Holds:
    """True when [low, high] lies on the good side of `target` (a floor if at_least, else a
    ceiling), False when on the bad side, None when it holds the target (within noise)."""
    if not at_least:
        low, high, target = -high, -low, -target
    return True if low >= target else False if high < target else None


# -- numbers as the page prints them --------------------------------------------------------------
def _decimals(spread: float) -> int:
    """Decimals that show a spread to its first significant digit (two for 0.1x, 0.2x)."""
    exponent = math.floor(math.log10(abs(spread)))
    return max(0, -exponent + (1 if abs(spread) / 10**exponent < 3 else 0))


def pm(mean: float, std: float, digits: int = 3) -> str:
    """mean ± std, the mean rounded where the std's first significant digit is."""
    if abs(mean) < 1e-3 and mean != 0 or not math.isfinite(std):
        return f"{mean:.2g} ± {std:.1g}"
    if std <= 1e-6 * abs(mean):  # constant over seeds, up to float noise
        return f"{mean:.{digits}g} ± 0"
    d = _decimals(std)
    return f"{mean:.{d}f} ± {std:.{d}f}"


def sd(entry: dict[str, float], digits: int = 3) -> str:
    """pm of a {"mean", "std"} entry ("—" where there is none)."""
    return "—" if entry is None else pm(entry["mean"], entry["std"], digits)


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


def iv(mean: float | None, interval: Sequence[float] | None) -> str:
    """ci of a mean and its interval ("—" where there is none)."""
    return "—" if mean is None or interval is None else ci(mean, *interval)


def table(head: list[str], rows: list[list[str]]) -> dict[str, list]:
    """A table of the results schema: its header and rows of cells as the page prints them."""
    return {"head": head, "rows": rows}


# -- per-arm summaries ----------------------------------------------------------------------------
def summarise_arms(runs: dict[str, list[dict[str, Any]]], skip: Iterable[str] = ()) -> dict:
    """{arm: {field: {"mean", "std"}}} over the seeds of every numeric field of the arms' runs
    (lists elementwise), but the fields in `skip`."""
    out: dict[str, dict[str, Any]] = {arm: {} for arm in runs}
    for arm, rows in runs.items():
        for k, v in rows[0].items():
            if k in skip or isinstance(v, (str, bool, dict)) or v is None:
                continue
            if isinstance(v, list):  # elementwise
                means, stds = zip(*(mean_std(c) for c in zip(*(r[k] for r in rows), strict=True)), strict=True)  # fmt: skip
                out[arm][k] = {"mean": list(means), "std": list(stds)}
            else:
                out[arm][k] = spread([r[k] for r in rows])
    return out


def column(runs: dict[str, list[dict[str, Any]]], key: str) -> Columns:
    """arm -> one field's value per seed."""
    return {arm: [r[key] for r in rows] for arm, rows in runs.items()}


def arm_rows(summary: dict[str, dict], keys: Sequence[tuple[str, int]]) -> list[list[str]]:
    """One row per arm: its name and mean ± std of each (field, digits) of `keys`."""
    return [[arm] + [sd(s.get(k), d) for k, d in keys] for arm, s in summary.items()]


# -- verdicts -------------------------------------------------------------------------------------
def verdict_word(holds: Holds) -> str:
    return {True: "holds", False: "does not hold", None: "not resolved"}[holds]


def verdict(claim: str, holds: Holds, evidence: str) -> dict[str, Any]:
    return {"claim": claim, "holds": holds, "evidence": evidence}


def every(holds: Iterable[Holds]) -> Holds:
    """A claim over several comparisons: False if any fails, None if any is not resolved."""
    return False if False in (holds := list(holds)) else None if None in holds else True


def some(holds: Iterable[Holds]) -> Holds:
    """A claim that one of several comparisons holds: True if any does, False if all fail."""
    return True if True in (holds := list(holds)) else None if None in holds else False


def paired(candidate: list[float], baseline: list[float], mode: str) -> tuple[Holds, str]:
    """Whether candidate beats baseline (paired by seed; mode "min" or "max"), and the
    improvement's 95 % t interval with how many seeds it is better in."""
    mean, low, high = paired_improvement(candidate, baseline, mode)
    pairs = zip(candidate, baseline, strict=True)
    better = sum((c < b) if mode == "min" else (c > b) for c, b in pairs)
    return direction(low, high), f"{ci(mean, low, high)}, better in {better}/{len(baseline)}"


def compare(columns: Columns, pairs: Iterable[tuple[str, str]], mode: str) -> tuple[Holds, str]:
    """Whether each candidate beats its baseline on one metric (columns: arm -> value per seed;
    pairs: (candidate, baseline)), all together (see `every`), and the evidence."""
    pairs = list(pairs)
    names = list(dict.fromkeys([b for _, b in pairs] + [c for c, _ in pairs]))
    each = [(cand, base, *paired(columns[cand], columns[base], mode)) for cand, base in pairs]
    parts = [", ".join(f"{n} {pm(*mean_std(columns[n]))}" for n in names)]
    parts += [f"{cand} over {base} {text}" for cand, base, _, text in each]
    return every(h for *_, h, _ in each), "; ".join(parts) + " (improvements paired by seed, 95 % t intervals)"  # fmt: skip


def better(claim: str, columns: Columns, pairs: list[tuple[str, str]], mode: str) -> dict:
    """The verdict that every (candidate, baseline) of `pairs` beats its baseline."""
    return verdict(claim, *compare(columns, pairs, mode))


def judge(runs: dict[str, list[dict[str, Any]]], claims: Iterable[Claim]) -> list[dict[str, Any]]:
    """The verdict of each claim, from the arms' runs (per seed) paired by seed."""
    return [better(text, column(runs, metric), pairs, mode) for text, metric, pairs, mode in claims]


def exceeds(values: list[float], ref: float) -> tuple[Holds, str]:
    """Whether the mean of values lies above ref (False: below), by its 95 % t interval."""
    mean, low, high = mean_interval(values)
    return direction(low - ref, high - ref), ci(mean, low, high)
