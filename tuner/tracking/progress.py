"""What a person watches while a search runs: one live status line per stage, and the project's
own lines.

- `StageProgress`, a Ray Tune callback in the driver, keeps one status line per stage (search,
  confirmation): the stage's trials finished, stopped, failed, running and waiting (they add up to
  its total), the best metric so far with its trial, the elapsed time and an estimate of what is
  left. On a terminal it is a tqdm bar redrawn in place; when stdout is not one (a CI log,
  `| tee`), the same line without the bar is written every `--progress-every` seconds and once
  at the stage's end.
- The estimate counts training steps: the steps the trials have reported, against those done
  plus those still planned (`planned_steps`: a trial not stopped yet is expected to pass each of
  ASHA's rungs ahead with the share of trials that passed it so far), at the rate of the steps
  this driver has seen done. It is tqdm's remaining time with smoothing 0: (planned − done) /
  (steps done per second since the stage started).
- The project's per-trial lines, and the period of the plain line, are tuner/tracking/console.py's
  (the command line sets them without importing Ray).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray import tune
from tqdm import tqdm

from tuner.records import FAILED, FINISHED, KILLED, status_of
from tuner.tracking.console import every_s

REDRAW_S = 1.0  # the live line's clock is redrawn at most this often
ENDED, RUNNING = ("TERMINATED", "ERROR"), ("RUNNING", "PAUSED")
WORDS = {FINISHED: "finished", KILLED: "stopped", FAILED: "failed"}  # the leaderboard's statuses
# (tqdm puts ", " before the postfix: the trials' counts and the best so far, last on the line,
# where a narrow terminal cuts it)
LIVE_FORMAT = "{desc} {bar:10} {n_fmt}/{total_fmt} steps {elapsed}<{remaining}{postfix}"
PLAIN_FORMAT = "{desc}: {n_fmt}/{total_fmt} steps, {elapsed} elapsed, {remaining} left{postfix}"


# -- what the trials have done and what is planned ----------------------------------------------
def trial_step(trial: Any) -> int:
    """The last step a trial reported (the largest: a flagged result's step 0 is no step)."""
    found = (trial.metric_analysis or {}).get("step", {}).get("max")
    return int(found) if isinstance(found, (int, float)) and math.isfinite(found) else 0


def keep_shares(trials: list[Any], rungs: list[int], reduction: float) -> list[float]:
    """Per rung, the share of trials expected to pass it: (passed + 1) / (decided + reduction),
    which is ASHA's 1/reduction before any trial is decided there and tends to the observed share
    (the first trials at a rung pass it more often than 1/reduction: ASHA is asynchronous)."""
    shares = []
    for rung in rungs:
        passed = decided = 0
        for trial in trials:
            if trial.status == "ERROR":
                continue
            step = trial_step(trial)
            passed += step > rung
            decided += step > rung or (trial.status == "TERMINATED" and step == rung)
        shares.append((passed + 1) / (decided + reduction))
    return shares


def expected_steps(step: int, rungs: list[int], final: int, keep: list[float]) -> float:
    """The steps a trial now at `step` is expected to train in all: on to the next rung, then
    past each rung with its keep share (a trial at a rung is not decided there yet)."""
    total, alive, at = float(step), 1.0, step
    for rung, share in zip(rungs, keep, strict=True):
        if rung < step:
            continue
        total += alive * (rung - at)
        at, alive = rung, alive * share
    return total + alive * max(final - at, 0)


def planned_steps(
    trials: list[Any], total: int, final: int, rungs: list[int], reduction: float
) -> tuple[int, float]:
    """(steps done, steps done + still planned) of a stage of `total` trials: an ended trial
    counts its steps, a live one its expected steps, one not created yet those of a new one."""
    keep = keep_shares(trials, rungs, reduction)
    done = planned = 0.0
    for trial in trials:
        step = trial_step(trial)
        done += step
        ended = trial.status in ENDED
        planned += step if ended else expected_steps(step, rungs, final, keep)
    planned += max(total - len(trials), 0) * expected_steps(0, rungs, final, keep)
    return int(done), max(planned, done)


def counts(trials: list[Any], total: int, final: int) -> dict[str, int]:
    """How many trials of the stage's `total` are finished, stopped (early), failed, running and
    waiting (not started yet): the leaderboard's FINISHED, KILLED and FAILED while they run."""
    out = dict.fromkeys(("finished", "stopped", "failed", "running"), 0)
    for trial in trials:
        if trial.status in ENDED:
            out[WORDS[status_of(trial.status == "ERROR", trial_step(trial), final)]] += 1
        elif trial.status in RUNNING:
            out["running"] += 1
    out["waiting"] = max(total - sum(out.values()), 0)
    return out


def best_so_far(trials: list[Any], metric: str, mode: str) -> tuple[float, str] | None:
    """(the best value of the metric any trial that did not fail reported, that trial's id)."""
    found = []
    for trial in trials:
        value = (trial.metric_analysis or {}).get(metric, {}).get(mode)
        if trial.status != "ERROR" and isinstance(value, (int, float)) and math.isfinite(value):
            found.append((value if mode == "min" else -value, trial.trial_id))
    if not found:
        return None
    value, trial_id = min(found)
    return (value if mode == "min" else -value), trial_id


def status_text(
    total: int, numbers: dict[str, int], best: tuple[float, str] | None, metric: str
) -> str:
    """`16 trials: 3 finished, 1 stopped, 0 failed, 2 running, 10 waiting | best eval/fid 16.04
    (trial d24972ca)`."""
    text = f"{total} trials: " + ", ".join(f"{n} {k}" for k, n in numbers.items())
    if best is not None:
        text += f" | best {metric} {best[0]:.4g} (trial {best[1]})"
    return text


# -- the callback ------------------------------------------------------------------------------
class StageProgress(tune.Callback):
    """The status line of one stage of a search (see the module's doc).

    Args:
        stage: the stage's name ("search", "confirmation"), first on the line.
        total: the stage's trials.
        final: the steps of a trial that runs to its end (train.steps).
        rungs: the steps where the scheduler may stop a trial (ASHA's rungs; [] for none).
        reduction: ASHA's reduction factor (the share 1/reduction passes a rung).
        metric, mode: what the best-so-far is of.
    """

    def __init__(
        self,
        stage: str,
        total: int,
        final: int,
        rungs: list[int],
        reduction: float,
        metric: str,
        mode: str,
    ) -> None:
        self.stage, self.total, self.final = stage, total, final
        self.rungs, self.reduction = list(rungs), reduction
        self.metric, self.mode = metric, mode
        self._reset()

    def _reset(self) -> None:
        self._bar: Any = None  # the live bar (a terminal)
        self._base: int | None = None  # the steps done when this driver started the stage
        self._start = time.monotonic()
        self._drawn = self._start  # when the line was last drawn or written
        self._ended = False

    def __getstate__(self) -> dict[str, Any]:  # (pickled in Ray's tuner.pkl: no bar, no clock)
        keep = ("stage", "total", "final", "rungs", "reduction", "metric", "mode")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, **info: Any) -> None:
        self._reset()

    def measure(self, trials: list[Any]) -> tuple[str, int, int]:
        """(the line's words, steps done, steps done + still planned) for `trials`."""
        done, planned = planned_steps(trials, self.total, self.final, self.rungs, self.reduction)
        if self._base is None:
            self._base = done  # (a resumed stage: the steps done before do not time this one)
        best = best_so_far(trials, self.metric, self.mode)
        numbers = counts(trials, self.total, self.final)
        return status_text(self.total, numbers, best, self.metric), done, round(planned)

    def plain_line(self, trials: list[Any], now: float) -> str:
        """The status line without a bar, as written when stdout is not a terminal."""
        text, done, planned = self.measure(trials)
        return tqdm.format_meter(
            done,
            planned,
            now - self._start,
            prefix=self.stage,
            bar_format=PLAIN_FORMAT,
            postfix=text,
            initial=self._base,
        )

    def _draw(self, trials: list[Any], force: bool = False) -> None:
        now = time.monotonic()
        if self._ended:
            return
        if not sys.stdout.isatty():
            if force or now - self._drawn >= every_s():
                print(self.plain_line(trials, now), flush=True)
                self._drawn = now
            return
        if not force and now - self._drawn < REDRAW_S:
            return
        text, done, planned = self.measure(trials)
        if self._bar is None:
            self._bar = tqdm(
                desc=self.stage,
                total=planned,
                initial=done,
                file=sys.stdout,
                bar_format=LIVE_FORMAT,
                dynamic_ncols=True,
                smoothing=0,
                leave=True,
            )
        self._bar.total, self._bar.n = planned, done
        self._bar.set_postfix_str(text, refresh=False)
        self._bar.refresh()
        self._drawn = now

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # (Ray calls on_trial_result before it records the result in the trial: the next step's
        # line shows it)
        self._draw(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """The stage's last line: its final counts (the leaderboard's), left on the screen."""
        self._draw(trials, force=True)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._ended = True
