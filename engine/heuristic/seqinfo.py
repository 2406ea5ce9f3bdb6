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


def custom_seqinfo_source(fields: tuple[str, ...]) -> str:
    """The heuristic's ``custom_seqinfo``: the facts ``fields`` read from one series' DICOM."""
    lines = [
        "def custom_seqinfo(wrapper, series_files):",
        '    """Facts SeqInfo lacks, read from the DICOM header: ' + ", ".join(fields) + '."""',
        "    ds = wrapper.dcm_data",
        "    facts = []",
    ]
    if "pe_axis" in fields:
        lines += [
            '    pe = ds.get("InPlanePhaseEncodingDirection", "")',
            "    if not pe:",
            '        for seq in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):',
            "            try:",
            '                pe = getattr(getattr(ds, seq)[0].MRFOVGeometrySequence[0], "InPlanePhaseEncodingDirection", "")',
            "            except (AttributeError, IndexError):",
            "                continue",
            "            if pe:",
            "                break",
            '    facts.append(("pe_axis", str(pe or "")))',
        ]
    if "echo_number" in fields:
        lines += [
            "    echoes = set()",
            "    for f in series_files:",
            "        try:",
            "            import pydicom",
            "",
            '            v = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["EchoNumbers"]).get("EchoNumbers")',
            "        except Exception:",
            "            v = None",
            "        if v is not None:",
            "            echoes.add(int(v))",
            '    facts.append(("echo_number", min(echoes) if echoes else 0))',
        ]
    if "complex_part" in fields:
        # mirrors engine.scan: ComplexImageComponent, then the vendor tags GE (0043,102F)
        # and Philips (2005,1011) under their own private creators, then ImageType
        lines += [
            '    part = str(ds.get("ComplexImageComponent", "") or "").upper()',
            '    maker = str(ds.get("Manufacturer", "")).upper()[:2]',
            '    if not part and maker == "GE" and ds.get((0x0043, 0x0010)) is not None:',
            '        if str(ds[0x0043, 0x0010].value).strip() == "GEMS_PARM_01" and (0x0043, 0x102F) in ds:',
            '            part = {0: "MAGNITUDE", 1: "PHASE", 2: "REAL", 3: "IMAGINARY"}.get(int(ds[0x0043, 0x102F].value), "")',
            '    if not part and maker == "PH" and ds.get((0x2005, 0x0010)) is not None:',
            '        if str(ds[0x2005, 0x0010].value).strip() == "Philips MR Imaging DD 001" and (0x2005, 0x1011) in ds:',
            '            part = {"M": "MAGNITUDE", "P": "PHASE", "R": "REAL", "I": "IMAGINARY"}.get(str(ds[0x2005, 0x1011].value)[:1].upper(), "")',
            "    if not part:",
            '        itype = [str(t).upper() for t in ds.get("ImageType", [])]',
            '        names = {"M": "MAGNITUDE", "P": "PHASE", "R": "REAL", "I": "IMAGINARY"}',
            '        part = next((t for t in itype if t in names.values()), "") or (',
            '            names.get(itype[2], "") if len(itype) > 2 else ""',
            "        )",
            '    words = {"MAGNITUDE": "mag", "PHASE": "phase", "REAL": "real", "IMAGINARY": "imag"}',
            '    facts.append(("complex_part", words.get(part, "")))',
        ]
    lines.append("    return tuple(facts)")
    return "\n".join(lines) + "\n"
