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


def test_engine_option_runs_step_on_that_engine(tmp_path):
    """``--engine local`` runs the step in an engine subprocess and writes the same files."""
    from engine.synth import generate_study

    generate_study(tmp_path / "study", subjects=1)
    dicom = str(tmp_path / "study" / "dicom")
    assert main(["analyze", dicom, str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["--engine", "local", "analyze", dicom, str(tmp_path / "b"), "--no-progress"]) == 0
    assert main(["group", str(tmp_path / "b"), "--engine=local"]) == 0
    name = "aggregated_dicominfo.tsv"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "b" / "aggregated_dicominfo_groups.tsv").exists()
    assert main(["--engine", "no-such-profile", "group", str(tmp_path / "b")]) != 0
