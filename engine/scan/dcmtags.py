"""What a scan reads of each DICOM header: the tag table, the kept sequences, the walk's spec.

One place names every element the header reader keeps (and the VR to decode it with when a file
is implicit VR), so :mod:`engine.scan.dcmparse` can jump over all the others.  Split from
:mod:`engine.scan.header` so the value decoders, vendor decoders and per-file tables can share
it without importing the reader.
"""

from __future__ import annotations

from engine.scan.dcmbase import Spec

DICOMDIR_SOP = "1.2.840.10008.1.3.10"


def T(g: int, e: int) -> int:
    return (g << 16) | e


# tag -> (name, VR used when the file is implicit VR)
TAGS: dict[str, tuple[int, bytes]] = {
    "ImageType": (T(0x0008, 0x0008), b"CS"),
    "SOPClassUID": (T(0x0008, 0x0016), b"UI"),
    "StudyDate": (T(0x0008, 0x0020), b"DA"),
    "SeriesDate": (T(0x0008, 0x0021), b"DA"),
    "AcquisitionDate": (T(0x0008, 0x0022), b"DA"),
    "StudyTime": (T(0x0008, 0x0030), b"TM"),
    "SeriesTime": (T(0x0008, 0x0031), b"TM"),
    "AcquisitionTime": (T(0x0008, 0x0032), b"TM"),
    "AcquisitionDateTime": (T(0x0008, 0x002A), b"DT"),
    "AccessionNumber": (T(0x0008, 0x0050), b"SH"),
    "Modality": (T(0x0008, 0x0060), b"CS"),
    "Manufacturer": (T(0x0008, 0x0070), b"LO"),
    "ReferringPhysicianName": (T(0x0008, 0x0090), b"PN"),
    "StudyDescription": (T(0x0008, 0x1030), b"LO"),
    "SeriesDescription": (T(0x0008, 0x103E), b"LO"),
    "ManufacturerModelName": (T(0x0008, 0x1090), b"LO"),
    "FrameType": (T(0x0008, 0x9007), b"CS"),
    "ComplexImageComponent": (T(0x0008, 0x9208), b"CS"),
    "PatientID": (T(0x0010, 0x0020), b"LO"),
    "PatientSex": (T(0x0010, 0x0040), b"CS"),
    "PatientAge": (T(0x0010, 0x1010), b"AS"),
    "ScanningSequence": (T(0x0018, 0x0020), b"CS"),
    "SequenceVariant": (T(0x0018, 0x0021), b"CS"),
    "ScanOptions": (T(0x0018, 0x0022), b"CS"),
    "MRAcquisitionType": (T(0x0018, 0x0023), b"CS"),
    "SequenceName": (T(0x0018, 0x0024), b"SH"),
    "SliceThickness": (T(0x0018, 0x0050), b"DS"),
    "RepetitionTime": (T(0x0018, 0x0080), b"DS"),
    "EchoTime": (T(0x0018, 0x0081), b"DS"),
    "InversionTime": (T(0x0018, 0x0082), b"DS"),
    "EchoNumbers": (T(0x0018, 0x0086), b"IS"),
    "MagneticFieldStrength": (T(0x0018, 0x0087), b"DS"),
    "ProtocolName": (T(0x0018, 0x1030), b"LO"),
    "InPlanePhaseEncodingDirection": (T(0x0018, 0x1312), b"CS"),
    "FlipAngle": (T(0x0018, 0x1314), b"DS"),
    "PulseSequenceName": (T(0x0018, 0x9005), b"SH"),
    "EffectiveEchoTime": (T(0x0018, 0x9082), b"FD"),
    "DiffusionBValue": (T(0x0018, 0x9087), b"FD"),
    "DiffusionGradientOrientation": (T(0x0018, 0x9089), b"FD"),
    "SiemensSequenceName": (T(0x0019, 0x109C), b"LO"),
    "StudyInstanceUID": (T(0x0020, 0x000D), b"UI"),
    "SeriesInstanceUID": (T(0x0020, 0x000E), b"UI"),
    "SeriesNumber": (T(0x0020, 0x0011), b"IS"),
    "AcquisitionNumber": (T(0x0020, 0x0012), b"IS"),
    "InstanceNumber": (T(0x0020, 0x0013), b"IS"),
    "ImagePositionPatient": (T(0x0020, 0x0032), b"DS"),
    "ImageOrientationPatient": (T(0x0020, 0x0037), b"DS"),
    "TemporalPositionIdentifier": (T(0x0020, 0x0100), b"IS"),
    "NumberOfTemporalPositions": (T(0x0020, 0x0105), b"IS"),
    "TemporalPositionIndex": (T(0x0020, 0x9128), b"UL"),
    "DimensionIndexValues": (T(0x0020, 0x9157), b"UL"),
    "NumberOfFrames": (T(0x0028, 0x0008), b"IS"),
    "Rows": (T(0x0028, 0x0010), b"US"),
    "Columns": (T(0x0028, 0x0011), b"US"),
    "PixelSpacing": (T(0x0028, 0x0030), b"DS"),
    "SpecificCharacterSet": (T(0x0008, 0x0005), b"CS"),
    # identities: read only to be kept in OUT/private and redacted everywhere else
    "InstitutionName": (T(0x0008, 0x0080), b"LO"),
    "InstitutionAddress": (T(0x0008, 0x0081), b"ST"),
    "StationName": (T(0x0008, 0x1010), b"SH"),
    "InstitutionalDepartmentName": (T(0x0008, 0x1040), b"LO"),
    "PerformingPhysicianName": (T(0x0008, 0x1050), b"PN"),
    "NameOfPhysiciansReadingStudy": (T(0x0008, 0x1060), b"PN"),
    "OperatorsName": (T(0x0008, 0x1070), b"PN"),
    "PatientName": (T(0x0010, 0x0010), b"PN"),
    "PatientBirthDate": (T(0x0010, 0x0030), b"DA"),
    "OtherPatientIDs": (T(0x0010, 0x1000), b"LO"),
    "PatientAddress": (T(0x0010, 0x1040), b"LO"),
    # GE
    "GEBValue": (T(0x0043, 0x1039), b"IS"),
    "GEProtocolDataBlock": (T(0x0025, 0x101B), b"OB"),
    "GEImageType": (T(0x0043, 0x102F), b"SS"),
    "GEUserData": (
        T(0x0043, 0x102A),
        b"OB",
    ),  # GEMS_PARM_01 UserDefineData (PE polarity)  # GEMS_PARM_01: 0 mag, 1 phase, 2 real, 3 imag
    # Philips
    "PhilipsBValue": (T(0x2001, 0x1003), b"FL"),
    "PhilipsImageTypeMR": (T(0x2005, 0x1011), b"CS"),  # Philips MR Imaging DD 001: M P R I
}
GE_PARM_CREATOR = T(0x0043, 0x0010)
PHILIPS_MR_CREATOR = T(0x2005, 0x0010)
NAME_OF = {tag: name for name, (tag, _vr) in TAGS.items()}
CSA_IMAGE = T(0x0029, 0x1010)
CSA_SERIES = T(0x0029, 0x1020)
XA_PE_POSITIVE = T(0x0021, 0x111C)

SEQS = {
    T(0x5200, 0x9229),  # SharedFunctionalGroupsSequence
    T(0x5200, 0x9230),  # PerFrameFunctionalGroupsSequence
    T(0x0018, 0x9112),  # MR Timing and Related Parameters
    T(0x0018, 0x9114),  # MR Echo
    T(0x0018, 0x9117),  # MR Diffusion
    T(0x0018, 0x9076),  # Diffusion Gradient Direction
    T(0x0018, 0x9125),  # MR FOV/Geometry
    T(0x0018, 0x9226),  # MR Image Frame Type
    T(0x0020, 0x9111),  # Frame Content
    T(0x0020, 0x9113),  # Plane Position (Patient)
    T(0x0020, 0x9116),  # Plane Orientation (Patient)
    T(0x0028, 0x9110),  # Pixel Measures
    T(0x0021, 0x10FE),  # Siemens XA private
    T(0x0021, 0x11FE),  # Siemens XA private (SDI)
}
KEEP = {tag for tag, _ in TAGS.values()} | {
    CSA_IMAGE,
    CSA_SERIES,
    XA_PE_POSITIVE,
    T(0x0002, 0x0010),
    T(0x0002, 0x0002),
}
VRS = {tag: vr for tag, vr in TAGS.values()} | {
    CSA_IMAGE: b"OB",
    CSA_SERIES: b"OB",
    XA_PE_POSITIVE: b"IS",
    **{s: b"SQ" for s in SEQS},
}
SPEC = Spec(KEEP, SEQS, {0x0019, 0x0021, 0x0029, 0x0043, 0x2001, 0x2005}, VRS)


class NotDicom(Exception):
    """The file is not a readable DICOM image header; the message says why."""


# (fact, DICOM keyword) of the identity values kept only in OUT/private (engine.private)
IDENTITY_FACTS: tuple[tuple[str, str], ...] = (
    ("patient_name", "PatientName"),
    ("patient_birth_date", "PatientBirthDate"),
    ("other_patient_ids", "OtherPatientIDs"),
    ("patient_address", "PatientAddress"),
    ("institution_name", "InstitutionName"),
    ("institution_address", "InstitutionAddress"),
    ("institution_department", "InstitutionalDepartmentName"),
    ("station_name", "StationName"),
    ("performing_physician_name", "PerformingPhysicianName"),
    ("reading_physician_name", "NameOfPhysiciansReadingStudy"),
    ("operators_name", "OperatorsName"),
)
