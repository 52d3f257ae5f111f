#!/usr/bin/env bash
# Build SGLang's own environment in .venv-sglang (CUDA machines only). Lab 05 starts SGLang from it
# with inferlab.engines.serve("sglang", ...); nothing else uses it. Idempotent like setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
  echo "setup-sglang: no NVIDIA GPU here (nvidia-smi sees none); SGLang runs on the GPU tier only, and lab 05 skips it on the CPU profile" >&2
  exit 2
fi
VENV=.venv-sglang
stamp="$VENV/.inferlab-setup"
want=$(sha256sum requirements/sglang.txt | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "setup-sglang: $VENV is up to date"; exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements/sglang.txt
"$VENV/bin/python" -c "import sglang.srt.server_args" || { echo "setup-sglang: SGLang does not import in $VENV" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup-sglang: done; lab 05's section 5 will start SGLang from $VENV/bin/python"
