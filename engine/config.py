"""Settings with a recorded source: CLI flags > environment > TOML config file > defaults.

Environment: the documented names ``LLM_MODEL_NAME``, ``LLM_USE_QUANTIZATION`` and ``LOG_LEVEL``
plus ``LLMH_<SETTING>`` for every setting (``LLMH_`` wins over the short names when both are
set).  The config file is ``config.toml`` in the platformdirs user config dir (``LLMH_CONFIG``
names another one); keys may sit at the top level or in an ``[llm]`` table.
"""

from __future__ import annotations

import argparse
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.model import UNSURE_THRESHOLD

log = logging.getLogger(__name__)

APP_NAME = "llm-heuristics"
BACKENDS = ("llama-cpp", "transformers", "ollama", "openai")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the TOML config file is (it need not exist)."""
    env = os.environ if env is None else env
    if env.get("LLMH_CONFIG"):
        return Path(env["LLMH_CONFIG"]).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / "config.toml"


def default_gguf_dirs() -> list[str]:
    from platformdirs import user_data_dir

    return [str(Path(user_data_dir(APP_NAME)) / "models")]


def default_hf_home() -> str:
    return str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface")


@dataclass
class Settings:
    """Effective settings; ``sources[name]`` says where each value came from."""

    backend: str = field(
        default="llama-cpp", metadata={"help": "LLM backend: " + "|".join(BACKENDS)}
    )
    model: str = field(
        default="",
        metadata={
            "env": ("LLM_MODEL_NAME",),
            "help": "model: GGUF path/name, HF repo id or path, Ollama tag, server model id",
        },
    )
    quantization: bool = field(
        default=True,
        metadata={"env": ("LLM_USE_QUANTIZATION",), "help": "transformers: 4-bit NF4 weights"},
    )
    log_level: str = field(default="INFO", metadata={"env": ("LOG_LEVEL",), "help": "log level"})
    context: str = field(default="", metadata={"help": "study context given to the model"})
    llm_all: bool = field(default=False, metadata={"help": "ask the model about every group"})
    confidence_threshold: float = field(
        default=UNSURE_THRESHOLD,
        metadata={
            "help": "below this confidence a group is unsure: the model is asked, a person looks"
        },
    )
    gguf_dirs: list[str] = field(
        default_factory=default_gguf_dirs, metadata={"help": "folders searched for GGUF files"}
    )
    hf_home: str = field(
        default_factory=default_hf_home,
        metadata={"env": ("HF_HOME",), "help": "Hugging Face cache (models are read from here)"},
    )
    ollama_host: str = field(
        default="http://127.0.0.1:11434", metadata={"env": ("OLLAMA_HOST",), "help": "Ollama"}
    )
    openai_base_url: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata={
            "env": ("OPENAI_BASE_URL",),
            "help": "OpenAI-compatible server (vLLM, llama.cpp)",
        },
    )
    n_gpu_layers: int = field(default=-1, metadata={"help": "llama.cpp layers on the GPU (-1 all)"})
    n_ctx: int = field(default=4096, metadata={"help": "llama.cpp context window"})
    mmproj: str = field(default="", metadata={"help": "llama.cpp multimodal projector GGUF"})
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    rationale_tokens: int = field(default=96, metadata={"help": "max tokens of a rationale"})
    answer_tokens: int = field(default=384, metadata={"help": "max tokens of a JSON answer"})
    cache: bool = field(default=True, metadata={"help": "reuse answers cached in OUT/llm/cache"})
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "sources"]

    def as_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self.names()}

    def backend_options(self) -> dict[str, Any]:
        """Constructor options for :func:`engine.llm.backend.create_backend`."""
        return {
            "quantization": self.quantization,
            "n_gpu_layers": self.n_gpu_layers,
            "n_ctx": self.n_ctx,
            "seed": self.seed,
            "mmproj": self.mmproj or None,
            "gguf_dirs": self.gguf_dirs,
            "host": self.ollama_host,
            "base_url": self.openai_base_url,
        }


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "sources"}


def _type_name(name: str) -> str:
    return str(_FIELDS[name].type)


def _convert(name: str, raw: Any, where: str) -> Any:
    """Convert a raw value (env string, TOML value, CLI value) to the setting's type."""
    t = _type_name(name)
    try:
        if t == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(f"{raw!r} is not a boolean (true/false)")
        if t == "int":
            if isinstance(raw, bool):
                raise ValueError("booleans are not numbers")
            return int(raw)
        if t == "float":
            return float(raw)
        if t == "list[str]":
            if isinstance(raw, str):
                return [p for p in raw.split(os.pathsep) if p]
            return [str(p) for p in raw]
        value = str(raw)
    except (TypeError, ValueError) as exc:
        raise UserError(f"setting {name} from {where}: {exc}") from exc
    if name == "backend":
        value = value.strip().lower()
        if value not in BACKENDS:
            raise UserError(
                f"setting backend from {where}: {value!r} is not one of {', '.join(BACKENDS)}"
            )
    if name == "log_level":
        value = value.strip().upper()
        if value not in LOG_LEVELS:
            raise UserError(
                f"setting log_level from {where}: {value!r} is not one of {', '.join(LOG_LEVELS)}"
            )
    return value


def env_names(name: str) -> tuple[str, ...]:
    """Environment variables of a setting, highest precedence first."""
    return (f"LLMH_{name.upper()}", *_FIELDS[name].metadata.get("env", ()))


# Tables of the config file that are not settings: engine profiles and the TUI keymap.
OTHER_TABLES = ("engines", "keymap")


def load_config_document(path: Path | None = None) -> dict[str, Any]:
    """The whole TOML config file as a dict (empty when it does not exist)."""
    path = config_path() if path is None else path
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"config file {path}: {exc}") from exc


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in the config file (tables like ``[llm]`` are only grouping)."""
    doc = load_config_document(path)
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if key in OTHER_TABLES:
            continue
        if isinstance(value, dict):
            flat.update(value)  # [llm] / [paths] tables are just grouping
        else:
            flat[key] = value
    out: dict[str, Any] = {}
    for key, value in flat.items():
        name = key.replace("-", "_")
        if name in _FIELDS:
            out[name] = value
        else:
            log.warning("config file %s: unknown setting %r ignored", path, key)
    return out


def load_settings(
    cli: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Settings:
    """Effective settings; ``cli`` holds flags the user gave (``None`` values are "not given")."""
    env = os.environ if env is None else env
    cfg_path = path or config_path(env)
    file_values = read_config_file(cfg_path)
    s = Settings()
    s.sources = {n: "default" for n in Settings.names()}
    for name, raw in file_values.items():
        setattr(s, name, _convert(name, raw, f"config file {cfg_path}"))
        s.sources[name] = f"config file {cfg_path}"
    for name in Settings.names():
        for var in reversed(env_names(name)):  # later assignment (LLMH_*) wins
            if env.get(var) not in (None, ""):
                setattr(s, name, _convert(name, env[var], f"environment {var}"))
                s.sources[name] = f"environment {var}"
    for name, raw in (cli or {}).items():
        if name in _FIELDS and raw is not None:
            setattr(s, name, _convert(name, raw, f"command line --{name.replace('_', '-')}"))
            s.sources[name] = f"command line --{name.replace('_', '-')}"
    return s


# --- argparse glue for commands that talk to a model -----------------------------------------


BACKEND_ALIASES = {
    "llamacpp": "llama-cpp",
    "llama_cpp": "llama-cpp",
    "gguf": "llama-cpp",
    "hf": "transformers",
}


def add_llm_arguments(parser: argparse.ArgumentParser, *, backend: bool = True) -> None:
    """``--backend --model --no-quantization --context --llm-all`` and a few tuning flags.

    Defaults are ``None`` so :func:`settings_from_args` can tell "not given" from a value.
    """
    g = parser.add_argument_group("local LLM")
    if backend:
        g.add_argument("--backend", choices=BACKENDS, default=None, help="LLM backend")
    g.add_argument("--model", default=None, help="model to use (see `llm-heuristics models`)")
    g.add_argument(
        "--no-quantization",
        dest="quantization",
        action="store_const",
        const=False,
        default=None,
        help="transformers: load bf16/fp16 weights instead of 4-bit NF4",
    )
    g.add_argument("--context", default=None, help="study context given to the model")
    g.add_argument(
        "--llm-all",
        dest="llm_all",
        action="store_const",
        const=True,
        default=None,
        help="ask the model about every group, not only those the rules are unsure of",
    )
    g.add_argument(
        "--n-gpu-layers", dest="n_gpu_layers", type=int, default=None, help=argparse.SUPPRESS
    )
    g.add_argument("--ollama-host", dest="ollama_host", default=None, help=argparse.SUPPRESS)
    g.add_argument(
        "--openai-base-url", dest="openai_base_url", default=None, help=argparse.SUPPRESS
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {n: getattr(args, n, None) for n in Settings.names()}
    if isinstance(given.get("backend"), str):
        given["backend"] = BACKEND_ALIASES.get(given["backend"], given["backend"])
        if given["backend"] == "rules":
            given["backend"] = None
    return load_settings(given)
