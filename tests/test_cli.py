import subprocess
import sys

import engine
from engine.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert engine.__version__ in capsys.readouterr().out


def test_help_lists_commands(capsys):
    assert main([]) == 0
    assert "usage: llm-heuristics" in capsys.readouterr().out


def test_engine_imports_without_textual():
    code = (
        "import sys, pkgutil, importlib, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'textual' not in sys.modules, [k for k in sys.modules if k.startswith('textual')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
