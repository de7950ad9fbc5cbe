"""What a finished stage of a search says: one row per trial (tuner.records.TrialRow) and the
leaderboard, from Ray's results; the status rule and the ranking are tuner/records.py's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from search_spaces import POINT_KEY
from tuner.records import STATUS, STEPS, TRIAL, Column, TrialRow, best_column, rank, status_of
from tuner.records import leaderboard as render_leaderboard
from tuner.search.plan import Plan
from tuner.search.trainable import trial_config
from tuner.tables import fmt_value


def _history(result: Any, metric: str) -> tuple[list[tuple[int, float]], int]:
    """[(step, value)] of the metric's finite values, and the trial's last step."""
    frame = result.metrics_dataframe
    if frame is None or metric not in frame:
        return [], 0
    steps = frame["step"].tolist() if "step" in frame else [0] * len(frame)
    history = [
        (int(s), float(v))
        for s, v in zip(steps, frame[metric].tolist(), strict=True)
        if isinstance(v, float) and math.isfinite(v)
    ]
    return history, int(frame["step"].max()) if "step" in frame else 0


def summarize(results: Any, plan: Plan) -> list[TrialRow]:
    """One row per trial, best first; failed trials (and ones without the metric) last."""
    rows = []
    for result in results:
        if result.config is None:  # a trial that never started (Ray has nothing of it on disk)
            continue
        config = trial_config(result.config)
        history, step = _history(result, plan.metric)
        rows.append(
            TrialRow.from_history(
                history,
                step,
                plan.mode,
                trial=Path(result.path).name.removeprefix("trial_"),  # (PBT copies metrics)
                status=status_of(result.error is not None, step, config["train.steps"]),
                config=config,
                raw=result.config,
            )
        )
    return rank(rows, plan.mode)


def leaderboard(rows: list[TrialRow], plan: Plan) -> str:
    """The terminal's leaderboard: trial, status, (grid point,) searched values, best, steps."""
    point: list[Column] = [("point", lambda r: r.raw.get(POINT_KEY, ""))]
    keys: list[Column] = [
        (k, lambda r, k=k: fmt_value(r.config[k])) for k in plan.params if k != POINT_KEY
    ]
    columns = [TRIAL, STATUS, *(point if POINT_KEY in plan.params else []), *keys]
    return render_leaderboard(rows, [*columns, best_column(plan.metric), STEPS])
