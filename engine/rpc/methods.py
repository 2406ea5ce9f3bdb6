"""The engine's method table: the typed API (:mod:`engine.api.methods`) plus engine methods.

Every handler takes the request context first, then the request's params by name. API methods
are thin: params are checked against the API function's annotations (``-32602`` with the
parameter's name otherwise), the function runs, its result dataclass goes out as JSON. Steps
run one at a time (they share heavy resources); queries, previews and status run concurrently.
``debug.*`` methods are served only by an engine started for tests (``LLMH_ENGINE_TEST_METHODS=1``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import __version__
from engine.errors import InvalidParams, NotAvailable, StepFailed, UserError
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
        "roots": [str(r) for r in getattr(server, "roots", [])],  # where paths may point
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


# --- the typed API ---------------------------------------------------------------------------

_PIPELINE_LOCK = threading.Lock()


def _api_handler(name: str) -> Callable[..., Any]:
    from engine.api.methods import API, call

    step = API[name].step

    def handler(ctx: Any, **params: Any) -> Any:
        if not step:
            return call(name, params)
        with _PIPELINE_LOCK:
            return call(name, params)

    handler.__name__ = f"api_{name.replace('.', '_')}"
    return handler


def _register_api() -> None:
    from engine.api.methods import API

    for name, m in API.items():
        METHODS[name] = Method(
            _api_handler(name), m.doc, interruptible=m.step and not m.cooperative
        )


DEBUG_METHODS: dict[str, Method] = {}


def debug_method(name: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a test-only method (served when ``LLMH_ENGINE_TEST_METHODS=1``)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        method(name, **kw)(fn)
        DEBUG_METHODS[name] = METHODS.pop(name)
        return fn

    return deco


def method_table(debug: bool | None = None) -> dict[str, Method]:
    """What a server serves: the API and engine methods, ``debug.*`` only for tests."""
    if debug is None:
        debug = os.environ.get("LLMH_ENGINE_TEST_METHODS") == "1"
    return {**METHODS, **(DEBUG_METHODS if debug else {})}


# --- models ------------------------------------------------------------------------------------


def _llm() -> Any:
    try:
        return importlib.import_module("engine.llm.backend")
    except ImportError as exc:
        raise NotAvailable(f"model backends are not available in this engine: {exc}") from None


def _models(ctx: Any) -> dict[str, Any]:
    return ctx.server.resources.setdefault("models", {})


@method("model.backends")
def m_backends(ctx: Any) -> dict[str, Any]:
    """Backend name -> "" when usable here, else why not (imports the libraries)."""
    return {"backends": _llm().available_backends()}


def _loaded_entry(mid: str, b: Any) -> dict[str, Any]:
    return {
        "id": mid,
        "backend": b.name,
        "model": b.model,
        "loaded": b.loaded,
        "worker": getattr(b, "pid", None) is not None or hasattr(b, "last_error"),
        "pid": getattr(b, "pid", None),
        "last_error": getattr(b, "last_error", "") or "",
    }


@method("model.list")
def m_model_list(ctx: Any, probe: bool = False) -> dict[str, Any]:
    """Loaded models, backends, and the models installed where the engine runs.

    ``models`` lists installed GGUFs (also packaged ones), cached Hugging Face models and, with
    ``probe``, the Ollama / OpenAI-compatible servers' models; each says whether it can see
    images (``vision``). ``loaded`` says which run in a worker process (``pid``) and why a
    worker died (``last_error``).
    """
    _llm()
    out: dict[str, Any] = {
        "loaded": [_loaded_entry(k, b) for k, b in _models(ctx).items()],
        "backends": quick_backends(),
    }
    from engine.config import load_settings
    from engine.llm.inventory import inventory
    from engine.serial import to_json

    inv = inventory(load_settings(), probe_servers=probe)
    out["models"] = to_json(inv.models)
    out["installed_backends"] = to_json(inv.backends)
    return out


@method("model.load", interruptible=True)
def m_model_load(
    ctx: Any, backend: str, model: str, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load a model once; later requests reuse it (also after a detach/resume).

    llama-cpp and transformers models run in a worker process of the engine (a native crash
    there fails the request, not the engine); loading again after a crash starts a new worker.
    """
    llm = _llm()
    mid = f"{backend}:{model}"
    models = _models(ctx)
    b = models.get(mid)
    if b is None:
        try:
            b = llm.create_backend(backend, model, isolate=None, **(options or {}))
        except llm.BackendError as exc:
            raise NotAvailable(str(exc)) from None
        except TypeError as exc:  # an option of the wrong type for the backend
            raise InvalidParams(f"options: {exc}") from None
    try:
        b.load(progress=lambda f, m: ctx.progress(f, m))
    except llm.BackendError as exc:
        raise NotAvailable(str(exc), _died_data(mid, exc)) from None
    models[mid] = b
    return {"id": mid, "loaded": True, "pid": getattr(b, "pid", None)}


@method("model.unload")
def m_model_unload(ctx: Any, id: str | None = None) -> dict[str, Any]:
    """Unload one model (or all); a model's worker process ends."""
    models = _models(ctx)
    ids = [id] if id else list(models)
    for mid in ids:
        b = models.pop(mid, None)
        if b is None:
            raise UserError(f"no loaded model {mid!r}")
        b.unload()
    return {"unloaded": ids}


def _died_data(mid: str, exc: BaseException) -> dict[str, Any] | None:
    if not hasattr(exc, "returncode"):
        return None
    return {"model": mid, "worker_died": True, "signal": getattr(exc, "signal", None)}


def _decode_images(i: int, images: Any) -> list[bytes]:
    import base64
    import binascii

    if images is None:
        return []
    if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
        raise InvalidParams(f"messages[{i}].images: a list of base64 strings or data: URIs")
    out = []
    for j, text in enumerate(images):
        data = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
        try:
            out.append(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidParams(f"messages[{i}].images[{j}] is not base64") from None
    return out


@method("model.chat")
def m_model_chat(
    ctx: Any,
    messages: list[dict[str, Any]],
    id: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stream a chat completion from a loaded model as ``delta`` notifications; returns the text.

    A message may carry ``images`` (base64 PNG/JPEG/DICOM bytes or ``data:`` URIs) for models
    that see images. When the model's worker process dies, the request fails with a message
    that names the model, the signal and what to try; the engine goes on.
    """
    llm = _llm()
    models = _models(ctx)
    if not models:
        raise NotAvailable("no model is loaded; call model.load first")
    if id is not None and id not in models:
        raise NotAvailable(f"no loaded model {id!r}; loaded: {', '.join(models)}")
    mid = id if id is not None else next(iter(models))
    b = models[mid]
    msgs = [
        llm.Message(
            str(m.get("role", "user")),
            str(m.get("content", "")),
            _decode_images(i, m.get("images")),
        )
        for i, m in enumerate(messages)
    ]
    try:
        opts = llm.GenerationOptions(**(options or {}))
    except TypeError as exc:
        raise InvalidParams(f"options: {exc}") from None
    if not b.loaded:
        why = getattr(b, "last_error", "") or "it was unloaded"
        raise NotAvailable(f"model {mid} is not loaded ({why}); call model.load to start it again")
    parts = []
    try:
        for d in b.stream_chat(msgs, opts, ctx.cancel_event):
            parts.append(d)
            ctx.delta(d)
    except llm.BackendError as exc:
        raise StepFailed(str(exc), _died_data(mid, exc)) from None
    return {"text": "".join(parts), "cancelled": ctx.cancelled}


# --- debugging and tests -------------------------------------------------------------------------


@debug_method("debug.echo")
def m_echo(ctx: Any, **params: Any) -> Any:
    """Return the params (framing tests)."""
    return params


@debug_method("debug.sleep", interruptible=True)
def m_sleep(ctx: Any, seconds: float = 1.0) -> dict[str, Any]:
    """Sleep (cooperatively cancellable)."""
    ctx.cancel_event.wait(seconds)
    ctx.check()
    return {"slept": seconds}


@debug_method("debug.stream")
def m_stream(ctx: Any, count: int = 10, interval: float = 0.0, text: str = "tok") -> dict[str, Any]:
    """Stream ``count`` deltas ``text<i>`` (a model stand-in); returns how many were sent."""
    sent = 0
    for i in range(count):
        if ctx.cancel_event.wait(interval) if interval > 0 else ctx.cancelled:
            break
        if ctx.delta(f"{text}{i} "):
            sent += 1
    return {"sent": sent, "text": "".join(f"{text}{i} " for i in range(sent))}


@debug_method("debug.log")
def m_log(ctx: Any, message: str, level: str = "INFO") -> dict[str, Any]:
    """Emit a log record (log-forwarding tests)."""
    logging.getLogger("engine.debug").log(
        getattr(logging, level.upper(), logging.INFO), "%s", message
    )
    return {"ok": True}


@debug_method("debug.print")
def m_print(ctx: Any, text: str) -> dict[str, Any]:
    """Print to fd 1 from Python and from a child process (stdout protection tests)."""
    print(text)
    sys.stdout.flush()
    subprocess.run(["echo", text], check=False)
    os.write(1, (text + "\n").encode())
    return {"ok": True}


@debug_method("debug.exit")
def m_exit(ctx: Any, code: int = 3, message: str = "engine exiting on request") -> None:
    """Die at once (engine-death tests); refused in-process, where it would kill the client."""
    if ctx.server.mode == "inprocess":
        raise RpcError(protocol.INVALID_PARAMS, "debug.exit is refused by an in-process engine")
    print(message, file=sys.__stderr__, flush=True)
    os._exit(code)


_register_api()
