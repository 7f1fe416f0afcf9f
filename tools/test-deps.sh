#!/usr/bin/env bash
# Tools the test suite needs beyond the hypervisor: headless Chromium renders the
# auditors' HTML report in a browser test; yamllint and ansible-lint come with
# the venv. Idempotent: installs only what is missing.
set -euo pipefail
. "$(dirname "$0")/env.sh"
# shellcheck source=tools/packages.sh
. "$(dirname "$0")/packages.sh"
PKG_LOG_PREFIX=test-deps

ensure_packages "browser tests" chromium
