#!/usr/bin/env bash
# Installs what only the tests need: Debian's headless Chromium for the map page's browser test,
# and kcat, the outside Kafka client of the Kafka security tests.
# Idempotent and quick when it is already there.  For Debian 12, as root (or with sudo).
set -euo pipefail

say() { printf '[install-test-tools] %s\n' "$*"; }

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
if [ "${#missing[@]}" -eq 0 ]; then
    say "chromium present ($(chromium --version 2>/dev/null | head -n 1)), kcat present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "ERROR: run as root (or install sudo)"; exit 1; }
    SUDO="sudo"
fi
say "installing Debian's ${missing[*]} for the tests"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
say "installed ${missing[*]}"
