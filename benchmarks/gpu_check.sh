#!/usr/bin/env bash
# The GPU path end to end on Amazon Beauty, for a fixed number of steps: CLUE pre-training
# (SimSiam over dropout views), next-item fine-tuning (bf16 autocast on CUDA, fp32 on CPU) and
# one full-ranking evaluation of the leave-one-out test items. Writes OUT_DIR/gpu_check.json
# and OUT_DIR/gpu_check.md: card, torch/CUDA versions, date, steps, batch size, sequences/s of
# each phase, peak GPU memory, Recall/NDCG/MRR@{5,10,20}, wall times.
#
#   bash benchmarks/gpu_check.sh [--device cuda|cpu|auto] [--steps N] [--wheels DIR]
#                                [--data PROJECT] [--dataset beauty] [more: --help] OUT_DIR
#
#   --device   cuda (default; fails if torch sees no GPU), cpu (a dry run), auto
#   --steps    optimiser steps of each training phase (default 2000, batch 256: about 23
#              epochs of Beauty's 22,363 users; a few minutes at most on one H100)
#   --wheels   a folder of wheels; only the Python packages this check needs and the machine
#              lacks (numpy, tqdm, pandas, pyarrow, kedro, omegaconf) are installed from it, with pip
#              --no-index (no network), into a temporary folder put on PYTHONPATH. PyTorch
#              must already be there.
#   --data     the project folder whose data/ holds the dataset as its run-environment
#              prepared it (default: this checkout). Prepare it where Kedro runs:
#                kedro run --env beauty --pipelines ingest,sequences
#              and bring data/03_primary/beauty/ and data/05_model_input/beauty/ along (they
#              are git-ignored; a machine given a copy of the working tree can carry them).
#
# Needs python3 with torch, numpy, pandas and pyarrow, and Kedro's config loader (kedro and
# omegaconf: it reads conf/<dataset> without a Kedro session); not MLflow or the pipelines: the
# check imports only the torch-side modules of src/clue_pipeline. The interpreter is $PYTHON if set, else the
# project's .venv/bin/python where it exists, else python3. CPU threads: CLUE_NUM_THREADS.
# Dry run on CPU (what the tests run, on the embedded data):
#   bash benchmarks/gpu_check.sh --device cpu --steps 5 --dataset ml-latest-small /tmp/gpu_check
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

command="bash benchmarks/gpu_check.sh${*:+ $*}"
wheels=""
args=()
while (($#)); do
    case "$1" in
        --wheels)
            [[ $# -ge 2 ]] || { echo "gpu_check.sh: --wheels needs a folder" >&2; exit 2; }
            wheels="$2"
            shift 2
            ;;
        --wheels=*) wheels="${1#--wheels=}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "gpu_check.sh: $PYTHON cannot import torch; install PyTorch first (or set PYTHON)" >&2
    exit 2
fi

missing=()
for module in numpy tqdm pandas pyarrow kedro omegaconf; do
    "$PYTHON" -c "import $module" 2>/dev/null || missing+=("$module")
done
if ((${#missing[@]})); then
    if [[ -z "$wheels" ]]; then
        echo "gpu_check.sh: $PYTHON lacks ${missing[*]}; pass --wheels DIR with their wheels" >&2
        exit 2
    fi
    [[ -d "$wheels" ]] || { echo "gpu_check.sh: --wheels $wheels is not a folder" >&2; exit 2; }
    site="$(mktemp -d)"
    trap 'rm -rf "$site"' EXIT
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-cache-dir \
        --find-links "$wheels" --target "$site" "${missing[@]}"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export CLUE_GPU_CHECK_COMMAND="$command"
"$PYTHON" -m benchmarks.gpu_check "${args[@]}"
