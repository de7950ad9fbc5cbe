"""tuner/search/reaper.py: when the driver's end of the pipe closes, the reaper kills the
processes it was given and their descendants, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuner.search import reaper

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc only")

# A process that starts a child of its own (as the raylet starts the agents) and waits.
PARENT = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"  # noqa: E501


def _alive(pid: int, start: str) -> bool:
    found = reaper.info(pid)
    return found is not None and found[1] == start


def _wait(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_the_descendants_of_what_it_was_given_die_with_the_pipe_and_others_live() -> None:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner.search.reaper"], stdin=read_end, cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)}, start_new_session=True,
    )  # fmt: skip
    os.close(read_end)
    given = subprocess.Popen([sys.executable, "-c", PARENT])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert _wait(lambda: any(p == given.pid for p, _ in reaper.processes().values()), 10)
        child = next(pid for pid, (p, _) in reaper.processes().items() if p == given.pid)
        noted = {pid: reaper.info(pid)[1] for pid in (given.pid, child, other.pid)}
        os.write(write_end, f"{given.pid}\n".encode())
        time.sleep(2.5)  # it notes descendants once a second
        assert all(_alive(pid, start) for pid, start in noted.items())  # nothing killed yet
        os.close(write_end)  # the driver is gone
        assert proc.wait(timeout=15) == 0
        given.wait(timeout=5)
        assert _wait(lambda: not _alive(child, noted[child]), 5), "the grandchild outlived it"
        assert other.poll() is None  # not given, not a descendant: untouched
    finally:
        for p in (given, other):
            p.kill()
            p.wait()


def test_descendants_are_adopted_to_any_depth_but_not_a_reused_pid() -> None:
    table = {10: (1, "100"), 11: (10, "110"), 12: (11, "120"), 13: (99, "130"), 14: (15, "140")}
    table[15] = (1, "150")
    tracked = {10: "100", 15: "149"}  # 15 noted at another start time: a reused pid
    reaper.adopt_descendants(tracked, table)
    assert tracked == {10: "100", 11: "110", 12: "120", 15: "149"}
