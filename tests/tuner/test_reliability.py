"""Reliability (issue 6): bad input, damaged checkpoints and security defaults, on CPU.

Cases already proven elsewhere (see docs/reliability.md): a diverging trial under the search
(tests/tuner/test_run.py::test_diverging_trial_errors_fails_in_mlflow_and_is_never_best), a
killed driver resumed (tests/tuner/test_run.py::test_resume_after_killed_driver_loses_and_reruns_nothing
and test_mlflow_rows_of_the_search), and the cluster YAMLs validating
(tests/tuner/test_cluster.py::test_cluster_yaml_validates_against_ray_schema).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from tuner.run import main
from tuner.train import STATE_FILE, run_trial

ROOT = Path(__file__).resolve().parents[2]


# -- 5. bad input: one line naming the value, exit status 2, nothing written --------------------
def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--space", "nope"], "--space 'nope' is not known; choose one of"),
        (["--set", "data=mnist"], 'data="mnist" is not allowed; expected one of'),
        (["--set", "weighting=snr"], 'weighting="snr" is not allowed; expected one of constant'),
        (["--set", "sampler=euler"], 'sampler="euler" is not allowed; expected one of ddim'),
        (["--set", "nokey=1"], "unknown key 'nokey'"),
        (["--set", "train.lr=-1"], "train.lr=-1 is not allowed; expected a number in"),
        (["--set", "train.steps=abc"], 'train.steps="abc" is not allowed; expected an integer'),
        (["--num-samples", "x"], "--num-samples: invalid int value: 'x'"),
        (["--set", "weighting.p"], "malformed --set 'weighting.p'"),
        (["--set", "data=folder:{tmp}/missing"], "folder {tmp}/missing does not exist"),
        (["--set", "data=folder:{tmp}/noimages"], "holds fewer than 2 images with extensions"),
        (["--mlflow-uri", "http://127.0.0.1:{port}"], "is unreachable"),
        (["--mlflow-uri", "sqlite:///{tmp}/afile/m.db"], "its folder is not one this user"),
        (["--storage", "{tmp}/afile/results"], "--storage {tmp}/afile/results is not a folder"),
        (["--resume", "--smoke-test"], "--resume: no search to resume at {tmp}/ray_results/"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "noimages").mkdir()
    (tmp_path / "noimages" / "notes.txt").write_text("no pictures here")
    (tmp_path / "afile").write_text("a file, not a folder")
    before = sorted(tmp_path.rglob("*"))
    fill = {"tmp": str(tmp_path), "port": str(_refused_port())}
    monkeypatch.chdir(tmp_path)
    assert main([a.format(**fill) for a in argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert needle.format(**fill) in lines[0]
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_cluster_yaml_that_does_not_validate_is_rejected_naming_the_field() -> None:
    """`ray up` validates the file against Ray's schema before it starts anything."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text())
    config["max_workers"] = "many"
    with pytest.raises(Exception, match="many"):
        validate_config(prepare_config(config))


# -- 4. damaged checkpoint: named, then an older checkpoint or step 0, never a wrong resume -----
def _steps_of_run(config: dict, candidates: list[Path], out: Path) -> tuple[list[int], list[str]]:
    from tuner.trainable import run_with_fallback

    steps: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_with_fallback(
            config | {"train.steps": 60}, out, lambda m, c: steps.append(int(m["step"])), candidates
        )
    return steps, [str(w.message) for w in caught if "checkpoint" in str(w.message)]


def test_damaged_checkpoint_falls_back_to_the_previous_one_then_step_0(
    tiny: dict, tmp_path: Path
) -> None:
    run_trial(tiny, tmp_path / "first")  # checkpoints at steps 20 and 40
    ck20, ck40 = (tmp_path / "first" / f"checkpoint_{s:07d}" for s in (20, 40))
    data = (ck40 / STATE_FILE).read_bytes()
    (ck40 / STATE_FILE).write_bytes(data[: len(data) // 2])  # truncated

    steps, warned = _steps_of_run(tiny, [ck40, ck20], tmp_path / "resumed")
    assert steps == [40, 60]  # resumed at step 20, the previous checkpoint
    assert len(warned) == 1 and f"checkpoint {ck40 / STATE_FILE} is damaged" in warned[0]

    (ck20 / STATE_FILE).write_bytes(b"not a checkpoint at all")  # corrupt
    steps, warned = _steps_of_run(tiny, [ck40, ck20], tmp_path / "restarted")
    assert steps == [20, 40, 60]  # nothing loads: restarted from step 0
    assert len(warned) == 2 and str(ck20 / STATE_FILE) in warned[1]


# -- 6. security defaults ------------------------------------------------------------------------
def _python_files() -> list[Path]:
    return [
        p
        for d in ("tuner", "search_spaces", "bench", "models", "dev")
        for p in (ROOT / d).rglob("*.py")
        if ".venv" not in p.parts
    ]


def test_checkpoints_load_with_weights_only_and_nothing_is_unpickled() -> None:
    loads = 0
    for path in _python_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name == "torch.load":
                loads += 1
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert kw.get("weights_only") == "True", f"{path}:{node.lineno}"
            assert name not in ("pickle.load", "pickle.loads", "cloudpickle.load"), (
                f"{path}:{node.lineno}"
            )
            if name.endswith("np.load") or name == "numpy.load":
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                assert kw.get("allow_pickle", "False") == "False", f"{path}:{node.lineno}"
    assert loads >= 1


def test_services_bind_to_loopback() -> None:
    from tuner.tracking import ui_command

    assert "--host 127.0.0.1" in ui_command("sqlite:////tmp/mlruns/mlflow.db")
    import inspect

    from tuner.search import init_ray

    assert "include_dashboard=False" in inspect.getsource(init_ray)  # the local Ray: no dashboard
    for name in ("aws-gpu.yaml", "gcp-gpu.yaml"):
        head = " ".join(
            yaml.safe_load((ROOT / "cluster" / name).read_text())["head_start_ray_commands"]
        )
        assert "--dashboard-host=127.0.0.1" in head and "--host 127.0.0.1" in head
        assert "0.0.0.0" not in head


def test_cluster_files_open_no_port_to_the_world() -> None:
    for path in sorted((ROOT / "cluster").glob("*.yaml")):
        text = path.read_text()
        for doc in yaml.safe_load_all(text):
            flat = yaml.safe_dump(doc)
            assert not re.search(r"0\.0\.0\.0/0|::/0", flat), path.name  # ingress / sourceRanges
            assert "LoadBalancer" not in flat and "NodePort" not in flat, path.name
            assert "hostPort" not in flat, path.name
    aws = yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text())
    assert "IpPermissions" not in yaml.safe_dump(aws)  # no extra security-group ingress


def test_trainer_checkpoint_is_plain_tensors(tiny: dict) -> None:
    """What torch.load(weights_only=True) accepts: a state written by the Trainer loads back."""
    from tuner.train import Trainer

    buf = io.BytesIO()
    torch.save(Trainer(tiny).state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["step"] == 0


# -- 3. killed worker: the trial restarts from its last checkpoint, not from step 0 -------------
ONE_TRIAL_SEARCH = """
import sys
import search_spaces
from search_spaces import SMOKE
from tuner.run import main

search_spaces.SPACES["one_trial"] = {
    "description": "test only", "data": "ring8", "search": "grid", "num_samples": 1,
    "params": {}, "fixed": SMOKE | {"train.steps": 120, "eval.every": 20},
}
sys.exit(main(sys.argv[1:]))
"""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_text().replace("\0", " ")
    return ""


def test_killed_worker_restarts_the_trial_from_its_last_checkpoint(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    argv = ["--space", "one_trial", "--scheduler", "fifo", "--max-failures", "1"]
    argv += ["--storage", str(tmp_path / "ray"), "--mlflow-uri", uri, "--num-cpus", "1"]
    log = tmp_path / "driver.log"
    with log.open("w") as f:
        driver = subprocess.Popen(
            [sys.executable, "-c", ONE_TRIAL_SEARCH, *argv],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 240
        while " step 20: " not in log.read_text():  # the first checkpoint is reported
            assert driver.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "no evaluation in 240 s"
            time.sleep(0.05)
        workers = [p for p in _descendants(driver.pid) if "ImplicitFunc" in _cmdline(p)]
        assert workers, "the trial's worker process was not found"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert driver.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    (result,) = (tmp_path / "ray").glob("*/trial_*/result.json")
    rows = [json.loads(line) for line in result.read_text().splitlines()]
    steps = [r["step"] for r in rows]
    restarts = [r["step"] for r in rows if r["iterations_since_restore"] == 1]
    assert len(restarts) == 2, rows  # the first start and the restart after the kill
    assert restarts[1] > 20  # resumed from a checkpoint (step 20 or later), not from step 0
    assert steps == sorted(set(steps)) and steps[-1] == 120  # no step trained twice
