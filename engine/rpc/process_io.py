"""The engine process's own outputs while it serves: logs as notifications, stdio guarded.

Both keep the process-wide channels (the ``logging`` root, fds 0/1) from corrupting or
bypassing the protocol stream. :mod:`engine.rpc.server` re-exports these names.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, BinaryIO

from engine import context
from engine.rpc import protocol
from engine.rpc.session import RequestContext

if TYPE_CHECKING:
    from engine.rpc.server import Server


class _LogForwarder(logging.Handler):
    """Log records as ``log`` notifications: request-scoped when emitted by a request's thread."""

    def __init__(self, server: Server, forward_global: bool) -> None:
        super().__init__(level=logging.INFO)
        self.server = server
        self.forward_global = forward_global
        self._busy = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("engine.rpc") or getattr(self._busy, "on", False):
            return  # never recurse through our own transport's logging
        self._busy.on = True
        try:
            params = {
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "time": record.created,
            }
            ctx = context.current()
            if isinstance(ctx, RequestContext) and ctx.server is self.server:
                ctx.notify(protocol.LOG, params)
            elif self.forward_global:
                self.server.notify_global(protocol.LOG, params)
        except Exception:  # noqa: BLE001 - logging must never raise
            pass
        finally:
            self._busy.on = False

    def close(self) -> None:  # basicConfig(force=True) closes root handlers; stay usable
        logging.Handler.close(self)


def protect_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Take fds 0/1 for the protocol; point fd 0 at /dev/null and fd 1 (and sys.stdout) at stderr.

    Printing libraries, C extensions and child processes (dcm2niix) then cannot write into
    the protocol stream or read from it.
    """
    sys.stdout.flush()
    proto_in = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    for fd in (proto_in.fileno(), proto_out.fileno()):
        os.set_inheritable(fd, False)
    return proto_in, proto_out
