"""Grouping: every series in exactly one group, stable ids, protocol-matrix flags."""

from __future__ import annotations

from engine.cli import main
from engine.grouping import group_series, normalize_name
from engine.model import SeriesInfo
from engine.workspace import GROUPING_REPORT, GROUPS_TSV, write_series


def _bold(sub: str, num: int, name: str = "ep2d_bold_rest_Run1", nvol: int = 200) -> SeriesInfo:
    return SeriesInfo(
        series_id=f"{num}-{name}",
        protocol_name=name,
        series_description=name,
        sequence_name="*epfid2d1_64",
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"),
        dim1=64,
        dim2=64,
        dim3=36,
        dim4=nvol,
        TR=2.0,
        TE=30.0,
        subject=sub,
        series_number=num,
        series_uid=f"{sub}.{num}",
    )


def test_normalize_name_strips_runs_and_prefixes() -> None:
    assert normalize_name("retinotopia_8bar_Run2") == "retinotopia_8bar"
    assert normalize_name("WIP RESTING FMRI SENSE") == "resting fmri sense"
    assert normalize_name("func-bold_task-rest_run-01__dup-02") == "func-bold_task-rest"


def test_runs_group_together_and_aborted_flagged() -> None:
    series = [
        _bold("01", 3, "ep2d_bold_rest_Run1"),
        _bold("01", 4, "ep2d_bold_rest_Run2"),
        _bold("01", 5, "ep2d_bold_rest_Run3", nvol=12),
        _bold("02", 3, "ep2d_bold_rest_Run1"),
    ]
    res = group_series(series)
    assert len(res.groups) == 1
    g = res.groups[0]
    assert g.group_id.startswith("g01_ep2d_bold_rest")
    assert "repeated" in g.flags and "aborted" in g.flags
    assert res.series_flags[series[2].key][0].startswith("aborted")
    assert res.matrix[g.group_id] == {"01": 3, "02": 1}


def test_empty_fields_never_drop_a_row() -> None:
    series = [SeriesInfo(series_id=str(i)) for i in range(5)] + [SeriesInfo()]
    res = group_series(series)
    keys = [k for g in res.groups for k in g.series_keys]
    assert sorted(keys) == sorted(s.key for s in series) or len(keys) == len(series)
    assert all(g.group_id for g in res.groups)


def test_image_type_splits_phase_from_magnitude() -> None:
    mag = _bold("01", 3, "motor")
    ph = _bold("01", 4, "motor")
    ph.image_type = ("ORIGINAL", "PRIMARY", "P", "ND")
    assert len(group_series([mag, ph]).groups) == 2


def test_group_command_writes_outputs(tmp_path) -> None:
    write_series(tmp_path, [_bold("01", 3), _bold("02", 3)])
    assert main(["group", str(tmp_path)]) == 0
    assert (tmp_path / GROUPS_TSV).read_text().startswith("group_id\t")
    assert "Protocol matrix" in (tmp_path / GROUPING_REPORT).read_text()


def test_group_command_without_analyze_is_user_error(tmp_path) -> None:
    assert main(["group", str(tmp_path)]) == 2
