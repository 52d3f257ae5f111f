#!/usr/bin/env bash
# Build KServe's own environment in .venv-kserve (lab 10 starts KServe's Python model server from it,
# through inferlab.scaling.modelserver; nothing else uses it). Idempotent like setup.sh: a stamp holds
# a hash of requirements/kserve.txt. PIP_EXTRA_INDEX as for setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-kserve
PY="$VENV/bin/python"
stamp="$VENV/.inferlab-setup"
# torch, transformers and safetensors at the main environment's versions (pinned once, in cpu.txt and base.txt)
shared=("$(grep -E '^torch==' requirements/cpu.txt)" $(grep -oE '^(transformers|safetensors)==[^ ]+' requirements/base.txt))
want=$( (cat requirements/kserve.txt; printf '%s\n' "${shared[@]}") | sha256sum | cut -c1-16)
if [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "setup-kserve: $VENV is up to date"; exit 0
fi
pip_args=(-q --disable-pip-version-check)
[ -n "${PIP_EXTRA_INDEX:-}" ] && pip_args+=(--extra-index-url "$PIP_EXTRA_INDEX")
printf '\n== setup-kserve: KServe model server in %s from requirements/kserve.txt\n' "$VENV"
[ -x "$PY" ] || python3 -m venv "$VENV"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  # torch first, on its own, so that pip keeps the CPU build (see tools/setup.sh)
  "$PY" -m pip install "${pip_args[@]}" "${shared[0]}"
fi
"$PY" -m pip install "${pip_args[@]}" -r requirements/kserve.txt "${shared[@]:1}"
"$PY" -c "import kserve, torch, transformers" || { echo "setup-kserve: kserve does not import in $VENV" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup-kserve: done; lab 10 starts KServe's model server from $PY"
