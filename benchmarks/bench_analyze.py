"""Time ``analyze`` (cold scan, re-scan) against heudiconv's header pass and ``dcm2niix -b o``.

    python benchmarks/bench_analyze.py [DICOM_DIR] [--copies N] [--n-cpus 2] [--repeat 3]

The input is copied ``--copies`` times into a temp tree (copies join the same series: the scan
splits by UIDs, so they just add files) so start-up costs do not dominate.  Every tool runs on
the same machine in the same run, pinned to the same ``--n-cpus`` cores with ``taskset``; each
timing is the best of ``--repeat`` runs, as wall seconds and as CPU seconds (user + system of
the child processes, from ``getrusage``), because the cores may be shared with other jobs.
heudiconv is slow, so it reads ``--heudiconv-copies`` copies (default 1) and its rate is used.
Targets (issue 3): cold >= 20x heudiconv, cold >= dcm2niix, re-scan >= 50x faster than cold.

Two re-scans are timed: the default (a stat per file: a file rewritten in place is seen) and
``--trust-folder-times`` (a stat per folder).  The copied folders' times are set an hour back,
as on a tree at rest (a scan does not trust a folder modified just before it).  The package's
bytecode is compiled first, as an installed package has it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom"
ROOT = Path(__file__).resolve().parents[1]


_LAST_STDERR = [""]


def _run(cmd: list[str], before=None) -> tuple[float, float]:
    """(wall s, CPU s of the child) for one run of ``cmd``; ``before`` runs untimed first."""
    if before:
        before()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    _LAST_STDERR[0] = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        sys.stderr.write(f"warning: {cmd[0]} exited {p.returncode}: {p.stderr[-400:]!r}\n")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _best(cmd: list[str], repeat: int, before=None) -> tuple[float, float]:
    runs = [_run(cmd, before) for _ in range(repeat)]
    return min(w for w, _ in runs), min(c for _, c in runs)


def _scan_seconds(runs: list[str]) -> float:
    """Best in-process scan time ("read N header(s) in X s") of analyze runs' stderr."""
    vals = [
        float(m.group(1)) for e in runs for m in [re.search(r"header\(s\) in ([0-9.]+) s", e)] if m
    ]
    return min(vals) if vals else float("nan")


def _best_analyze(cmd: list[str], repeat: int, before=None) -> tuple[float, float, float]:
    walls, cpus, errs = [], [], []
    for _ in range(repeat):
        w, c = _run(cmd, before)
        walls.append(w)
        cpus.append(c)
        errs.append(_LAST_STDERR[0])
    return min(walls), min(cpus), _scan_seconds(errs)


def _count(root: Path) -> int:
    return sum(len(fs) for _, _, fs in os.walk(root))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dicom", nargs="?", default=str(DEFAULT))
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--n-cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--heudiconv-copies", type=int, default=1)
    ap.add_argument("--no-heudiconv", action="store_true")
    ap.add_argument("--no-dcm2niix", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_analyze_"))
    try:
        src = tmp / "in"
        for i in range(a.copies):
            shutil.copytree(a.dicom, src / f"copy{i}", symlinks=False)
        n = _count(src)
        past = time.time_ns() - 3600 * 10**9
        for d, _dirs, _files in os.walk(src):
            os.utime(d, ns=(past, past))
        subprocess.run([sys.executable, "-m", "compileall", "-q", "engine"], cwd=ROOT,
                       stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        cpus = sorted(os.sched_getaffinity(0))[: a.n_cpus]
        pin = ["taskset", "-c", ",".join(map(str, cpus))] if shutil.which("taskset") else []
        out = tmp / "out"
        cli = [sys.executable, "-m", "engine.cli", "analyze", str(src), str(out)]
        cli += ["--n-cpus", str(a.n_cpus), "--no-progress"]

        def fresh() -> None:
            shutil.rmtree(out, ignore_errors=True)

        cold_w, cold_c, cold_in = _best_analyze(pin + cli, a.repeat, before=fresh)
        re_w, re_c, re_in = _best_analyze(pin + cli, a.repeat)
        qk_w, qk_c, qk_in = _best_analyze(pin + cli + ["--trust-folder-times"], a.repeat)
        cold, rescan, quick = (cold_w, cold_c), (re_w, re_c), (qk_w, qk_c)
        load = os.getloadavg()
        print(f"files: {n}  cpus: {a.n_cpus} ({len(os.sched_getaffinity(0))} visible)  "
              f"load avg: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}  best of {a.repeat}")  # fmt: skip

        def line(name: str, wall: float, cpu: float, files: int = n, extra: str = "") -> None:
            print(
                f"{name:<16}: {wall:7.2f} s wall {files / wall:8.0f} files/s | "
                f"{cpu:7.2f} s CPU {files / max(cpu, 1e-9):8.0f} files/CPU-s {extra}"
            )

        line("analyze cold", *cold)
        line(
            "analyze re-scan",
            *rescan,
            extra=f"(cold/re-scan: wall {cold[0] / rescan[0]:.1f}x, "
            f"CPU {cold[1] / max(rescan[1], 1e-9):.1f}x; target >= 50x)",
        )
        line(
            "  --trust-f.-t.",
            *quick,
            extra=f"(cold/re-scan: wall {cold[0] / quick[0]:.1f}x, "
            f"CPU {cold[1] / max(quick[1], 1e-9):.1f}x; a stat per folder, not per file)",
        )
        print(
            f"{'  in-process':<16}: scan {cold_in:.3f} s cold, {re_in:.3f} s re-scan "
            f"({cold_in / max(re_in, 1e-9):.1f}x), {qk_in:.3f} s with --trust-folder-times "
            f"({cold_in / max(qk_in, 1e-9):.1f}x); without interpreter start-up and imports"
        )
        bare = _best([sys.executable, "-c", "pass"], a.repeat)
        print(f"{'  python -c pass':<16}: {bare[0]:7.2f} s wall (the interpreter's own start-up)")
        if not a.no_dcm2niix and shutil.which("dcm2niix"):
            d2n_out = tmp / "d2n"

            def fresh_d2n() -> None:
                shutil.rmtree(d2n_out, ignore_errors=True)
                d2n_out.mkdir()

            d2n = _best(
                pin + ["dcm2niix", "-b", "o", "-d", "9", "-o", str(d2n_out), str(src)],
                a.repeat,
                before=fresh_d2n,
            )
            line(
                "dcm2niix -b o",
                *d2n,
                extra=f"(analyze cold vs dcm2niix: wall {d2n[0] / cold[0]:.2f}x, "
                f"CPU {d2n[1] / cold[1]:.2f}x; target >= 1x)",
            )
        if not a.no_heudiconv and shutil.which("heudiconv"):
            k = min(a.heudiconv_copies, a.copies)
            hfiles = [a for i in range(k) for a in ("--files", str(src / f"copy{i}"))]
            hn = _count(src / "copy0") * k
            heu_out = tmp / "heu"
            heu = _best(
                pin
                + ["heudiconv", *hfiles, "-s", "X", "-o", str(heu_out)]
                + ["-f", "convertall", "-c", "none", "-g", "all"],
                1,
                before=lambda: shutil.rmtree(heu_out, ignore_errors=True),
            )
            rate_w, rate_c = hn / heu[0], hn / max(heu[1], 1e-9)
            line(
                "heudiconv",
                *heu,
                files=hn,
                extra=f"(analyze cold vs heudiconv: wall {n / cold[0] / rate_w:.1f}x, "
                f"CPU {n / cold[1] / rate_c:.1f}x; target >= 20x)",
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
