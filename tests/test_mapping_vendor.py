"""Vendor conventions the rules must read from the physics and the headers, not from names of
one study (issue 13): XA phase by name, enhanced volume counts, separate single-echo runs,
raw/normalised duplicates, planning scans, acquisition codes in task names."""

from __future__ import annotations

from engine.mapping import map_groups
from engine.model import SeriesInfo


def _s(num: int, name: str, **kw) -> SeriesInfo:  # type: ignore[no-untyped-def]
    base = dict(
        series_id=f"{num}-{name}",
        series_number=num,
        protocol_name=kw.pop("protocol", name),
        series_description=name,
        subject="01",
        patient_id="01",
        dim1=96,
        dim2=96,
        dim3=60,
        dim4=1,
        series_files=60,
        TR=2.0,
        TE=30.0,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
        sequence_name="epfid2d1_96",
    )
    base.update(kw)
    return SeriesInfo(**base)


def _paths(series: list[SeriesInfo]) -> dict[str, str]:
    res = map_groups(series)
    return {
        a.series_id: a.bids_path.rsplit("/", 1)[-1] or "SKIP:" + a.skip_reason
        for a in res.assignments
    }


def test_xa_phase_series_is_named_part_phase_by_its_pha_suffix() -> None:
    xa = ("ORIGINAL", "PRIMARY", "FMRI", "NONE")
    series = [
        _s(
            5,
            "cmrr_bold_rest_SBRef",
            protocol="cmrr_bold_rest",
            image_type=xa,
            sequence_name="",
            series_files=1,
        ),
        _s(
            6,
            "cmrr_bold_rest_SBRef_Pha",
            protocol="cmrr_bold_rest",
            image_type=xa,
            sequence_name="",
            series_files=1,
        ),
        _s(7, "cmrr_bold_rest", image_type=xa, sequence_name="", series_files=300, TR=-1.0),
        _s(
            8,
            "cmrr_bold_rest_Pha",
            protocol="cmrr_bold_rest",
            image_type=xa,
            sequence_name="",
            series_files=300,
            TR=-1.0,
        ),
    ]
    got = _paths(series)
    assert got["7-cmrr_bold_rest"] == "sub-01_task-rest_part-mag_bold", got
    assert got["8-cmrr_bold_rest_Pha"] == "sub-01_task-rest_part-phase_bold", got
    assert got["6-cmrr_bold_rest_SBRef_Pha"].endswith("part-phase_sbref"), got
    res = map_groups(series)
    ev = " ".join(e for m in res.mappings for e in m.evidence)
    assert "_Pha" in ev and "300 files of 60 slices" in ev


def test_separate_single_echo_runs_get_no_invented_echo() -> None:
    # two BOLD runs with other multiband factors: other TE and TR, acquired apart
    series = [
        _s(3, "bold_faces_mb2", protocol="bold_faces", TE=30.0, TR=1.5, dim4=200, series_files=200),
        _s(9, "bold_faces_mb4", protocol="bold_faces", TE=32.0, TR=0.8, dim4=200, series_files=200),
    ]
    got = _paths(series)
    assert all("echo-" not in p for p in got.values()), got
    # a real multi-echo acquisition: same TR, consecutive series, one per echo
    me = [
        _s(
            10 + i,
            f"me_bold_nback_e{i + 1}",
            protocol="me_bold_nback",
            TE=te,
            dim4=150,
            series_files=150,
        )
        for i, te in enumerate((13.0, 30.0, 47.0))
    ]
    got = _paths(me)
    assert sorted(p.split("_echo-")[1][0] for p in got.values()) == ["1", "2", "3"], got


def test_raw_and_normalised_copies_keep_the_normalised_one() -> None:
    mp = dict(
        sequence_name="tfl3d1_16ns", dim1=256, dim2=256, dim3=176, series_files=176, TR=2.3, TE=2.9
    )
    series = [
        _s(2, "t1_mprage_sag", image_type=("ORIGINAL", "PRIMARY", "M", "ND"), **mp),
        _s(3, "t1_mprage_sag", image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"), **mp),
    ]
    got = _paths(series)
    assert got["3-t1_mprage_sag"] == "sub-01_T1w", got
    assert got["2-t1_mprage_sag"].startswith("SKIP:duplicate"), got


def test_2d_planning_scan_is_skipped_but_a_t2star_gre_is_not() -> None:
    plan = _s(
        1,
        "t1_fl2d_sag",
        sequence_name="*fl2d1",
        dim3=25,
        series_files=25,
        TR=0.25,
        TE=2.5,
        mr_acquisition_type="2D",
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
    )
    swi = _s(
        2,
        "t2star_gre_tra",
        sequence_name="*fl2d1",
        dim3=25,
        series_files=25,
        TR=0.6,
        TE=20.0,
        mr_acquisition_type="2D",
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
    )
    got = _paths([plan, swi])
    assert got["1-t1_fl2d_sag"].startswith("SKIP:planning scan"), got
    assert got["2-t2star_gre_tra"].endswith("T2starw"), got


def test_acquisition_codes_are_not_the_task() -> None:
    series = [
        _s(4, "cmrr_mbep2d_bold_ip2me4_2iso_nback", dim4=200, series_files=200),
        _s(5, "fMRI_12channelcoil_tr1230_fast", dim4=200, series_files=200),
    ]
    res = map_groups(series)
    got = {a.series_id: a.bids_path for a in res.assignments}
    assert "task-nback_" in got["4-cmrr_mbep2d_bold_ip2me4_2iso_nback"], got
    unknown = [m for m in res.mappings if m.entities.get("task") == "unknown"]
    assert unknown and unknown[0].confidence < 0.5
    assert any("name the task" in e for e in unknown[0].evidence)


def _dwi_kw(**kw):  # type: ignore[no-untyped-def]
    base = dict(
        image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE"),
        manufacturer="Philips Medical Systems",
        sequence_name="",
        pe_axis="COL",
        orientation="tra",
        TR=8.0,
        TE=80.0,
    )
    base.update(kw)
    return base


def test_b0_beside_a_dwi_gets_a_dir_and_unknowable_ones_are_flagged() -> None:
    """Philips/GE store only the PE axis: a b0 named as the reversed blip of a DWI whose
    direction is known takes the opposite one; an EPI field map with nothing to go on gets a
    valid ``dir-unknown`` with a low confidence and a "set dir-" note, never no dir-."""
    series = [
        _s(3, "DTI_32dir_AP", **_dwi_kw(dim4=33, n_volumes=33, bvalues=[0.0, 1000.0])),
        _s(4, "DTI_b0_rev", **_dwi_kw(bvalues=[0.0])),
        _s(5, "SE_EPI_fmap", **_dwi_kw(image_type=("ORIGINAL", "PRIMARY", "M"))),
    ]
    got = _paths(series)
    assert got["4-DTI_b0_rev"] == "sub-01_acq-dwi_dir-PA_epi", got
    assert got["5-SE_EPI_fmap"] == "sub-01_dir-unknown_epi", got
    res = map_groups(series)
    by = {m.group_id: m for m in res.mappings}
    se = next(m for g, m in by.items() if "se_epi" in g)
    assert se.confidence <= 0.4 and any(e.startswith("set dir-") for e in se.evidence)
    assert any("anterior-posterior" in e for e in se.evidence)  # the axis it does know
    rev = next(m for g, m in by.items() if "b0_rev" in g)
    assert any("reversed phase encoding" in e for e in rev.evidence), rev.evidence
    # Siemens: the header polarity gives the direction, no guess needed
    siemens = [
        _s(5, "SE_EPI_fmap", **_dwi_kw(image_type=("ORIGINAL", "PRIMARY", "M"), pe_direction="j")),
    ]
    assert _paths(siemens)["5-SE_EPI_fmap"] == "sub-01_dir-PA_epi"


def test_philips_pcasl_keeps_the_source_series_and_its_m0() -> None:
    """Philips exports label/control as ``SOURCE - <name>`` and the subtraction as ``<name>``:
    one perf/_asl (the SOURCE), the subtraction skipped with why, a separate M0 -> _m0scan."""
    ph = dict(manufacturer="Philips Medical Systems", sequence_name="", TR=4.0, TE=11.0)
    it = ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")
    series = [
        _s(6, "SOURCE - pCASL", dim4=60, n_volumes=60, image_type=it, **ph),
        _s(7, "pCASL", image_type=it, **ph),
        _s(8, "M0 pCASL", image_type=it, **ph),
    ]
    got = _paths(series)
    assert got["6-SOURCE - pCASL"] == "sub-01_asl", got
    assert got["7-pCASL"].startswith("SKIP:scanner-computed perfusion"), got
    assert got["8-M0 pCASL"] == "sub-01_m0scan", got
    assert not any(p.endswith(("asl1", "asl2")) or "run-" in p for p in got.values())


def test_philips_enhanced_dual_echo_fieldmap_is_planned_as_dcm2niix_writes_it() -> None:
    """8 images per slice (2 echoes x magnitude/phase/real/imaginary) in one series: planned
    as magnitude1/2 + phase1/2 (what convert names dcm2niix's files), not magnitude1+2."""
    series = [
        _s(
            9,
            "B0map",
            dim4=8,
            n_volumes=8,
            echo_times=[4.6, 6.6],
            echo_numbers=[1, 2],
            sequence_name="",
            image_type=("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"),
            manufacturer="Philips Medical Systems",
        )
    ]
    res = map_groups(series)
    a = res.assignments[0]
    names = [a.bids_path] + a.extra_paths
    assert [n.rsplit("_", 1)[-1] for n in names] == ["magnitude1", "magnitude2", "phase1", "phase2"]
    assert any("_imaginary" in e for e in res.mappings[0].evidence)
