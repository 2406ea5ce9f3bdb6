"""Parameters and results of the engine API: plain dataclasses, JSON through :mod:`engine.serial`.

Kept free of step code so that the TUI (which talks to the engine only over RPC) can import
them: what the client gets back from the engine is an instance of one of these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.model import UNSURE_THRESHOLD, Decision, Group, Mapping

PROTOCOL_VERSION = 4  # bumped when a method's parameters or result shape change


@dataclass
class AnalyzeParams:
    input: str
    out_dir: str
    n_cpus: int | None = None
    subject_pattern: str | None = None
    session_pattern: str | None = None
    slurm: bool = False
    submit: bool = False
    files_per_task: int = 2000
    progress: bool = True
    trust_folder_times: bool = False
    follow_external_links: bool = False  # follow symlinks that lead out of the input
    # "neutral": sub-01, sub-02... (PatientID -> label only in OUT/private/subject_map.tsv);
    # "patientid": the PatientID made alphanumeric (ignored with subject_pattern)
    subject_labels: str = "neutral"


@dataclass
class AnalyzeResult:
    out_dir: str
    n_files: int = 0
    n_dicom: int = 0
    n_series: int = 0
    n_subjects: int = 0
    n_problems: int = 0
    n_read: int = 0
    seconds: float = 0.0
    reused_folders: bool = False
    imported: str = ""  # "" or what heudiconv dicominfo was imported from
    slurm_script: str = ""  # with --slurm and no --submit: the job script written
    message: str = ""  # one line for a person
    warnings: list[str] = field(default_factory=list)  # say these loudly (bad journal lines...)


@dataclass
class GroupResult:
    out_dir: str
    n_series: int
    n_groups: int
    report: str  # path of grouping_report.txt
    message: str = ""
    warnings: list[str] = field(default_factory=list)  # say these loudly (bad journal lines...)


@dataclass
class MapParams:
    out_dir: str
    backend: str | None = None  # None: the configured LLM when a model is set, else "rules"
    model: str | None = None
    quantization: bool | None = None
    context: str | None = None
    llm_all: bool = False
    groups: list[str] | None = None  # ask the LLM about these groups only
    settings: dict[str, str | int | float | bool] = field(default_factory=dict)  # e.g. n_ctx


@dataclass
class MapResult:
    out_dir: str
    backend: str
    n_groups: int
    n_series: int
    n_converted: int
    decided: list[str] = field(default_factory=list)  # groups the person's decisions settle
    remapped: list[str] = field(default_factory=list)  # with ``groups``: those asked again
    report: str = ""  # path of mapping_report.txt
    message: str = ""
    warnings: list[str] = field(default_factory=list)  # say these loudly (bad journal lines...)


@dataclass
class GenerateParams:
    out_dir: str
    output: str | None = None  # default OUT/heuristic.py
    context: str = ""
    include_derived: bool = False
    exclude_sbref: bool = False
    exclude_phase: bool = False
    exclude_datatypes: list[str] = field(default_factory=list)


@dataclass
class ValidateResult:
    ok: bool
    counts: dict[str, int] = field(default_factory=dict)
    diff: str = ""  # the per-series differences, as a person reads them
    errors: list[str] = field(default_factory=list)
    heuristic: str = ""
    warnings: list[str] = field(default_factory=list)  # say these loudly (bad journal lines...)


@dataclass
class GenerateResult:
    path: str
    ok: bool
    report: str  # the generation report text (with the validation diff)
    validation: ValidateResult | None = None
    warnings: list[str] = field(default_factory=list)  # say these loudly (bad journal lines...)


@dataclass
class ConvertParams:
    out_dir: str
    subject: str
    session: str | None = None
    bids_dir: str | None = None
    heuristic: str | None = None
    dicom_dir: str | None = None
    dry_run: bool = False
    validator: bool = True
    sidecar_metadata: str | None = None
    keep_identifiers: bool = False  # keep institution/operator/... fields in sidecars, scans.tsv


@dataclass
class ConvertResult:
    ok: bool
    report: str  # text
    bids_dir: str
    dry_run: bool = False
    written: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # subject/session runs that failed
    verdict: str = ""  # the validator's one-line verdict ("" when not run)
    warnings: list[str] = field(default_factory=list)  # say these loudly (bad journal lines...)
    # per series ("sub-X[/ses-Y] SERIES_ID: ..."): failed with cause and fix (the rest of the
    # session still converts), header values repaired in the staged copy, skipped by the mapping
    series_failed: list[str] = field(default_factory=list)
    series_repaired: list[str] = field(default_factory=list)
    series_skipped: list[str] = field(default_factory=list)
    converted_series: int = 0


@dataclass
class DecideParams:
    out_dir: str
    group_id: str
    action: str  # accept | edit | skip | unskip
    name: str = ""  # "func/task-rest_bold" for edit (or accept/unskip with a name)
    skip_reason: str = ""
    note: str = ""
    refresh: bool = True  # rewrite the effective-mapping files now (the TUI leaves it to
    # the next map/generate: on 10k series that costs seconds per decision)


@dataclass
class DecideItem:
    """One decision of a bulk review (``DecideParams`` without the folder)."""

    group_id: str
    action: str  # accept | edit | skip | unskip
    name: str = ""
    skip_reason: str = ""
    note: str = ""


@dataclass
class DecideManyParams:
    """Many decisions in one action: ONE journal line, one history step, one undo."""

    out_dir: str
    decisions: list[DecideItem] = field(default_factory=list)
    refresh: bool = True


@dataclass
class ReviewView:
    """The replayed journal: decisions in effect, history, what undo/redo would do."""

    decisions: dict[str, Decision] = field(default_factory=dict)
    history: list[Decision] = field(default_factory=list)
    redo: list[Decision] = field(default_factory=list)
    can_undo: bool = False
    can_redo: bool = False
    last_seq: int = 0
    changed: Decision | None = None  # what the call that returned this did
    changed_count: int = 0  # how many decisions it did (a bulk step: more than one)
    warnings: list[str] = field(default_factory=list)  # say these loudly (bad journal lines...)
    # the views of the groups this call changed (and of the field maps): patch, don't reload
    groups: list[GroupView] = field(default_factory=list)


@dataclass
class SeriesRow:
    """What the DICOM tree shows of one series."""

    key: str
    subject: str
    session: str
    series_id: str
    description: str
    protocol: str
    n_files: int
    dim3: int
    dim4: int
    group_id: str = ""
    flags: list[str] = field(default_factory=list)  # aborted / derived / drift


@dataclass
class GroupView:
    """One protocol group as a reviewer sees it: proposal, effective mapping, decision."""

    group: Group
    proposal: Mapping
    mapping: Mapping
    decision: Decision | None = None
    unsure: bool = False
    image_says: str = ""  # the image classifier's second opinion (classify second-opinion)
    image_probs: dict[str, float] = field(default_factory=dict)

    @property
    def group_id(self) -> str:
        return self.group.group_id


@dataclass
class WorkspaceView:
    out_dir: str
    series: list[SeriesRow] = field(default_factory=list)
    groups: list[GroupView] = field(default_factory=list)
    review: ReviewView = field(default_factory=ReviewView)
    unsure_threshold: float = UNSURE_THRESHOLD  # the engine sends the configured value
    missing: list[str] = field(default_factory=list)  # steps not run yet, as messages
    has_heuristic: bool = False
    dicom_inputs: list[str] = field(default_factory=list)


@dataclass
class Preview:
    png_base64: str
    width: int = 0
    height: int = 0
    info: dict[str, str] = field(default_factory=dict)


@dataclass
class TextFile:
    name: str
    path: str
    text: str


# What each API method returns, for clients that must not import the step code (the TUI):
# ``EngineClient.api(method, params)`` rebuilds these. A test checks it against the functions.
RESULTS: dict[str, object] = {
    "analyze": AnalyzeResult,
    "group": GroupResult,
    "map": MapResult,
    "generate": GenerateResult,
    "validate": ValidateResult,
    "convert": ConvertResult,
    "review.remap": MapResult,
    "decide": ReviewView,
    "decide_many": ReviewView,
    "undo": ReviewView,
    "redo": ReviewView,
    "decisions": ReviewView,
    "review.check_name": list[str],
    "review.name_candidates": list[str],
    "workspace.view": WorkspaceView,
    "workspace.text": TextFile,
    "heuristic.save": TextFile,
    "preview": Preview,
    "image.render": Preview,
    "reading.images": list[str],
    "reading.ehr": TextFile,
    "reading.save": TextFile,
    "reading.saved": TextFile,
}


def _more_results() -> None:
    """Results of the classifier and training methods (their types live beside them)."""
    from engine.api.classify import (
        ClassifyEvaluateResult,
        ClassifyPredictResult,
        ClassifyTrainResult,
        ConfusionResult,
        SecondOpinionResult,
    )
    from engine.api.report_draft import ABResult, DraftResult
    from engine.api.report_labels import EvaluateResult, LabelResult
    from engine.api.report_style import (
        ImpressionEvalResult,
        ImpressionResult,
        StyleBuildResult,
        StyleCorpusResult,
    )
    from engine.api.train import DataSummaryResult, ExportResult, TrainResult

    RESULTS.update(
        {
            "classify.train": ClassifyTrainResult,
            "classify.evaluate": ClassifyEvaluateResult,
            "classify.predict": ClassifyPredictResult,
            "classify.second_opinion": SecondOpinionResult,
            "classify.confusion": ConfusionResult,
            "train.sft": TrainResult,
            "train.dpo": TrainResult,
            "train.data": DataSummaryResult,
            "train.check": DataSummaryResult,
            "train.export": ExportResult,
            "report.draft": DraftResult,
            "report.ab": ABResult,
            "report.style_build": StyleBuildResult,
            "report.impression": ImpressionResult,
            "report.impression_eval": ImpressionEvalResult,
            "report.style_list": list[str],
            "report.style_corpus": StyleCorpusResult,
            "report.label": LabelResult,
            "report.evaluate": EvaluateResult,
        }
    )


_more_results()
