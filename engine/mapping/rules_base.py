"""What a rule decides about one group (shared by the rule modules)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decision:
    datatype: str = ""
    suffix: str = ""
    entities: dict[str, str] = field(default_factory=dict)
    skip: str = ""
    confidence: float = 0.0
    evidence: list[str] = field(default_factory=list)
    echoes: int = 0  # echoes held in one series (heudiconv then adds _echo-N itself)
    extra_suffixes: list[str] = field(default_factory=list)  # e.g. magnitude2 beside magnitude1
    kind: str = ""  # internal hint for post-passes: "gre_fmap", "dwi_b0", "sbref", ...
    reproin: bool = False


def skip(reason: str, conf: float, *ev: str) -> Decision:
    return Decision(skip=reason, confidence=conf, evidence=[e for e in ev if e])
