"""The one typed engine API: decisions reach validate/convert, every front end sees the same
effective mapping, OUT's tables round-trip any text, and the RPC layer checks types/versions."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api import steps
from engine.api.review import workspace_view
from engine.api.types import PROTOCOL_VERSION, DecideParams, MapParams
from engine.cli import main
from engine.errors import InvalidParams, ProtocolMismatch
from engine.mapping.effective import effective
from engine.model import Group, Mapping, SeriesAssignment, SeriesInfo
from engine.rpc import protocol
from engine.rpc.client import EngineClient
from engine.rpc.launchers import make_launcher
from engine.rpc.protocol import RpcError
from engine.serial import to_json
from engine.workspace import ASSIGNMENTS_TSV, MAPPED_TSV, MAPPING_REPORT, Workspace

# --- a small synthetic study, analysed/grouped/mapped once ------------------------------------


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(DICOM folder, OUT after analyze/group/map/generate) of a one-subject synthetic study."""
    from engine.synth import generate_study

    root = tmp_path_factory.mktemp("api")
    generate_study(root / "s", subjects=1)
    dicom, out = root / "s" / "dicom", root / "OUT"
    assert main(["analyze", str(dicom), str(out), "--no-progress"]) == 0
    assert main(["group", str(out)]) == 0
    assert main(["map", str(out)]) == 0
    return dicom, out


def _copy(template: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(template, dest)
    return dest


def _converted_group(out: Path, datatype: str = "anat") -> tuple[str, list[str]]:
    """A group the rules convert (of ``datatype``) and the bids paths of its series."""
    ws = Workspace(out)
    paths: dict[str, list[str]] = {}
    for a in ws.read_assignments():
        if a.bids_path:
            paths.setdefault(a.group_id, []).append(a.bids_path)
    for m in ws.read_mapped():
        if m.datatype == datatype and not m.is_skip and m.group_id in paths:
            return m.group_id, paths[m.group_id]
    raise AssertionError(f"no converted {datatype} group in {out}")


# --- (1) a decision reaches validate and convert ----------------------------------------------


def test_skip_decision_reaches_validate_and_convert(mapped, tmp_path, capsys) -> None:
    _, template = mapped
    out = _copy(template, tmp_path / "OUT")
    sub = Workspace(out).read_series()[0].subject
    assert main(["generate", str(out)]) == 0  # the heuristic from before the decision
    gid, paths = _converted_group(out)
    capsys.readouterr()
    assert main(["convert", str(out), "--subject", sub, "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert all(p.split("/")[-1] + ".nii.gz" in planned for p in paths)

    assert main(["decide", str(out), gid, "--skip", "--reason", "not wanted"]) == 0
    assert "journalled" in capsys.readouterr().out
    # the heuristic generated before the skip still converts the group: validate says so
    assert main(["validate", str(out)]) == 1
    diff = capsys.readouterr().out
    assert diff.startswith("FAILED") and "[extra]" in diff and f"(group {gid})" in diff
    res = steps.validate(str(out))
    assert not res.ok and res.counts.get("extra") == len(paths)
    # generated again, the heuristic leaves it out; validate passes; a dry run plans it no more
    assert main(["generate", str(out)]) == 0
    capsys.readouterr()
    assert main(["validate", str(out)]) == 0
    assert capsys.readouterr().out.startswith("OK")
    assert main(["convert", str(out), "--subject", sub, "--dry-run"]) == 0
    planned = capsys.readouterr().out
    assert not any(p.split("/")[-1] in planned for p in paths)
    rows = {a.series_id: a for a in Workspace(out).read_assignments() if a.group_id == gid}
    assert rows and all(not a.bids_path and a.skip_reason == "not wanted" for a in rows.values())
    # and undone, it is converted again, everywhere
    assert main(["decide", str(out), "--undo"]) == 0
    capsys.readouterr()
    assert main(["validate", str(out)]) == 1  # the heuristic from while it was skipped
    assert "[missing]" in capsys.readouterr().out
    assert main(["generate", str(out)]) == 0


# --- (2) CLI, in-process engine and local engine: one effective mapping --------------------------


def _without_times(obj: Any) -> Any:
    """JSON with the wall-clock ``time`` of journal decisions left out (all else compared)."""
    if isinstance(obj, dict):
        is_decision = "action" in obj and "group_id" in obj and "seq" in obj
        return {k: _without_times(v) for k, v in obj.items() if not (is_decision and k == "time")}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def _state(out: Path) -> dict[str, Any]:
    ws = Workspace(out)
    files = {n: ws.path(n).read_bytes() for n in (MAPPED_TSV, ASSIGNMENTS_TSV, MAPPING_REPORT)}
    return {
        "files": files,
        "effective": _without_times(to_json(effective(ws))),
        "view": _without_times(to_json(workspace_view(str(out)))),
    }


def _decisions(out: Path) -> list[DecideParams]:
    t1, _ = _converted_group(out, "anat")
    func, _ = _converted_group(out, "func")
    return [
        DecideParams(str(out), func, "skip", skip_reason="motion; | tabs\there"),
        DecideParams(str(out), t1, "edit", name="anat/acq-review_T1w", note="a note, with; |"),
        DecideParams(str(out), t1, "edit", name="anat/acq-undone_T1w"),
    ]


def test_same_effective_mapping_through_cli_inprocess_and_local(mapped, tmp_path) -> None:
    _, template = mapped
    out = tmp_path / "OUT"  # the same path each time: even paths in reports must match
    states = {}

    _copy(template, out)
    for d in _decisions(out):
        argv = ["decide", d.out_dir, d.group_id]
        argv += ["--skip", "--reason", d.skip_reason] if d.action == "skip" else ["--name", d.name]
        argv += ["--reason", d.note] if d.note else []
        assert main(argv) == 0
    assert main(["decide", str(out), "--undo"]) == 0
    states["cli"] = _state(out)

    for spec in ("inprocess", "local"):
        _copy(template, out)
        with EngineClient(spec) as c:
            for d in _decisions(out):
                view = c.api("decide", d)
                assert view.changed is not None and view.changed.group_id == d.group_id
            assert c.api("undo", {"out_dir": str(out)}).can_redo
            remote_view = c.api("workspace.view", {"out_dir": str(out)})
        states[spec] = _state(out)
        # what the engine sent is what this process computes from the same files
        assert _without_times(to_json(remote_view)) == states[spec]["view"]

    assert states["cli"]["files"] == states["inprocess"]["files"] == states["local"]["files"]
    for what in ("effective", "view"):
        a, b, c = (json.dumps(states[k][what], sort_keys=True) for k in states)
        assert a == b == c, what
    mapped_tsv = states["cli"]["files"][MAPPED_TSV].decode()
    assert "acq-review_T1w" in mapped_tsv and "acq-undone" not in mapped_tsv
    assert "motion; | tabs\\there" in mapped_tsv or "motion; | tabs\there" in mapped_tsv


# --- (3) any text round-trips through OUT's tables --------------------------------------------

TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
) | st.sampled_from([";", "|", ",", "\t", "\n", "\r\n", '"', "'", 'a;b|c,"d"\te\nf', "é≠😀"])
# Cells a reader trims (a BIDS datatype/suffix/path has no surrounding blanks): stripped text.
STRIPPED = TEXT.map(str.strip)
FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=64)
INT = st.integers(min_value=0, max_value=10**9)
OPT_FLOAT = st.none() | FLOAT
OPT_INT = st.none() | INT


@st.composite
def series_infos(draw: st.DrawFn) -> SeriesInfo:
    from dataclasses import fields

    kwargs: dict[str, Any] = {}
    for f in fields(SeriesInfo):
        t = str(f.type)
        if t == "str":
            kwargs[f.name] = draw(TEXT)
        elif t == "int":
            kwargs[f.name] = draw(INT)
        elif t == "bool":
            kwargs[f.name] = draw(st.booleans())
        elif t == "float | None":
            kwargs[f.name] = draw(OPT_FLOAT)
        elif t == "int | None":
            kwargs[f.name] = draw(OPT_INT)
        elif t == "tuple[str, ...]":  # heudiconv's image_type: CS values, trimmed when read
            kwargs[f.name] = tuple(draw(st.lists(STRIPPED, max_size=4)))
        elif t == "list[str]":
            kwargs[f.name] = draw(st.lists(TEXT, max_size=4))
        elif t == "list[int]":
            kwargs[f.name] = draw(st.lists(INT, max_size=4))
        elif t == "list[float]":
            kwargs[f.name] = draw(st.lists(FLOAT, max_size=4))
        else:  # pragma: no cover - a new field type: extend this strategy
            raise AssertionError(f"no strategy for SeriesInfo.{f.name}: {t}")
    return SeriesInfo(**kwargs)


JSONISH = st.recursive(
    st.none() | st.booleans() | INT | FLOAT | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
groups = st.builds(
    Group,
    group_id=TEXT,
    label=TEXT,
    series_keys=st.lists(TEXT, max_size=4),
    signature=st.dictionaries(TEXT, JSONISH, max_size=4),
    flags=st.lists(TEXT, max_size=3),
    series_flags=st.dictionaries(TEXT, st.lists(TEXT, max_size=3), max_size=3),
)
mappings = st.builds(
    Mapping,
    group_id=TEXT,
    datatype=STRIPPED,
    suffix=STRIPPED,
    entities=st.dictionaries(TEXT, TEXT, max_size=3),
    skip_reason=TEXT,
    confidence=FLOAT,
    evidence=st.lists(TEXT, max_size=4),
    source=st.sampled_from(["rules", "llm", "user"]),
    intended_for=st.lists(TEXT, max_size=3),
    rationale=TEXT,
    echoes=st.integers(min_value=0, max_value=64),
    extra_suffixes=st.lists(TEXT, max_size=3),
)
assignments = st.builds(
    SeriesAssignment,
    subject=TEXT,
    session=TEXT,
    series_id=TEXT,
    group_id=TEXT,
    bids_path=STRIPPED,
    skip_reason=TEXT,
    extra_paths=st.lists(TEXT, max_size=3),
)


def _universal(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


ROUND_TRIP = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@ROUND_TRIP
@given(series=st.lists(series_infos(), min_size=1, max_size=3))
def test_series_round_trip_any_text(tmp_path, series) -> None:
    ws = Workspace(tmp_path / "rt-series")
    ws.write_series(series)
    assert ws.read_series() == series


@ROUND_TRIP
@given(gs=st.lists(groups, min_size=1, max_size=3), report=TEXT)
def test_groups_round_trip_any_text(tmp_path, gs, report) -> None:
    ws = Workspace(tmp_path / "rt-groups")
    ws.root.mkdir(exist_ok=True)
    ws.write_groups(gs, report)
    assert ws.read_groups() == gs
    assert ws.read_text("grouping") == _universal(report)  # a text file, read as text


@ROUND_TRIP
@given(
    ms=st.lists(mappings, min_size=1, max_size=3),
    gs=st.lists(groups, max_size=3),
    assigned=st.lists(assignments, max_size=4),
    series=st.lists(series_infos(), max_size=2),
    report=TEXT,
)
def test_mappings_and_assignments_round_trip_any_text(
    tmp_path, ms, gs, assigned, series, report
) -> None:
    ws = Workspace(tmp_path / "rt-mappings")
    ws.root.mkdir(exist_ok=True)
    ws.write_proposals(ms)
    assert ws.read_proposals() == ms
    # the effective tables: one mapped row per group (its mapping, or "not mapped")
    by_gid = {m.group_id: m for m in ms}
    gs = [Group(m.group_id, f"label {i}") for i, m in enumerate(by_gid.values())] + [
        g for g in gs if g.group_id not in by_gid
    ]
    want = [by_gid.get(g.group_id) or Mapping(g.group_id, skip_reason="not mapped") for g in gs]
    ws.write_effective(gs, list(by_gid.values()), assigned, series, report)
    assert ws.read_mapped() == want
    assert ws.read_assignments() == assigned
    assert ws.read_text("mapping") == _universal(report)


# --- (4) `;` and `|` in a protocol name ----------------------------------------------------------


def _dwi_study() -> list[SeriesInfo]:
    common = dict(
        subject="01",
        patient_id="01",
        manufacturer="SIEMENS",
        model_name="Prisma",
        field_strength=3.0,
        modality="MR",
        sop_class="MR",
        date="20240101",
    )
    t1 = SeriesInfo(
        series_id="2-t1_mprage",
        series_number=2,
        dcm_dir_name="2-t1_mprage",
        example_dcm_file="/data/01/2/IM0001.dcm",
        series_files=176,
        dim1=256,
        dim2=256,
        dim3=176,
        TR=2.3,
        TE=2.98,
        protocol_name="t1_mprage",
        series_description="t1_mprage",
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
        sequence_name="*tfl3d1_16ns",
        mr_acquisition_type="3D",
        inversion_time=900.0,
        flip_angle=9.0,
        n_slices=176,
        series_uid="1.2.3.2",
        time="090100.000000",
        **common,
    )
    weird = "ep2d_diff; b1000|AP, 64dir"
    dwi = SeriesInfo(
        series_id=f"5-{weird}",
        series_number=5,
        dcm_dir_name=f"5-{weird}",
        example_dcm_file="/data/01/5/IM0001.dcm",
        series_files=65,
        dim1=128,
        dim2=128,
        dim3=60,
        dim4=65,
        TR=8.0,
        TE=80.0,
        protocol_name=weird,
        series_description=weird,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"),  # the b-values say DWI
        sequence_name="*ep_b1000#64",
        mr_acquisition_type="2D",
        n_volumes=65,
        bvalues=[0.0, 1000.0],
        n_diffusion_directions=64,
        pe_axis="COL",
        pe_direction="j-",
        n_slices=60,
        series_uid="1.2.3.5",
        time="091500.000000",
        **common,
    )
    return [t1, dwi]


def test_semicolon_and_bar_in_protocol_name_keep_the_group(tmp_path) -> None:
    from engine.heuristic.validate import load_heuristic, run_heuristic

    out = tmp_path / "OUT"
    series = _dwi_study()
    Workspace(out).write_series(series)
    assert steps.group(str(out)).n_groups == 2
    ws = Workspace(out)
    (dwi_group,) = [g for g in ws.read_groups() if any(";" in k for k in g.series_keys)]
    assert dwi_group.series_keys == ["01||5-ep2d_diff; b1000|AP, 64dir"]
    res = steps.map_(MapParams(out_dir=str(out)))
    assert res.n_converted == 2
    (prop,) = [m for m in ws.read_proposals() if m.group_id == dwi_group.group_id]
    assert prop.datatype == "dwi" and prop.suffix == "dwi"
    assert "b-values [0.0, 1000.0]" in prop.evidence  # one item, commas and all
    (mapped_row,) = [m for m in ws.read_mapped() if m.group_id == dwi_group.group_id]
    assert mapped_row.evidence == prop.evidence
    (a,) = [a for a in ws.read_assignments() if a.group_id == dwi_group.group_id]
    assert a.bids_path == "sub-01/dwi/sub-01_dwi"
    gen = steps.generate(steps.GenerateParams(out_dir=str(out)))
    assert gen.ok, gen.report
    val = steps.validate(str(out))
    assert val.ok and val.counts == {"ok": 2}, val.diff
    produced, errors = run_heuristic(load_heuristic(Path(gen.path)), series)
    assert not errors
    assert produced[series[1].key] == ["sub-01/dwi/sub-01_dwi"]  # the series is converted
    assert produced[series[0].key] == ["sub-01/anat/sub-01_T1w"]


# --- (5) the RPC layer: types, protocol version, test-only methods -----------------------------


def test_wrong_param_types_are_invalid_params_and_engine_keeps_answering(tmp_path) -> None:
    with EngineClient("local") as c:
        for method, params, name in [
            ("group", {"out_dir": 5}, "out_dir"),
            ("map", {"out_dir": str(tmp_path), "groups": "g01"}, "groups"),
            ("map", {"out_dir": str(tmp_path), "llm_all": "yes"}, "llm_all"),
            ("decide", {"out_dir": str(tmp_path), "group_id": ["g"], "action": "skip"}, "group_id"),
            ("preview", {"out_dir": str(tmp_path), "key": "k", "size": "big"}, "size"),
            ("validate", {"out_dir": str(tmp_path), "bogus": 1}, "bogus"),
            ("convert", {"out_dir": str(tmp_path)}, "subject"),
        ]:
            with pytest.raises(InvalidParams) as ei:
                c.call(method, params, timeout=60)
            assert ei.value.code == protocol.INVALID_PARAMS == -32602
            assert name in ei.value.message, (method, ei.value.message)
            assert c.call("status", timeout=30)["pid"] == c.hello["pid"]  # still answering
        assert c.api("workspace.view", {"out_dir": str(tmp_path)}).missing


def test_hello_protocol_and_mismatch(tmp_path) -> None:
    with EngineClient("inprocess") as c:
        assert c.hello["protocol"] == protocol.PROTOCOL_VERSION == str(PROTOCOL_VERSION)
    fake = tmp_path / "old_engine.py"
    fake.write_text(
        "import json, sys, time\n"
        "print('a login banner', flush=True)\n"
        "hello = {'protocol': '2', 'engine_version': '0.0.1', 'methods': ['cli']}\n"
        "print(json.dumps({'jsonrpc': '2.0', 'method': 'hello', 'params': hello}), flush=True)\n"
        "sys.stdin.read()\n"
    )
    client = EngineClient(make_launcher("local", command=[sys.executable, str(fake)]))
    with pytest.raises(ProtocolMismatch) as ei:
        client.start()
    msg = str(ei.value)
    assert "speaks protocol 2" in msg and f"this client {protocol.PROTOCOL_VERSION}" in msg
    assert "0.0.1" in msg
    assert "install the same llm-heuristics version" in msg
    assert isinstance(ei.value, protocol.LlmhError)
    client.close()


def test_debug_methods_only_for_tests(monkeypatch) -> None:
    from engine.rpc.methods import method_table

    assert "debug.exit" in method_table(debug=True)
    assert not [m for m in method_table(debug=False) if m.startswith("debug.")]
    monkeypatch.delenv("LLMH_ENGINE_TEST_METHODS", raising=False)
    assert "debug.exit" not in method_table()
    # an engine started without the variable neither lists nor serves them, and keeps serving
    monkeypatch.setenv("LLMH_ENGINE_TEST_METHODS", "0")
    with EngineClient("local") as c:
        assert not [m for m in c.hello["methods"] if m.startswith("debug.")]
        with pytest.raises(RpcError) as ei:
            c.call("debug.exit", {"code": 9}, timeout=30)
        assert ei.value.code == protocol.METHOD_NOT_FOUND
        assert c.call("status", timeout=30)["pid"] == c.hello["pid"]
    with EngineClient("inprocess") as c:
        assert "debug.echo" not in c.hello["methods"]
        with pytest.raises(RpcError) as ei:
            c.call("debug.echo", {"x": 1})
        assert ei.value.code == protocol.METHOD_NOT_FOUND
