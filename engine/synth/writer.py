"""Build the pydicom datasets of one synthetic series.

Every image is a classic *MR Image Storage* object with complete, consistent geometry
(ImagePositionPatient steps along the slice normal of ImageOrientationPatient by
SpacingBetweenSlices), per-volume AcquisitionTime, and the vendor-specific places real
scanners use for diffusion and phase-encoding facts:

* Siemens: CSA image header ``(0029,1010)`` (PhaseEncodingDirectionPositive, B_value,
  DiffusionGradientDirection) plus ``(0019,100C/100E)``; AcquisitionNumber counts volumes.
* GE: ``(0019,109C)`` pulse sequence, ``(0043,1039)`` b-value, ``(0019,10BB-BD)`` gradient,
  ``(0043,102F)`` magnitude/phase; TemporalPositionIdentifier counts volumes.
* Philips: ``(2001,1003)`` b-value, ``(2005,10B0-B2)`` gradient, ``(2001,1020)`` technique,
  standard ``(0018,9087/9089)``; TemporalPositionIdentifier counts volumes.

Nothing here reads a clock: all UIDs and times derive from the seed and the plan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from engine.synth.csa import build_csa
from engine.synth.protocol import PHYSICS, SeriesPlan

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
RAW_DATA_STORAGE = "1.2.840.10008.5.1.4.1.1.66"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
IMPLEMENTATION_UID = "2.25.229573984931542958114329843512353181233"

_PLANES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "tra": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "cor": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sag": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}


_PHILIPS_ORIENT = {"tra": "TRANSVERSAL", "sag": "SAGITTAL", "cor": "CORONAL"}


def make_uid(seed: int, *parts: object) -> str:
    """A ``2.25.<int>`` UID derived from the seed and ``parts`` (stable across runs)."""
    h = hashlib.sha256("|".join(map(str, (seed, *parts))).encode()).hexdigest()
    return "2.25." + str(int(h[:30], 16))


def _ds(v: float) -> str:
    """A DS string (<= 16 chars) for ``v``."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _tm(seconds: float) -> str:
    us = int(round(seconds * 1e6))
    h, rem = divmod(us, 3600 * 10**6)
    m, rem = divmod(rem, 60 * 10**6)
    s, frac = divmod(rem, 10**6)
    return f"{h % 24:02d}{m:02d}{s:02d}.{frac:06d}"


@dataclass
class StudyContext:
    """Who and when: the patient/study level shared by all series of one session."""

    seed: int
    vendor: str
    subject: str
    patient_name: str
    birth_date: str
    sex: str
    age: str
    weight: float
    size: float
    study_uid: str
    frame_uid: str
    study_date: str
    study_time_s: float
    accession: str
    study_id: str
    # who and where (the defaults are the plain demo values; generate_study(fake_identities=)
    # sets distinctive ones that a test can search every output file for)
    institution: str = "Example University Hospital"
    institution_address: str = "1 Hospital Road^Springfield^^12345^US"
    referring: str = "Smith^John"
    performing: str = "Miller^Anne"
    operator: str = "Tech^Terry"
    station: str = ""


@dataclass
class SeriesOut:
    """The datasets of one series plus facts the manifest records."""

    datasets: list[Dataset]
    n_volumes: int
    n_echoes: int
    end_s: float


def _cross(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _slices(plane: str, m: int, pixel: float, n: int, spacing: float, shift: float = 0.0):
    """(IOP, IPP list, normal) for ``n`` slices of an ``m``x``m`` grid centred near isocentre."""
    row, col = _PLANES[plane]
    normal = _cross(row, col)
    centre = (0.5 + shift, 12.0, 18.0)
    half = m * pixel / 2.0
    out = []
    for k in range(n):
        off = (k - (n - 1) / 2.0) * spacing
        out.append(
            tuple(centre[i] - half * row[i] - half * col[i] + off * normal[i] for i in range(3))
        )
    return row + col, out, normal


def _phantom(n: int, m: int, contrast: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth head-like blob (n, m, m) in float, plus faint deterministic noise."""
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, max(n, 1)), np.linspace(-1, 1, m), np.linspace(-1, 1, m), indexing="ij"
    )
    r2 = (x / 0.75) ** 2 + (y / 0.85) ** 2 + (z / 0.95) ** 2
    head = np.exp(-2.5 * r2)
    core = np.exp(-8.0 * ((x + 0.15) ** 2 + (y / 0.6) ** 2 + (z / 0.8) ** 2))
    vol = contrast * head + 0.4 * contrast * core
    return vol + rng.normal(0.0, 4.0, vol.shape)


def _contrast(kind: str) -> float:
    return 500.0 + int(hashlib.md5(kind.encode()).hexdigest()[:4], 16) % 1200


def _base_dataset(plan: SeriesPlan, study: StudyContext, number: int, uid: str) -> Dataset:
    from engine.synth.protocol import VENDOR_INFO

    info = VENDOR_INFO[plan.vendor]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(plan.image_type)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.study_date
    ds.StudyTime = _tm(study.study_time_s)
    ds.AccessionNumber = study.accession
    ds.Modality = "MR"
    ds.Manufacturer = info["Manufacturer"]
    ds.InstitutionName = study.institution
    ds.InstitutionAddress = study.institution_address
    ds.ReferringPhysicianName = study.referring
    ds.StationName = study.station or info["StationName"]
    ds.StudyDescription = info["StudyDescription"]
    ds.SeriesDescription = plan.description
    ds.PerformingPhysicianName = study.performing
    ds.OperatorsName = study.operator
    ds.ManufacturerModelName = info["ManufacturerModelName"]
    ds.PatientName = study.patient_name
    ds.PatientID = study.subject
    ds.PatientBirthDate = study.birth_date
    ds.PatientSex = study.sex
    ds.PatientAge = study.age
    ds.PatientSize = _ds(study.size)
    ds.PatientWeight = _ds(study.weight)
    ds.BodyPartExamined = "BRAIN"
    ds.DeviceSerialNumber = {"siemens": "167012", "ge": "0000000608MR750", "philips": "45321"}[
        plan.vendor
    ]
    ds.SoftwareVersions = info["SoftwareVersions"]
    ds.ProtocolName = plan.protocol
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = number
    return ds


def _mr_common(ds: Dataset, plan: SeriesPlan) -> None:
    p = plan.physics
    ds.ScanningSequence = list(p.seq)
    ds.SequenceVariant = list(p.variant)
    ds.ScanOptions = list(p.options) if p.options else ""
    ds.MRAcquisitionType = "3D" if p.acq3d else "2D"
    ds.SequenceName = plan.sequence_name
    ds.AngioFlag = "N"
    ds.SliceThickness = _ds(p.thickness)
    ds.RepetitionTime = _ds(p.tr)
    if p.ti is not None:
        ds.InversionTime = _ds(p.ti)
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "123.2512"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.SpacingBetweenSlices = _ds(p.thickness + p.gap)
    ds.NumberOfPhaseEncodingSteps = str(p.matrix)
    ds.EchoTrainLength = str(p.matrix if "EP" in p.seq else 1)
    ds.PercentSampling = "100"
    ds.PercentPhaseFieldOfView = "100"
    ds.PixelBandwidth = "2232" if "EP" in p.seq else "240"
    ds.ReceiveCoilName = {"siemens": "Head_32", "ge": "32Ch Head", "philips": "dS Head 32"}[
        plan.vendor
    ]
    ds.TransmitCoilName = "Body"
    m = p.matrix
    ds.AcquisitionMatrix = [m, 0, 0, m] if p.pe_axis == "COL" else [0, m, m, 0]
    ds.InPlanePhaseEncodingDirection = p.pe_axis
    ds.FlipAngle = _ds(p.flip)
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = "0.12"
    ds.dBdt = "0"
    ds.FrameOfReferenceUID = ""
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = m
    ds.Columns = m
    ds.PixelSpacing = [_ds(p.pixel), _ds(p.pixel)]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "LLMH_SYNTH_1"
    return meta


def _non_image(plan: SeriesPlan, study: StudyContext, number: int, uid: str, t0: float):
    ds = _base_dataset(plan, study, number, uid)
    sop = make_uid(study.seed, uid, "report")
    if plan.vendor == "ge":
        ds.SOPClassUID = SECONDARY_CAPTURE
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 16
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.add_new(0x7FE00010, "OB", bytes((i * 7) % 256 for i in range(256)))
    else:
        ds.SOPClassUID = RAW_DATA_STORAGE
        if plan.vendor == "siemens":
            block = ds.private_block(0x0029, "SIEMENS CSA NON-IMAGE", create=True)
            block.add_new(0x10, "OB", b"PK\x03\x04" + b"PhoenixMetaProtocol\x00" * 4)
    ds.SOPInstanceUID = sop
    ds.InstanceNumber = 1
    ds.ContentTime = ds.SeriesTime = ds.AcquisitionTime = _tm(t0)
    ds.file_meta = _file_meta(ds.SOPClassUID, sop)
    return SeriesOut([ds], 0, 0, t0 + 5.0)


def build_series(
    plan: SeriesPlan, study: StudyContext, number: int, uid: str, t0: float
) -> SeriesOut:
    """All datasets of ``plan`` as series ``number`` starting at ``t0`` seconds after midnight."""
    if not plan.is_image:
        return _non_image(plan, study, number, uid, t0)
    p = plan.physics
    vendor = plan.vendor
    base = _base_dataset(plan, study, number, uid)
    _mr_common(base, plan)
    base.FrameOfReferenceUID = study.frame_uid
    base.SeriesTime = _tm(t0)
    base.SOPClassUID = MR_IMAGE_STORAGE
    tr_s = p.tr / 1000.0
    echoes = p.echo_numbers or tuple(range(1, len(p.tes) + 1))
    spacing = p.thickness + p.gap
    if p.plane == "3plane":
        stacks = [(pl, *_slices(pl, p.matrix, p.pixel, p.nslices, spacing)) for pl in _PLANES]
    else:
        stacks = [(p.plane, *_slices(p.plane, p.matrix, p.pixel, p.nslices, spacing))]
    n_per_vol = sum(len(s[2]) for s in stacks)
    rng = np.random.default_rng(int(make_uid(study.seed, uid, "px")[5:]) % 2**32)
    phantom = _phantom(n_per_vol, p.matrix, _contrast(plan.kind), rng)
    # interleaved slice order for 2D acquisitions (odd then even), one time for 3D
    order = list(range(0, n_per_vol, 2)) + list(range(1, n_per_vol, 2))
    slot = {k: i for i, k in enumerate(order)}
    is_phase = "P" in plan.image_type or (vendor == "ge" and plan.kind.endswith("phase"))
    is_siemens = vendor == "siemens"
    datasets: list[Dataset] = []
    inst = 0
    for vol in range(p.nvols):
        bval = p.bvals[vol] if p.bvals else None
        bvec = p.bvecs[vol] if p.bvecs else (0.0, 0.0, 0.0)
        if is_phase:
            # a phase ramp with measurement noise (a noiseless ramp compresses to a NIfTI smaller
            # than its own header, which the BIDS validator rejects as NIFTI_TOO_SMALL)
            ramp = np.linspace(0, 1, p.matrix)[None, None, :] * 3000 + 500 + vol * 20
            ramp = ramp + rng.normal(0.0, 40.0, phantom.shape)
            img_vol = ramp * (phantom > 50) + (2048 + rng.normal(0.0, 400.0, phantom.shape)) * (
                phantom <= 50
            )
        else:
            scale = 1.0 + 0.02 * np.sin(2 * np.pi * vol / max(p.nvols, 2))
            if bval:
                scale *= 0.35 * (1.0 + 0.3 * abs(bvec[0]) + 0.15 * abs(bvec[1]))
            img_vol = phantom * scale
        for e_idx, echo in enumerate(echoes):
            te = p.tes[e_idx]
            data = img_vol if is_phase else img_vol * np.exp(-te / 80.0)
            data = np.clip(data, 0, 4095).astype(np.uint16)
            k = 0
            for _plane, iop, ipps, normal in stacks:
                for ipp in ipps:
                    inst += 1
                    t = t0 + vol * tr_s + (0 if p.acq3d else slot[k] * tr_s / n_per_vol)
                    ds = Dataset(dict(base._dict))  # own dict, shared static elements
                    sop = make_uid(study.seed, uid, inst)
                    ds.SOPInstanceUID = sop
                    ds.file_meta = _file_meta(MR_IMAGE_STORAGE, sop)
                    ds.AcquisitionTime = ds.ContentTime = _tm(t)
                    ds.EchoTime = _ds(te)
                    ds.EchoNumbers = echo
                    ds.InstanceNumber = inst
                    ds.AcquisitionNumber = vol + 1 if is_siemens else 1
                    if p.nvols > 1 and not is_siemens:
                        ds.TemporalPositionIdentifier = vol + 1
                        ds.NumberOfTemporalPositions = p.nvols
                    ds.ImagePositionPatient = [_ds(v) for v in ipp]
                    ds.ImageOrientationPatient = [_ds(v) for v in iop]
                    ds.SliceLocation = _ds(sum(a * b for a, b in zip(ipp, normal, strict=True)))
                    if is_siemens and plan.kind in ("dwi", "dwi_b0pa"):
                        del ds.SequenceName  # replace, never mutate the shared element
                        ds.SequenceName = "*ep_b0" if not bval else f"*ep_b{int(bval)}#{vol}"
                    if is_phase and is_siemens:
                        ds.RescaleIntercept = "-4096"
                        ds.RescaleSlope = "2"
                        ds.RescaleType = "US"
                    ds.WindowCenter = "1024" if not is_phase else "2048"
                    ds.WindowWidth = "2048" if not is_phase else "4096"
                    _vendor_private(ds, plan, bval, bvec, normal, k)
                    ds.add_new(0x7FE00010, "OW", data[k].tobytes())
                    datasets.append(ds)
                    k += 1
    end = t0 + p.nvols * tr_s + 20.0
    return SeriesOut(datasets, p.nvols, len(echoes), end)


def _vendor_private(ds: Dataset, plan: SeriesPlan, bval, bvec, normal, slice_idx: int) -> None:
    p = plan.physics
    diffusion = plan.kind.startswith("dwi")
    if plan.vendor == "siemens":
        pe = p.pe_positive  # +column = toward posterior (LPS), so A>>P is positive
        csa: dict[str, list[object]] = {
            "PhaseEncodingDirectionPositive": [pe],
            "SliceNormalVector": list(normal),
            "BandwidthPerPixelPhaseEncode": [30.0 if "EP" in p.seq else 200.0],
            "ImaCoilString": ["HEA;HEP"],
        }
        hdr = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        hdr.add_new(0x08, "CS", "IMAGE NUM 4")
        hdr.add_new(0x28, "FD", 30.0 if "EP" in p.seq else 200.0)
        if diffusion and bval is not None:
            csa["B_value"] = [int(bval)]
            directional = bool(bval) and any(bvec)
            csa["DiffusionDirectionality"] = ["DIRECTIONAL" if directional else "NONE"]
            hdr.add_new(0x0C, "IS", int(bval))
            hdr.add_new(0x0D, "CS", "DIRECTIONAL" if directional else "NONE")
            if directional:
                csa["DiffusionGradientDirection"] = list(bvec)
                hdr.add_new(0x0E, "FD", list(bvec))
        blk = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        blk.add_new(0x08, "CS", "IMAGE NUM 4")
        blk.add_new(0x09, "LO", "20100114")
        blk.add_new(0x10, "OB", build_csa(csa))
        # CSA series header: the Phoenix protocol, where a real scanner keeps every echo time
        # of the protocol (dcm2niix takes a phasediff's EchoTime1/EchoTime2 from alTE[]).
        blk.add_new(0x20, "OB", build_csa({"MrPhoenixProtocol": [_ascconv(plan)]}))
    elif plan.vendor == "ge":
        acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        acq.add_new(0x9C, "LO", plan.pulse_sequence)
        parm = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        parm.add_new(0x2F, "SS", 1 if plan.kind.endswith("phase") else 0)
        if "EP" in p.seq:
            # effective echo spacing (us) and ASSET factors: where GE keeps what dcm2niix
            # needs for TotalReadoutTime / EffectiveEchoSpacing
            parm.add_new(0x2C, "SS", 500)
            parm.add_new(0x83, "DS", ["1", "1"])
        if diffusion and bval is not None:
            acq.add_new(0xBB, "DS", _ds(bvec[0]))
            acq.add_new(0xBC, "DS", _ds(bvec[1]))
            acq.add_new(0xBD, "DS", _ds(bvec[2]))
            parm.add_new(0x39, "IS", [int(bval) + 1000000000, 8, 0, 0])
    else:
        img = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
        img.add_new(0x0A, "IS", slice_idx + 1)
        img.add_new(0x0B, "CS", _PHILIPS_ORIENT[p.plane] if p.plane in _PHILIPS_ORIENT else "")
        img.add_new(0x20, "LO", plan.pulse_sequence)
        if "EP" in p.seq:
            # EPI factor and water-fat shift (pixels): all Philips DICOM says of the readout
            img.add_new(0x13, "SL", p.matrix)
            img.add_new(0x22, "FL", 12.0)
        if diffusion and bval is not None:
            img.add_new(0x03, "FL", float(bval))
            img.add_new(0x04, "CS", "O" if bval else "0")
            mr = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            mr.add_new(0xB0, "FL", float(bvec[0]))
            mr.add_new(0xB1, "FL", float(bvec[1]))
            mr.add_new(0xB2, "FL", float(bvec[2]))
            ds.DiffusionBValue = float(bval)
            ds.DiffusionGradientOrientation = [float(v) for v in bvec]


def _ascconv(plan: SeriesPlan) -> str:
    """A minimal ``### ASCCONV ###`` block of the Siemens Phoenix protocol."""
    tes = PHYSICS["gre_mag"].tes if plan.kind == "gre_phase" else plan.physics.tes
    lines = ["### ASCCONV BEGIN ###", f'tProtocolName\t = \t""{plan.protocol}""']
    lines += [f"alTE[{i}]\t = \t{round(te * 1000)}" for i, te in enumerate(tes)]
    lines += [f"lContrasts\t = \t{len(tes)}", "### ASCCONV END ###"]
    return "\n".join(lines)
