"""Cluster files validate offline, and a smoke search runs across a real two-node Ray cluster.

The two nodes live on loopback addresses 127.0.0.2 (head) and 127.0.0.3 (worker): Ray rewrites a
127.0.0.1 node address to the machine's outward address, but leaves these alone. The test
starts both with `ray start` in their own process groups and a temp dir of their own, and stops
only those processes (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
BIN = Path(sys.executable).parent
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"


# -- cluster files ------------------------------------------------------------------------------
def _ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", ["aws-gpu.yaml", "gcp-gpu.yaml"])
def test_cluster_yaml_validates_against_ray_schema(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(config, _ray_schema())  # the file as written
    validate_config(prepare_config(config))  # and as `ray up` fills it out (offline)
    image = config["docker"]["image"]
    assert image.startswith("rayproject/ray:") and image.endswith("-gpu"), image
    assert "ray-ml" not in image  # deprecated images
    assert any("pip install" in c and "diffsearch" in c for c in config["setup_commands"])
    head = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in head and "--host 127.0.0.1" in head
    assert "--dashboard-host=127.0.0.1" in head
    assert any(u in head for u in ("s3://", "gs://"))  # artifacts on cloud storage
    workers = [
        t for n, t in config["available_node_types"].items() if n != config["head_node_type"]
    ]
    assert workers and all(t["max_workers"] >= 1 for t in workers)


def test_kuberay_rayjob_manifest() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["entrypoint"].startswith(
        "python -m tuner.run --space debias_family_cifar10 --address auto"
    )
    assert "--storage s3://" in spec["entrypoint"] and "--mlflow-uri" in spec["entrypoint"]
    assert "working_dir" in yaml.safe_load(spec["runtimeEnvYAML"])
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "rayproject/ray:"
    )
    gpu = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert gpu["image"].endswith("-gpu") and gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # The entrypoint's options are ones tuner.run accepts.
    from tuner.search.cli import build_parser
    from tuner.search.plan import make_plan

    argv = spec["entrypoint"].split()[3:]
    plan = make_plan(build_parser().parse_args(argv))
    assert plan.address == "auto" and plan.gpus_per_trial == 1
    assert plan.data == "cifar10_biased" and plan.metric == "eval/fid"


# -- a real two-node cluster on loopback ----------------------------------------------------------
def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _loopback_usable() -> str | None:
    for ip in (HEAD_IP, WORKER_IP):
        try:
            _free_port(ip)
        except OSError as e:
            return f"cannot bind {ip}: {e}"
    return None


def _our_pids(groups: list[int], marker: str) -> set[int]:
    """Processes in our process groups, or whose command line names our temp dir."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) in groups or marker in (entry / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                pids.add(pid)
        except (OSError, ProcessLookupError):
            continue
    pids.discard(os.getpid())
    return pids


def _stop(groups: list[int], marker: str) -> None:
    for sig, wait in ((signal.SIGTERM, 8.0), (signal.SIGKILL, 5.0)):
        pids = _our_pids(groups, marker)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + wait
        while time.time() < deadline and _our_pids(groups, marker):
            time.sleep(0.5)


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[dict]:
    reason = _loopback_usable()
    if reason:
        pytest.skip(reason)
    temp = tempfile.mkdtemp(prefix="dsray", dir="/tmp")  # short: Ray's socket paths are limited
    token = Path(temp, "token")
    token.write_text(secrets.token_hex(32))
    env = os.environ | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    port = _free_port(HEAD_IP)
    common = ["--num-cpus=1", "--disable-usage-stats", f"--temp-dir={temp}"]
    head = [
        "ray", "start", "--head", f"--node-ip-address={HEAD_IP}", f"--port={port}",
        "--include-dashboard=false",
        f"--dashboard-agent-listen-port={_free_port(HEAD_IP)}", *common,
    ]  # fmt: skip
    worker = [
        "ray", "start", f"--address={HEAD_IP}:{port}", f"--node-ip-address={WORKER_IP}",
        f"--dashboard-agent-listen-port={_free_port(WORKER_IP)}", *common,
    ]  # fmt: skip
    groups: list[int] = []
    try:
        for name, cmd in (("head", head), ("worker", worker)):
            log = Path(temp, f"{name}.log")
            with log.open("w") as f:  # a file, not a pipe: the daemons keep their stdout open
                proc = subprocess.Popen(
                    cmd, env=env, start_new_session=True, stdout=f, stderr=subprocess.STDOUT
                )
            groups.append(proc.pid)
            if proc.wait(timeout=120) != 0:
                pytest.fail(f"ray start ({name}) failed:\n{log.read_text()[-3000:]}")
        yield {"address": f"{HEAD_IP}:{port}", "env": env, "temp": temp}
    finally:
        _stop(groups, temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_smoke_search_across_two_nodes(two_node_cluster: dict, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "tuner.run", "--smoke-test", "--address", two_node_cluster["address"],
        "--storage", str(tmp_path / "ray"), "--mlflow-uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        "--num-samples", "2", "--scheduler", "fifo",
    ]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=ROOT, env=two_node_cluster["env"], capture_output=True, text=True, timeout=400
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "leaderboard" in out.stdout
    (experiment,) = (p for p in (tmp_path / "ray").iterdir() if "-confirm" not in p.name)
    nodes = set()
    for result in experiment.glob("trial_*/result.json"):
        nodes |= {
            json.loads(line)["node_ip"] for line in result.read_text().splitlines() if line.strip()
        }
    assert nodes == {HEAD_IP, WORKER_IP}, nodes
    assert (experiment / "best.json").exists()
