"""The reaper of the local Ray instance: `python -m tuner.search.reaper`, started by
tuner/search/cluster.py in a session of its own with the read end of a pipe as its stdin.

The driver writes the pids of the processes `ray.init` started, one a line, and keeps its end of
the pipe open. Once a second the reaper notes every descendant of those processes (by pid and
start time, so that a reused pid is never hit); when the driver's end closes (on any exit,
SIGKILL too) it kills whatever it noted that still runs. Without it, a SIGKILLed driver leaves
the dashboard agent and the runtime-env agent running for about a minute: they see the raylet
die at once but first report it to the dead GCS, which times out after 60 s
(ray/_private/process_watcher.py, publish_error_to_driver in ray/_private/utils.py).

Linux only (/proc); the standard library only, so it starts at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal

Info = tuple[int, str]  # (parent pid, start time in clock ticks since boot)


def info(pid: int | str) -> Info | None:
    """A process's parent and start time from /proc/PID/stat (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # after the command name
        return int(fields[1]), fields[19]
    except (OSError, ValueError, IndexError):
        return None


def processes() -> dict[int, Info]:
    """Every process now: pid -> (parent, start time)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (found := info(name)):
            table[int(name)] = found
    return table


def adopt_descendants(tracked: dict[int, str], table: dict[int, Info]) -> None:
    """Add to `tracked` (pid -> start time) every process in `table` whose parent is tracked
    and is still the same process, to any depth."""
    grew = True
    while grew:
        grew = False
        for pid, (parent, start) in table.items():
            if pid not in tracked and tracked.get(parent) == table.get(parent, (0, ""))[1]:
                tracked[pid], grew = start, True


def kill(tracked: dict[int, str]) -> None:
    """SIGKILL each tracked process that is still the one noted (same start time)."""
    for pid, start in tracked.items():
        found = info(pid)
        if found and found[1] == start and pid != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def watch(fd: int) -> dict[int, str]:
    """Note the pids written to `fd` and their descendants until its writer closes it; returns
    what was noted."""
    tracked: dict[int, str] = {}
    pending = b""
    while True:
        if select.select([fd], [], [], 1.0)[0]:
            data = os.read(fd, 4096)
            if not data:
                return tracked  # the driver is gone
            *lines, pending = (pending + data).split(b"\n")
            for pid in map(int, lines):
                if found := info(pid):
                    tracked[pid] = found[1]
        adopt_descendants(tracked, processes())


def main() -> None:
    kill(watch(0))


if __name__ == "__main__":
    main()
