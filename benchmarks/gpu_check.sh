#!/usr/bin/env bash
# One GPU check (issue 21): every GPU-relevant test, then the GPU benchmark, results in
# one folder. Needs no network and installs nothing: it uses the python that holds
# torch (python3, or $PYTHON) and the project from this folder. About 5-8 minutes on an
# H100/H200.
#
#   bash benchmarks/gpu_check.sh            # results in $OUT, or benchmarks/gpu-check-<time>
#   bash benchmarks/gpu_check.sh --smoke    # tiny sizes, also on a machine without a GPU
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=${OUT:-benchmarks/gpu-check-$(date +%Y%m%d-%H%M%S)}
SMOKE=${1:-}
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1

{
    date -u
    git rev-parse HEAD 2>/dev/null || echo "no git"
    nvidia-smi 2>&1 | head -15
    $PY -c "import torch, numpy, sklearn; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'sklearn', sklearn.__version__)"
    $PY -c "import faiss; print('faiss', faiss.__version__, 'GPUs', faiss.get_num_gpus())" 2>&1 | tail -1
} > "$RESULTS/machine.txt" 2>&1
cat "$RESULTS/machine.txt"

# The tests that run on a GPU when one is there (backend "auto" takes torch on CUDA;
# the CUDA-only ones skip without it). pytest-xdist spreads them when it is installed.
TESTS="tests/test_neighbors.py tests/test_dimension.py tests/test_sharpness.py tests/test_representation.py
       tests/test_activations.py tests/test_training.py tests/test_attacks.py tests/test_bench_gpu.py"
PARALLEL=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
timeout 200 $PY -m pytest -q -p no:cacheprovider $PARALLEL $TESTS > "$RESULTS/pytest.txt" 2>&1
echo "pytest exit $?" >> "$RESULTS/pytest.txt"
tail -3 "$RESULTS/pytest.txt"

timeout 330 $PY benchmarks/bench_gpu.py $SMOKE --out "$RESULTS" > "$RESULTS/bench_gpu.log" 2>&1
echo "bench_gpu exit $?" >> "$RESULTS/bench_gpu.log"
tail -12 "$RESULTS/bench_gpu.log"
cat "$RESULTS/RESULTS.md" 2>/dev/null | head -20
