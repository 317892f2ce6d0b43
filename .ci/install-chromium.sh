#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the HTML report's browser
# test (cmd/ptlab TestHTMLInBrowser, driven by chromedp). Without a browser
# the test skips and says so.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "ci: $(chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "ci: installed $(chromium --version 2>/dev/null || echo chromium)"
