"""Drafting one radiograph after another: prompt, stream, check, retry once, label, record.

:class:`Drafter` owns one image's conversation with the model: the report turn (streamed as
``delta`` notifications with the image and the phase: ``reasoning`` until the report's first
header in cot mode, then ``report``; ``labels`` for the JSON turn), one format retry naming the
error, the JSON labels turn constrained by :func:`parse.labels_schema` (one retry on an invalid
answer), ICD checks, and the labeler run on the draft's own impression. :func:`draft_images`
walks the images, skips those already in the output file and appends each record as it is made.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import context
from engine.errors import NotAvailable, StepFailed, UserError
from engine.report.draft import parse
from engine.report.draft.ehr import PatientData, patient_text
from engine.report.draft.images import ModelImage, load_image, sha256_file
from engine.report.draft.jsonl import DraftsFile
from engine.report.draft.prompts import MODES, Template, prompt_hash
from engine.report.labels import CHEXPERT_LABELS

LABEL_MODES = ("impression", "impression_icd")  # the labels turn is part of these modes
LABEL_TOKENS = 400
_FIRST_HEADER = re.compile(r"(?i)[#*_ \t]*technique[*_ \t]*:")


@dataclass
class DraftSettings:
    """How each image is drafted (the API's parameters, minus files and backend)."""

    mode: str = "report"
    labels: bool = False
    icd: bool = False
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 0  # 0: the template's
    stream: bool = True
    icd_codes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")

    @property
    def wants_labels(self) -> bool:
        return self.labels or self.icd or self.mode in LABEL_MODES

    @property
    def wants_icd(self) -> bool:
        return self.icd or self.mode == "impression_icd"


def make_backend(
    backend: str = "",
    model: str = "",
    *,
    host: str = "",
    base_url: str = "",
    quantization: bool | None = None,
    isolate: bool | None = None,
) -> Any:
    """A loaded backend from the parameters, filled in by the user's settings."""
    from engine.config import load_settings
    from engine.llm.backend import BackendError, create_backend

    kind = backend.strip().lower()
    s = load_settings(
        {
            "backend": None if kind == "echo" else (kind or None),
            "model": model or None,
            "ollama_host": host or None,
            "openai_base_url": base_url or None,
            "quantization": quantization,
        }
    )
    kind = kind or s.backend
    if not s.model and kind != "echo":
        raise UserError("no model: give --model (a vision-language model) or set it in the config")
    try:
        b = create_backend(kind, s.model, isolate=isolate, **s.backend_options())
        b.load(lambda f, m: context.progress(None, m))
    except BackendError as exc:
        raise NotAvailable(str(exc)) from exc
    if getattr(b, "vision", True) is False:
        raise UserError(f"{s.backend} model {s.model} does not take images (no vision tower)")
    return b


class _PhaseSplit:
    """Streamed text of a cot reply as ``reasoning`` until the line that opens the report
    (``Technique:``), then ``report``. In the reasoning, text goes out a line at a time, so a
    header split over several deltas is never shown half in the fold."""

    def __init__(self, reasoning: bool) -> None:
        self.reasoning = reasoning
        self.pending = ""  # the current line of the reasoning, not yet shown

    def feed(self, delta: str, phase: str) -> list[tuple[str, str]]:
        if not self.reasoning:
            return [(delta, phase)]
        out: list[tuple[str, str]] = []
        self.pending += delta
        while True:
            if _FIRST_HEADER.match(self.pending):
                self.reasoning = False
                out.append((self.pending, phase))
                self.pending = ""
                break
            nl = self.pending.find("\n")
            if nl < 0:
                break
            out.append((self.pending[: nl + 1], "reasoning"))
            self.pending = self.pending[nl + 1 :]
        return out

    def flush(self, phase: str) -> list[tuple[str, str]]:
        rest, self.pending = self.pending, ""
        return [(rest, "reasoning")] if rest else []


class Drafter:
    """One image's report, checks and labels through ``backend``."""

    def __init__(
        self,
        backend: Any,
        template: Template,
        settings: DraftSettings,
        labeler: Callable[[str], dict[str, int | None]] | None = None,
        labeler_note: str = "",
    ) -> None:
        self.backend = backend
        self.t = template
        self.s = settings
        self.labeler = labeler
        self.labeler_note = labeler_note  # why there is no labeler (flagged on each record)

    # --- generation ---------------------------------------------------------------------
    def _generate(
        self, messages: list[Any], *, image: str, phase: str, attempt: int, schema: Any = None
    ) -> str:
        from engine.llm.backend import BackendError, GenerationOptions

        tokens = LABEL_TOKENS if schema is not None else (self.s.max_tokens or self.t.max_tokens)
        opts = GenerationOptions(
            max_tokens=tokens,
            temperature=self.s.temperature,
            seed=self.s.seed,
            json_schema=schema,
        )
        parts: list[str] = []
        split = _PhaseSplit(phase == "report" and self.s.mode == "cot")

        def emit(text: str, shown: str) -> None:
            if self.s.stream and text:
                context.delta(text, image=image, phase=shown, attempt=attempt)

        try:
            for d in self.backend.stream_chat(messages, opts, context.cancel_event()):
                parts.append(d)
                for text, shown in split.feed(d, phase):
                    emit(text, shown)
        except BackendError as exc:
            raise StepFailed(f"{image}: the model failed: {exc}") from exc
        for text, shown in split.flush(phase):
            emit(text, shown)
        return "".join(parts)

    # --- one image ----------------------------------------------------------------------
    def draft(
        self, path: str, sha: str, image: ModelImage, patient: dict[str, Any] | None
    ) -> dict[str, Any]:
        from engine.llm.backend import Message

        t0 = time.perf_counter()
        system, user = self.t.render(patient_text(patient) if patient else "")
        rec: dict[str, Any] = {
            "image": path,
            "image_sha256": sha,
            "model": getattr(self.backend, "model", ""),
            "backend": getattr(self.backend, "name", ""),
            "mode": self.s.mode,
            "prompt_hash": prompt_hash(self.t, system, user),
            "prompt_version": self.t.version,
            "seed": self.s.seed,
            "ehr_used": bool(patient),
            "retries": 0,
            "flags": [],
            "timings": {"render": round(image.render_s, 4)},
        }
        base = [Message("system", system), Message("user", user, images=[image.png])]
        text = self._generate(base, image=path, phase="report", attempt=1)
        checked = self._check(text)
        if checked.errors:
            rec["retries"] += 1
            retry = [
                *base,
                Message("assistant", text),
                Message("user", self.t.retry_text("; ".join(checked.errors))),
            ]
            text = self._generate(retry, image=path, phase="report", attempt=2)
            checked = self._check(text)
            if checked.errors:
                rec["flags"].append("headers: " + "; ".join(checked.errors))
        rec["text"] = text
        rec["sections"] = checked.sections
        rec["steps"] = []
        if self.s.mode == "cot":
            steps, errs = parse.parse_steps(checked.preamble)
            rec["steps"] = steps
            rec["flags"] += [f"steps: {e}" for e in errs]
        rec["timings"]["generate"] = round(time.perf_counter() - t0, 4)
        rec.update(labels={}, labeler={}, disagreements=[], icd=[], labels_text="")
        if self.s.wants_labels:
            t1 = time.perf_counter()
            self._labels(rec, [*base, Message("assistant", text)], path)
            rec["timings"]["labels"] = round(time.perf_counter() - t1, 4)
        rec["timings"]["total"] = round(time.perf_counter() - t0 + image.render_s, 4)
        return rec

    def _check(self, text: str) -> parse.Sections:
        before = ("Reasoning",) if self.s.mode == "cot" else ()
        return parse.parse_sections(text, tuple(self.t.headers), before)

    def _labels(self, rec: dict[str, Any], convo: list[Any], path: str) -> None:
        from engine.llm.backend import Message

        icd = self.s.wants_icd
        schema = parse.labels_schema(icd)
        msgs = [*convo, Message("user", self.t.labels_text())]
        reply = self._generate(msgs, image=path, phase="labels", attempt=1, schema=schema)
        try:
            labels, codes = parse.parse_labels(reply, icd)
        except ValueError as exc:
            rec["retries"] += 1
            again = [
                *msgs,
                Message("assistant", reply),
                Message(
                    "user",
                    f"That answer is not valid: {exc}. Answer again with the JSON object only.",
                ),
            ]
            reply = self._generate(again, image=path, phase="labels", attempt=2, schema=schema)
            try:
                labels, codes = parse.parse_labels(reply, icd)
            except ValueError as exc2:
                rec["flags"].append(f"labels: {exc2}")
                labels, codes = {}, []
        rec["labels_text"] = reply
        rec["labels"] = labels
        if icd:
            good, problems = parse.check_icd(codes, set(self.s.icd_codes or ()) or None)
            rec["icd"] = good
            rec["flags"] += problems
        impression = rec["sections"].get("Impression", "")
        if labels and self.labeler is not None and impression:
            t = time.perf_counter()
            rec["labeler"] = self.labeler(impression)
            rec["timings"]["labeler"] = round(time.perf_counter() - t, 4)
            rec["disagreements"] = [
                k for k in CHEXPERT_LABELS if labels.get(k) != rec["labeler"].get(k)
            ]
        elif labels and not impression:
            rec["flags"].append("labels: no impression to check them against")
        elif labels and self.labeler_note:
            rec["flags"].append(f"labels: not cross-checked ({self.labeler_note})")


@functools.cache
def _shared_labeler() -> Any:
    from engine.report.labeler import Labeler

    return Labeler()


def labeler_function() -> Callable[[str], dict[str, int | None]]:
    """The report labeler as a function of text (built once per process: medspaCy takes
    seconds, and an engine drafts many batches)."""
    try:
        lab = _shared_labeler()
    except ImportError as exc:
        raise NotAvailable(
            f"the report labeler needs medspaCy: pip install 'llm-heuristics[report]' ({exc})"
        ) from exc
    return lambda text: dict(lab.label(text).labels)


def _bar(done: int, total: int, width: int = 20) -> str:
    fill = round(width * done / total) if total else width
    return f"[{'#' * fill}{'.' * (width - fill)}] {done}/{total}"


def draft_images(
    images: list[str],
    drafter_factory: Callable[[], Drafter],
    *,
    output: str = "",
    patients: PatientData | None = None,
    redo: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """Draft every image not yet in ``output``: (new records, the records of the images that
    were already there, cancelled). With ``redo`` every image is drafted again (appended: the
    newer record of an image wins when the file is read).

    The backend is only built (by ``drafter_factory``) when at least one image needs it, so a
    finished run resumes in no time. Unreadable images become flagged records that are not
    written (the next run tries them again).
    """
    out = DraftsFile(output) if output else None
    try:
        return _draft_all(images, drafter_factory, out, patients, redo)
    finally:
        if out is not None:
            out.close()


def _draft_all(
    images: list[str],
    drafter_factory: Callable[[], Drafter],
    out: DraftsFile | None,
    patients: PatientData | None,
    redo: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    todo: list[tuple[str, str]] = []
    resumed: list[dict[str, Any]] = []
    for path in images:
        sha = sha256_file(path)
        if out is not None and not redo and out.is_done(path, sha):
            resumed.append(out.latest(path, sha))
        else:
            todo.append((path, sha))
    skipped = len(resumed)
    records: list[dict[str, Any]] = []
    if not todo:
        context.progress(1.0, f"{_bar(len(images), len(images))} all done already")
        return records, resumed, False
    drafter = drafter_factory()
    total = len(images)
    for i, (path, sha) in enumerate(todo):
        if context.cancelled():
            return records, resumed, True
        done = skipped + i
        context.progress(done / total, f"{_bar(done, total)} {path}", image=path)
        try:
            img = load_image(path)
        except UserError as exc:
            records.append({"image": path, "image_sha256": sha, "flags": [f"image: {exc}"]})
            continue
        patient = patients.for_image(path) if patients is not None else None
        rec = drafter.draft(path, sha, img, patient)
        if context.cancelled():  # a reply cut short is not a draft
            return records, resumed, True
        if out is not None:
            out.append(rec)
        records.append(rec)
    context.progress(1.0, f"{_bar(total, total)} done")
    return records, resumed, False
