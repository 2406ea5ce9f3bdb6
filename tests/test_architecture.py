"""The layer contracts (import-linter, in pyproject.toml) and the import cycles that are gone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
grimp = pytest.importorskip("grimp")


@pytest.fixture(scope="module")
def graph():  # type: ignore[no-untyped-def]
    return grimp.build_graph("engine", "tui")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "engine.cli",
            "engine.rpc.server",
        ),  # cli -> client -> launchers -> server -> methods -> cli
        ("engine.heuristic.convert", "engine.heuristic.report"),
        ("engine.llm.backend", "engine.llm.llamacpp"),
        ("engine.llm.backend", "engine.llm.transformers_backend"),
        ("engine.llm.backend", "engine.llm.ollama_backend"),
        ("engine.llm.backend", "engine.llm.openai_backend"),
        ("engine.mapping", "engine.review"),  # was: heuristic/inputs -> mapping -> review -> inputs
    ],
)
def test_no_import_cycle(graph, a: str, b: str) -> None:  # type: ignore[no-untyped-def]
    there = graph.find_shortest_chain(importer=a, imported=b)
    back = graph.find_shortest_chain(importer=b, imported=a)
    assert not (there and back), f"cycle: {there} and back {back}"


def test_scan_does_not_import_the_cli(graph) -> None:  # type: ignore[no-untyped-def]
    chains = graph.find_shortest_chains(importer="engine.scan", imported="engine.cli")
    assert not chains, chains


def test_engine_imports_without_textual() -> None:
    code = (
        "import sys, importlib, pkgutil, engine\n"
        "sys.modules['textual'] = None\n"
        "import engine.cli, engine.api.methods, engine.rpc.server\n"
        "assert not any(m == 'tui' or m.startswith('tui.') for m in sys.modules), 'tui imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_layer_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    res = subprocess.run([exe], capture_output=True, text=True, cwd=ROOT, check=False)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_client_result_types_match_the_api_functions() -> None:
    """The TUI rebuilds results from RESULTS (no step code): it must say what the API returns."""
    from engine.api.methods import API, result_type
    from engine.api.types import RESULTS

    assert set(API) == set(RESULTS)
    for name in API:
        assert str(RESULTS[name]) == str(result_type(name)), name
