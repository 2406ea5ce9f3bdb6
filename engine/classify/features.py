"""What the classifier learns from: labelled images, their hashes, and header facts as text.

A data set is a class-per-folder tree (``DATA/T1w/a.dcm``, ``DATA/T2w/b.png``...) or a labels
TSV (columns ``path``, ``label`` and optionally ``group``: images of one series or subject that
must stay on one side of a cross-validation split). Each image is identified by the SHA-256 of
its bytes, which keys the description cache. ``header`` features render the DICOM header facts
(modality, sequence, ImageType, TR/TE/TI, orientation...) as one sentence-like text; the series
and protocol names are left out by default so that the second opinion does not merely echo the
name it is checking.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError

__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCES",
    "ImageItem",
    "file_sha256",
    "header_text",
    "header_text_of_file",
    "load_dataset",
    "summary",
]

SOURCES: tuple[str, ...] = ("vlm", "header", "both")
IMAGE_SUFFIXES = (".dcm", ".ima", ".png", ".jpg", ".jpeg", ".dicom", "")


@dataclass
class ImageItem:
    """One labelled (or, for prediction, unlabelled) image."""

    path: str  # a file; or "" when ``image`` holds the bytes (a workspace's rendered series)
    label: str = ""
    group: str = ""  # the CV group (default: the image itself)
    sha256: str = ""
    image: bytes | None = None  # rendered PNG bytes (workspace series)
    header: str = ""  # header facts as text ("" : read from the DICOM file when asked)
    key: str = ""  # the caller's identity (series key, file name)

    def ident(self) -> str:
        if not self.sha256:
            data = self.image if self.image is not None else Path(self.path).read_bytes()
            self.sha256 = hashlib.sha256(data).hexdigest()
        return self.sha256

    @property
    def cv_group(self) -> str:
        return self.group or self.ident()

    def source(self) -> Any:
        """What a vision backend receives: the file path (DICOM rendered there) or bytes."""
        return self.image if self.image is not None else self.path


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_image(p: Path) -> bool:
    if not p.is_file() or p.name.startswith("."):
        return False
    suf = p.suffix.lower()
    if suf in IMAGE_SUFFIXES:
        return True
    if suf == ".gz" and p.name.lower().endswith(".dcm.gz"):
        return True
    return suf not in (".txt", ".json", ".tsv", ".csv", ".md", ".toml")


def load_dataset(data: str | os.PathLike[str]) -> list[ImageItem]:
    """Images and labels of a class-per-folder tree or a labels TSV (sorted, reproducible)."""
    root = Path(data)
    if root.is_file():
        return _load_tsv(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder or labels TSV")
    items: list[ImageItem] = []
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dirpath, dirs, files in os.walk(cls_dir):
            dirs.sort()
            for name in sorted(files):
                p = Path(dirpath) / name
                if _is_image(p):
                    items.append(ImageItem(str(p), label=cls_dir.name, key=str(p)))
    if not items:
        raise UserError(f"{root}: no images in class folders (DATA/<class>/<image>)")
    return items


def _load_tsv(path: Path) -> list[ImageItem]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "path" not in rows[0]:
        raise UserError(f"{path}: a labels TSV needs a header with 'path' and 'label' columns")
    items = []
    for r in rows:
        p = Path(r["path"])
        if not p.is_absolute():
            p = path.parent / p
        items.append(
            ImageItem(
                str(p),
                label=(r.get("label") or "").strip(),
                group=r.get("group") or "",
                key=r["path"],
            )
        )
    return items


def summary(items: list[ImageItem]) -> dict[str, Any]:
    """Counts per class and of CV groups (kept in the bundle: what it was trained on)."""
    per: dict[str, int] = {}
    for it in items:
        per[it.label] = per.get(it.label, 0) + 1
    return {
        "n_images": len(items),
        "n_groups": len({it.cv_group for it in items}),
        "per_class": dict(sorted(per.items())),
    }


# --- header facts as text ----------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return " ".join(_fmt(x) for x in v)
    return str(v)


def header_text(s: Any, include_names: bool = False) -> str:
    """A :class:`engine.model.SeriesInfo` (or heudiconv dicominfo row) as one text of facts."""
    facts: list[tuple[str, Any]] = [
        ("modality", getattr(s, "modality", "")),
        ("manufacturer", getattr(s, "manufacturer", "")),
        ("image type", "\\".join(getattr(s, "image_type", ()) or ())),
        ("sequence name", getattr(s, "sequence_name", "")),
        ("scanning sequence", getattr(s, "scanning_sequence", "")),
        ("sequence variant", getattr(s, "sequence_variant", "")),
        ("scan options", getattr(s, "scan_options", "")),
        ("pulse sequence", getattr(s, "pulse_sequence", "")),
        ("acquisition", getattr(s, "mr_acquisition_type", "")),
        ("repetition time s", getattr(s, "TR", None)),
        ("echo time ms", getattr(s, "TE", None)),
        ("inversion time ms", getattr(s, "inversion_time", None)),
        ("flip angle", getattr(s, "flip_angle", None)),
        ("orientation", getattr(s, "orientation", "")),
        ("matrix", f"{getattr(s, 'dim1', 0)}x{getattr(s, 'dim2', 0)}x{getattr(s, 'dim3', 0)}"),
        ("volumes", getattr(s, "dim4", None)),
        ("echoes", len(getattr(s, "echo_times", []) or []) or None),
        ("b-values", getattr(s, "bvalues", []) or None),
        ("diffusion directions", getattr(s, "n_diffusion_directions", 0) or None),
        ("phase encoding", getattr(s, "pe_direction", "") or getattr(s, "pe_axis", "")),
        ("part", getattr(s, "complex_part", "")),
        ("derived", "yes" if getattr(s, "is_derived", False) else ""),
        ("motion corrected", "yes" if getattr(s, "is_motion_corrected", False) else ""),
    ]
    if include_names:
        facts += [
            ("series description", getattr(s, "series_description", "")),
            ("protocol", getattr(s, "protocol_name", "")),
        ]
    parts = [f"{k} {_fmt(v)}" for k, v in facts if v not in (None, "", (), [])]
    words = _qualitative(s)
    return "; ".join(words + parts) or "no header facts"


def _qualitative(s: Any) -> list[str]:
    """Words for what the numbers mean: sentence embeddings read words far better than digits."""
    out = []
    te, tr = getattr(s, "TE", None), getattr(s, "TR", None)
    ti = getattr(s, "inversion_time", None)
    vols = int(getattr(s, "dim4", 1) or 1)
    itype = [str(x).upper() for x in (getattr(s, "image_type", ()) or ())]
    if te:
        out.append("short echo" if te < 15 else "medium echo" if te < 60 else "long echo")
    if tr:
        out.append(
            "short repetition"
            if tr < 1.0
            else "medium repetition"
            if tr < 3.0
            else "long repetition"
        )
    if ti:
        out.append("inversion recovery")
    out.append("single volume" if vols <= 1 else f"time series of {vols} volumes")
    if getattr(s, "bvalues", None) or getattr(s, "n_diffusion_directions", 0):
        out.append("diffusion weighted")
    if len(getattr(s, "echo_times", []) or []) > 1:
        out.append("multi-echo")
    if "P" in itype or "PHASE" in itype or getattr(s, "complex_part", "") == "phase":
        out.append("phase image")
    if "DERIVED" in itype:
        out.append("derived image")
    seq = f"{getattr(s, 'sequence_name', '')} {getattr(s, 'scanning_sequence', '')}".lower()
    if "epi" in seq or "ep2d" in seq or "epfid" in seq or "epse" in seq:
        out.append("echo planar")
    return out


class _DsFacts:
    """A pydicom dataset seen through the attribute names :func:`header_text` reads."""

    def __init__(self, ds: Any) -> None:
        g = ds.get

        def num(k: str) -> float | None:
            try:
                v = g(k)
                return None if v in (None, "") else float(v)
            except (TypeError, ValueError):
                return None

        tr = num("RepetitionTime")
        self.modality = str(g("Modality", "") or "")
        self.manufacturer = str(g("Manufacturer", "") or "")
        self.image_type = tuple(str(x) for x in (g("ImageType") or ()))
        self.sequence_name = str(g("SequenceName", "") or "")
        self.scanning_sequence = _fmt(list(g("ScanningSequence") or []) or "")
        self.sequence_variant = _fmt(list(g("SequenceVariant") or []) or "")
        self.scan_options = _fmt(list(g("ScanOptions") or []) or "")
        self.pulse_sequence = str(g("PulseSequenceName", "") or "")
        self.mr_acquisition_type = str(g("MRAcquisitionType", "") or "")
        self.TR = tr / 1000.0 if tr is not None else None
        self.TE = num("EchoTime")
        self.inversion_time = num("InversionTime")
        self.flip_angle = num("FlipAngle")
        self.orientation = _orientation(g("ImageOrientationPatient"))
        self.dim1, self.dim2 = int(g("Columns", 0) or 0), int(g("Rows", 0) or 0)
        self.dim3 = int(g("NumberOfFrames", 1) or 1)
        self.pe_axis = str(g("InPlanePhaseEncodingDirection", "") or "")
        self.series_description = str(g("SeriesDescription", "") or "")
        self.protocol_name = str(g("ProtocolName", "") or "")
        self.is_derived = "DERIVED" in self.image_type


def _orientation(iop: Any) -> str:
    try:
        v = [float(x) for x in iop]
        row, col = v[:3], v[3:6]
    except (TypeError, ValueError):
        return ""
    n = [
        row[1] * col[2] - row[2] * col[1],
        row[2] * col[0] - row[0] * col[2],
        row[0] * col[1] - row[1] * col[0],
    ]
    axis = max(range(3), key=lambda i: abs(n[i]))
    return ("sag", "cor", "tra")[axis]


def header_text_of_file(path: str, include_names: bool = False) -> str:
    """Header facts of one DICOM file (no pixels read); "" for PNG/JPEG."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - not DICOM (a PNG/JPEG): no header facts
        return "no header facts"
    if "SOPClassUID" not in ds and "Modality" not in ds:
        return "no header facts"
    return header_text(_DsFacts(ds), include_names)
