"""Every file of one output folder (``OUT``): names defined once, typed reads and writes.

One encoding for every table: tab-separated with csv quoting (tabs, newlines and quotes in a
cell survive), list and dict cells in JSON (``;``, ``|`` and ``,`` inside a value survive).
Steps read and write OUT only through :class:`Workspace`; what the pipeline *means* by the
current mapping (proposal + the person's decisions) is :func:`engine.mapping.effective`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.atomic import read_tsv, write_text_atomic, write_tsv_atomic
from engine.errors import InvalidParams, NotFound, UserError
from engine.model import (
    ASSIGNMENT_COLUMNS,
    GROUP_COLUMNS,
    MAPPING_COLUMNS,
    SERIES_COLUMNS,
    Group,
    Mapping,
    SeriesAssignment,
    SeriesInfo,
)

SERIES_TSV = "aggregated_dicominfo.tsv"
ANALYZE_ERRORS_TSV = "analyze_errors.tsv"
ANALYZE_INPUT_JSON = "analyze_input.json"  # {"inputs": ["/abs/path", ...]}: where the DICOM is
GROUPS_TSV = "aggregated_dicominfo_groups.tsv"
GROUPING_REPORT = "grouping_report.txt"
PROPOSALS_TSV = "mapping_proposals.tsv"  # what rules/LLM proposed; decisions apply to it
LEGACY_PROPOSED_TSV = "aggregated_dicominfo_mapped.proposed.tsv"  # read only (older OUT)
MAPPED_TSV = "aggregated_dicominfo_mapped.tsv"  # the effective mapping, for people and tools
ASSIGNMENTS_TSV = "series_assignments.tsv"
MAPPING_REPORT = "mapping_report.txt"
DECISIONS_FILE = "user_decisions.jsonl"
HEURISTIC_FILE = "heuristic.py"
HEURISTIC_REPORT = "heuristic_report.txt"
CONVERSION_REPORT = "conversion_report.txt"
CONVERSION_REPORTS_DIR = "conversion_reports"
BIDS_DIR = "bids"

# The mapped table keeps the columns a person reads first (label, example description).
MAPPED_COLUMNS: tuple[str, ...] = (
    "group_id",
    "label",
    "n_series",
    "example_description",
    *MAPPING_COLUMNS[1:],
)
REPORTS: dict[str, str] = {
    "grouping": GROUPING_REPORT,
    "mapping": MAPPING_REPORT,
    "heuristic": HEURISTIC_REPORT,
    "conversion": CONVERSION_REPORT,
}


class Workspace:
    """The output folder of one study. Reads raise :class:`NotFound` naming the step to run."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def path(self, name: str) -> Path:
        return self.root / name

    def require(self) -> Workspace:
        """This workspace, if its folder exists."""
        if not self.root.is_dir():
            raise UserError(f"{self.root} is not a folder")
        return self

    def inside(self, name: str) -> Path:
        """``name`` resolved inside OUT; :class:`InvalidParams` (a :class:`UserError`) for
        anything that leaves it."""
        root = self.root.resolve()
        p = (root / name).resolve()
        if p != root and root not in p.parents:
            raise InvalidParams(f"{name!r} is outside {root}")
        return p

    # --- series ------------------------------------------------------------------------
    def has_series(self) -> bool:
        return self.path(SERIES_TSV).is_file()

    def read_series(self) -> list[SeriesInfo]:
        p = self.path(SERIES_TSV)
        if not p.is_file():
            raise NotFound(
                f"{p} not found: run `llm-heuristics analyze DICOM_DIR {self.root}` first"
            )
        return [SeriesInfo.from_row(r) for r in read_tsv(p)]

    def write_series(self, series: list[SeriesInfo]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return write_tsv_atomic(self.path(SERIES_TSV), SERIES_COLUMNS, (s.to_row() for s in series))

    def write_analyze_errors(self, errors: list[tuple[str, str]]) -> Path:
        return write_tsv_atomic(
            self.path(ANALYZE_ERRORS_TSV),
            ("path", "reason"),
            ({"path": p, "reason": r} for p, r in errors),
        )

    def write_analyze_input(self, inputs: list[str | Path]) -> Path:
        doc = {"inputs": [str(Path(p).resolve()) for p in inputs]}
        return write_text_atomic(self.path(ANALYZE_INPUT_JSON), json.dumps(doc, indent=2) + "\n")

    def analyze_inputs(self) -> list[Path]:
        """Where ``analyze`` read the DICOM (empty when it did not record it)."""
        p = self.path(ANALYZE_INPUT_JSON)
        if not p.is_file():
            return []
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            return [Path(x) for x in doc.get("inputs", [])]
        except (ValueError, AttributeError, TypeError):
            return []

    # --- groups ------------------------------------------------------------------------
    def has_groups(self) -> bool:
        return self.path(GROUPS_TSV).is_file()

    def read_groups(self) -> list[Group]:
        p = self.path(GROUPS_TSV)
        if not p.is_file():
            raise NotFound(f"{p} not found: run `llm-heuristics group {self.root}` first")
        return [Group.from_row(r) for r in read_tsv(p)]

    def write_groups(self, groups: list[Group], report: str) -> None:
        write_tsv_atomic(self.path(GROUPS_TSV), GROUP_COLUMNS, (g.to_row() for g in groups))
        write_text_atomic(self.path(GROUPING_REPORT), report)

    # --- mappings ----------------------------------------------------------------------
    def proposals_path(self) -> Path | None:
        """The rules/LLM proposal: ``mapping_proposals.tsv``, else what an older ``map`` left."""
        for name in (PROPOSALS_TSV, LEGACY_PROPOSED_TSV, MAPPED_TSV):
            if self.path(name).is_file():
                return self.path(name)
        return None

    def has_proposals(self) -> bool:
        return self.proposals_path() is not None

    def read_proposals(self) -> list[Mapping]:
        p = self.proposals_path()
        if p is None:
            raise NotFound(
                f"{self.path(PROPOSALS_TSV)} not found: run `llm-heuristics map {self.root}` first"
            )
        return [Mapping.from_row(r) for r in read_tsv(p)]

    def write_proposals(self, mappings: list[Mapping]) -> Path:
        return write_tsv_atomic(
            self.path(PROPOSALS_TSV), MAPPING_COLUMNS, (m.to_row() for m in mappings)
        )

    def write_effective(
        self,
        groups: list[Group],
        mappings: list[Mapping],
        assignments: list[SeriesAssignment],
        series: list[SeriesInfo],
        report: str,
    ) -> None:
        """The effective mapping for people and other tools: mapped TSV, assignments, report."""
        by_key = {s.key: s for s in series}
        by_gid = {m.group_id: m for m in mappings}
        rows = []
        for g in groups:
            m = by_gid.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped")
            ex = by_key.get(g.series_keys[0]) if g.series_keys else None
            rows.append(
                {
                    "label": g.label,
                    "n_series": str(len(g.series_keys)),
                    "example_description": ex.series_description if ex else "",
                    **m.to_row(),
                }
            )
        write_tsv_atomic(self.path(MAPPED_TSV), MAPPED_COLUMNS, rows)
        write_tsv_atomic(
            self.path(ASSIGNMENTS_TSV), ASSIGNMENT_COLUMNS, (a.to_row() for a in assignments)
        )
        write_text_atomic(self.path(MAPPING_REPORT), report)

    def read_mapped(self) -> list[Mapping]:
        """The effective mapping as last written (for tools; the engine recomputes it)."""
        p = self.path(MAPPED_TSV)
        if not p.is_file():
            raise NotFound(f"{p} not found: run `llm-heuristics map {self.root}` first")
        return [Mapping.from_row(r) for r in read_tsv(p)]

    def read_assignments(self) -> list[SeriesAssignment]:
        p = self.path(ASSIGNMENTS_TSV)
        if not p.is_file():
            raise NotFound(f"{p} not found: run `llm-heuristics map {self.root}` first")
        return [SeriesAssignment.from_row(r) for r in read_tsv(p)]

    # --- text files ----------------------------------------------------------------------
    def read_text(self, name: str) -> str:
        """A report or other text file inside OUT (``grouping``, ``mapping``... or a name)."""
        p = self.inside(REPORTS.get(name, name))
        if not p.is_file():
            raise NotFound(f"{p} not found")
        return p.read_text(encoding="utf-8", errors="replace")

    def write_text(self, name: str, text: str) -> Path:
        return write_text_atomic(self.inside(name), text)


# Module-level shorthands used by steps that only need one file.


def read_series(out_dir_or_file: str | Path) -> list[SeriesInfo]:
    """``aggregated_dicominfo.tsv`` from an OUT folder, or any dicominfo TSV file."""
    p = Path(out_dir_or_file)
    if p.is_dir():
        return Workspace(p).read_series()
    if not p.exists():
        raise NotFound(f"{p} not found: run `llm-heuristics analyze DICOM_DIR {p.parent}` first")
    return [SeriesInfo.from_row(r) for r in read_tsv(p)]


def write_series(out_dir: str | Path, series: list[SeriesInfo]) -> Path:
    return Workspace(out_dir).write_series(series)


def write_analyze_input(out_dir: str | Path, inputs: list[str | Path]) -> Path:
    return Workspace(out_dir).write_analyze_input(inputs)
