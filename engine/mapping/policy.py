"""Deterministic policy switches applied to the mapping before compiling (no model needed).

The chosen policy is saved in OUT so ``validate`` and ``convert`` judge the heuristic against
the same, adjusted mapping.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from engine.atomic import write_text_atomic
from engine.model import Mapping

POLICY_FILE = "generate_policy.json"
CONTEXT_FILE = "study_context.txt"


@dataclass
class Policy:
    include_derived: bool = False  # convert derived groups the mapper named but skipped
    exclude_sbref: bool = False
    exclude_phase: bool = False  # phase images of magnitude/phase pairs (not field maps)
    exclude_datatypes: list[str] = field(default_factory=list)

    def apply(self, mappings: list[Mapping]) -> list[Mapping]:
        out: list[Mapping] = []
        for m in mappings:
            m = replace(m, entities=dict(m.entities), intended_for=list(m.intended_for))
            if (
                self.include_derived
                and m.is_skip
                and "deriv" in m.skip_reason.lower()
                and m.datatype
                and m.suffix
            ):
                m.skip_reason = ""
                m.evidence = [*m.evidence, "policy: --include-derived"]
            if not m.is_skip:
                why = ""
                if self.exclude_sbref and m.suffix == "sbref":
                    why = "policy: --exclude-sbref"
                elif (
                    self.exclude_phase
                    and m.datatype != "fmap"
                    and (m.entities.get("part") == "phase" or m.suffix == "phase")
                ):
                    why = "policy: --exclude-phase"
                elif m.datatype in self.exclude_datatypes:
                    why = f"policy: --exclude-datatype {m.datatype}"
                if why:
                    m.skip_reason = why
            out.append(m)
        return out

    def is_default(self) -> bool:
        return self == Policy()


def save_policy(out_dir: str | Path, policy: Policy) -> None:
    write_text_atomic(Path(out_dir) / POLICY_FILE, json.dumps(asdict(policy), indent=2) + "\n")


def load_policy(out_dir: str | Path) -> Policy:
    p = Path(out_dir) / POLICY_FILE
    if not p.exists():
        return Policy()
    data = json.loads(p.read_text())
    return Policy(**{k: v for k, v in data.items() if k in Policy.__dataclass_fields__})
