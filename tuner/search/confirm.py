"""Confirmation on fresh seeds: the search's verdict, above its noise.

A search ranks its trials on one training seed, so its ranking can be noise. This stage retrains
the top K trials, the space's baseline (what a user trains without this tool) and, where the
space names one, its reference (the strongest published recipe for its data: what a user who
read the paper trains) on N fresh training seeds, as Ray trials with the search's resources,
storage and resume, and compares each candidate with the baseline and with the reference seed by
seed: the paired improvement (positive = better, in the metric's units) with its 95 % Student-t
interval. The winner is the best confirmed mean; it is `resolved` only when its improvement over
the baseline lies above 0, and it beats the paper's recipe only when its improvement over the
reference does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any

from ray import tune

from search_spaces import SPACES
from tuner.config.spec import resolve
from tuner.records import Arm, Candidate, TrialRow, Verdict, ranked
from tuner.search.cluster import default_concurrency
from tuner.search.plan import Plan
from tuner.search.pretrain import pretrain
from tuner.search.trainable import CANDIDATE_KEY, train_trial, trial_config
from tuner.search.tuning import make_search_alg, make_tuner, tracking_callback
from tuner.stats import mean_interval, paired_improvement
from tuner.storage import read_text, remove_tree, write_text
from tuner.tables import fmt_value, table

VERDICT_FILE = "verdict.json"  # in the experiment folder, beside best.json
BASELINE = "baseline"
REFERENCE = "reference"


def confirmation_seeds(plan: Plan) -> list[int]:
    """N training seeds the search never used (it trained every trial with `seed`)."""
    used = resolve(plan.fixed)["seed"]
    return [used + 1 + i for i in range(plan.confirm_seeds)]


def confirmation_disc_configs(plan: Plan, search: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configs of the discriminators the confirmation will need that are known before the
    search (`search`: the search's own, tuner/search/pretrain.py): each of them and the
    reference on every fresh seed. Trained with the search's, they fill the cores the search's
    one discriminator leaves idle, and the stages have no pre-training between them."""
    if not plan.confirm:
        return []
    reference = reference_config(plan)
    known = [*search, *([reference] if reference is not None else [])]
    return [resolve(c | {"seed": s}) for c in known for s in confirmation_seeds(plan)]


def baseline_config(plan: Plan) -> dict[str, Any]:
    """The space's baseline on the search's budget: its keys over the search's fixed ones."""
    return resolve(plan.fixed | SPACES[plan.space]["baseline"])


def reference_config(plan: Plan) -> dict[str, Any] | None:
    """The space's reference (the paper's recipe) on the search's budget, if it names one."""
    reference = SPACES[plan.space].get("reference")
    return None if reference is None else resolve(plan.fixed | reference["config"])


def choose(plan: Plan, rows: list[TrialRow]) -> dict[str, Any]:
    """The confirmation's plan: the top-K ranked trials, the baseline, the reference (if the
    space names one), and the seeds."""
    top = ranked(rows)[: plan.confirm]
    candidates = {f"trial {row.trial}": row.config for row in top}
    candidates[BASELINE] = baseline_config(plan)
    reference = reference_config(plan)
    if reference is not None:
        candidates[REFERENCE] = reference
    return {
        "candidates": candidates,
        "trials": {f"trial {row.trial}": row.trial for row in top},
        "seeds": confirmation_seeds(plan),
    }


def stage_name(plan: Plan) -> str:
    """The confirmation's Ray experiment (beside the search's); another K or N is another one."""
    return f"{plan.name}-confirm{plan.confirm}x{plan.confirm_seeds}"


def load_or_choose(plan: Plan, rows: list[TrialRow]) -> dict[str, Any]:
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


def _paired(
    mine: list[float | None], other: list[float | None], mode: str
) -> tuple[float | None, list[float] | None]:
    """The paired improvement of `mine` over `other` (seeds where both finished; None with
    fewer than 2 such seeds)."""
    pairs = [(c, b) for c, b in zip(mine, other, strict=True) if None not in (c, b)]
    if len(pairs) < 2:
        return None, None
    gain, low, high = paired_improvement(*zip(*pairs, strict=True), mode)
    return gain, [low, high]


def verdict(plan: Plan, chosen: dict[str, Any], values: dict[tuple[str, int], float]) -> Verdict:
    """verdict.json: every configuration's per-seed values, mean and interval, each candidate's
    paired improvement over the baseline (and over the reference), the winner, whether it is
    resolved and whether it beats the reference."""
    seeds = chosen["seeds"]

    def per_seed(label: str) -> list[float | None]:
        return [values.get((label, s)) for s in seeds]

    def arm(label: str) -> Arm:
        mine = per_seed(label)
        mean, ci = _interval([v for v in mine if v is not None])
        return Arm(chosen["candidates"][label], mine, mean, ci)

    baseline = arm(BASELINE)
    reference = arm(REFERENCE) if REFERENCE in chosen["candidates"] else None
    if reference is not None:
        reference.label = SPACES[plan.space]["reference"]["label"]
    candidates = [
        _candidate(plan, chosen["trials"][label], arm(label), baseline, reference)
        for label in chosen["candidates"]
        if label not in (BASELINE, REFERENCE)
    ]
    confirmed = [c for c in candidates if c.mean is not None]
    sign = 1 if plan.mode == "min" else -1
    winner = min(confirmed, key=lambda c: sign * c.mean) if confirmed else None
    ci = winner.improvement_ci if winner else None
    result = Verdict(
        metric=plan.metric,
        mode=plan.mode,
        seeds=seeds,
        baseline=baseline,
        candidates=candidates,
        winner=winner,
        resolved=bool(ci is not None and ci[0] > 0),
        reference=reference,
        beats_reference=_beats(winner.vs_reference_ci if winner else None),
    )
    result.conclusion = conclusion(plan, result)
    return result


def _candidate(
    plan: Plan, trial: str, mine: Arm, baseline: Arm, reference: Arm | None
) -> Candidate:
    """A candidate's arm with its paired improvements; only a candidate that finished on every
    seed gets a mean, an interval and improvements."""
    complete = all(v is not None for v in mine.values)

    def paired(other: Arm | None) -> tuple[float | None, list[float] | None]:
        if other is None or not complete:
            return None, None
        return _paired(mine.values, other.values, plan.mode)

    improvement, improvement_ci = paired(baseline)
    vs_reference, vs_reference_ci = paired(reference)
    return Candidate(
        trial=trial,
        config=mine.config,
        values=mine.values,
        mean=mine.mean if complete else None,
        ci=mine.ci if complete else None,
        improvement=improvement,
        improvement_ci=improvement_ci,
        vs_reference=vs_reference,
        vs_reference_ci=vs_reference_ci,
    )


def _beats(ci: list[float] | None) -> bool | None:
    """True when an improvement's interval lies above 0, False below, None (not resolved)."""
    if ci is None or ci[0] <= 0 <= ci[1]:
        return None
    return ci[0] > 0


def _gain(value: float, ci: list[float]) -> str:
    return f"{value:+.3g} [{ci[0]:+.3g}, {ci[1]:+.3g}] (95 %)"


def conclusion(plan: Plan, result: Verdict) -> str:
    """One sentence on the winner against the baseline, one against the reference."""
    winner, n = result.winner, len(result.seeds)
    if winner is None:
        return f"No candidate finished on all {n} fresh seeds: nothing is confirmed."
    if winner.improvement is None:
        first = (
            f"Trial {winner.trial} has the best confirmed mean {plan.metric} "
            f"{winner.mean:.4g}, but the baseline has too few seeds to compare: not resolved."
        )
    elif result.resolved:
        first = (
            f"Trial {winner.trial} beats the baseline on {n} fresh seeds: {plan.metric} "
            f"improves by {_gain(winner.improvement, winner.improvement_ci)}; resolved."
        )
    else:
        first = (
            f"Trial {winner.trial} has the best confirmed mean {plan.metric}, but its "
            f"improvement over the baseline, {_gain(winner.improvement, winner.improvement_ci)}"
            f" on {n} fresh seeds, contains 0: not resolved."
        )
    if result.reference is None:
        return first
    label = result.reference.label
    if winner.vs_reference is None:
        return f"{first} Against {label}: too few seeds to compare."
    gain = _gain(winner.vs_reference, winner.vs_reference_ci)
    beats = result.beats_reference
    if beats:
        return f"{first} It also beats {label}: {gain}; resolved."
    if beats is False:
        return f"{first} It is worse than {label}: {gain}; use the paper's recipe."
    return (
        f"{first} Against {label} the difference, {gain}, contains 0: the search did not beat "
        "the paper's recipe (not resolved); use the paper's recipe."
    )


def _cell(mean: float | None, ci: list[float] | None) -> str:
    if mean is None or ci is None:
        return "-"
    return f"{mean:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"


def _values(vs: list[float | None]) -> str:
    return " ".join("-" if v is None else f"{v:.4g}" for v in vs)


def _rows(plan: Plan, result: Verdict, keys: list[str]) -> tuple[list[str], list[list[str]]]:
    """The confirmation's table, shared by the terminal and the parent run: the baseline, the
    reference, then each candidate with its improvements over both and their states."""
    ref = result.reference
    head = ["config", *keys, f"{plan.metric} per seed", "mean [95 %]"]
    head += ["vs baseline [95 %]", ""] + (["vs reference [95 %]", ""] if ref else [])
    pad = [""] * (len(head) - len(keys) - 3)
    blank = [""] * len(keys)
    arms = [("baseline", result.baseline)] + ([("reference", ref)] if ref else [])
    body = [[name, *blank, _values(a.values), _cell(a.mean, a.ci), *pad] for name, a in arms]
    winner = result.winner
    for c in result.candidates:
        mark = " (winner)" if winner and c.trial == winner.trial else ""
        row = [f"trial {c.trial}{mark}", *(fmt_value(c.config[k]) for k in keys)]
        row += [_values(c.values), _cell(c.mean, c.ci)]
        row += [_cell(c.improvement, c.improvement_ci), _state(c.improvement_ci)]
        if ref:
            row += [_cell(c.vs_reference, c.vs_reference_ci)]
            row += [_state(c.vs_reference_ci, "the reference")]
        body.append(row)
    return head, body


def _named(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in config.items())


def confirmation_table(plan: Plan, result: Verdict) -> str:
    """The confirmed numbers: per-seed values, mean [95 %], improvements over the baseline and
    the reference (their own keys are named under the table)."""
    keys = [k for k in plan.params if k in result.baseline.config]
    space = SPACES[plan.space]
    lines = [table(*_rows(plan, result, keys))]
    lines.append(f"baseline: {_named(space['baseline'])} (the rest as the search's fixed config)")
    if result.reference is not None:
        ref = space["reference"]
        lines.append(f"reference: {ref['label']}: {_named(ref['config'])}")
    return "\n".join(lines)


def _state(ci: list[float] | None, other: str = "the baseline") -> str:
    if ci is not None and ci[0] > 0:
        return "resolved"
    if ci is not None and ci[1] < 0:
        return f"worse than {other} (resolved)"
    return "not resolved"


def verdict_markdown(plan: Plan, result: Verdict) -> str:
    """The verdict for the parent run's description: the confirmed numbers and the conclusion."""
    seeds = ", ".join(map(str, result.seeds))
    return (
        f"### Confirmation on fresh seeds ({seeds})\n\n"
        f"{table(*_rows(plan, result, []), fmt='markdown')}\n\n**{result.conclusion}**"
    )


def verdict_metrics(result: Verdict) -> dict[str, float]:
    """The parent run's verdict metrics."""
    out = {"verdict/resolved": float(result.resolved)}
    if result.baseline.mean is not None:
        out["verdict/baseline_mean"] = result.baseline.mean
    winner = result.winner
    if winner is not None:
        out["verdict/winner_mean"] = winner.mean
        for name, gain, ci in (
            ("improvement", winner.improvement, winner.improvement_ci),
            ("vs_reference", winner.vs_reference, winner.vs_reference_ci),
        ):
            if gain is not None:
                out |= {f"verdict/{name}": gain, f"verdict/{name}_low": ci[0]}
                out[f"verdict/{name}_high"] = ci[1]
    if result.reference is not None and result.reference.mean is not None:
        out["verdict/reference_mean"] = result.reference.mean
    return out


def run_confirmation(
    plan: Plan,
    rows: list[TrialRow],
    search_id: str,
    cache: str,
    early_stopping: dict[str, Any] | None = None,
) -> Verdict:
    """Retrain the chosen configurations on the fresh seeds (resuming a stage a killed driver
    left) and return the verdict, also written to verdict.json in the experiment folder with the
    search's early-stopping check (tuner/search/rungs.py)."""
    chosen = load_or_choose(plan, rows)
    candidates = chosen["candidates"]
    configs = [resolve(c | {"seed": s}) for c in candidates.values() for s in chosen["seeds"]]
    pretrain(configs, cache, plan.cpus_per_trial, plan.gpus_per_trial)
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
    result.early_stopping = early_stopping
    write_text(f"{plan.experiment_dir}/{VERDICT_FILE}", result.dumps())
    return result
