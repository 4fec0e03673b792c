#!/usr/bin/env bash
# One-command install of beit3-mm and the OpenMMLab stack into an isolated venv.
#
#   bash tools/install.sh            # venv at ./.venv (override: BEIT3_MM_VENV=path)
#
# mmcv 2.1.0 has no wheels for this torch, so it is built from its source
# (ops included) once and the wheel is cached under ~/.cache/beit3_mm; a second
# run only checks what is installed. The CUDA ops are built when torch sees a
# GPU or FORCE_CUDA=1 is set (set TORCH_CUDA_ARCH_LIST on build-only hosts);
# otherwise the CPU ops are built. MAX_JOBS sets the compile parallelism.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BEIT3_MM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
CACHE="${BEIT3_MM_CACHE:-$HOME/.cache/beit3_mm}"
# The exact verified versions (requirements/constraints.txt) go to every pip
# call; setup.py declares ranges (requirements/runtime.txt).
CONSTRAINTS="$ROOT/requirements/constraints.txt"
MMCV_VERSION="$(sed -n 's/^mmcv==//p' "$CONSTRAINTS")"

log() { printf '\033[1;34m[install]\033[0m %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)
PIN=(-c "$CONSTRAINTS")

log "build tools and torch"
"${PIP[@]}" -q "pip>=24" "setuptools>=77,<80" wheel ninja
"${PIP[@]}" -q "${PIN[@]}" torch torchvision numpy opencv-python

# ---- mmcv (full, with ops) --------------------------------------------------
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  log "mmcv $MMCV_VERSION with ops already installed"
else
  TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
  if [ "${FORCE_CUDA:-0}" = 1 ] || "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    export FORCE_CUDA=1; FLAVOUR=cuda
  else
    FLAVOUR=cpu
  fi
  WHEELDIR="$CACHE/mmcv-$MMCV_VERSION-torch$TORCH_TAG-$FLAVOUR"
  if ! ls "$WHEELDIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION ($FLAVOUR ops) from source; this takes ~20 minutes on 2 cores"
    SRC="$(mktemp -d)"
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$MMCV_VERSION" -d "$SRC"
    tar -xzf "$SRC"/mmcv-$MMCV_VERSION.tar.gz -C "$SRC"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17
    # for both the host compiler and nvcc.
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/mmcv-$MMCV_VERSION/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "$PY" -m pip wheel -q --no-deps --no-build-isolation \
      "$SRC/mmcv-$MMCV_VERSION" -w "$WHEELDIR.tmp"
    mv "$WHEELDIR.tmp" "$WHEELDIR"
    rm -rf "$SRC"
  fi
  "${PIP[@]}" -q --no-deps --force-reinstall "$WHEELDIR"/mmcv-*.whl
fi

# ---- beit3_mm and the rest of the stack ------------------------------------
log "beit3_mm and the OpenMMLab stack"
"${PIP[@]}" -q "${PIN[@]}" -e "$ROOT[tests]"
# torchscale is a test-only reference; its pins (old timm, fairscale) clash
# with the stack, and the BEiT-3 path needs neither pin.
"${PIP[@]}" -q "${PIN[@]}" --no-deps torchscale fairscale
# DeepSpeed (optional, for configs/_base_/strategies/deepspeed_*.py)
"${PIP[@]}" -q "${PIN[@]}" -r "$ROOT/requirements/optional.txt"

# ---- Java for the caption metric (PTB tokenizer, METEOR) --------------------
# Installed when missing and apt-get can run as root; never fails the install.
if ! command -v java >/dev/null 2>&1; then
  AS_ROOT=()
  [ "$(id -u)" = 0 ] || AS_ROOT=(sudo -n)
  if command -v apt-get >/dev/null 2>&1 && ${AS_ROOT[@]+"${AS_ROOT[@]}"} true 2>/dev/null; then
    log "installing a JRE (default-jre-headless) for the caption metric"
    { ${AS_ROOT[@]+"${AS_ROOT[@]}"} apt-get update -qq &&
      ${AS_ROOT[@]+"${AS_ROOT[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends default-jre-headless >/dev/null; } || true
  fi
  command -v java >/dev/null 2>&1 ||
    log "no Java: caption metrics will tokenise in Python and skip METEOR (install a JRE for the standard scores)"
fi

"$PY" -c "import beit3_mm, mmcv.ops, mmdet, mmseg, mmpretrain; print('beit3_mm', beit3_mm.__version__, 'ready')"
