#!/usr/bin/env bash
# The device check, in one call on a CUDA machine: the GPU tests (tests/test_gpu.py, and the replica
# tests on CUDA through trainer.accelerator=auto) and the benchmark on cuda, logs into ${1:-gpu_check}/.
#   bash scripts/gpu_check.sh [OUT]
# The workplace's GPU image lacked hydra-core, omegaconf and antlr4-python3-runtime (checked before
# google-crc32c and numba were dependencies: check those too): carry their wheels (pip download
# hydra-core==1.3.8 omegaconf==2.3.1 google-crc32c==1.9.0 numba==0.68.1 llvmlite==0.50.0 --no-deps; pip wheel
# antlr4-python3-runtime==4.9.3) and install them first with pip install --no-index --no-deps
# --target /tmp/site, PYTHONPATH=/tmp/site:$PWD.
set -o pipefail
out=${1:-gpu_check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu.py tests/test_replicas.py -k "not multirun" 2>&1 \
    | tee "$out/tests.log" | tail -25
timeout 320 python3 scripts/bench.py --device cuda --repeats 2 --json "$out/bench_cuda.json" 2>&1 \
    | grep -v "INFO\|available\|max_steps" | tee "$out/bench.log"
