"""Fuzz: mutated / truncated copies of real files never crash the header reader."""

from __future__ import annotations

import random
from pathlib import Path

from engine.scan.header import NotDicom, facts_from_bytes
from engine.scan.pipeline import read_one

N_CASES = 1500


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(6)
    head = min(len(b), 30000)  # mutate where the header lives
    if kind == 0:
        b = b[: rng.randrange(len(b))]
    elif kind == 1:
        for _ in range(rng.randrange(1, 30)):
            b[rng.randrange(head)] = rng.randrange(256)
    elif kind == 2:
        j = rng.randrange(head)
        b[j : j + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\xfe\xff\x00\xe0"])
    elif kind == 3:
        j = rng.randrange(head)
        del b[j : j + rng.randrange(1, 64)]
    elif kind == 4:
        j = rng.randrange(head)
        b[j:j] = rng.randbytes(rng.randrange(1, 64))
    else:
        b = b[:132] + b[132:][::-1][: rng.randrange(1, 4000)]
    return bytes(b)


def test_fuzz_no_crash(shared_data: Path, tmp_path: Path) -> None:
    rng = random.Random(1234)
    root = shared_data / "dicom"
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and "/In/" in str(p) and "README" not in p.name
    )
    files += sorted((root / "heudiconv_testdata").rglob("*.dcm"))
    sources = [p.read_bytes()[:200_000] for p in rng.sample(files, 60)]
    outcomes = {"ok": 0, "rejected": 0}
    for i in range(N_CASES):
        data = _mutate(rng, rng.choice(sources))
        try:
            facts = facts_from_bytes(data)
            assert isinstance(facts, dict)
            outcomes["ok"] += 1
        except NotDicom as exc:
            assert str(exc)
            outcomes["rejected"] += 1
        if i % 100 == 0:  # the file path too (mmap/gzip/read paths), via the worker entry point
            p = tmp_path / f"case{i}"
            p.write_bytes(data)
            row = read_one((str(p), len(data), 0))
            assert row[3] in {"image", "error", "dicomdir"}
    assert outcomes["ok"] > 0 and outcomes["rejected"] > 0


def _enhanced_sources(root: Path) -> list[bytes]:
    files = sorted((root / "dcm_qa_xa30" / "In").rglob("*.dcm"))
    files = [p for p in files if "DWI" in str(p) or "gre_field" in str(p)][:4]
    files += sorted((root / "dcm_qa_fmap" / "In" / "Philips").rglob("*.dcm"))[:2]
    return [p.read_bytes() for p in files]


def test_fuzz_enhanced_fast_equals_plain(shared_data: Path) -> None:
    """Mutated enhanced files: the per-frame template reading gives the plain walk's facts,
    or both reject the file (the template must never make up or hide a frame)."""
    rng = random.Random(99)
    sources = _enhanced_sources(shared_data / "dicom")
    assert sources
    agree = {"same facts": 0, "both rejected": 0}
    for _ in range(300):
        src = rng.choice(sources)
        b = bytearray(src)
        start = src.find(b"\x00\x52\x30\x92")  # inside the per-frame functional groups
        for _ in range(rng.randrange(1, 6)):
            j = rng.randrange(max(start, 132), max(start + 1, min(len(b), start + 400_000)))
            kind = rng.randrange(3)
            if kind == 0:
                b[j] = rng.randrange(256)
            elif kind == 1:
                del b[j : j + rng.randrange(1, 16)]
            else:
                b[j:j] = rng.randbytes(rng.randrange(1, 16))
        data = bytes(b)
        try:
            fast = facts_from_bytes(data)
        except NotDicom:
            fast = None
        try:
            plain = facts_from_bytes(data, plain=True)
        except NotDicom:
            plain = None
        assert fast == plain
        agree["same facts" if fast is not None else "both rejected"] += 1
    assert all(agree.values()), agree
