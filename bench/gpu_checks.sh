#!/usr/bin/env bash
# The GPU checks, run on a lent CUDA machine from the repo root (see the device tool):
#   carry .whl/ (pip download --no-deps -d .whl gsplat==1.5.3 nerfacc==0.5.3 pytest iniconfig pluggy packaging jaxtyping wadler_lindig)
# Builds gsplat's and nerfacc's kernels, runs the CUDA tests and the CUDA benchmarks.
set -uo pipefail
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
# render3d.datasets / .viewer / .assets are mapped from top-level folders by pyproject: mirror that
# (and pyproject.toml beside it: an uninstalled render3d reads its own plug-in entry points from there)
mkdir -p /tmp/pkg && cp -r render3d pyproject.toml /tmp/pkg/ && for d in datasets viewer assets; do ln -sfn "$PWD/$d" "/tmp/pkg/render3d/$d"; done
export PYTHONPATH=/tmp/site:/tmp/pkg PYTHONSAFEPATH=1  # the checkout's render3d/ must not shadow the mirror
nvidia-smi --query-gpu=name,memory.total --format=csv
start=$(date +%s)
python3 -c "from gsplat.cuda._backend import _C; print('gsplat CUDA build ok:', _C is not None)" 2>&1 | tail -1
python3 -c "from nerfacc.cuda._backend import _C; print('nerfacc CUDA build ok:', _C is not None)" 2>&1 | tail -1
echo "build seconds: $(( $(date +%s) - start ))"
python3 -m pytest -q -p no:cacheprovider tests/test_splat_render.py tests/test_nerf.py tests/test_train.py -k "cuda or backends_agree" 2>&1 | tail -4
python3 bench/bench_nerf.py --backend cuda --seconds ${NERF_SECONDS:-60} --target-samples 262144 2>&1 | tail -3
python3 bench/bench_train.py --mode job --backend cuda 2>&1 | tail -3
python3 bench/bench_nerf.py --backend torch --seconds ${NERF_SECONDS:-60} 2>&1 | tail -3
