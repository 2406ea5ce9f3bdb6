"""Rules mapper against real studies (``../shared/data/pairs``) and the synthetic study.

Per study: type accuracy (datatype + suffix + ``part-`` of every series the study converted),
task-label agreement (func series whose truth names a literal task), skip agreement (converted
vs not, over all series), and the time group+map took. Run from the repository root:
``python benchmarks/bench_mapping.py``.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.mapping import map_groups  # noqa: E402
from engine.workspace import read_series  # noqa: E402

PAIRS = ROOT.parent / "shared" / "data" / "pairs"


def _type_of(path: str) -> tuple[str, str, str]:
    """(datatype, suffix, part) of a BIDS path or heudiconv output template."""
    parts = path.strip("/").split("/")
    datatype = parts[-2] if len(parts) >= 2 else ""
    stem = parts[-1]
    suffix = stem.rsplit("_", 1)[-1]
    m = re.search(r"_part-([a-z]+)", stem)
    return datatype, suffix, m.group(1) if m else ""


def _task_of(path: str) -> str | None:
    m = re.search(r"_task-([^_{}/]+)(?=_)", path)
    return m.group(1).lower() if m else None


def score_pair(folder: Path) -> dict[str, object]:
    truth: dict[str, list[str]] = json.loads((folder / "truth.json").read_text())
    series = read_series(folder / "dicominfo.tsv")
    t0 = time.perf_counter()
    res = map_groups(series)
    dt = time.perf_counter() - t0
    mine = {a.series_id: a for a in res.assignments}
    conv = [sid for sid, t in truth.items() if t]
    type_ok = sum(
        1
        for sid in conv
        if mine[sid].bids_path and _type_of(mine[sid].bids_path) == _type_of(truth[sid][0])
    )
    tasks = [(sid, _task_of(truth[sid][0])) for sid in conv if _task_of(truth[sid][0])]
    task_ok = sum(
        1 for sid, t in tasks if mine[sid].bids_path and _task_of(mine[sid].bids_path) == t
    )
    skip_ok = sum(1 for sid, t in truth.items() if bool(t) == bool(mine[sid].bids_path))
    misses = [
        f"{sid}: got {mine[sid].bids_path or 'skip'} want {truth[sid][0] if truth[sid] else 'skip'}"
        for sid in truth
        if bool(truth[sid]) != bool(mine[sid].bids_path)
        or (truth[sid] and _type_of(mine[sid].bids_path) != _type_of(truth[sid][0]))
    ]
    return {
        "type": (type_ok, len(conv)),
        "task": (task_ok, len(tasks)),
        "skip": (skip_ok, len(truth)),
        "seconds": dt,
        "misses": misses,
    }


def score_synthetic() -> dict[str, object] | None:
    try:
        from engine.synth import generate_study  # type: ignore[attr-defined]
    except ImportError:
        return None
    from engine.cli import main

    results = {}
    for vendor in ("siemens", "ge", "philips", "mixed"):
        for reproin in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                study, out = Path(tmp) / "study", Path(tmp) / "out"
                generate_study(
                    study, subjects=2, sessions=1, vendor=vendor, reproin=reproin, seed=0
                )
                main(["-q", "analyze", str(study / "dicom"), str(out)])
                expected = json.loads((study / "expected_bids.json").read_text())["series"]
                res = map_groups(read_series(out))
                by_uid = {}
                for s in read_series(out):
                    by_uid[s.series_uid] = s
                amap = {(a.subject, a.session, a.series_id): a for a in res.assignments}
                ok = 0
                for e in expected:
                    s = by_uid.get(e["series_uid"])
                    a = amap.get((s.subject, s.session, s.series_id)) if s else None
                    got = sorted(([a.bids_path] + a.extra_paths) if a and a.bids_path else [])
                    ok += got == sorted(e["paths"])
                results[f"{vendor}{'/reproin' if reproin else ''}"] = (ok, len(expected))
    return results


def main() -> int:
    if PAIRS.is_dir():
        for folder in sorted(PAIRS.iterdir()):
            if not (folder / "truth.json").exists():
                continue
            r = score_pair(folder)
            t, k, s = r["type"], r["task"], r["skip"]
            print(
                f"{folder.name:<14} type {t[0]}/{t[1]} ({100 * t[0] / max(t[1], 1):.0f}%)  "
                f"task {k[0]}/{k[1]}  skip {s[0]}/{s[1]}  ({r['seconds'] * 1000:.0f} ms)"
            )
            for m in r["misses"]:
                print(f"    {m}")
    else:
        print(f"no real studies at {PAIRS}")
    syn = score_synthetic()
    if syn is None:
        print("synthetic: engine.synth.generate_study not available")
    else:
        for name, (ok, n) in syn.items():
            print(f"synthetic {name:<18} {ok}/{n} series exactly as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
