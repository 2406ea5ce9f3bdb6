"""Chest X-ray report drafting through the API: draft, A/B (image only vs image + EHR).

Types first (the reading room and the CLI build on them); the functions call the step package
``engine.report.draft``. Tokens stream as ``delta`` notifications with the extras ``image`` (the
path), ``phase`` (``reasoning`` for the ten steps of cot mode, ``report``, ``labels`` for the JSON
turn) and ``attempt`` (2 on the retry); progress as ``progress`` (``image`` in the extras).
Records are appended to ``output`` as each image is done, so a cancelled run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import UserError

# The four headers of a drafted report, exactly and in this order.
HEADERS = ("Technique", "View", "Findings", "Impression")


@dataclass
class DraftParams:
    images: list[str] = field(default_factory=list)  # files or folders (DICOM CR/DX, PNG, JPEG)
    ehr: str = ""  # JSON file of patient context (age, sex, vitals, history, indication)
    mode: str = "report"  # report | cot | impression | impression_icd
    labels: bool = False  # CheXpert 14 as schema-constrained JSON, cross-checked
    icd: bool = False  # ICD-10-CM codes (needs ehr)
    backend: str = ""  # echo | llama-cpp | transformers | ollama | openai ("" : configured)
    model: str = ""
    host: str = ""  # Ollama host
    base_url: str = ""  # OpenAI-compatible base URL
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 0  # 0: the template's default
    output: str = ""  # JSONL, one record per image; resumable (done images are skipped)
    config: str = ""  # TOML overriding prompt templates
    icd_codes: str = ""  # optional list of valid ICD-10-CM codes (one per line)
    stream: bool = True  # token deltas (the CLI prints them for a single image)
    redo: bool = False  # draft images already in OUTPUT again (the newer record wins)
    quantization: bool | None = None  # transformers: 4-bit NF4 (None: the configured)
    isolate: bool | None = None  # local models in a worker process (None: per backend)


@dataclass
class DraftRecord:
    image: str  # path as given
    image_sha256: str = ""
    sections: dict[str, str] = field(default_factory=dict)  # HEADERS -> text
    steps: list[str] = field(default_factory=list)  # the ten reasoning steps (cot)
    labels: dict[str, int | None] = field(default_factory=dict)  # model's CheXpert 14
    labeler: dict[str, int | None] = field(default_factory=dict)  # labeler on the impression
    disagreements: list[str] = field(default_factory=list)  # labels where the two differ
    icd: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # what failed the checks, in words
    text: str = ""  # the model's raw reply (after the retry, if any)
    retries: int = 0
    model: str = ""
    backend: str = ""
    mode: str = ""
    prompt_hash: str = ""
    seed: int = 0
    ehr_used: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # render, generate, labels (s)
    prompt_version: str = ""  # the template's version ("...+config" when overridden)
    labels_text: str = ""  # the model's raw JSON labels reply


@dataclass
class DraftResult:
    records: list[DraftRecord] = field(default_factory=list)
    output: str = ""
    skipped: int = 0  # already in OUTPUT (resumed)
    resumed: list[DraftRecord] = field(default_factory=list)  # their records, from OUTPUT
    flagged: int = 0
    message: str = ""


@dataclass
class ABParams:
    images: list[str] = field(default_factory=list)
    ehr: str = ""  # patient context per image (required: arm B uses it)
    refs: str = ""  # reference reports (CSV/JSONL with id = image name or stem)
    output: str = ""  # folder: image_only.jsonl, with_ehr.jsonl, ab_summary.json, ab_cases.jsonl
    mode: str = "impression"  # arm A's mode; arm B: impression_icd for impression, else the same
    backend: str = ""
    model: str = ""
    host: str = ""
    base_url: str = ""
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 0
    config: str = ""
    metrics: list[str] = field(default_factory=list)  # [] : bleu, rouge_l, meteor, bertscore,
    # label_f1
    n_boot: int = 2000
    level: float = 0.95
    stream: bool = False
    quantization: bool | None = None
    isolate: bool | None = None


@dataclass
class MetricDelta:
    metric: str
    image_only: float
    with_ehr: float
    delta: float  # with_ehr - image_only
    low: float  # paired bootstrap interval of the delta
    high: float


@dataclass
class ABResult:
    table: list[MetricDelta] = field(default_factory=list)
    n: int = 0  # cases scored
    n_boot: int = 0
    level: float = 0.95
    output: str = ""
    summary_path: str = ""
    cases_path: str = ""
    image_only_path: str = ""
    with_ehr_path: str = ""
    no_reference: list[str] = field(default_factory=list)  # images without a reference
    flagged_image_only: int = 0
    flagged_with_ehr: int = 0
    text: str = ""  # the delta table as printed
    message: str = ""


def _record(r: dict[str, Any]) -> DraftRecord:
    names = {f.name for f in fields(DraftRecord)}
    return DraftRecord(**{k: v for k, v in r.items() if k in names})


class _Run:
    """The parts of one drafting run that outlive an image: templates, EHR, backend."""

    def __init__(self, p: DraftParams | ABParams, mode: str, labels: bool, icd: bool) -> None:
        from engine.report.draft.parse import read_code_list
        from engine.report.draft.prompts import load_templates
        from engine.report.draft.run import DraftSettings

        self.p = p
        self.settings = DraftSettings(
            mode=mode,
            labels=labels,
            icd=icd,
            seed=p.seed,
            temperature=p.temperature,
            max_tokens=p.max_tokens,
            stream=p.stream,
            icd_codes=frozenset(read_code_list(p.icd_codes))
            if getattr(p, "icd_codes", "")
            else None,
        )
        self.template = load_templates(p.config or None)[mode]
        self.backend: Any = None
        self.labeler: Any = None
        self.labeler_note = ""

    def drafter(self) -> Any:
        from engine import context
        from engine.errors import NotAvailable
        from engine.report.draft.run import Drafter, labeler_function, make_backend

        if self.backend is None:
            p = self.p
            self.backend = make_backend(
                p.backend,
                p.model,
                host=p.host,
                base_url=p.base_url,
                quantization=p.quantization,
                isolate=p.isolate,
            )
        if self.settings.wants_labels and self.labeler is None and not self.labeler_note:
            try:
                self.labeler = labeler_function()
            except NotAvailable as exc:
                self.labeler_note = str(exc)
                context.log(f"warning: labels are not cross-checked: {exc}")
        return Drafter(self.backend, self.template, self.settings, self.labeler, self.labeler_note)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.unload()


def _check_patients(images: list[str], patients: Any, why: str) -> None:
    missing = [i for i in images if patients.for_image(i) is None]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise UserError(f"{why}: the EHR file has no patient for {len(missing)} image(s): {shown}")


def report_draft(p: DraftParams) -> DraftResult:
    """Draft chest X-ray reports (sections, steps, CheXpert labels, ICD) into a JSONL file."""
    from engine.errors import Cancelled
    from engine.report.draft.ehr import read_ehr
    from engine.report.draft.images import collect
    from engine.report.draft.run import draft_images

    images = collect(p.images)
    patients = read_ehr(p.ehr) if p.ehr else None  # identifiers refused before any model call
    run = _Run(p, p.mode, p.labels, p.icd)
    if run.settings.wants_icd:
        if patients is None:
            raise UserError("ICD codes need the patient data: give --ehr FILE")
        _check_patients(images, patients, "ICD codes")
    try:
        records, resumed, cancelled = draft_images(
            images, run.drafter, output=p.output, patients=patients, redo=p.redo
        )
    finally:
        run.close()
    out = [_record(r) for r in records]
    flagged = sum(1 for r in out if r.flags)
    skipped = len(resumed)
    msg = f"{len(out)} drafted, {skipped} already done, {flagged} flagged"
    if p.output:
        msg += f" -> {p.output}"
    if cancelled:
        raise Cancelled(f"cancelled: {msg}; run again to resume")
    return DraftResult(
        records=out,
        output=p.output,
        skipped=skipped,
        resumed=[_record(r) for r in resumed],
        flagged=flagged,
        message=msg,
    )


def report_ab(p: ABParams) -> ABResult:
    """Image only vs image + EHR with the same model and seed: metric deltas with paired
    bootstrap intervals, per-case diffs saved."""
    from pathlib import Path

    from engine import context
    from engine.errors import Cancelled
    from engine.report.draft import compare
    from engine.report.draft.ehr import read_ehr
    from engine.report.draft.images import collect, sha256_file
    from engine.report.draft.jsonl import image_key, read_records
    from engine.report.draft.run import draft_images

    if not p.ehr or not p.refs:
        raise UserError("report ab needs --ehr FILE (arm B) and --ref REFS (the references)")
    found = collect(p.images)
    patients = read_ehr(p.ehr)  # identifiers refused before any model call
    refs = compare.match_refs(found, p.refs)
    images = [i for i in found if i in refs]  # only cases that can be scored are drafted
    _check_patients(images, patients, "the image + EHR arm")
    metrics = tuple(p.metrics) or compare.DEFAULT_METRICS
    mode_b = "impression_icd" if p.mode == "impression" else p.mode
    out_dir = Path(p.output or "report_ab")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; -o names the folder of the A/B results")
    paths = {"a": out_dir / "image_only.jsonl", "b": out_dir / "with_ehr.jsonl"}
    run_a = _Run(p, p.mode, False, False)
    run_b = _Run(p, mode_b, False, False)
    try:
        context.progress(0.0, "arm A: image only")
        _, _, cancelled = draft_images(images, run_a.drafter, output=str(paths["a"]))
        if cancelled:
            raise Cancelled("cancelled during the image-only arm; run again to resume")
        run_b.backend = run_a.backend  # the same loaded model for both arms
        context.progress(0.0, "arm B: image + EHR")
        _, _, cancelled = draft_images(
            images, run_b.drafter, output=str(paths["b"]), patients=patients
        )
        if cancelled:
            raise Cancelled("cancelled during the image + EHR arm; run again to resume")
    finally:
        run_a.close()
        if run_b.backend is not run_a.backend:
            run_b.close()
    latest = {}
    for arm, path in paths.items():
        latest[arm] = {
            image_key(r["image"], r.get("image_sha256", "")): r for r in read_records(path)
        }
    ids, pa, pb, rs, shown = [], [], [], [], []
    flagged = {"a": 0, "b": 0}
    for img in images:
        key = image_key(img, sha256_file(img))
        ra, rb = latest["a"].get(key), latest["b"].get(key)
        if ra is None or rb is None:
            continue
        flagged["a"] += bool(ra.get("flags"))
        flagged["b"] += bool(rb.get("flags"))
        ids.append(Path(img).stem)
        shown.append(img)
        pa.append(compare.scored_text(ra))
        pb.append(compare.scored_text(rb))
        rs.append(refs[img])
    context.progress(None, f"scoring {len(ids)} case(s): {', '.join(metrics)}")
    table, cases = compare.score(
        ids, pa, pb, rs, metrics=metrics, n_boot=p.n_boot, seed=p.seed, level=p.level
    )
    for c, img in zip(cases, shown, strict=True):
        c["image"] = img
    meta = {
        "images": len(found),
        "n": len(ids),
        "mode_image_only": p.mode,
        "mode_with_ehr": mode_b,
        "backend": p.backend,
        "model": p.model,
        "seed": p.seed,
        "n_boot": p.n_boot,
        "level": p.level,
    }
    summary, cases_path = compare.save(out_dir, table, cases, meta)
    from engine.report.draft.ab import format_table

    no_ref = [i for i in found if i not in refs]
    return ABResult(
        table=[MetricDelta(r.metric, r.a, r.b, r.delta, r.low, r.high) for r in table],
        n=len(ids),
        n_boot=p.n_boot,
        level=p.level,
        output=str(out_dir),
        summary_path=str(summary),
        cases_path=str(cases_path),
        image_only_path=str(paths["a"]),
        with_ehr_path=str(paths["b"]),
        no_reference=no_ref,
        flagged_image_only=flagged["a"],
        flagged_with_ehr=flagged["b"],
        text=format_table(table),
        message=f"{len(ids)} case(s) compared -> {out_dir}",
    )
