#!/usr/bin/env bash
# Build the separate virtual environment RecBole 1.2.1 runs in.
#
# RecBole 1.2.1 predates numpy 2, pandas 3 and setuptools 81 (it imports pkg_resources), so it cannot
# share the project's environment. torch is installed first and pinned to the project's version so both
# sides of the comparison run the same kernels. TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 must be set when it
# runs (recbole_side.py sets it): RecBole reloads its own checkpoints with torch.load's old default.
#
# Usage: bash benchmarks/peers/setup_recbole.sh [VENV_DIR]   (default benchmarks/peers/.venv-recbole)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-$HERE/.venv-recbole}"
PYTHON="${PYTHON:-python3.11}"
TORCH_VERSION="2.13.0"
RECBOLE_VERSION="1.2.1"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The CPU build where pip's configuration offers one (a local wheel or the PyTorch index in
# PIP_EXTRA_INDEX_URL), else PyPI's default build of the same version.
"$VENV/bin/python" -m pip install "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install "recbole==$RECBOLE_VERSION" "numpy<2" "pandas<3" "setuptools<81" \
  "torch==$TORCH_VERSION"
"$VENV/bin/python" -c "import recbole, torch, numpy, pandas; print('recbole', recbole.__version__, \
'torch', torch.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__)"
"$VENV/bin/python" -m pip freeze > "$VENV/freeze.txt"
echo "RecBole environment ready: $VENV"
