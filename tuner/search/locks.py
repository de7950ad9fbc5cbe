"""One search per experiment folder, and one creator per SQLite store.

`hold_experiment` takes an exclusive `flock` on a file in the experiment folder for as long as the
driver lives (the kernel lets it go however the process ends, SIGKILL included); a second driver
of the same search is refused in one line naming the first one and its PID, and touches nothing.
`store_lock` holds a folder's `flock` while the MLflow and Optuna SQLite stores in it are created
(exclusive) or checked (shared), so that two searches started together never create the same
tables at once. Locks are advisory and local: a cloud storage URI is not locked, and a shared file
system must support `flock` (NFS v4 and most cluster file systems do).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from tuner.search.options import UsageError
from tuner.search.plan import Plan
from tuner.storage import is_uri

LOCK_FILE = ".diffsearch.lock"  # in the experiment folder: who runs the search
STORE_WAIT_S = 120.0  # how long a driver waits for another one to create the stores
_held: list[int] = []  # descriptors of the locks this process holds (until it ends)


def _holder(path: Path) -> str:
    """Who holds the lock at `path`, as its holder wrote it (it writes right after locking)."""
    for _ in range(20):
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(path.read_text())
            return (
                f"{info['search']} (pid {info['pid']} on {info['host']}, started {info['since']})"
            )
        time.sleep(0.05)
    return "another driver (pid unknown)"


def _refusal(plan: Plan, path: Path) -> UsageError:
    return UsageError(
        f"another search is running in {plan.experiment_dir}: {_holder(path)}; wait for it to "
        "end, or give this one another --name or --seed"
    )


def check_experiment_free(plan: Plan) -> None:
    """--dry-run: refuse as a real run would when another driver holds the folder (creates
    nothing)."""
    path = Path(plan.experiment_dir, LOCK_FILE)
    if is_uri(plan.experiment_dir) or not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refusal(plan, path) from None
    finally:
        os.close(fd)  # (closing lets a shared lock go)


def hold_experiment(plan: Plan) -> None:
    """Hold the experiment folder until this process ends; UsageError if another driver does."""
    if is_uri(plan.experiment_dir):
        return  # no lock on cloud storage (docs/reliability.md)
    folder = Path(plan.experiment_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never removed: a waiter may hold it open
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _refusal(plan, path) from None
    since = datetime.now().isoformat(sep=" ", timespec="seconds")
    info = {"search": plan.name, "pid": os.getpid(), "host": socket.gethostname(), "since": since}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    _held.append(fd)


@contextlib.contextmanager
def store_lock(folder: Path, exclusive: bool) -> Iterator[None]:
    """Hold `folder`'s lock (a flock on the folder itself: no file is made) while the block runs;
    waits up to STORE_WAIT_S for a driver that is creating the stores there."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        deadline = time.monotonic() + STORE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UsageError(
                        f"{folder}: another driver has held this store folder for over "
                        f"{STORE_WAIT_S:g} s while creating its databases; try again when it is done"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)
