"""Time ``analyze`` (cold scan, re-scan) against heudiconv's header pass and ``dcm2niix -b o``.

    python benchmarks/bench_analyze.py [DICOM_DIR] [--copies N] [--n-cpus 2]

The input is replicated ``--copies`` times into a temp tree (new UIDs are not needed: the scan
splits by path-independent UIDs, so copies just add files) so start-up costs do not dominate.
All tools run on the same files in one run; ratios are printed against them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom"


def _time(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dicom", nargs="?", default=str(DEFAULT))
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--n-cpus", type=int, default=2)
    ap.add_argument("--no-heudiconv", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_analyze_"))
    try:
        src = tmp / "in"
        for i in range(a.copies):
            shutil.copytree(a.dicom, src / f"copy{i}", symlinks=False)
        files = [str(p) for p in src.rglob("*") if p.is_file()]
        n = len(files)
        taskset = [
            "taskset",
            "-c",
            ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[: a.n_cpus]),
        ]
        if shutil.which("taskset") is None:
            taskset = []
        cli = [
            sys.executable,
            "-m",
            "engine.cli",
            "analyze",
            str(src),
            str(tmp / "out"),
            "--n-cpus",
            str(a.n_cpus),
            "--no-progress",
        ]
        cold = _time(taskset + cli)
        rescan = _time(taskset + cli)
        (tmp / "d2n").mkdir()
        d2n = _time(taskset + ["dcm2niix", "-b", "o", "-o", str(tmp / "d2n"), str(src)])
        print(f"files: {n}  cpus: {a.n_cpus}")
        print(f"analyze cold   : {cold:7.2f} s  {n / cold:8.0f} files/s")
        print(
            f"analyze re-scan: {rescan:7.2f} s  {n / rescan:8.0f} files/s  (cold/re-scan = {cold / rescan:.1f}x)"
        )
        print(
            f"dcm2niix -b o  : {d2n:7.2f} s  {n / d2n:8.0f} files/s  (dcm2niix/analyze = {d2n / cold:.2f}x)"
        )
        if not a.no_heudiconv and shutil.which("heudiconv"):
            # heudiconv's header pass over one copy (grouping "all" so mixed studies pass)
            heu = _time(
                taskset
                + ["heudiconv", "--files", str(src / "copy0"), "-s", "X", "-o", str(tmp / "heu")]
                + ["-f", "convertall", "-c", "none", "-g", "all"]
            )
            heu_files = sum(1 for p in (src / "copy0").rglob("*") if p.is_file())
            est = heu / heu_files * n
            print(
                f"heudiconv      : {heu:7.2f} s for {heu_files} files ({heu_files / heu:.0f} files/s)"
                f" -> {est:.1f} s for {n} (heudiconv/analyze = {est / cold:.1f}x)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
