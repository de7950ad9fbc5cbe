"""Reading and writing small files of an experiment, on local disk or cloud storage (s3://, gs://),
through pyarrow's file systems as Ray does."""

from __future__ import annotations

import contextlib
from pathlib import Path


def is_uri(path: str) -> bool:
    return "://" in path


def _fs(path: str):  # noqa: ANN202 - a pyarrow FileSystem and the path inside it
    import pyarrow.fs  # (about 0.1 s; the command line's checks mostly ask only `is_uri`)

    if is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def read_bytes(path: str) -> bytes | None:
    """The file's content, or None when it does not exist or cannot be read."""
    fs, fs_path = _fs(path)
    try:
        with fs.open_input_stream(fs_path) as f:
            return f.read()
    except (FileNotFoundError, OSError):
        return None


def read_text(path: str) -> str | None:
    data = read_bytes(path)
    return None if data is None else data.decode()


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file; on local disk through a temporary file and a rename (atomic)."""
    if not is_uri(path):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        return
    fs, fs_path = _fs(path)
    with fs.open_output_stream(fs_path) as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode())


def remove_tree(path: str) -> None:
    """Remove a folder and everything in it, if it exists (local disk or cloud storage)."""
    fs, fs_path = _fs(path)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_dir(fs_path)
