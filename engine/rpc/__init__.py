"""The engine as a service: JSON-RPC 2.0 over lines, a client, and launchers.

* :mod:`engine.rpc.protocol` - framing, message helpers, error codes.
* :mod:`engine.rpc.server` - the request loop (stdio, Unix socket, in-process).
* :mod:`engine.rpc.methods` - the method table: the one place that maps methods to pipeline code.
* :mod:`engine.context` - what pipeline code may call to report progress / stream deltas.
* :mod:`engine.rpc.client` - a thread-safe client (futures + notification callbacks).
* :mod:`engine.rpc.launchers` - ``inprocess``, ``local``, ``ssh:HOST``, ``slurm:OPTS``,
  ``apptainer:IMAGE`` and their compositions (``ssh:gpu01+apptainer:/img.sif``).
* :mod:`engine.rpc.detach` - detached engines: socket, rendezvous file, bridge.
"""
