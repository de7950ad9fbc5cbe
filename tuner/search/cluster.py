"""The Ray instance a search runs on: a local one started with a reaper that ends it with the
driver, or an existing cluster joined within a bounded time; what its nodes hold against what a
trial asks for; and what of Ray's own output reaches the terminal.

Ray's output, by Ray's own options (`--verbose` keeps Ray's defaults):
- Ray Tune's old output engine at verbosity 0 prints nothing (tuner/search/faults.py picks it,
  RAY_AIR_NEW_OUTPUT=0; the RunConfig's verbosity is 0); `tune_output` turns the new one back on
  for --verbose, which prints its configuration box and its results-folder and TensorBoard hints
  whatever the verbosity;
- the workers' Ray loggers at WARNING (runtime_env's `worker_process_setup_hook`): Ray Train's
  "Checkpoint successfully created at: ..." after every report is not written, nor Ray's
  "[repeated Nx across cluster]" notes on those lines; the workers' warnings, errors and own
  output still reach the driver (`log_to_driver`);
- the driver's notice that token authentication is on ("Token authentication is enabled for this
  Ray cluster. Set RAY_AUTH_MODE=disabled to opt out."), which ray.init logs as a warning each
  time it starts or joins Ray with a token, not shown: its logger at ERROR (`AUTH_LOGGER`). (Setting
  RAY_AUTH_MODE=token, which Ray takes without a word, would have to come before Ray is imported.)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from ray.autoscaler.v2.utils import is_autoscaler_v2

from tuner.search import faults, reaper
from tuner.search.checks import check_address, resource_problem
from tuner.search.options import UsageError
from tuner.search.plan import Plan

OBJECT_STORE_BYTES = 256 * 1024**2  # small trials pass nothing big through the object store
_reaper: dict[str, Any] = {}  # the running reaper: its pipe end and its process
# How many ~1 s attempts a joining driver makes to reach the GCS (Ray's default: 20, and more
# for a RocksDB-backed GCS); read by ray/_private/node.py at each ray.init.
GCS_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"
NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"  # read by ray/tune/experimental/output.py at each fit
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _children() -> set[int]:
    """This process's children (Linux /proc)."""
    me = os.getpid()
    return {pid for pid, (parent, _) in reaper.processes().items() if parent == me}


def _start_reaper() -> set[int]:
    """Start the reaper of the local instance about to start (tuner/search/reaper.py: it ends
    what is left of the instance when the driver exits, SIGKILL too); returns the children
    before."""
    _stop_reaper()
    if not Path("/proc/self/stat").exists():
        return set()  # not Linux: no reaper (docs/reliability.md names the cleanup)
    read_end, write_end = os.pipe()  # not inherited by Ray's processes (PEP 446)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.search.reaper"],  # (its module says what it does)
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or a kill of the driver's group does not stop it
    )
    os.close(read_end)
    _reaper.update(write_end=write_end, proc=proc)
    return _children()


def _stop_reaper() -> None:
    """Let the reaper go: it kills what is left of its instance (nothing, after a shutdown)."""
    if _reaper:
        os.close(_reaper.pop("write_end"))
        _reaper.pop("proc").wait(timeout=30)


def shutdown_ray() -> None:
    """Leave (a cluster) or stop (the local instance) Ray, and let the reaper go."""
    ray.shutdown()
    _stop_reaper()


def quiet_worker_logs() -> None:
    """Ray's loggers of a worker at WARNING (run in every worker as it starts)."""
    logging.getLogger("ray").setLevel(logging.WARNING)


def worker_env(verbose: bool) -> dict[str, Any] | None:
    """The job's runtime_env: the workers' Ray loggers at WARNING unless `verbose`."""
    return None if verbose else {"worker_process_setup_hook": quiet_worker_logs}


@contextlib.contextmanager
def tune_output(verbose: bool) -> Iterator[None]:
    """While the stages run with `verbose`: Ray Tune's new output engine, as Ray has it by
    default (its configuration box, results folder and TensorBoard hints, its trial errors)."""
    with faults.environment({NEW_OUTPUT_ENV: "1"} if verbose else {}):
        yield


def _start_local(plan: Plan, verbose: bool) -> None:
    before = _start_reaper()
    ray.init(
        address="local",  # a new instance, even where RAY_ADDRESS names a cluster
        num_cpus=plan.num_cpus or os.cpu_count(),
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        configure_logging=True,
        logging_level="WARNING",
        runtime_env=worker_env(verbose),
    )
    if _reaper:  # what ray.init started: the GCS, the raylet, the monitors
        started = _children() - before - {_reaper["proc"].pid}
        os.write(_reaper["write_end"], "".join(f"{pid}\n" for pid in started).encode())


@contextlib.contextmanager
def _stderr_held() -> Iterator[list[bytes]]:
    """Hold what is written to file descriptor 2 (Ray's C++ warnings too) while the block runs;
    the caller gets it and decides whether to show it."""
    held: list[bytes] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            held.append(tmp.read())


def _join(plan: Plan, verbose: bool) -> None:
    """Join the cluster at --address (tuner.search.checks.check_address found that it answers), for at
    most about --connect-timeout seconds of retries; a refusal is one UsageError line."""
    host, port = check_address(plan)
    old = os.environ.get(GCS_WAIT_ENV)
    os.environ[GCS_WAIT_ENV] = str(max(1, math.ceil(plan.connect_timeout)))
    try:
        ray.init(address=plan.address, log_to_driver=True, runtime_env=worker_env(verbose))
    except Exception as e:  # noqa: BLE001 - whatever stops the join is reported in one line
        while e.__cause__ is not None:
            e = e.__cause__
        text = str(e).strip()
        # Ray's "Failed to connect to GCS" carries the last attempt's traceback as text: its
        # last line is the reason (e.g. an AuthenticationError naming RAY_AUTH_MODE).
        lines = text.splitlines()
        reason = lines[-1] if "Traceback" in text else f"{type(e).__name__}: {text}"
        raise UsageError(
            f"--address {plan.address}: Ray at {host}:{port} did not take this driver "
            f"({' '.join(reason.split())[:400]})"
        ) from None
    finally:
        if old is None:
            os.environ.pop(GCS_WAIT_ENV, None)
        else:
            os.environ[GCS_WAIT_ENV] = old


def cluster_autoscales() -> bool:
    """Whether the joined cluster can add nodes: a cluster-launcher head (the test Ray Tune
    makes, ray/tune/execution/cluster_info.py) or an autoscaler v2 (KubeRay's, or
    RAY_enable_autoscaler_v2)."""
    if Path("~/ray_bootstrap_config.yaml").expanduser().exists():
        return True
    try:
        return bool(is_autoscaler_v2(fetch_from_server=True))
    except Exception:  # noqa: BLE001 - no answer: assume a fixed cluster
        return False


def check_cluster_resources(plan: Plan) -> None:
    """After joining or starting Ray: some node must hold a trial's CPUs and GPUs, unless the
    cluster can grow (then the trials wait for new nodes, and a note says so)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    where = f"the cluster at {plan.address}" if plan.address else "the local Ray instance"
    problem = resource_problem(plan.cpus_per_trial, plan.gpus_per_trial, nodes, where)
    if problem is None:
        return
    if plan.address and (plan.wait_for_nodes or cluster_autoscales()):
        why = "--wait-for-nodes" if plan.wait_for_nodes else "the cluster autoscales"
        print(f"note: {problem}; {why}: the trials wait for nodes that fit", file=sys.stderr)
        return
    hint = "; ask for at most that"
    hint += ", or pass --wait-for-nodes if nodes will join" if plan.address else ""
    raise UsageError(problem + hint)


def init_ray(plan: Plan, verbose: bool = False) -> None:
    """Join the cluster at --address, or start the local instance (with its reaper), and check
    that a trial fits on a node; a failure is one UsageError line and leaves no Ray of ours.
    Ray's INFO lines of the workers are kept off the terminal unless `verbose`."""
    if ray.is_initialized():
        return  # drive() joined already
    logging.getLogger(AUTH_LOGGER).setLevel(logging.NOTSET if verbose else logging.ERROR)
    try:
        if plan.address:  # what Ray says while joining is shown only if the join stands
            with _stderr_held() as held:
                _join(plan, verbose)
                check_cluster_resources(plan)
            sys.stderr.write(b"".join(held).decode(errors="replace"))
        else:
            _start_local(plan, verbose)
            check_cluster_resources(plan)
    except UsageError:
        shutdown_ray()
        raise


def default_concurrency(plan: Plan) -> int:
    """As many trials as the cluster holds now (an autoscaling cluster: pass --max-concurrent)."""
    resources = ray.cluster_resources()
    fits = resources.get("CPU", 0) // plan.cpus_per_trial
    if plan.gpus_per_trial:
        fits = min(fits, resources.get("GPU", 0) // plan.gpus_per_trial)
    return max(1, int(fits))
