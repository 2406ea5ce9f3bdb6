"""The worker process of :mod:`engine.llm.worker`: loads one model, answers one request at a
time on its stdin, replies one JSON object a line, and stops a generation on ``cancel``.

Run as ``python -m engine.llm.worker_main KIND MODEL`` (the arguments only name the process);
the engine starts it through :class:`engine.llm.worker.WorkerBackend`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import signal
import sys
import threading
from typing import IO, Any

from engine.llm.base import Backend, BackendError, GenerationOptions, Message
from engine.llm.worker import _jsonable

log = logging.getLogger(__name__)


# --- the loop ---------------------------------------------------------------------------


class _Worker:
    """The loop of the worker process: one request at a time, cancel at any time."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self.current_cancel = threading.Event()
        self.backend: Backend | None = None

    def send(self, **msg: Any) -> None:
        line = json.dumps(msg, ensure_ascii=False)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def read_requests(self) -> None:
        for raw in sys.stdin.buffer:
            try:
                req = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(req, dict):
                continue
            if req.get("op") == "cancel":
                self.current_cancel.set()
                continue
            if req.get("op") == "chat":  # a cancel that follows this chat belongs to it
                self.current_cancel = threading.Event()
                req["_cancel"] = self.current_cancel
            self.requests.put(req)
        self.current_cancel.set()  # the engine is gone: stop and exit
        self.requests.put({"op": "exit"})

    def run(self) -> int:
        threading.Thread(target=self.read_requests, name="llmh-worker-stdin", daemon=True).start()
        while True:
            req = self.requests.get()
            op = req.get("op")
            if op == "exit":
                break
            try:
                if op == "load":
                    self.load(req)
                elif op == "chat":
                    self.chat(req)
                elif op == "unload":
                    if self.backend is not None:
                        self.backend.unload()
                    self.backend = None
                    self.send(ev="ok", info={})
                else:
                    self.send(ev="error", type="BackendError", message=f"unknown request {op!r}")
            except BackendError as exc:
                self.send(ev="error", type="BackendError", message=str(exc))
            except Exception as exc:  # noqa: BLE001 - reported to the engine, logged here
                log.exception("worker: %s failed", op)
                self.send(
                    ev="error", type=type(exc).__name__, message=f"{type(exc).__name__}: {exc}"
                )
        if self.backend is not None:
            self.backend.unload()
        return 0

    def load(self, req: dict[str, Any]) -> None:
        from engine.llm.backend import create_backend

        b = create_backend(
            str(req["kind"]), str(req["model"]), isolate=False, **dict(req.get("options") or {})
        )
        b.load(lambda f, m: self.send(ev="progress", fraction=f, message=m))
        self.backend = b
        info: dict[str, Any] = {"identity": b.identity, "pid": os.getpid()}
        for attr in ("gpu_layers_used", "quantized", "vision", "mmproj", "path"):
            if hasattr(b, attr):
                info[attr] = _jsonable(getattr(b, attr))
        self.send(ev="ok", info=info)

    def chat(self, req: dict[str, Any]) -> None:
        cancel: threading.Event = req["_cancel"]
        if self.backend is None:
            raise BackendError("no model is loaded in this worker")
        msgs = [
            Message(
                str(m.get("role", "user")),
                str(m.get("content", "")),
                [base64.b64decode(i) for i in m.get("images") or []],
            )
            for m in req.get("messages") or []
        ]
        opts = GenerationOptions(**dict(req.get("options") or {}))
        for delta in self.backend.stream_chat(msgs, opts, cancel):
            self.send(ev="delta", text=delta)
        self.send(ev="done", cancelled=cancel.is_set())


def main() -> int:
    """The worker process's entry point."""
    import faulthandler

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine cancels; Ctrl-C is its business
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # native libraries that print write to stderr, not into the replies
    sys.stdout = sys.stderr
    faulthandler.enable(file=sys.stderr)
    logging.basicConfig(
        level=os.environ.get("LLMH_WORKER_LOG_LEVEL", "WARNING"),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    code = _Worker(out).run()
    out.flush()
    return code


def serve() -> None:
    """Run :func:`main` and end the process without the interpreter's shutdown: the stdin
    reader is a daemon thread blocked in a read, and a normal shutdown aborts (SIGABRT) on its
    buffer lock ("could not acquire lock ... at interpreter shutdown")."""
    rc = main()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    serve()
