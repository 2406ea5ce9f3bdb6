"""participants.tsv ages: DICOM Age Strings in years, top-coded at 89 (privacy, BIDS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.heuristic.participants import age_in_years, tidy_participants


@pytest.mark.parametrize(
    ("raw", "years"),
    [
        ("033Y", "33"),
        ("33", "33"),
        ("006M", "0.5"),
        ("018M", "1.5"),
        ("012W", "0.23"),
        ("001D", "0"),
        ("088Y", "88"),
        ("089Y", "89+"),
        ("122", "89+"),
        ("90+", "89+"),
        ("abc", "n/a"),
        ("", "n/a"),
    ],
)
def test_age_strings_in_years(raw: str, years: str) -> None:
    assert age_in_years(raw) == years


def test_participants_rewritten_in_place(tmp_path: Path) -> None:
    p = tmp_path / "participants.tsv"
    p.write_text(
        "participant_id\tage\tsex\tgroup\n"
        "sub-01\t33\tM\tcontrol\nsub-02\t1D\tO\tcontrol\n"
        "sub-04\tn/a\tn/a\tcontrol\nsub-06\t122\tO\tcontrol\n"
    )
    changed = tidy_participants(tmp_path)
    assert changed == ["sub-02: age 1D -> 0", "sub-06: age 122 -> 89+"]
    assert p.read_text().splitlines() == [
        "participant_id\tage\tsex\tgroup",
        "sub-01\t33\tM\tcontrol",
        "sub-02\t0\tO\tcontrol",
        "sub-04\tn/a\tn/a\tcontrol",
        "sub-06\t89+\tO\tcontrol",
    ]
    assert tidy_participants(tmp_path) == []  # idempotent
    assert tidy_participants(tmp_path / "missing") == []
