"""``llm-heuristics engine ...``: run the engine as a service, or talk to one.

  engine serve --stdio            JSON-RPC 2.0 on stdin/stdout (what launchers start)
  engine serve --detach           start (or find) a detached engine and bridge stdio to it
  engine serve --socket           the detached engine itself, in the foreground
  engine bridge                   connect stdio to the detached engine (after a dropped link)
  engine status [--engine SPEC]   is a detached engine running here / what is SPEC doing
  engine stop                     stop the detached engine here
  engine call SPEC METHOD [JSON]  one request; prints the JSON result (scripting, tests)
  engine run SPEC -- COMMAND...   run any llm-heuristics command on the engine SPEC

SPEC: inprocess, local, ssh:HOST, slurm:SRUN-OPTIONS, apptainer:IMAGE, composed with '+'
(ssh:gpu01+apptainer:/images/llmh.sif), '+detach' to survive a dropped link, or the name
of an [engines.NAME] profile in the config file. See engine/rpc/launchers.py.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import LlmhError, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "engine",
        help="run the engine as a JSON-RPC service (stdio, detached, ssh/slurm/apptainer) or call one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    esub = p.add_subparsers(dest="engine_command", metavar="ACTION")
    esub.required = True

    s = esub.add_parser("serve", help="serve the protocol")
    how = s.add_mutually_exclusive_group(required=True)
    how.add_argument("--stdio", action="store_true", help="JSON-RPC lines on stdin/stdout")
    how.add_argument(
        "--detach", action="store_true", help="start or find a detached engine; bridge stdio to it"
    )
    how.add_argument("--socket", action="store_true", help="be the detached engine (foreground)")
    s.add_argument(
        "--name",
        default="engine",
        help="detached engine name (rendezvous ~/.llm-heuristics/NAME.json)",
    )
    s.add_argument(
        "--heartbeat", type=float, default=5.0, help="seconds between heartbeats (0: none)"
    )
    s.add_argument(
        "--idle-timeout",
        type=float,
        default=86400.0,
        help="a detached engine with no client and no work exits after this many seconds (0: never)",
    )
    s.add_argument(
        "--root",
        action="append",
        metavar="DIR",
        dest="roots",
        help="serve paths (OUT, DICOM, BIDS, heuristic...) only inside DIR (repeatable; "
        "default: your home, the current directory and the temp directory)",
    )
    s.add_argument(
        "--max-message",
        type=int,
        default=None,
        metavar="BYTES",
        help="the longest request line read; longer ones are refused "
        "(default: $LLMH_ENGINE_MAX_MESSAGE or 16 MiB)",
    )
    s.set_defaults(func=_serve)

    b = esub.add_parser("bridge", help="connect stdin/stdout to the detached engine")
    b.add_argument("--name", default="engine")
    b.set_defaults(func=_bridge)

    st = esub.add_parser("status", help="detached engine here, or the status of --engine SPEC")
    st.add_argument("--name", default="engine")
    st.add_argument("--engine", metavar="SPEC")
    st.set_defaults(func=_status)

    sp = esub.add_parser("stop", help="stop the detached engine here")
    sp.add_argument("--name", default="engine")
    sp.set_defaults(func=_stop)

    c = esub.add_parser("call", help="send one request to an engine and print the JSON result")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("method")
    c.add_argument("params", nargs="?", default=None, help="JSON object or array (default: none)")
    c.add_argument(
        "--events", action="store_true", help="print notifications to stderr as JSON lines"
    )
    c.add_argument("--timeout", type=float, default=None)
    c.set_defaults(func=_call)

    r = esub.add_parser("run", help="run an llm-heuristics command on an engine")
    r.add_argument("spec", metavar="SPEC")
    r.add_argument(
        "argv", nargs=argparse.REMAINDER, help="the command and its arguments (after --)"
    )
    r.set_defaults(func=_run)


def _roots(args: argparse.Namespace) -> list[str] | None:
    """The ``--root`` folders, made absolute here (None: the engine's defaults)."""
    import os

    if not args.roots:
        return None
    roots = []
    for r in args.roots:
        path = os.path.abspath(os.path.expanduser(r))
        if not os.path.isdir(path):
            raise UserError(f"--root {r}: not a directory")
        roots.append(path)
    return roots


def _serve(args: argparse.Namespace) -> int:
    roots = _roots(args)
    if args.max_message is not None and args.max_message < 1024:
        raise UserError("--max-message: at least 1024 bytes")
    if args.stdio:
        from engine.rpc.server import serve_stdio

        return serve_stdio(heartbeat=args.heartbeat, roots=roots, max_message=args.max_message)
    from engine.rpc import detach

    if args.socket:
        return detach.serve_socket(
            args.name,
            heartbeat=args.heartbeat,
            idle_timeout=args.idle_timeout,
            roots=roots,
            max_message=args.max_message,
        )
    if roots is None:  # the daemon runs in ~: serve this directory, as a stdio engine would
        from engine.api.methods import default_roots

        roots = default_roots()
    detach.start_daemon(
        args.name,
        heartbeat=args.heartbeat,
        idle_timeout=args.idle_timeout,
        roots=roots,
        max_message=args.max_message,
    )
    return detach.bridge(args.name)


def _bridge(args: argparse.Namespace) -> int:
    from engine.rpc import detach

    return detach.bridge(args.name)


def _status(args: argparse.Namespace) -> int:
    if args.engine:
        from engine.rpc.client import call_json

        print(json.dumps(call_json(args.engine, "status", None), indent=2))
        return 0
    from engine.rpc import detach

    info = detach.status(args.name)
    print(json.dumps(info, indent=2))
    return 0 if info["running"] else 1


def _stop(args: argparse.Namespace) -> int:
    from engine.rpc import detach
    from engine.rpc.client import EngineClient

    if not detach.is_running(detach.read_rendezvous(args.name)):
        print(f"no detached engine {args.name!r} is running", file=sys.stderr)
        return 1
    client = EngineClient(f"attach:{args.name}", auto_reconnect=False)
    client.start()
    client.close(shutdown=True)
    return 0


def _call(args: argparse.Namespace) -> int:
    from engine.rpc.client import call_json

    params = None
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except json.JSONDecodeError as exc:
            raise UserError(f"PARAMS is not JSON: {exc}") from None
    try:
        value = call_json(
            args.spec,
            args.method,
            params,
            events=sys.stderr if args.events else None,
            timeout=args.timeout,
        )
    except LlmhError as exc:
        print(f"llm-heuristics engine call: error {exc.code}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UserError) else 1
    print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0


def _run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UserError(
            "give the command to run after --, e.g. engine run ssh:gpu01 -- analyze DICOM OUT"
        )
    from engine.cli import main

    sys.stdout.flush()
    return main(["--engine", args.spec, *argv])
