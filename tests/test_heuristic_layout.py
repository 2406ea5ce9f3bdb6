"""The heuristic's text does not depend on installed tools; what the CLI and reports say to a
person: help without RST or source paths, option help everywhere in ``demo``, the left-out rule
stated as it works, series named as on the scanner."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import _module_of, build_parser, command_modules
from engine.commands._helptext import plain
from engine.heuristic.compiler import compile_heuristic
from engine.heuristic.layout import blank_lines, table
from engine.heuristic.sidecars import LEAVE_OUT_DATATYPES
from engine.model import SeriesInfo

ROOT = Path(__file__).resolve().parents[1]

_COMPILE = """
import sys
sys.modules["ruff"] = None  # no ruff module either
from tests.test_heuristic import _study
from engine.heuristic.compiler import compile_heuristic
series, groups, maps = _study([("01", "1", 2, True), ("01", "2", 1, False)])
sys.stdout.write(compile_heuristic(series, groups, maps, title="t").source)
"""


def test_layout_is_the_same_without_ruff(tmp_path):
    from tests.test_heuristic import _study

    if shutil.which("ruff") is None:
        pytest.skip("ruff not installed: nothing to compare against")
    series, groups, maps = _study([("01", "1", 2, True), ("01", "2", 1, False)])
    with_ruff = compile_heuristic(series, groups, maps, title="t").source
    bare = tmp_path / "bin"  # a PATH holding only the interpreter
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bare), "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [str(bare / "python"), "-c", _COMPILE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout == with_ruff
    assert "INTENDED_FOR = {" in with_ruff and "\n\n\ndef infotodict(" in with_ruff


def test_layout_helpers():
    assert table("T", {}) == ["T = {}"]
    long = {"k": [f"item-{i:02d}-{'x' * 10}" for i in range(8)]}
    lines = table("T", long)
    assert lines[1] == "    'k': [" and lines[-2] == "    ]," and len(lines) == 12
    assert all(len(x) <= 100 for x in lines)
    src = 'X = 1\ndef f():\n    """a\ndef g(): in a string"""\n    return 1\nY = 2\n'
    out = blank_lines(src)
    assert (
        out == 'X = 1\n\n\ndef f():\n    """a\ndef g(): in a string"""\n    return 1\n\n\nY = 2\n'
    )
    compile(out, "x.py", "exec")


def _parsers(parser: argparse.ArgumentParser, path: str = "llm-heuristics"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _command(name: str) -> argparse.ArgumentParser:
    return dict(_parsers(build_parser([name])))[f"llm-heuristics {name}"]


def test_help_has_no_rst_or_source_paths():
    bad = ("``", ":mod:`", ":func:`", ":class:`", "engine/")
    seen = 0
    for name in command_modules():
        if not hasattr(importlib.import_module(_module_of(name)), "register"):
            continue  # a helper module, not a command
        for path, parser in _parsers(build_parser([name])):
            text = parser.format_help()
            seen += 1
            for b in bad:
                assert b not in text, f"{path} --help shows {b!r}"
    assert seen > 10
    assert plain("see ``OUT/x`` (see :mod:`engine.synth`).") == "see OUT/x."
    assert plain("a :func:`~engine.x.run` b. See engine/rpc/launchers.py.") == "a run b."


def test_demo_options_all_have_help():
    demo = _command("demo")
    for action in demo._actions:
        assert action.help, f"demo {action.option_strings or action.dest} has no help"


def test_convert_help_states_the_left_out_rule_as_it_works():
    conv = _command("convert")
    text = " ".join(conv.format_help().split())
    assert "left out of the dataset" in text and "others are kept in the dataset" in text
    for dt in LEAVE_OUT_DATATYPES:  # the datatypes sidecars.py really leaves out
        assert f"({dt}/)" in text
    assert "B0FieldIdentifier" in text


def test_grouping_report_names_series_as_on_the_scanner():
    from engine.grouping import group_series
    from tests.test_grouping import _bold

    def bold(sub: str, num: int, nvol: int) -> SeriesInfo:
        s = _bold(sub, num, "ep2d_bold_rest", nvol)
        return dataclasses.replace(s, series_description="rest [b]bold[/b]")

    res = group_series([bold("01", 3, 200), bold("01", 4, 200), bold("01", 13, 12)])
    flags = res.report.split("Series flags:")[1].strip().splitlines()
    assert flags == ["sub-01 series 13 'rest [b]bold[/b]': aborted:12/200"]
    assert "|" not in res.report.split("Series flags:")[1]
