"""The default search as a person sees it on a terminal, and README's screenshots of it.

Runs `python -m tuner.run --confirm 2` — the default search with its default options, the size
of its confirmation named — in a fresh scratch folder, on a pseudo-terminal of COLUMNS × ROWS,
and keeps the screen it leaves there (its stages' status lines redrawn in place, as a terminal
shows them) in bench/results/default_run.json ("raw"): README's generated "default-output" block
(`python bench/readme.py`), under 80 lines (tests/tuner/test_progress.py). Then it takes README's
screenshots of that search's MLflow and Optuna stores with the browser test:
`DIFFSEARCH_SCREENSHOTS=docs DIFFSEARCH_UI_STORE=<scratch>/mlruns pytest tests/tuner/test_mlflow_ui.py`
(Debian's chromium and Playwright's Python package; see that test).

    .venv/bin/python bench/default_run.py [--keep DIR] [--no-screenshots] [-- extra options]
    .venv/bin/python bench/default_run.py --store DIR/mlruns    # the screenshots of a search done
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from harness import RESULTS, ROOT, write

COMMAND = ["--confirm", "2"]  # the default search's tuner.run arguments, its confirmation named
COLUMNS, ROWS = 180, 50
NAME = "default_run"
OUT = RESULTS / f"{NAME}.json"  # (one of bench/report.py's UNLISTED files: README shows it)
_CONTROL = re.compile(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)")


def render(raw: str) -> list[str]:
    """The lines a terminal shows after `raw`: a carriage return goes back to the line's start and
    what follows overwrites it, a cursor-up (ESC [ n A) goes up n lines, ESC [ K clears to the
    end of the line; colours are dropped."""
    lines: list[list[str]] = [[]]
    row = col = 0
    for piece in _CONTROL.split(raw):
        if piece == "\n":
            row, col = row + 1, 0
            lines += [[] for _ in range(row + 1 - len(lines))]
        elif piece == "\r":
            col = 0
        elif piece.startswith("\x1b["):
            if piece.endswith("A"):
                row = max(0, row - int(piece[2:-1] or 1))
            elif piece.endswith("K"):
                del lines[row][col:]
        else:
            line = lines[row]
            line += [" "] * (col - len(line))
            line[col : col + len(piece)] = piece
            col += len(piece)
    text = ["".join(line).rstrip() for line in lines]
    while text and not text[-1]:
        text.pop()
    return text


def run_on_terminal(argv: list[str], cwd: Path) -> tuple[int, str, float]:
    """(exit status, everything written to the terminal, seconds) of a command run on a
    pseudo-terminal of COLUMNS × ROWS, its stdout and stderr both."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = os.environ | {"PYTHONPATH": str(ROOT), "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=side, stderr=side, env=env
    )
    os.close(side)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not data:
            break
        chunks.append(data)
    status = proc.wait()
    os.close(main)
    return status, b"".join(chunks).decode(errors="replace"), time.perf_counter() - start


def screenshots(store: Path) -> int:
    """The browser test on a search's stores, keeping its screenshots in docs/."""
    env = os.environ | {
        "PYTHONPATH": str(ROOT),
        "DIFFSEARCH_SCREENSHOTS": str(ROOT / "docs"),
        "DIFFSEARCH_UI_STORE": str(store.resolve()),
    }
    cmd = [sys.executable, "-m", "pytest", "-q", "tests/tuner/test_mlflow_ui.py"]
    return subprocess.call(cmd, cwd=ROOT, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="scratch folder to use and keep")
    parser.add_argument("--store", type=Path, help="only the screenshots, of this mlruns folder")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("extra", nargs="*", help="extra tuner.run options (after --)")
    args = parser.parse_args()
    if args.store is not None:
        return screenshots(args.store)
    scratch = args.keep or Path(tempfile.gettempdir()) / "diffsearch-default"
    shutil.rmtree(scratch, ignore_errors=True)  # a fresh search, not a resumed one
    scratch.mkdir(parents=True)
    argv = [*COMMAND, *args.extra]
    status, raw, wall = run_on_terminal([sys.executable, "-m", "tuner.run", *argv], scratch)
    screen = render(raw)
    measured = {
        "search_command": " ".join(["python -m tuner.run", *argv]),
        "folder": str(scratch),
        "cpus": os.cpu_count(),
        "terminal": f"{COLUMNS}x{ROWS}",
        "wall_s": round(wall, 1),
        "returncode": status,
        "lines": len(screen),
        "screen": screen,
    }
    command = " ".join([".venv/bin/python bench/default_run.py", *sys.argv[1:]])
    write(OUT, {"name": NAME, "command": command, "raw": measured})
    print(f"wrote {OUT}: exit status {status}, {len(screen)} lines, {wall:.0f} s")
    code = status
    if status == 0 and not args.no_screenshots:
        code = screenshots(scratch / "mlruns")
    if args.keep is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
