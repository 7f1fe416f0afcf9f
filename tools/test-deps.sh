#!/usr/bin/env bash
# Tools the test suite needs beyond the hypervisor: headless Chromium renders the
# auditors' HTML report in a browser test; cloud-init's own schema checker and
# network renderer, and virt-xml-validate's xmllint, check the rendered artefacts (tests/integration/test_rendered_artefacts.py);
# yamllint and ansible-lint come with the venv. Idempotent: installs only what is missing.
set -euo pipefail
. "$(dirname "$0")/env.sh"
# shellcheck source=tools/packages.sh
. "$(dirname "$0")/packages.sh"
PKG_LOG_PREFIX=test-deps

ensure_packages "browser tests" chromium

# cloud-init is wanted here as a checker only, never as this machine's boot agent:
# when the project brings it, /etc/cloud/cloud-init.disabled (cloud-init's own off
# switch, read by its systemd generator) is written first, so no cloud-init unit is
# ever pulled into a boot; ensure_packages keeps postinst from starting services.
# A machine that already had cloud-init keeps its own configuration.
if ! dpkg-query -W -f='${db:Status-Status}' cloud-init 2>/dev/null | grep -qx installed; then
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p /etc/cloud
    [ -e /etc/cloud/cloud-init.disabled ] ||
      printf '# written by tools/test-deps.sh: cloud-init is a test tool here\n' \
        >/etc/cloud/cloud-init.disabled
  fi
fi
ensure_packages "rendered artefact checks" cloud-init libxml2-utils
