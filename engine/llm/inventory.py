"""What each backend could load on this machine, found without downloading anything.

* transformers: model snapshots in the Hugging Face cache (``HF_HOME/hub/models--*``);
* llama-cpp: ``*.gguf`` files in the configured GGUF folders and in the HF cache;
* ollama: the server's ``/api/tags`` when it answers; openai: the server's ``/models``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.llm.privacy import is_local_host

PROBE_TIMEOUT = 1.5


@dataclass
class ModelEntry:
    backend: str
    name: str  # what to pass as --model
    location: str = ""
    size_bytes: int = 0
    note: str = ""


@dataclass
class BackendStatus:
    backend: str
    usable: bool
    detail: str = ""


@dataclass
class Inventory:
    backends: list[BackendStatus] = field(default_factory=list)
    models: list[ModelEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backends": [asdict(b) for b in self.backends],
            "models": [asdict(m) for m in self.models],
        }


def _dir_size(p: Path) -> int:
    total = 0
    for f in p.rglob("*"):
        try:
            if f.is_file():
                total += f.stat().st_size  # follows HF's blob symlinks
        except OSError:
            pass
    return total


def hf_cached_models(hf_home: str | Path) -> list[ModelEntry]:
    """Model repos in the HF hub cache that have a config.json (i.e. loadable checkpoints)."""
    hub = Path(os.path.expanduser(str(hf_home))) / "hub"
    out: list[ModelEntry] = []
    if not hub.is_dir():
        return out
    for repo in sorted(hub.glob("models--*")):
        repo_id = repo.name[len("models--") :].replace("--", "/")
        snaps = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
        for snap in reversed(snaps):
            cfg = snap / "config.json"
            if cfg.exists():
                note = ""
                try:
                    archs = json.loads(cfg.read_text()).get("architectures") or []
                    note = ", ".join(archs)
                except (OSError, json.JSONDecodeError):
                    note = "unreadable config.json"
                has_weights = any(snap.glob("*.safetensors")) or any(snap.glob("*.bin"))
                if not has_weights:
                    note = (note + "; " if note else "") + "weights missing (partial download?)"
                out.append(ModelEntry("transformers", repo_id, str(snap), _dir_size(snap), note))
                break
    return out


def gguf_files(dirs: list[str], hf_home: str | Path | None = None) -> list[ModelEntry]:
    seen: set[Path] = set()
    out: list[ModelEntry] = []
    roots = [Path(os.path.expanduser(d)) for d in dirs]
    if hf_home:
        roots.append(Path(os.path.expanduser(str(hf_home))) / "hub")
    for root in roots:
        if not root.is_dir():
            continue
        for f in sorted(root.rglob("*.gguf")):
            real = f.resolve()
            if real in seen or "mmproj" in f.name.lower():
                continue
            seen.add(real)
            try:
                size = f.stat().st_size
            except OSError:
                continue
            out.append(ModelEntry("llama-cpp", str(f), str(root), size))
    return out


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as resp:  # noqa: S310
        return json.loads(resp.read().decode("utf-8"))


def ollama_tags(host: str) -> tuple[list[ModelEntry], str]:
    base = host if "://" in host else f"http://{host}"
    try:
        doc = _get_json(base.rstrip("/") + "/api/tags")
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        return [], f"no Ollama server at {host} ({exc.__class__.__name__})"
    models = [
        ModelEntry("ollama", m.get("model") or m.get("name", ""), host, int(m.get("size") or 0))
        for m in doc.get("models", [])
    ]
    return models, f"server at {host}" + ("" if is_local_host(host) else " (NOT this machine)")


def openai_models(base_url: str) -> tuple[list[ModelEntry], str]:
    try:
        doc = _get_json(base_url.rstrip("/") + "/models")
    except Exception as exc:  # noqa: BLE001
        return [], f"no server at {base_url} ({exc.__class__.__name__})"
    models = [ModelEntry("openai", m.get("id", ""), base_url) for m in doc.get("data", [])]
    return models, f"server at {base_url}" + (
        "" if is_local_host(base_url) else " (NOT this machine)"
    )


def _importable(name: str, *, probe: bool = False) -> str:
    """ "" when ``name`` is installed; imports it only with ``probe`` (imports can be slow)."""
    try:
        if importlib.util.find_spec(name) is None:
            return f"{name} missing"
        if probe:
            importlib.import_module(name)
        return ""
    except Exception as exc:  # noqa: BLE001
        return f"{name} missing ({exc.__class__.__name__})"


def inventory(settings: Any, *, probe_servers: bool = True) -> Inventory:
    """Backends usable here and the models each could load (settings: engine.config.Settings)."""
    inv = Inventory()
    # llama-cpp
    err = _importable("llama_cpp", probe=True)
    if err:
        inv.backends.append(
            BackendStatus("llama-cpp", False, err + "; pip install 'llm-heuristics[llamacpp]'")
        )
    else:
        import llama_cpp

        gpu = "GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only"
        inv.backends.append(
            BackendStatus("llama-cpp", True, f"llama-cpp-python {llama_cpp.__version__}, {gpu}")
        )
    inv.models += gguf_files(list(settings.gguf_dirs), settings.hf_home)
    # transformers
    missing = [e for e in (_importable("torch"), _importable("transformers")) if e]
    if missing:
        inv.backends.append(
            BackendStatus(
                "transformers", False, "; ".join(missing) + "; pip install 'llm-heuristics[hf]'"
            )
        )
    else:
        import torch

        parts = ["CUDA" if torch.cuda.is_available() else "CPU"]
        parts.append(
            "bitsandbytes NF4" if not _importable("bitsandbytes") else "no bitsandbytes (no 4-bit)"
        )
        parts.append(
            "xgrammar JSON constraint"
            if not _importable("xgrammar")
            else "no xgrammar (unconstrained JSON)"
        )
        inv.backends.append(BackendStatus("transformers", True, ", ".join(parts)))
    inv.models += hf_cached_models(settings.hf_home)
    # servers
    if probe_servers:
        models, detail = ollama_tags(settings.ollama_host)
        inv.backends.append(BackendStatus("ollama", detail.startswith("server"), detail))
        inv.models += models
        models, detail = openai_models(settings.openai_base_url)
        inv.backends.append(BackendStatus("openai", detail.startswith("server"), detail))
        inv.models += models
    return inv
