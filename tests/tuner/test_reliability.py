"""Reliability (issues 6 and 16): bad input, what the machine or the cluster cannot serve,
damaged checkpoints and security defaults, on CPU.

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
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from tuner.search.cli import main
from tuner.training.checkpoint import LAYOUT
from tuner.training.trainer import run_trial

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
        # a space without TIW (the default one's TIW needs a reference set a folder lacks)
        (
            ["--space", "snr_weighting", "--set", "data=folder:{tmp}/missing"],
            "folder {tmp}/missing does not exist",
        ),
        (
            ["--space", "snr_weighting", "--set", "data=folder:{tmp}/noimages"],
            "holds fewer than 2 images with extensions",
        ),
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


# -- 5b. what only the machine, the network or a running Ray can tell (issue 16) ----------------
# Each row of the issue, tried as a new user would: exit status 2 within the time limit, one
# stderr line naming the option and what was found, no traceback, nothing in the working folder,
# no process of ours left. Offline is a refused HTTPS proxy.
MARK = "DIFFSEARCH_TEST_RUN"  # in every process a test starts, and so in all of theirs


def _offline_env(tmp: Path, token: str) -> dict[str, str]:
    proxy = f"http://127.0.0.1:{_refused_port()}"
    return os.environ | {
        "PYTHONPATH": str(ROOT),
        "https_proxy": proxy,
        "HTTPS_PROXY": proxy,
        "no_proxy": "",
        MARK: token,
    }


def _ours(token: str) -> list[int]:
    """Processes whose environment carries our mark (reparented ones too)."""
    mark, found = f"{MARK}={token}".encode(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def _none_left(token: str, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while _ours(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _ours(token)


def _refused_cli(
    module: str, argv: list[str], tmp: Path, limit: float, env: dict[str, str] | None = None
) -> str:
    """Run `python -m module argv` in an empty working folder; check the refusal; its line."""
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    env = _offline_env(tmp, token) | (env or {}) | {MARK: token}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=limit + 30,
    )
    took = time.monotonic() - t0
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert took < limit, f"{took:.1f} s"
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(work.iterdir()) == []
    assert _none_left(token), [_cmdline(p) for p in _ours(token)]
    return lines[0]


def test_unanswered_address_is_one_line_within_30_s(tmp_path: Path) -> None:
    line = _refused_cli("tuner.run", ["--address", "127.0.0.1:1", "--smoke-test"], tmp_path, 30)
    # Ray dials 127.0.0.1 as this machine's outward address; the line says what it tried.
    said = r"error: --address 127\.0\.0\.1:1: no Ray answers at \S+:1"
    said += r"( \(Ray's address for 127\.0\.0\.1 on this machine\))?: connection refused"
    assert re.match(said + r" \(--connect-timeout 5 s\); start one with `ray start", line), line


def _local_gpus() -> int:
    from tuner.search.checks import local_gpus

    return local_gpus()


def _descendants_now() -> set[int]:
    return set(_descendants(os.getpid()))


@pytest.mark.parametrize("dry", [False, True])
@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (
            ["--gpus-per-trial", "{gpus}", "--smoke-test"],
            ["--gpus-per-trial {gpus} is more GPUs than any node has", "holds {cpus} CPUs and"],
        ),
        (
            ["--cpus-per-trial", "100", "--smoke-test"],
            ["--cpus-per-trial 100 is more CPUs than any node has", "holds {cpus} CPUs"],
        ),
        (
            ["--metric", "eval/nosuch", "--smoke-test"],
            [
                "--metric 'eval/nosuch' is not reported for data digits_biased; choose one of "
                "eval/fid, eval/kid, eval/mode_error, eval/minority_fraction, eval/minority_error"
            ],
        ),
        (
            ["--space", "debias_family_cifar10", "--smoke-test"],
            [
                "data cifar10_biased: CIFAR-10 is not under {home}/.cache/diffsearch/cifar10 and "
                "cannot be downloaded",
                "set data.root=PATH",
            ],
        ),  # fmt: skip
        (
            ["--storage", "/proc/diffsearch", "--smoke-test"],
            ["--storage /proc/diffsearch is not a folder this user can write", "/proc/diffsearch"],
        ),
        (["--seed", "-1"], ["--seed -1 is not allowed; expected an integer in [0, 4294967295]"]),
        (["--num-cpus", "0"], ["--num-cpus 0 is not allowed; expected an integer in [1, inf]"]),
        (
            ["--cpus-per-trial", "nan"],
            ["--cpus-per-trial nan is not allowed; expected a number in [0.0001, inf]"],
        ),
        (["--connect-timeout", "0"], ["--connect-timeout 0 is not allowed; expected a number"]),
        (["--name", "../elsewhere"], ["--name '../elsewhere' is not allowed; expected a folder"]),
        (["--address", "127.0.0.2:1", "--num-cpus", "2"], ["--num-cpus 2 sizes the local Ray"]),
        (["--address", "nohostport"], ["--address 'nohostport' is not allowed; expected auto"]),
        (["--address", "127.0.0.1:1", "--smoke-test"], ["no Ray answers at ", "refused"]),
        (
            ["--address", "127.0.0.2:{silent}", "--connect-timeout", "1.5", "--smoke-test"],
            ["no Ray answers at 127.0.0.2:{silent}: no answer within 1.5 s"],
        ),  # a port that accepts (the kernel does) and never answers
    ],
)
def test_what_the_machine_cannot_serve_is_refused_before_ray_starts(
    argv: list[str],
    needles: list[str],
    dry: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In-process (the checks run before Ray starts; no Ray is needed to know)."""
    import ray

    if not Path("/proc/self").exists() and "/proc/diffsearch" in argv:
        pytest.skip("no /proc here")
    home = tmp_path / "home"
    home.mkdir()
    proxy = f"http://127.0.0.1:{_refused_port()}"
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    silent = socket.socket()
    silent.bind(("127.0.0.2", 0))
    silent.listen()
    fill = {"gpus": str(_local_gpus() + 1), "cpus": str(os.cpu_count()), "home": str(home)}
    fill["silent"] = str(silent.getsockname()[1])
    before = _descendants_now()
    t0 = time.monotonic()
    with silent:
        assert main([a.format(**fill) for a in argv] + (["--dry-run"] if dry else [])) == 2
    assert time.monotonic() - t0 < (30 if "--address" in argv else 60)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error: "), captured
    for needle in needles:
        assert needle.format(**fill) in lines[0], lines[0]
    assert sorted(tmp_path.rglob("*")) == [home]  # nothing written, no empty data folder
    assert not ray.is_initialized() and _descendants_now() <= before


def test_offline_cifar10_download_leaves_no_empty_folder_and_suggests_no_download(
    tmp_path: Path,
) -> None:
    """tuner.train with data.download=true offline: one line, no DIR made, the offline fix."""
    root = tmp_path / "cifar" / "sub"
    argv = ["--set", "data=cifar10", "--set", "data.download=true", "--set", f"data.root={root}"]
    line = _refused_cli("tuner.train", argv, tmp_path, 60)
    assert f"CIFAR-10 is not under {root} and cannot be downloaded" in line
    assert "data.root=PATH" in line and "data.download=true" not in line
    assert not (tmp_path / "cifar").exists()


def test_missing_inception_weights_are_refused_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CIFAR-10 present (its seven files), Inception FID weights neither given, cached nor
    downloadable: one line naming eval.fid_weights, before any trial."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar" / CIFAR10.base_folder
    folder.mkdir(parents=True)
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        (folder / name).write_bytes(b"")
    (folder / CIFAR10.meta["filename"]).write_bytes(b"")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached weights there
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{_refused_port()}")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    argv = ["--space", "debias_family_cifar10", "--set", f"data.root={tmp_path / 'cifar'}"]
    cached = tmp_path / "torch" / "hub" / "checkpoints"
    for extra, needles in (
        ([], [f"Inception FID weights are not cached at {cached}", "--set eval.fid_weights=PATH"]),
        (["--set", "eval.fid_weights=/nonexistent.pth"], ["eval.fid_weights=/nonexistent.pth: no"]),
    ):
        assert main([*argv, *extra, "--smoke-test", "--dry-run"]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and all(n in lines[0] for n in needles), lines
    assert sorted(tmp_path.rglob("*")) == before


def test_failed_cifar10_download_removes_what_it_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server answered the check but the download broke halfway: the archive, the folder
    and the empty data.root it had made are gone, and the line says what to do offline."""
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    from tuner.data import presets as data

    root = tmp_path / "made" / "cifar"

    def broken(url: str, download_root: str, **kwargs: object) -> None:
        Path(download_root).mkdir(parents=True, exist_ok=True)
        (Path(download_root) / "cifar-10-python.tar.gz").write_bytes(b"half an archive")
        (Path(download_root) / "cifar-10-batches-py").mkdir()
        raise urllib.error.URLError("connection reset")

    monkeypatch.setattr(data, "url_problem", lambda url, timeout=5.0: None)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", broken)
    with pytest.raises(data.DataError) as err:
        data.load_dataset("cifar10", root=str(root), download=True)
    msg = str(err.value)
    assert msg.startswith(f"CIFAR-10 could not be downloaded into {root} (URLError: ")
    assert "data.root=PATH" in msg and "data.download=true" not in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()  # a data.root that was there before stays
    with pytest.raises(data.DataError):
        data.load_dataset("cifar10", root=str(tmp_path / "kept"), download=True)
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]


def test_check_of_a_writable_place_creates_and_removes(tmp_path: Path) -> None:
    from tuner.search.checks import write_problem

    assert write_problem(tmp_path / "a" / "b" / "c") is None
    assert list(tmp_path.iterdir()) == []  # the folders it made to try are gone
    (tmp_path / "afile").write_text("x")
    assert "Not a directory" in write_problem(tmp_path / "afile" / "below")
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_check_of_a_writable_place_races_another_check_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two searches started together check the same new folder at once (the race the test of
    two identical searches met): the other one making it, or removing it, is no problem."""
    import tempfile as tempfile_module

    from tuner.search import checks

    target, real_mkdir = tmp_path / "ray_results", Path.mkdir

    def made_by_the_other(self: Path, *args: object, **kw: object) -> None:
        real_mkdir(self)  # the other check makes it first
        raise FileExistsError(17, "File exists", str(self))

    monkeypatch.setattr(Path, "mkdir", made_by_the_other)
    assert checks.write_problem(target) is None
    assert target.is_dir()  # the other check's folder: left to it
    monkeypatch.setattr(Path, "mkdir", real_mkdir)
    target.rmdir()

    real_mkstemp, calls = tempfile_module.mkstemp, []

    def removed_by_the_other(*args: object, **kw: object) -> tuple[int, str]:
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory", str(target))
        return real_mkstemp(*args, **kw)

    monkeypatch.setattr(checks.tempfile, "mkstemp", removed_by_the_other)
    assert checks.write_problem(target) is None and len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_the_metric_list_is_what_the_trainer_reports(tiny: dict) -> None:
    """One list (tuner.evaluation.metrics): the trainer's evaluation reports exactly the names the search
    checks --metric against, and every preset's default metric is among its names."""
    from tuner.data.presets import DATASETS, load_dataset, preset_entry
    from tuner.evaluation.metrics import METRICS, preset_metrics
    from tuner.search.options import metric_for
    from tuner.training.trainer import Trainer

    for name in DATASETS:
        data = "folder:/x" if name.startswith("folder:") else name
        assert metric_for(data) in preset_metrics(data)
        assert set(preset_metrics(data)) <= set(METRICS)
        if not preset_entry(name).info.get("download") and not name.startswith("folder:"):
            tracks = load_dataset(name).minority is not None
            assert preset_entry(name).info["minority"] == tracks, name
    for data in ("ring8", "bimodal_biased", "digits_biased"):
        config = tiny | {"data": data, "train.steps": 1, "eval.samples": 20}
        reported = [k for k in Trainer(config).evaluate() if k.startswith("eval/")]
        assert tuple(reported) == preset_metrics(data), data
    assert preset_metrics("cifar10_biased") == ("eval/fid", "eval/kid")  # Inception: no classes


def test_resource_problem_names_the_option_and_what_the_nodes_hold() -> None:
    from tuner.search.checks import resource_problem

    nodes = [{"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}]
    assert resource_problem(4, 1, nodes, "c") is None
    assert resource_problem(8, 0, nodes, "c") is None
    assert resource_problem(16, 0, nodes, "c") == (
        "--cpus-per-trial 16 is more CPUs than any node has: c has 2 nodes, with at most 8 CPUs "
        "and 1 GPUs on one"
    )
    assert resource_problem(1, 2, nodes, "c").startswith("--gpus-per-trial 2 is more GPUs")
    assert resource_problem(8, 1, nodes, "c").startswith(
        "--cpus-per-trial 8 with --gpus-per-trial 1: no node has both"
    )
    assert resource_problem(1, 0, [], "c").startswith("--cpus-per-trial 1 is more CPUs")


def test_an_autoscaling_cluster_waits_for_nodes_with_a_note(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    from tuner.search import cluster
    from tuner.search.cli import build_parser
    from tuner.search.options import UsageError
    from tuner.search.plan import make_plan

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 2.0}}])
    plan = make_plan(
        build_parser().parse_args(["--address", "10.0.0.1:6379", "--gpus-per-trial", "1"])
    )
    monkeypatch.setattr(cluster, "cluster_autoscales", lambda: False)
    with pytest.raises(UsageError, match="--gpus-per-trial 1 is more GPUs than any node has: the "
                       "cluster at 10.0.0.1:6379 holds 2 CPUs and 0 GPUs; ask for at most that, "
                       "or pass --wait-for-nodes"):  # fmt: skip
        cluster.check_cluster_resources(plan)
    monkeypatch.setattr(cluster, "cluster_autoscales", lambda: True)
    cluster.check_cluster_resources(plan)  # no error: the trials wait
    assert "the cluster autoscales: the trials wait for nodes that fit" in capsys.readouterr().err
    local = make_plan(build_parser().parse_args(["--gpus-per-trial", "1"]))
    with pytest.raises(UsageError, match="the local Ray instance holds 2 CPUs"):
        cluster.check_cluster_resources(local)  # a local instance never grows


def test_gcs_probe_tells_ray_from_other_servers() -> None:
    from tuner.search.checks import answer_problem

    assert answer_problem("127.0.0.1", _refused_port(), 2) == "connection refused"
    with socket.socket() as server:  # answers, but HTTP/1.1, as a web server on the port would
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def reply() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=reply)
        thread.start()
        assert (
            answer_problem("127.0.0.1", port, 5) == "something answers there, but not Ray (no gRPC)"
        )
        thread.join()


@pytest.mark.parametrize("argv", [["tuner.config"], ["tuner.run", "--list-spaces"]])
def test_a_closed_pipe_on_stdout_ends_quietly(argv: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first line (`| head` that has quit)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == "", err


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


# A running single-node Ray (1 CPU, no GPU) on 127.0.0.2, for what only a joined cluster tells.
@pytest.fixture(scope="module")
def one_node_ray() -> Iterator[dict]:
    import secrets
    import shutil
    import tempfile

    temp = tempfile.mkdtemp(prefix="dsrel", dir="/tmp")  # short: Ray's socket paths are limited
    token = Path(temp, "token")
    token.write_text(secrets.token_hex(32))
    mark = f"cluster-{os.getpid()}-{time.monotonic_ns()}"
    env = os.environ | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        MARK: mark,
    }
    port, agent = (_free_port("127.0.0.2") for _ in range(2))
    cmd = ["ray", "start", "--head", "--node-ip-address=127.0.0.2", f"--port={port}"]
    cmd += ["--num-cpus=1", "--num-gpus=0", "--include-dashboard=false"]
    cmd += [f"--dashboard-agent-listen-port={agent}"]  # not the default, which a local Ray takes
    cmd += ["--disable-usage-stats", f"--temp-dir={temp}"]
    try:
        with Path(temp, "head.log").open("w") as log:
            started = subprocess.run(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120
            )
        if started.returncode != 0:
            pytest.fail(Path(temp, "head.log").read_text()[-3000:])
        env.pop(MARK)
        yield {"address": f"127.0.0.2:{port}", "env": env}
    finally:
        for pid in _ours(mark):  # the test's own cluster: no graceful stop needed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _none_left(mark, within=8)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_trial_no_node_of_the_cluster_fits_is_refused_after_joining(
    one_node_ray: dict, tmp_path: Path
) -> None:
    address, env = one_node_ray["address"], one_node_ray["env"]
    keep = {k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    line = _refused_cli(
        "tuner.run",
        ["--address", address, "--cpus-per-trial", "2", "--smoke-test"],
        tmp_path,
        60,
        keep,
    )
    assert line == (
        f"error: --cpus-per-trial 2 is more CPUs than any node has: the cluster at {address} "
        "holds 1 CPUs and 0 GPUs; ask for at most that, or pass --wait-for-nodes if nodes will join"
    )
    line = _refused_cli(
        "tuner.run",
        ["--address", address, "--dry-run"],
        tmp_path,
        60,
        {"RAY_AUTH_MODE": "disabled"},
    )  # Ray answers, but refuses a driver without the cluster's token: bounded, one line
    assert line.startswith(f"error: --address {address}: Ray at {address} did not take this driver")
    assert "AuthenticationError" in line


def test_waiting_for_nodes_is_a_note_and_the_dry_run_passes(
    one_node_ray: dict, tmp_path: Path
) -> None:
    env = one_node_ray["env"] | {"PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tuner.run", "--address", one_node_ray["address"]]
    cmd += ["--gpus-per-trial", "1", "--wait-for-nodes", "--dry-run"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--wait-for-nodes: the trials wait for nodes that fit" in proc.stderr
    assert "trials no node fits wait for nodes" in proc.stdout and list(tmp_path.iterdir()) == []


KILLED_DRIVER = """
import os, sys, time
from tuner.search.plan import make_plan
from tuner.search.cli import build_parser
from tuner.search.cluster import init_ray
init_ray(make_plan(build_parser().parse_args(["--smoke-test", "--num-cpus", "1"])))
print("up", flush=True)
time.sleep(600)
"""


def _start_time(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[19]
    return None


def test_a_sigkilled_driver_leaves_no_ray_process(tmp_path: Path) -> None:
    """The local instance's reaper: without it the dashboard and runtime-env agents outlive a
    SIGKILLed driver until their report to the dead GCS times out (60 s, Ray's
    publish_error_to_driver). The driver's descendants are noted by pid and start time while it
    runs (an agent's environment and command line are rewritten by its process title)."""
    log = tmp_path / "driver.log"
    with log.open("w") as f:
        driver = subprocess.Popen(
            [sys.executable, "-c", KILLED_DRIVER], cwd=tmp_path,
            env=os.environ | {"PYTHONPATH": str(ROOT)}, stdout=f, stderr=subprocess.STDOUT,
        )  # fmt: skip
    seen: dict[int, str | None] = {}

    def alive() -> list[str]:
        return [_cmdline(p) for p, start in seen.items() if start and _start_time(p) == start]

    try:
        deadline = time.monotonic() + 120
        agents = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}
        while not agents <= {_cmdline(p).strip() for p in seen}:  # what would linger
            assert driver.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            for pid in _descendants(driver.pid):
                seen.setdefault(pid, _start_time(pid))
            time.sleep(0.2)
        time.sleep(2)  # the reaper notes the instance's processes once a second
        driver.kill()
        driver.wait(timeout=30)
        deadline = time.monotonic() + 15
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(), alive()
    finally:
        driver.kill()
        for pid, start in seen.items():
            if start and _start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_cluster_yaml_that_does_not_validate_is_rejected_naming_the_field() -> None:
    """`ray up` validates the file against Ray's schema before it starts anything."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text())
    config["max_workers"] = "many"
    with pytest.raises(Exception, match="many"):
        validate_config(prepare_config(config))


# -- 4. damaged checkpoint: named, then an older checkpoint or step 0, never a wrong resume -----
def _steps_of_run(config: dict, candidates: list[Path], out: Path) -> tuple[list[int], list[str]]:
    from tuner.search.trainable import run_with_fallback

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
    data = (ck40 / LAYOUT.state).read_bytes()
    (ck40 / LAYOUT.state).write_bytes(data[: len(data) // 2])  # truncated

    steps, warned = _steps_of_run(tiny, [ck40, ck20], tmp_path / "resumed")
    assert steps == [40, 60]  # resumed at step 20, the previous checkpoint
    assert len(warned) == 1 and f"checkpoint {ck40 / LAYOUT.state} is damaged" in warned[0]

    (ck20 / LAYOUT.state).write_bytes(b"not a checkpoint at all")  # corrupt
    steps, warned = _steps_of_run(tiny, [ck40, ck20], tmp_path / "restarted")
    assert steps == [20, 40, 60]  # nothing loads: restarted from step 0
    assert len(warned) == 2 and str(ck20 / LAYOUT.state) in warned[1]


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
    from tuner.tracking.store import ui_command

    assert "--host 127.0.0.1" in ui_command("sqlite:////tmp/mlruns/mlflow.db")
    import inspect

    from tuner.search import cluster

    local = inspect.getsource(cluster._start_local)  # how init_ray starts the local instance
    assert "include_dashboard=False" in local  # the local Ray: no dashboard
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
    from tuner.training.trainer import Trainer

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
from tuner.search.cli import main

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
    argv += ["--verbose"]  # (a line per evaluation)
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
        # the second evaluation is reported: the first one's checkpoint is registered by then
        # (Ray handles a trial's results in order), so the restart cannot start from step 0
        while " step 40: " not in log.read_text():
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
    again = [i for i, r in enumerate(rows) if r["iterations_since_restore"] == 1][1]
    assert restarts[1] >= 40  # resumed from a checkpoint (at step 20 or later), not from step 0
    # from the last checkpoint Ray registered before the kill: at most the evaluation in flight
    # when the worker died is trained again
    assert restarts[1] <= steps[again - 1] + 20, steps
    assert sorted(set(steps)) == list(range(20, 121, 20)) and steps[-1] == 120
