"""Vendor conventions the real studies of issue 13 showed, as extra synthetic series.

``generate_study(..., conventions=True)`` adds to every session (written as classic DICOM, one
file per slice):

* Siemens XA magnitude/phase BOLD: ImageType ``ORIGINAL/PRIMARY/FMRI/NONE`` for both, no
  sequence name; only the ``_Pha`` end of the phase series' description says phase;
* Siemens raw/normalised duplicates: the ``ND`` copy of each T1w beside its ``NORM`` copy
  (a curator keeps the NORM one);
* a Siemens 2D sagittal ``t1_fl2d`` planning scan of 25 slices (not a T1w);
* a Philips B0 map: one series holding a magnitude image and a B0-map image per slice
  (ImageType ``M_FFE``/``M`` and ``B0 MAP``/``B0``), BIDS fieldmap + magnitude;
* two separate single-echo BOLD runs of one task with other multiband factors (other TR and
  TE, acquired apart): runs of one name, never ``echo-``;
* the aborted nback run with its SBRef (``aborted_sbref``).
"""

from __future__ import annotations

from dataclasses import replace

from engine.synth.protocol import PHYSICS, Physics, SeriesPlan

_MB = {"tr": 1500.0, "tes": (30.0,), "flip": 70.0, "options": ("FS",), "nvols": 10,
       "seq": ("EP",), "variant": ("SK",), "matrix": 16, "nslices": 8, "pixel": 3.0}  # fmt: skip

CONVENTION_PHYSICS: dict[str, Physics] = {
    "planning": Physics(tr=250.0, tes=(2.5,), flip=70.0, seq=("GR",), variant=("SP", "OSP"),
                        plane="sag", matrix=32, nslices=25, pixel=1.0, thickness=5.0,
                        pe_axis="ROW"),
    "t1w_nd": PHYSICS["t1w"],
    "xa_bold_mag": Physics(**_MB),
    "xa_bold_pha": Physics(**_MB),
    "bold_mb2": Physics(**_MB),
    "bold_mb4": Physics(**{**_MB, "tr": 800.0, "tes": (32.0,), "flip": 52.0}),
    "b0map": Physics(tr=6.0, tes=(2.3,), flip=12.0, seq=("GR",), variant=("SS",),
                     nvols=2, matrix=16, nslices=8, pixel=3.0, thickness=3.0),
}  # fmt: skip

_XA = ("ORIGINAL", "PRIMARY", "FMRI", "NONE")
# kind -> vendor -> (ProtocolName, SeriesDescription, SequenceName, pulse sequence, ImageType)
_NAMES: dict[str, dict[str, tuple[str, str, str, str, tuple[str, ...]]]] = {
    "planning": {
        "siemens": ("t1_fl2d_sag", "t1_fl2d_sag", "*fl2d1", "fl2d",
                    ("ORIGINAL", "PRIMARY", "M", "ND", "NORM")),
    },
    "t1w_nd": {
        "siemens": ("t1_mprage_sag_p2_iso", "t1_mprage_sag_p2_iso", "*tfl3d1_16ns", "tfl",
                    ("ORIGINAL", "PRIMARY", "M", "ND")),
    },
    "xa_bold_mag": {"siemens": ("cmrr_bold_story", "cmrr_bold_story", "", "", _XA)},
    "xa_bold_pha": {"siemens": ("cmrr_bold_story", "cmrr_bold_story_Pha", "", "", _XA)},
    "bold_mb2": {
        "siemens": ("cmrr_bold_faces_mb2", "cmrr_bold_faces_mb2", "*epfid2d1_16", "epfid",
                    ("ORIGINAL", "PRIMARY", "M", "ND", "NORM")),
        "ge": ("faces fMRI mb2", "faces fMRI mb2", "", "epiRT", ("ORIGINAL", "PRIMARY", "OTHER")),
        "philips": ("fMRI_faces_mb2", "fMRI_faces_mb2", "", "FEEPI",
                    ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")),
    },
    "b0map": {
        "philips": ("B0map", "B0map", "", "FFE", ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")),
    },
}  # fmt: skip
_NAMES["bold_mb4"] = {
    v: (p.replace("mb2", "mb4"), d.replace("mb2", "mb4"), s, q, it)
    for v, (p, d, s, q, it) in _NAMES["bold_mb2"].items()
}
# the image type of the B0-map images of the Philips B0 map (the second volume)
PHILIPS_B0_IMAGE_TYPE = ("ORIGINAL", "PRIMARY", "B0 MAP", "B0", "UNSPECIFIED")

_SKIP = {"planning": "planning", "t1w_nd": "duplicate"}
_BIDS: dict[str, list[tuple[str, str, dict[str, str]]]] = {
    "xa_bold_mag": [("func", "bold", {"task": "story", "part": "mag"})],
    "xa_bold_pha": [("func", "bold", {"task": "story", "part": "phase"})],
    "bold_mb2": [("func", "bold", {"task": "faces"})],
    "bold_mb4": [("func", "bold", {"task": "faces"})],
    "b0map": [("fmap", "fieldmap", {}), ("fmap", "magnitude", {})],
}


def _plan(kind: str, vendor: str) -> SeriesPlan | None:
    names = _NAMES[kind].get(vendor)
    if names is None:
        return None
    protocol, desc, seqname, pulse, itype = names
    skip = _SKIP.get(kind, "")
    return SeriesPlan(
        kind=kind,
        vendor=vendor,
        protocol=protocol,
        description=desc,
        sequence_name=seqname,
        pulse_sequence=pulse,
        image_type=itype,
        physics=CONVENTION_PHYSICS[kind],
        skip=skip,
        bids=[] if skip else list(_BIDS[kind]),
    )


def add_conventions(plans: list[SeriesPlan], vendor: str) -> list[SeriesPlan]:
    """The session's series with the vendor-convention series inserted where a scanner
    would acquire them (planning after the localizer, the ND copy after each T1w, ...)."""
    out: list[SeriesPlan] = []
    after = {
        "loc": ["planning"],
        "t1w": ["t1w_nd"],
        "gre_phase": ["b0map"],
        "bold_rest": ["bold_mb2"],
        "bold_phase": ["xa_bold_mag", "xa_bold_pha"],
        "dwi_b0pa": ["bold_mb4"],
    }
    for p in plans:
        out.append(p)
        for kind in after.get(p.kind, []):
            extra = _plan(kind, vendor)
            if extra is not None and kind == "t1w_nd":  # the same names as its NORM copy
                extra = replace(extra, protocol=p.protocol, description=p.description)
            if extra is not None:
                out.append(extra)
    return out


def adjust_datasets(plan: SeriesPlan, datasets: list) -> None:
    """Per-file values the plan's one ImageType cannot say: the Philips B0 map's second
    volume is the B0 map (its own ImageType, echo 2 with TE 0, as in Philips' enhanced
    export), computed from the two echoes."""
    if plan.kind != "b0map":
        return
    n = len(datasets) // 2
    for ds in datasets[n:]:
        del ds.ImageType  # replace, never mutate the shared element
        ds.ImageType = list(PHILIPS_B0_IMAGE_TYPE)
        del ds.EchoTime, ds.EchoNumbers
        ds.EchoTime, ds.EchoNumbers = "0", 2  # as Philips writes its B0-map frames


__all__ = ["CONVENTION_PHYSICS", "add_conventions", "adjust_datasets"]
