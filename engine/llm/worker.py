"""Models in a worker process: a native crash or an OOM kill is an error, never a dead engine.

:class:`WorkerBackend` runs another backend (llama-cpp, transformers, ...) in a child process
(:mod:`engine.llm.worker_main`) and proxies ``load`` / ``stream_chat`` / ``unload`` to it over pipes, one JSON object a line.

Requests (parent -> the child's stdin)::

    {"op": "load", "kind": K, "model": M, "options": {...}}
    {"op": "chat", "messages": [{"role", "content", "images": [base64 PNG/JPEG]}], "options": {...}}
    {"op": "cancel"}            (any time: stops the generation in progress)
    {"op": "unload"}  {"op": "exit"}

Replies (child -> parent, on the child's original stdout; its fd 1 then points at stderr so a
native library that prints cannot corrupt the stream)::

    {"ev": "progress", "fraction": F, "message": S}   {"ev": "delta", "text": S}
    {"ev": "ok", "info": {...}}   {"ev": "done"}   {"ev": "error", "type": T, "message": S}

The worker lives while the model is loaded, so the model stays warm between requests. When the
child dies (SIGSEGV in a native library, the OOM killer's SIGKILL, ...), the request in progress
fails with :class:`WorkerDied`, which names the model, the signal and what to try; the backend
is then unloaded, and ``load`` starts a fresh worker.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from engine.llm.base import (
    Backend,
    BackendError,
    GenerationOptions,
    Message,
    ProgressCallback,
    image_bytes,
)

log = logging.getLogger(__name__)

#: Backends that run in a worker process by default in the engine and the mapping path (those
#: that run native code in this process); ``LLMH_MODEL_WORKERS=0`` runs them in-process.
ISOLATED_KINDS = frozenset({"llama-cpp", "transformers", "echo"})
ENV_SWITCH = "LLMH_MODEL_WORKERS"
CANCEL_TIMEOUT = 60.0  # seconds a cancelled generation may take to stop before a kill
STOP_TIMEOUT = 10.0
_EOF = object()
_LOUD = ("WARNING ", "ERROR ", "CRITICAL ", "Fatal Python error")  # worker lines shown as warnings


def isolate_default(kind: str) -> bool:
    """Whether ``kind`` runs in a worker process unless the caller says otherwise."""
    switch = os.environ.get(ENV_SWITCH, "").strip().lower()
    if switch in {"0", "false", "no", "off"}:
        return False
    if switch == "all":
        return True
    return kind in ISOLATED_KINDS


class WorkerDied(BackendError):
    """The model's worker process died; the message says which model, how, and what to try."""

    def __init__(self, message: str, *, signal: int | None, returncode: int | None) -> None:
        super().__init__(message)
        self.signal = signal
        self.returncode = returncode


def exit_description(returncode: int | None) -> tuple[str, int | None]:
    """("died with SIGSEGV (signal 11)", 11) or ("exited with status 3", None)."""
    if returncode is None:
        return "stopped answering", None
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "an unknown signal"
        return f"died with {name} (signal {sig})", sig
    return f"exited with status {returncode}", None


def advice(kind: str, sig: int | None) -> str:
    """What to try after the worker of a ``kind`` backend died of ``sig``."""
    if sig == signal.SIGKILL:
        return (
            "SIGKILL usually means the out-of-memory killer: try a smaller model or "
            "quantisation, a smaller context (LLMH_N_CTX=2048), or fewer GPU layers"
        )
    if kind == "llama-cpp":
        return (
            'try a portable llama-cpp-python build (CMAKE_ARGS="-DGGML_NATIVE=OFF '
            '-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" pip install '
            "--force-reinstall --no-cache-dir llama-cpp-python), fewer GPU layers "
            "(--n-gpu-layers 0), or a smaller context (LLMH_N_CTX=2048)"
        )
    if kind == "transformers":
        return (
            "try 4-bit NF4 weights (without --no-quantization), a smaller model, or the CPU "
            "(CUDA_VISIBLE_DEVICES=)"
        )
    return "try a smaller model; the engine log has the worker's last output"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _message_json(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.images:
        d["images"] = [base64.b64encode(image_bytes(i)).decode("ascii") for i in m.images]
    return d


def _pump_replies(stream: IO[bytes], replies: queue.Queue) -> None:
    try:
        for raw in stream:
            try:
                replies.put(json.loads(raw))
            except ValueError:
                log.debug("worker: unreadable reply %r", raw[:200])
    except (OSError, ValueError):
        pass
    replies.put(_EOF)


class WorkerBackend(Backend):
    """A backend of kind ``kind`` that runs in its own process (see the module docstring)."""

    def __init__(self, kind: str, model: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(model)
        self.kind = kind
        self.name = kind  # identities and messages read as the backend's own
        self.options: dict[str, Any] = _jsonable(dict(options or {}))
        self.info: dict[str, Any] = {}
        self.last_error = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._replies: queue.Queue = queue.Queue()
        self._tail: deque[str] = deque(maxlen=40)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    # --- what callers see ---------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def loaded(self) -> bool:
        if self._loaded and not self._alive():
            self._died("while idle")
        return self._loaded

    @property
    def identity(self) -> str:
        ident = self.info.get("identity")
        if ident:
            return str(ident)
        from engine.llm.backend import create_backend

        return create_backend(self.kind, self.model, isolate=False, **self.options).identity

    def __getattr__(self, name: str) -> Any:
        info = self.__dict__.get("info") or {}
        if name in info:  # what the worker reported after loading: gpu_layers_used, quantized...
            return info[name]
        raise AttributeError(name)

    # --- lifecycle ----------------------------------------------------------------------
    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        boot = (
            f"import sys; sys.path.insert(0, {root!r}); "
            "from engine.llm.worker_main import serve; serve()"
        )
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        label = Path(self.model).name if os.sep in self.model else self.model
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", boot, self.kind, label],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._replies = queue.Queue()
        self._tail.clear()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        threading.Thread(
            target=_pump_replies, args=(self._proc.stdout, self._replies), daemon=True
        ).start()
        threading.Thread(target=self._pump_stderr, args=(self._proc.stderr,), daemon=True).start()

    def _pump_stderr(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self._tail.append(line)
                    level = logging.WARNING if line.startswith(_LOUD) else logging.DEBUG
                    log.log(level, "[%s worker] %s", self.kind, line)
        except (OSError, ValueError):
            pass

    def _send(self, obj: dict[str, Any]) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        try:
            with self._write_lock:
                proc.stdin.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
                proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def _next(self, timeout: float) -> Any:
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            return None

    def _await(self, phase: str, progress: ProgressCallback | None = None) -> dict[str, Any]:
        while True:
            item = self._next(0.2)
            if item is None:
                continue
            if item is _EOF:
                raise self._died(phase)
            ev = item.get("ev")
            if ev == "progress" and progress is not None:
                fraction = float(item.get("fraction", 0.0))
                if 0.0 < fraction < 1.0:  # this side says "loading" and "ready" itself
                    progress(fraction, str(item.get("message", "")))
            elif ev in {"ok", "done", "error"}:
                return item

    def _last_words(self) -> str:
        keys = ("error", "fatal", "memory", "abort", "assert", "killed")
        lines = [ln for ln in self._tail if any(k in ln.lower() for k in keys)]
        text = " | ".join(ln.strip() for ln in lines[-2:])
        return text[:300]

    def _died(self, phase: str) -> WorkerDied:
        proc = self._proc
        rc: int | None = None
        if proc is not None:
            try:
                rc = proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = None
                proc.wait()
        how, sig = exit_description(rc)
        label = Path(self.model).name or self.model
        msg = f"the {self.kind} worker for {label} {how} {phase}; {advice(self.kind, sig)}"
        words = self._last_words()
        if words:
            msg += f" (its last output: {words})"
        self.last_error = msg
        log.error("%s", msg)
        self._cleanup()
        return WorkerDied(msg, signal=sig, returncode=rc)

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        self._loaded = False
        self.info = {}
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._cleanup()

    def _load(self, progress: ProgressCallback) -> None:
        with self._lock:
            self.last_error = ""
            self._spawn()
            try:
                request = {
                    "op": "load",
                    "kind": self.kind,
                    "model": self.model,
                    "options": self.options,
                }
                if not self._send(request):
                    raise self._died("while starting")
                reply = self._await("while loading", progress)
            except WorkerDied:
                raise
            except BaseException:  # an interrupted load (cancel, Ctrl-C) leaves no worker
                self._kill()
                raise
            if reply["ev"] == "error":
                self._stop()
                raise BackendError(str(reply.get("message", "the worker could not load")))
            self.info = dict(reply.get("info") or {})

    def _stop(self) -> None:
        if self._alive():
            self._send({"op": "exit"})
            assert self._proc is not None
            try:
                self._proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("the %s worker did not exit: killing it", self.kind)
        self._kill()

    def _unload(self) -> None:
        with self._lock:
            if self._alive() and self._send({"op": "unload"}):
                try:
                    self._await("while unloading")
                except WorkerDied as exc:
                    log.warning("%s", exc)
            self._stop()

    # --- generation ---------------------------------------------------------------------
    def _stream(
        self, messages: list[Message], options: GenerationOptions, cancel: threading.Event
    ) -> Iterator[str]:
        with self._lock:
            if not self._alive():
                raise self._died("before generation")
            request = {
                "op": "chat",
                "messages": [_message_json(m) for m in messages],
                "options": _jsonable(dataclasses.asdict(options)),
            }
            if not self._send(request):
                raise self._died("at the start of generation")
            finished = False
            cancel_sent = False
            try:
                while True:
                    if cancel.is_set() and not cancel_sent:
                        cancel_sent = self._send({"op": "cancel"})
                    item = self._next(0.1)
                    if item is None:
                        continue
                    if item is _EOF:
                        finished = True
                        raise self._died("during generation")
                    ev = item.get("ev")
                    if ev == "delta":
                        yield str(item.get("text", ""))
                    elif ev == "done":
                        finished = True
                        return
                    elif ev == "error":
                        finished = True
                        raise BackendError(str(item.get("message", "generation failed")))
            finally:
                if not finished:
                    self._drain(cancel_sent)

    def _drain(self, cancel_sent: bool) -> None:
        """The consumer stopped early: cancel in the worker and wait until it is ready again."""
        if not cancel_sent:
            self._send({"op": "cancel"})
        waited = 0.0
        while waited < CANCEL_TIMEOUT:
            item = self._next(0.2)
            waited += 0.2
            if item is _EOF:
                self._died("while stopping a generation")
                return
            if isinstance(item, dict) and item.get("ev") in {"done", "error"}:
                return
        log.warning("the %s worker did not stop generating: killing it", self.kind)
        self._kill()
