"""tuner/tables.py: one renderer, text for the terminal and markdown for MLflow."""

from __future__ import annotations

import pytest

from tuner.tables import fmt_metric, fmt_value, table

HEAD = ["#", "trial", "best eval/fid"]
ROWS = [[1, "a|b", 3.14159], [2, "longer name", ""]]


def test_text_columns_are_left_aligned_two_spaces_apart_without_trailing_spaces() -> None:
    assert table(HEAD, ROWS).splitlines() == [
        "#  trial        best eval/fid",
        "1  a|b          3.14159",
        "2  longer name",
    ]


def test_markdown_escapes_pipes_and_line_breaks_inside_cells() -> None:
    text = table(["key", "range"], [["a|b", "x\ny"]], fmt="markdown")
    assert text.splitlines() == ["| key | range |", "|---|---|", "| a\\|b | x y |"]


def test_a_text_table_splits_back_into_its_cells_on_runs_of_spaces() -> None:
    """What bench/searches.py's parse_leaderboard relies on: no cell holds two spaces."""
    rows = [[str(i), f"t{i}", "FINISHED", f"{0.1 * i:.3g}"] for i in range(12)]
    lines = table(["#", "trial", "status", "p"], rows).splitlines()
    assert [line.split() for line in lines[1:]] == rows


@pytest.mark.parametrize(
    ("head", "rows", "fmt", "said"),
    [
        (["a"], [["x"]], "html", "table format 'html' is not known; choose one of text, markdown"),
        (["a", "b"], [["x"]], "text", "every row of a table needs 2 cells"),
    ],
)
def test_bad_tables_are_one_clear_error(head: list, rows: list, fmt: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        table(head, rows, fmt)


@pytest.mark.parametrize(
    ("value", "shown"), [(True, "true"), (False, "false"), (0.0, "0"), (0.123456, "0.123"),
                         (20, "20"), ("cosine", "cosine"), (None, "None")],
)  # fmt: skip
def test_config_values_are_shown_as_the_leaderboard_always_showed_them(
    value: object, shown: str
) -> None:
    assert fmt_value(value) == shown


def test_metrics_have_four_significant_digits_and_a_dash_without_one() -> None:
    assert fmt_metric(16.0412) == "16.04" and fmt_metric(None) == "-"
