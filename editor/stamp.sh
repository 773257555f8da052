#!/usr/bin/env bash
# Prints the hash of the editor's sources: sha256 over `sha256sum` lines of the
# files below, sorted by path. embed_test.go computes the same.
set -euo pipefail
cd "$(dirname "$0")"
{ ls index.html package.json package-lock.json tsconfig.json vite.config.ts; find src -type f; } \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
