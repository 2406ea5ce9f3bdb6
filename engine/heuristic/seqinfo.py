"""heudiconv ``SeqInfo`` records built from our series table, and the ``custom`` facts.

heudiconv hands each heuristic a list of ``SeqInfo`` namedtuples. To run a generated heuristic
without DICOM files (``validate``) we build the same tuples from ``SeriesInfo``; the ``custom``
slot holds facts SeqInfo lacks, computed in the heuristic by ``custom_seqinfo`` from DICOM.
"""

from __future__ import annotations

from typing import Any

from engine.model import SeriesInfo

# custom facts the compiler may use, in the order they sit in ``SeqInfo.custom``.
CUSTOM_FIELDS: tuple[str, ...] = ("pe_axis", "echo_number", "complex_part")


def custom_value(s: SeriesInfo, name: str) -> Any:
    """The value ``custom_seqinfo`` computes from DICOM, derived from our series row."""
    if name == "pe_axis":
        return s.pe_axis or ""
    if name == "echo_number":
        return min(s.echo_numbers) if s.echo_numbers else 0
    if name == "complex_part":
        return s.complex_part or ""
    raise KeyError(name)


def to_seqinfo(s: SeriesInfo, custom_fields: tuple[str, ...] = ()) -> Any:
    """A ``heudiconv.utils.SeqInfo`` with the values heudiconv itself would compute."""
    from heudiconv.utils import SeqInfo

    custom = tuple((n, custom_value(s, n)) for n in custom_fields) if custom_fields else None
    return SeqInfo(
        total_files_till_now=s.total_files_till_now,
        example_dcm_file=s.example_dcm_file,
        series_id=s.series_id,
        dcm_dir_name=s.dcm_dir_name,
        series_files=s.series_files,
        unspecified=s.unspecified,
        dim1=s.dim1,
        dim2=s.dim2,
        dim3=s.dim3,
        dim4=s.dim4,
        TR=s.TR if s.TR is not None else -1.0,
        TE=s.TE if s.TE is not None else -1.0,
        protocol_name=s.protocol_name,
        is_motion_corrected=s.is_motion_corrected,
        is_derived=s.is_derived,
        patient_id=s.patient_id,
        study_description=s.study_description,
        referring_physician_name=s.referring_physician_name,
        series_description=s.series_description,
        sequence_name=s.sequence_name,
        image_type=tuple(s.image_type),
        accession_number=s.accession_number,
        patient_age=s.patient_age,
        patient_sex=s.patient_sex,
        date=s.date,
        series_uid=s.series_uid,
        time=s.time,
        custom=custom,
    )
