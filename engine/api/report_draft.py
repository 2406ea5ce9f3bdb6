"""Chest X-ray report drafting through the API: draft, A/B (image only vs image + EHR).

Types first (the reading room and the CLI build on them); the functions call the step package
``engine.report.draft``. Tokens stream as ``delta`` notifications (``image``, ``phase`` in the
extras), progress as ``progress``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class DraftResult:
    records: list[DraftRecord] = field(default_factory=list)
    output: str = ""
    skipped: int = 0  # already in OUTPUT (resumed)
    flagged: int = 0
    message: str = ""
