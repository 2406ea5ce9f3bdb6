"""Hostile input (issue 14): no single message kills, wedges or bloats the engine.

Each test sends what once broke an engine, to a stdio engine (``engine serve --stdio``) and,
where it applies, to a detached engine's Unix socket, and checks both the error answer and
that the engine still answers ``status`` afterwards. The fuzz test sends thousands of random
and mutated JSON-RPC lines to one engine. Everything stays on pipes and Unix sockets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path
from typing import Any

import pytest

from engine.rpc import protocol

ROOT = Path(__file__).resolve().parents[1]
ENGINE = [sys.executable, "-m", "engine", "engine", "serve"]
SOCKET_MAX = 1 << 20  # the socket engine's --max-message (the stdio one keeps the 16 MiB default)
WAIT = 30.0


def _env(home: Path, debug: bool = False) -> dict[str, str]:
    # engines run in a temp cwd: this checkout is importable even where no install points here
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": path}
    env.pop("LLMH_ENGINE_MAX_MESSAGE", None)
    if debug:
        env["LLMH_ENGINE_TEST_METHODS"] = "1"
    else:
        env.pop("LLMH_ENGINE_TEST_METHODS", None)  # a hostile client gets no debug.* methods
    return env


class Link:
    """A raw protocol link: bytes out, decoded messages in (a reader thread; no client code)."""

    def __init__(self, rfile: Any, write: Any, close: Any, label: str) -> None:
        self.label = label
        self._write = write
        self._close = close
        self.q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.bad_lines: list[bytes] = []
        self.stash: list[dict[str, Any]] = []  # answers that arrived before they were awaited
        self.hello: dict[str, Any] | None = None
        self._next_id = 10_000_000
        threading.Thread(target=self._pump, args=(rfile,), daemon=True).start()
        first = self.next_message()
        assert first.get("method") == "hello", first
        self.hello = first["params"]

    def _pump(self, rfile: Any) -> None:
        try:
            for line in iter(rfile.readline, b""):
                try:
                    msg = json.loads(line.decode("utf-8"))
                except ValueError:
                    self.bad_lines.append(line[:200])
                    continue
                if isinstance(msg, dict) and msg.get("method") in ("heartbeat", "log"):
                    continue
                self.q.put(msg)
        except (OSError, ValueError):
            pass
        self.q.put(None)

    def send(self, data: bytes | dict[str, Any]) -> None:
        if isinstance(data, dict):
            data = json.dumps(data).encode() + b"\n"
        self._write(data)

    def next_message(self, timeout: float = WAIT) -> dict[str, Any]:
        msg = self.q.get(timeout=timeout)
        assert msg is not None, f"{self.label}: the engine closed the link"
        return msg

    def wait_for(self, pred: Any, timeout: float = WAIT) -> dict[str, Any]:
        """The first message matching ``pred``; answers to other requests are kept for later
        (requests run concurrently: their answers come in any order)."""
        for i, msg in enumerate(self.stash):
            if pred(msg):
                return self.stash.pop(i)
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                msg = self.next_message(max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if pred(msg):
                return msg
            seen.append(msg)
            if msg.get("id") is not None:
                self.stash.append(msg)
        raise AssertionError(f"{self.label}: no matching message; saw {seen[-5:]}")

    def parse_error(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next error answer without an id (a line that was not a usable request)."""
        return self.wait_for(lambda m: "error" in m and m.get("id") is None, timeout)["error"]

    def answer(self, id_: Any, timeout: float = WAIT) -> dict[str, Any]:
        return self.wait_for(lambda m: m.get("id") == id_ and "method" not in m, timeout)

    def call(self, method: str, params: Any = None, timeout: float = WAIT) -> dict[str, Any]:
        self._next_id += 1
        self.send(protocol.request(self._next_id, method, params))
        return self.answer(self._next_id, timeout)

    def error_of(self, method: str, params: Any = None) -> dict[str, Any]:
        msg = self.call(method, params)
        assert "error" in msg, f"{method} {params!r:.200}: expected an error, got {msg!r:.300}"
        return msg["error"]

    def assert_alive(self) -> None:
        """The engine answers ``status`` and ``hello`` on this link."""
        st = self.call("status")
        assert st["result"]["pid"] == self.hello["pid"], st  # type: ignore[index]
        assert self.call("hello")["result"]["protocol"] == protocol.PROTOCOL_VERSION

    def close(self) -> None:
        self._close()


def _clean(err: dict[str, Any]) -> None:
    """An error answer for bad input: no traceback, no internal error."""
    assert "traceback" not in json.dumps(err).lower(), err
    assert err["code"] != protocol.INTERNAL_ERROR, err


def start_stdio(root: Path, home: Path, *extra: str, debug: bool = False) -> tuple[Any, Link]:
    errlog = open(home / "stdio-engine.err", "wb")  # noqa: SIM115 - closed by the fixture
    p = subprocess.Popen(
        [*ENGINE, "--stdio", "--heartbeat", "0.5", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errlog,
        cwd=root,
        env=_env(home, debug),
    )
    assert p.stdin is not None

    def write(data: bytes) -> None:
        p.stdin.write(data)  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]

    def close() -> None:
        try:
            p.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        errlog.close()

    return p, Link(p.stdout, write, close, "stdio")


class SocketEngine:
    """``engine serve --socket`` in the foreground (the detached engine's own loop)."""

    def __init__(self, root: Path, home: Path) -> None:
        self.home = home
        self.errlog = open(home / "socket-engine.err", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *ENGINE,
                "--socket",
                "--name",
                "hostile",
                "--heartbeat",
                "0.5",
                "--idle-timeout",
                "600",
                "--root",
                str(root),
                "--max-message",
                str(SOCKET_MAX),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.errlog,
            stderr=self.errlog,
            cwd=root,
            env=_env(home),
        )
        rdv = home / ".llm-heuristics" / "hostile.json"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if rdv.exists():
                try:
                    self.info = json.loads(rdv.read_text())
                except ValueError:
                    self.info = {}
                if self.info.get("pid") == self.proc.pid and os.path.exists(
                    self.info.get("socket", "")
                ):
                    break
            assert self.proc.poll() is None, (home / "socket-engine.err").read_text()
            time.sleep(0.05)
        else:
            raise AssertionError("the socket engine did not start")

    def raw(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(WAIT)
        s.connect(self.info["socket"])
        return s

    def link(self) -> Link:
        s = self.raw()
        s.sendall(protocol.encode(protocol.notification("$/auth", {"token": self.info["token"]})))
        s.settimeout(None)

        def close() -> None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

        return Link(s.makefile("rb"), s.sendall, close, "socket")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.errlog.close()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("hostile")
    root, home = base / "root", base / "home"
    root.mkdir()
    home.mkdir()
    return root, home


@pytest.fixture(scope="module")
def socket_engine(dirs):
    root, home = dirs
    eng = SocketEngine(root, home)
    yield eng
    eng.stop()


@pytest.fixture(scope="module", params=["stdio", "socket"])
def link(request, dirs, socket_engine):
    """One engine per transport for the module: every test must leave it alive."""
    root, home = dirs
    if request.param == "stdio":
        p, lk = start_stdio(root, home, "--root", str(root))
        yield lk
        lk.close()
        assert p.returncode is not None
    else:
        lk = socket_engine.link()
        yield lk
        lk.close()


# --- one message at a time --------------------------------------------------------------------


def build_workspace(out: Path, subjects: int = 1) -> Path:
    """The demo series, grouped and mapped by the rules (tests/workspace_helpers.py)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # an installed package named 'tests' may shadow tests.*
        sys.path.insert(0, here)
    from tests.workspace_helpers import build_workspace as build

    return build(out, subjects=subjects)


def _deep(n: int, id_: int = 1) -> bytes:
    return (
        b'{"jsonrpc": "2.0", "id": %d, "method": "status", "params": {"a": ' % id_
        + b"[" * n
        + b"]" * n
        + b"}}\n"
    )


def test_deep_nesting_is_refused_and_the_engine_keeps_serving(link):
    # 100k-deep: the JSON parser's recursion limit (once a RecursionError that killed the loop)
    link.send(_deep(100_000))
    err = link.parse_error()
    assert err["code"] == protocol.INVALID_REQUEST and "deep" in err["message"], err
    link.assert_alive()
    # deeper than the cap but parseable: refused, and answered under the request's id
    link.send(_deep(100, id_=77))
    err = link.answer(77)["error"]
    assert err["code"] == protocol.INVALID_REQUEST and "deep" in err["message"], err
    link.send(b"[" * 200_000 + b"\n")  # a batch of nothing but nesting
    assert link.parse_error()["code"] == protocol.INVALID_REQUEST
    link.assert_alive()


@pytest.mark.parametrize(
    "params",
    [
        {"last_seq": 5},
        {"last_seq": [[1, "x"]]},
        {"last_seq": [[{}, 1]]},
        {"last_seq": [[1, 2, 3]]},
        {"last_seq": [5]},
        {"last_seq": {"1": "two"}},
        {"last_seq": [[1, -1]]},
        {"session": 5},
        {"session": ["x"]},
        ["session", "x"],
    ],
)
def test_malformed_resume_gets_invalid_params(link, params):
    err = link.error_of("$/resume", params)
    assert err["code"] == protocol.INVALID_PARAMS, err
    assert "$/resume" in err["message"]
    # as a notification (no id) it is dropped, never fatal
    link.send({"jsonrpc": "2.0", "method": "$/resume", "params": params})
    link.assert_alive()


def test_valid_resume_still_works(link):
    res = link.call("$/resume", {"session": "nope", "last_seq": [[1, 3]]})["result"]
    assert res["unknown"] == [1]


@pytest.mark.parametrize("params", [["token"], {"token": 5}, {"token": None}, {}])
def test_malformed_auth_and_cancel_get_answers(link, params):
    err = link.error_of("$/auth", params)
    assert err["code"] == protocol.INVALID_PARAMS, err
    err = link.error_of("$/cancelRequest", params)
    assert err["code"] == protocol.INVALID_PARAMS, err
    link.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": params})
    link.assert_alive()


def test_preauth_garbage_on_the_socket_is_refused(socket_engine, link):
    """Before ``$/auth`` the engine reads one short line: a bad one gets an error and a close."""
    if link.label != "socket":
        pytest.skip("the socket's handshake")
    pid = socket_engine.proc.pid

    def rss_kib() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    before = rss_kib()
    cases = [
        b'{"jsonrpc": "2.0", "method": "$/auth", "params": ["token"]}\n',
        b'{"jsonrpc": "2.0", "id": 1, "method": "$/auth", "params": {"token": 5}}\n',
        b'{"jsonrpc": "2.0", "method": "$/auth", "params": {"token": "wrong"}}\n',
        b'{"jsonrpc": "2.0", "id": 1, "method": "status"}\n',
        b"[" * 100_000 + b"\n",
        b"\xff\xfe\n",
        None,  # 64 MiB without a newline: the engine must stop reading and close
    ]
    for case in cases:
        s = socket_engine.raw()
        try:
            if case is None:
                chunk = b"x" * (1 << 20)
                try:
                    for _ in range(64):
                        s.sendall(chunk)
                except OSError:
                    pass  # the engine closed the connection: what we want
            else:
                s.sendall(case)
            data = b""
            while b"\n" not in data:
                got = s.recv(1 << 16)
                if not got:
                    break
                data += got
        finally:
            s.close()
        msg = json.loads(data.split(b"\n", 1)[0])
        assert msg["error"]["code"] == protocol.AUTH_FAILED, (case, msg)
        assert "hello" not in data.decode("utf-8", "replace")
    assert rss_kib() - before < 48 * 1024, "the engine buffered an unauthenticated line"
    link.assert_alive()  # the authenticated client was never disturbed


def test_overlong_line_is_skipped_with_a_parse_error(link):
    limit = SOCKET_MAX if link.label == "socket" else protocol.DEFAULT_MAX_MESSAGE
    # one valid request, just over the limit (no newline for a while: sent in pieces)
    link.send(b'{"jsonrpc": "2.0", "id": 5, "method": "status", "params": {"pad": "')
    chunk = b"x" * (1 << 20)
    for _ in range(limit // len(chunk) + 1):
        link.send(chunk)
    link.send(b'"}}\n')
    err = link.parse_error()
    assert err["code"] == protocol.PARSE_ERROR and "longer than" in err["message"], err
    link.assert_alive()
    # a message just under the limit is still read (and answered for what it is)
    body = b'{"jsonrpc": "2.0", "id": 6, "method": "status", "params": {"pad": "%s"}}\n'
    line = body % (b"y" * (limit - len(body) - 10))
    link.send(line)
    err = link.answer(6)["error"]
    assert err["code"] == protocol.INVALID_PARAMS and "pad" in err["message"], err
    link.assert_alive()


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"x": NaN}}\n',
        b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"x": 1e400}}\n',
        b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"x": -Infinity}}\n',
        b'{"jsonrpc": "2.0", "id": 1, "method": "status", "params": {"x": ' + b"9" * 5000 + b"}}\n",
        b'{"jsonrpc": "2.0", "id": 1, "method": "st\xffatus"}\n',
        b'{"jsonrpc": "2.0", "id": 1, "method": "status"\n',
    ],
)
def test_unparseable_numbers_and_bytes_are_parse_errors(link, line):
    link.send(line)
    err = link.parse_error()
    assert err["code"] == protocol.PARSE_ERROR, err
    link.assert_alive()


def test_lone_surrogates_are_answered_as_valid_utf8(link):
    link.send(b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "no.such\\udfff"}\n')
    msg = link.answer("\ud800")
    assert msg["error"]["code"] == protocol.METHOD_NOT_FOUND
    assert not link.bad_lines
    link.assert_alive()


# --- params of every method ---------------------------------------------------------------------

ENGINE_METHOD_CASES = [
    ("hello", {"x": 1}, "x"),
    ("hello", [1], "positional"),
    ("status", {"verbose": True}, "verbose"),
    ("shutdown", {"now": True}, "now"),
    ("shutdown", [1, 2], "positional"),
    ("model.backends", {"x": None}, "x"),
    ("model.list", {"probe": "yes"}, "probe"),
    ("model.list", {"probe": None}, "probe"),
    ("model.load", {"backend": 5, "model": "m"}, "backend"),
    ("model.load", {"backend": "rules", "model": None}, "model"),
    ("model.load", {"backend": "x", "model": "m", "options": [1]}, "options"),
    ("model.load", {}, "backend"),
    ("model.unload", {"id": 5}, "id"),
    ("model.unload", {"id": ["a"]}, "id"),
    ("model.chat", {"messages": 5}, "messages"),
    ("model.chat", {"messages": [5]}, "messages"),
    ("model.chat", {"messages": [], "options": "fast"}, "options"),
]


@pytest.mark.parametrize(("method", "params", "named"), ENGINE_METHOD_CASES)
def test_engine_methods_check_params(link, method, params, named):
    err = link.error_of(method, params)
    assert err["code"] == protocol.INVALID_PARAMS, err
    assert named in err["message"], err
    _clean(err)
    link.assert_alive()  # a refused shutdown did not stop the engine


def _wrong_values(tp: Any) -> list[Any]:
    """JSON values that do not fit the annotation ``tp`` (null only when it is not optional)."""
    args = typing.get_args(tp)
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)] if args and optional else [tp]
    base = inner[0] if len(inner) == 1 else tp
    origin = typing.get_origin(base) or base
    out: list[Any] = [] if optional else [None]
    if origin is str:
        out += [5, ["a"], {"a": 1}]
    elif origin is bool:
        out += ["yes", 1]
    elif origin is int:
        out += ["5", 1.5, [1]]
    elif origin is float:
        out += ["1.0", True]
    elif origin is list:
        out += ["a", {"a": 1}, 5]
    elif origin is dict:
        out += [[1], "a"]
    return out


def _api_params() -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(method, parameter, wrong value, other required params) for every API method."""
    import inspect

    from engine.api.methods import API, params_type

    cases = []
    for name, m in sorted(API.items()):
        ptype = params_type(m.func)
        if ptype is not None:
            hints = typing.get_type_hints(ptype)
            fields = [
                (f.name, hints[f.name], f.default is dataclasses.MISSING)
                for f in dataclasses.fields(ptype)
            ]
        else:
            hints = typing.get_type_hints(m.func)
            fields = [
                (p.name, hints.get(p.name, Any), p.default is inspect.Parameter.empty)
                for p in inspect.signature(m.func).parameters.values()
            ]
        for pname, tp, _ in fields:
            for wrong in _wrong_values(tp):
                others = {n: _fit(t, n) for n, t, req in fields if req and n != pname}
                cases.append((name, pname, wrong, others))
    return cases


def _fit(tp: Any, name: str) -> Any:
    """A value of the right type for a required parameter (paths inside the root)."""
    if type(None) in typing.get_args(tp):  # optional: its first other type
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    origin = typing.get_origin(tp) or tp
    if origin is str:
        return "sub" if name in {"out_dir", "input"} else "x"
    return {bool: False, int: 1, float: 1.0, list: [], dict: {}}.get(origin, "x")


def test_every_api_method_checks_param_types(link, dirs):
    """Wrong types (null included) are -32602 naming the parameter; null never becomes "None"."""
    cases = _api_params()
    assert len({c[0] for c in cases}) >= 15
    for i, (method, pname, wrong, others) in enumerate(cases):
        params = {**others, pname: wrong}
        link.send(protocol.request(f"api-{i}", method, params))
    for i, (method, pname, wrong, _) in enumerate(cases):
        err = link.answer(f"api-{i}").get("error")
        assert err is not None, (method, pname, wrong)
        assert err["code"] == protocol.INVALID_PARAMS, (method, pname, wrong, err)
        assert pname in err["message"], (method, pname, wrong, err)
        assert "'None'" not in err["message"], err
        _clean(err)
    link.assert_alive()


def test_unknown_and_positional_params_of_api_methods(link):
    from engine.api.methods import API

    for name in sorted(API):
        for params in ({"no_such_param": 1}, [1, 2, 3], ["x"]):
            err = link.error_of(name, params)
            assert err["code"] == protocol.INVALID_PARAMS, (name, params, err)
            _clean(err)
    link.assert_alive()


def test_preview_size_is_bounded(link, dirs):
    root, _ = dirs
    for size in (10**9, 536_870_912, 4, 0, -1, 2049, 10**300):
        err = link.error_of("preview", {"out_dir": str(root), "key": "k", "size": size})
        assert err["code"] == protocol.INVALID_PARAMS and "size" in err["message"], (size, err)
    for size in ("1e400", '"256"', "null", "true", "2.5"):
        link.send(
            b'{"jsonrpc": "2.0", "id": 99, "method": "preview", "params": '
            b'{"out_dir": %s, "key": "k", "size": %s}}\n'
            % (json.dumps(str(root)).encode(), size.encode())
        )
        msg = link.wait_for(lambda m: "error" in m and m.get("id") in (None, 99))
        err = msg["error"]
        assert err["code"] in (protocol.INVALID_PARAMS, protocol.PARSE_ERROR), (size, err)
    link.assert_alive()


# --- paths: only inside the engine's roots --------------------------------------------------------

PATH_CASES = [
    ("workspace.text", {"out_dir": "/etc", "name": "passwd"}, "out_dir"),
    ("workspace.view", {"out_dir": "/etc"}, "out_dir"),
    ("decisions", {"out_dir": "/"}, "out_dir"),
    ("group", {"out_dir": "/etc"}, "out_dir"),
    ("analyze", {"input": "/etc", "out_dir": "{root}/out"}, "input"),
    ("analyze", {"input": "{root}", "out_dir": "/var/tmp/../../etc/llmh"}, "out_dir"),
    ("generate", {"out_dir": "{root}", "output": "/etc/heuristic.py"}, "output"),
    ("validate", {"out_dir": "{root}", "heuristic": "/etc/passwd"}, "heuristic"),
    ("convert", {"out_dir": "{root}", "subject": "01", "bids_dir": "/etc/bids"}, "bids_dir"),
    ("convert", {"out_dir": "{root}", "subject": "01", "dicom_dir": "/usr"}, "dicom_dir"),
    (
        "convert",
        {"out_dir": "{root}", "subject": "01", "sidecar_metadata": "/etc/passwd"},
        "sidecar_metadata",
    ),
    ("preview", {"out_dir": "{root}", "key": "k", "dicom_dir": "/etc"}, "dicom_dir"),
    ("workspace.view", {"out_dir": "{root}/../.."}, "out_dir"),
    ("workspace.view", {"out_dir": "{root}/link-to-etc"}, "out_dir"),
    ("workspace.text", {"out_dir": "{root}/link-to-etc/..", "name": "etc/passwd"}, "out_dir"),
    ("workspace.view", {"out_dir": "{root}/a\u0000b"}, "out_dir"),
]


@pytest.mark.parametrize(("method", "params", "named"), PATH_CASES)
def test_paths_outside_the_roots_are_refused(link, dirs, method, params, named):
    root, _ = dirs
    link_etc = root / "link-to-etc"
    if not link_etc.is_symlink():
        link_etc.symlink_to("/etc")
    params = {k: v.replace("{root}", str(root)) for k, v in params.items()}
    err = link.error_of(method, params)
    assert err["code"] == protocol.INVALID_PARAMS, err
    assert named in err["message"], err
    assert "outside the engine's roots" in err["message"] or "usable path" in err["message"], err
    assert "root:" not in json.dumps(err), "contents of /etc/passwd leaked"
    link.assert_alive()


def test_paths_inside_the_roots_are_served(link, dirs):
    root, _ = dirs
    (root / "empty").mkdir(exist_ok=True)
    res = link.call("workspace.view", {"out_dir": str(root / "empty")})
    assert res["result"]["missing"], res  # served: it says which steps have not run
    res = link.call("workspace.view", {"out_dir": "empty"})  # relative to the engine's cwd
    assert res["result"]["missing"], res


def test_decide_refuses_a_group_id_that_is_a_path(link, dirs):
    root, _ = dirs
    out = root / f"ws-{link.label}"
    if not out.exists():
        build_workspace(out, subjects=1)
    for gid in ("../../x", "/etc/passwd", "..", "", "g\u0000"):
        err = link.error_of("decide", {"out_dir": str(out), "group_id": gid, "action": "skip"})
        assert err["code"] in (protocol.INVALID_PARAMS, -32006), (gid, err)  # -32006: NotFound
        assert "no group" in err["message"] or "group_id" in err["message"], err
    assert not (root / "x").exists() and not (out.parent.parent / "x").exists()
    view = link.call("workspace.view", {"out_dir": str(out)})["result"]
    assert view["review"]["decisions"] == {}
    link.assert_alive()


def test_default_roots_stdio_and_inprocess(tmp_path):
    """Without --root an engine serves home, its directory and the temp dir, nothing else."""
    from engine.rpc.client import EngineClient
    from engine.rpc.launchers import inprocess_transport

    home = tmp_path / "home"
    home.mkdir()
    p, lk = start_stdio(tmp_path, home)
    try:
        err = lk.error_of("workspace.text", {"out_dir": "/etc", "name": "passwd"})
        assert err["code"] == protocol.INVALID_PARAMS and "--root" in err["message"], err
        res = lk.call("workspace.view", {"out_dir": str(tmp_path)})
        assert "result" in res, res
        lk.assert_alive()
    finally:
        lk.close()
    with EngineClient("inprocess") as eng:
        from engine.errors import InvalidParams

        with pytest.raises(InvalidParams, match="outside the engine's roots"):
            eng.call("workspace.text", {"out_dir": "/etc", "name": "passwd"})
    tr = inprocess_transport(roots=[str(tmp_path)])
    assert tr.server.roots == (os.path.realpath(tmp_path),)  # type: ignore[attr-defined]
    tr.close()


def test_root_option_is_checked(tmp_path):
    r = subprocess.run(
        [*ENGINE, "--stdio", "--root", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=_env(tmp_path),
    )
    assert r.returncode == 2 and "not a directory" in r.stderr, r.stderr


# --- fuzz -------------------------------------------------------------------------------------


def _fuzz_value(rng: random.Random, depth: int = 0) -> Any:
    k = rng.randrange(16 if depth < 3 else 11)
    if k == 0:
        return None
    if k == 1:
        return rng.choice([True, False])
    if k == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**300, 7])
    if k == 3:
        return rng.choice([0.5, -1e308, 1e-320, 3.0])
    if k in (4, 5, 6):
        return rng.choice(
            [
                "",
                "x",
                "..",
                "../../x",
                "/etc/passwd",
                "~",
                "a/b",
                "é",
                "\u202e",
                "💥",
                "\x00",
                "NaN",
            ]
        )
    if k == 7:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(1, 30)))
    if k == 8:
        return "y" * rng.choice([1, 1000, 100_000])
    if k in (9, 10):
        return rng.choice(["sub", "sub/out", ".", "func/task-rest_bold", "anat/T1w", "rules"])
    if k in (11, 12):
        return [_fuzz_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["out_dir", "id", "name", "x", "", "size", "token"]): _fuzz_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def _templates() -> dict[str, dict[str, Any]]:
    """Plausible params of every method the fuzz engine serves (paths inside its root)."""
    return {
        "hello": {},
        "status": {},
        "model.backends": {},
        "model.unload": {"id": "rules:x"},
        "analyze": {"input": "sub", "out_dir": "sub/out", "n_cpus": 1, "progress": False},
        "group": {"out_dir": "ws"},
        "map": {"out_dir": "ws", "backend": "rules"},
        "generate": {"out_dir": "ws"},
        "validate": {"out_dir": "ws"},
        "convert": {"out_dir": "ws", "subject": "01", "dry_run": True, "validator": False},
        "review.remap": {"out_dir": "ws", "group_ids": ["g1"], "backend": "rules"},
        "decide": {"out_dir": "ws", "group_id": "g1", "action": "skip"},
        "undo": {"out_dir": "ws"},
        "redo": {"out_dir": "ws"},
        "decisions": {"out_dir": "ws"},
        "review.check_name": {"name": "func/task-rest_bold"},
        "workspace.view": {"out_dir": "ws"},
        "workspace.text": {"out_dir": "ws", "name": "grouping"},
        "heuristic.save": {"out_dir": "ws", "text": "x = 1\n", "name": "h2.py"},
        "preview": {"out_dir": "ws", "key": "k", "size": 64},
        "$/resume": {"session": "s", "last_seq": [[1, 0]]},
        "$/cancelRequest": {"id": 1},
        "$/auth": {"token": "t"},
    }


def _mutate(rng: random.Random, ids: Any) -> bytes:
    tmpl = _templates()
    method = rng.choice(sorted(tmpl))
    msg: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": next(ids),
        "method": method,
        "params": json.loads(json.dumps(tmpl[method])),
    }
    kind = rng.randrange(20)
    params = msg["params"]
    if kind <= 5 and params:  # a wrong value for a known parameter
        params[rng.choice(sorted(params))] = _fuzz_value(rng)
    elif kind == 6 and params:
        del params[rng.choice(sorted(params))]
    elif kind == 7:
        params[rng.choice(["bogus", "", "ctx", "self", "kwargs"])] = _fuzz_value(rng)
    elif kind == 8:
        msg["params"] = rng.choice([[], [1, 2], "x", 5, None, True, [params]])
    elif kind == 9:
        del msg[rng.choice(["jsonrpc", "id", "method", "params"])]
    elif kind == 10:
        msg[rng.choice(["jsonrpc", "id", "method"])] = _fuzz_value(rng)
    elif kind == 11:
        msg["method"] = rng.choice(["", "debug.exit", "debug.echo", "x" * 5000, "$/x", "☃"])
    text = json.dumps(msg, ensure_ascii=rng.random() < 0.5)
    raw = text.encode("utf-8", "surrogatepass")
    if kind == 12:  # truncated
        raw = raw[: rng.randrange(len(raw))]
    elif kind == 13:  # invalid UTF-8 bytes spliced in
        at = rng.randrange(len(raw))
        raw = raw[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80"]) + raw[at:]
    elif kind == 14:  # numbers JSON cannot hold
        bad = rng.choice([b"1e400", b"NaN", b"-Infinity", b"9" * 4400, b"-0", b"1" * 300])
        raw = raw.replace(b'"jsonrpc"', b'"n": ' + bad + b', "jsonrpc"', 1)
    elif kind == 15:  # deep nesting
        n = rng.choice([30, 65, 200, 999, 1001, 5000, 100_000])
        raw = raw.replace(b'"jsonrpc"', b'"n": ' + b"[" * n + b"]" * n + b', "jsonrpc"', 1)
    elif kind == 16:  # a batch
        raw = b"[" + b",".join([raw] * rng.randrange(0, 4)) + b"]"
    elif kind == 17:  # random bytes
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b" ")
    elif kind == 18:  # lone surrogates and control characters, escaped
        raw = raw.replace(b'"2.0"', b'"2.0", "s": "\\ud800\\u0000\\udfff"', 1)
    return raw.replace(b"\n", b" ") + b"\n"


def test_fuzz_engine_survives_thousands_of_hostile_messages(tmp_path):
    seed = int(os.environ.get("LLMH_FUZZ_SEED", "14"))
    rng = random.Random(seed)
    root, home = tmp_path / "root", tmp_path / "home"
    (root / "sub").mkdir(parents=True)
    home.mkdir()
    build_workspace(root / "ws", subjects=1)
    p, lk = start_stdio(root, home, "--root", str(root))
    t0 = time.monotonic()
    try:
        counter = iter(range(1, 10**9))
        total = 0
        for batch in range(50):
            for _ in range(45):
                lk.send(_mutate(rng, counter))
                total += 1
            # every batch: the engine still answers (and bad input never got an internal error)
            lk.send(protocol.request(f"probe-{batch}", "status"))
            got = []
            while True:
                m = lk.next_message()
                got.append(m)
                if m.get("id") == f"probe-{batch}" and "result" in m:
                    break
            for m in got:
                if "error" in m:
                    _clean(m["error"])
        assert total >= 2000
        assert p.poll() is None
        # nothing is left running or wedged: status shows no request in flight (steps settle)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            st = lk.call("status")["result"]
            if not st["requests"]:
                break
            time.sleep(0.2)
        assert not st["requests"], st
        lk.assert_alive()
        assert not lk.bad_lines, lk.bad_lines[:3]
        # its workspace is intact: every decision went through the journal, nothing escaped root
        assert lk.call("workspace.view", {"out_dir": "ws"})["result"]["groups"]
    finally:
        lk.close()
    print(f"fuzz: {total} messages, seed {seed}, {time.monotonic() - t0:.1f} s")
    assert p.returncode == 0


def test_launcher_passes_roots(tmp_path):
    from engine.rpc.launchers import make_launcher

    cmd = make_launcher("local", roots=[str(tmp_path), "/data"]).engine_command()
    assert cmd[-4:] == ["--root", str(tmp_path), "--root", "/data"]
    cmd = make_launcher("ssh:gpu01+detach", roots="/a /b").argv()
    assert "--root /a --root /b" in cmd[-1]
