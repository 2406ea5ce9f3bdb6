"""The files of one output folder (``OUT``) and their names, shared by every step."""

from __future__ import annotations

import json
from pathlib import Path

from engine.atomic import read_tsv, write_text_atomic, write_tsv_atomic
from engine.model import SERIES_COLUMNS, SeriesInfo

SERIES_TSV = "aggregated_dicominfo.tsv"
GROUPS_TSV = "aggregated_dicominfo_groups.tsv"
GROUPING_REPORT = "grouping_report.txt"
MAPPED_TSV = "aggregated_dicominfo_mapped.tsv"
MAPPING_REPORT = "mapping_report.txt"
ANALYZE_ERRORS_TSV = "analyze_errors.tsv"
ANALYZE_INPUT_JSON = "analyze_input.json"  # {"inputs": ["/abs/path", ...]}: where the DICOM is


def write_series(out_dir: str | Path, series: list[SeriesInfo]) -> Path:
    """Write ``aggregated_dicominfo.tsv`` (heudiconv columns first, then ours)."""
    return write_tsv_atomic(
        Path(out_dir) / SERIES_TSV, SERIES_COLUMNS, (s.to_row() for s in series)
    )


def read_series(out_dir_or_file: str | Path) -> list[SeriesInfo]:
    """Read ``aggregated_dicominfo.tsv`` from an OUT folder, or any dicominfo TSV file."""
    p = Path(out_dir_or_file)
    if p.is_dir():
        p = p / SERIES_TSV
    if not p.exists():
        raise FileNotFoundError(
            f"{p} not found: run `llm-heuristics analyze DICOM_DIR {p.parent}` first"
        )
    return [SeriesInfo.from_row(r) for r in read_tsv(p)]


def write_analyze_input(out_dir: str | Path, inputs: list[str | Path]) -> Path:
    """Record where ``analyze`` read the DICOM, so ``convert`` finds it without being told."""
    doc = {"inputs": [str(Path(p).resolve()) for p in inputs]}
    return write_text_atomic(Path(out_dir) / ANALYZE_INPUT_JSON, json.dumps(doc, indent=2) + "\n")
