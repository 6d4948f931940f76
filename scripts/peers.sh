#!/bin/bash
# make peers: the virtual environments of the peers in bench/peers, in a cache outside
# the clone (default ~/.cache/blackmambalab/peers), made once and remade when a
# requirements file changes. Each environment is checked before it is kept.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-${BMLAB_PEERS_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/blackmambalab/peers}}
mkdir -p "$dest"
for peer in torch jax; do
  req="$root/bench/peers/requirements-$peer.txt"
  env="$dest/$peer"
  stamp=$(sha256sum "$req" | cut -c1-16)
  if [ -x "$env/bin/python" ] && [ "$(cat "$env/.requirements" 2>/dev/null)" = "$stamp" ]; then
    echo "peers: $env is up to date"; continue
  fi
  echo "peers: making $env from bench/peers/requirements-$peer.txt"
  # the stamp, written last, marks a finished environment: an interrupted one is remade
  rm -rf "$env"
  python3 -m venv "$env"
  if ! "$env/bin/python" -m pip install -q -r "$req"; then
    [ "$peer" = torch ] || { echo "peers: pip could not install $req" >&2; exit 1; }
    echo "peers: torch's CPU build is not on PyPI here; trying https://download.pytorch.org/whl/cpu"
    "$env/bin/python" -m pip install -q --extra-index-url https://download.pytorch.org/whl/cpu -r "$req"
  fi
  case $peer in
    torch) "$env/bin/python" "$root/bench/peers/torch_peer.py" check --threads 1 ;;
    jax)   "$env/bin/python" -c "import jax; print('peers: jax', jax.__version__, jax.devices())" ;;
  esac
  echo "$stamp" > "$env/.requirements"
  echo "peers: $env ready"
done
