#!/usr/bin/env bash
# setup.sh installs everything the project needs that does not come from the Go
# module proxy: third-party model files and test photos shipped inside npm packages,
# and the onnxruntime shared library. It is idempotent and cheap when already done.
#
# Everything lands in the face0 cache directory:
#   ${FACE0_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/face0}
# and the Go code (internal/assets) looks there by the same rule.
set -euo pipefail

cache="${FACE0_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/face0}"
mkdir -p "$cache"

# fetch_npm NAME@VERSION DEST: unpack an npm package tarball into DEST without
# running any install script (npm pack only downloads the tarball).
fetch_npm() {
  local spec=$1 dest=$2
  if [ -f "$dest/.complete" ]; then return 0; fi
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  mkdir -p "$dest.partial"
  tar -xzf "$tmp"/*.tgz -C "$dest.partial" --strip-components=1
  rm -rf "$tmp" "$dest"
  mv "$dest.partial" "$dest"
  touch "$dest/.complete"
}

# face-api: pretrained face detectors, landmarks and the 128-d face descriptor
# (model/*.bin + manifests), and the real multi-person demo photos (demo/*.jpg).
fetch_npm @vladmandic/face-api@1.7.15 "$cache/face-api"

# onnxruntime 1.24.1 CPU library, the version github.com/yalue/onnxruntime_go v1.27.0 targets.
ort_dir="$cache/onnxruntime-1.24.1"
ort_lib="$ort_dir/libonnxruntime.so.1.24.1"
if [ ! -f "$ort_lib" ]; then
  fetch_npm onnxruntime-node@1.24.1 "$cache/onnxruntime-node"
  mkdir -p "$ort_dir"
  cp "$cache/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ort_lib.partial"
  echo "53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4  $ort_lib.partial" | sha256sum -c --quiet - \
    || { echo "setup: libonnxruntime checksum mismatch; refusing to install it" >&2; exit 1; }
  mv "$ort_lib.partial" "$ort_lib"
  rm -rf "$cache/onnxruntime-node"
fi
# pigo's pretrained frontal face cascade (MIT), for DetectFace's pigo backend. The
# file ships inside the Go module github.com/esimov/pigo (a go.mod dependency), so
# it comes from the Go module cache, not from npm. install (not cp) because module
# cache files are read-only, and a second run must be able to overwrite the copy.
pigo_dest="$cache/pigo/facefinder"
if [ ! -f "$pigo_dest" ]; then
  pigo_dir=$(cd "$(dirname "$0")/.." && go mod download -json github.com/esimov/pigo@v1.4.6 \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$pigo_dir" ] || [ ! -f "$pigo_dir/cascade/facefinder" ]; then
    echo "setup: could not find pigo's cascade/facefinder in the Go module cache" >&2
    exit 1
  fi
  mkdir -p "$cache/pigo"
  install -m 0644 "$pigo_dir/cascade/facefinder" "$pigo_dest.partial"
  mv "$pigo_dest.partial" "$pigo_dest"
fi
echo "face0 assets ready in $cache"
