#!/bin/bash
# make test-interop's Python: a virtual environment of scripts/interop/requirements.txt
# (torch's CPU build, transformers, safetensors, tokenizers) in a cache outside the clone
# (default ~/.cache/blackmambalab/interop, BMLAB_INTEROP_ENV=DIR elsewhere), made once and
# remade when the requirements change. Prints the environment's python.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
env=${BMLAB_INTEROP_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/blackmambalab/interop}
req="$root/scripts/interop/requirements.txt"
stamp=$(sha256sum "$req" | cut -c1-16)
if [ -x "$env/bin/python" ] && [ "$(cat "$env/.requirements" 2>/dev/null)" = "$stamp" ]; then
  echo "$env/bin/python"; exit 0
fi
echo "interop: making $env from scripts/interop/requirements.txt" >&2
# the stamp, written last, marks a finished environment: an interrupted one is remade
rm -rf "$env"
python3 -m venv "$env"
if ! "$env/bin/python" -m pip install -q -r "$req" >&2; then
  echo "interop: torch's CPU build is not in this machine's wheel folder; trying https://download.pytorch.org/whl/cpu" >&2
  "$env/bin/python" -m pip install -q --extra-index-url https://download.pytorch.org/whl/cpu -r "$req" >&2
fi
"$env/bin/python" -c "import torch, transformers, safetensors, tokenizers; print('interop: torch', torch.__version__, 'transformers', transformers.__version__)" >&2
echo "$stamp" > "$env/.requirements"
echo "$env/bin/python"
