"""The five measures of mapping quality, on real studies and synthetic ones.

Per real study (``../shared/data/pairs``: a heudiconv ``dicominfo.tsv`` and what the study's own
heuristic did): type accuracy (datatype + suffix + ``part-`` of every series the study
converted), task-label agreement (func series whose truth names a literal task), skip agreement
(converted vs not, over all series), and whether ``generate``'s self-check passes (the compiled
heuristic, run over the series, agrees with the mapping). Synthetic studies: every series where
``expected_bids.json`` says, and the self-check. ``--convert``: the shared vendor DICOM sets
through analyze -> ... -> convert -> bids-validator (default options), counting sets with 0
errors (slow: minutes). Run from the repository root: ``python benchmarks/bench_mapping.py``.
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
    gen_ok = generate_ok(series, res)
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
        "generate": gen_ok,
    }


def generate_ok(series, res) -> bool:  # noqa: ANN001
    """Whether the heuristic compiled from this mapping reproduces it (generate's exit 0)."""
    from engine.heuristic.compiler import compile_heuristic
    from engine.heuristic.validate import load_heuristic, validate_module

    compiled = compile_heuristic(series, res.groups, res.mappings, res.assignments)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "heuristic.py"
        path.write_text(compiled.source)
        result = validate_module(
            load_heuristic(path), series, res.groups, res.mappings, res.assignments
        )
    return result.ok


def score_synthetic() -> dict[str, object] | None:
    try:
        from engine.synth import generate_study  # type: ignore[attr-defined]
    except ImportError:
        return None
    from engine.cli import main

    results = {}
    for vendor in ("siemens", "ge", "philips", "mixed"):
        # vendor names, ReproIn names, and the vendor conventions of issue 13 (XA _Pha, ND/NORM,
        # planning scan, Philips B0 map, separate multiband runs, aborted run with its SBRef)
        for reproin, conventions in ((False, False), (True, False), (False, True)):
            with tempfile.TemporaryDirectory() as tmp:
                study, out = Path(tmp) / "study", Path(tmp) / "out"
                generate_study(
                    study,
                    subjects=2,
                    sessions=1,
                    vendor=vendor,
                    reproin=reproin,
                    seed=0,
                    conventions=conventions,
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
                variant = "/reproin" if reproin else "/conventions" if conventions else ""
                results[f"{vendor}{variant}"] = (
                    ok,
                    len(expected),
                    generate_ok(read_series(out), res),
                )
    return results


VENDOR_SETS = ROOT.parent / "shared" / "data" / "dicom"


def convert_vendor_sets() -> list[tuple[str, int, int, str]]:
    """(set, validator errors, NIfTI files, note) for each shared DICOM set, end to end."""
    from engine.api import steps
    from engine.api.types import AnalyzeParams, ConvertParams, GenerateParams, MapParams
    from engine.errors import LlmhError

    out_rows = []
    for folder in sorted(VENDOR_SETS.iterdir()) if VENDOR_SETS.is_dir() else []:
        src = folder / "In" if (folder / "In").is_dir() else folder
        with tempfile.TemporaryDirectory() as tmp:
            out = str(Path(tmp) / "out")
            try:
                steps.analyze(AnalyzeParams(input=str(src), out_dir=out, progress=False))
                steps.group(out)
                steps.map_(MapParams(out_dir=out))
                steps.generate(GenerateParams(out_dir=out))
                subjects = sorted({s.subject for s in read_series(out)})
                errors, files, notes = 0, 0, []
                for i, sub in enumerate(subjects):
                    last = i == len(subjects) - 1
                    res = steps.convert(ConvertParams(out_dir=out, subject=sub, validator=last))
                    files += res.written
                    notes += res.failed
                    if last and res.verdict:
                        m = re.search(r"(\d+) error", res.verdict)
                        errors = int(m.group(1)) if m else 0
                out_rows.append((folder.name, errors, files, ", ".join(notes)))
            except LlmhError as exc:
                out_rows.append((folder.name, -1, 0, str(exc)[:200]))
    return out_rows


def main() -> int:
    type_ok = type_n = task_ok = task_n = skip_ok = skip_n = 0
    gen_fail: list[str] = []
    if PAIRS.is_dir():
        for folder in sorted(PAIRS.iterdir()):
            if not (folder / "truth.json").exists():
                continue
            r = score_pair(folder)
            t, k, s = r["type"], r["task"], r["skip"]
            type_ok, type_n = type_ok + t[0], type_n + t[1]
            task_ok, task_n = task_ok + k[0], task_n + k[1]
            skip_ok, skip_n = skip_ok + s[0], skip_n + s[1]
            if not r["generate"]:
                gen_fail.append(folder.name)
            print(
                f"{folder.name:<14} type {t[0]}/{t[1]} ({100 * t[0] / max(t[1], 1):.0f}%)  "
                f"task {k[0]}/{k[1]}  skip {s[0]}/{s[1]}  generate "
                f"{'ok' if r['generate'] else 'EXIT 1'}  ({r['seconds'] * 1000:.0f} ms)"
            )
            for m in r["misses"]:
                print(f"    {m}")
    else:
        print(f"no real studies at {PAIRS}")
    syn = score_synthetic()
    if syn is None:
        print("synthetic: engine.synth.generate_study not available")
    else:
        for name, (ok, n, gen) in syn.items():
            print(
                f"synthetic {name:<20} {ok}/{n} series exactly as expected; generate "
                f"{'ok' if gen else 'EXIT 1'}"
            )
            if not gen:
                gen_fail.append(f"synthetic {name}")
    studies = (
        len([p for p in PAIRS.iterdir() if (p / "truth.json").exists()]) if PAIRS.is_dir() else 0
    ) + len(syn or {})
    print("\nThe five measures (real pairs; synthetic studies in the generate count):")
    print(
        f"  datatype+suffix+part right per converted series: {type_ok}/{type_n} "
        f"({100 * type_ok / max(type_n, 1):.1f} %)"
    )
    print(
        f"  task label equal to the study's:                 {task_ok}/{task_n} "
        f"({100 * task_ok / max(task_n, 1):.1f} %)"
    )
    print(
        f"  skip agreement:                                  {skip_ok}/{skip_n} "
        f"({100 * skip_ok / max(skip_n, 1):.1f} %)"
    )
    print(
        f"  studies where generate exits 1:                  {len(gen_fail)} of {studies}"
        + (f" ({', '.join(gen_fail)})" if gen_fail else "")
    )
    if "--convert" in sys.argv:
        rows = convert_vendor_sets()
        clean = sum(1 for _, e, _, _ in rows if e == 0)
        for name, e, n, note in rows:
            print(f"    {name:<20} {n:>4} NIfTI  validator errors {e}  {note}")
        print(f"  vendor sets converted with 0 validator errors:   {clean} of {len(rows)}")
    else:
        print("  vendor sets converted with 0 validator errors:   (run with --convert)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
