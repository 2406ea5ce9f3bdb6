"""Personalised impressions through the API: style build, impression, impression-eval.

Types first (the CLI and the reading room build on them); the functions call the step package
``engine.report.style``. Profiles and indexes are written only in the user's data folder
(``data_dir`` or ``LLMH_STYLE_DIR`` move it). Tokens stream as ``delta`` notifications
(``group_id`` coarse / refine / retry), progress as ``progress``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import UserError


@dataclass
class StyleBuildParams:
    priors: str  # JSONL (findings, impression, optional id) or a folder of report texts
    radiologist: str
    embedder: str = ""  # create_embedder spec ("" : minilm, offline)
    data_dir: str = ""  # "" : the user's data folder (or LLMH_STYLE_DIR)


@dataclass
class StyleBuildResult:
    radiologist: str
    folder: str
    n_pairs: int = 0
    skipped: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass
class ImpressionLLM:
    """Which model writes the drafts (shared by impression and impression-eval)."""

    backend: str = ""  # echo | llama-cpp | transformers | ollama | openai ("" : configured)
    model: str = ""
    host: str = ""  # Ollama host
    base_url: str = ""  # OpenAI-compatible base URL
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 200
    k: int = 3  # prior pairs shown as examples
    embedder: str = ""  # must match the index ("" : minilm)
    data_dir: str = ""


@dataclass
class ImpressionParams(ImpressionLLM):
    findings: str = ""  # the findings text (the CLI reads a FILE into it)
    radiologist: str = ""
    context: dict[str, Any] = field(default_factory=dict)  # patient data (age, sex, indication)
    style_fit: bool = True  # needs profiles of >= 2 radiologists; skipped with a note otherwise


@dataclass
class ImpressionResult:
    radiologist: str
    coarse: str = ""
    refined: str = ""  # the refinement, or the coarse impression after a fallback
    labels_coarse: dict[str, int | None] = field(default_factory=dict)
    labels_refined: dict[str, int | None] = field(default_factory=dict)
    labels_equal: bool = True
    retried: bool = False
    fell_back: bool = False
    attempts: list[str] = field(default_factory=list)  # each refinement's text
    note: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # lost / added / missing / ok
    style_fit: dict[str, float] = field(default_factory=dict)  # coarse / refined: P(R's)
    examples: list[dict[str, Any]] = field(default_factory=list)  # prior id, similarity
    flags: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class ImpressionEvalParams(ImpressionLLM):
    pairs: str = ""  # held-out JSONL / folder with the true impressions
    radiologist: str = ""
    limit: int = 0  # 0: all pairs
    metrics: list[str] = field(default_factory=lambda: ["rouge_l", "bertscore"])


@dataclass
class ImpressionEvalResult:
    radiologist: str
    n: int = 0
    coarse: dict[str, float] = field(default_factory=dict)
    refined: dict[str, float] = field(default_factory=dict)
    fell_back: int = 0
    flagged: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


# ------------------------------------------------------------------ functions
def style_build(p: StyleBuildParams) -> StyleBuildResult:
    """Style profile + embedding index of a radiologist's priors, in the user's data folder."""
    from engine.llm.base import BackendError
    from engine.report.style import build_style

    try:
        b = build_style(p.priors, p.radiologist, p.embedder or "minilm", p.data_dir or None)
    except BackendError as exc:  # the embedder is missing or its server is down
        raise UserError(str(exc)) from exc
    res = StyleBuildResult(b.radiologist, str(b.folder), b.n_pairs, b.skipped[:50], b.profile)
    fmt = b.profile["format"]
    res.message = (
        f"{b.n_pairs} pairs of {b.radiologist!r} profiled ({round(100 * fmt['numbered_list'])} % "
        f"lists, median {b.profile['length_words']['median']:g} words"
        + (f", {len(b.skipped)} reports skipped" if b.skipped else "")
        + f"); profile and index in {b.folder}"
    )
    return res


def _backend(p: ImpressionLLM) -> Any:
    from engine.llm.backend import BackendError, create_backend

    try:
        if p.backend == "echo":
            return create_backend("echo", p.model or "echo")
        from engine.config import load_settings

        cli = {"backend": p.backend or None, "model": p.model or None}
        cli |= {"ollama_host": p.host or None, "openai_base_url": p.base_url or None}
        s = load_settings({k: v for k, v in cli.items() if v is not None})
        if not s.model:
            raise UserError("no model given: pass --model (or set LLM_MODEL_NAME)")
        return create_backend(s.backend, s.model, isolate=None, **s.backend_options())
    except BackendError as exc:
        raise UserError(str(exc)) from exc


class _Session:
    """What one request loads once: profile, retriever, labeler, backend, classifier."""

    def __init__(self, p: ImpressionLLM, radiologist: str, style_fit: bool = True) -> None:
        from engine.llm.base import GenerationOptions
        from engine.report.labeler import Labeler
        from engine.report.style import Retriever, store, train_from_store

        self.p, self.radiologist = p, radiologist
        from engine.llm.base import BackendError

        self.profile = store.load_profile(radiologist, p.data_dir or None)
        try:
            self.retriever = Retriever(radiologist, p.embedder or None, p.data_dir or None)
        except BackendError as exc:
            raise UserError(str(exc)) from exc
        self.labeler = Labeler()
        self.opts = GenerationOptions(
            max_tokens=p.max_tokens or 200, temperature=p.temperature, seed=p.seed
        )
        self.classifier: Any = None
        self.fit_note = ""
        if style_fit:
            try:
                self.classifier = train_from_store(p.data_dir or None, p.seed)
            except UserError as exc:
                self.fit_note = str(exc)
        self.backend = _backend(p)

    def run(self, findings: str, ctx: dict[str, Any] | None) -> Any:
        from engine.llm.backend import BackendError
        from engine.report.style import impression

        if not findings.strip():
            raise UserError("no findings text: give --findings TEXT or a FILE")
        try:
            return impression(
                findings,
                self.backend,
                self.profile,
                self.retriever.nearest(findings, max(0, self.p.k)),
                self.labeler,
                ctx,
                self.opts,
            )
        except BackendError as exc:
            raise UserError(str(exc)) from exc

    def close(self) -> None:
        self.backend.unload()


def impression(p: ImpressionParams) -> ImpressionResult:
    """Coarse impression from the findings, refined toward R's style, facts locked."""
    s = _Session(p, p.radiologist, p.style_fit)
    try:
        o = s.run(p.findings, p.context or None)
    finally:
        s.close()
    res = ImpressionResult(
        radiologist=p.radiologist,
        coarse=o.coarse,
        refined=o.refined,
        labels_coarse=o.labels_coarse,
        labels_refined=o.labels_refined,
        labels_equal=o.labels_coarse == o.labels_refined and not o.fell_back,
        retried=len(o.attempts) > 1,
        fell_back=o.fell_back,
        attempts=[a.text for a in o.attempts],
        note=o.note,
        facts=o.facts,
        examples=o.examples,
        flags=o.flags,
    )
    if s.classifier is not None:
        c, r = s.classifier.proba([o.coarse, o.refined])
        res.style_fit = {"coarse": c.get(p.radiologist, 0.0), "refined": r.get(p.radiologist, 0.0)}
    elif s.fit_note:
        res.flags.append(f"no style fit: {s.fit_note}")
    fit = (
        f"; style fit {res.style_fit['coarse']:.2f} -> {res.style_fit['refined']:.2f}"
        if res.style_fit
        else ""
    )
    res.message = (
        ("fell back to the coarse impression" if o.fell_back else "refined")
        + f" with {len(o.examples)} examples of {p.radiologist!r}{fit}"
        + (f"; {len(res.flags)} flag(s)" if res.flags else "")
    )
    return res


def impression_eval(p: ImpressionEvalParams) -> ImpressionEvalResult:
    """Held-out pairs: ROUGE-L / BERTScore, label agreement, style fit, coarse vs refined."""
    from engine.report.style import read_priors
    from engine.report.style.evaluation import EVAL_METRICS, evaluate_pairs

    bad = [m for m in p.metrics if m not in EVAL_METRICS]
    if bad:
        raise UserError(
            f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(EVAL_METRICS)}"
        )
    pairs = read_priors(p.pairs).pairs
    if p.limit > 0:
        pairs = pairs[: p.limit]
    s = _Session(p, p.radiologist, style_fit=True)
    if s.classifier is None:
        s.close()
        raise UserError(s.fit_note)
    try:
        out = evaluate_pairs(
            pairs,
            p.radiologist,
            lambda x: s.run(x.findings, None),
            s.labeler,
            s.classifier,
            p.metrics,
        )
    finally:
        s.close()
    res = ImpressionEvalResult(**out)
    c, r = res.coarse, res.refined
    res.message = f"{res.n} held-out pairs of {p.radiologist!r}: " + ", ".join(
        f"{k} {c.get(k, 0):.3f} -> {r.get(k, 0):.3f}" for k in r
    )
    return res


def style_list(data_dir: str = "") -> list[str]:
    """The radiologists with a style profile in the data folder (the reading room's selector)."""
    from engine.report.style import store

    return sorted(store.profiled(data_dir or None))


@dataclass
class StyleCorpusParams:
    out_dir: str
    limit_per_reader: int = 0  # 0: all priors
    heldout_per_reader: int = 0  # 0: all held-out pairs


@dataclass
class StyleCorpusResult:
    out_dir: str
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # reader -> split -> path
    counts: dict[str, int] = field(default_factory=dict)  # file name -> pairs
    message: str = ""


def style_corpus(p: StyleCorpusParams) -> StyleCorpusResult:
    """The synthetic-in-style test corpus from Open-i: priors and held-out pairs per reader."""
    from pathlib import Path

    from engine.report.style.corpus import SYNTHETIC_NOTE, build_corpus

    if not p.out_dir:
        raise UserError("name the folder to write the corpus into (OUT)")
    files = build_corpus(p.out_dir, None, p.limit_per_reader, p.heldout_per_reader)
    counts = {
        Path(f).name: sum(1 for line in Path(f).read_text().splitlines() if line.strip())
        for splits in files.values()
        for f in splits.values()
    }
    msg = f"{sum(counts.values())} pairs of {len(files)} readers in {p.out_dir} ({SYNTHETIC_NOTE})"
    return StyleCorpusResult(p.out_dir, files, counts, msg)
