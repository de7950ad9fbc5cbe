"""Checks of a plan that need the file system, the network or the machine, run before Ray or MLflow
start (and by --dry-run); each failure is one UsageError line, and a check that has to create
something to find out (a storage folder, a file in it) removes it again.

What only a running Ray can tell (the nodes of a cluster) is checked by tuner.search.cluster.init_ray,
with `resource_problem` from here.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import socket
import sqlite3
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch

from tuner.config.build import build_dataset, build_external_net
from tuner.config.spec import NET_PREFIX, ConfigError, resolve
from tuner.data.presets import (
    IMAGE_EXTENSIONS,
    DataError,
    check_cifar10,
    cifar10_path,
    fetch_cifar10,
    preset_entry,
    url_problem,
)
from tuner.search.locks import store_lock
from tuner.search.options import OPTUNA_SEARCHES, UsageError
from tuner.search.plan import Plan, optuna_storage
from tuner.storage import is_uri, read_text
from tuner.tracking.store import artifact_root, is_local_store
from tuner.versions import ALLOWED, version_problem

SEARCH_FILE = "search.json"  # in the experiment folder: the search's id and plan
# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray Client
# server) answers with a SETTINGS frame (frame type 4) before any call, so no token is needed.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
H2_SETTINGS = 4


def write_problem(path: Path) -> str | None:
    """None when this user can create `path` as a folder (if needed) and write a file in it, else
    why not. Tried for real, since permission bits say nothing to root or about /proc; what the
    try created (folders, the file) is removed again. Two searches started together check the
    same folders at once: a folder the other one made is used, and a folder it removed under
    this try makes the try start again."""
    for _ in range(3):
        try:
            _write_probe(path)
            return None
        except FileNotFoundError as e:  # (the other check removed a folder it had made)
            problem = e
        except OSError as e:
            problem = e
            break
    return f"{problem.strerror or type(problem).__name__}: {problem.filename or path}"


def _write_probe(path: Path) -> None:
    made: list[Path] = []
    try:
        for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
            try:  # outermost first
                folder.mkdir()
            except FileExistsError:
                continue  # made meanwhile by another process: not this try's to remove
            made.append(folder)
        fd, probe = tempfile.mkstemp(prefix=".diffsearch-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    finally:
        for folder in reversed(made):  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()


def _check_folder_data(data: str) -> None:
    folder = Path(data[len("folder:") :]).expanduser()
    if not folder.is_dir():
        raise UsageError(f"data={data!r}: folder {folder} does not exist")
    images = (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if next(images, None) is None or next(images, None) is None:
        raise UsageError(
            f"data={data!r}: folder {folder} holds fewer than 2 images with extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}"
        )


def _check_mlflow(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        problem = write_problem(Path(uri.removeprefix("sqlite:///")).parent)
        if problem is not None:
            raise UsageError(
                f"--mlflow-uri {uri}: its folder is not one this user can write ({problem})"
            )
    elif uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except urllib.error.HTTPError:
            pass  # a server answered
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise UsageError(
                f"--mlflow-uri {uri} is unreachable ({reason}); start the server or pass "
                "sqlite:///PATH"
            ) from None


def _check_storage(storage: str) -> None:
    if is_uri(storage):
        return  # cloud storage: Ray's pyarrow file system reports it when the search writes
    problem = write_problem(Path(storage))
    if problem is not None:
        raise UsageError(f"--storage {storage} is not a folder this user can write ({problem})")


# -- the SQLite stores and the experiment folder: opened for writing before the first trial -----
# Where each store's package keeps its schema migrations (alembic), and how it upgrades a store.
MIGRATIONS = {"mlflow": ("store", "db_migrations"), "optuna": ("storages", "_rdb", "alembic")}
UPGRADE = {"mlflow": "mlflow db upgrade sqlite:///{path}", "optuna": "optuna storage upgrade "
           "--storage sqlite:///{path}"}  # fmt: skip


def _schema_problem(path: Path, package: str, revision: str) -> str | None:
    """None when `package` reads the schema `revision`, else how the store differs."""
    # alembic (with SQLAlchemy, about a second): only a store that exists has a schema to read
    from alembic.script import ScriptDirectory

    origin = importlib.util.find_spec(package).origin
    script = ScriptDirectory(str(Path(origin).parent.joinpath(*MIGRATIONS[package])))
    head = script.get_current_head()
    if revision == head:
        return None
    version = f"{package} {importlib.metadata.version(package)}"
    if revision not in {r.revision for r in script.walk_revisions()}:
        return (
            f"{path} was written by a newer {package} (schema revision {revision}, unknown to "
            f"{version}); open it with that version, or use another store"
        )
    return (
        f"{path} has an older {package} schema (revision {revision}; {version} needs {head}); "
        f"back it up and run `{UPGRADE[package].format(path=path)}`"
    )


def sqlite_problem(path: Path, package: str) -> str | None:
    """None when the SQLite store of `package` at `path` is absent (it will be created) or can
    be opened for writing with a schema this `package` reads; else why not, naming `path`."""
    if not path.exists():
        return None
    try:
        os.close(os.open(path, os.O_RDWR))  # (opening for writing writes nothing)
    except OSError as e:
        return f"{path} cannot be written ({e.strerror})"
    folder = write_problem(path.parent)  # SQLite writes its journal beside the database
    if folder is not None:
        return f"{path}: its folder cannot be written ({folder})"
    try:
        # read-write, so a hot journal left by a killed writer is rolled back, as SQLite does
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            query = "SELECT version_num FROM alembic_version"
            found = db.execute(query).fetchone() if "alembic_version" in tables else None
    except sqlite3.DatabaseError as e:
        return f"{path} is not an SQLite database {package} can open ({e}); move it away"
    if not tables:
        return None  # empty: the search creates its tables
    if found is None:
        return f"{path} holds tables but no {package} schema revision: not a {package} store"
    return _schema_problem(path, package, found[0])


def store_paths(plan: Plan) -> dict[str, Path]:
    """The SQLite stores a search writes, by package: MLflow's (a sqlite: --mlflow-uri) and the
    Optuna study (TPE and QMC searches)."""
    paths = {}
    if is_local_store(plan.mlflow_uri):
        paths["mlflow"] = Path(plan.mlflow_uri.removeprefix("sqlite:///"))
    if plan.search in OPTUNA_SEARCHES:
        paths["optuna"] = Path(optuna_storage(plan).removeprefix("sqlite:///"))
    return paths


def _check_stores(plan: Plan) -> None:
    """The stores and the experiment folder can be written, and the stores read by this MLflow
    and Optuna (checked under the stores' lock: none is half made by a search beside this one)."""
    for package, path in store_paths(plan).items():
        if not path.parent.is_dir():
            continue
        with store_lock(path.parent, exclusive=False):
            problem = sqlite_problem(path, package)
        if problem is None:
            continue
        if package == "mlflow":
            raise UsageError(f"--mlflow-uri {plan.mlflow_uri}: {problem} (or pass another one)")
        raise UsageError(f"the Optuna study store (kept beside --mlflow-uri's): {problem}")
    folder = Path(plan.experiment_dir)
    if not is_uri(plan.experiment_dir) and folder.exists():
        problem = write_problem(folder)
        if problem is not None:
            raise UsageError(f"the experiment folder {folder} cannot be written ({problem})")


def create_stores(plan: Plan) -> None:
    """Create the SQLite stores the search writes (MLflow's tables, the Optuna study's), under
    their folder's lock, so that searches started together never create the same tables at once
    (each later opening finds them made)."""
    # optuna and mlflow (seconds each): only a search that starts creates its stores, while
    # every --dry-run, usage error and --help imports this module
    import optuna
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # (as optuna, above)

    for package, path in store_paths(plan).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with store_lock(path.parent, exclusive=True):
            if package == "mlflow":
                store = SqlAlchemyStore(plan.mlflow_uri, artifact_root(plan.mlflow_uri))
            else:
                store = optuna.storages.RDBStorage(f"sqlite:///{path}")
            store.engine.dispose()


# -- data and FID weights: present on the driver, or fetchable ----------------------------------
def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr, flush=True)


def _check_cifar10(plan: Plan, config: dict, fetch: bool) -> None:
    root, download = config["data.root"], config["data.download"]
    where = cifar10_path(root)
    if plan.address:
        how = "or downloads it itself (data.download=true)" if download else "(data.root)"
        _note(f"data {plan.data}: each node of the cluster reads CIFAR-10 from {where} {how}")
        return
    try:
        check_cifar10(root, download, timeout=plan.connect_timeout)
        if fetch:  # once, on the driver, before the trials (which would race for it)
            fetch_cifar10(root)
    except DataError as e:
        raise UsageError(f"data {plan.data}: {e}") from None


def _check_fid_weights(plan: Plan, config: dict, fetch: bool) -> None:
    """Inception FID (CIFAR-10, folders): a weights file given, cached by torch, or reachable."""
    # torch-fidelity (seconds): --help and a usage error import this module; only image data's
    # checks need it (a plan has imported it already: tuner.search.options.metric_and_mode)
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    from tuner.evaluation import extractors, metrics  # (torch-fidelity's, as above)

    if metrics.default_extractor(plan.data) != extractors.INCEPTION_EXTRACTOR:
        return
    given = config["eval.fid_weights"]
    if plan.address:
        _note("Inception FID: each node needs eval.fid_weights or its own download of the weights")
        return
    if given:
        if not Path(given).expanduser().is_file():
            raise UsageError(f"eval.fid_weights={given}: no such file (Inception FID weights)")
        return
    cached = Path(torch.hub.get_dir(), "checkpoints", os.path.basename(URL_INCEPTION_V3))
    if cached.is_file():
        return
    problem = url_problem(URL_INCEPTION_V3, timeout=plan.connect_timeout)
    if problem is not None:
        raise UsageError(
            f"Inception FID weights are not cached at {cached} and cannot be downloaded "
            f"({problem}); set --set eval.fid_weights=PATH to torch-fidelity's "
            f"{os.path.basename(URL_INCEPTION_V3)}"
        )
    if fetch:
        try:
            extractors.inception_weights(None)
        except ValueError as e:
            raise UsageError(str(e)) from None


def _check_data(plan: Plan, fetch: bool) -> None:
    if plan.data.startswith("folder:"):
        _check_folder_data(plan.data)
    config = resolve(plan.fixed)
    if preset_entry(plan.data).info.get("download"):
        _check_cifar10(plan, config, fetch)
    if preset_entry(plan.data).info["kind"] == "image":
        _check_fid_weights(plan, config, fetch)


# -- a net of the user's own: it must build on the driver before any trial ------------------------
def _example_shape(config: dict) -> tuple[int, ...]:
    """One training example's shape, without loading what needs a download or a folder scan."""
    if config["data"].startswith("folder:"):
        return (3, config["data.size"], config["data.size"])
    if preset_entry(config["data"]).info.get("download"):
        return (3, 32, 32)  # CIFAR-10, which each node fetches itself
    return build_dataset(config).shape


def _check_net(plan: Plan) -> None:
    """net=python:MODULE:FACTORY: the factory imports, returns a torch.nn.Module, declares what it
    predicts and maps a batch of the data's shape to that shape (tuner.config.build)."""
    config = resolve(plan.fixed)
    if not config["net"].startswith(NET_PREFIX):
        return
    try:
        build_external_net(config, _example_shape(config))
    except (ConfigError, DataError) as e:
        raise UsageError(str(e)) from None


# -- resources and the Ray address ---------------------------------------------------------------
def resource_problem(
    cpus: float, gpus: float, nodes: list[dict[str, float]], where: str
) -> str | None:
    """None when some node holds a trial's CPUs and GPUs together, else one line naming the
    option that asks for too much and what the nodes hold."""
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return None
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    held = f"{where} holds {most_cpus:g} CPUs and {most_gpus:g} GPUs"
    if len(nodes) != 1:
        held = f"{where} has {len(nodes)} nodes, with at most {most_cpus:g} CPUs and "
        held += f"{most_gpus:g} GPUs on one"
    if most_cpus < cpus:
        return f"--cpus-per-trial {cpus:g} is more CPUs than any node has: {held}"
    if most_gpus < gpus:
        return f"--gpus-per-trial {gpus:g} is more GPUs than any node has: {held}"
    return f"--cpus-per-trial {cpus:g} with --gpus-per-trial {gpus:g}: no node has both: {held}"


def _check_versions() -> None:
    """Ray and MLflow within the versions whose internals the search uses (tuner/versions.py)."""
    for package in ALLOWED:
        problem = version_problem(package)
        if problem is not None:
            raise UsageError(problem)


def local_gpus() -> int:
    """The GPUs this machine gives a trial before Ray starts: the CUDA devices torch sees (under
    CUDA_VISIBLE_DEVICES, as Ray counts them). Ray has no public count before `ray.init`; once it
    has started, check_cluster_resources checks its own count (`ray.nodes()`)."""
    return torch.cuda.device_count()


def _check_local_resources(plan: Plan) -> None:
    node = {"CPU": float(plan.num_cpus or os.cpu_count() or 1)}
    node["GPU"] = float(local_gpus()) if plan.gpus_per_trial else 0.0
    problem = resource_problem(
        plan.cpus_per_trial, plan.gpus_per_trial, [node], "the local Ray instance"
    )
    if problem is not None:
        raise UsageError(f"{problem}; ask for at most that, or join a cluster (--address)")


def dialed_address(address: str) -> tuple[str, int]:
    """The host and port Ray dials for --address: `auto` read as Ray reads it, and 127.0.0.1 /
    localhost rewritten to this machine's address as Ray does."""
    rest = address.removeprefix("ray://")
    if address == rest:
        # Ray's own reading of an address (RAY_ADDRESS, the last `ray start`; no public API):
        # an internal, allowed only in the range tuner/versions.py checks (check_environment),
        # so imported after that check, and only by --address (ray takes seconds to import)
        from ray._private.services import canonicalize_bootstrap_address

        try:
            rest = canonicalize_bootstrap_address(address) or ""
        except ConnectionError:
            raise UsageError(
                "--address auto: no running Ray found (RAY_ADDRESS is unset and no cluster "
                "started with `ray start` is recorded on this machine); pass HOST:PORT"
            ) from None
        except ValueError:
            rest = ""
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"--address {address!r} is not allowed; expected auto, HOST:PORT or ray://HOST:PORT"
        )
    return host.strip("[]"), int(port)


def answer_problem(host: str, port: int, timeout: float) -> str | None:
    """None when a gRPC server (as Ray's are) answers at host:port within `timeout` seconds."""
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if tls:
                return None  # the handshake below is plaintext HTTP/2; a connection will do
            sock.sendall(H2_PREFACE)
            head = b""
            while len(head) < 4:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(9)
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as e:
        return (e.strerror or type(e).__name__).lower()
    if len(head) < 4 or head[3] != H2_SETTINGS:
        return "something answers there, but not Ray (no gRPC)"
    return None


def check_address(plan: Plan) -> tuple[str, int]:
    """That a Ray answers at --address within --connect-timeout; returns what was dialed."""
    assert plan.address
    host, port = dialed_address(plan.address)
    problem = answer_problem(host, port, plan.connect_timeout)
    if problem is not None:
        given = plan.address.removeprefix("ray://").rpartition(":")[0]
        why = f" (Ray's address for {given} on this machine)" if given not in (host, "auto") else ""
        raise UsageError(
            f"--address {plan.address}: no Ray answers at {host}:{port}{why}: {problem} "
            f"(--connect-timeout {plan.connect_timeout:g} s); start one with `ray start --head` "
            "or pass the head's HOST:PORT"
        )
    return host, port


def check_environment(plan: Plan, resume: bool, fetch: bool = False) -> None:
    """Checks that need the file system, the network or the machine; each failure is one
    UsageError line and leaves nothing behind.

    Args:
        plan: the resolved plan.
        resume: --resume was given (there must be a search to resume).
        fetch: fetch what a local search needs and lacks (CIFAR-10, Inception weights) on the
            driver, once, before Ray starts; --dry-run only checks that it could.
    """
    _check_versions()
    _check_storage(plan.storage)
    _check_mlflow(plan.mlflow_uri)
    _check_stores(plan)
    if resume and read_text(f"{plan.experiment_dir}/{SEARCH_FILE}") is None:
        raise UsageError(
            f"--resume: no search to resume at {plan.experiment_dir} "
            "(run the same command without --resume to start it)"
        )
    if plan.address:
        check_address(plan)
    else:
        _check_local_resources(plan)
    _check_data(plan, fetch)
    _check_net(plan)
