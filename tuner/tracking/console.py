"""The project's own lines on the terminal, and how often a plain status line is written.

The project's per-trial lines go through the `diffsearch` logger (`LOG`) to stdout, written
through tqdm so that a live status line (tuner/tracking/progress.py) is cleared first and drawn
again under them: warnings (a trial that failed, or crashed and is retried) always, the rest (one
line per evaluation, a trial's end) with --verbose (`configure`). The logger, not the callbacks,
holds the verbosity: a resumed stage runs the callbacks it was started with (Ray keeps them in
its tuner.pkl). The command line sets both before it knows whether a search will run, so this
module imports no Ray.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

LOG = logging.getLogger("diffsearch")
EVERY_S = 60.0  # seconds between two plain progress lines (stdout not a terminal)
_settings: dict[str, float] = {"every": EVERY_S}  # process-wide, as the logger's level


class _Console(logging.Handler):
    """A record's message on stdout, through tqdm (a live bar is redrawn under it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging's own way to report a failed write
            self.handleError(record)


def configure(verbose: bool = False, every: float = EVERY_S) -> None:
    """The terminal of this process: the project's lines on stdout (all of them with `verbose`,
    else warnings only), and a plain progress line every `every` seconds off a terminal."""
    for handler in [h for h in LOG.handlers if isinstance(h, _Console)]:
        LOG.removeHandler(handler)
    LOG.addHandler(_Console())
    LOG.setLevel(logging.INFO if verbose else logging.WARNING)
    LOG.propagate = False
    _settings["every"] = every


def every_s() -> float:
    """Seconds between two plain progress lines, as `configure` last set them."""
    return _settings["every"]
