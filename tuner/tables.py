"""One table renderer for every table the search shows: the leaderboard, the confirmation, the
parent MLflow run's description. Plain text for the terminal (columns a parser can split on
runs of spaces) or markdown for MLflow's descriptions. Imports nothing: every layer may use it.
"""

from __future__ import annotations

from typing import Any

FORMATS = ("text", "markdown")


def table(head: list[str], rows: list[list[Any]], fmt: str = "text") -> str:
    """`rows` under `head`, each cell shown with `str`.

    Args:
        head: the column names.
        rows: one list of cells per row, as long as `head`.
        fmt: "text" (left-aligned columns two spaces apart, no trailing spaces) or "markdown"
            (a pipe table; `|` and line breaks inside a cell are escaped).
    """
    if fmt not in FORMATS:
        raise ValueError(f"table format {fmt!r} is not known; choose one of {', '.join(FORMATS)}")
    cells = [[str(c) for c in row] for row in [head, *rows]]
    if any(len(row) != len(head) for row in cells):
        raise ValueError(f"every row of a table needs {len(head)} cells (one per column)")
    return _text(cells) if fmt == "text" else _markdown(cells)


def _text(cells: list[list[str]]) -> str:
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def _markdown(cells: list[list[str]]) -> str:
    head, *body = cells
    lines = ["| " + " | ".join(map(_escape, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(_escape, row)) + " |" for row in body]
    return "\n".join(lines)


def fmt_value(value: Any) -> str:
    """A config value in a table: JSON's words for booleans, floats to 3 significant digits."""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def fmt_metric(value: float | None) -> str:
    """A metric in a table: 4 significant digits, `-` without one."""
    return "-" if value is None else f"{value:.4g}"
