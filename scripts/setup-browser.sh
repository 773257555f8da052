#!/usr/bin/env bash
# Installs Chromium for the editor's browser end-to-end test (editor/e2e).
# Does nothing when a browser is already there: $FACE0_CHROMIUM, or chromium,
# chromium-browser or google-chrome on PATH. On Debian and Ubuntu it installs
# the distribution's chromium with apt-get (as root, or with passwordless
# sudo); anywhere else, or without the rights to, it says what to install and
# exits 0: make test then skips the browser test and runs everything else.
set -euo pipefail

for b in "${FACE0_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [[ -n "$b" ]] && p=$(command -v "$b" 2>/dev/null) && [[ -x "$p" ]]; then
    echo "chromium: $p"
    exit 0
  fi
done
if [[ -n "${FACE0_CHROMIUM:-}" ]]; then
  echo "setup-browser: FACE0_CHROMIUM=$FACE0_CHROMIUM is not an executable file" >&2
fi

explain() {
  cat >&2 <<MSG
setup-browser: $1
The editor's browser test needs Chromium (or Google Chrome). Install it with your
system's package manager, for example
  Debian/Ubuntu: sudo apt-get install chromium fonts-dejavu-core
  Fedora:        sudo dnf install chromium
  Arch:          sudo pacman -S chromium
  macOS:         brew install --cask chromium
and, when it is not on PATH as chromium, chromium-browser or google-chrome,
point FACE0_CHROMIUM at it (export FACE0_CHROMIUM=/path/to/chrome).
Until then make test skips the browser test and runs everything else.
MSG
  exit 0
}

if ! command -v apt-get >/dev/null 2>&1; then
  explain "no Chromium found, and no apt-get to install it with (not Debian or Ubuntu)."
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    explain "no Chromium found; installing it needs root (run this script with sudo, or install it yourself)."
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }; then
  explain "apt-get could not install chromium (see its message above)."
fi
echo "chromium: $(command -v chromium)"
