#!/usr/bin/env bash
# Installs headless Chromium and its driver from Debian for the browser tests
# (tests/browser). Does nothing when /usr/bin/chromium is already there, so CI may call it
# on every run. Needs root or passwordless sudo.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]]; then
    sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
else
    echo "install_browser.sh: /usr/bin/chromium is missing and neither root nor sudo is available" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver \
    fonts-liberation >/dev/null

if [[ ! -x /usr/bin/chromium ]]; then
    echo "install_browser.sh: apt-get finished but /usr/bin/chromium is still missing" >&2
    exit 1
fi
