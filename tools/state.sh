#!/usr/bin/env bash
# Per-clone state: the Pulumi file backend, the secrets passphrase (0600) and the
# local site's ops SSH key. Idempotent; never overwrites an existing secret.
set -euo pipefail
. "$(dirname "$0")/env.sh"

umask 077
mkdir -p "$TENANCY_STATE/pulumi" "$TENANCY_STATE/ssh" "$TENANCY_STATE/runs"

if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" = "$TENANCY_STATE/passphrase" ] \
   && [ ! -s "$TENANCY_STATE/passphrase" ]; then
  head -c 32 /dev/urandom | base64 > "$TENANCY_STATE/passphrase"
  chmod 600 "$TENANCY_STATE/passphrase"
  echo "state: generated secrets passphrase $TENANCY_STATE/passphrase (mode 0600, not committed)"
fi

key="$TENANCY_STATE/ssh/ops_ed25519"
if [ ! -s "$key" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "tenancy-ops@$(hostname)" -f "$key"
  echo "state: generated the local site's ops SSH key $key"
fi
echo "state: backend ${PULUMI_BACKEND_URL}; passphrase ${PULUMI_CONFIG_PASSPHRASE_FILE:-from PULUMI_CONFIG_PASSPHRASE}"
