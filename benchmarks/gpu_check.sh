#!/usr/bin/env bash
# One short GPU check (under 10 minutes): the device's measured matmul peaks, the training-throughput benchmark on
# the GPU (plain loops vs sandbag, bf16 autocast, several seeds as one vmapped model: seeds/s against one run at a
# time), and the standard study end to end with its time itemized. Runs from a checkout without installing sandbag (PYTHONPATH=src).
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
echo "### Standard study on the GPU"
echo
# Issue 13's target: the standard preset end to end in <= 2 minutes on one H200, each arm's seeds trained together
# (--seeds-together auto is on with a CUDA GPU), several arms at once (one worker per core).
out=$(mktemp -d)
start=$(date +%s.%N)
timeout 420 "$PY" -m sandbag study --preset standard --out "$out/standard" --quiet >/dev/null
end=$(date +%s.%N)
"$PY" - "$out/standard" "$start" "$end" <<'EOF'
import json, sys
meta = json.load(open(f"{sys.argv[1]}/study.json"))
hw, spent = meta["hardware"], meta["time"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"`sandbag study --preset standard`: {wall:.1f} s wall (target <= 120 s: {'met' if wall <= 120 else 'not met'}), "
      f"{meta['runs']} runs, {hw.get('workers')} workers x {hw.get('threads_per_worker')} threads, seeds together: "
      f"{hw.get('seeds_together')}, {meta.get('cpu_seconds_runs', 0):.0f} run-seconds\n")
print("| where the time went | seconds | share |\n|---|---|---|")
for category, seconds in spent["seconds"].items():
    print(f"| {category} | {seconds:.1f} | {spent['share'][category]:.1%} |")
EOF
rm -rf "$out"
