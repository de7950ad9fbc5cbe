"""What a person watches: the stage's status line (its counts, best, steps and estimate), the
project's lines under --verbose, and a smoke search's terminal without Ray's and MLflow's own
output (with it under --verbose)."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from search_spaces import SMOKE, SMOKE_NUM_SAMPLES
from tuner.search.cli import main
from tuner.search.options import SMOKE_CONFIRM, SMOKE_CONFIRM_SEEDS
from tuner.tracking import console, progress
from tuner.tracking.console import LOG
from tuner.tracking.progress import (
    StageProgress,
    best_so_far,
    counts,
    expected_steps,
    keep_shares,
    planned_steps,
)

ROOT = Path(__file__).resolve().parents[2]
DURATION = r"\d+:\d{2}(?::\d{2})?"
PLAIN = re.compile(
    rf"^(search|confirmation): (\d+)/(\d+) steps, ({DURATION}) elapsed, ({DURATION}|\?) left, "
    r"(\d+) trials: (\d+) finished, (\d+) stopped, (\d+) failed, (\d+) running, (\d+) waiting"
    r"(?: \| best (\S+) (\S+) \(trial (\S+)\))?$",
    re.M,
)
# What Ray and MLflow print by default that a user of this tool need not read.
NOISE = {
    "configuration box": "Configuration for experiment",
    "results hint": "View detailed results here",
    "TensorBoard hint": "tensorboard --logdir",
    "checkpoint lines": "Checkpoint successfully created",
    "dedup notes": "Ray deduplicates logs",
    "token warning": "Token authentication is enabled",
    "MLflow's tables": "Creating initial MLflow database tables",
}


def trial(
    trial_id: str, status: str, step: int, fid: float | None = None, **more: float
) -> SimpleNamespace:
    """A Ray trial as the callbacks see it: its status and what it reported (min/max/last)."""
    analysis: dict[str, dict[str, float]] = {"step": {"max": step, "min": 0, "last": step}}
    for key, value in ({"eval/fid": fid} | more).items():
        if value is not None:
            analysis[key] = {"min": value, "max": value, "last": value}
    return SimpleNamespace(trial_id=trial_id, status=status, metric_analysis=analysis)


# -- the estimate: closed forms ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "rungs", "keep", "expected"),
    [
        (0, [], [], 900),  # no early stopping: every trial runs to the end
        (300, [], [], 900),
        (0, [300], [1 / 3], 300 + 600 / 3),  # ASHA keeps a third at its rung
        (300, [300], [1 / 3], 300 + 600 / 3),  # at the rung: not decided yet
        (0, [100, 300], [1 / 3, 1 / 3], 100 + 200 / 3 + 600 / 9),
        (100, [100, 300], [1 / 2, 1 / 3], 100 + 200 / 2 + 600 / 6),
        (300, [100, 300], [1 / 2, 1 / 3], 300 + 600 / 3),  # past the first rung: it counts no more
        (900, [100, 300], [1 / 3, 1 / 3], 900),
    ],
)
def test_expected_steps_count_the_rungs_ahead(
    step: int, rungs: list[int], keep: list[float], expected: float
) -> None:
    assert expected_steps(step, rungs, 900, keep) == pytest.approx(expected)


def test_keep_shares_start_at_one_over_the_reduction_and_follow_the_trials() -> None:
    assert keep_shares([], [300], 3) == [pytest.approx(1 / 3)]
    trials = [
        trial("a", "TERMINATED", 900),  # passed 300
        trial("b", "RUNNING", 900),  # passed 300 (reported its last step)
        trial("c", "TERMINATED", 300),  # stopped at 300
        trial("d", "RUNNING", 300),  # at the rung: not decided
        trial("e", "ERROR", 900),  # failed: no evidence about the rung
        trial("f", "PENDING", 0),
    ]
    assert keep_shares(trials, [300], 3) == [pytest.approx((2 + 1) / (3 + 3))]


def test_planned_steps_add_what_ended_what_runs_and_what_is_not_created() -> None:
    trials = [
        trial("a", "TERMINATED", 900),
        trial("c", "TERMINATED", 300),
        trial("d", "RUNNING", 300),
        trial("e", "ERROR", 120),
    ]
    keep = (1 + 1) / (2 + 3)  # a passed, c stopped
    done, planned = planned_steps(trials, total=6, final=900, rungs=[300], reduction=3)
    assert done == 900 + 300 + 300 + 120
    new = 300 + 600 * keep
    assert planned == pytest.approx(900 + 300 + (300 + 600 * keep) + 120 + 2 * new)
    done, planned = planned_steps(trials, total=4, final=900, rungs=[], reduction=3)
    assert planned == 900 + 300 + 900 + 120  # no rungs: the running trial goes to the end


def test_counts_add_up_to_the_total_in_the_leaderboards_words() -> None:
    trials = [
        trial("a", "TERMINATED", 900),
        trial("b", "TERMINATED", 300),
        trial("c", "ERROR", 300),
        trial("d", "RUNNING", 300),
        trial("e", "PAUSED", 300),
        trial("f", "PENDING", 0),
    ]
    found = counts(trials, total=8, final=900)
    assert found == {"finished": 1, "stopped": 1, "failed": 1, "running": 2, "waiting": 3}
    assert sum(found.values()) == 8


def test_best_so_far_skips_failed_trials_and_follows_the_mode() -> None:
    trials = [
        trial("a", "TERMINATED", 900, fid=12.0),
        trial("b", "ERROR", 300, fid=3.0),  # failed: never the best
        trial("c", "RUNNING", 300, fid=10.0),
        trial("d", "RUNNING", 0),
        trial("e", "TERMINATED", 300, fid=float("nan")),
    ]
    assert best_so_far(trials, "eval/fid", "min") == (10.0, "c")
    assert best_so_far(trials, "eval/fid", "max") == (12.0, "a")
    assert best_so_far(trials, "eval/acc", "max") is None


# -- the line, off and on a terminal ---------------------------------------------------------------
def _stage(rungs: list[int] | None = None) -> StageProgress:
    return StageProgress("search", 4, 900, [300] if rungs is None else rungs, 3, "eval/fid", "min")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_plain_line_has_the_counts_the_best_and_an_estimate_from_the_steps() -> None:
    stage = _stage(rungs=[])
    stage.setup()
    trials = [trial("a", "TERMINATED", 900, fid=14.5), trial("b", "RUNNING", 300, fid=15.0)]
    first = stage.plain_line([trial("a", "PENDING", 0)], stage._start)  # before any step
    assert PLAIN.match(first) and first.split(" left")[0].endswith("?")
    line = stage.plain_line(trials, stage._start + 60)
    (match,) = PLAIN.finditer(line)
    assert match[1] == "search" and (match[2], match[3]) == ("1200", "3600")
    assert match[4] == "01:00"
    # 1200 steps in 60 s, 2400 left: 120 s
    assert match[5] == "02:00"
    numbers = [int(match[i]) for i in range(7, 12)]
    assert numbers == [1, 0, 0, 1, 2] and sum(numbers) == int(match[6]) == 4
    assert match.group(12, 13, 14) == ("eval/fid", "14.5", "a")


def test_a_resumed_stage_times_only_the_steps_this_driver_sees() -> None:
    stage = _stage(rungs=[])
    stage.setup()
    before = [trial("a", "TERMINATED", 900), trial("b", "PENDING", 0)]
    stage.measure(before)  # the restored trials at the first step
    after = [trial("a", "TERMINATED", 900), trial("b", "RUNNING", 300)]
    (match,) = PLAIN.finditer(stage.plain_line(after, stage._start + 30))
    # 300 steps in 30 s and 2400 left (b's 600 and two trials not created): 240 s, not the 60 s
    # that 1200 steps in 30 s would say
    assert (match[2], match[3], match[5]) == ("1200", "3600", "04:00")


def test_off_a_terminal_a_line_every_period_and_one_at_the_end(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    console.configure(every=3600)
    stage = _stage()
    stage.setup()
    trials = [trial("a", "RUNNING", 300, fid=15.0)]
    for _ in range(3):
        stage.on_step_end(0, trials)
    assert capsys.readouterr().out == ""
    console.configure(every=1e-9)
    stage.on_step_end(1, trials)
    stage.on_step_end(2, trials)
    assert len(capsys.readouterr().out.splitlines()) == 2
    ended = [trial("a", "TERMINATED", 900, fid=14.0)] + [trial(x, "ERROR", 0) for x in "bcd"]
    stage.on_experiment_end(ended)
    stage.on_step_end(3, ended)  # nothing after the end
    (line,) = capsys.readouterr().out.splitlines()
    (match,) = PLAIN.finditer(line)
    assert [int(match[i]) for i in range(7, 12)] == [1, 0, 3, 0, 0]
    assert match[5] == "00:00"
    console.configure()


def test_on_a_terminal_one_line_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setattr(progress, "REDRAW_S", 0.0)
    stage = _stage()
    stage.setup()
    stage.on_step_end(0, [trial("a", "RUNNING", 0)])
    stage.on_step_end(1, [trial("a", "RUNNING", 300, fid=15.0)])
    pickle.loads(pickle.dumps(stage))  # (Ray keeps the callbacks in tuner.pkl: no bar in there)
    stage.on_experiment_end([trial("a", "TERMINATED", 900, fid=14.0)])
    text = screen.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, redrawn with \r
    final = text.rstrip("\n").rsplit("\r", 1)[-1]
    # three trials not created: each 300 steps, then 600 with the rung's share (1 + 1)/(1 + 3)
    assert final.startswith("search ") and "900/2700 steps" in final
    assert "4 trials: 1 finished, 0 stopped, 0 failed, 0 running, 3 waiting" in final
    assert "best eval/fid 14 (trial a)" in final


@pytest.mark.parametrize("verbose", [False, True])
def test_the_projects_detail_lines_only_with_verbose(
    verbose: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    console.configure(verbose=verbose)
    try:
        LOG.info("[diffsearch] trial a step 300: eval/fid 15")
        LOG.warning("[diffsearch] trial b ended FAILED at step 7: DivergenceError")
        out = capsys.readouterr().out.splitlines()
        failed = "[diffsearch] trial b ended FAILED at step 7: DivergenceError"
        assert out == (["[diffsearch] trial a step 300: eval/fid 15"] if verbose else []) + [failed]
    finally:
        console.configure()
        LOG.setLevel(logging.NOTSET)


@pytest.mark.parametrize("every", ["0", "-5", "nan", "inf"])
def test_a_bad_progress_period_is_one_line_and_writes_nothing(
    every: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--smoke-test", "--progress-every", every]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: --progress-every {float(every):g} is not allowed")
    assert list(tmp_path.iterdir()) == []


# -- a smoke search's terminal -----------------------------------------------------------------
def _search(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tuner.run", "--smoke-test", "--storage", str(tmp_path / "ray")]
    cmd += ["--mlflow-uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db", *extra]
    env = os.environ | {"PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}
    # as from a user's shell: a Ray started in this test process (an earlier test) sets
    # RAY_AUTH_MODE in its environment, and Ray says nothing of its token when that is set
    env.pop("RAY_AUTH_MODE", None)
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _leaderboard(out: str) -> list[tuple[str, int]]:
    """(status, steps) of each row of the search's leaderboard as the run printed it."""
    rows = []
    for line in out[out.index("leaderboard (") :].splitlines()[2:]:
        if not line[:1].isdigit():
            break
        rows.append((line.split()[2], int(line.split()[-1])))
    return rows


def _ends_in_one_screen(out: str) -> None:
    """After the search: the leaderboard, the importances, the early-stopping check, the
    confirmation's verdict and the three commands that go further, in this order, and nothing
    after them."""
    end = out[out.index("\nleaderboard (") :]
    parts = ["leaderboard (", "parameter importance", "early stopping check", "confirmed on"]
    parts += ["verdict: ", "\nretrain the winner (trial ", "\nopen MLflow, then the review link"]
    parts += ["\nopen the Optuna study "]
    assert [end.index(p) for p in parts] == sorted(end.index(p) for p in parts)
    last = out.rstrip("\n").splitlines()[-1]
    assert last.startswith("open the Optuna study ") and " optuna-dashboard sqlite:///" in last


def test_a_smoke_search_off_a_terminal_shows_its_progress_and_none_of_rays_output(
    tmp_path: Path,
) -> None:
    out = _search(tmp_path, "--progress-every", "1")
    # the confirmation: the top trials, the baseline and the reference on each fresh seed
    totals = {
        "search": SMOKE_NUM_SAMPLES,
        "confirmation": (SMOKE_CONFIRM + 2) * SMOKE_CONFIRM_SEEDS,
    }
    lines = {stage: [m for m in PLAIN.finditer(out.stdout) if m[1] == stage] for stage in totals}
    for stage, found in lines.items():
        assert len(found) >= 2, (stage, out.stdout)
        for match in found:
            numbers = [int(match[i]) for i in range(7, 12)]
            assert int(match[6]) == totals[stage] == sum(numbers), match[0]
            assert int(match[2]) <= int(match[3])
        assert any(match[5] != "?" for match in found), stage  # an estimate once steps are done
        last = [int(found[-1][i]) for i in range(7, 12)]
        assert last[3:] == [0, 0]  # nothing running or waiting at the stage's end
    board = _leaderboard(out.stdout)
    statuses = [status for status, _ in board]
    final = [int(lines["search"][-1][i]) for i in range(7, 10)]
    assert final == [statuses.count(s) for s in ("FINISHED", "KILLED", "FAILED")]
    # the steps done at the end are the trials' steps, the leaderboard's last column
    assert int(lines["search"][-1][2]) == sum(steps for _, steps in board)
    assert int(lines["search"][-1][2]) == int(lines["search"][-1][3])
    assert {steps for status, steps in board if status == "FINISHED"} <= {SMOKE["train.steps"]}
    text = out.stdout + out.stderr
    for what, needle in NOISE.items():
        assert needle not in text, what
    assert "[diffsearch] trial " not in text  # the lines per evaluation: --verbose
    assert out.stderr == ""
    _ends_in_one_screen(out.stdout)


def test_verbose_shows_rays_and_mlflows_own_output_again(tmp_path: Path) -> None:
    out = _search(tmp_path, "--verbose", "--confirm", "0")
    text = out.stdout + out.stderr
    for what, needle in NOISE.items():
        if what != "dedup notes":  # (only where Ray saw a line repeat)
            assert needle in text, what
    assert re.search(r"^\[diffsearch\] trial \S+ step 20: eval/fid ", out.stdout, re.M)
    assert re.search(r"^\[diffsearch\] trial \S+ ended FINISHED at step 40 ", out.stdout, re.M)


# -- the default search's terminal, as README shows it -------------------------------------------
def test_the_default_searchs_terminal_is_under_80_lines_and_ends_in_one_screen() -> None:
    run = json.loads((ROOT / "bench/results/default_run.json").read_text())["raw"]
    screen = run["screen"]
    assert run["returncode"] == 0 and run["search_command"] == "python -m tuner.run --confirm 2"
    assert len(screen) < 80
    text = "\n".join(screen)
    for what, needle in NOISE.items():
        assert needle not in text, what
    _ends_in_one_screen(text)
    live = re.compile(rf"^(search|confirmation) \S+ (\d+)/(\d+) steps {DURATION}<{DURATION}, ")
    stages = [m for m in map(live.match, screen) if m]
    assert [m[1] for m in stages] == ["search", "confirmation"]  # one line each, left at the end
    assert all(m[2] == m[3] for m in stages)  # every planned step done
