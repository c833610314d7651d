#!/usr/bin/env bash
# The GPU checks, run on a lent CUDA machine from the repo root (see the device tool):
#   carry .whl/ (pip download --no-deps -d .whl gsplat==1.5.3 nerfacc==0.5.3 pytest iniconfig pluggy packaging jaxtyping wadler_lindig)
# Builds gsplat's kernels, runs the CUDA tests and the CUDA benchmarks; output goes to $OUT.
set -uo pipefail
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
# render3d.datasets / .viewer / .assets are mapped from top-level folders by pyproject: mirror that
mkdir -p /tmp/pkg && cp -r render3d /tmp/pkg/ && for d in datasets viewer assets; do ln -sfn "$PWD/$d" "/tmp/pkg/render3d/$d"; done
export PYTHONPATH=/tmp/site:/tmp/pkg
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
start=$(date +%s)
python3 -c "import torch, gsplat; from gsplat.cuda._backend import _C; print('gsplat CUDA build ok:', _C is not None)" 2>&1 | tail -3
echo "build seconds: $(( $(date +%s) - start ))"
python3 -m pytest -q -p no:cacheprovider tests/test_splat_render.py tests/test_train.py -k "cuda or backends_agree" 2>&1 | tail -8 | tee "$OUT/pytest.txt"
python3 bench/bench_rasterizer.py --backend cuda --repeats 20 2>&1 | tee "$OUT/bench_rasterizer_cuda.txt"
python3 bench/bench_train_speed.py --backend cuda --resolution 800 --gaussians 100000 300000 --steps 300 2>&1 | tail -8 | tee "$OUT/bench_train_speed_cuda.txt"
