"""How far small-N digits FID is from large-N FID, and how noisy it is.

Reference: the digits test split. "Generated" sets: the train digits (a perfect model) and the
same with Gaussian noise of std 0.3 (an imperfect one). For each N, torch-fidelity's FID on the
digits CNN's features of R random N-subsets; large N extrapolated by FID_N = FID_inf + b/N (FID
is biased by ~1/N; Chong & Forsyth 2020) fitted on the means for N >= 100. Rows beyond the 1347
train digits are bootstrap resamples: they show resampling noise, not a larger N.
"""

import json

import harness
import torch
from claims import mean_std, pm, table, verdict
from harness import Args, Result
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

from tuner.data.presets import load_digits_split
from tuner.evaluation.extractors import DIGITS_EXTRACTOR, FeatureExtractorDigitsCNN
from tuner.evaluation.metrics import to_uint8

NAME = "fid_small_n"
TITLE = "How far small-N FID is from large-N FID"
SIZES = (50, 100, 200, 500, 1000)
BOOTSTRAP_SIZES = (2000, 5000)


def fid(feats: torch.Tensor, ref_stats: dict) -> float:
    stats = fid_features_to_statistics(feats)
    return float(fid_statistics_to_metric(stats, ref_stats, verbose=False)["frechet_inception_distance"])  # fmt: skip


def summary(values: list[float]) -> dict:
    return {k: round(v, 4) for k, v in zip(("mean", "std"), mean_std(values), strict=True)} | {
        "min": round(min(values), 4), "max": round(max(values), 4)}  # fmt: skip


def fit_inverse_n(ns: list[int], means: list[float]) -> tuple[float, float]:
    """Least squares FID_N = a + b / N."""
    design = torch.tensor([[1.0, 1.0 / n] for n in ns], dtype=torch.float64)
    coef = torch.linalg.lstsq(design, torch.tensor(means, dtype=torch.float64)[:, None]).solution
    return float(coef[0]), float(coef[1])


def study(feats: torch.Tensor, ref_stats: dict, repeats: int, seed: int) -> dict:
    """FID of `repeats` N-subsets for each N of SIZES, of the whole set, and of bootstrap
    resamples (with replacement: the empirical train distribution) of BOOTSTRAP_SIZES."""
    gen, rows = torch.Generator().manual_seed(seed), {}
    for n in SIZES:
        rows[n] = summary([fid(feats[torch.randperm(len(feats), generator=gen)[:n]], ref_stats) for _ in range(repeats)])  # fmt: skip
    rows[len(feats)] = summary([fid(feats, ref_stats)])  # the whole set, one value
    for n in BOOTSTRAP_SIZES:
        values = [fid(feats[torch.randint(len(feats), (n,), generator=gen)], ref_stats) for _ in range(repeats)]  # fmt: skip
        rows[n] = summary(values) | {"bootstrap": True}
    fit_ns = [n for n in (*SIZES, len(feats)) if n >= 100]
    a, b = fit_inverse_n(fit_ns, [rows[n]["mean"] for n in fit_ns])
    for row in rows.values():
        row["gap_to_fid_inf"] = round(row["mean"] - a, 4)
    return {"by_n": {str(n): rows[n] for n in sorted(rows)}, "fid_inf": round(a, 4), "b": round(b, 2),
            "fitted_gap_b_over_n": {str(n): round(b / n, 4) for n in (1000, 2000, 5000)}}  # fmt: skip


def summarise(result: Result) -> Result:
    raw, verdicts = result["raw"], []
    body = [f"`{result['command']}` — FID of {raw['repeats']} random N-subsets against the "
            f"{raw['reference']}; large N extrapolated by FID_N = FID_inf + b/N (rows beyond the "
            "1347 train digits are bootstrap resamples)."]  # fmt: skip
    for name, v in raw["sets"].items():
        rows = [[n, pm(r["mean"], r["std"]), f"{r['gap_to_fid_inf']:.3f}"] for n, r in v["by_n"].items()]  # fmt: skip
        body += [f"**{name}** (FID_inf {v['fid_inf']:.3f}):", table(["N", "FID", "gap to FID_inf"], rows)]  # fmt: skip
        rows = {int(n): r for n, r in v["by_n"].items() if not r.get("bootstrap")}
        small, large = min(rows), max(n for n, r in rows.items() if r["std"] > 0)
        verdicts.append(verdict(
            f"{name}: FID is biased upward at small N — every one of the {raw['repeats']} subsets of {small} scores above "
            f"every subset of {large}", rows[small]["min"] > rows[large]["max"],
            f"N = {small}: {rows[small]['min']:.3f}–{rows[small]['max']:.3f}; N = {large}: "
            f"{rows[large]['min']:.3f}–{rows[large]['max']:.3f} (FID_inf {v['fid_inf']:.3f})"))  # fmt: skip
    return harness.page(result, TITLE, body, verdicts)


def measure(args: Args) -> None:
    x_train, _, x_test, _ = load_digits_split()
    noisy = (x_train + 0.3 * torch.randn(x_train.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)  # fmt: skip
    extractor = FeatureExtractorDigitsCNN(DIGITS_EXTRACTOR, ["penultimate"])
    with torch.no_grad():
        features = {name: extractor(to_uint8(x))[0] for name, x in [("train", x_train), ("train_noise0.3", noisy)]}  # fmt: skip
        ref_stats = fid_features_to_statistics(extractor(to_uint8(x_test))[0])
    raw = {"reference": f"digits test split, {len(x_test)} images", "repeats": args.repeats, "seed": args.seed,
           "sets": {name: study(f, ref_stats, args.repeats, args.seed) for name, f in features.items()}}  # fmt: skip
    print(json.dumps(raw, indent=2))
    harness.finish(args, harness.new(args, {}, raw), summarise)


if __name__ == "__main__":
    harness.main(NAME, __doc__, summarise, measure, {"repeats": 3}, repeats=20, seed=0)
