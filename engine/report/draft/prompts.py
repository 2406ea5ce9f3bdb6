"""Versioned prompt templates of report drafting, shipped as ``templates.json`` beside this file.

A TOML config may override any key of a mode under ``[report_draft.<mode>]``; changed text
without a new ``version`` is marked ``<version>+config`` so records never claim a shipped
version for a prompt that was not shipped. The prompt hash covers the rendered text, so two
records with the same hash saw the same words.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.report.labels import CHEXPERT_LABELS

MODES = ("report", "cot", "impression", "impression_icd")
TEMPLATE_FILE = Path(__file__).with_name("templates.json")
_TEXT_KEYS = ("system", "user", "retry", "labels")


@dataclass(frozen=True)
class Template:
    """One mode's prompts: the report turn, the format retry and the JSON labels turn."""

    mode: str
    version: str
    system: str
    user: str
    retry: str
    labels: str
    max_tokens: int = 600
    headers: tuple[str, ...] = ("Technique", "View", "Findings", "Impression")

    def render(self, patient: str = "") -> tuple[str, str]:
        """(system, user) text; ``{patient}`` becomes the patient block (or nothing)."""
        block = f"\n\nPatient data:\n{patient}\n" if patient else ""
        return self.system, self.user.replace("{patient}", block)

    def retry_text(self, error: str) -> str:
        return self.retry.replace("{error}", error)

    def labels_text(self) -> str:
        return self.labels.replace("{labels}", ", ".join(CHEXPERT_LABELS))


@cache
def shipped() -> dict[str, Template]:
    """The templates of this version of the package."""
    doc = json.loads(TEMPLATE_FILE.read_text(encoding="utf-8"))
    return {mode: _template(mode, doc[mode]) for mode in MODES}


def _template(mode: str, d: dict[str, Any]) -> Template:
    return Template(
        mode=mode,
        version=str(d["version"]),
        system=str(d["system"]),
        user=str(d["user"]),
        retry=str(d["retry"]),
        labels=str(d["labels"]),
        max_tokens=int(d.get("max_tokens", 600)),
        headers=tuple(d.get("headers", ("Technique", "View", "Findings", "Impression"))),
    )


def load_templates(config: str | Path | None = None) -> dict[str, Template]:
    """The shipped templates with the overrides of ``config`` (TOML) applied."""
    out = dict(shipped())
    if not config:
        return out
    path = Path(config)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read the config {path}: {exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config {path} is not valid TOML: {exc}") from exc
    section = doc.get("report_draft", {})
    if not isinstance(section, dict):
        raise UserError(f"config {path}: [report_draft] must be a table of modes")
    for mode, over in section.items():
        if mode not in MODES:
            raise UserError(
                f"config {path}: [report_draft.{mode}] is not a mode; use {', '.join(MODES)}"
            )
        if not isinstance(over, dict):
            raise UserError(f"config {path}: [report_draft.{mode}] must be a table")
        out[mode] = _override(out[mode], over, f"{path} [report_draft.{mode}]")
    return out


def _override(t: Template, over: dict[str, Any], where: str) -> Template:
    allowed = (*_TEXT_KEYS, "version", "max_tokens")
    bad = sorted(set(over) - set(allowed))
    if bad:
        raise UserError(
            f"config {where}: unknown key(s) {', '.join(bad)}; use {', '.join(allowed)}"
        )
    changes: dict[str, Any] = {}
    for key in _TEXT_KEYS:
        if key in over:
            if not isinstance(over[key], str) or not over[key].strip():
                raise UserError(f"config {where}: {key} must be non-empty text")
            changes[key] = over[key]
    if "max_tokens" in over:
        if not isinstance(over["max_tokens"], int) or not 16 <= over["max_tokens"] <= 32768:
            raise UserError(f"config {where}: max_tokens must be an integer from 16 to 32768")
        changes["max_tokens"] = over["max_tokens"]
    if "version" in over:
        changes["version"] = str(over["version"])
    elif any(k in changes for k in _TEXT_KEYS):
        changes["version"] = f"{t.version}+config"
    return replace(t, **changes)


def prompt_hash(template: Template, system: str, user: str) -> str:
    """sha256 (16 hex) of the version and every text the model can be sent for one image."""
    h = hashlib.sha256()
    for part in (template.version, system, user, template.retry, template.labels_text()):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:16]
