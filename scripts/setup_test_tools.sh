#!/usr/bin/env bash
# Test tools outside the Python environment. Idempotent: a second run installs nothing.
#   bash scripts/setup_test_tools.sh
set -euo pipefail

# --- Headless Chromium (report) ---------------------------------------------------------------
# tests/report renders <output_dir>/report.html in a real browser (console errors, screenshot,
# DOM). Debian's `chromium` package; ~100 MB download, ~1 min. Needs root (or sudo).
install_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium || command -v chromium-browser)"
    return 0
  fi
  local SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  echo "installing chromium (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  chromium --version
}

install_chromium
