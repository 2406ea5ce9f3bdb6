"""Compiler + validator: hand-built studies, the pairs' own truth, odd protocol names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.heuristic.compiler import compile_heuristic
from engine.heuristic.validate import load_heuristic, validate_module
from engine.model import Group, Mapping, SeriesInfo

BOLD_IT = ("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC")


def _s(sub, ses, num, prot, **kw) -> SeriesInfo:
    kw.setdefault("image_type", ("ORIGINAL", "PRIMARY", "M", "ND"))
    return SeriesInfo(
        series_id=f"{num}-{prot}",
        series_number=num,
        protocol_name=prot,
        series_description=kw.pop("desc", prot),
        subject=sub,
        session=ses,
        patient_id=f"P{sub}",
        **kw,
    )


def _session(sub: str, ses: str, n_rest: int, aborted: bool = False) -> list[SeriesInfo]:
    out = [
        _s(sub, ses, 1, "localizer", dim3=3),
        _s(sub, ses, 2, "t1_mprage", dim1=256, dim3=176, sequence_name="*tfl3d1"),
    ]
    num = 3
    for _ in range(n_rest):
        out.append(_s(sub, ses, num, "rest_bold", desc="rest_bold_SBRef", dim4=1, TE=30.0))
        out.append(_s(sub, ses, num + 1, "rest_bold", dim4=300, TE=30.0, image_type=BOLD_IT))
        num += 2
    if aborted:
        out.append(_s(sub, ses, num, "rest_bold", dim4=12, TE=30.0, image_type=BOLD_IT))
        num += 1
    out += [
        _s(sub, ses, num, "gre_field_map", dim4=2, TE=4.92, echo_numbers=[1, 2]),
        _s(
            sub,
            ses,
            num + 1,
            "gre_field_map",
            TE=7.38,
            image_type=("ORIGINAL", "PRIMARY", "P", "ND"),
        ),
        _s(
            sub,
            ses,
            num + 2,
            "t1_mprage",
            desc="t1_mprage_MPR_cor",
            image_type=("DERIVED", "PRIMARY", "MPR"),
        ),
    ]
    return out


def _study(cells: list[tuple[str, str, int, bool]]):
    series = [s for sub, ses, n, ab in cells for s in _session(sub, ses, n, ab)]
    specs = {
        "loc": (lambda s: s.protocol_name == "localizer", Mapping("loc", skip_reason="localizer")),
        "t1": (
            lambda s: s.protocol_name == "t1_mprage" and "MPR" not in s.image_type,
            Mapping("t1", "anat", "T1w"),
        ),
        "mpr": (lambda s: "MPR" in s.image_type, Mapping("mpr", skip_reason="derived")),
        "sbref": (
            lambda s: s.series_description.endswith("SBRef"),
            Mapping("sbref", "func", "sbref", {"task": "rest"}),
        ),
        "bold": (
            lambda s: s.protocol_name == "rest_bold" and s.dim4 >= 150,
            Mapping("bold", "func", "bold", {"task": "rest"}),
        ),
        "abort": (
            lambda s: s.protocol_name == "rest_bold" and 1 < s.dim4 < 150,
            Mapping("abort", skip_reason="aborted"),
        ),
        "mag": (
            lambda s: s.protocol_name == "gre_field_map" and "M" in s.image_type,
            Mapping("mag", "fmap", "magnitude1", intended_for=["bold"]),
        ),
        "ph": (
            lambda s: s.protocol_name == "gre_field_map" and "P" in s.image_type,
            Mapping("ph", "fmap", "phasediff", intended_for=["bold"]),
        ),
    }
    groups = [Group(gid, gid, [s.key for s in series if f(s)]) for gid, (f, _) in specs.items()]
    groups = [g for g in groups if g.series_keys]
    return series, groups, [m for _, m in specs.values()]


def _compile_and_load(tmp_path: Path, series, groups, maps, name="h.py"):
    c = compile_heuristic(series, groups, maps)
    f = tmp_path / name
    f.write_text(c.source)
    return c, load_heuristic(f), f


def test_separates_sbref_phase_aborted_and_derived(tmp_path):
    series, groups, maps = _study([("01", "", 2, True)])
    c, mod, f = _compile_and_load(tmp_path, series, groups, maps)
    assert not c.problems
    res = validate_module(mod, series, groups, maps)
    assert res.ok, res.format_diff()
    conv = {x.series_id: x.produced for x in res.checks}
    assert conv["4-rest_bold"] == ["sub-01/func/sub-01_task-rest_run-01_bold"]
    assert conv["6-rest_bold"] == ["sub-01/func/sub-01_task-rest_run-02_bold"]
    assert conv["7-rest_bold"] == []  # aborted: fewer volumes
    assert conv["2-t1_mprage"] == ["sub-01/anat/sub-01_T1w"]  # once per session: no run
    # a two-echo magnitude series is written as _magnitude -> heudiconv numbers 1 and 2
    assert "fmap/{bids_subject_session_prefix}{run}_magnitude'" in c.source.replace('"', "'")
    assert "series_uid" not in c.source and "series_id ==" not in c.source
    # field maps: the heuristic writes the mapping's intent itself (heudiconv calls
    # custom_callable); heudiconv's own matching would give the field map every image
    assert "INTENDED_FOR" in c.source and "def custom_callable(" in c.source
    assert "POPULATE_INTENDED_FOR_OPTS =" not in c.source


def test_sessions_and_cross_subject(tmp_path):
    """Generated from subject 01 (one run per session), applied to 02 with two runs."""
    series, groups, maps = _study([("01", "1", 2, False), ("01", "2", 1, False)])
    c, mod, _ = _compile_and_load(tmp_path, series, groups, maps)
    res = validate_module(mod, series, groups, maps)
    assert res.ok, res.format_diff()
    paths = {p for x in res.checks for p in x.produced}
    assert "sub-01/ses-2/func/sub-01_ses-2_task-rest_run-01_bold" in paths
    assert "sub-01/ses-1/anat/sub-01_ses-1_T1w" in paths
    other, og, om = _study([("02", "1", 2, True), ("02", "2", 2, False)])
    res2 = validate_module(mod, other, og, om)
    assert res2.ok, res2.format_diff()

    # same naming scheme: identical names once subject and run numbers are set aside
    def scheme(ps, sub):
        return {re.sub(r"run-\d+", "run-NN", p.replace(sub, "sub-X")) for p in ps}

    assert scheme(paths, "sub-01") == scheme({p for x in res2.checks for p in x.produced}, "sub-02")


def test_validator_reports_diff(tmp_path):
    series, groups, maps = _study([("01", "", 2, False)])
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def create_key(t, outtype=('nii.gz',), annotation_classes=None):\n"
        "    return t, outtype, annotation_classes\n\n\n"
        "def infotodict(seqinfo):\n"
        "    k = create_key('{bids_subject_session_dir}/anat/{bids_subject_session_prefix}_T1w')\n"
        "    info = {k: []}\n"
        "    for s in seqinfo:\n"
        "        if s.protocol_name in ('t1_mprage', 'localizer'):\n"
        "            info[k].append(s.series_id)\n"
        "    return info\n"
    )
    res = validate_module(load_heuristic(bad), series, groups, maps)
    assert not res.ok
    counts = res.counts()
    assert counts.get("extra") and counts.get("missing") and counts.get("collision")
    assert "[missing]" in res.format_diff()


def test_deterministic(tmp_path):
    series, groups, maps = _study([("01", "", 2, True)])
    assert (
        compile_heuristic(series, groups, maps).source
        == compile_heuristic(series, groups, maps).source
    )


def _ruff(path: Path) -> None:
    """Lint-clean, blank lines included (E30x, a preview rule set). The layout is the
    compiler's own: ``ruff format`` would only change quotes and wrap long conditions."""
    ruff = shutil.which("ruff")
    if ruff is None:
        return
    r = subprocess.run(
        [ruff, "check", "--isolated", "--preview", "--select", "E,F,W,I,B,UP"]
        + ["--ignore", "E501", str(path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout


def test_generated_source_is_ruff_clean(tmp_path):
    series, groups, maps = _study([("01", "1", 2, True), ("01", "2", 1, False)])
    _, _, f = _compile_and_load(tmp_path, series, groups, maps)
    _ruff(f)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(st.text(min_size=1, max_size=20), min_size=2, max_size=4, unique=True))
def test_any_protocol_name_gives_valid_python(tmp_path, names):
    series = [_s("01", "", i + 1, n) for i, n in enumerate(names)]
    groups = [
        Group(f"g{i}", n, [s.key]) for i, (n, s) in enumerate(zip(names, series, strict=True))
    ]
    maps = [Mapping(f"g{i}", "func", "bold", {"task": f"t{i}"}) for i in range(len(names) - 1)]
    maps.append(Mapping(f"g{len(names) - 1}", skip_reason="x"))
    c = compile_heuristic(series, groups, maps, context='he said "hi" \\ """')
    compile(c.source, "h.py", "exec")
    f = tmp_path / "h.py"
    f.write_text(c.source)
    res = validate_module(load_heuristic(f), series, groups, maps)
    assert res.ok, res.format_diff()


def test_pairs_reproduce_their_truth(shared_data, tmp_path):
    from tests.heuristic_helpers import pair_inputs

    folders = sorted((shared_data / "pairs").iterdir())
    assert folders
    for folder in folders:
        series, groups, maps = pair_inputs(folder)
        c, mod, f = _compile_and_load(tmp_path, series, groups, maps, f"{folder.name}.py")
        assert not c.problems, c.problems
        res = validate_module(mod, series, groups, maps)
        assert res.ok, f"{folder.name}: {res.format_diff()}"
        _ruff(f)


def _asl_tree(tmp_path: Path, n_vols: int = 5) -> Path:
    import json

    import nibabel as nb
    import numpy as np

    bids = tmp_path / "bids"
    perf, fmap = bids / "sub-01" / "perf", bids / "sub-01" / "fmap"
    perf.mkdir(parents=True)
    fmap.mkdir(parents=True)
    img = nb.Nifti1Image(np.zeros((2, 2, 2, n_vols), dtype=np.int16), np.eye(4))
    nb.save(img, perf / "sub-01_asl.nii.gz")
    side = {
        "Manufacturer": "Siemens",
        "RepetitionTime": 4.8,
        "ArterialSpinLabelingType": "PCASL",
        "PostLabelingDelay": 1.8,
        "LabelingDuration": 1.8,
        "MagneticFieldStrength": 3,
        "MRAcquisitionType": "3D",
        "EchoTime": 0.011,
    }
    (perf / "sub-01_asl.json").write_text(json.dumps(side))
    (fmap / "sub-01_epi.json").write_text(
        json.dumps({"IntendedFor": ["perf/sub-01_asl.nii.gz", "func/x_bold.nii.gz"]})
    )
    (bids / "sub-01" / "sub-01_scans.tsv").write_text(
        "filename\tacq_time\nperf/sub-01_asl.nii.gz\tn/a\nfunc/x_bold.nii.gz\tn/a\n"
    )
    return bids


def test_sidecars_filled_from_metadata_and_headers(tmp_path):
    import json

    from engine.heuristic.sidecars import complete_sidecars

    bids = _asl_tree(tmp_path)
    entries = [
        (
            "asl",
            {
                "M0Type": "Included",
                "BackgroundSuppression": True,
                "aslcontext": {"head": ["m0scan"], "repeat": ["control", "label"]},
            },
        )
    ]
    res = complete_sidecars(
        bids, ["sub-01/perf/sub-01_asl.nii.gz"], entries, incomplete_dir=tmp_path / "inc"
    )
    assert not res.left_out
    side = json.loads((bids / "sub-01/perf/sub-01_asl.json").read_text())
    assert side["RepetitionTimePreparation"] == 4.8 and side["TotalAcquiredPairs"] == 2
    assert side["M0Type"] == "Included" and side["BackgroundSuppression"] is True
    ctx = (bids / "sub-01/perf/sub-01_aslcontext.tsv").read_text().split()
    assert ctx == ["volume_type", "m0scan", "control", "label", "control", "label"]


def test_sidecars_left_out_with_fix(tmp_path):
    import json

    from engine.heuristic.convert import ConversionResult
    from engine.heuristic.report import conversion_report
    from engine.heuristic.sidecars import complete_sidecars

    bids = _asl_tree(tmp_path)
    bad = [("sub-*/perf/*_asl", {"M0Type": "Sometimes", "aslcontext": ["m0scan"]})]
    res = complete_sidecars(
        bids, ["sub-01/perf/sub-01_asl.nii.gz"], bad, incomplete_dir=tmp_path / "inc"
    )
    (fo,) = res.left_out
    assert {"BackgroundSuppression", "M0Type", "aslcontext"} <= set(fo.missing)
    assert any("M0Type must be one of" in p for p in fo.problems)
    assert any("aslcontext lists 1 volumes, the image has 5" in p for p in fo.problems)
    assert (tmp_path / "inc/sub-01/perf/sub-01_asl.nii.gz").exists()
    assert not list((bids / "sub-01/perf").iterdir())
    assert "perf/" not in (bids / "sub-01/sub-01_scans.tsv").read_text()
    fmap = json.loads((bids / "sub-01/fmap/sub-01_epi.json").read_text())
    assert fmap["IntendedFor"] == ["func/x_bold.nii.gz"]
    r = ConversionResult("01", "", bids, sidecars=res)
    text = conversion_report([r], None, metadata_path="OUT/sidecar_metadata.json")
    assert "LEFT OUT sub-01/perf/sub-01_asl.nii.gz" in text
    assert "missing required M0Type (asl.MRIASLCommonMetadataFields)" in text
    assert '"BackgroundSuppression": true|false' in text


def test_convert_finds_dicom_via_analyze_input(tmp_path):
    import json

    from engine.heuristic.convert import files_for_series

    dicom = tmp_path / "dicom"
    dicom.mkdir()
    (tmp_path / "OUT").mkdir()
    (tmp_path / "OUT" / "analyze_input.json").write_text(json.dumps({"inputs": [str(dicom)]}))
    rows = [_s("01", "", 1, "t1", series_uid="1.2.3")]
    assert files_for_series(tmp_path / "OUT", rows, None) == {}  # walked, nothing to find
    (tmp_path / "OUT" / "analyze_input.json").write_text(json.dumps({"inputs": ["/nonexistent"]}))
    try:
        files_for_series(tmp_path / "OUT", rows, None)
    except Exception as exc:
        assert "--dicom-dir" in str(exc)
    else:
        raise AssertionError("a missing input must be a UserError naming --dicom-dir")


def test_convert_stages_gzipped_dicom_decompressed(tmp_path):
    """``.dcm.gz`` series are found by their header and staged as plain DICOM (heudiconv and
    dcm2niix read no gzip); plain files are linked; the input tree is left as it was."""
    import gzip

    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from engine.heuristic.convert import files_for_series, link_files

    dicom = tmp_path / "dicom"
    dicom.mkdir()
    uids = {"gz": "1.2.3.1", "plain": "1.2.3.2"}
    for kind, uid in uids.items():
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = uid
        path = dicom / f"{kind}.dcm"
        ds.save_as(path, enforce_file_format=True)
        if kind == "gz":
            (dicom / "gz.dcm.gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    (dicom / "notes.txt.gz").write_bytes(gzip.compress(b"not DICOM"))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in dicom.iterdir())
    rows = [_s("01", "", n, kind, series_uid=uid) for n, (kind, uid) in enumerate(uids.items())]
    (tmp_path / "OUT").mkdir()
    found = files_for_series(tmp_path / "OUT", rows, dicom)
    assert found == {
        uids["gz"]: [str(dicom / "gz.dcm.gz")],
        uids["plain"]: [str(dicom / "plain.dcm")],
    }
    staged = link_files(found, tmp_path / "OUT" / ".convert_work" / "x")
    (gz,) = (staged / "s0000").iterdir()
    (plain,) = (staged / "s0001").iterdir()
    assert gz.name == "000000_gz.dcm" and not gz.is_symlink()
    assert pydicom.dcmread(gz).SeriesInstanceUID == uids["gz"]
    assert plain.is_symlink() and plain.resolve() == (dicom / "plain.dcm").resolve()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in dicom.iterdir()) == before


def test_dcm2niix_wrapper_restores_the_convert_line(tmp_path, monkeypatch):
    """dcm2niix's Philips field-map warning lacks its newline, gluing ``Convert ...`` onto it;
    nipype then finds no output. The wrapper convert puts on heudiconv's PATH splits the line."""
    import os

    from engine.heuristic.convert import write_dcm2niix_wrapper

    fake = tmp_path / "real" / "dcm2niix"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'printf "Found 8 DICOM file(s)\\nWarning: Unable to distinguish Philips fieldmaps.'
        'Convert 8 DICOM as /o/x_e2_ph (16x16x8x1)\\nConvert 8 DICOM as /o/y (16x16x8x1)\\n"\n'
        'echo "args: $*" >&2\nexit 3\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(fake.parent), os.environ.get("PATH", "")]))
    import engine.heuristic.staging as staging

    # a dcm2niix beside this interpreter comes first (the pip one): here the fake on PATH
    monkeypatch.setattr(staging, "beside_interpreter", lambda name: None)
    wrapper = write_dcm2niix_wrapper(tmp_path / "bin")
    assert wrapper is not None
    proc = subprocess.run(
        [str(wrapper / "dcm2niix"), "-b", "y", "dir with space"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip() == "args: -b y dir with space"
    lines = proc.stdout.splitlines()
    assert lines == [
        "Found 8 DICOM file(s)",
        "Warning: Unable to distinguish Philips fieldmaps.",
        "Convert 8 DICOM as /o/x_e2_ph (16x16x8x1)",
        "Convert 8 DICOM as /o/y (16x16x8x1)",
    ]


def test_load_heuristic_leaves_no_pycache(tmp_path):
    h = tmp_path / "heuristic.py"
    h.write_text("def infotodict(seqinfo):\n    return {}\n")
    load_heuristic(h)
    assert not (tmp_path / "__pycache__").exists()
