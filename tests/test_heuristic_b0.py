"""Field-map intent in the sidecars (engine.heuristic.b0fields), and the heuristic's own copy of
it: heudiconv calls the compiled ``custom_callable``; ``convert`` calls the engine's function.
Both must write the same IntendedFor / B0FieldIdentifier / B0FieldSource."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from engine.heuristic.b0fields import b0_identifier, b0_name, write_b0_fields
from engine.heuristic.compiler import compile_heuristic
from engine.heuristic.validate import load_heuristic
from tests.test_heuristic import _study

FIELDS = ("IntendedFor", "B0FieldIdentifier", "B0FieldSource")

# a session as heudiconv writes it: run numbers, echoes, magnitude1/2, a pepolar pair
FILES = [
    "anat/sub-01_ses-1_run-01_T1w",
    "anat/sub-01_ses-1_run-02_T1w",
    "func/sub-01_ses-1_task-rest_run-01_bold",
    "func/sub-01_ses-1_task-rest_run-01_sbref",
    "func/sub-01_ses-1_task-mem_echo-1_bold",
    "func/sub-01_ses-1_task-mem_echo-2_bold",
    "dwi/sub-01_ses-1_dir-AP_dwi",
    "fmap/sub-01_ses-1_magnitude1",
    "fmap/sub-01_ses-1_magnitude2",
    "fmap/sub-01_ses-1_phasediff",
    "fmap/sub-01_ses-1_acq-dwi_dir-AP_epi",
    "fmap/sub-01_ses-1_acq-dwi_dir-PA_epi",
]
INTENT = {
    "fmap/magnitude1": ["func/task-rest_bold", "func/echo-1_task-mem_bold"],
    "fmap/phasediff": ["func/task-rest_bold", "func/echo-1_task-mem_bold"],
    "fmap/acq-dwi_dir-PA_epi": ["dwi/dir-AP_dwi"],
    "fmap/acq-dwi_dir-AP_epi": ["dwi/dir-AP_dwi"],
}


def _session(root: Path, readonly: bool = True) -> Path:
    ses = root / "sub-01" / "ses-1"
    for f in FILES:
        p = ses / f"{f}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        meta = {"EchoTime": 0.03}
        if f.startswith("fmap/"):  # an earlier run's list
            meta["IntendedFor"] = ["stale.nii.gz"]
        p.write_text(json.dumps(meta))
        (ses / f"{f}.nii.gz").write_bytes(b"")
        if readonly:  # heudiconv leaves its sidecars read-only
            p.chmod(0o444)
    return ses


def _fields(ses: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(ses.rglob("*.json")):
        meta = json.loads(p.read_text())
        out[str(p.relative_to(ses))] = {k: meta[k] for k in FIELDS if k in meta}
    return out


def test_names_and_identifiers():
    assert b0_name("func/sub-01_ses-1_task-rest_run-02_echo-1_bold.nii.gz") == "func/task-rest_bold"
    assert b0_name("fmap/sub-01_magnitude2.json") == "fmap/magnitude"
    assert b0_name("fmap/magnitude1") == "fmap/magnitude"
    assert b0_name("anat/sub-01_inplaneT2.json") == "anat/inplaneT2"  # digits kept off fmap
    assert b0_identifier("fmap/sub-01_acq-dwi_dir-PA_run-02_epi.json") == "pepolar_acqdwi_run02"
    assert b0_identifier("fmap/sub-01_ses-1_phasediff.json") == "b0map"
    assert b0_identifier("fmap/sub-01_ses-1_magnitude1.json") == "b0map"


def test_writes_exactly_the_mapping_intent(tmp_path):
    ses = _session(tmp_path)
    done = write_b0_fields(str(ses), INTENT)
    got = _fields(ses)
    gre = [
        "ses-1/func/sub-01_ses-1_task-mem_echo-1_bold.nii.gz",
        "ses-1/func/sub-01_ses-1_task-mem_echo-2_bold.nii.gz",
        "ses-1/func/sub-01_ses-1_task-rest_run-01_bold.nii.gz",
    ]
    for f in ("magnitude1", "magnitude2", "phasediff"):
        assert got[f"fmap/sub-01_ses-1_{f}.json"] == {
            "IntendedFor": gre,
            "B0FieldIdentifier": "b0map",
        }
    for d in ("AP", "PA"):
        assert got[f"fmap/sub-01_ses-1_acq-dwi_dir-{d}_epi.json"] == {
            "IntendedFor": ["ses-1/dwi/sub-01_ses-1_dir-AP_dwi.nii.gz"],
            "B0FieldIdentifier": "pepolar_acqdwi",
        }
    assert got["func/sub-01_ses-1_task-rest_run-01_bold.json"] == {"B0FieldSource": "b0map"}
    assert got["dwi/sub-01_ses-1_dir-AP_dwi.json"] == {"B0FieldSource": "pepolar_acqdwi"}
    # not a target: the T1w and the SBRef (not in the intent) carry nothing, stale lists go
    for f in ("anat/sub-01_ses-1_run-01_T1w", "func/sub-01_ses-1_task-rest_run-01_sbref"):
        assert got[f + ".json"] == {}
    assert len(done) == 5
    # the rest of each sidecar is kept, the read-only mode too
    p = ses / "fmap/sub-01_ses-1_phasediff.json"
    assert json.loads(p.read_text())["EchoTime"] == 0.03
    assert not os.stat(p).st_mode & stat.S_IWUSR


def test_intent_changed_or_gone_is_followed(tmp_path):
    ses = _session(tmp_path, readonly=False)
    write_b0_fields(str(ses), INTENT)
    write_b0_fields(str(ses), {"fmap/acq-dwi_dir-AP_epi": ["dwi/dir-AP_dwi"]})
    got = _fields(ses)
    assert got["fmap/sub-01_ses-1_phasediff.json"] == {}
    assert got["func/sub-01_ses-1_task-rest_run-01_bold.json"] == {}
    # the PA image shares the AP image's field: one identifier, the pair's intent
    assert got["fmap/sub-01_ses-1_acq-dwi_dir-PA_epi.json"]["B0FieldIdentifier"] == "pepolar_acqdwi"
    write_b0_fields(str(ses), {})
    assert all(v == {} for v in _fields(ses).values())


def test_compiled_heuristic_writes_what_convert_writes(tmp_path):
    """The heuristic's copy (no engine import) and the engine's function agree."""
    series, groups, maps = _study([("01", "", 1, False)])
    c = compile_heuristic(series, groups, maps)
    assert "POPULATE_INTENDED_FOR_OPTS =" not in c.source  # heudiconv's Force pass stays off
    h = tmp_path / "h.py"
    h.write_text(c.source)
    mod = load_heuristic(h)
    assert (
        mod.INTENDED_FOR
        == c.plan.intended_for()
        == {
            "fmap/magnitude1": ["func/task-rest_bold"],
            "fmap/phasediff": ["func/task-rest_bold"],
        }
    )
    a, b = _session(tmp_path / "a"), _session(tmp_path / "b")
    # heudiconv calls custom_callable(prefix, outtypes, dicoms) after each series
    mod.custom_callable(str(a / "func/sub-01_ses-1_task-rest_run-01_bold"), ("nii.gz",), [])
    write_b0_fields(str(b), c.plan.intended_for())
    assert _fields(a) == _fields(b)
    assert _fields(a)["func/sub-01_ses-1_task-rest_run-01_bold.json"] == {"B0FieldSource": "b0map"}
    assert _fields(a)["anat/sub-01_ses-1_run-01_T1w.json"] == {}
    # a prefix outside any sub-/ses- folder touches nothing
    mod.custom_callable(str(tmp_path / "x" / "y"), ("nii.gz",), [])
