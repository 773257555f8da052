#!/usr/bin/env bash
# setup-gpu.sh installs onnxruntime 1.29.0 for Linux x64 with its CUDA
# execution provider, from the npm registry, checksum-verified like
# setup.sh's CPU library. It is opt-in (`make setup-gpu`): once installed,
# face0 loads this build instead of the CPU one (ml/ort.LibraryPath), the CPU
# device still works, and a run uses the GPU only when asked (--device cuda,
# the nodes' device input).
#
#   com.github.asus4.onnxruntime@0.4.9               libonnxruntime.so (the core, 28 MB)
#   com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 libonnxruntime_providers_{shared,cuda,tensorrt}.so (230 MB)
#
# The CUDA provider is built for CUDA 13 and cuDNN 9. This script does not
# install them (they come with the NVIDIA driver, the CUDA toolkit or pip
# wheels); at the end it lists which of their libraries the loader cannot
# find. Everything lands in ${FACE0_CACHE:-~/.cache/face0}/onnxruntime-gpu-1.29.0.
set -euo pipefail

cache="${FACE0_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/face0}"
dest="$cache/onnxruntime-gpu-1.29.0"
mkdir -p "$cache"

# name sha256 package: what gets installed, and from which package.
files=(
  "libonnxruntime.so 5715f06d8992ca8eeeddcce43df3a7d38f97d537052126f558e912cb312460ca com.github.asus4.onnxruntime@0.4.9"
  "libonnxruntime_providers_shared.so c6a12593396095f5670160e284c35d1700b7708cf3037b7042e2a5200ccae772 com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9"
  "libonnxruntime_providers_cuda.so 56cf3254b118ad837ccc4ed8f6d1b23504bbf7ef91b34cbc0b289cb7f10b3037 com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9"
  "libonnxruntime_providers_tensorrt.so ef6071798a339038ad66c428fb1a809cf8e499bffc3b6870e4e8bc4f4c6a6320 com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9"
)

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "setup-gpu: the GPU build is for Linux x86_64; this is $(uname -s)-$(uname -m)" >&2
  exit 1
fi

if [ ! -f "$dest/.complete" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for pkg in com.github.asus4.onnxruntime@0.4.9 com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9; do
    echo "setup-gpu: fetching $pkg" >&2
    # npm pack only downloads the tarball (checked against the registry's
    # integrity hash); no install script runs.
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  done
  mkdir -p "$tmp/core" "$tmp/gpu"
  tar -xzf "$tmp"/com.github.asus4.onnxruntime-0.4.9.tgz -C "$tmp/core" package/Plugins/Linux/x64
  tar -xzf "$tmp"/com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz -C "$tmp/gpu" package/Plugins/Linux/x64 package/LICENSE
  rm -rf "$dest.partial"
  mkdir -p "$dest.partial"
  for entry in "${files[@]}"; do
    read -r name sum pkg <<<"$entry"
    src="$tmp/gpu/package/Plugins/Linux/x64/$name"
    case "$pkg" in com.github.asus4.onnxruntime@*) src="$tmp/core/package/Plugins/Linux/x64/$name" ;; esac
    cp "$src" "$dest.partial/$name"
    echo "$sum  $dest.partial/$name" | sha256sum -c --quiet - \
      || { echo "setup-gpu: $name from $pkg does not have the pinned checksum; refusing to install it" >&2; exit 1; }
  done
  cp "$tmp/gpu/package/LICENSE" "$dest.partial/LICENSE"
  # onnxruntime_go loads the core by path; the soname users expect is .so.1.
  ln -sf libonnxruntime.so "$dest.partial/libonnxruntime.so.1"
  touch "$dest.partial/.complete"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
fi
echo "onnxruntime 1.29.0 GPU build ready in $dest"

# Which CUDA 13 / cuDNN 9 libraries the loader would not find (the same
# search ml/ort makes before it asks for the CUDA provider).
missing=()
for so in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9; do
  found=
  IFS=: read -r -a ldp <<<"${LD_LIBRARY_PATH:-}"
  for d in "$dest" "${ldp[@]}" /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu /usr/lib64 /lib64 /usr/lib /lib /usr/local/cuda/lib64 /usr/lib/wsl/lib; do
    if [ -n "$d" ] && [ -e "$d/$so" ]; then found=1; break; fi
  done
  if [ -z "$found" ] && ldconfig -p 2>/dev/null | grep -q " $so "; then found=1; fi
  [ -n "$found" ] || missing+=("$so")
done
if [ ${#missing[@]} -gt 0 ]; then
  cat >&2 <<EOF
setup-gpu: not found on this machine: ${missing[*]}
  The CUDA device needs the NVIDIA driver (libcuda.so.1), the CUDA 13 runtime
  libraries (cudart, cublas, cublasLt, curand) and cuDNN 9. Install them from
  NVIDIA's packages, or from pip (nvidia-cuda-runtime, nvidia-cublas,
  nvidia-curand, nvidia-cudnn-cu13) and put their site-packages/nvidia/*/lib
  folders on LD_LIBRARY_PATH. Until then face0 runs on the CPU device as before.
EOF
fi
