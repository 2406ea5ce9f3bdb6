"""One owner of run numbers: the mapper decides each series' run, the heuristic reproduces it.

Synthetic Siemens sessions (header facts as ``analyze`` reads them from ``engine.synth``'s DICOM)
go through grouping and the rules mapper; the compiled heuristic then runs over the series table
(``validate_module``) and must put every series exactly where the mapper did. The three studies
are the ones ``generate`` used to fail its own check on: (a) an SBRef taken before an aborted
run, (b) magnitude and phase SBRefs under one name, (c) protocols sharing a task name where only
some have an SBRef.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path

import pytest

from engine.heuristic.compiler import RUNS_SOURCE, compile_heuristic
from engine.heuristic.validate import load_heuristic, validate_module
from engine.mapping import map_groups
from engine.mapping.runs import SBREF_OF_ABORTED, SBREF_TAKEN, assign_series, session_runs
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo

_EPI = dict(
    dim1=16,
    dim2=16,
    TR=0.8,
    TE=30.0,
    protocol_name="ep2d_bold_nback",
    series_description="ep2d_bold_nback",
    sequence_name="*epfid2d1_64",
    image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
    mr_acquisition_type="2D",
    scanning_sequence="EP",
    sequence_variant="SK",
    scan_options="FS",
    pe_axis="COL",
    pe_direction="j-",
    echo_numbers=[1],
    echo_times=[30.0],
    flip_angle=52.0,
    slice_thickness=3.0,
    pixel_spacing=[3.0, 3.0],
    n_slices=8,
    orientation="tra",
    complex_part="mag",
)
_PHASE = dict(image_type=("ORIGINAL", "PRIMARY", "P", "ND"), complex_part="phase")
_HIDDEN = dict(image_type=("ORIGINAL", "PRIMARY", "OTHER"), complex_part="")
_MOTOR = dict(protocol_name="ep2d_bold_motor", series_description="ep2d_bold_motor", TR=1.5)
KINDS: dict[str, dict] = {
    "loc": dict(
        dim1=32,
        dim2=32,
        dim3=9,
        TR=0.0086,
        TE=4.0,
        protocol_name="localizer",
        series_description="localizer",
        sequence_name="*fl2d1",
        image_type=("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"),
        mr_acquisition_type="2D",
        scanning_sequence="GR",
        sequence_variant="SP\\OSP",
        echo_times=[4.0],
        flip_angle=20.0,
        n_slices=9,
        complex_part="mag",
    ),
    "t1w": dict(
        dim1=32,
        dim2=32,
        dim3=16,
        TR=2.3,
        TE=2.98,
        protocol_name="t1_mprage_sag_p2_iso",
        series_description="t1_mprage_sag_p2_iso",
        sequence_name="*tfl3d1_16ns",
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
        mr_acquisition_type="3D",
        scanning_sequence="GR\\IR",
        sequence_variant="SK\\SP\\MP",
        scan_options="IR",
        echo_times=[2.98],
        inversion_time=900.0,
        flip_angle=9.0,
        n_slices=16,
        orientation="sag",
        complex_part="mag",
    ),
    "sbref": {**_EPI, "dim3": 8, "series_description": "ep2d_bold_nback_SBRef"},
    "bold": {**_EPI, "dim3": 96, "n_volumes": 12},
    "aborted": {**_EPI, "dim3": 24, "n_volumes": 3},
    # the same task under a second protocol (a new sequence version) that has no SBRef
    "bold_v2": {
        **_EPI,
        "dim3": 96,
        "n_volumes": 12,
        "protocol_name": "ep2d_bold_nback_v2",
        "series_description": "ep2d_bold_nback_v2",
    },
    "sbref_motor": {**_EPI, **_MOTOR, "dim3": 8, "series_description": "ep2d_bold_motor_SBRef"},
    "sbref_motor_ph": {
        **_EPI,
        **_MOTOR,
        **_PHASE,
        "dim3": 8,
        "series_description": "ep2d_bold_motor_SBRef",
    },
    "bold_motor": {**_EPI, **_MOTOR, "dim3": 80, "n_volumes": 10},
    "bold_motor_ph": {**_EPI, **_MOTOR, **_PHASE, "dim3": 80, "n_volumes": 10},
    # magnitude or phase, analyze cannot tell (GE marks it in a private tag it does not read)
    "sbref_motor_x": {**_EPI, **_MOTOR, **_HIDDEN, "dim3": 8, "series_description": "mb_SBRef"},
    "bold_motor_x": {**_EPI, **_MOTOR, **_HIDDEN, "dim3": 80, "n_volumes": 10},
}


def _session(sub: str, ses: str, kinds: list[str]) -> list[SeriesInfo]:
    rows = []
    for num, kind in enumerate(kinds, start=1):
        f = KINDS[kind]
        t = f"08{num:02d}00.000000"
        rows.append(
            SeriesInfo(
                series_id=f"{num}-{f['protocol_name']}",
                series_number=num,
                series_files=f["dim3"],
                patient_id=sub,
                subject=sub,
                session=ses,
                date="20240304",
                time=t,
                acquisition_time=t,
                series_uid=f"2.25.{abs(hash((sub, ses, num))) % 10**12}",
                study_uid=f"2.25.{abs(hash((sub, ses))) % 10**12}",
                study_description="Research^Brain",
                manufacturer="SIEMENS",
                model_name="Prisma_fit",
                field_strength=3.0,
                modality="MR",
                sop_class="MR",
                image_type_parts=list(f["image_type"]),
                **f,
            )
        )
    return rows


def _check(tmp_path: Path, series: list[SeriesInfo], name: str = "h.py"):
    """Map, compile and validate the study; the heuristic must agree with the mapper."""
    res = map_groups(series)
    c = compile_heuristic(series, res.groups, res.mappings, res.assignments)
    assert not c.problems, c.problems
    f = tmp_path / name
    f.write_text(c.source)
    mod = load_heuristic(f)
    val = validate_module(mod, series, res.groups, res.mappings, res.assignments)
    assert val.ok, val.format_diff()
    # ... and without the assignments the plan's own numbering (the same rule) agrees too
    val2 = validate_module(mod, series, res.groups, res.mappings)
    assert val2.ok, val2.format_diff()
    mapped = {(a.subject, a.series_id): a for a in res.assignments}
    for chk in val.checks:
        a = mapped[(chk.subject, chk.series_id)]
        assert chk.produced == ([a.bids_path.removesuffix(".nii.gz")] if a.bids_path else [])
    return res, mod, c


def _paths(res) -> dict[tuple[str, str], str]:
    return {(a.subject, a.series_id): a.bids_path or a.skip_reason for a in res.assignments}


# --- (a) the SBRef of an aborted run ----------------------------------------------------------


def test_sbref_of_aborted_run_is_skipped_with_it(tmp_path):
    kinds = ["loc", "t1w", "sbref", "aborted", "sbref", "bold", "sbref", "bold"]
    series = _session("P01", "", kinds) + _session(
        "P02", "", ["loc", "t1w", "sbref", "bold", "sbref", "bold"]
    )
    res, _, c = _check(tmp_path, series)
    got = _paths(res)
    assert got[("P01", "3-ep2d_bold_nback")] == SBREF_OF_ABORTED
    assert got[("P01", "4-ep2d_bold_nback")].startswith("aborted run")
    assert got[("P01", "5-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-01_sbref"
    assert got[("P01", "6-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-01_bold"
    assert got[("P01", "7-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-02_sbref"
    assert got[("P01", "8-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-02_bold"
    assert got[("P02", "3-ep2d_bold_nback")] == "sub-P02/func/sub-P02_task-nback_run-01_sbref"
    # readable: a matcher per group, an aborted-run test, data tables; no UIDs, no {item}
    assert "'aborted'" in c.source.replace('"', "'") and "RUN_NAMES = {" in c.source
    assert "series_uid" not in c.source and "{item" not in c.source


def test_name_repeating_only_through_an_aborted_run_has_no_run(tmp_path):
    series = _session("P01", "", ["loc", "t1w", "sbref", "aborted", "sbref", "bold"])
    series += _session("P02", "", ["loc", "t1w", "sbref", "bold"])
    res, _, _ = _check(tmp_path, series)
    got = _paths(res)
    assert got[("P01", "3-ep2d_bold_nback")] == SBREF_OF_ABORTED
    assert got[("P01", "5-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_sbref"
    assert got[("P01", "6-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_bold"


def test_heuristic_of_one_subject_numbers_a_new_subject_like_the_mapper(tmp_path):
    """Compiled from P01 alone; P02 aborts a run (and repeats its SBRef) where P01 did not."""
    p01 = _session("P01", "", ["loc", "t1w", "sbref", "bold", "sbref", "bold"])
    p02 = _session("P02", "", ["loc", "t1w", "sbref", "bold", "sbref", "aborted", "sbref", "bold"])
    full = map_groups(p01 + p02)
    only01 = [
        replace(g, series_keys=[k for k in g.series_keys if k.startswith("P01|")])
        for g in full.groups
    ]
    only01 = [g for g in only01 if g.series_keys]
    a01 = [a for a in full.assignments if a.subject == "P01"]
    c = compile_heuristic(p01, only01, full.mappings, a01)
    assert not c.problems, c.problems
    f = tmp_path / "p01.py"
    f.write_text(c.source)
    a02 = [a for a in full.assignments if a.subject == "P02"]
    groups02 = [
        replace(g, series_keys=[k for k in g.series_keys if k.startswith("P02|")])
        for g in full.groups
    ]
    val = validate_module(load_heuristic(f), p02, groups02, full.mappings, a02)
    assert val.ok, val.format_diff()
    got = _paths(full)
    assert got[("P02", "5-ep2d_bold_nback")] == SBREF_OF_ABORTED
    assert got[("P02", "7-ep2d_bold_nback")] == "sub-P02/func/sub-P02_task-nback_run-02_sbref"


# --- (b) magnitude and phase SBRefs under one name --------------------------------------------


def test_magnitude_and_phase_sbrefs_never_share_a_run(tmp_path):
    """Magnitude and phase look alike: one SBRef name, one BOLD name; each run's second SBRef
    (the phase) would take the run its magnitude has: it is left out, never a collision."""
    run = ["sbref_motor_x", "sbref_motor_x", "bold_motor_x", "bold_motor_x"]
    series = _session("P01", "", ["loc", "t1w", *run, *run])
    res, _, _ = _check(tmp_path, series)
    got = _paths(res)
    pre = "sub-P01/func/sub-P01_task-motor"
    assert got[("P01", "3-ep2d_bold_motor")] == f"{pre}_run-01_sbref"
    assert got[("P01", "4-ep2d_bold_motor")] == SBREF_TAKEN
    assert got[("P01", "5-ep2d_bold_motor")] == f"{pre}_run-01_bold"
    assert got[("P01", "6-ep2d_bold_motor")] == f"{pre}_run-02_bold"
    assert got[("P01", "7-ep2d_bold_motor")] == f"{pre}_run-03_sbref"
    assert got[("P01", "8-ep2d_bold_motor")] == SBREF_TAKEN


def test_visible_phase_sbrefs_keep_their_part(tmp_path):
    run = ["sbref_motor", "sbref_motor_ph", "bold_motor", "bold_motor_ph"]
    series = _session("P01", "", ["loc", "t1w", *run, *run])
    res, _, _ = _check(tmp_path, series)
    got = _paths(res)
    pre = "sub-P01/func/sub-P01_task-motor"
    assert got[("P01", "4-ep2d_bold_motor")] == f"{pre}_run-01_part-phase_sbref"
    assert got[("P01", "7-ep2d_bold_motor")] == f"{pre}_run-02_part-mag_sbref"


def test_magnitude_and_phase_sbrefs_in_one_group(tmp_path):
    """Groups and mappings as a person may decide them: one SBRef group for both parts."""
    run = ["sbref_motor", "sbref_motor_ph", "bold_motor", "bold_motor_ph"]
    series = _session("01", "", [*run, *run])

    def keys(*kinds: str) -> list[str]:
        return [s.key for s, k in zip(series, [*run, *run], strict=True) if k in kinds]

    groups = [
        Group("sbref", "sbref", keys("sbref_motor", "sbref_motor_ph")),
        Group("mag", "mag", keys("bold_motor")),
        Group("ph", "ph", keys("bold_motor_ph")),
    ]
    maps = [
        Mapping("sbref", "func", "sbref", {"task": "motor"}),
        Mapping("mag", "func", "bold", {"task": "motor", "part": "mag"}),
        Mapping("ph", "func", "bold", {"task": "motor", "part": "phase"}),
    ]
    assigned = assign_series(
        series,
        {k: g.group_id for g in groups for k in g.series_keys},
        {m.group_id: m for m in maps},
    )
    got = {a.series_id: a.bids_path or a.skip_reason for a in assigned}
    assert got["1-ep2d_bold_motor"] == "sub-01/func/sub-01_task-motor_run-01_sbref"
    assert got["2-ep2d_bold_motor"] == SBREF_TAKEN
    assert got["5-ep2d_bold_motor"] == "sub-01/func/sub-01_task-motor_run-02_sbref"
    c = compile_heuristic(series, groups, maps, assigned)
    f = tmp_path / "h.py"
    f.write_text(c.source)
    for given in (assigned, None):
        val = validate_module(load_heuristic(f), series, groups, maps, given)
        assert val.ok, val.format_diff()


# --- (c) protocols sharing a task name, only some with an SBRef ------------------------------


def test_shared_task_name_with_and_without_sbref(tmp_path):
    series = _session("P01", "", ["loc", "t1w", "sbref", "bold", "bold_v2", "sbref", "bold"])
    res, _, _ = _check(tmp_path, series)
    got = _paths(res)
    assert got[("P01", "4-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-01_bold"
    assert got[("P01", "5-ep2d_bold_nback_v2")] == "sub-P01/func/sub-P01_task-nback_run-02_bold"
    assert got[("P01", "7-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-03_bold"
    assert got[("P01", "3-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-01_sbref"
    assert got[("P01", "6-ep2d_bold_nback")] == "sub-P01/func/sub-P01_task-nback_run-03_sbref"


# --- the rule itself ----------------------------------------------------------------------------


def test_session_runs_rule():
    sb, bold = "func/task-a_sbref", "func/task-a_bold"
    ev = [("1", sb, ""), ("2", bold, "aborted"), ("3", sb, ""), ("4", bold, "")]
    runs, repeated = session_runs(ev)
    assert runs == {
        "1": (None, SBREF_OF_ABORTED),
        "2": (None, "aborted run"),
        "3": (None, ""),
        "4": (None, ""),
    }
    assert repeated == set()
    runs, _ = session_runs(ev, {bold})  # numbered in the study: run-01 here too
    assert runs["3"] == runs["4"] == (1, "")
    # an SBRef pairs with the next BOLD whose entities include its own (part-mag here)
    ev = [("1", sb, ""), ("2", "func/task-a_part-mag_bold", ""), ("3", "anat/T1w", "")]
    assert session_runs(ev)[0]["1"] == (None, "")
    # a DWI SBRef follows its DWI run
    ev = [("1", "dwi/dir-AP_sbref", ""), ("2", "dwi/dir-AP_dwi", ""), ("3", "dwi/dir-AP_sbref", "")]
    ev += [("4", "dwi/dir-AP_dwi", "")]
    assert session_runs(ev)[0] == {k: (r, "") for k, r in zip("1234", (1, 1, 2, 2), strict=True)}


def test_run_rule_is_embedded_verbatim_and_self_contained():
    src = inspect.getsource(session_runs)
    assert RUNS_SOURCE == src
    ns: dict = {"__builtins__": __builtins__}
    exec(src, ns)  # no module-level names needed: the heuristic carries it alone
    ev = [("a", "func/task-x_sbref", ""), ("b", "func/task-x_bold", "aborted")]
    assert ns["session_runs"](ev)[0]["a"] == (None, SBREF_OF_ABORTED)
    assert SBREF_OF_ABORTED in src and SBREF_TAKEN in src


def test_assignments_keep_their_skip_reasons():
    """The mapper's own reason for an aborted run stays; the run rule adds the SBRef's."""
    series = _session("01", "", ["sbref", "aborted", "sbref", "bold"])
    groups = {s.key: ("sb" if "SBRef" in s.series_description else "bold") for s in series}
    maps = {
        "sb": Mapping("sb", "func", "sbref", {"task": "nback"}),
        "bold": Mapping("bold", "func", "bold", {"task": "nback"}),
    }
    flags = {series[1].key: ["aborted:3/12"]}
    out: list[SeriesAssignment] = assign_series(series, groups, maps, flags)
    assert [a.skip_reason for a in out] == [
        SBREF_OF_ABORTED,
        "aborted run: 3 of a typical 12 volumes/images",
        "",
        "",
    ]
    assert out[3].bids_path == "sub-01/func/sub-01_task-nback_bold"


# --- a real heudiconv run ----------------------------------------------------------------------


@pytest.mark.slow
def test_heudiconv_places_runs_as_mapped_with_an_aborted_sbref(tmp_path):
    """DICOM (engine.synth, the aborted nback run with its SBRef) -> analyze/group/map ->
    generate (its self-check must pass) -> heudiconv: func/ holds exactly the mapped runs."""
    import json
    import shutil

    from engine.cli import main
    from engine.synth import generate_study

    for exe in ("heudiconv", "dcm2niix"):
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} not installed")
    generate_study(tmp_path, subjects=1, vendor="siemens", aborted_sbref=True)
    out = tmp_path / "OUT"
    assert main(["-q", "analyze", str(tmp_path / "dicom"), str(out), "--no-progress"]) == 0
    for step in ("group", "map", "generate"):  # generate exits 1 when its check disagrees
        assert main(["-q", step, str(out)]) == 0, step
    args = ["convert", str(out), "--subject", "01", "--dicom-dir", str(tmp_path / "dicom")]
    main([*args, "--no-validator"])
    expected = json.loads((tmp_path / "expected_bids.json").read_text())["series"]
    want = {p for e in expected for p in e["paths"] if "/func/" in p}
    assert any("sbref_aborted" == e["kind"] and not e["paths"] for e in expected)
    placed = {
        str(p.relative_to(out / "bids")).split(".nii")[0]
        for p in (out / "bids").glob("sub-*/func/*.nii*")
    }
    assert placed == want
