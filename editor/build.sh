#!/usr/bin/env bash
# Builds the browser editor into editor/dist (committed, so that a Go build
# needs no npm) and writes dist/build-stamp.txt, the hash of the sources that
# editor/embed_test.go checks. Run from anywhere: `make editor`.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
./stamp.sh > dist/build-stamp.txt
echo "editor: built dist/ ($(du -sk dist | cut -f1) KiB), stamp $(cat dist/build-stamp.txt)"
