#!/usr/bin/env bash
# Installs what only the tests need: Debian's headless Chromium for the map page's browser test.
# Idempotent and quick when it is already there.  For Debian 12, as root (or with sudo).
set -euo pipefail

say() { printf '[install-test-tools] %s\n' "$*"; }

if command -v chromium >/dev/null 2>&1; then
    say "chromium present ($(chromium --version 2>/dev/null | head -n 1))"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "ERROR: run as root (or install sudo)"; exit 1; }
    SUDO="sudo"
fi
say "installing Debian's chromium for the map page test"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
say "chromium installed ($(chromium --version 2>/dev/null | head -n 1))"
