"""Where the engine runs: a SPEC string becomes a transport (a pipe of protocol lines).

SPEC is one or more stages joined by ``+``, outermost first; each stage is ``kind[:arg]``
(or ``kind arg``)::

    inprocess                         # threads in this process (tests, small jobs)
    local                             # python -m engine engine serve --stdio
    ssh:gpu01                         # the system OpenSSH client: ~/.ssh/config, ProxyJump,
                                      # ControlMaster apply; BatchMode=yes never prompts
    slurm:--gres=gpu:1 --time=2:00:00 # srun (stdin/stdout are the pipe; no --pty)
    apptainer:/images/llmh.sif        # apptainer exec --nv IMAGE ...
    ssh:login01+slurm:--gres=gpu:1+apptainer:/images/llmh.sif
    ssh:gpu01+detach                  # engine keeps running when the link drops; the client
                                      # reconnects with `engine bridge` and resumes streams
    attach[:NAME]                     # a detached engine on this host, straight to its socket
    NAME                              # a profile: the [engines.NAME] table of the config file

A profile table holds ``spec`` and optional ``command`` (the engine program on the far side,
default ``llm-heuristics``; ``python -m engine`` of this interpreter when the engine runs on
this host without a container), ``ssh_options``, ``slurm_options``, ``apptainer_options``,
``binds``, ``detach``, ``name``, ``env``, ``hello_timeout``, ``serve_args``.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import UserError
from engine.rpc.transports import (
    ProcessTransport,
    SocketTransport,
    Transport,
    inprocess_transport,
)

__all__ = [
    "KINDS",
    "LaunchOptions",
    "Launcher",
    "ProcessTransport",
    "SocketTransport",
    "Stage",
    "Transport",
    "inprocess_transport",
    "load_profiles",
    "make_launcher",
    "parse_spec",
]

KINDS = ("inprocess", "local", "ssh", "slurm", "apptainer", "singularity", "detach", "attach")


# --- specs and launchers --------------------------------------------------------------------------


@dataclass
class Stage:
    kind: str
    arg: str = ""


@dataclass
class LaunchOptions:
    command: list[str] | None = None  # the engine program on the far side
    ssh: str = "ssh"
    ssh_options: list[str] = field(default_factory=list)
    srun: str = "srun"
    slurm_options: list[str] = field(default_factory=list)
    apptainer: str = "apptainer"
    apptainer_options: list[str] = field(default_factory=list)
    binds: list[str] = field(default_factory=list)
    nv: bool = True
    detach: bool = False
    name: str = "engine"  # the detached engine's name (rendezvous file)
    serve_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    hello_timeout: float = 120.0
    heartbeat: float = 5.0
    roots: list[str] = field(default_factory=list)  # engine serve --root (none: its defaults)


def parse_spec(spec: str) -> list[Stage]:
    stages: list[Stage] = []
    for raw in spec.split("+"):
        raw = raw.strip()
        if not raw:
            raise UserError(f"empty stage in engine spec {spec!r}")
        head = raw.split(None, 1)
        kind, arg = (
            (raw.split(":", 1) + [""])[:2]
            if ":" in head[0]
            else (head[0], head[1] if len(head) > 1 else "")
        )
        kind = kind.strip().lower()
        if kind == "singularity":
            kind = "apptainer"
        stages.append(Stage(kind, arg.strip()))
    return stages


def load_profiles() -> dict[str, dict[str, Any]]:
    """``[engines.NAME]`` tables of the config file."""
    from engine.config import load_config_document

    engines = load_config_document().get("engines", {})
    return {k: v for k, v in engines.items() if isinstance(v, dict)}


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return shlex.split(v)
    return [str(x) for x in v]


class Launcher:
    """Builds the command line of an engine from stages and starts (or re-attaches) it."""

    def __init__(self, spec: str, stages: list[Stage], options: LaunchOptions) -> None:
        self.spec = spec
        self.stages = stages
        self.options = options
        kinds = [s.kind for s in stages]
        for s in stages:
            if s.kind not in KINDS:
                raise UserError(
                    f"unknown engine stage {s.kind!r} in {spec!r}; known: {', '.join(KINDS)}"
                )
            if s.kind in ("ssh", "apptainer") and not s.arg:
                raise UserError(f"engine stage {s.kind!r} needs an argument ({s.kind}:...)")
            if s.kind == "ssh" and s.arg.startswith("-"):
                raise UserError(f"bad ssh host {s.arg!r}")
        if "detach" in kinds:
            self.options.detach = True
            stages[:] = [s for s in stages if s.kind != "detach"]
            kinds = [s.kind for s in stages]
        if ("inprocess" in kinds or "attach" in kinds) and len(stages) > 1:
            raise UserError(f"{kinds[0]!r} cannot be combined with other stages ({spec!r})")
        if not stages:
            stages.append(Stage("local"))
            kinds = ["local"]
        if self.options.detach and "slurm" in kinds:
            raise UserError(
                "a Slurm step cannot be detached; use ssh:NODE+detach on an allocated node"
            )
        if self.options.detach and "inprocess" in kinds:
            raise UserError("an in-process engine cannot be detached")

    @property
    def description(self) -> str:
        return self.spec

    @property
    def can_resume(self) -> bool:
        return self.options.detach or self.stages[0].kind == "attach"

    def engine_command(self, mode: str = "serve") -> list[str]:
        o = self.options
        if o.command:
            base = list(o.command)
        elif any(s.kind in ("ssh", "apptainer") for s in self.stages):
            base = ["llm-heuristics"]
        else:
            base = [sys.executable, "-m", "engine"]
        roots = [a for r in o.roots for a in ("--root", r)]
        if mode == "bridge":
            tail = ["engine", "bridge", "--name", o.name]
        elif o.detach:
            tail = [
                "engine",
                "serve",
                "--detach",
                "--name",
                o.name,
                "--heartbeat",
                str(o.heartbeat),
                *roots,
                *o.serve_args,
            ]
        else:
            tail = [
                "engine",
                "serve",
                "--stdio",
                "--heartbeat",
                str(o.heartbeat),
                *roots,
                *o.serve_args,
            ]
        env = [f"{k}={v}" for k, v in o.env.items()]
        remote = any(s.kind != "local" for s in self.stages)
        return (["env", *env] if env and remote else []) + base + tail

    def argv(self, mode: str = "serve") -> list[str]:
        o = self.options
        cmd = self.engine_command(mode)
        for st in reversed(self.stages):
            if st.kind == "local":
                continue
            if st.kind == "apptainer":
                binds = [x for b in o.binds for x in ("--bind", b)]
                cmd = [
                    o.apptainer,
                    "exec",
                    *(["--nv"] if o.nv else []),
                    *binds,
                    *o.apptainer_options,
                    st.arg,
                    *cmd,
                ]
            elif st.kind == "slurm":
                cmd = [
                    o.srun,
                    "--ntasks=1",
                    "--nodes=1",
                    "--job-name=llm-heuristics-engine",
                    *o.slurm_options,
                    *shlex.split(st.arg),
                    *cmd,
                ]
            elif st.kind == "ssh":
                cmd = [
                    o.ssh,
                    "-T",
                    "-e",
                    "none",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ServerAliveInterval=15",
                    "-o",
                    "ServerAliveCountMax=4",
                    *o.ssh_options,
                    st.arg,
                    shlex.join(cmd),
                ]
        return cmd

    def open(self, on_stderr: Any = None) -> Transport:
        kind = self.stages[0].kind
        if kind == "inprocess":
            return inprocess_transport(
                heartbeat=self.options.heartbeat if self.options.heartbeat > 0 else 0,
                roots=self.options.roots or None,
            )
        if kind == "attach":
            from engine.rpc.detach import connect_socket

            return connect_socket(self.stages[0].arg or self.options.name)
        local_env = self.options.env if all(s.kind == "local" for s in self.stages) else None
        return ProcessTransport(self.argv("serve"), self.spec, env=local_env, on_stderr=on_stderr)

    def reopen(self, on_stderr: Any = None) -> Transport:
        """A new link to the same (detached) engine, through ``engine bridge``."""
        if not self.can_resume:
            raise UserError(f"engine {self.spec!r} is not detached; it cannot be re-attached")
        if self.stages[0].kind == "attach":
            return self.open()
        local_env = self.options.env if all(s.kind == "local" for s in self.stages) else None
        return ProcessTransport(
            self.argv("bridge"), f"{self.spec} (bridge)", env=local_env, on_stderr=on_stderr
        )


def make_launcher(spec: str | Launcher, **overrides: Any) -> Launcher:
    """A launcher for SPEC (or a profile name); ``overrides`` set :class:`LaunchOptions` fields."""
    if isinstance(spec, Launcher):
        return spec
    spec = spec.strip()
    if not spec:
        raise UserError("empty engine spec")
    opts = LaunchOptions()
    first = spec.split("+", 1)[0].split(":", 1)[0].split(None, 1)[0].lower()
    profile_name = None
    if first == "profile":
        profile_name = spec.split(":", 1)[1]
    elif first not in KINDS and "+" not in spec and ":" not in spec:
        profile_name = spec
    if profile_name is not None:
        from engine.config import config_path

        profiles = load_profiles()
        if profile_name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise UserError(
                f"no engine profile {profile_name!r} (profiles in {config_path()}: {known}); "
                f"or give a spec such as local, ssh:HOST, slurm:OPTS, apptainer:IMAGE"
            )
        prof = profiles[profile_name]
        if "spec" not in prof:
            raise UserError(f"engine profile {profile_name!r} has no 'spec'")
        _apply(opts, prof)
        real_spec = str(prof["spec"])
    else:
        real_spec = spec
    _apply(opts, overrides)
    launcher = Launcher(spec, parse_spec(real_spec), opts)
    return launcher


def _apply(opts: LaunchOptions, values: dict[str, Any]) -> None:
    names = {f.name for f in fields(LaunchOptions)}
    for k, v in values.items():
        if k == "spec" or v is None:
            continue
        if k not in names:
            raise UserError(f"unknown engine option {k!r}; known: {', '.join(sorted(names))}")
        if k in (
            "command",
            "ssh_options",
            "slurm_options",
            "apptainer_options",
            "binds",
            "serve_args",
            "roots",
        ):
            v = _as_list(v)
        elif k == "env":
            v = {str(a): str(b) for a, b in dict(v).items()}
        elif k in ("hello_timeout", "heartbeat"):
            v = float(v)
        elif k in ("detach", "nv"):
            v = bool(v)
        setattr(opts, k, v)
