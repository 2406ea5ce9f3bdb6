"""Per-vendor protocol tables: what a session of the synthetic study acquires, and how each
vendor names it.

One :class:`Physics` per acquisition *kind* (vendor independent, plausible 3 T values), one
naming table per vendor (ProtocolName, SeriesDescription, SequenceName, vendor pulse-sequence
name, ImageType), and one ReproIn naming table.  :func:`session_plan` turns these into the
ordered list of :class:`SeriesPlan` for one session.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

VENDORS: tuple[str, ...] = ("siemens", "ge", "philips")

# Six non-collinear unit directions (b=1000) after one b=0.
DWI_DIRS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.0, 1.0),
    (0.70710678, 0.70710678, 0.0),
    (0.70710678, 0.0, 0.70710678),
    (0.0, 0.70710678, 0.70710678),
)


@dataclass(frozen=True)
class Physics:
    """Acquisition parameters of one kind (times in ms, lengths in mm, flip in degrees)."""

    tr: float
    tes: tuple[float, ...]
    flip: float
    seq: tuple[str, ...]  # ScanningSequence
    variant: tuple[str, ...]  # SequenceVariant
    options: tuple[str, ...] = ()  # ScanOptions
    ti: float | None = None
    acq3d: bool = False
    plane: str = "tra"  # tra | sag | cor | 3plane
    matrix: int = 16
    nslices: int = 8
    pixel: float = 3.0
    thickness: float = 3.0
    gap: float = 0.0
    nvols: int = 1
    pe_axis: str = "COL"
    pe_positive: int = 1  # Siemens CSA PhaseEncodingDirectionPositive: axial COL 1 = AP, 0 = PA
    echo_numbers: tuple[int, ...] = ()  # default 1..len(tes)
    bvals: tuple[float, ...] = ()  # one per volume (DWI)
    bvecs: tuple[tuple[float, float, float], ...] = ()
    family: str = "FFE"  # Philips contrast family: FFE | SE | IR


_EPI = {"seq": ("EP",), "variant": ("SK",), "matrix": 16, "nslices": 8, "pixel": 3.0}
_BOLD = Physics(tr=800.0, tes=(30.0,), flip=52.0, options=("FS",), nvols=12, **_EPI)
_SE_EPI = Physics(tr=8000.0, tes=(66.0,), flip=90.0, options=("FS",), family="SE",
                  **{**_EPI, "seq": ("SE", "EP")})  # fmt: skip
_DWI = Physics(
    tr=3200.0, tes=(89.0,), flip=90.0, options=("FS",), nvols=1 + len(DWI_DIRS),
    bvals=(0.0,) + (1000.0,) * len(DWI_DIRS), bvecs=((0.0, 0.0, 0.0),) + DWI_DIRS,
    family="SE", **{**_EPI, "seq": ("SE", "EP"), "variant": ("SK", "SP")},
)  # fmt: skip
_ANAT3D = {"acq3d": True, "plane": "sag", "matrix": 32, "nslices": 16, "pixel": 1.0,
           "thickness": 1.0, "pe_axis": "ROW"}  # fmt: skip
_ANAT2D = {"matrix": 32, "nslices": 8, "pixel": 0.9, "thickness": 4.0, "gap": 1.0,
           "pe_axis": "ROW"}  # fmt: skip

PHYSICS: dict[str, Physics] = {
    "loc": Physics(tr=8.6, tes=(4.0,), flip=20.0, seq=("GR",), variant=("SP", "OSP"),
                   plane="3plane", matrix=32, nslices=3, pixel=8.0, thickness=7.0, gap=3.0),
    "t1w": Physics(tr=2300.0, tes=(2.98,), flip=9.0, ti=900.0, seq=("GR", "IR"),
                   variant=("SK", "SP", "MP"), options=("IR",), **_ANAT3D),
    "t2w": Physics(tr=6000.0, tes=(100.0,), flip=150.0, seq=("SE",), variant=("SK", "SP"),
                   family="SE", **_ANAT2D),
    "flair": Physics(tr=9000.0, tes=(81.0,), flip=150.0, ti=2500.0, seq=("SE", "IR"),
                     variant=("SK", "SP", "MP"), options=("IR",), family="IR", **_ANAT2D),
    "mp2rage_inv1": Physics(tr=5000.0, tes=(2.9,), flip=4.0, ti=700.0, seq=("GR", "IR"),
                            variant=("SK", "SP", "MP"), options=("IR",), **_ANAT3D),
    "mp2rage_inv2": Physics(tr=5000.0, tes=(2.9,), flip=5.0, ti=2500.0, seq=("GR", "IR"),
                            variant=("SK", "SP", "MP"), options=("IR",), **_ANAT3D),
    "mp2rage_uni": Physics(tr=5000.0, tes=(2.9,), flip=4.0, seq=("GR", "IR"),
                           variant=("SK", "SP", "MP"), options=("IR",), **_ANAT3D),
    "gre_mag": Physics(tr=488.0, tes=(4.92, 7.38), flip=60.0, seq=("GR",), variant=("SP",),
                       matrix=16, nslices=8, pixel=3.0, thickness=3.0, gap=0.0),
    "gre_phase": Physics(tr=488.0, tes=(7.38,), flip=60.0, seq=("GR",), variant=("SP",),
                         matrix=16, nslices=8, pixel=3.0, thickness=3.0, echo_numbers=(2,)),
    "se_ap": replace(_SE_EPI, pe_positive=1),
    "se_pa": replace(_SE_EPI, pe_positive=0),
    "bold_aborted": replace(_BOLD, nvols=3),
    "sbref_aborted": replace(_BOLD, nvols=1),
    "sbref_nback": replace(_BOLD, nvols=1),
    "bold_nback": _BOLD,
    "sbref_rest": replace(_BOLD, nvols=1),
    "bold_rest": _BOLD,
    "moco_rest": _BOLD,
    "bold_me": Physics(tr=2000.0, tes=(14.0, 39.0, 63.0), flip=75.0, options=("FS",),
                       nvols=10, **_EPI),
    "bold_mag": replace(_BOLD, tr=1500.0, flip=70.0, nvols=10),
    "bold_phase": replace(_BOLD, tr=1500.0, flip=70.0, nvols=10),
    "dwi": replace(_DWI, pe_positive=1),
    "dwi_adc": replace(_DWI, nvols=1, bvals=(1000.0,), bvecs=((0.0, 0.0, 0.0),)),
    "dwi_tracew": replace(_DWI, nvols=2, bvals=(0.0, 1000.0), bvecs=((0.0, 0.0, 0.0),) * 2),
    "dwi_fa": replace(_DWI, nvols=1, bvals=(1000.0,), bvecs=((0.0, 0.0, 0.0),)),
    "dwi_b0pa": replace(_DWI, nvols=1, bvals=(0.0,), bvecs=((0.0, 0.0, 0.0),), pe_positive=0),
    "report": Physics(tr=0.0, tes=(), flip=0.0, seq=(), variant=(), nslices=0),
}  # fmt: skip

SESSION_KINDS: tuple[str, ...] = (
    "loc", "t1w", "t2w", "flair", "mp2rage_inv1", "mp2rage_inv2", "mp2rage_uni",
    "gre_mag", "gre_phase", "se_ap", "se_pa",
    "bold_aborted", "sbref_nback", "bold_nback", "sbref_nback", "bold_nback",
    "sbref_rest", "bold_rest", "moco_rest", "bold_me", "bold_mag", "bold_phase",
    "dwi", "dwi_adc", "dwi_tracew", "dwi_fa", "dwi_b0pa", "report",
)  # fmt: skip

# kind -> (image class, skip reason)
ROLE: dict[str, tuple[str, str]] = {
    "loc": ("loc", "localizer"),
    "mp2rage_uni": ("uni", ""),
    "gre_phase": ("phase", ""),
    "bold_phase": ("phase", ""),
    "bold_aborted": ("mag", "aborted"),
    "sbref_aborted": ("mag", "aborted"),  # the SBRef of the aborted run goes with it
    "moco_rest": ("moco", "motion-corrected"),
    "dwi": ("dwi", ""),
    "dwi_b0pa": ("dwi", ""),
    "dwi_adc": ("adc", "derived"),
    "dwi_tracew": ("tracew", "derived"),
    "dwi_fa": ("fa", "derived"),
    "report": ("report", "non-image"),
}

# kind -> BIDS files one series yields: (datatype, suffix, entities) without sub/ses/run.
BIDS: dict[str, list[tuple[str, str, dict[str, str]]]] = {
    "t1w": [("anat", "T1w", {})],
    "t2w": [("anat", "T2w", {})],
    "flair": [("anat", "FLAIR", {})],
    "mp2rage_inv1": [("anat", "MP2RAGE", {"inv": "1"})],
    "mp2rage_inv2": [("anat", "MP2RAGE", {"inv": "2"})],
    "mp2rage_uni": [("anat", "UNIT1", {})],
    "gre_mag": [("fmap", "magnitude1", {}), ("fmap", "magnitude2", {})],
    "gre_phase": [("fmap", "phasediff", {})],
    "se_ap": [("fmap", "epi", {"dir": "AP"})],
    "se_pa": [("fmap", "epi", {"dir": "PA"})],
    "sbref_nback": [("func", "sbref", {"task": "nback"})],
    "bold_nback": [("func", "bold", {"task": "nback"})],
    "sbref_rest": [("func", "sbref", {"task": "rest"})],
    "bold_rest": [("func", "bold", {"task": "rest"})],
    "bold_me": [("func", "bold", {"task": "memory", "echo": str(e)}) for e in (1, 2, 3)],
    "bold_mag": [("func", "bold", {"task": "motor", "part": "mag"})],
    "bold_phase": [("func", "bold", {"task": "motor", "part": "phase"})],
    "dwi": [("dwi", "dwi", {"dir": "AP"})],
    "dwi_b0pa": [("fmap", "epi", {"acq": "dwi", "dir": "PA"})],
}

# --- naming tables -----------------------------------------------------------------------
# kind -> (ProtocolName, SeriesDescription, SequenceName, vendor pulse sequence)
_SIEMENS: dict[str, tuple[str, str, str, str]] = {
    "loc": ("localizer", "localizer", "*fl2d1", "fl2d"),
    "t1w": ("t1_mprage_sag_p2_iso", "t1_mprage_sag_p2_iso", "*tfl3d1_16ns", "tfl"),
    "t2w": ("t2_tse_tra", "t2_tse_tra", "*tse2d1_17", "tse"),
    "flair": ("t2_tirm_tra_dark-fluid", "t2_tirm_tra_dark-fluid", "*tir2d1_17", "tse"),
    "mp2rage_inv1": ("t1_mp2rage_sag_p3_iso", "t1_mp2rage_sag_p3_iso_INV1", "*tfl3d1", "tfl"),
    "mp2rage_inv2": ("t1_mp2rage_sag_p3_iso", "t1_mp2rage_sag_p3_iso_INV2", "*tfl3d1", "tfl"),
    "mp2rage_uni": ("t1_mp2rage_sag_p3_iso", "t1_mp2rage_sag_p3_iso_UNI_Images", "*tfl3d1", "tfl"),
    "gre_mag": ("gre_field_mapping", "gre_field_mapping", "*fm2d2r", "gre_field_mapping"),
    "gre_phase": ("gre_field_mapping", "gre_field_mapping", "*fm2d2r", "gre_field_mapping"),
    "se_ap": ("SpinEchoFieldMap_AP", "SpinEchoFieldMap_AP", "*epse2d1_64", "epse"),
    "se_pa": ("SpinEchoFieldMap_PA", "SpinEchoFieldMap_PA", "*epse2d1_64", "epse"),
    "bold_aborted": ("ep2d_bold_nback", "ep2d_bold_nback", "*epfid2d1_64", "epfid"),
    "sbref_nback": ("ep2d_bold_nback", "ep2d_bold_nback_SBRef", "*epfid2d1_64", "epfid"),
    "bold_nback": ("ep2d_bold_nback", "ep2d_bold_nback", "*epfid2d1_64", "epfid"),
    "sbref_rest": ("ep2d_bold_rest", "ep2d_bold_rest_SBRef", "*epfid2d1_64", "epfid"),
    "bold_rest": ("ep2d_bold_rest", "ep2d_bold_rest", "*epfid2d1_64", "epfid"),
    "moco_rest": ("ep2d_bold_rest", "MoCoSeries", "*epfid2d1_64", "epfid"),
    "bold_me": ("cmrr_mbep2d_me_memory", "cmrr_mbep2d_me_memory", "*epfid2d3_64", "epfid"),
    "bold_mag": ("ep2d_bold_motor", "ep2d_bold_motor", "*epfid2d1_64", "epfid"),
    "bold_phase": ("ep2d_bold_motor", "ep2d_bold_motor", "*epfid2d1_64", "epfid"),
    "dwi": ("ep2d_diff_mddw_6dir_AP", "ep2d_diff_mddw_6dir_AP", "*ep_b1000#1", "epse"),
    "dwi_adc": ("ep2d_diff_mddw_6dir_AP", "ep2d_diff_mddw_6dir_AP_ADC", "*ep_b0_1000", "epse"),
    "dwi_tracew": ("ep2d_diff_mddw_6dir_AP", "ep2d_diff_mddw_6dir_AP_TRACEW", "*ep_b1000t", "epse"),
    "dwi_fa": ("ep2d_diff_mddw_6dir_AP", "ep2d_diff_mddw_6dir_AP_FA", "*ep_b0_1000", "epse"),
    "dwi_b0pa": ("ep2d_diff_b0_PA", "ep2d_diff_b0_PA", "*ep_b0", "epse"),
    "report": ("PhoenixZIPReport", "PhoenixZIPReport", "", ""),
}  # fmt: skip

_GE: dict[str, tuple[str, str, str, str]] = {
    "loc": ("3Plane Loc", "3Plane Loc", "", "fgre"),
    "t1w": ("Sag 3D T1 BRAVO", "Sag 3D T1 BRAVO", "", "efgre3d"),
    "t2w": ("Ax T2 FSE", "Ax T2 FSE", "", "fse-xl"),
    "flair": ("Ax T2 FLAIR", "Ax T2 FLAIR", "", "fse-xl"),
    "mp2rage_inv1": ("Sag 3D MP2RAGE", "Sag 3D MP2RAGE INV1", "", "mp2rage"),
    "mp2rage_inv2": ("Sag 3D MP2RAGE", "Sag 3D MP2RAGE INV2", "", "mp2rage"),
    "mp2rage_uni": ("Sag 3D MP2RAGE", "Sag 3D MP2RAGE UNI", "", "mp2rage"),
    "gre_mag": ("Ax GRE B0 Fieldmap", "Ax GRE B0 Fieldmap", "", "fgre"),
    "gre_phase": ("Ax GRE B0 Fieldmap", "Ax GRE B0 Fieldmap Phase Diff", "", "fgre"),
    "se_ap": ("SE EPI Fmap AP", "SE EPI Fmap AP", "", "epi2"),
    "se_pa": ("SE EPI Fmap PA", "SE EPI Fmap PA", "", "epi2"),
    "bold_aborted": ("nback fMRI", "nback fMRI", "", "epiRT"),
    "sbref_nback": ("nback fMRI", "nback fMRI SBRef", "", "epiRT"),
    "bold_nback": ("nback fMRI", "nback fMRI", "", "epiRT"),
    "sbref_rest": ("rsfMRI", "rsfMRI SBRef", "", "epiRT"),
    "bold_rest": ("rsfMRI", "rsfMRI", "", "epiRT"),
    "moco_rest": ("rsfMRI", "MOCO rsfMRI", "", "epiRT"),
    "bold_me": ("ME fMRI memory", "ME fMRI memory", "", "epiRT"),
    "bold_mag": ("motor fMRI", "motor fMRI", "", "epiRT"),
    "bold_phase": ("motor fMRI", "motor fMRI", "", "epiRT"),
    "dwi": ("DTI 6dir AP", "DTI 6dir AP", "", "epi2"),
    "dwi_adc": ("DTI 6dir AP", "Apparent Diffusion Coefficient (mm2/s)", "", "epi2"),
    "dwi_tracew": ("DTI 6dir AP", "Isotropic image", "", "epi2"),
    "dwi_fa": ("DTI 6dir AP", "Fractional Aniso.", "", "epi2"),
    "dwi_b0pa": ("DTI b0 PA", "DTI b0 PA", "", "epi2"),
    "report": ("Screen Save", "Screen Save", "", ""),
}  # fmt: skip

_PHILIPS: dict[str, tuple[str, str, str, str]] = {
    "loc": ("Survey", "Survey", "", "FFE"),
    "t1w": ("T1W_3D_TFE", "T1W_3D_TFE", "", "TFE"),
    "t2w": ("T2W_TSE", "T2W_TSE", "", "TSE"),
    "flair": ("T2W_FLAIR", "T2W_FLAIR", "", "IR"),
    "mp2rage_inv1": ("T1W_MP2RAGE", "T1W_MP2RAGE_INV1", "", "TFE"),
    "mp2rage_inv2": ("T1W_MP2RAGE", "T1W_MP2RAGE_INV2", "", "TFE"),
    "mp2rage_uni": ("T1W_MP2RAGE", "T1W_MP2RAGE_UNI", "", "TFE"),
    "gre_mag": ("B0_GRE_fieldmap", "B0_GRE_fieldmap", "", "FFE"),
    "gre_phase": ("B0_GRE_fieldmap", "B0_GRE_fieldmap_phasediff", "", "FFE"),
    "se_ap": ("SE_EPI_AP", "SE_EPI_AP", "", "SEEPI"),
    "se_pa": ("SE_EPI_PA", "SE_EPI_PA", "", "SEEPI"),
    "bold_aborted": ("fMRI_nback", "fMRI_nback", "", "FEEPI"),
    "sbref_nback": ("fMRI_nback", "fMRI_nback_SBRef", "", "FEEPI"),
    "bold_nback": ("fMRI_nback", "fMRI_nback", "", "FEEPI"),
    "sbref_rest": ("fMRI_rest", "fMRI_rest_SBRef", "", "FEEPI"),
    "bold_rest": ("fMRI_rest", "fMRI_rest", "", "FEEPI"),
    "moco_rest": ("fMRI_rest", "fMRI_rest_MOCO", "", "FEEPI"),
    "bold_me": ("fMRI_ME_memory", "fMRI_ME_memory", "", "FEEPI"),
    "bold_mag": ("fMRI_motor", "fMRI_motor", "", "FEEPI"),
    "bold_phase": ("fMRI_motor", "fMRI_motor", "", "FEEPI"),
    "dwi": ("DwiSE_AP", "DwiSE_AP", "", "DwiSE"),
    "dwi_adc": ("DwiSE_AP", "dADC", "", "DwiSE"),
    "dwi_tracew": ("DwiSE_AP", "isoDWI", "", "DwiSE"),
    "dwi_fa": ("DwiSE_AP", "FA", "", "DwiSE"),
    "dwi_b0pa": ("DwiSE_b0_PA", "DwiSE_b0_PA", "", "DwiSE"),
    "report": ("ExamCard", "ExamCard", "", ""),
}  # fmt: skip

NAMES: dict[str, dict[str, tuple[str, str, str, str]]] = {
    "siemens": _SIEMENS,
    "ge": _GE,
    "philips": _PHILIPS,
}

# ReproIn protocol names (heudiconv/heuristics/reproin.py conventions); the aborted nback run
# repeats the name of the run it was restarted as, as the ReproIn FAQ says to do.
REPROIN: dict[str, str] = {
    "loc": "anat-scout",
    "t1w": "anat-T1w",
    "t2w": "anat-T2w",
    "flair": "anat-FLAIR",
    "mp2rage_inv1": "anat-MP2RAGE",
    "mp2rage_inv2": "anat-MP2RAGE",
    "mp2rage_uni": "anat-MP2RAGE",
    "gre_mag": "fmap",
    "gre_phase": "fmap",
    "se_ap": "fmap-epi_dir-AP",
    "se_pa": "fmap-epi_dir-PA",
    "bold_aborted": "func-bold_task-nback_run-01",
    "sbref_aborted": "func-bold_task-nback_run-01",
    "sbref_nback": "func-bold_task-nback_run-{run}",
    "bold_nback": "func-bold_task-nback_run-{run}",
    "sbref_rest": "func-bold_task-rest",
    "bold_rest": "func-bold_task-rest",
    "moco_rest": "func-bold_task-rest",
    "bold_me": "func-bold_task-memory",
    "bold_mag": "func-bold_task-motor",
    "bold_phase": "func-bold_task-motor",
    "dwi": "dwi_dir-AP",
    "dwi_adc": "dwi_dir-AP",
    "dwi_tracew": "dwi_dir-AP",
    "dwi_fa": "dwi_dir-AP",
    "dwi_b0pa": "fmap-epi_acq-dwi_dir-PA",
    "report": "PhoenixZIPReport",
}

# Vendor-side description suffix a ReproIn site still gets (scanner appends these).
_REPROIN_DESC_SUFFIX: dict[str, dict[str, str]] = {
    "siemens": {"mp2rage_inv1": "_INV1", "mp2rage_inv2": "_INV2", "mp2rage_uni": "_UNI_Images",
                "sbref_nback": "_SBRef", "sbref_rest": "_SBRef", "dwi_adc": "_ADC",
                "dwi_tracew": "_TRACEW", "dwi_fa": "_FA"},
    "ge": {"mp2rage_inv1": " INV1", "mp2rage_inv2": " INV2", "mp2rage_uni": " UNI",
           "sbref_nback": "_SBRef", "sbref_rest": "_SBRef", "dwi_adc": " ADC",
           "dwi_tracew": " Isotropic", "dwi_fa": " FA"},
    "philips": {"mp2rage_inv1": "_INV1", "mp2rage_inv2": "_INV2", "mp2rage_uni": "_UNI",
                "sbref_nback": "_SBRef", "sbref_rest": "_SBRef", "dwi_adc": "_dADC",
                "dwi_tracew": "_isoDWI", "dwi_fa": "_FA"},
}  # fmt: skip

VENDOR_INFO: dict[str, dict[str, object]] = {
    "siemens": {"Manufacturer": "SIEMENS", "ManufacturerModelName": "Prisma_fit",
                "SoftwareVersions": "syngo MR E11", "StationName": "AWP167012",
                "StudyDescription": "Research^Brain"},
    "ge": {"Manufacturer": "GE MEDICAL SYSTEMS", "ManufacturerModelName": "DISCOVERY MR750",
           "SoftwareVersions": "27\\LX\\MR Software release:DV26.0_R03_1831.b",
           "StationName": "GEMR750", "StudyDescription": "BRAIN RESEARCH"},
    "philips": {"Manufacturer": "Philips Medical Systems", "ManufacturerModelName": "Ingenia",
                "SoftwareVersions": "5.6.1\\5.6.1.0", "StationName": "PHILIPS-MR1",
                "StudyDescription": "Hersenen^Research"},
}  # fmt: skip


# kinds named (in every vendor table) like another kind
_NAMED_AS: dict[str, str] = {"sbref_aborted": "sbref_nback"}


def image_type(vendor: str, kind: str) -> tuple[str, ...]:
    """The ImageType a real scanner of ``vendor`` writes for ``kind``."""
    cls = ROLE.get(kind, ("mag", ""))[0]
    fam = PHYSICS[kind].family
    if vendor == "siemens":
        return {
            "loc": ("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"),
            "mag": ("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
            "phase": ("ORIGINAL", "PRIMARY", "P", "ND"),
            "uni": ("DERIVED", "PRIMARY", "M", "ND", "UNI"),
            "moco": ("DERIVED", "PRIMARY", "M", "ND", "MOCO"),
            "dwi": ("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "NORM"),
            "adc": ("DERIVED", "PRIMARY", "DIFFUSION", "ADC", "ND", "NORM"),
            "tracew": ("DERIVED", "PRIMARY", "DIFFUSION", "TRACEW", "ND", "NORM"),
            "fa": ("DERIVED", "PRIMARY", "DIFFUSION", "FA", "ND", "NORM"),
            "report": ("ORIGINAL", "PRIMARY", "RAWDATA", "PHOENIXZIPREPORT"),
        }[cls]
    if vendor == "ge":
        return {
            "loc": ("ORIGINAL", "PRIMARY", "LOCALIZER"),
            "mag": ("ORIGINAL", "PRIMARY", "OTHER"),
            "phase": ("ORIGINAL", "PRIMARY", "OTHER"),  # GE marks phase in (0043,102F)
            "uni": ("DERIVED", "PRIMARY", "OTHER", "UNI"),
            "moco": ("DERIVED", "PRIMARY", "OTHER", "MOCO"),
            "dwi": ("ORIGINAL", "PRIMARY", "OTHER"),
            "adc": ("DERIVED", "SECONDARY", "ADC"),
            "tracew": ("DERIVED", "SECONDARY", "ISOTROPIC"),
            "fa": ("DERIVED", "SECONDARY", "FA"),
            "report": ("DERIVED", "SECONDARY", "SCREEN SAVE"),
        }[cls]
    m = f"M_{fam}"
    return {
        "loc": ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"),
        "mag": ("ORIGINAL", "PRIMARY", m, "M", fam),
        "phase": ("ORIGINAL", "PRIMARY", f"P_{fam}", "P", fam),
        "uni": ("DERIVED", "PRIMARY", "M_IR", "M", "IR", "UNI"),
        "moco": ("DERIVED", "PRIMARY", m, "M", fam, "MOCO"),
        "dwi": ("ORIGINAL", "PRIMARY", "M_SE", "M", "SE"),
        "adc": ("DERIVED", "PRIMARY", "ADC_SE", "ADC", "SE"),
        "tracew": ("DERIVED", "PRIMARY", "ISODWI", "M", "SE"),
        "fa": ("DERIVED", "PRIMARY", "FA", "M", "SE"),
        "report": ("ORIGINAL", "PRIMARY", "EXAMCARD"),
    }[cls]


@dataclass
class SeriesPlan:
    """One series to write: names, physics and the BIDS files a curator would make of it."""

    kind: str
    vendor: str
    protocol: str
    description: str
    sequence_name: str
    pulse_sequence: str
    image_type: tuple[str, ...]
    physics: Physics
    skip: str
    bids: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    @property
    def is_image(self) -> bool:
        return self.kind != "report"


def session_plan(
    vendor: str, *, reproin: bool = False, repeat_t1w: bool = False, aborted_sbref: bool = False
) -> list[SeriesPlan]:
    """The ordered series of one session on a ``vendor`` scanner; ``aborted_sbref``: the aborted
    nback run has its SBRef (a multiband sequence writes it first), skipped with the run."""
    kinds = list(SESSION_KINDS)
    if repeat_t1w:
        kinds.insert(kinds.index("t1w") + 1, "t1w")
    if aborted_sbref:
        kinds.insert(kinds.index("bold_aborted"), "sbref_aborted")
    plans: list[SeriesPlan] = []
    nback_run = 0
    for kind in kinds:
        protocol, desc, seqname, pulse = NAMES[vendor][_NAMED_AS.get(kind, kind)]
        if kind == "sbref_nback":
            nback_run += 1
        if reproin and kind != "report":
            named = _NAMED_AS.get(kind, kind)
            protocol = REPROIN[kind].format(run=f"{nback_run:02d}")
            desc = protocol + _REPROIN_DESC_SUFFIX[vendor].get(named, "")
            if kind == "moco_rest" and vendor == "siemens":
                desc = "MoCoSeries"
        plans.append(
            SeriesPlan(
                kind=kind,
                vendor=vendor,
                protocol=protocol,
                description=desc,
                sequence_name=seqname,
                pulse_sequence=pulse,
                image_type=image_type(vendor, kind),
                physics=PHYSICS[kind],
                skip=ROLE.get(kind, ("", ""))[1],
                bids=[] if ROLE.get(kind, ("", ""))[1] else list(BIDS[kind]),
            )
        )
    return plans
