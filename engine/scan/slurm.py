"""Slurm job array for very large scans: chunks of the file list, one partial cache per task.

``write_job`` writes ``OUT/slurm/files_NNNN.txt`` (one path per line), ``analyze_array.sbatch``
whose task *i* runs ``python -m engine.scan.slurm task OUT i`` (writing
``OUT/slurm/part_NNNN.sqlite``), and ``merge`` folds the parts into ``OUT``'s cache and writes
the same outputs a local scan writes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from engine.atomic import write_text_atomic
from engine.errors import UserError
from engine.scan.cache import CACHE_NAME, FactsCache
from engine.scan.discover import discover
from engine.scan.pipeline import read_chunk

SCRIPT = "analyze_array.sbatch"


def write_job(
    input_path: str,
    out_dir: str,
    files_per_task: int = 2000,
    n_cpus: int = 1,
    extra_args: list[str] | None = None,
) -> Path:
    out = Path(out_dir).resolve()
    work = out / "slurm"
    work.mkdir(parents=True, exist_ok=True)
    found = discover(os.fspath(input_path), exclude=(os.fspath(out),))
    files = [p for p, _, _ in found.files]
    n_tasks = max(1, -(-len(files) // files_per_task))
    # leftovers of an earlier job (more tasks, older facts) must not be merged into this one
    for pattern in ("files_*.txt", "part_*.sqlite*", "task_*.log"):
        for old in work.glob(pattern):
            old.unlink()
    for i in range(n_tasks):
        chunk = files[i * files_per_task : (i + 1) * files_per_task]
        write_text_atomic(work / f"files_{i:04d}.txt", "".join(f + "\n" for f in chunk))
    py = shlex.quote(sys.executable)
    root = shlex.quote(str(Path(__file__).resolve().parents[2]))
    script = f"""#!/bin/bash
#SBATCH --job-name=llmh-analyze
#SBATCH --array=0-{n_tasks - 1}
#SBATCH --cpus-per-task={n_cpus}
#SBATCH --output={shlex.quote(str(work))}/task_%a.log
# Each task reads its chunk of headers into a partial cache; then run:
#   {sys.executable} -m engine.scan.slurm merge {out} {shlex.quote(os.fspath(input_path))} {" ".join(extra_args or [])}
cd {root}
exec {py} -m engine.scan.slurm task {shlex.quote(str(out))} "$SLURM_ARRAY_TASK_ID"
"""
    path = work / SCRIPT
    write_text_atomic(path, script, mode=0o755)
    return path


def run_task(out_dir: str, task: int) -> None:
    work = Path(out_dir) / "slurm"
    lst = (work / f"files_{task:04d}.txt").read_text().splitlines()
    items = []
    for p in lst:
        try:
            st = os.stat(p)
            items.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            continue
    # written under a temporary name and renamed when complete: a part exists only when its
    # task finished, which is how submit_and_wait tells failed tasks
    final = work / f"part_{task:04d}.sqlite"
    tmp = work / f"part_{task:04d}.sqlite.tmp"
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    part = FactsCache(tmp)
    part.put_many(read_chunk(items))
    part.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    part.db.execute("PRAGMA journal_mode=DELETE")
    part.close()
    os.replace(tmp, final)


def merge_parts(out_dir: str, input_root: str | None = None) -> int:
    """Fold every partial cache into OUT's cache; return how many parts were merged.
    ``input_root``: the input the parts were read from (a cache of another input is emptied
    first, see :meth:`FactsCache.use_input`)."""
    work = Path(out_dir) / "slurm"
    cache = FactsCache(Path(out_dir) / CACHE_NAME)
    n = 0
    try:
        if input_root:
            cache.use_input(os.path.realpath(input_root))
        for part in sorted(work.glob("part_[0-9]*.sqlite")):
            cache.db.execute("ATTACH DATABASE ? AS part", (str(part),))
            cache.db.execute("INSERT OR IGNORE INTO templates SELECT * FROM part.templates")
            cache.db.execute("INSERT OR REPLACE INTO files SELECT * FROM part.files")
            cache.db.commit()
            cache.db.execute("DETACH DATABASE part")
            n += 1
    finally:
        cache.close()
    return n


def n_tasks(out_dir: str) -> int:
    return len(list((Path(out_dir) / "slurm").glob("files_*.txt")))


def check_parts(out_dir: str) -> None:
    """Raise :class:`UserError` naming every array task that left no part (it failed)."""
    work = Path(out_dir) / "slurm"
    missing = [i for i in range(n_tasks(out_dir)) if not (work / f"part_{i:04d}.sqlite").exists()]
    if missing:
        log = work / f"task_{missing[0]}.log"
        tail = log.read_text(errors="replace")[-800:] if log.exists() else "(no log)"
        raise UserError(
            f"{len(missing)} Slurm array task(s) did not finish: {missing[:10]}; "
            f"log of task {missing[0]}:\n{tail}"
        )


def submit_and_wait(script: Path, poll_s: float = 2.0, timeout_s: float = 86400) -> str:
    """``sbatch --parsable`` the script, wait until the array left the queue; return the job id."""
    try:
        out = subprocess.run(
            ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise UserError("sbatch not found: is Slurm installed on this machine?") from None
    except subprocess.CalledProcessError as exc:
        raise UserError(f"sbatch failed: {exc.stderr.strip()}") from None
    job = out.stdout.strip().split(";")[0]
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        q = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        if q.returncode == 0 and not q.stdout.strip():
            return job
        time.sleep(poll_s)
    raise UserError(f"Slurm job {job} did not finish within {timeout_s:.0f} s")


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "task":
        run_task(argv[1], int(argv[2]))
        return 0
    if len(argv) >= 3 and argv[0] == "merge":
        n = merge_parts(argv[1], argv[2])
        cmd = " ".join(
            shlex.quote(a) for a in ["llm-heuristics", "analyze", argv[2], argv[1], *argv[3:]]
        )
        print(f"merged {n} part(s) into the cache of {argv[1]}; now run: {cmd}", file=sys.stderr)
        return 0
    print(
        "usage: python -m engine.scan.slurm task OUT I | merge OUT INPUT [analyze options]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
