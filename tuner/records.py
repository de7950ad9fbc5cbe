"""The records a search's stages hand on: one `TrialRow` per trial and the confirmation's
`Verdict` (verdict.json), with the rules both the search and its MLflow tracking apply to them:
a trial's status, its best value, the ranking, the leaderboard. Imports only tuner.tables, so
every layer may use it (tuner/tracking may not import tuner/search).

Statuses use MLflow's words: FINISHED (ran to train.steps), KILLED (stopped early by the
scheduler), FAILED (errored, e.g. diverged; never ranked).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from typing import Any

from tuner.tables import fmt_metric, table

FINISHED, KILLED, FAILED = "FINISHED", "KILLED", "FAILED"
STATUSES = (FINISHED, KILLED, FAILED)


def status_of(errored: bool, step: int, max_steps: int) -> str:
    """A trial's status: FAILED when it errored, FINISHED at train.steps, KILLED before."""
    if errored:
        return FAILED
    return FINISHED if step >= max_steps else KILLED


def best_of(values: Iterable[float], mode: str) -> float | None:
    """The best of `values` ("min" or "max"), None without any."""
    values = list(values)
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


@dataclasses.dataclass
class TrialRow:
    """One trial as a stage's results hold it (Ray's results, or its MLflow run).

    `history` is [(step, metric)] of its finite values; `best` their best, `last` the value at
    its last step `step` (None when that step has none); `config` its full flat config, `raw`
    what the source held (Ray's trial config, or the run's params as MLflow shows them); `name`
    and `end` the run's name and why it ended (rows read from MLflow).
    """

    trial: str
    status: str
    best: float | None
    last: float | None
    step: int
    history: list[tuple[int, float]]
    config: dict[str, Any]
    raw: dict[str, Any]
    name: str = ""
    end: str = ""

    @classmethod
    def from_history(
        cls, history: list[tuple[int, float]], step: int, mode: str, **fields: Any
    ) -> TrialRow:
        """A row whose best and last values are read from its history."""
        last = history[-1][1] if history and history[-1][0] == step else None
        best = best_of((v for _, v in history), mode)
        return cls(best=best, last=last, step=step, history=history, **fields)

    @property
    def rankable(self) -> bool:
        """Whether it may be called best: not failed, with the metric."""
        return self.status != FAILED and self.best is not None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"history": [list(p) for p in self.history]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRow:
        history = [(int(s), float(v)) for s, v in data["history"]]
        return cls(**(data | {"history": history}))


def rank(rows: Iterable[TrialRow], mode: str) -> list[TrialRow]:
    """Best first by the metric; failed rows and rows without it last, each group by trial."""
    sign = 1 if mode == "min" else -1
    return sorted(
        rows, key=lambda r: (not r.rankable, sign * r.best if r.rankable else 0.0, r.trial)
    )


def ranked(rows: Iterable[TrialRow]) -> list[TrialRow]:
    """The rows that may be called best, in their order."""
    return [r for r in rows if r.rankable]


Column = tuple[str, Callable[[TrialRow], Any]]  # a heading and the cell of a row
TRIAL: Column = ("trial", lambda r: r.trial)
STATUS: Column = ("status", lambda r: r.status)
END: Column = ("end", lambda r: r.end)
STEPS: Column = ("steps", lambda r: r.step)


def best_column(metric: str) -> Column:
    return f"best {metric}", lambda r: fmt_metric(r.best)


def leaderboard(rows: list[TrialRow], columns: list[Column], fmt: str = "text") -> str:
    """The rows, numbered from 1, under `columns`, as a text or markdown table."""
    head = ["#", *(name for name, _ in columns)]
    body = [[i, *(cell(row) for _, cell in columns)] for i, row in enumerate(rows, 1)]
    return table(head, body, fmt)


# -- the confirmation's verdict (verdict.json) ----------------------------------------------------
@dataclasses.dataclass
class Arm:
    """A configuration retrained on the fresh seeds: its values per seed (None where it failed),
    their mean and 95 % interval (None without values); the reference's label."""

    config: dict[str, Any]
    values: list[float | None]
    mean: float | None
    ci: list[float] | None
    label: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"config": self.config, "values": self.values, "mean": self.mean, "ci": self.ci}
        return out | ({"label": self.label} if self.label is not None else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Arm:
        return cls(**data)


@dataclasses.dataclass
class Candidate:
    """A search trial retrained: as an arm (mean and interval only when it finished on every
    seed), with its paired improvement over the baseline and, where the space names one, over
    the reference (positive = better, in the metric's units) and their 95 % intervals."""

    trial: str
    config: dict[str, Any]
    values: list[float | None]
    mean: float | None
    ci: list[float] | None
    improvement: float | None
    improvement_ci: list[float] | None
    vs_reference: float | None = None
    vs_reference_ci: list[float] | None = None

    def to_json(self, reference: bool) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not reference:
            del out["vs_reference"], out["vs_reference_ci"]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)


@dataclasses.dataclass
class Verdict:
    """The confirmation's outcome, as verdict.json holds it: the metric and its mode, the fresh
    seeds, the baseline (and the reference) arm, the candidates, the winner (the best confirmed
    mean, one of the candidates), whether its improvement over the baseline is resolved (its
    interval above 0) and whether it beats the reference (True, False, None: not resolved), a
    conclusion in words, and the search's early-stopping check (tuner/search/rungs.py)."""

    metric: str
    mode: str
    seeds: list[int]
    baseline: Arm
    candidates: list[Candidate]
    winner: Candidate | None
    resolved: bool
    reference: Arm | None = None
    beats_reference: bool | None = None
    conclusion: str = ""
    early_stopping: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """verdict.json's content (the reference's keys only where the space names one)."""
        ref = self.reference is not None
        out: dict[str, Any] = {
            "metric": self.metric,
            "mode": self.mode,
            "seeds": self.seeds,
            "baseline": self.baseline.to_json(),
            "candidates": [c.to_json(ref) for c in self.candidates],
            "winner": None if self.winner is None else self.winner.to_json(ref),
            "resolved": self.resolved,
        }
        if self.reference is not None:
            out["reference"] = self.reference.to_json()
            out["beats_reference"] = self.beats_reference
        out["conclusion"] = self.conclusion
        if self.early_stopping is not None:
            out["early_stopping"] = self.early_stopping
        return out

    def dumps(self) -> str:
        """verdict.json's text."""
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Verdict:
        candidates = [Candidate.from_json(c) for c in data["candidates"]]
        won = data["winner"]
        winner = next((c for c in candidates if won and c.trial == won["trial"]), None)
        reference = data.get("reference")
        return cls(
            metric=data["metric"],
            mode=data["mode"],
            seeds=list(data["seeds"]),
            baseline=Arm.from_json(data["baseline"]),
            candidates=candidates,
            winner=winner,
            resolved=data["resolved"],
            reference=None if reference is None else Arm.from_json(reference),
            beats_reference=data.get("beats_reference"),
            conclusion=data["conclusion"],
            early_stopping=data.get("early_stopping"),
        )
