"""The synthetic study generator (engine.synth): real DICOM that dcm2niix converts, headers a
mapper needs, layouts, determinism, schema-valid expected names, vendor styles, PHI, CLI."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from engine.bids_schema import get_schema
from engine.cli import main
from engine.synth import generate_study
from engine.synth.csa import build_csa

SKIP_WORDS = {"localizer", "derived", "motion-corrected", "aborted", "non-image"}


@pytest.fixture(scope="module")
def siemens(tmp_path_factory):
    return generate_study(tmp_path_factory.mktemp("siemens"), subjects=2)


@pytest.fixture(scope="module")
def vendors(tmp_path_factory, siemens):
    out = {"siemens": siemens}
    for v in ("ge", "philips"):
        out[v] = generate_study(tmp_path_factory.mktemp(v), subjects=1, vendor=v)
    return out


def _read(m, rec, i=0):
    return pydicom.dcmread(m.root / rec.files[i])


def _series(m, kind, subject="01"):
    return [s for s in m.series if s.kind == kind and s.subject == subject]


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


# --- content ------------------------------------------------------------------------------


def test_default_study_is_small_and_complete(siemens):
    assert 1000 < siemens.n_files < 5000
    assert siemens.n_files == sum(s.n_files for s in siemens.series)
    kinds = Counter(s.kind for s in siemens.series if s.subject == "01")
    for k in ("loc", "t2w", "flair", "mp2rage_inv1", "mp2rage_inv2", "mp2rage_uni", "gre_mag",
              "gre_phase", "se_ap", "se_pa", "bold_aborted", "bold_rest", "sbref_rest",
              "moco_rest", "bold_me", "bold_mag", "bold_phase", "dwi", "dwi_adc", "dwi_tracew",
              "dwi_fa", "dwi_b0pa", "report"):  # fmt: skip
        assert kinds[k] == 1, k
    assert kinds["bold_nback"] == kinds["sbref_nback"] == kinds["t1w"] == 2
    assert Counter(s.kind for s in siemens.series if s.subject == "02")["t1w"] == 1
    assert len({s.series_uid for s in siemens.series}) == len(siemens.series)
    assert _series(siemens, "bold_aborted")[0].n_volumes == 3
    assert _series(siemens, "bold_rest")[0].n_volumes >= 10


def test_expected_json_is_schema_valid_and_follows_conventions(siemens):
    doc = json.loads(siemens.expected_path.read_text())
    schema = get_schema()
    assert doc["bids_version"] == schema.version
    assert doc["generator"]["subjects"] == 2
    all_paths = []
    for s in doc["series"]:
        assert bool(s["skip"]) != bool(s["paths"]), s
        assert not s["skip"] or s["skip"] in SKIP_WORDS
        for p in s["paths"]:
            assert schema.check_relpath(p) == [], p
            assert "/ses-" not in p  # one session -> no session level
            assert p.startswith(f"sub-{s['subject']}/")
        all_paths += s["paths"]
    assert len(all_paths) == len(set(all_paths))
    names = {p.rsplit("/", 1)[1] for p in all_paths}
    for n in ("sub-01_run-01_T1w", "sub-01_run-02_T1w", "sub-02_run-01_T1w",
              "sub-01_task-nback_run-01_bold", "sub-01_task-nback_run-02_sbref",
              "sub-01_task-rest_bold", "sub-01_task-rest_sbref",
              "sub-01_task-memory_echo-3_bold", "sub-01_task-motor_part-phase_bold",
              "sub-01_inv-2_MP2RAGE", "sub-01_UNIT1", "sub-01_magnitude2",
              "sub-01_phasediff", "sub-01_dir-PA_epi", "sub-01_acq-dwi_dir-PA_epi",
              "sub-01_dir-AP_dwi", "sub-01_FLAIR"):  # fmt: skip
        assert n in names, n
    skips = {s["skip"] for s in doc["series"]}
    assert skips == SKIP_WORDS | {""}


def test_sessions_are_studies_in_date_order(tmp_path):
    m = generate_study(tmp_path, subjects=1, sessions=2, vendor="philips")
    ses = {}
    for rec in m.series:
        if rec.kind == "t2w":
            ses[rec.session] = _read(m, rec)
    assert set(ses) == {"01", "02"}
    assert ses["01"].StudyInstanceUID != ses["02"].StudyInstanceUID
    assert ses["01"].StudyDate < ses["02"].StudyDate
    for rec in m.series:
        for p in rec.paths:
            assert p.startswith(f"sub-01/ses-{rec.session}/")
            assert get_schema().check_relpath(p) == []


def test_headers_carry_what_a_mapper_needs(siemens):
    m = siemens
    me = _series(m, "bold_me")[0]
    dss = [pydicom.dcmread(m.root / f, stop_before_pixels=True) for f in me.files]
    assert {int(d.EchoNumbers) for d in dss} == {1, 2, 3}
    assert sorted({float(d.EchoTime) for d in dss}) == [14.0, 39.0, 63.0]
    assert {int(d.AcquisitionNumber) for d in dss} == set(range(1, 11))
    assert me.n_files == 3 * 10 * 8
    inv = {
        float(_read(m, _series(m, k)[0]).InversionTime) for k in ("mp2rage_inv1", "mp2rage_inv2")
    }
    assert inv == {700.0, 2500.0}
    t1 = _read(m, _series(m, "t1w")[0])
    assert float(t1.InversionTime) == 900.0 and float(t1.RepetitionTime) == 2300.0
    assert t1.MRAcquisitionType == "3D" and t1.SequenceName == "*tfl3d1_16ns"
    assert list(_read(m, _series(m, "mp2rage_uni")[0]).ImageType)[-1] == "UNI"
    assert "P" in _read(m, _series(m, "bold_phase")[0]).ImageType
    assert "MOCO" in _read(m, _series(m, "moco_rest")[0]).ImageType
    assert "ADC" in _read(m, _series(m, "dwi_adc")[0]).ImageType
    gre = [pydicom.dcmread(m.root / f) for f in _series(m, "gre_mag")[0].files]
    assert sorted({float(d.EchoTime) for d in gre}) == [4.92, 7.38]
    se = _read(m, _series(m, "se_ap")[0])
    assert list(se.ScanningSequence) == ["SE", "EP"] and se.InPlanePhaseEncodingDirection == "COL"
    assert float(_read(m, _series(m, "bold_rest")[0]).RepetitionTime) == 800.0
    assert float(t1.MagneticFieldStrength) == 3.0 and t1.Manufacturer == "SIEMENS"
    rep = _read(m, _series(m, "report")[0])
    assert rep.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66" and "PixelData" not in rep


def test_geometry_is_consistent(siemens):
    for kind in ("t1w", "bold_rest", "dwi"):
        rec = _series(siemens, kind)[0]
        dss = [pydicom.dcmread(siemens.root / f, stop_before_pixels=True) for f in rec.files]
        first = [d for d in dss if int(d.get("AcquisitionNumber", 1)) == 1 and d.EchoNumbers == 1]
        iop = np.array(first[0].ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        pos = np.array([d.ImagePositionPatient for d in first], float)
        steps = np.diff(pos @ normal)
        assert np.allclose(steps, float(first[0].SpacingBetweenSlices)), kind
        assert np.allclose(pos - pos[0] - np.outer(pos @ normal - pos[0] @ normal, normal), 0)
        assert len({str(d.AcquisitionTime) for d in dss}) > 1 or rec.n_volumes == 1
        assert [float(v) for v in first[0].PixelSpacing] and int(first[0].Rows) > 0


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
def test_siemens_csa_header_has_polarity_and_diffusion(siemens):
    from nibabel.nicom import csareader

    def csa(rec, i=0):
        return csareader.get_csa_header(_read(siemens, rec, i))["tags"]

    assert csa(_series(siemens, "se_ap")[0])["PhaseEncodingDirectionPositive"]["items"] == [1]
    assert csa(_series(siemens, "se_pa")[0])["PhaseEncodingDirectionPositive"]["items"] == [0]
    dwi = _series(siemens, "dwi")[0]
    per_vol = len(dwi.files) // dwi.n_volumes
    bvals = [csa(dwi, v * per_vol)["B_value"]["items"][0] for v in range(dwi.n_volumes)]
    assert bvals[0] == 0 and set(bvals[1:]) == {1000} and len(bvals) >= 7
    g = csa(dwi, per_vol)["DiffusionGradientDirection"]["items"]
    assert len(g) == 3 and abs(np.linalg.norm(g) - 1) < 1e-6


@pytest.mark.filterwarnings("ignore:The DICOM readers are highly experimental")
def test_csa_writer_round_trips():
    from nibabel.nicom import csareader

    tags = csareader.read(build_csa({"B_value": [1000], "SliceNormalVector": [0.0, 0.0, 1.0]}))
    assert tags["tags"]["B_value"]["items"] == [1000]
    assert tags["tags"]["SliceNormalVector"]["items"] == [0.0, 0.0, 1.0]
    assert tags["tags"]["B_value"]["n_items"] == 6


def test_phi_present(siemens):
    for rec in siemens.series[::7]:
        ds = _read(siemens, rec)
        assert ds.PatientID == f"P{rec.subject}"  # the label is neutral: 01, 02, ...
        assert str(ds.PatientName) and ds.PatientBirthDate and ds.AccessionNumber
        assert ds.InstitutionName and str(ds.ReferringPhysicianName)


def test_vendor_styles_differ(vendors):
    descs = {v: {s.series_description for s in m.series} for v, m in vendors.items()}
    assert not descs["siemens"] & descs["ge"] and not descs["ge"] & descs["philips"]
    assert not descs["siemens"] & descs["philips"]
    ge = vendors["ge"]
    t1 = _read(ge, _series(ge, "t1w")[0])
    assert t1.Manufacturer.startswith("GE") and t1[0x0019109C].value == "efgre3d"
    assert list(t1.ImageType) == ["ORIGINAL", "PRIMARY", "OTHER"]
    dwi = _series(ge, "dwi")[0]
    last = _read(ge, dwi, -1)
    assert int(last[0x00431039].value[0]) % 1000000000 == 1000
    assert _read(ge, _series(ge, "bold_phase")[0])[0x0043102F].value == 1
    ph = vendors["philips"]
    t1 = _read(ph, _series(ph, "t1w")[0])
    assert t1.SeriesDescription == "T1W_3D_TFE" and "M_FFE" in t1.ImageType
    dwi = _series(ph, "dwi")[0]
    assert float(_read(ph, dwi, -1)[0x20011003].value) == 1000.0
    assert _read(ph, _series(ph, "bold_phase")[0]).ImageType[3] == "P"


# --- layouts and determinism ----------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_study(tmp_path / "a", subjects=1, seed=3)
    b = generate_study(tmp_path / "b", subjects=1, seed=3)
    c = generate_study(tmp_path / "c", subjects=1, seed=4)
    assert _tree_hash(a.out_dir) == _tree_hash(b.out_dir)
    assert _tree_hash(a.out_dir) != _tree_hash(c.out_dir)
    assert not list(tmp_path.glob("*/.dicom.partial"))


def test_flat_gzip_layout(tmp_path):
    m = generate_study(tmp_path, subjects=1, layout="flat", gzip=True, vendor="ge")
    files = [p for p in m.root.iterdir()]
    assert len(files) == m.n_files and all(p.is_file() for p in files)
    assert all(re.fullmatch(r"[0-9a-f]{16}\.dcm\.gz", p.name) for p in files)
    ds = pydicom.dcmread(io.BytesIO(gzip.decompress(files[0].read_bytes())))
    assert ds.PatientID == "P01"


def test_flat_and_nested_gzip_names(tmp_path):
    flat = generate_study(tmp_path / "f", subjects=1, layout="flat", vendor="philips")
    assert all(re.fullmatch(r"[0-9a-f]{16}", p.name) for p in flat.root.iterdir())
    pydicom.dcmread(next(flat.root.iterdir()))
    nested = generate_study(tmp_path / "n", subjects=1, gzip=True, vendor="philips")
    rel = nested.series[1].files[0]
    assert re.fullmatch(r"P01/\d{8}/002_T1W_3D_TFE/IM0001\.dcm\.gz", rel)


def test_dicomdir_layout(tmp_path):
    from pydicom.fileset import FileSet

    m = generate_study(tmp_path, subjects=1, layout="dicomdir")
    fs = FileSet(m.root / "DICOMDIR")
    assert len(fs) == m.n_files
    assert {i.SeriesInstanceUID for i in fs} == {s.series_uid for s in m.series}
    assert all(len(part) <= 8 for f in m.series[3].files for part in f.split("/"))
    ds = fs.find(SOPInstanceUID=str(_read(m, m.series[1]).SOPInstanceUID))[0].load()
    assert ds.PatientID == "P01"
    with pytest.raises(ValueError):
        generate_study(tmp_path / "x", layout="dicomdir", gzip=True)


# --- ReproIn ------------------------------------------------------------------------------------


def test_reproin_names_parse_to_the_expected_datatype(tmp_path):
    from heudiconv.heuristics.reproin import parse_series_spec

    m = generate_study(tmp_path, subjects=1, reproin=True, vendor="ge")
    for rec in m.series:
        if rec.skip in ("non-image",):
            continue
        spec = parse_series_spec(rec.protocol_name)
        for p in rec.paths:
            assert spec.get("datatype") == p.split("/")[-2], (rec.protocol_name, p)
    assert _series(m, "sbref_nback")[0].series_description.endswith("_SBRef")
    assert _read(m, _series(m, "t1w")[0])[0x0019109C].value == "efgre3d"


# --- dcm2niix ---------------------------------------------------------------------------------


def _dcm2niix() -> str:
    exe = shutil.which("dcm2niix") or (
        "/usr/bin/dcm2niix" if Path("/usr/bin/dcm2niix").exists() else None
    )
    if exe is None:
        pytest.skip("dcm2niix is not installed")
    return exe


@pytest.mark.slow
@pytest.mark.parametrize("vendor", ["siemens", "ge", "philips"])
def test_dcm2niix_converts_every_image_series(vendors, vendor, tmp_path):
    import nibabel as nib

    exe = _dcm2niix()
    m = vendors[vendor]
    src = m.root / "P01"
    out = tmp_path / "nii"
    out.mkdir()
    r = subprocess.run(
        [exe, "-b", "y", "-z", "n", "-f", "%3s_%d", "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    by_series: dict[int, list[Path]] = {}
    for f in out.glob("*.nii"):
        by_series.setdefault(int(f.name[:3]), []).append(f)
    for rec in (s for s in m.series if s.subject == "01"):
        niis = by_series.get(rec.series_number, [])
        if not rec.is_image:
            continue
        if rec.kind == "loc":
            assert len(niis) == 3  # one per plane
            continue
        assert len(niis) == max(1, len(rec.paths)), (rec.series_description, niis)
        for f in niis:
            shape = nib.load(f).shape
            assert (shape[3] if len(shape) == 4 else 1) == rec.n_volumes, (f.name, shape)
        if rec.kind == "dwi":
            stem = str(niis[0])[:-4]
            bval = Path(stem + ".bval").read_text().split()
            assert [float(b) for b in bval] == [0.0] + [1000.0] * (rec.n_volumes - 1)
            assert len(Path(stem + ".bvec").read_text().splitlines()) == 3
        if vendor == "siemens" and rec.kind in ("se_ap", "se_pa", "dwi", "dwi_b0pa"):
            sidecar = json.loads(Path(str(niis[0])[:-4] + ".json").read_text())
            want = "j-" if rec.kind in ("se_ap", "dwi") else "j"
            assert sidecar["PhaseEncodingDirection"] == want, rec.kind


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_demo_data(tmp_path, capsys):
    d = tmp_path / "demo"
    assert (
        main(["demo-data", str(d), "--subjects", "1", "--vendor", "mixed", "--layout", "flat"]) == 0
    )
    assert "wrote" in capsys.readouterr().out
    doc = json.loads((d / "expected_bids.json").read_text())
    assert doc["generator"]["vendor"] == "mixed" and doc["generator"]["layout"] == "flat"
    assert main(["demo-data", str(d)]) == 2  # refuses to overwrite
