"""Chest X-ray report drafting with a vision-language model (the step behind ``report draft``).

``prompts`` (versioned templates, TOML overrides), ``images`` (which files, the PNG a model
sees), ``ehr`` (patient context, identifiers refused), ``parse`` (headers, ten steps, CheXpert
JSON, ICD-10-CM), ``run`` (the drafter and the resumable loop), ``jsonl`` (the drafts file),
``ab`` (paired bootstrap) and ``compare`` (scoring both arms of an A/B run).
"""

from engine.report.draft.prompts import MODES, Template, load_templates

__all__ = ["MODES", "Template", "load_templates"]
