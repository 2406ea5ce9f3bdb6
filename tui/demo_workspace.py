"""Hand-made series of a small deterministic study, for tests, snapshots and benchmarks.

Only the series (the model's :class:`SeriesInfo`): the OUT folder is built from them through
the engine's API steps (group, map) by ``tests/workspace_helpers.build_workspace``, so its
files are exactly what ``group``/``map`` write.
"""

from __future__ import annotations

from engine.model import SeriesInfo

PROTOCOLS: tuple[dict, ...] = (
    dict(
        protocol_name="localizer",
        sequence_name="*fl2d1",
        dim1=256,
        dim2=256,
        dim3=3,
        TR=0.02,
        TE=5.0,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
        n_slices=3,
    ),
    dict(
        protocol_name="t1_mprage_sag",
        sequence_name="*tfl3d1_16ns",
        dim1=256,
        dim2=256,
        dim3=176,
        TR=2.3,
        TE=2.98,
        inversion_time=900.0,
        flip_angle=9.0,
        mr_acquisition_type="3D",
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
        n_slices=176,
    ),
    dict(
        protocol_name="t2_tse_tra",
        sequence_name="*tse2d1_15",
        dim1=320,
        dim2=320,
        dim3=30,
        TR=6.0,
        TE=95.0,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
        n_slices=30,
    ),
    dict(
        protocol_name="ep2d_bold_rest",
        sequence_name="*epfid2d1_64",
        dim1=64,
        dim2=64,
        dim3=36,
        dim4=200,
        TR=2.0,
        TE=30.0,
        n_volumes=200,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"),
        pe_axis="COL",
        pe_direction="j-",
        n_slices=36,
    ),
    dict(
        protocol_name="ep2d_bold_ft",
        sequence_name="*epfid2d1_64",
        dim1=64,
        dim2=64,
        dim3=36,
        dim4=150,
        TR=1.5,
        TE=30.0,
        n_volumes=150,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"),
        pe_axis="COL",
        pe_direction="j-",
        n_slices=36,
    ),
    dict(
        protocol_name="dti_30dir",
        sequence_name="*ep_b1000#1",
        dim1=96,
        dim2=96,
        dim3=60,
        dim4=31,
        TR=8.0,
        TE=90.0,
        n_volumes=31,
        bvalues=[0.0, 1000.0],
        n_diffusion_directions=30,
        image_type=("ORIGINAL", "PRIMARY", "DIFFUSION", "NONE", "ND", "MOSAIC"),
        n_slices=60,
    ),
    dict(
        protocol_name="mystery_sequence",
        sequence_name="*xyz3d1",
        dim1=128,
        dim2=128,
        dim3=64,
        TR=0.5,
        TE=7.0,
        image_type=("ORIGINAL", "PRIMARY", "OTHER"),
        n_slices=64,
    ),
)


def make_series(subjects: int = 2, sessions: int = 1, repeats: int = 1) -> list[SeriesInfo]:
    """``subjects`` x ``sessions`` sessions of :data:`PROTOCOLS`, each protocol ``repeats`` times."""
    out: list[SeriesInfo] = []
    for i in range(1, subjects + 1):
        sub = f"S{i:04d}"
        for j in range(1, sessions + 1):
            ses = f"{j:02d}" if sessions > 1 else ""
            n = 0
            for r in range(repeats):
                for p in PROTOCOLS:
                    n += 1
                    frames = int(p.get("dim4", 1)) if int(p.get("dim4", 1)) > 1 else int(p["dim3"])
                    kw = dict(p)
                    if r == 0 and i == 1 and p["protocol_name"] == "ep2d_bold_ft":
                        kw["dim4"] = kw["n_volumes"] = 40  # an aborted run
                        frames = 40
                    out.append(
                        SeriesInfo(
                            series_id=f"{n}-{p['protocol_name']}",
                            dcm_dir_name=f"{n}-{p['protocol_name']}",
                            example_dcm_file=f"/data/{sub}/{ses or 'ses'}/{n}/IM0001.dcm",
                            series_files=frames,
                            series_description=p["protocol_name"],
                            patient_id=sub,
                            subject=sub,
                            session=ses,
                            date=f"202401{j:02d}",
                            time=f"{9 + n // 60:02d}{n % 60:02d}00.000000",
                            series_uid=f"1.2.3.{i}.{j}.{n}",
                            series_number=n,
                            manufacturer="SIEMENS",
                            model_name="Prisma",
                            field_strength=3.0,
                            modality="MR",
                            sop_class="MR",
                            **kw,
                        )
                    )
    return out
