"""Checks of a plan that need the file system or the network, run before Ray or MLflow start
(and by --dry-run); each failure is one UsageError line."""

from __future__ import annotations

import os
from pathlib import Path

from tuner.plan import Plan, UsageError
from tuner.storage import is_uri, read_text

SEARCH_FILE = "search.json"  # in the experiment folder: the search's id and plan


def writable_folder(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is a folder we may write in, else None."""
    for parent in (path, *path.parents):
        if parent.exists():
            ok = parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
            return parent if ok else None
    return None


def _check_folder_data(data: str) -> None:
    from tuner.data import IMAGE_EXTENSIONS

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
        if writable_folder(Path(uri.removeprefix("sqlite:///")).parent) is None:
            raise UsageError(f"--mlflow-uri {uri}: its folder is not one this user can write")
    elif uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

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


def check_environment(plan: Plan, resume: bool) -> None:
    """Checks that need the file system or the network; each failure is one UsageError line."""
    if plan.data.startswith("folder:"):
        _check_folder_data(plan.data)
    if not is_uri(plan.storage) and writable_folder(Path(plan.storage)) is None:
        raise UsageError(f"--storage {plan.storage} is not a folder this user can write")
    _check_mlflow(plan.mlflow_uri)
    if resume and read_text(f"{plan.experiment_dir}/{SEARCH_FILE}") is None:
        raise UsageError(
            f"--resume: no search to resume at {plan.experiment_dir} "
            "(run the same command without --resume to start it)"
        )
