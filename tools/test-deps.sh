#!/usr/bin/env bash
# Tools the test suite needs beyond the hypervisor: headless Chromium renders the
# auditors' HTML report in a browser test. Idempotent: installs only what is missing.
set -euo pipefail
. "$(dirname "$0")/env.sh"

packages=(chromium)
missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "test-deps: up to date"
  exit 0
fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "test-deps: apt-get update reported errors (continuing)"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "test-deps: ready"
