"""apptainer.def: the sections and commands the engine relies on (no Apptainer needed)."""

from __future__ import annotations

import re
from pathlib import Path

DEF = Path(__file__).resolve().parents[1] / "apptainer.def"


def parse_def(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Header keywords (``Bootstrap: docker``) and ``%section`` bodies, as Apptainer reads them."""
    header: dict[str, str] = {}
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^%(\w+)(.*)$", line)
        if m:
            current = m.group(1)
            sections[current] = ""
            continue
        if current is None:
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition(":")
                header[key.strip()] = value.strip()
        else:
            sections[current] += line + "\n"
    return header, sections


def test_apptainer_def_sections_and_commands():
    header, sec = parse_def(DEF.read_text())
    assert header["Bootstrap"] == "docker"
    assert header["From"].startswith("nvidia/cuda:") and "runtime" in header["From"]
    for name in ("files", "environment", "post", "runscript", "test", "labels", "help"):
        assert name in sec, f"%{name} missing"
    assert re.search(r"^\s*\.\s+/opt/llm-heuristics\s*$", sec["files"], re.M)
    post = sec["post"]
    assert "python3.11" in post and "dcm2niix" in post
    assert '"/opt/llm-heuristics[all]"' in post
    assert "bids-validator" in post and "nodejs" in post
    assert "/opt/venv/bin" in sec["environment"]
    assert 'exec llm-heuristics "$@"' in sec["runscript"]
    assert "llm-heuristics --version" in sec["test"]
    assert "engine serve --stdio" in sec["test"] and '"method":"hello"' in sec["test"]
