"""What a finished stage of a search says: one row per trial, the leaderboard, best.json.

Statuses use MLflow's words: FINISHED (ran to train.steps), KILLED (stopped early by the
scheduler), FAILED (errored, e.g. diverged; never ranked).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from search_spaces import POINT_KEY
from tuner.search.plan import Plan


def summarize(results: Any, plan: Plan) -> list[dict[str, Any]]:
    """One row per trial, best first; failed trials (and ones without the metric) last."""
    from tuner.search.trainable import trial_config

    rows = []
    for result in results:
        config = trial_config(result.config)
        frame = result.metrics_dataframe
        history: list[tuple[int, float]] = []
        step = 0
        if frame is not None and plan.metric in frame:
            steps = frame["step"].tolist() if "step" in frame else [0] * len(frame)
            history = [
                (int(s), float(v))
                for s, v in zip(steps, frame[plan.metric].tolist(), strict=True)
                if isinstance(v, float) and math.isfinite(v)
            ]
            step = int(frame["step"].max()) if "step" in frame else 0
        if result.error is not None:
            status = "FAILED"
        else:
            status = "FINISHED" if step >= config["train.steps"] else "KILLED"
        values = [v for _, v in history]
        best = (min(values) if plan.mode == "min" else max(values)) if values else None
        last = history[-1][1] if history and history[-1][0] == step else None
        rows.append(
            {
                "trial": Path(result.path).name.removeprefix("trial_"),  # (PBT copies metrics)
                "status": status,
                "best": best,
                "last": last,
                "step": step,
                "history": history,
                "config": config,
                "raw": result.config,
            }
        )
    sign = 1 if plan.mode == "min" else -1

    def order(row: dict[str, Any]) -> tuple:
        rankable = row["status"] != "FAILED" and row["best"] is not None
        return (not rankable, sign * row["best"] if rankable else 0.0, row["trial"])

    return sorted(rows, key=order)


def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that may be called best: not failed, with the metric."""
    return [r for r in rows if r["status"] != "FAILED" and r["best"] is not None]


def fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def table(head: list[str], body: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    rows = [head, *body]
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def leaderboard(rows: list[dict[str, Any]], plan: Plan) -> str:
    keys = [k for k in plan.params if k != POINT_KEY]
    point = POINT_KEY in plan.params
    head = ["#", "trial", "status"] + (["point"] if point else []) + keys
    head += [f"best {plan.metric}", "steps"]
    body = []
    for i, row in enumerate(rows, 1):
        cells = [str(i), row["trial"], row["status"]]
        cells += [str(row["raw"].get(POINT_KEY, ""))] if point else []
        cells += [fmt_value(row["config"][k]) for k in keys]
        cells += ["-" if row["best"] is None else f"{row['best']:.4g}", str(row["step"])]
        body.append(cells)
    return table(head, body)
