#!/usr/bin/env bash
# One short GPU check (under 5 minutes): the device's measured matmul peaks, the training-throughput benchmark on
# the GPU (plain loops vs sandbag, bf16 autocast, several seeds as one vmapped model), and a quick study, with
# samples/s and % of the measured peak. Runs from a checkout without installing sandbag (PYTHONPATH=src).
#
#   bash benchmarks/gpu_check.sh           # PYTHON=... to choose the interpreter (default python3)
#
# Packages that interpreter lacks can lie as wheels in .whl/ (e.g. mlxtend, torchinfo): they are installed into a
# temporary folder first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sandbag-site \
    .whl/*.whl
  export PYTHONPATH=/tmp/sandbag-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

echo "## GPU check ($(date '+%Y-%m-%d %H:%M'))"
echo
"$PY" - <<'EOF'
import sys
sys.path.insert(0, "benchmarks")
import torch
import _common as C
if not torch.cuda.is_available():
    raise SystemExit("gpu_check: torch sees no CUDA GPU")
p = torch.cuda.get_device_properties(0)
print(f"{torch.cuda.get_device_name()} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB), "
      f"torch {torch.__version__}, CUDA {torch.version.cuda}, python {sys.version.split()[0]}")
peaks = []
for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    peaks.append([name, f"{C.matmul_peak('cuda', n=8192, dtype=dtype) / 1e3:,.0f} TFLOP/s"])
print()
print(C.table(["8192^3 matmul", "measured"], peaks))
print("\n(torch's defaults: fp32 matmul without TF32; cuDNN convolutions with TF32.)\n")
EOF

echo "### Training throughput on the GPU"
echo
timeout 170 "$PY" benchmarks/throughput.py --device cuda --threads 4 --batches 128,1024 --repeats 5 --amp bf16 \
  --multiseed 1,16,64 | sed 's/^## /#### /'

echo
echo "### Quick study on the GPU"
echo
out=$(mktemp -d)
start=$(date +%s.%N)
timeout 150 "$PY" -m sandbag study --preset quick --workers 8 --out "$out/quick" --quiet >/dev/null
end=$(date +%s.%N)
"$PY" - "$out/quick" "$start" "$end" <<'EOF'
import json, sys
meta = json.load(open(f"{sys.argv[1]}/study.json"))
hw = meta["hardware"]
print(f"`sandbag study --preset quick --workers 8`: {float(sys.argv[3]) - float(sys.argv[2]):.1f} s wall, "
      f"{meta['runs']} runs, {hw.get('workers')} workers x {hw.get('threads_per_worker')} threads, "
      f"{meta.get('cpu_seconds_runs', 0):.0f} run-seconds")
EOF
rm -rf "$out"
