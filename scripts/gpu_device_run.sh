#!/usr/bin/env bash
# Run on a CUDA machine with the aijobs wheels in .whl/ (docs/deployment.md, "GPUs"): installs
# aijobs beside the machine's own CUDA torch, then runs the runtime check and the end-to-end
# check. Writes reports into $OUT.
set -u
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
# aijobs from src/, with a dist-info so its runtime plugins (entry points) are found.
info=/tmp/site/aijobs-1.0.0.dist-info
mkdir -p "$info"
printf 'Metadata-Version: 2.1\nName: aijobs\nVersion: 1.0.0\n' >"$info/METADATA"
sed -n '/^\[project.entry-points."aijobs.runtimes"\]/,/^$/p' pyproject.toml \
  | sed 's/^\[project.entry-points."aijobs.runtimes"\]/[aijobs.runtimes]/; s/"//g' >"$info/entry_points.txt"
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$out/nvidia-smi.txt"
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
timeout "${CHECK_SECONDS:-220}" python3 scripts/gpu_check.py --out "$out" 2>&1 | tail -30
timeout "${E2E_SECONDS:-300}" python3 scripts/gpu_e2e.py --out "$out" --timeout 200 2>&1 | tail -30
