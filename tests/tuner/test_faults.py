"""Faults a person causes (issue 29): Ctrl-C, two searches in one folder, a full disk, a damaged
store, and a trial failure that would repeat. The search-level tests run smoke searches as a user
would, in a subprocess; the rest needs no Ray."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_spaces import SMOKE_NUM_SAMPLES
from tuner.records import TrialRow
from tuner.search import faults
from tuner.search.checks import sqlite_problem
from tuner.search.cli import build_parser, main
from tuner.search.confirm import choose, load_or_choose, stage_name
from tuner.search.locks import hold_experiment
from tuner.search.options import UsageError
from tuner.search.plan import make_plan
from tuner.tracking.store import io_problem

ROOT = Path(__file__).resolve().parents[2]
SMOKE = [sys.executable, "-m", "tuner.run", "--smoke-test"]


# -- what needs no Ray ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/d/f"), "no space left on device: /d/f"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only file system: /where"),
        (RuntimeError("(sqlite3.OperationalError) database or disk is full"), "no space left on "
         "device: /where"),
        ("OSError: [Errno 28] Error writing bytes to file.", "no space left on device: /where"),
        (OSError(errno.ENOENT, "No such file or directory", "/d/f"), None),
        (ValueError("loss became nan at step 3"), None),
    ],
)  # fmt: skip
def test_io_faults_are_named_with_their_path(error: BaseException | str, said: str | None) -> None:
    assert io_problem(error, "/where") == said


def test_an_io_fault_is_found_among_the_causes() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/src", None, "/dst")
        except OSError as inner:
            raise RuntimeError("copying the best checkpoint failed") from inner
    except RuntimeError as outer:
        assert io_problem(outer, "/where") == "no space left on device: /dst"  # the destination


def _plan(tmp: Path, *argv: str):  # noqa: ANN202 - a Plan
    args = ["--smoke-test", "--storage", str(tmp / "ray"), "--mlflow-uri"]
    args += [f"sqlite:///{tmp}/mlruns/mlflow.db", *argv]
    return make_plan(build_parser().parse_args(args))


HOLD = """
import sys, time
from tuner.search.cli import build_parser
from tuner.search.locks import hold_experiment
from tuner.search.plan import make_plan
hold_experiment(make_plan(build_parser().parse_args(sys.argv[1:])))
print("held", flush=True)
time.sleep(60)
"""


def test_a_held_experiment_refuses_a_second_driver_naming_it_and_its_pid(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    argv = ["--smoke-test", "--storage", str(tmp_path / "ray")]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, *argv, "--mlflow-uri", plan.mlflow_uri],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(tmp_path.rglob("*"))
        with pytest.raises(UsageError) as refused:
            hold_experiment(plan)
        said = str(refused.value)
        assert f"another search is running in {plan.experiment_dir}: {plan.name}" in said
        assert f"(pid {holder.pid} on " in said
        assert sorted(tmp_path.rglob("*")) == before  # touched nothing
    finally:
        holder.kill()
        holder.wait()
    hold_experiment(plan)  # the kernel let the lock go with its holder


def _store(path: Path, revision: str | None, tables: tuple[str, ...] = ("studies",)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        for table in tables:
            db.execute(f"CREATE TABLE {table} (x)")
        if revision is not None:
            db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
            db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
        db.commit()


@pytest.mark.parametrize(
    ("revision", "said"),
    [
        ("v3.0.0.d", "has an older optuna schema (revision v3.0.0.d; optuna "),
        ("v99.0.0.z", "was written by a newer optuna (schema revision v99.0.0.z, unknown to"),
        (None, "holds tables but no optuna schema revision"),
    ],
)
def test_a_store_of_another_schema_is_named(
    revision: str | None, said: str, tmp_path: Path
) -> None:
    _store(tmp_path / "optuna.db", revision)
    assert said in sqlite_problem(tmp_path / "optuna.db", "optuna")


def test_an_empty_or_absent_store_is_fine(tmp_path: Path) -> None:
    assert sqlite_problem(tmp_path / "none.db", "mlflow") is None
    (tmp_path / "empty.db").write_bytes(b"")
    assert sqlite_problem(tmp_path / "empty.db", "mlflow") is None


def test_a_store_whose_writer_was_killed_mid_transaction_is_fine(tmp_path: Path) -> None:
    """A search killed while MLflow wrote leaves a hot journal beside its store; SQLite rolls it
    back on the next read-write open, so the store is not called damaged."""
    path = tmp_path / "mlflow.db"
    _store(path, "v1")
    writer = (
        "import os, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "db.execute('PRAGMA cache_size = 1')\n"  # so the open transaction spills into the file
        "db.executemany('INSERT INTO studies VALUES (?)', [('x' * 4000,)] * 50)\n"
        "os._exit(0)\n"  # no commit, no rollback: the journal stays hot
    )
    subprocess.run([sys.executable, "-c", writer, str(path)], check=True)
    assert (tmp_path / "mlflow.db-journal").exists()
    read_only = contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))
    with read_only as db, pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("SELECT * FROM studies").fetchall()  # why a read-only check would fail
    # opened and read: only its (made-up) schema revision is named, not the file
    assert "was written by a newer mlflow (schema revision v1," in sqlite_problem(path, "mlflow")
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT * FROM studies").fetchall() == []  # rolled back


@pytest.mark.parametrize("dry", [True, False])
@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("mlflow.db", "--mlflow-uri sqlite:///{tmp}/mlruns/mlflow.db: {tmp}/mlruns/mlflow.db is "
         "not an SQLite database mlflow can open (file is not a database)"),
        ("optuna.db", "the Optuna study store (kept beside --mlflow-uri's): {tmp}/mlruns/optuna.db "
         "is not an SQLite database optuna can open (file is not a database)"),
        ("newer-optuna.db", "{tmp}/mlruns/optuna.db was written by a newer optuna"),
    ],
)  # fmt: skip
def test_a_damaged_store_is_refused_before_ray_starts(
    damage: str,
    said: str,
    dry: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mlruns = tmp_path / "mlruns"
    mlruns.mkdir()
    if damage.startswith("newer-"):
        _store(mlruns / damage.removeprefix("newer-"), "v99.0.0.z")
    else:
        (mlruns / damage).write_bytes(os.urandom(4096))
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    argv = ["--smoke-test", "--storage", str(tmp_path / "ray")]
    argv += ["--mlflow-uri", f"sqlite:///{mlruns}/mlflow.db"] + (["--dry-run"] if dry else [])
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error: "), captured
    assert said.format(tmp=tmp_path) in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing created


@contextlib.contextmanager
def _read_only(path: Path):  # noqa: ANN202 - the path, read-only while the block runs
    """`path` (a file or a folder) read-only, through a read-only bind mount (root only: to root
    permission bits say nothing)."""
    for command in (["mount", "--bind", path, path], ["mount", "-o", "remount,ro,bind", path]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", path], capture_output=True)
            pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("store", "--mlflow-uri sqlite:///{tmp}/mlruns/mlflow.db: {tmp}/mlruns/mlflow.db cannot "
         "be written (Read-only file system)"),
        ("experiment", "the experiment folder {exp} cannot be written (Read-only file system: "),
    ],
)  # fmt: skip
def test_an_unwritable_store_or_experiment_folder_is_refused(
    what: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path)
    store = tmp_path / "mlruns" / "mlflow.db"
    _store(store, None, tables=())  # an empty database: fine when it can be written
    exp = Path(plan.experiment_dir)
    exp.mkdir(parents=True)
    before = sorted(tmp_path.rglob("*"))
    argv = ["--smoke-test", "--storage", str(tmp_path / "ray"), "--mlflow-uri", plan.mlflow_uri]
    with _read_only(store if what == "store" else exp):
        assert main([*argv, "--dry-run"]) == 2
        lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and said.format(tmp=tmp_path, exp=exp) in lines[0], lines
    assert sorted(tmp_path.rglob("*")) == before


def test_a_confirmation_chosen_from_another_ranking_is_chosen_again(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    config = {"weighting.p": 0.5}
    rows = [
        TrialRow(t, "FINISHED", b, b, 900, [(900, b)], config | {"seed": 0, "x": t}, {})
        for t, b in (("aaa", 1.0), ("bbb", 2.0))
    ]
    first = load_or_choose(plan, rows)  # the top trial is aaa
    stage = Path(plan.storage, stage_name(plan))
    (stage / "trial_x").mkdir(parents=True)  # its Ray stage, under way
    assert load_or_choose(plan, rows) == first and stage.exists()  # the same ranking: kept
    rows[0].best = 3.0  # the search went on: bbb is now the best
    again = load_or_choose(plan, sorted(rows, key=lambda r: r.best))
    assert list(again["trials"]) == ["trial bbb"] != list(first["trials"])
    assert again == json.loads(json.dumps(choose(plan, sorted(rows, key=lambda r: r.best))))
    assert not stage.exists()  # the stage trained on the old choice is gone


def test_a_second_ctrl_c_stops_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def exit_now(status: int) -> None:
        raise SystemExit(status)

    monkeypatch.setattr(faults.os, "_exit", exit_now)
    monkeypatch.setitem(faults._stop, "kind", None)
    monkeypatch.setitem(faults._stop, "fitting", False)
    with pytest.raises(KeyboardInterrupt):  # the first, outside Ray's loop: unwinds now
        faults._on_sigint(signal.SIGINT, None)
    assert faults.stop_requested() == (faults.INTERRUPT, "interrupted by Ctrl-C")
    with pytest.raises(SystemExit) as second:
        faults._on_sigint(signal.SIGINT, None)
    assert second.value.code == 130
    assert capsys.readouterr().err.splitlines() == [
        "stopping: saving the search's state (Ctrl-C again to stop at once)",
        "second Ctrl-C: stopped at once",
    ]


def test_the_stop_line_says_how_to_continue() -> None:
    argv = ["--smoke-test", "--resume", "--name", "a b"]
    line = faults.resume_line(faults.Stopped(faults.INTERRUPT, "x"), argv, saved=True)
    assert line == (
        "interrupted (Ctrl-C): continue it with: python -m tuner.run --smoke-test --name 'a b' "
        "--resume"
    )
    stop = faults.Stopped(faults.IO, "no space left on device: /d")
    line = faults.resume_line(stop, ["--smoke-test"], saved=False)
    assert line.startswith("error: no space left on device: /d; free space there")
    assert line.endswith("start it again with: python -m tuner.run --smoke-test")


# -- searches, as a user runs them ---------------------------------------------------------------
def _runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def _start(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as f:
        return subprocess.Popen(
            SMOKE + argv, cwd=cwd, env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=f,
            stderr=subprocess.STDOUT, start_new_session=True,  # a group of its own, as a shell's job
        )  # fmt: skip


def _wait_for_checkpoint(storage: Path, driver: subprocess.Popen, limit: float = 300) -> None:
    """Until a trial of the search under `storage` has saved its first checkpoint (a training
    step, an evaluation and a write behind it)."""
    deadline = time.monotonic() + limit
    while not any(storage.glob("*/trial_*/checkpoint_000000")):
        assert driver.poll() is None, f"the search ended ({driver.returncode}) before a checkpoint"
        assert time.monotonic() < deadline, f"no checkpoint under {storage} in {limit:g} s"
        time.sleep(0.1)


def _end(driver: subprocess.Popen) -> int:
    try:
        return driver.wait(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)


def _saved_status(experiment: Path) -> dict[str, str]:
    """Each trial's status in the experiment state Ray saved last."""
    (state,) = experiment.glob("experiment_state-*.json")
    trials = [json.loads(t) for t, _ in json.loads(state.read_text())["trial_data"]]
    return {t["trial_id"]: t["status"] for t in trials}


def test_ctrl_c_stops_cleanly_and_a_resume_confirms_the_completed_search(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    argv = ["--storage", str(tmp_path / "ray"), "--mlflow-uri", uri]
    driver = _start(argv, ROOT, tmp_path / "first.log")
    _wait_for_checkpoint(tmp_path / "ray", driver)
    os.killpg(driver.pid, signal.SIGINT)  # as a terminal sends it: to the whole group
    assert _end(driver) == 130
    out = (tmp_path / "first.log").read_text()
    assert "Traceback" not in out and "leaderboard" not in out and "confirmation:" not in out
    resume = [line for line in out.splitlines() if "--resume" in line]
    assert resume == [f"interrupted (Ctrl-C): continue it with: python -m tuner.run "
                      f"--smoke-test {' '.join(argv)} --resume"], out[-3000:]  # fmt: skip
    (experiment,) = (tmp_path / "ray").iterdir()
    assert not (experiment / "verdict.json").exists() and not (experiment / "best.json").exists()
    status = _saved_status(experiment)
    assert set(status.values()) & {"RUNNING", "PENDING"}  # what the resume continues
    for run in _runs(uri):
        tags, state = run.data.tags, run.info.status
        assert state != "RUNNING"
        if tags["diffsearch.role"] == "search" or status.get(tags["ray.trial_id"]) != "TERMINATED":
            assert state == "KILLED" and tags["diffsearch.end"].startswith(
                "interrupted by Ctrl-C"
            ), tags  # never "stopped by ASHA"
    last = subprocess.run(
        SMOKE + argv + ["--resume"], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    # The completed search's own best trial is the one confirmed (K = 1 in a smoke search).
    board = (experiment / "leaderboard.txt").read_text().splitlines()
    best = board[1].split()[1]
    verdict = json.loads((experiment / "verdict.json").read_text())
    assert [c["trial"] for c in verdict["candidates"]] == [best]
    runs = _runs(uri)
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}
    assert not any("Ctrl-C" in r.data.tags.get("diffsearch.end", "") for r in runs)
    trials = [
        r.data.tags["ray.trial_id"] for r in runs if r.data.tags["diffsearch.role"] == "trial"
    ]
    assert len(trials) == len(set(trials))  # one run per trial


def test_two_identical_searches_started_together_run_once(tmp_path: Path) -> None:
    argv = ["--confirm", "0"]  # in a fresh folder: the default stores and ./ray_results
    first, second = (_start(argv, tmp_path, tmp_path / f"{n}.log") for n in ("a", "b"))
    ends = {_end(first): "a", _end(second): "b"}
    assert set(ends) == {0, 2}, ends
    refused = (tmp_path / f"{ends[2]}.log").read_text().splitlines()
    assert len(refused) == 1, refused
    assert re.match(
        rf"error: another search is running in {tmp_path}/ray_results/\S+: \S+ \(pid \d+ on ",
        refused[0],
    ), refused
    runs = _runs(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    trials = [r for r in runs if r.data.tags["diffsearch.role"] == "trial"]
    assert len(runs) - len(trials) == 1 and len(trials) == SMOKE_NUM_SAMPLES
    for run in trials:  # every evaluation logged once
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/fid")]
        assert steps and len(steps) == len(set(steps))
    (experiment,) = (tmp_path / "ray_results").iterdir()
    assert len(list(experiment.glob("trial_*"))) == SMOKE_NUM_SAMPLES


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201 - a folder on a 48 MiB tmpfs
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", disk], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", disk], check=True)


def test_a_full_disk_ends_in_one_line_and_leaves_no_run_running(small_disk: Path) -> None:
    uri = f"sqlite:///{small_disk}/mlruns/mlflow.db"
    argv = ["--storage", str(small_disk / "ray"), "--mlflow-uri", uri, "--confirm", "0"]
    log = small_disk.parent / "search.log"
    driver = _start(argv, ROOT, log)
    _wait_for_checkpoint(small_disk / "ray", driver)
    with (small_disk / "filler").open("wb") as f, contextlib.suppress(OSError):
        while True:  # the disk is full from here on
            f.write(b"\0" * (1 << 20))
    assert _end(driver) == 1
    out = log.read_text()
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert errors and errors[0].startswith(f"error: no space left on device: {small_disk}/")
    assert len(errors) == 1 and "Traceback" not in out, out[-3000:]
    assert errors[0].endswith("--resume"), errors
    runs = _runs(uri)
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED", "FAILED"}  # none RUNNING
    failed = [r.data.tags for r in runs if r.info.status == "FAILED"]
    assert any(t["diffsearch.role"] == "search" for t in failed)  # the parent, and the trials
    for tags in failed:  # it was training: the fault, not a scheduler, ended it
        assert tags["diffsearch.end"].startswith("no space left on device: "), tags


DIVERGING = """
import sys
import search_spaces
from search_spaces.budgets import SMOKE
from tuner.search.cli import main

search_spaces.SPACES["diverging"] = {
    "description": "test only", "data": "ring8", "search": "grid", "num_samples": 1,
    "params": {}, "fixed": SMOKE | {"train.warmup": 0, "train.lr": 1e6},
}
sys.exit(main(sys.argv[1:]))
"""


def test_a_diverging_trial_is_tried_once_and_said_in_one_line(tmp_path: Path) -> None:
    argv = ["--space", "diverging", "--scheduler", "fifo", "--max-failures", "3"]
    argv += ["--storage", str(tmp_path / "ray"), "--mlflow-uri", f"sqlite:///{tmp_path}/m/m.db"]
    out = subprocess.run(
        [sys.executable, "-c", DIVERGING, *argv], cwd=ROOT, capture_output=True, text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=300,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]  # no trial produced the metric
    said = [line for line in text.splitlines() if "DivergenceError" in line]
    assert len(said) == 1 and "Traceback" not in text, text[-3000:]
    assert re.match(
        r"\[diffsearch\] trial \S+ ended FAILED at step (\d+): \S*DivergenceError: loss became "
        r"\S+ at step \1 ",
        said[0],
    ), said
    (error,) = (tmp_path / "ray").glob("*/trial_*/error.txt")
    assert error.read_text().count("Failure #") == 1  # one attempt of the 4 allowed
