"""The Ray and MLflow versions diffsearch allows, where it leans on what they do not promise to
keep; pyproject.toml states the same bounds (tests/tuner/test_versions.py ties the two), and the
search's checks refuse another installed version in one line (tuner/search/checks.py).

- Ray: `ray._private.services.canonicalize_bootstrap_address` reads `--address auto` as
  `ray.init` does (Ray has no public equivalent), and a Ray Tune callback sets a trial's
  `max_failures` (tuner/search/faults.py) so that an error that repeats is not retried.
- Ray: the driver's notice that token authentication is on is kept off the terminal by the name
  of the internal module that logs it (tuner/search/cluster.py `AUTH_LOGGER`; another name only
  shows the notice again).
- MLflow: the saved review view is the UI's view-state JSON of MLflow 3.17
  (tuner/tracking/review.py `view_state`), which is not a documented format.
"""

from __future__ import annotations

import importlib.metadata
import re

# package -> (lowest allowed, first not allowed, the version the tests ran on, what leans on it)
ALLOWED: dict[str, tuple[str, str, str, str]] = {
    "ray": ("2.50", "2.61", "2.60", "Ray internals (the --address auto lookup, a trial's retries)"),
    "mlflow": ("3.17", "3.18", "3.17", "the saved review view (MLflow 3.17's UI view state)"),
}


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: "2.60.0rc1" -> (2, 60, 0)."""
    found = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in found.group().split(".")) if found else ()


def specifier(package: str) -> str:
    """The allowed range as pyproject.toml writes it: ">=2.50,<2.61"."""
    low, high, _, _ = ALLOWED[package]
    return f">={low},<{high}"


def version_problem(package: str, installed: str | None = None) -> str | None:
    """None when the installed `package` (or `installed`) lies in its allowed range, else one
    line naming the version, the range and what depends on it."""
    low, high, tested, why = ALLOWED[package]
    version = installed or importlib.metadata.version(package)
    if _release(low) <= _release(version) < _release(high):
        return None
    return (
        f"{package} {version} is outside the versions diffsearch allows "
        f"({package}{specifier(package)}; tested on {tested}), whose {why} it uses; "
        f"install {package}{specifier(package)}"
    )
