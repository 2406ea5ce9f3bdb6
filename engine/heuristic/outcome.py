"""What a conversion produced: per subject/session results and the validator's verdict.

Plain data shared by :mod:`engine.heuristic.convert` (which fills it) and
:mod:`engine.heuristic.report` (which writes it for people).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.heuristic.sidecars import SidecarOutcome


@dataclass
class SeriesFailure:
    """Why one series did not convert, and what to do about it."""

    cause: str
    fix: str
    log: str = ""  # the tail of heudiconv's output for this series


@dataclass
class ConversionResult:
    subject: str
    session: str
    bids_dir: Path
    written: list[str] = field(default_factory=list)  # relpaths of NIfTI files
    expected: dict[str, str] = field(default_factory=dict)  # series_id -> relpath stem
    missing: list[str] = field(default_factory=list)  # expected stems with no file
    heudiconv_rc: int = 0
    heudiconv_log: str = ""
    intended_for: dict[str, list[str]] = field(default_factory=dict)
    # files of one series that dcm2niix split (B0 maps, multi-part field maps, ASL + M0),
    # renamed by their sidecars (engine.heuristic.multifile), and those BIDS has no name for
    renamed: list[tuple[str, str]] = field(default_factory=list)
    set_aside: dict[str, str] = field(default_factory=dict)  # relpath -> why (beside the dataset)
    sidecars: SidecarOutcome | None = None  # what was filled in, what was left out and why
    # per series (series_id): every file the mapping says it writes (the dry run lists them),
    # what it wrote, why it is not converted, header values repaired in the staged copy, and
    # the series heudiconv/dcm2niix failed on (the rest of the session is still converted)
    files: dict[str, list[str]] = field(default_factory=dict)
    converted: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    repaired: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, SeriesFailure] = field(default_factory=dict)

    @property
    def left_out(self) -> list[str]:
        return [f.relpath for f in self.sidecars.left_out] if self.sidecars else []

    @property
    def ok(self) -> bool:
        return self.heudiconv_rc == 0 and not self.missing and not self.left_out and not self.failed


@dataclass
class ValidatorResult:
    available: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    raw: str = ""

    @property
    def verdict(self) -> str:
        if not self.available:
            return "bids-validator not installed (npm install -g bids-validator@1.15)"
        return f"bids-validator: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
