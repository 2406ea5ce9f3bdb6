#!/usr/bin/env bash
# Download the local LLMs llm-heuristics can use, into HF_HOME / the GGUF folder / Ollama.
# Idempotent: what is already present is skipped. Run time never downloads; this script does.
#
#   ./setup_models.sh [--dry-run] [--8b] [--70b] [--gguf] [--ollama] [--all]
#
#   --8b      meta-llama/Llama-3.1-8B-Instruct (transformers; gated: needs HF_TOKEN + access)
#   --70b     meta-llama/Llama-3.1-70B-Instruct (transformers; gated; ~140 GB)
#   --gguf    a Q4_K_M GGUF of Llama 3.1 8B Instruct for llama-cpp (GGUF_REPO/GGUF_FILE override)
#   --ollama  `ollama pull llama3.1:8b` (OLLAMA_MODEL overrides)
#   default: --8b --gguf --ollama
#   --dry-run print what would be fetched and where, fetch nothing
#
# Environment: HF_TOKEN (gated Meta models), HF_HOME (default ~/.cache/huggingface),
# LLMH_GGUF_DIR (default: the first of `llm-heuristics config show` gguf_dirs), OLLAMA_HOST.
set -euo pipefail

DRY=0; WANT_8B=0; WANT_70B=0; WANT_GGUF=0; WANT_OLLAMA=0; ANY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --8b) WANT_8B=1; ANY=1 ;;
    --70b) WANT_70B=1; ANY=1 ;;
    --gguf) WANT_GGUF=1; ANY=1 ;;
    --ollama) WANT_OLLAMA=1; ANY=1 ;;
    --all) WANT_8B=1; WANT_70B=1; WANT_GGUF=1; WANT_OLLAMA=1; ANY=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "setup_models.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done
if [ "$ANY" = 0 ]; then WANT_8B=1; WANT_GGUF=1; WANT_OLLAMA=1; fi

HF_HOME="${HF_HOME:-$HOME/.cache/huggingface}"
export HF_HOME
GGUF_REPO="${GGUF_REPO:-bartowski/Meta-Llama-3.1-8B-Instruct-GGUF}"
GGUF_FILE="${GGUF_FILE:-Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf}"
OLLAMA_MODEL="${OLLAMA_MODEL:-llama3.1:8b}"
if [ -z "${LLMH_GGUF_DIR:-}" ]; then
  LLMH_GGUF_DIR="$(python3 -c 'from engine.config import load_settings; print(load_settings().gguf_dirs[0])' 2>/dev/null || echo "$HOME/.local/share/llm-heuristics/models")"
fi
FAILED=0

say() { printf '%s\n' "$*"; }
run() { if [ "$DRY" = 1 ]; then say "  would run: $*"; else say "  running: $*"; "$@"; fi; }

hf_cli() {
  if command -v hf >/dev/null 2>&1; then echo hf
  elif command -v huggingface-cli >/dev/null 2>&1; then echo huggingface-cli
  else echo ""; fi
}

hf_cached() {  # repo id -> 0 when a snapshot with config.json and weights is in HF_HOME
  local dir="$HF_HOME/hub/models--${1//\//--}/snapshots"
  [ -d "$dir" ] && find "$dir" -name config.json | grep -q . && \
    find "$dir" \( -name '*.safetensors' -o -name '*.bin' \) | grep -q .
}

fetch_hf() {  # gated Meta repo -> HF_HOME
  local repo="$1"
  say "* $repo (transformers) -> $HF_HOME"
  if hf_cached "$repo"; then say "  already present, skipped"; return 0; fi
  local cli; cli="$(hf_cli)"
  if [ -z "$cli" ]; then
    say "  ERROR: neither 'hf' nor 'huggingface-cli' found: pip install -U huggingface_hub"; FAILED=1; return 0
  fi
  if [ -z "${HF_TOKEN:-}" ]; then
    say "  ERROR: $repo is gated. Set HF_TOKEN (https://huggingface.co/settings/tokens) after"
    say "         accepting the licence at https://huggingface.co/$repo"
    [ "$DRY" = 1 ] || { FAILED=1; return 0; }
  fi
  local args=(download "$repo" --include "*.json" "*.safetensors" "tokenizer*")
  if [ "$DRY" = 1 ]; then run "$cli" "${args[@]}"; return 0; fi
  if ! "$cli" "${args[@]}" --token "$HF_TOKEN"; then
    say "  ERROR: download of $repo failed. A 401/403 means the token is wrong or your account"
    say "         has not been granted access: request it at https://huggingface.co/$repo"
    FAILED=1
  fi
}

fetch_gguf() {
  say "* $GGUF_REPO/$GGUF_FILE (llama-cpp) -> $LLMH_GGUF_DIR"
  if [ -f "$LLMH_GGUF_DIR/$GGUF_FILE" ]; then say "  already present, skipped"; return 0; fi
  local cli; cli="$(hf_cli)"
  if [ -z "$cli" ]; then say "  ERROR: 'hf'/'huggingface-cli' not found: pip install -U huggingface_hub"; FAILED=1; return 0; fi
  run mkdir -p "$LLMH_GGUF_DIR"
  run "$cli" download "$GGUF_REPO" "$GGUF_FILE" --local-dir "$LLMH_GGUF_DIR" || { say "  ERROR: GGUF download failed"; FAILED=1; }
}

fetch_ollama() {
  say "* $OLLAMA_MODEL (ollama) -> server ${OLLAMA_HOST:-http://127.0.0.1:11434}"
  if ! command -v ollama >/dev/null 2>&1; then
    say "  ERROR: the 'ollama' command is not installed (https://ollama.com/download)"
    [ "$DRY" = 1 ] || FAILED=1; return 0
  fi
  if ollama list 2>/dev/null | awk 'NR>1 {print $1}' | grep -qx -e "$OLLAMA_MODEL" -e "$OLLAMA_MODEL:latest"; then
    say "  already present, skipped"; return 0
  fi
  run ollama pull "$OLLAMA_MODEL" || { say "  ERROR: ollama pull failed (is 'ollama serve' running?)"; FAILED=1; }
}

[ "$DRY" = 1 ] && say "dry run: nothing is downloaded"
[ "$WANT_8B" = 1 ] && fetch_hf meta-llama/Llama-3.1-8B-Instruct
[ "$WANT_70B" = 1 ] && fetch_hf meta-llama/Llama-3.1-70B-Instruct
[ "$WANT_GGUF" = 1 ] && fetch_gguf
[ "$WANT_OLLAMA" = 1 ] && fetch_ollama
if [ "$FAILED" = 1 ]; then say "some models could not be fetched (see ERROR lines)"; exit 1; fi
say "done; \`llm-heuristics models\` lists what each backend can load"
