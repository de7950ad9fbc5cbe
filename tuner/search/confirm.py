"""Confirmation on fresh seeds: the search's verdict, above its noise.

A search ranks its trials on one training seed, so its ranking can be noise. This stage retrains
the top K trials and the space's baseline (what a user trains without this tool) on N fresh
training seeds, as Ray trials with the search's resources, storage and resume, and compares
each candidate with the baseline seed by seed: the paired improvement (positive = better, in the
metric's units) with its 95 % Student-t interval. The winner is the best confirmed mean; it is
`resolved` only when its improvement's interval lies above 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from search_spaces import SPACES
from tuner.config.spec import resolve
from tuner.search.plan import Plan
from tuner.search.results import fmt_value, ranked, table
from tuner.search.trainable import CANDIDATE_KEY, trial_config
from tuner.stats import mean_interval, paired_improvement
from tuner.storage import read_text, remove_tree, write_text

VERDICT_FILE = "verdict.json"  # in the experiment folder, beside best.json
BASELINE = "baseline"


def confirmation_seeds(plan: Plan) -> list[int]:
    """N training seeds the search never used (it trained every trial with `seed`)."""
    used = resolve(plan.fixed)["seed"]
    return [used + 1 + i for i in range(plan.confirm_seeds)]


def baseline_config(plan: Plan) -> dict[str, Any]:
    """The space's baseline on the search's budget: its keys over the search's fixed ones."""
    return resolve(plan.fixed | SPACES[plan.space]["baseline"])


def choose(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The confirmation's plan: the top-K ranked trials, the baseline, and the seeds."""
    top = ranked(rows)[: plan.confirm]
    candidates = {f"trial {row['trial']}": row["config"] for row in top}
    return {
        "candidates": candidates | {BASELINE: baseline_config(plan)},
        "trials": {f"trial {row['trial']}": row["trial"] for row in top},
        "seeds": confirmation_seeds(plan),
    }


def stage_name(plan: Plan) -> str:
    """The confirmation's Ray experiment (beside the search's); another K or N is another one."""
    return f"{plan.name}-confirm{plan.confirm}x{plan.confirm_seeds}"


def load_or_choose(plan: Plan, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The confirmation of the search's ranking `rows`: the one chosen before when it is the same
    (a resumed confirmation keeps its trials), else a new one, saved. A confirmation chosen from
    another ranking (a search that changed after it was chosen) is never reused: its stage is
    removed and trained again (its MLflow runs go with it: tuner/tracking/callback.py removes
    the runs of trials its stage no longer holds)."""
    path = f"{plan.experiment_dir}/{stage_name(plan)}.json"
    chosen = json.loads(json.dumps(choose(plan, rows)))  # as it reads back
    saved = read_text(path)
    if saved is not None and json.loads(saved) == chosen:
        return chosen
    if saved is not None:
        print(
            f"confirmation: chosen before from another ranking of the search; chosen again "
            f"({', '.join(chosen['candidates'])})",
            flush=True,
        )
        remove_tree(f"{plan.storage.rstrip('/')}/{stage_name(plan)}")
    write_text(path, json.dumps(chosen, indent=2))
    return chosen


def resolve_candidate(config: dict[str, Any], candidates: dict[str, dict[str, Any]]) -> dict:
    """A confirmation trial's full config (what MLflow logs as its params)."""
    return trial_config(config, candidates)


def param_space(chosen: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    return {
        CANDIDATE_KEY: tune.grid_search(list(chosen["candidates"])),
        "seed": tune.grid_search(chosen["seeds"]),
    }


def final_values(results: Any, metric: str) -> dict[tuple[str, int], float]:
    """(candidate, seed) -> the metric at the trial's last step (absent when it failed)."""
    out: dict[tuple[str, int], float] = {}
    for result in results:
        frame = result.metrics_dataframe
        if result.error is not None or frame is None or metric not in frame:
            continue
        value = frame[metric].tolist()[-1]
        if isinstance(value, float) and math.isfinite(value):
            out[(result.config[CANDIDATE_KEY], int(result.config["seed"]))] = value
    return out


def _interval(values: list[float]) -> tuple[float | None, list[float] | None]:
    if not values:
        return None, None
    mean, low, high = mean_interval(values)
    return mean, [low, high]


def verdict(plan: Plan, chosen: dict[str, Any], values: dict[tuple[str, int], float]) -> dict:
    """verdict.json: every configuration's per-seed values, mean and interval, each candidate's
    paired improvement over the baseline, the winner and whether it is resolved."""
    seeds = chosen["seeds"]

    def per_seed(label: str) -> list[float | None]:
        return [values.get((label, s)) for s in seeds]

    base_values = per_seed(BASELINE)
    base_mean, base_ci = _interval([v for v in base_values if v is not None])
    candidates = []
    for label, config in chosen["candidates"].items():
        if label == BASELINE:
            continue
        mine = per_seed(label)
        pairs = [(c, b) for c, b in zip(mine, base_values, strict=True) if None not in (c, b)]
        mean, ci = _interval([v for v in mine if v is not None])
        improvement = improvement_ci = None
        if len(pairs) >= 2:
            gain, low, high = paired_improvement(*zip(*pairs, strict=True), plan.mode)
            improvement, improvement_ci = gain, [low, high]
        complete = all(v is not None for v in mine)
        candidates.append(
            {
                "trial": chosen["trials"][label],
                "config": config,
                "values": mine,
                "mean": mean if complete else None,
                "ci": ci if complete else None,
                "improvement": improvement if complete else None,
                "improvement_ci": improvement_ci if complete else None,
            }
        )
    confirmed = [c for c in candidates if c["mean"] is not None]
    sign = 1 if plan.mode == "min" else -1
    winner = min(confirmed, key=lambda c: sign * c["mean"]) if confirmed else None
    ci = winner["improvement_ci"] if winner else None
    resolved = bool(ci is not None and ci[0] > 0)
    return {
        "metric": plan.metric,
        "mode": plan.mode,
        "seeds": seeds,
        "baseline": {
            "config": chosen["candidates"][BASELINE],
            "values": base_values,
            "mean": base_mean,
            "ci": base_ci,
        },
        "candidates": candidates,
        "winner": winner,
        "resolved": resolved,
        "conclusion": conclusion(plan, winner, resolved, len(seeds)),
    }


def conclusion(plan: Plan, winner: dict | None, resolved: bool, n: int) -> str:
    if winner is None:
        return f"No candidate finished on all {n} fresh seeds: nothing is confirmed."
    if winner["improvement"] is None:
        return (
            f"Trial {winner['trial']} has the best confirmed mean {plan.metric} "
            f"{winner['mean']:.4g}, but the baseline has too few seeds to compare: not resolved."
        )
    low, high = winner["improvement_ci"]
    gain = f"{winner['improvement']:+.3g} [{low:+.3g}, {high:+.3g}] (95 %)"
    if resolved:
        return (
            f"Trial {winner['trial']} beats the baseline on {n} fresh seeds: {plan.metric} "
            f"improves by {gain}; resolved."
        )
    return (
        f"Trial {winner['trial']} has the best confirmed mean {plan.metric}, but its "
        f"improvement over the baseline, {gain} on {n} fresh seeds, contains 0: not resolved."
    )


def _cell(mean: float | None, ci: list[float] | None) -> str:
    if mean is None or ci is None:
        return "-"
    return f"{mean:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"


def confirmation_table(plan: Plan, result: dict[str, Any]) -> str:
    """The confirmed numbers: per-seed values, mean [95 %], improvement over the baseline
    (the baseline's own keys are named under the table)."""
    keys = [k for k in plan.params if k in result["baseline"]["config"]]
    head = ["config", *keys, f"{plan.metric} per seed", "mean [95 %]", "improvement [95 %]"]
    head.append("")

    def values(vs: list[float | None]) -> str:
        return " ".join("-" if v is None else f"{v:.4g}" for v in vs)

    base = result["baseline"]
    body = [
        ["baseline", *("" for _ in keys), values(base["values"])]
        + [_cell(base["mean"], base["ci"]), "", ""]
    ]
    for c in result["candidates"]:
        ci = c["improvement_ci"]
        mark = " (winner)" if result["winner"] and c["trial"] == result["winner"]["trial"] else ""
        body.append(
            [f"trial {c['trial']}{mark}", *(fmt_value(c["config"][k]) for k in keys)]
            + [values(c["values"]), _cell(c["mean"], c["ci"])]
            + [_cell(c["improvement"], ci), _state(ci)]
        )
    own = SPACES[plan.space]["baseline"]
    named = ", ".join(f"{k}={fmt_value(v)}" for k, v in own.items())
    return f"{table(head, body)}\nbaseline: {named} (the rest as the search's fixed config)"


def _state(ci: list[float] | None) -> str:
    if ci is not None and ci[0] > 0:
        return "resolved"
    if ci is not None and ci[1] < 0:
        return "worse than the baseline (resolved)"
    return "not resolved"


def verdict_markdown(plan: Plan, result: dict[str, Any]) -> str:
    """The verdict for the parent run's description: the confirmed numbers and the conclusion."""
    from tuner.tracking.review import markdown_table

    head = ["configuration", f"{plan.metric} per seed", "mean [95 %]", "improvement [95 %]", ""]
    base = result["baseline"]

    def values(vs: list[float | None]) -> str:
        return " ".join("-" if v is None else f"{v:.4g}" for v in vs)

    rows = [["baseline", values(base["values"]), _cell(base["mean"], base["ci"]), "", ""]]
    rows += [
        [f"trial {c['trial']}", values(c["values"]), _cell(c["mean"], c["ci"])]
        + [_cell(c["improvement"], c["improvement_ci"]), _state(c["improvement_ci"])]
        for c in result["candidates"]
    ]
    seeds = ", ".join(map(str, result["seeds"]))
    return (
        f"### Confirmation on fresh seeds ({seeds})\n\n{markdown_table(head, rows)}\n\n"
        f"**{result['conclusion']}**"
    )


def verdict_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The parent run's verdict metrics."""
    out = {"verdict/resolved": float(result["resolved"])}
    if result["baseline"]["mean"] is not None:
        out["verdict/baseline_mean"] = result["baseline"]["mean"]
    winner = result["winner"]
    if winner is not None:
        out["verdict/winner_mean"] = winner["mean"]
        if winner["improvement"] is not None:
            low, high = winner["improvement_ci"]
            out |= {
                "verdict/improvement": winner["improvement"],
                "verdict/improvement_low": low,
                "verdict/improvement_high": high,
            }
    return out


def run_confirmation(plan: Plan, rows: list[dict[str, Any]], search_id: str, cache: str) -> dict:
    """Retrain the chosen configurations on the fresh seeds (resuming a stage a killed driver
    left) and return the verdict, also written to verdict.json in the experiment folder."""
    import functools

    from ray import tune

    from tuner.search.cluster import default_concurrency
    from tuner.search.trainable import train_trial
    from tuner.search.tuning import make_search_alg, make_tuner, tracking_callback
    from tuner.training import discriminators

    chosen = load_or_choose(plan, rows)
    candidates = chosen["candidates"]
    configs = [resolve(c | {"seed": s}) for c in candidates.values() for s in chosen["seeds"]]
    discriminators.pretrain(configs, cache, plan.cpus_per_trial, plan.gpus_per_trial)
    name = stage_name(plan)
    path = f"{plan.storage.rstrip('/')}/{name}"
    resuming = tune.Tuner.can_restore(path)
    print(
        f"\nconfirmation: {', '.join(candidates)} on seeds "
        f"{', '.join(map(str, chosen['seeds']))}{'  (resuming)' if resuming else ''}",
        flush=True,
    )
    grid = dataclasses.replace(plan, search="grid", seed=0)
    callback = tracking_callback(
        plan,
        search_id,
        functools.partial(resolve_candidate, candidates=candidates),
        searched=(CANDIDATE_KEY, "seed"),
        stage="confirmation",
    )
    tuner = make_tuner(
        plan,
        tune.with_parameters(train_trial, disc_cache=cache, candidates=candidates),
        name=name,
        param_space=param_space(chosen),
        search_alg=make_search_alg(grid, plan.max_concurrent or default_concurrency(plan)),
        scheduler=None,  # no early stopping: every seed runs to the end
        num_samples=1,
        callback=callback,
        resume=resuming,
    )
    result = verdict(plan, chosen, final_values(tuner.fit(), plan.metric))
    write_text(f"{plan.experiment_dir}/{VERDICT_FILE}", json.dumps(result, indent=2) + "\n")
    return result
