"""Where the synthetic files go: ``nested``, ``flat`` or ``dicomdir`` (optionally gzipped).

* nested: ``<root>/<PatientID>/<StudyDate>/<SeriesNumber:03d>_<desc>/IM0001.dcm``
* flat: every file directly in ``<root>``, named by 16 hex digits of a hash of its
  SOPInstanceUID, without extension (``.dcm.gz`` when gzipped)
* dicomdir: a PS3.10 file-set written by :class:`pydicom.fileset.FileSet`: ``<root>/DICOMDIR``
  and the files in 8-character ID folders ``PT000000/ST000000/SE000000/IM000000`` (pydicom's
  own naming; the IDs are relative to the DICOMDIR, as the standard requires)

Gzip uses ``mtime=0`` and no embedded file name, so the bytes depend on the content only.
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

from pydicom import dcmwrite
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileset import FileInstance, FileSet
from pydicom.filewriter import write_data_element, write_file_meta_info

LAYOUTS: tuple[str, ...] = ("nested", "flat", "dicomdir")


class Encoder:
    """PS3.10 (Explicit VR Little Endian) bytes of a dataset, fast.

    The series builder shares the unchanging DataElement objects among the datasets of a
    series, so each of those is encoded once and its bytes reused; only the per-image
    elements are encoded per file.  The result is the same as :func:`pydicom.dcmwrite`
    for these flat (sequence-free) datasets.
    """

    def __init__(self) -> None:
        self._cache: dict[int, tuple[DataElement, bytes]] = {}

    def _element(self, elem: DataElement) -> bytes:
        hit = self._cache.get(id(elem))
        if hit is not None and hit[0] is elem:
            return hit[1]
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_data_element(fp, elem, ["iso8859"])
        data = fp.getvalue()
        if len(self._cache) > 20000:
            self._cache.clear()
        self._cache[id(elem)] = (elem, data)
        return data

    def encode(self, ds: Dataset) -> bytes:
        meta = DicomBytesIO()
        meta.is_little_endian = True
        meta.is_implicit_VR = False
        meta.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
        body = b"".join(self._element(ds._dict[tag]) for tag in sorted(ds._dict, key=int))
        return meta.getvalue() + body


def encode(ds: Dataset) -> bytes:
    """The PS3.10 file bytes of ``ds`` written by pydicom itself (reference encoder)."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _safe(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_") or "series"


class _FastSaveDataset(Dataset):
    """A dataset whose ``save_as`` (used by FileSet staging) uses :class:`Encoder`."""

    _encoder: Encoder

    def save_as(self, filename, /, **_kwargs) -> None:  # type: ignore[override]
        Path(filename).write_bytes(self._encoder.encode(self))


class _BulkFileSet(FileSet):
    """A FileSet whose ``add`` skips the duplicate scan (quadratic in the number of files).

    Our SOPInstanceUIDs are unique by construction, so the scan can only ever find nothing.
    """

    _bulk = False

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self._encoder = encoder

    def __iter__(self) -> Iterator[FileInstance]:
        if self._bulk:
            return iter(())
        return super().__iter__()

    def add_unique(self, ds: Dataset) -> FileInstance:
        self._bulk = True
        fast = _FastSaveDataset(ds._dict)  # same elements; staged with the fast encoder
        fast.file_meta = ds.file_meta
        fast._encoder = self._encoder
        try:
            return self.add(fast)
        finally:
            self._bulk = False


class TreeWriter:
    """Writes datasets under ``root`` in one layout; :meth:`close` returns nothing extra."""

    def __init__(self, root: Path, layout: str, gzip: bool) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        if layout == "dicomdir" and gzip:
            raise ValueError("a DICOMDIR file-set cannot reference gzipped files")
        self.root = root
        self.layout = layout
        self.gzip = gzip
        self._encoder = Encoder()
        self._fs = None
        self._pending: list[tuple[str, list[str]]] = []  # (SOPInstanceUID, rel list to fill)
        if layout == "dicomdir":
            self._fs = _BulkFileSet(self._encoder)

    def add(self, ds: Dataset, series_dir: str) -> list[str]:
        """Write ``ds``; returns a one-item list that holds its path relative to the root
        (filled in by :meth:`close` for the dicomdir layout)."""
        if self._fs is not None:
            self._fs.add_unique(ds)
            slot: list[str] = []
            self._pending.append((str(ds.SOPInstanceUID), slot))
            return slot
        data = self._encoder.encode(ds)
        ext = ".dcm.gz" if self.gzip else ".dcm"
        if self.layout == "nested":
            rel = f"{series_dir}/IM{int(ds.InstanceNumber):04d}{ext}"
        else:
            name = hashlib.sha256(str(ds.SOPInstanceUID).encode()).hexdigest()[:16]
            rel = name + (".dcm.gz" if self.gzip else "")
        if self.gzip:
            data = _gzip.compress(data, compresslevel=6, mtime=0)
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return [rel]

    @staticmethod
    def series_dir(ds: Dataset) -> str:
        return f"{ds.PatientID}/{ds.StudyDate}/{int(ds.SeriesNumber):03d}_{_safe(ds.SeriesDescription)}"

    def close(self, fileset_uid: str) -> None:
        if self._fs is None:
            return
        self._fs.ID = "LLMHSYNTH"
        self._fs.UID = fileset_uid
        self.root.mkdir(parents=True, exist_ok=True)
        self._fs.write(self.root)
        by_uid = {str(inst.SOPInstanceUID): inst.FileID for inst in self._fs}
        for uid, slot in self._pending:
            slot.append(Path(by_uid[uid]).as_posix())
