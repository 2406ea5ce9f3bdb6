"""The method table: the one place that knows which engine method runs which pipeline code.

Every handler takes the request context first, then the request's params by name. Pipeline
steps go through the same argument parser and ``func(args)`` as the command line (so a step
gives byte-identical files whether run by hand, in-process or on a GPU node); their stdout and
stderr are captured per request and streamed as ``output`` notifications, their log records
as ``log`` notifications. Steps run one at a time (they share the working directory and heavy
resources); queries, previews and status run concurrently.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import __version__
from engine import workspace as ws
from engine.errors import UserError
from engine.rpc import protocol
from engine.rpc.protocol import RpcError

log = logging.getLogger(__name__)


@dataclass
class Method:
    func: Callable[..., Any]
    doc: str = ""
    interruptible: bool = False  # a cancel raises KeyboardInterrupt in the worker thread


METHODS: dict[str, Method] = {}


def method(
    name: str, *, interruptible: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        METHODS[name] = Method(
            fn, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "", interruptible
        )
        return fn

    return deco


# --- hello / status / shutdown --------------------------------------------------------------

_GPU_CACHE: list[dict[str, Any]] | None = None


def detect_gpus() -> list[dict[str, Any]]:
    """GPUs from ``nvidia-smi``, else from torch when it is installed and a device node exists."""
    global _GPU_CACHE
    if _GPU_CACHE is not None:
        return _GPU_CACHE
    gpus: list[dict[str, Any]] = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [
                    smi,
                    "--query-gpu=index,name,memory.total,driver_version",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            ).stdout
            for line in out.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) >= 4:
                    gpus.append(
                        {
                            "index": int(parts[0]),
                            "name": parts[1],
                            "memory_mib": float(parts[2])
                            if parts[2].replace(".", "").isdigit()
                            else None,
                            "driver": parts[3],
                            "source": "nvidia-smi",
                        }
                    )
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    has_node = (
        os.path.exists("/dev/nvidia0") or os.path.exists("/dev/kfd") or sys.platform == "darwin"
    )
    if not gpus and has_node and importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                for i in range(torch.cuda.device_count()):
                    p = torch.cuda.get_device_properties(i)
                    gpus.append(
                        {
                            "index": i,
                            "name": p.name,
                            "memory_mib": p.total_memory / 2**20,
                            "source": "torch",
                        }
                    )
            elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
                gpus.append(
                    {"index": 0, "name": "Apple MPS", "memory_mib": None, "source": "torch"}
                )
        except Exception:  # noqa: BLE001 - a broken torch means no GPU for us
            pass
    _GPU_CACHE = gpus
    return gpus


def quick_backends() -> dict[str, str]:
    """Backend name -> "" when its library is installed (found, not imported: hello stays fast)."""
    from engine.llm.backend import BACKEND_MODULES

    out: dict[str, str] = {}
    for name, module, extra in BACKEND_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        out[name] = "" if found else f"{module} not installed; install [{extra}]"
    out["openai"] = ""
    if importlib.util.find_spec("engine.llm.backend") is None:
        return {k: "engine.llm is not part of this engine" for k in out}
    return out


def hello_info(server: Any, conn: Any = None) -> dict[str, Any]:
    return {
        "protocol": protocol.PROTOCOL_VERSION,
        "engine_version": __version__,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "mode": server.mode,
        "session": conn.session if conn is not None else None,
        "cwd": os.getcwd(),
        "gpus": detect_gpus(),
        "backends": quick_backends(),
        "methods": sorted(server.methods),
        "heartbeat": server.heartbeat,
        "time": time.time(),
    }


@method("hello")
def m_hello(ctx: Any) -> dict[str, Any]:
    """The hello notification's content, on request."""
    return hello_info(ctx.server, ctx.server.active)


@method("status")
def m_status(ctx: Any) -> dict[str, Any]:
    """What the engine is doing: requests in flight, models loaded, uptime."""
    srv = ctx.server
    with srv._out:
        reqs = [
            {
                "id": s.id,
                "method": s.method,
                "running": not s.answered,
                "seq": s.seq,
                "started": s.started,
            }
            for s in srv._states.values()
            if not s.answered and s is not ctx.state
        ]
    models = srv.resources.get("models", {})
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "mode": srv.mode,
        "uptime": time.time() - srv.started,
        "requests": reqs,
        "models": [{"id": k, "loaded": getattr(b, "loaded", False)} for k, b in models.items()],
        "pipeline_busy": _PIPELINE_LOCK.locked(),
    }


@method("shutdown")
def m_shutdown(ctx: Any) -> dict[str, Any]:
    """Stop the engine (after this answer is sent); loaded models are unloaded."""

    def stop() -> None:
        for b in ctx.server.resources.get("models", {}).values():
            with contextlib.suppress(Exception):
                b.unload()
        ctx.server.stop()

    ctx.after_answer(stop)
    return {"ok": True}


# --- running CLI steps ------------------------------------------------------------------------

_PIPELINE_LOCK = threading.Lock()
_captures: dict[int, dict[str, Any]] = {}


class _Router(io.TextIOBase):
    """A ``sys.stdout``/``sys.stderr`` that sends a capturing thread's text to its request."""

    def __init__(self, fallback: Any, name: str) -> None:
        self.fallback = fallback
        self.name = name

    def write(self, s: str) -> int:
        target = _captures.get(threading.get_ident(), {}).get(self.name)
        if target is not None:
            return target.write(s)
        return self.fallback.write(s)

    def flush(self) -> None:
        target = _captures.get(threading.get_ident(), {}).get(self.name)
        if target is not None:
            target.flush()
        with contextlib.suppress(Exception):
            self.fallback.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.fallback, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


class _Capture:
    """Collects a stream's text and streams whole lines as ``output`` notifications."""

    def __init__(self, ctx: Any, name: str) -> None:
        self.ctx = ctx
        self.name = name
        self.parts: list[str] = []
        self._pending = ""

    def write(self, s: str) -> int:
        self.parts.append(s)
        self._pending += s
        if "\n" in self._pending:
            head, _, self._pending = self._pending.rpartition("\n")
            self.ctx.notify(protocol.OUTPUT, {"stream": self.name, "text": head + "\n"})
        return len(s)

    def flush(self) -> None:
        if self._pending:
            self.ctx.notify(protocol.OUTPUT, {"stream": self.name, "text": self._pending})
            self._pending = ""

    def text(self) -> str:
        return "".join(self.parts)


@contextlib.contextmanager
def _captured(ctx: Any) -> Iterator[dict[str, _Capture]]:
    caps = {"stdout": _Capture(ctx, "stdout"), "stderr": _Capture(ctx, "stderr")}
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, _Router):
        sys.stdout = _Router(sys.stdout, "stdout")
    if not isinstance(sys.stderr, _Router):
        sys.stderr = _Router(sys.stderr, "stderr")
    _captures[threading.get_ident()] = caps
    try:
        yield caps
    finally:
        _captures.pop(threading.get_ident(), None)
        for c in caps.values():
            c.flush()
        if not _captures:
            sys.stdout, sys.stderr = saved


def available_commands() -> set[str]:
    from engine.cli import build_parser

    parser = build_parser()
    return set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def run_cli(ctx: Any, argv: list[str], cwd: str | None = None) -> dict[str, Any]:
    """Run one ``llm-heuristics`` command in this thread, as :func:`engine.cli.main` would."""
    from engine.cli import build_parser

    argv = [str(a) for a in argv]
    if argv and argv[0] == "engine":
        raise RpcError(
            protocol.INVALID_PARAMS, "the engine cannot run `engine` commands inside itself"
        )
    rc = 0
    user_error = ""
    server = ctx.server
    with _PIPELINE_LOCK, _captured(ctx) as caps:
        old_cwd = os.getcwd()
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        command = argv[0] if argv else ""
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            command = args.command or command
            if args.func is None:
                parser.print_help()
            else:
                rc = int(args.func(args) or 0)
        except UserError as exc:
            user_error = str(exc)
            print(f"llm-heuristics {command}: error: {exc}", file=sys.stderr)
            rc = 2
        except SystemExit as exc:  # argparse errors, --help, --version
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        finally:
            with contextlib.suppress(OSError):
                os.chdir(old_cwd)
            server.install_logging()  # a step that called logging.basicConfig(force=True)
    return {
        "rc": rc,
        "stdout": caps["stdout"].text(),
        "stderr": caps["stderr"].text(),
        "user_error": user_error,
    }


@method("cli", interruptible=True)
def m_cli(ctx: Any, argv: list[str], cwd: str | None = None) -> dict[str, Any]:
    """Run any ``llm-heuristics`` command (argv without the program name); returns rc/stdout/stderr."""
    return run_cli(ctx, argv, cwd)


def _step(ctx: Any, argv: list[str], cwd: str | None = None) -> dict[str, Any]:
    if argv[0] not in available_commands():
        raise RpcError(
            protocol.NOT_AVAILABLE, f"the pipeline step {argv[0]!r} is not available in this engine"
        )
    res = run_cli(ctx, argv, cwd)
    if res["rc"] != 0:
        code = protocol.USER_ERROR if res["user_error"] else protocol.COMMAND_FAILED
        msg = (
            res["user_error"]
            or f"{argv[0]} failed with status {res['rc']}: {res['stderr'].strip()[-2000:]}"
        )
        raise RpcError(code, msg, res)
    return res


def _args(extra: list[str] | None) -> list[str]:
    return [str(a) for a in (extra or [])]


@method("analyze", interruptible=True)
def m_analyze(
    ctx: Any, dicom_dir: str, out_dir: str, args: list[str] | None = None, cwd: str | None = None
) -> dict[str, Any]:
    """Scan a DICOM tree into OUT/aggregated_dicominfo.tsv."""
    return _step(ctx, ["analyze", dicom_dir, out_dir, *_args(args)], cwd)


@method("group", interruptible=True)
def m_group(
    ctx: Any, out_dir: str, args: list[str] | None = None, cwd: str | None = None
) -> dict[str, Any]:
    """Group series by acquisition protocol."""
    return _step(ctx, ["group", out_dir, *_args(args)], cwd)


@method("map", interruptible=True)
def m_map(
    ctx: Any, out_dir: str, args: list[str] | None = None, cwd: str | None = None
) -> dict[str, Any]:
    """Map groups to BIDS names (rules, then the LLM where unsure)."""
    return _step(ctx, ["map", out_dir, *_args(args)], cwd)


@method("generate", interruptible=True)
def m_generate(
    ctx: Any,
    out_dir: str,
    output: str | None = None,
    args: list[str] | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Write the heudiconv heuristic (default OUT/heuristic.py)."""
    output = output or str(Path(out_dir) / "heuristic.py")
    return _step(ctx, ["generate", out_dir, "-o", output, *_args(args)], cwd)


@method("validate", interruptible=True)
def m_validate(
    ctx: Any,
    out_dir: str,
    heuristic: str | None = None,
    args: list[str] | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Check the heuristic against the series table."""
    heuristic = heuristic or str(Path(out_dir) / "heuristic.py")
    return _step(ctx, ["validate", out_dir, heuristic, *_args(args)], cwd)


@method("convert", interruptible=True)
def m_convert(
    ctx: Any,
    out_dir: str,
    subject: str,
    session: str | None = None,
    args: list[str] | None = None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Convert one subject (and session) to BIDS with heudiconv."""
    argv = ["convert", out_dir, "--subject", subject]
    if session:
        argv += ["--session", session]
    return _step(ctx, [*argv, *_args(args)], cwd)


# --- workspace state ------------------------------------------------------------------------


def _out(out_dir: str) -> Path:
    p = Path(out_dir).expanduser()
    if not p.is_dir():
        raise UserError(f"{p} is not a folder")
    return p


def _series_dict(s: Any) -> dict[str, Any]:
    d = dataclasses.asdict(s)
    d["key"] = s.key
    return d


@method("workspace.series")
def m_series(ctx: Any, out_dir: str) -> dict[str, Any]:
    """The series table (aggregated_dicominfo.tsv) as objects, each with its ``key``."""
    try:
        series = ws.read_series(_out(out_dir))
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    return {"series": [_series_dict(s) for s in series]}


def _table(out_dir: str, reader_name: str, filename: str) -> list[Any]:
    out = _out(out_dir)
    reader = getattr(ws, reader_name, None)
    if reader is not None:
        return [dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in reader(out)]
    path = out / filename
    if not path.exists():
        raise UserError(f"{path} not found")
    from engine.atomic import read_tsv

    return read_tsv(path)


@method("workspace.groups")
def m_groups(ctx: Any, out_dir: str) -> dict[str, Any]:
    """The groups (OUT/aggregated_dicominfo_groups.tsv)."""
    return {"groups": _table(out_dir, "read_groups", ws.GROUPS_TSV)}


@method("workspace.mappings")
def m_mappings(ctx: Any, out_dir: str) -> dict[str, Any]:
    """The mappings (OUT/aggregated_dicominfo_mapped.tsv)."""
    return {"mappings": _table(out_dir, "read_mappings", ws.MAPPED_TSV)}


REPORTS = {"grouping": ws.GROUPING_REPORT, "mapping": ws.MAPPING_REPORT}


@method("workspace.report")
def m_report(ctx: Any, out_dir: str, name: str) -> dict[str, Any]:
    """A report as text: ``grouping``, ``mapping`` or any file name inside OUT."""
    out = _out(out_dir).resolve()
    path = (out / REPORTS.get(name, name)).resolve()
    if out != path and out not in path.parents:
        raise RpcError(protocol.INVALID_PARAMS, f"{name!r} is outside {out}")
    if not path.is_file():
        raise UserError(f"{path} not found")
    return {
        "name": name,
        "path": str(path),
        "text": path.read_text(encoding="utf-8", errors="replace"),
    }


@method("workspace.files")
def m_files(ctx: Any, out_dir: str, limit: int = 10000) -> dict[str, Any]:
    """Files under OUT (relative path, size, mtime), for change detection."""
    out = _out(out_dir)
    files = []
    for root, dirs, names in os.walk(out):
        dirs.sort()
        for n in sorted(names):
            p = Path(root) / n
            with contextlib.suppress(OSError):
                st = p.stat()
                files.append(
                    {"path": str(p.relative_to(out)), "size": st.st_size, "mtime": st.st_mtime}
                )
            if len(files) >= limit:
                return {"files": files, "truncated": True}
    return {"files": files, "truncated": False}


# --- preview -----------------------------------------------------------------------------------


@method("preview")
def m_preview(
    ctx: Any,
    out_dir: str | None = None,
    key: str | None = None,
    series_id: str | None = None,
    path: str | None = None,
    dicom_dir: str | None = None,
    size: int = 256,
    low: float = 1.0,
    high: float = 99.0,
) -> dict[str, Any]:
    """A PNG (base64) of a series' middle slice, windowed at the ``low``/``high`` percentiles.

    The series is found by ``key`` (or ``series_id``) in OUT; its files by an absolute example
    path, else under ``dicom_dir`` (the folder given to analyze). ``path`` previews a file/folder.
    """
    from engine.rpc import preview

    if path is None:
        if not out_dir or not (key or series_id):
            raise RpcError(
                protocol.INVALID_PARAMS, "give out_dir and key (or series_id), or a path"
            )
        series = ws.read_series(_out(out_dir))
        match = [
            s for s in series if (key and s.key == key) or (not key and s.series_id == series_id)
        ]
        if not match:
            raise UserError(f"no series {key or series_id!r} in {out_dir}")
        try:
            png, info = preview.series_preview(
                match[0], size=size, low=low, high=high, dicom_dir=dicom_dir
            )
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
    else:
        png, info = preview.path_preview(path, size=size, low=low, high=high)
    return {"png_base64": base64.b64encode(png).decode("ascii"), **info}


# --- models ------------------------------------------------------------------------------------


def _llm() -> Any:
    try:
        return importlib.import_module("engine.llm.backend")
    except ImportError as exc:
        raise RpcError(
            protocol.NOT_AVAILABLE, f"model backends are not available in this engine: {exc}"
        ) from None


def _models(ctx: Any) -> dict[str, Any]:
    return ctx.server.resources.setdefault("models", {})


@method("model.backends")
def m_backends(ctx: Any) -> dict[str, Any]:
    """Backend name -> "" when usable here, else why not (imports the libraries)."""
    return {"backends": _llm().available_backends()}


@method("model.list")
def m_model_list(ctx: Any) -> dict[str, Any]:
    """Loaded models, backends, and the model files the engine knows (when engine.llm lists them)."""
    llm = _llm()
    out: dict[str, Any] = {
        "loaded": [
            {"id": k, "backend": b.name, "model": b.model, "loaded": b.loaded}
            for k, b in _models(ctx).items()
        ],
        "backends": quick_backends(),
    }
    for mod_name in ("engine.llm.models", "engine.llm.registry", "engine.llm"):
        with contextlib.suppress(ImportError):
            mod = importlib.import_module(mod_name)
            lister = getattr(mod, "list_models", None)
            if callable(lister):
                out["models"] = lister()
                break
    del llm
    return out


@method("model.load", interruptible=True)
def m_model_load(
    ctx: Any, backend: str, model: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a model once; later requests reuse it (also after a detach/resume)."""
    llm = _llm()
    mid = f"{backend}:{model}"
    models = _models(ctx)
    b = models.get(mid)
    if b is None:
        try:
            b = llm.create_backend(backend, model, **(options or {}))
        except llm.BackendError as exc:
            raise RpcError(protocol.NOT_AVAILABLE, str(exc)) from None
    try:
        b.load(progress=lambda f, m: ctx.progress(f, m))
    except llm.BackendError as exc:
        raise RpcError(protocol.NOT_AVAILABLE, str(exc)) from None
    models[mid] = b
    return {"id": mid, "loaded": True}


@method("model.unload")
def m_model_unload(ctx: Any, id: str | None = None) -> dict[str, Any]:
    """Unload one model (or all)."""
    models = _models(ctx)
    ids = [id] if id else list(models)
    for mid in ids:
        b = models.pop(mid, None)
        if b is None:
            raise UserError(f"no loaded model {mid!r}")
        b.unload()
    return {"unloaded": ids}


@method("model.chat")
def m_model_chat(
    ctx: Any,
    messages: list[dict[str, Any]],
    id: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stream a chat completion from a loaded model as ``delta`` notifications; returns the text."""
    llm = _llm()
    models = _models(ctx)
    if not models:
        raise RpcError(protocol.NOT_AVAILABLE, "no model is loaded; call model.load first")
    b = models[id] if id else next(iter(models.values()))
    msgs = [llm.Message(m.get("role", "user"), m.get("content", "")) for m in messages]
    opts = llm.GenerationOptions(**(options or {}))
    parts = []
    for d in b.stream_chat(msgs, opts, ctx.cancel_event):
        parts.append(d)
        ctx.delta(d)
    return {"text": "".join(parts), "cancelled": ctx.cancelled}


# --- debugging and tests -------------------------------------------------------------------------


@method("debug.echo")
def m_echo(ctx: Any, **params: Any) -> Any:
    """Return the params (framing tests)."""
    return params


@method("debug.sleep", interruptible=True)
def m_sleep(ctx: Any, seconds: float = 1.0) -> dict[str, Any]:
    """Sleep (cooperatively cancellable)."""
    ctx.cancel_event.wait(seconds)
    ctx.check()
    return {"slept": seconds}


@method("debug.stream")
def m_stream(ctx: Any, count: int = 10, interval: float = 0.0, text: str = "tok") -> dict[str, Any]:
    """Stream ``count`` deltas ``text<i>`` (a model stand-in); returns how many were sent."""
    sent = 0
    for i in range(count):
        if ctx.cancel_event.wait(interval) if interval > 0 else ctx.cancelled:
            break
        if ctx.delta(f"{text}{i} "):
            sent += 1
    return {"sent": sent, "text": "".join(f"{text}{i} " for i in range(sent))}


@method("debug.log")
def m_log(ctx: Any, message: str, level: str = "INFO") -> dict[str, Any]:
    """Emit a log record (log-forwarding tests)."""
    logging.getLogger("engine.debug").log(
        getattr(logging, level.upper(), logging.INFO), "%s", message
    )
    return {"ok": True}


@method("debug.print")
def m_print(ctx: Any, text: str) -> dict[str, Any]:
    """Print to fd 1 from Python and from a child process (stdout protection tests)."""
    print(text)
    sys.stdout.flush()
    subprocess.run(["echo", text], check=False)
    os.write(1, (text + "\n").encode())
    return {"ok": True}


@method("debug.exit")
def m_exit(ctx: Any, code: int = 3, message: str = "engine exiting on request") -> None:
    """Die at once (engine-death tests); refused in-process, where it would kill the client."""
    if ctx.server.mode == "inprocess":
        raise RpcError(protocol.INVALID_PARAMS, "debug.exit is refused by an in-process engine")
    print(message, file=sys.__stderr__, flush=True)
    os._exit(code)


# Review methods live in their own module; importing it registers them in METHODS.
from engine.rpc import review_methods  # noqa: E402,F401
