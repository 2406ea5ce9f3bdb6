"""Builders of training JSONL from report folders: ten-step reasoning, curriculum stages, pairs.

A *report folder* is either one folder per study (``STUDY/report.txt`` with FINDINGS and
IMPRESSION sections, and optionally an image ``*.png|*.jpg``, ``ehr.json``, ``draft.txt`` and
``reasoning.txt``) or anything :func:`engine.report.io.read_reports` reads (CSV, JSONL, Open-i
XML/tgz). Side files (``--reasoning``, ``--ehr``, ``--drafts``: JSONL keyed by ``id``) add what
the folder lacks, e.g. a teacher model's rationales for reasoning distillation.

Every builder checks each study and refuses the malformed ones by name (``study CXR12: ...``):
by default nothing is written when any is refused; with ``skip_invalid`` the good records are
written and the refused ones listed in the summary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.train.records import DataSummary, summarize, write_jsonl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The ten steps of a systematic chest radiograph read, in the order the reasoning must follow.
COT_STEPS = (
    "Technique and image quality",
    "Lines, tubes and devices",
    "Airway and trachea",
    "Lungs and parenchyma",
    "Pleura",
    "Heart size and contour",
    "Mediastinum and hila",
    "Bones",
    "Soft tissues and upper abdomen",
    "Synthesis against the history",
)
N_STEPS = len(COT_STEPS)
EHR_FIELDS = ("age", "sex", "indication", "history", "prior", "medications", "labs", "setting")
# "Step 3: ...", "3. ...", "3) ..." — not "3.5 cm" (the mark must end the number)
_STEP = re.compile(r"^\s*(?:step\s*)?(\d{1,2})\s*[.):\-](?:\s+|$)(.*)$", re.IGNORECASE)


@dataclass
class Study:
    id: str
    text: str
    image: str = ""
    ehr: dict[str, Any] = field(default_factory=dict)
    draft: str = ""
    reasoning: str = ""

    def section(self, name: str) -> str:
        from engine.report.sections import split_sections

        return " ".join(b.strip() for s, b in split_sections(self.text) if s == name).strip()


def _read_folder_study(d: Path) -> Study:
    def opt(name: str) -> str:
        f = d / name
        return f.read_text(encoding="utf-8").strip() if f.is_file() else ""

    images = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    ehr: dict[str, Any] = {}
    if (d / "ehr.json").is_file():
        try:
            ehr = json.loads((d / "ehr.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            ehr = {"__error__": f"ehr.json is not valid JSON ({exc.msg})"}
    return Study(
        id=d.name,
        text=opt("report.txt"),
        image=str(images[0].resolve()) if images else "",
        ehr=ehr,
        draft=opt("draft.txt"),
        reasoning=opt("reasoning.txt"),
    )


def _side(path: str, key: str) -> dict[str, Any]:
    """``{id: record[key]}`` (``key=""``: the whole record less its id) of a JSONL side file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    out: dict[str, Any] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{p.name}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise UserError(f"{p.name}:{n}: needs an object with an 'id'")
        rid = str(rec.pop("id"))
        if key and key not in rec:
            raise UserError(f"{p.name}:{n} (id={rid}): '{key}' is missing")
        out[rid] = rec[key] if key else rec
    return out


def read_studies(
    src: str | Path, reasoning: str = "", ehr: str = "", drafts: str = ""
) -> list[Study]:
    """The studies of a report folder (or report file), with side files merged in by id."""
    p = Path(src).expanduser()
    if not p.exists():
        raise UserError(f"{p}: no such file or folder")
    if p.is_dir() and any((d / "report.txt").is_file() for d in p.iterdir() if d.is_dir()):
        studies = [
            _read_folder_study(d) for d in sorted(p.iterdir()) if (d / "report.txt").is_file()
        ]
    else:
        from engine.report.io import read_reports

        reports, _ = read_reports(p)
        studies = [Study(id=r.id, text=r.text) for r in reports]
    if not studies:
        raise UserError(f"{p}: no reports found (a folder per study with report.txt?)")
    by_id = {s.id: s for s in studies}
    for side, key, attr in ((reasoning, "reasoning", "reasoning"), (drafts, "draft", "draft")):
        if side:
            for rid, v in _side(side, key).items():
                if rid in by_id:
                    setattr(by_id[rid], attr, str(v))
    if ehr:
        for rid, rec in _side(ehr, "").items():
            if rid in by_id:
                by_id[rid].ehr = {**by_id[rid].ehr, **rec}
    return studies


# ------------------------------------------------------------------ ten-step reasoning
def parse_steps(text: str) -> list[str]:
    """The bodies of numbered steps (``Step 3: ...``, ``3. ...``); continuation lines join the
    step above. Raises ``ValueError`` when the numbering is not 1, 2, ... in order."""
    steps: list[str] = []
    for line in text.splitlines():
        m = _STEP.match(line)
        if m and int(m.group(1)) == len(steps) + 1:
            steps.append(m.group(2).strip())
        elif m and not line.lstrip().lower().startswith(("impression",)):
            raise ValueError(f"step {m.group(1)} where step {len(steps) + 1} was expected")
        elif line.strip() and steps:
            steps[-1] = (steps[-1] + " " + line.strip()).strip()
    return steps


def check_cot(text: str) -> list[str]:
    """Problems of a reasoning text against the ten-step format (empty when it conforms)."""
    body = re.split(r"(?im)^\s*impression\s*:", text)[0]
    try:
        steps = parse_steps(body)
    except ValueError as exc:
        return [str(exc)]
    errs = []
    if len(steps) != N_STEPS:
        errs.append(f"reasoning has {len(steps)} step(s), the format needs {N_STEPS}")
    errs += [f"step {i} is empty" for i, s in enumerate(steps, 1) if not s]
    return errs


def format_cot(steps: list[str], impression: str) -> str:
    lines = [f"Step {i}: {s}" for i, s in enumerate(steps, 1)]
    return "\n".join(lines) + f"\nImpression: {impression}"


COT_INSTRUCTION = (
    "Read this chest radiograph in ten numbered steps ("
    + "; ".join(f"{i}. {name}" for i, name in enumerate(COT_STEPS, 1))
    + "), then give the impression."
)


# ------------------------------------------------------------------ EHR and prompts
def check_ehr(ehr: dict[str, Any]) -> list[str]:
    if "__error__" in ehr:
        return [str(ehr["__error__"])]
    errs = []
    for k, v in ehr.items():
        if k not in EHR_FIELDS:
            errs.append(f"EHR field '{k}' is not one of {', '.join(EHR_FIELDS)}")
        elif isinstance(v, bool) or not isinstance(v, (str, int, float)):
            errs.append(f"EHR field '{k}' must be text or a number, got {type(v).__name__}")
    return errs


def ehr_text(ehr: dict[str, Any]) -> str:
    return "\n".join(
        f"{k.capitalize()}: {ehr[k]}" for k in EHR_FIELDS if ehr.get(k) not in (None, "")
    )


def _base(s: Study) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": s.id}
    if s.image:
        rec["image"] = s.image
    return rec


def _cot(s: Study) -> list[dict[str, Any]]:
    impression, findings = s.section("IMPRESSION"), s.section("FINDINGS")
    errs = [] if impression else ["the report has no IMPRESSION section"]
    if not s.reasoning:
        errs.append("no reasoning (reasoning.txt or --reasoning)")
    else:
        errs += check_cot(s.reasoning)
    if not s.image and not findings:
        errs.append("neither an image nor a FINDINGS section to reason from")
    if errs:
        raise ValueError("; ".join(errs))
    body = re.split(r"(?im)^\s*impression\s*:", s.reasoning)[0]
    prompt = COT_INSTRUCTION if s.image else f"{COT_INSTRUCTION}\nFindings: {findings}"
    return [
        {
            **_base(s),
            "prompt": prompt,
            "target": format_cot(parse_steps(body), impression),
            "mode": "cot",
        }
    ]


def _curriculum(s: Study) -> list[dict[str, Any]]:
    impression, findings = s.section("IMPRESSION"), s.section("FINDINGS")
    errs = check_ehr(s.ehr)
    if not impression:
        errs.append("the report has no IMPRESSION section")
    if not findings and not s.image:
        errs.append("neither an image nor a FINDINGS section")
    if errs:
        raise ValueError("; ".join(errs))
    out = []
    # Stage A: perception — describe the image (or condense findings) without context.
    if s.image and findings:
        out.append(
            {
                **_base(s),
                "prompt": "Describe the findings of this chest radiograph.",
                "target": findings,
                "stage": "A",
                "mode": "findings",
            }
        )
    else:
        out.append(
            {
                **_base(s),
                "prompt": f"Write the impression.\nFindings: {findings}",
                "target": impression,
                "stage": "A",
                "mode": "impression",
            }
        )
    # Stage B: the same study read with the patient's record, as a radiologist reports it.
    context = ehr_text(s.ehr)
    if context:
        shown = "" if s.image else f"\nFindings: {findings}"
        out.append(
            {
                **_base(s),
                "prompt": f"Patient record:\n{context}{shown}\n"
                "Write the impression for this patient.",
                "target": impression,
                "stage": "B",
                "mode": "impression+ehr",
                "meta": {"ehr": dict(s.ehr)},
            }
        )
    return out


def coarse_draft(findings: str) -> str:
    """A coarse draft: the first two findings sentences restated, with no synthesis."""
    sentences = [x.strip() for x in re.split(r"(?<=[.!?])\s+", findings) if x.strip()]
    return " ".join(sentences[:2])


def _pair(s: Study) -> list[dict[str, Any]]:
    impression, findings = s.section("IMPRESSION"), s.section("FINDINGS")
    draft = s.draft or coarse_draft(findings)
    errs = check_ehr(s.ehr)
    if not impression:
        errs.append("the report has no IMPRESSION section (the radiologist's own text)")
    if not draft:
        errs.append("no draft (draft.txt, --drafts) and no FINDINGS to draft from")
    elif impression and draft.strip() == impression.strip():
        errs.append("the draft equals the impression: no preference to learn")
    if errs:
        raise ValueError("; ".join(errs))
    context = ehr_text(s.ehr)
    prompt = "Write the impression in your reporting style."
    if findings:
        prompt += f"\nFindings: {findings}"
    if context:
        prompt += f"\nPatient record:\n{context}"
    return [{**_base(s), "prompt": prompt, "chosen": impression, "rejected": draft}]


BUILDERS = {"cot": _cot, "curriculum": _curriculum, "pairs": _pair}


def build(
    kind: str,
    src: str | Path,
    out: str | Path,
    *,
    reasoning: str = "",
    ehr: str = "",
    drafts: str = "",
    skip_invalid: bool = False,
) -> DataSummary:
    """Build ``out`` (JSONL) of ``kind`` (cot | curriculum | pairs) from the studies of ``src``."""
    if kind not in BUILDERS:
        raise UserError(f"unknown data kind {kind!r} (one of {', '.join(BUILDERS)})")
    studies = read_studies(src, reasoning=reasoning, ehr=ehr, drafts=drafts)
    records: list[dict[str, Any]] = []
    refused: list[str] = []
    for s in studies:
        try:
            records += BUILDERS[kind](s)
        except ValueError as exc:
            refused.append(f"study {s.id}: {exc}")
    if refused and not skip_invalid:
        listed = "\n  ".join(refused[:20])
        more = f"\n  ... and {len(refused) - 20} more" if len(refused) > 20 else ""
        raise UserError(
            f"{len(refused)} of {len(studies)} studies refused (nothing written; "
            f"--skip-invalid writes the others):\n  {listed}{more}"
        )
    if not records:
        raise UserError(f"{src}: no study gave a {kind} record")
    write_jsonl(out, records)
    summary = summarize(records, "dpo" if kind == "pairs" else "sft", str(out))
    summary.n_rejected, summary.rejected = len(refused), refused
    return summary
