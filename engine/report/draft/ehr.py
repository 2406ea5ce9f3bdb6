"""Patient context for drafting (age, sex, vitals, history, indication), refused when it
carries identifiers.

The check runs on the file as read, before any text is built for a model: a field whose name
is an identifier (name, MRN, date of birth, phone, address, e-mail, SSN...) or a value that
looks like one (an exact date, a phone or record number, an e-mail, a title and a name) is a
``UserError`` naming the field, and the value itself is never echoed (it may be the identifier).
Ages over 89 are identifiers under HIPAA Safe Harbor: give ``"90+"``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from engine.errors import UserError

FIELDS = ("age", "sex", "vitals", "history", "indication")
VITALS = (
    "heart_rate",
    "respiratory_rate",
    "temperature",
    "spo2",
    "systolic_bp",
    "diastolic_bp",
    "blood_pressure",
    "weight_kg",
    "height_cm",
)
SEXES = {"m": "male", "male": "male", "f": "female", "female": "female"}
SEXES |= {"other": "other", "unknown": "unknown", "o": "other", "u": "unknown"}
_MATCH_KEYS = ("image", "id")  # which image a record of a multi-case file belongs to

# The JSON schema of one patient (documentation and clients); :func:`check_patient` enforces it.
SCHEMA: dict[str, Any] = {
    "title": "patient_context",
    "type": "object",
    "properties": {
        "age": {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 89},
                {"type": "string", "pattern": r"^([0-9]{1,2}|90\+)$"},
            ]
        },
        "sex": {"type": "string", "enum": sorted(SEXES)},
        "vitals": {
            "type": "object",
            "properties": {
                k: (
                    {"type": "string", "pattern": r"^[0-9]{2,3}/[0-9]{2,3}$"}
                    if k == "blood_pressure"
                    else {"type": "number", "minimum": 0, "maximum": 1000}
                )
                for k in VITALS
            },
            "additionalProperties": False,
        },
        "history": {
            "anyOf": [
                {"type": "string", "maxLength": 2000},
                {"type": "array", "items": {"type": "string", "maxLength": 500}, "maxItems": 30},
            ]
        },
        "indication": {"type": "string", "maxLength": 1000},
    },
    "additionalProperties": False,
}

# Field names that are identifiers (compared without case, spaces, '_' or '-').
_ID_KEYS = (
    ("a name", r"(first|last|given|family|full|middle|sur|patient|maiden)?name"),
    (
        "a record number",
        r"mrn|medicalrecord\w*|recordn(o|um\w*)|patientid|hospitalno|hospitalnumber",
    ),
    (
        "a record number",
        r"accession\w*|encounter\w*|visitid|caseid|chartno|chartnumber|insurance\w*",
    ),
    ("a date of birth", r"dob|dateofbirth|birth\w*|born"),
    ("an exact date", r"\w*date\w*|dos|admitted|discharged"),
    ("a phone number", r"\w*phone\w*|tel|telephone|mobile|fax|cell"),
    ("an address", r"\w*address\w*|street|city|zip|zipcode|postcode|postalcode|county"),
    ("an e-mail address", r"e?mail\w*"),
    ("a social security number", r"ssn|socialsecurity\w*|nationalid|nhsnumber|passport\w*"),
)
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# Values that are identifiers, in the order they are tried.
_ID_VALUES = (
    ("an e-mail address", re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")),
    ("a social security number", re.compile(r"\b\d{3}[- ]\d{2}[- ]\d{4}\b")),
    ("a phone number", re.compile(r"(\+\d{1,3}[ .-]?)?\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b")),
    ("an exact date", re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")),
    ("an exact date", re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b")),
    ("an exact date", re.compile(rf"\b{_MONTH}\s+\d{{1,2}}(st|nd|rd|th)?\b", re.I)),
    (
        "an exact date",
        re.compile(rf"\b\d{{1,2}}(st|nd|rd|th)?\s+(of\s+)?{_MONTH}\s+\d{{4}}\b", re.I),
    ),
    (
        "a record number",
        re.compile(r"\b(mrn|medical record|record (number|no)|patient id|accession)\b", re.I),
    ),
    ("a record number", re.compile(r"\b[A-Z]{0,3}\d{6,}\b")),
    ("a date of birth", re.compile(r"\b(dob|date of birth|born on)\b", re.I)),
    ("a name", re.compile(r"\b(?i:mr|mrs|ms|miss|dr|prof)\.?\s+[A-Z][a-z]+")),
    ("a name", re.compile(r"\b(name is|named|patient name)\b", re.I)),
    (
        "an address",
        re.compile(
            r"\b\d{1,5}\s+([A-Z][a-z]+\s+){1,3}(street|st|avenue|ave|road|rd|lane|ln|drive|"
            r"boulevard|blvd|court|ct|way|place|pl)\b",
            re.I,
        ),
    ),
)


def _norm_key(key: str) -> str:
    return re.sub(r"[\s_\-.]+", "", key.lower())


def _identifier_key(key: str) -> str | None:
    k = _norm_key(key)
    for kind, pattern in _ID_KEYS:
        if re.fullmatch(pattern, k):
            return kind
    return None


def _scan(value: Any, path: str, where: str) -> None:
    """Refuse identifier-like keys and values anywhere under ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            kind = _identifier_key(str(k))
            if kind:
                raise UserError(
                    f"{where}: field {path}{k!s} is an identifier ({kind}); remove it. "
                    "Only age, sex, vitals, history and indication are used, and identifiers "
                    "are never sent to a model"
                )
            _scan(v, f"{path}{k}.", where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _scan(v, f"{path.rstrip('.')}[{i}].", where)
    elif isinstance(value, str):
        for kind, rx in _ID_VALUES:
            if rx.search(value):
                raise UserError(
                    f"{where}: field {path.rstrip('.')} holds what looks like {kind}; remove it "
                    "(identifiers are never sent to a model; give ages, not dates)"
                )


def check_patient(obj: Any, where: str) -> dict[str, Any]:
    """The patient context of ``obj``, normalized; ``UserError`` naming the field otherwise."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: the patient context must be a JSON object")
    _scan(obj, "", where)
    unknown = [k for k in obj if k not in FIELDS]
    if unknown:
        raise UserError(
            f"{where}: field {unknown[0]} is not in the patient schema (allowed: {', '.join(FIELDS)})"
        )
    out: dict[str, Any] = {}
    if "age" in obj and obj["age"] is not None:
        out["age"] = _age(obj["age"], where)
    if obj.get("sex") is not None:
        sex = obj["sex"]
        if not isinstance(sex, str) or sex.strip().lower() not in SEXES:
            raise UserError(f"{where}: field sex must be one of male, female, other, unknown")
        out["sex"] = SEXES[sex.strip().lower()]
    if obj.get("vitals") is not None:
        out["vitals"] = _vitals(obj["vitals"], where)
    if obj.get("history") is not None:
        h = obj["history"]
        items = [h] if isinstance(h, str) else h
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise UserError(f"{where}: field history must be text or a list of texts")
        if len(items) > 30 or any(len(x) > 2000 for x in items):
            raise UserError(f"{where}: field history is too long (30 items of 2000 characters)")
        out["history"] = [x.strip() for x in items if x.strip()]
    if obj.get("indication") is not None:
        ind = obj["indication"]
        if not isinstance(ind, str) or len(ind) > 1000:
            raise UserError(f"{where}: field indication must be text of at most 1000 characters")
        out["indication"] = ind.strip()
    return out


def _age(v: Any, where: str) -> str:
    if isinstance(v, bool):
        raise UserError(f"{where}: field age must be a number of years")
    if isinstance(v, str) and v.strip() == "90+":
        return "90+"
    try:
        years = float(v)
    except (TypeError, ValueError):
        raise UserError(f"{where}: field age must be a number of years (or '90+')") from None
    if not 0 <= years < 150:
        raise UserError(f"{where}: field age {years:g} is not an age in years")
    if years > 89:
        raise UserError(
            f"{where}: field age over 89 is an identifier (HIPAA Safe Harbor); give '90+'"
        )
    return f"{years:g}"


def _vitals(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise UserError(f"{where}: field vitals must be an object ({', '.join(VITALS)})")
    out: dict[str, Any] = {}
    for k, x in v.items():
        if k not in VITALS:
            raise UserError(f"{where}: field vitals.{k} is not a vital sign ({', '.join(VITALS)})")
        if k == "blood_pressure":
            if not isinstance(x, str) or not re.fullmatch(r"\d{2,3}/\d{2,3}", x.strip()):
                raise UserError(f"{where}: field vitals.blood_pressure must look like '120/80'")
            out[k] = x.strip()
        elif isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x <= 1000:
            raise UserError(f"{where}: field vitals.{k} must be a number")
        else:
            out[k] = x
    return out


_VITAL_TEXT = {
    "heart_rate": "heart rate {} /min",
    "respiratory_rate": "respiratory rate {} /min",
    "temperature": "temperature {} C",
    "spo2": "SpO2 {} %",
    "systolic_bp": "systolic BP {} mmHg",
    "diastolic_bp": "diastolic BP {} mmHg",
    "blood_pressure": "BP {} mmHg",
    "weight_kg": "weight {} kg",
    "height_cm": "height {} cm",
}


def patient_text(p: dict[str, Any]) -> str:
    """The patient block of a prompt (only the checked fields, in a fixed order)."""
    lines: list[str] = []
    who = " ".join(x for x in (f"{p['age']}-year-old" if "age" in p else "", p.get("sex", "")) if x)
    if who:
        lines.append(f"- Patient: {who}")
    if p.get("vitals"):
        vit = ", ".join(_VITAL_TEXT[k].format(v) for k, v in p["vitals"].items())
        lines.append(f"- Vitals: {vit}")
    if p.get("history"):
        lines.append(f"- History: {'; '.join(p['history'])}")
    if p.get("indication"):
        lines.append(f"- Indication: {p['indication']}")
    return "\n".join(lines)


class PatientData:
    """The checked EHR file: one context for every image, or one per image name/stem."""

    def __init__(self, default: dict[str, Any] | None, cases: dict[str, dict[str, Any]]) -> None:
        self.default = default
        self.cases = cases

    def for_image(self, path: str) -> dict[str, Any] | None:
        p = Path(path)
        for key in (p.name, p.stem, str(path)):
            if key in self.cases:
                return self.cases[key]
        return self.default


def read_ehr(path: str | Path) -> PatientData:
    """Read and check an EHR file: a JSON object (every image), ``{"cases": {image: {...}}}``,
    or a JSON list / JSONL of objects with ``image`` (name or stem) and the patient fields."""
    p = Path(path)
    where = f"EHR {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the EHR file {p}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{where} is not UTF-8 text: {exc}") from exc
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        doc = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    doc.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{where} line {n} is not JSON: {exc.msg}") from None
    if isinstance(doc, dict) and "cases" in doc:
        if set(doc) != {"cases"} or not isinstance(doc["cases"], dict):
            raise UserError(
                f'{where}: with "cases" the file holds only {{"cases": {{image: {{}}}}}}'
            )
        cases = {str(k): check_patient(v, f"{where} case {k}") for k, v in doc["cases"].items()}
        return PatientData(None, cases)
    if isinstance(doc, dict):
        return PatientData(check_patient(doc, where), {})
    if isinstance(doc, list):
        cases = {}
        for i, rec in enumerate(doc):
            if not isinstance(rec, dict):
                raise UserError(f"{where} record {i + 1} is not a JSON object")
            key = next((rec[k] for k in _MATCH_KEYS if k in rec), None)
            if not isinstance(key, str) or not key:
                raise UserError(f'{where} record {i + 1} has no "image" (the image name or stem)')
            body = {k: v for k, v in rec.items() if k not in _MATCH_KEYS}
            cases[key] = check_patient(body, f"{where} record {i + 1} ({key})")
        return PatientData(None, cases)
    raise UserError(f"{where}: expected a JSON object, a list of objects or JSONL")
