"""The engine protocol: hello, every method, cancel races, bad input, engine death, launchers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.errors import Cancelled, InvalidParams, NotAvailable, NotFound, UserError
from engine.rpc import protocol
from engine.rpc.client import EngineClient
from engine.rpc.launchers import make_launcher, parse_spec
from engine.rpc.methods import METHODS
from engine.rpc.protocol import EngineGone, RpcError

ENGINE = [sys.executable, "-m", "engine", "engine", "serve", "--stdio", "--heartbeat", "0.2"]


def _raw_engine() -> subprocess.Popen:
    return subprocess.Popen(
        ENGINE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _send(p: subprocess.Popen, obj: object) -> None:
    assert p.stdin is not None
    data = obj if isinstance(obj, bytes) else (json.dumps(obj) + "\n").encode()
    p.stdin.write(data)
    p.stdin.flush()


def _read_until(p: subprocess.Popen, pred, limit: int = 200) -> list[dict]:
    assert p.stdout is not None
    out = []
    for _ in range(limit):
        line = p.stdout.readline()
        assert line, "engine closed its stdout"
        msg = json.loads(line)
        out.append(msg)
        if pred(msg):
            return out
    raise AssertionError(f"no matching message in {out}")


def _answer(msgs: list[dict], id_) -> dict:
    return next(m for m in msgs if m.get("id") == id_ and "method" not in m)


# --- framing --------------------------------------------------------------------------------------


def test_encode_decode_roundtrip_and_errors():
    msg = protocol.request(1, "x", {"a": float("nan"), "p": Path("/x"), "t": (1, 2)})
    line = protocol.encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = protocol.decode(line)
    assert back["params"] == {"a": None, "p": "/x", "t": [1, 2]}
    for bad, code in [
        (b"nope", protocol.PARSE_ERROR),
        (b"[]", protocol.INVALID_REQUEST),
        (b"3", protocol.INVALID_REQUEST),
        (b'{"jsonrpc":"1.0","method":"x"}', protocol.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","method":5}', protocol.INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":3}', protocol.INVALID_REQUEST),
        (b"\xff\xfe", protocol.PARSE_ERROR),
    ]:
        with pytest.raises(protocol.ProtocolError) as ei:
            protocol.decode(bad)
        assert ei.value.code == code, bad


# --- a real stdio engine --------------------------------------------------------------------------


def test_stdio_hello_first_and_stdout_protected():
    p = _raw_engine()
    try:
        assert p.stdout is not None
        hello = json.loads(p.stdout.readline())
        assert hello["method"] == "hello"
        h = hello["params"]
        assert h["protocol"] == protocol.PROTOCOL_VERSION
        for k in ("engine_version", "host", "gpus", "backends", "methods", "session", "pid"):
            assert k in h
        assert isinstance(h["gpus"], list)
        assert set(METHODS) <= set(h["methods"])
        # print(), a child process and os.write(1) must all land on stderr, never in the protocol
        _send(p, protocol.request(1, "debug.print", {"text": "NOISE-FROM-ENGINE"}))
        msgs = _read_until(p, lambda m: m.get("id") == 1)
        assert _answer(msgs, 1)["result"] == {"ok": True}
        # heartbeats arrive periodically
        msgs = _read_until(p, lambda m: m.get("method") == "heartbeat")
        assert "uptime" in msgs[-1]["params"]
        _send(p, protocol.request(2, "shutdown"))
        _read_until(p, lambda m: m.get("id") == 2)
        assert p.wait(timeout=10) == 0
        err = p.stderr.read().decode()  # type: ignore[union-attr]
        assert err.count("NOISE-FROM-ENGINE") == 3
    finally:
        p.kill()


def test_malformed_input_gets_errors_and_engine_keeps_serving():
    p = _raw_engine()
    try:
        assert p.stdout is not None
        p.stdout.readline()  # hello
        cases = [
            b"this is not json\n",
            b"[1, 2]\n",
            b'{"jsonrpc": "2.0"}\n',
            b'{"jsonrpc": "2.0", "id": 7, "method": "no.such.method"}\n',
            b'{"jsonrpc": "2.0", "id": 8, "method": "workspace.view", "params": {"bogus": 1}}\n',
            b'{"jsonrpc": "2.0", "id": 9, "method": "debug.sleep", "params": [1, 2, 3, 4]}\n',
            b"\n",
        ]
        for c in cases:
            _send(p, c)
        codes = {}
        for _ in range(6):
            m = _read_until(p, lambda m: "error" in m)[-1]
            codes.setdefault(m["id"], []).append(m["error"]["code"])
        assert sorted(codes[None]) == sorted(
            [protocol.PARSE_ERROR, protocol.INVALID_REQUEST, protocol.INVALID_REQUEST]
        )
        assert codes[7] == [protocol.METHOD_NOT_FOUND]
        assert codes[8] == [protocol.INVALID_PARAMS]
        assert codes[9] == [protocol.INVALID_PARAMS]
        _send(p, protocol.request(10, "status"))
        msgs = _read_until(p, lambda m: m.get("id") == 10)
        assert _answer(msgs, 10)["result"]["pid"] == p.pid
    finally:
        p.kill()


def test_large_messages_both_ways():
    big = "x" * (5 * 1024 * 1024) + "é"
    with EngineClient("local") as eng:
        assert eng.call("debug.echo", {"blob": big}, timeout=60)["blob"] == big


def test_noise_before_hello_is_skipped(tmp_path):
    # a remote shell's start-up files may print before the engine starts
    cmd = [
        "sh",
        "-c",
        'echo "Welcome to the cluster"; echo "{not json"; exec "$0" "$@"',
        sys.executable,
        "-m",
        "engine",
    ]
    with EngineClient(make_launcher("local", command=cmd)) as eng:
        assert eng.hello["protocol"] == protocol.PROTOCOL_VERSION
        assert "Welcome to the cluster" in eng.noise
        assert eng.call("status", timeout=30)["pid"] == eng.hello["pid"]


# --- in-process: every method --------------------------------------------------------------------


@pytest.fixture(scope="module")
def eng():
    with EngineClient("inprocess") as c:
        yield c


def _series_out(tmp_path: Path) -> Path:
    from engine.model import SeriesInfo
    from engine.workspace import GROUPING_REPORT, write_series

    out = tmp_path / "out"
    out.mkdir()
    write_series(
        out,
        [
            SeriesInfo(series_id="1-t1", subject="01", protocol_name="t1"),
            SeriesInfo(series_id="2-bold", subject="01"),
        ],
    )
    (out / GROUPING_REPORT).write_text("grouping report\n")
    return out


def test_workspace_methods(eng, tmp_path):
    out = _series_out(tmp_path)
    view = eng.call("workspace.view", {"out_dir": str(out)})
    series = view["series"]
    assert [s["series_id"] for s in series] == ["1-t1", "2-bold"]
    assert series[0]["key"] == "01||1-t1"
    assert any("not grouped yet" in m for m in view["missing"])  # what is missing, not an error
    assert (
        eng.call("workspace.text", {"out_dir": str(out), "name": "grouping"})["text"]
        == "grouping report\n"
    )
    text = eng.call("workspace.text", {"out_dir": str(out), "name": "aggregated_dicominfo.tsv"})
    assert text["text"].startswith("total_files_till_now\t")
    with pytest.raises(InvalidParams) as ei:
        eng.call("workspace.text", {"out_dir": str(out), "name": "../../etc/passwd"})
    assert ei.value.code == protocol.INVALID_PARAMS
    with pytest.raises(NotFound) as ei:
        eng.call("workspace.text", {"out_dir": str(out), "name": "mapping"})
    assert isinstance(ei.value, UserError) and "mapping_report.txt" in ei.value.message
    with pytest.raises(UserError) as ei:
        eng.call("workspace.view", {"out_dir": str(tmp_path / "missing")})
    assert ei.value.code == protocol.USER_ERROR


def test_status_hello_debug_methods(eng):
    st = eng.call("status")
    assert st["mode"] == "inprocess" and st["pid"] == os.getpid()
    assert eng.call("hello")["protocol"] == protocol.PROTOCOL_VERSION
    assert eng.call("debug.echo", {"a": [1, "b"]}) == {"a": [1, "b"]}
    assert eng.call("debug.sleep", {"seconds": 0.01}) == {"slept": 0.01}
    logs = []
    eng.call("debug.log", {"message": "hello-log"}, on_event=lambda m, p: logs.append((m, p)))
    assert [p["message"] for m, p in logs if m == "log"] == ["hello-log"]
    assert logs[0][1]["seq"] == 1 and logs[0][1]["request"]
    with pytest.raises(InvalidParams):
        eng.call("debug.exit")  # refused in-process


def test_steps_run_by_name_not_by_argv(eng, tmp_path, capsys):
    """No ``cli`` method (no argv round trip, no stdout capture): a CLI step on an engine is
    the API method of the same name, and the command prints from its typed result."""
    from engine.cli import main

    with pytest.raises(RpcError) as ei:
        eng.call("cli", {"argv": ["--version"]})
    assert ei.value.code == protocol.METHOD_NOT_FOUND
    out = _series_out(tmp_path)
    events = []
    res = eng.call("group", {"out_dir": str(out)}, on_event=lambda m, p: events.append((m, p)))
    assert (
        res["n_series"] == 2 and res["n_groups"] == 2 and "2 series -> 2 groups" in res["message"]
    )
    assert not [m for m, _ in events if m == "output"]
    assert main(["--engine", "inprocess", "group", str(out)]) == 0
    assert "2 series -> 2 groups" in capsys.readouterr().out
    with pytest.raises(SystemExit) as se:
        main(["--engine", "inprocess", "no-such-command"])
    assert se.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_model_methods_available_or_clear_error(eng):
    try:
        listed = eng.call("model.list")
    except NotAvailable as exc:
        assert exc.code == protocol.NOT_AVAILABLE and "not available" in exc.message
        return
    assert "loaded" in listed and "backends" in listed
    with pytest.raises(NotAvailable) as ei:
        eng.call("model.chat", {"messages": [{"role": "user", "content": "hi"}]})
    assert ei.value.code == protocol.NOT_AVAILABLE
    with pytest.raises(NotAvailable) as ei:
        eng.call("model.load", {"backend": "no-such-backend", "model": "x"})
    assert ei.value.code == protocol.NOT_AVAILABLE
    with pytest.raises(UserError):
        eng.call("model.unload", {"id": "nothing"})


def test_preview_png(eng, tmp_path):
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from engine.model import SeriesInfo
    from engine.workspace import write_series

    folder = tmp_path / "dicom" / "001_t1"
    folder.mkdir(parents=True)
    uid = generate_uid()
    for i in range(5):
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SeriesInstanceUID = uid
        ds.InstanceNumber = i + 1
        ds.Rows, ds.Columns = 40, 30
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = (np.arange(1200, dtype=np.uint16).reshape(40, 30) * (i + 1)).tobytes()
        ds.save_as(folder / f"IM{i:04d}.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    write_series(
        out,
        [
            SeriesInfo(
                series_id="1-t1",
                subject="01",
                example_dcm_file="IM0000.dcm",
                dcm_dir_name="001_t1",
                series_uid=uid,
                dim3=5,
            )
        ],
    )
    res = eng.call(
        "preview",
        {"out_dir": str(out), "key": "01||1-t1", "dicom_dir": str(tmp_path / "dicom"), "size": 64},
    )
    png = base64.b64decode(res["png_base64"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert res["info"]["file"].endswith("IM0002.dcm")  # the middle slice
    window = json.loads(res["info"]["window"])
    assert max(res["width"], res["height"]) == 64 and window[1] > window[0]
    from engine.vision.preview import path_preview  # a folder's preview (no longer an RPC mode)

    png2, _ = path_preview(str(folder), size=32)
    assert png2[:4] == b"\x89PNG"
    with pytest.raises(NotFound) as ei:
        eng.call(
            "preview", {"out_dir": str(out), "key": "01||1-t1"}
        )  # relative paths, no dicom_dir
    assert isinstance(ei.value, UserError) and "dicom-dir" in ei.value.message


# --- streaming and cancellation ------------------------------------------------------------------


def test_delta_stream_numbered(eng):
    events = []
    res = eng.call("debug.stream", {"count": 50}, on_event=lambda m, p: events.append(p))
    assert res["sent"] == 50
    assert [p["seq"] for p in events] == list(range(1, 51))
    assert "".join(p["text"] for p in events) == res["text"]


@pytest.mark.parametrize("spec", ["inprocess", "local"])
def test_cancel_race_drops_late_deltas(spec):
    with EngineClient(spec) as eng:
        for _ in range(10):
            got: list[int] = []
            cancelled_at: list[int] = []
            first = threading.Event()

            def on_event(m, p, got=got, first=first):
                got.append(p["seq"])
                first.set()

            call = eng.request(
                "debug.stream", {"count": 100000, "interval": 0.0005}, on_event=on_event
            )
            assert first.wait(30)
            call.cancel_request()
            cancelled_at.append(len(got))
            with pytest.raises(Cancelled) as ei:
                call.result(timeout=30)
            assert ei.value.code == protocol.REQUEST_CANCELLED
            time.sleep(0.05)
            assert len(got) == cancelled_at[0], "a delta arrived after cancel"
            assert got == list(range(1, len(got) + 1))
        # cancelling twice, or after the answer, is harmless
        call = eng.request("debug.sleep", {"seconds": 0.0})
        call.result(timeout=10)
        call.cancel_request()
        assert eng.call("status", timeout=10)["requests"] == []


def test_server_never_writes_after_cancel_answer():
    """At the wire: once -32800 is written, no notification of that request follows."""
    p = _raw_engine()
    try:
        assert p.stdout is not None
        p.stdout.readline()
        for rid in range(1, 6):
            _send(p, protocol.request(rid, "debug.stream", {"count": 100000, "interval": 0.0002}))
            _read_until(p, lambda m, rid=rid: m.get("params", {}).get("request") == rid)
            _send(p, protocol.notification(protocol.CANCEL, {"id": rid}))
            msgs = _read_until(
                p, lambda m, rid=rid: m.get("id") == rid and "error" in m, limit=100000
            )
            assert msgs[-1]["error"]["code"] == protocol.REQUEST_CANCELLED
            _send(p, protocol.request(100 + rid, "status"))
            after = _read_until(p, lambda m, rid=rid: m.get("id") == 100 + rid)
            assert not [m for m in after if m.get("params", {}).get("request") == rid]
    finally:
        p.kill()


def test_cancel_interrupts_a_cli_step(eng):
    call = eng.request("debug.sleep", {"seconds": 30})
    time.sleep(0.1)
    call.cancel_request()
    with pytest.raises(Cancelled) as ei:
        call.result(timeout=5)
    assert ei.value.code == protocol.REQUEST_CANCELLED


# --- engine death -------------------------------------------------------------------------------


def test_engine_death_fails_pending_with_clear_error():
    eng = EngineClient("local")
    eng.start()
    slow = eng.request("debug.sleep", {"seconds": 60})
    with pytest.raises(EngineGone) as ei:
        eng.call("debug.exit", {"code": 7, "message": "BOOM-engine-dying"}, timeout=30)
    msg = str(ei.value)
    assert "'local'" in msg and "exit status 7" in msg and "BOOM-engine-dying" in msg
    with pytest.raises(EngineGone):
        slow.result(timeout=10)
    with pytest.raises(EngineGone):
        eng.request("status")
    eng.close()


def test_engine_that_never_starts():
    cmd = [
        sys.executable,
        "-c",
        "import sys; print('cannot import torch: fake failure', file=sys.stderr); sys.exit(3)",
    ]
    with pytest.raises(EngineGone) as ei:
        EngineClient(make_launcher("local", command=cmd)).start()
    assert "fake failure" in str(ei.value) and "exit status 3" in str(ei.value)


def test_cli_engine_call_command():
    r = subprocess.run(
        [sys.executable, "-m", "engine", "engine", "call", "local", "debug.echo", '{"x": 1}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"x": 1}
    r = subprocess.run(
        [sys.executable, "-m", "engine", "engine", "call", "inprocess", "no.method"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "-32601" in r.stderr


# --- launchers ----------------------------------------------------------------------------------


def test_spec_parsing_and_composition():
    assert [(s.kind, s.arg) for s in parse_spec("ssh:gpu01+apptainer:/images/llmh.sif")] == [
        ("ssh", "gpu01"),
        ("apptainer", "/images/llmh.sif"),
    ]
    assert [(s.kind, s.arg) for s in parse_spec("slurm --gres=gpu:1 --time=1:00:00")] == [
        ("slurm", "--gres=gpu:1 --time=1:00:00")
    ]
    argv = make_launcher(
        "ssh:login01+slurm:--gres=gpu:1+apptainer:/img/llmh.sif", binds=["/data"]
    ).argv()
    assert argv[:2] == ["ssh", "-T"] and "BatchMode=yes" in argv and "login01" in argv
    remote = argv[-1]
    assert remote.startswith("srun --ntasks=1") and "--gres=gpu:1" in remote
    assert (
        "apptainer exec --nv --bind /data /img/llmh.sif llm-heuristics engine serve --stdio"
        in remote
    )
    assert "--pty" not in remote
    local = make_launcher("slurm:--gres=gpu:1").argv()
    i = local.index(sys.executable)
    assert local[0] == "srun" and local[i : i + 5] == [
        sys.executable,
        "-m",
        "engine",
        "engine",
        "serve",
    ]
    det = make_launcher("ssh:gpu01+detach")
    assert (
        det.can_resume
        and "serve --detach" in det.argv()[-1]
        and "engine bridge" in det.argv("bridge")[-1]
    )
    with pytest.raises(Exception, match="cannot be detached"):
        make_launcher("slurm:-p gpu+detach")
    with pytest.raises(Exception, match="unknown engine stage"):
        make_launcher("ssh:x+docker:y")
    with pytest.raises(Exception, match="needs an argument"):
        make_launcher("ssh")


def test_profiles_from_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "llm-heuristics").mkdir()
    (tmp_path / "llm-heuristics" / "config.toml").write_text(
        '[engines.gpu]\nspec = "ssh:gpu01+apptainer:/images/llmh.sif"\ncommand = "/opt/bin/llm-heuristics"\n'
        'ssh_options = ["-p", "2222"]\nbinds = ["/scratch"]\ndetach = true\n'
    )
    launcher = make_launcher("gpu")
    argv = launcher.argv()
    assert argv[argv.index("-p") + 1] == "2222"
    assert (
        "apptainer exec --nv --bind /scratch /images/llmh.sif /opt/bin/llm-heuristics engine serve --detach"
        in argv[-1]
    )
    assert launcher.can_resume
    with pytest.raises(Exception, match="no engine profile"):
        make_launcher("nosuchprofile")
