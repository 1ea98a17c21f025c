#!/usr/bin/env bash
# The product benchmark on a GPU (for sessions with one; never run by CI). Under 5 minutes.
#   bash benchmarks/gpu.sh            # prints the table, writes benchmarks/results/products_gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
$PY benchmarks/bench_products.py --device cuda --threads 1 --T 30 100 200 --hidden 100 300 --repeats 10 \
    --hf-cg-iters 50 --out benchmarks/results/products_gpu.json
