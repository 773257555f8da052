#!/usr/bin/env bash
# device-check.sh: the GPU checks, in one go, on a machine with an NVIDIA GPU.
#
#   1. onnxruntime's CUDA provider (the GPU build make setup-gpu installs, or
#      a pip onnxruntime-gpu found on the machine) on the shipped tiny model
#      and on a random full-size SD 1.5 model at 512x512 for 20 steps:
#      seconds per step and per image, batch 1 and 4, fp32 and fp16 UNets
#      (cmd/face0/device_test.go, go test -tags device);
#   2. one end-to-end `face0 run --device cuda` of the default graph (text
#      only) on the full-size import, through the real nodes;
#   3. one XLA training step of the full-size UNet: a -tags xla build with
#      GOMLX_BACKEND=xla:cuda, `face0 train --base ... --steps 1`.
#
# Each part that cannot run says what is missing and the script goes on.
# Output: a report (default device-check.md) and the log. It needs about
# 15 GB of disk and a few minutes (most of it writing and importing the
# random checkpoint, and XLA compiling the training step). On a machine
# without an NVIDIA GPU it prints this plan and exits 0.
#
#   DEVICE_CHECK_DIR (work folder, default ./device-check), DEVICE_CHECK_SIZE
#   (512), DEVICE_CHECK_STEPS (20), DEVICE_CHECK_TRAIN_SIZE (512),
#   DEVICE_CHECK_REPORT (device-check.md)
set -uo pipefail
cd "$(dirname "$0")/.."

work="${DEVICE_CHECK_DIR:-$PWD/device-check}"
report="${DEVICE_CHECK_REPORT:-$PWD/device-check.md}"
size="${DEVICE_CHECK_SIZE:-512}"
steps="${DEVICE_CHECK_STEPS:-20}"
train_size="${DEVICE_CHECK_TRAIN_SIZE:-512}"

plan() {
  cat <<EOF
device-check would, on a machine with an NVIDIA GPU:
  - install the onnxruntime 1.29.0 GPU build (scripts/setup-gpu.sh; or use a pip onnxruntime-gpu)
    and list the CUDA 13 / cuDNN 9 libraries it lacks;
  - time the CUDA provider on models/face0-synthfaces (32x32) and on a random SD 1.5
    (written as a single-file checkpoint, imported fp32 and fp16) at ${size}x${size}, ${steps} steps,
    batch 1 and 4: seconds per UNet step and per image;
  - run the default Face0 graph (text only) with face0 run --device cuda on the full-size import;
  - build face0 with -tags xla and run one training step of the full-size UNet at ${train_size}x${train_size}
    with GOMLX_BACKEND=xla:cuda (face0 train --base ... --steps 1 --ema-decay 0);
  - write the figures to ${report}.
EOF
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "device-check: no NVIDIA GPU here (nvidia-smi is missing or finds none)."
  plan
  exit 0
fi

mkdir -p "$work"
log="$work/log.txt"
: >"$log"
say() { echo "$@" | tee -a "$log"; }
{
  echo "# face0 device check"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname): $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
  echo
} >"$report"

# --- set-up -------------------------------------------------------------
say "== set-up"
scripts/setup.sh >>"$log" 2>&1 || say "setup.sh failed (CPU assets); see $log"
cache="${FACE0_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/face0}"
if [ -z "${FACE0_ORT_LIB:-}" ] && [ ! -f "$cache/onnxruntime-gpu-1.29.0/libonnxruntime.so" ]; then
  scripts/setup-gpu.sh >>"$log" 2>&1 || say "setup-gpu.sh could not install the GPU build (no registry access?)"
fi
if [ -z "${FACE0_ORT_LIB:-}" ] && [ ! -f "$cache/onnxruntime-gpu-1.29.0/libonnxruntime.so" ]; then
  # A pip onnxruntime-gpu carries the same libraries under capi/.
  pyort=$(python3 -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null || true)
  if [ -n "$pyort" ] && [ -f "$pyort/libonnxruntime_providers_cuda.so" ]; then
    export FACE0_ORT_LIB=$(ls "$pyort"/libonnxruntime.so* | head -1)
    say "using pip's onnxruntime-gpu: FACE0_ORT_LIB=$FACE0_ORT_LIB"
  fi
fi
# pip-installed NVIDIA libraries (CUDA 13 runtime, cuBLAS, cuDNN...) are found
# only through LD_LIBRARY_PATH.
nvlibs=$(python3 -c 'import nvidia, os; p = os.path.dirname(nvidia.__path__[0]) + "/nvidia"; print(":".join(sorted(os.path.join(p, d, "lib") for d in os.listdir(p) if os.path.isdir(os.path.join(p, d, "lib")))))' 2>/dev/null || true)
if [ -n "$nvlibs" ]; then
  export LD_LIBRARY_PATH="$nvlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "pip NVIDIA libraries on LD_LIBRARY_PATH"
fi
go build -o bin/face0 ./cmd/face0 >>"$log" 2>&1 || { say "go build failed; see $log"; exit 1; }

# --- models: a random full-size SD 1.5, imported fp32 and fp16 (no GPU needed) ---
say "== writing and importing a random SD 1.5 (fp32 and fp16 UNets)"
t0=$SECONDS
if DEVICE_CHECK_DIR="$work" go test -tags device -run '^TestDevicePrepare$' -count=1 -v -timeout 30m ./cmd/face0 >>"$log" 2>&1; then
  say "models ready in $((SECONDS - t0)) s"
else
  say "writing or importing the random SD 1.5 failed; see $log"
fi

# --- 1. inference timings ----------------------------------------------
say "== 1. onnxruntime CUDA provider: timings"
{
  echo "## 1. Inference: onnxruntime CUDA provider"
  echo
} >>"$report"
t0=$SECONDS
if DEVICE_CHECK_DIR="$work" DEVICE_CHECK_SIZE="$size" DEVICE_CHECK_STEPS="$steps" DEVICE_CHECK_REPORT="$work/inference.md" \
  go test -tags device -run '^TestDeviceCheck$' -count=1 -v -timeout 30m ./cmd/face0 >>"$log" 2>&1; then
  cat "$work/inference.md" >>"$report"
  say "timings done in $((SECONDS - t0)) s"
else
  say "the CUDA timings failed; the reason:"
  grep -E "device_test.go" "$log" | tail -3 | tee -a "$report"
fi
echo >>"$report"

# --- 2. face0 run --device cuda --------------------------------------------
say "== 2. face0 run --device cuda (default graph, text only, full-size import)"
home="$work/home"
mkdir -p "$home/models"
if [ -d "$work/models/sd15-fp16" ] && [ ! -e "$home/models/sd15-fp16" ]; then
  ln -s "$work/models/sd15-fp16" "$home/models/sd15-fp16"
fi
t0=$SECONDS
if [ ! -d "$work/models/sd15-fp16" ]; then
  line="face0 run --device cuda skipped: no imported model"
elif bin/face0 run examples/workflows/face0-default.json --home "$home" --input examples/inputs --out "$work/out" \
  --device cuda --plain --no-cache --set sampler.face_embedding=null \
  --set prompt.model=sd15-fp16 --set sampler.model=sd15-fp16 --set decode.model=sd15-fp16 \
  --set sampler.width="$size" --set sampler.height="$size" --set sampler.steps="$steps" --set sampler.batch_size=1 >"$work/run.log" 2>&1; then
  line="face0 run --device cuda: default graph (text only), ${size}x${size}, ${steps} steps, fp16 UNet: $((SECONDS - t0)) s including plugin start and model loads"
else
  line="face0 run --device cuda failed: $(grep -A4 -E '^face0:' "$work/run.log" | head -5 | tr '\n' ' ')"
fi
cat "$work/run.log" >>"$log"
say "$line"
printf '## 2. End to end\n\n%s\n\n' "$line" >>"$report"

# --- 3. one XLA training step ------------------------------------------------
say "== 3. XLA training step (GOMLX_BACKEND=xla:cuda)"
t0=$SECONDS
if go build -tags xla -o bin/face0-xla ./cmd/face0 >>"$log" 2>&1; then
  ds="$work/ds"
  [ -d "$ds" ] || bin/face0 synthfaces "$ds" --train 2 --heldout 0 --per-identity 2 --size "$train_size" >>"$log" 2>&1
  if GOMLX_BACKEND=xla:cuda bin/face0-xla train "$ds" --base "$work/models/sd15-fp32" --size "$train_size" \
    --face synthfaces-id --steps 1 --batch 1 --ema-decay 0 --checkpoint-every 1000 --plain --out "$work/models/xla-step" >"$work/train.log" 2>&1; then
    line="one XLA training step of the full-size UNet at ${train_size}x${train_size} (prepare, compile, step, checkpoint, export): $((SECONDS - t0)) s; $(grep -E 's/step' "$work/train.log" | tail -1)"
  else
    line="XLA training failed: $(grep -A4 -E '^face0:' "$work/train.log" | head -5 | tr '\n' ' ')"
  fi
  cat "$work/train.log" >>"$log"
else
  line="go build -tags xla failed (cgo and a C compiler are needed); see $log"
fi
say "$line"
printf '## 3. Training\n\n%s\n' "$line" >>"$report"
say "report: $report"
