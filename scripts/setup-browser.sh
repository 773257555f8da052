#!/usr/bin/env bash
# Installs Debian's chromium for the editor's browser end-to-end test
# (editor/e2e). Does nothing when a chromium is already there.
set -euo pipefail
for b in "${FACE0_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
  if [[ -n "$b" && -x "$b" ]]; then
    echo "chromium: $b"
    exit 0
  fi
done
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium: $(command -v chromium)"
