# shellcheck shell=bash
# Debian packages for every tools/ step: install what is missing, and remember
# what the project installed so `make purge PACKAGES=1` removes exactly that.
# Source it after tools/env.sh; it defines ensure_packages and nothing else runs.
#
#   ensure_packages LABEL PKG...   install the missing ones; one line either way
#
# Installed names are appended to $TENANCY_PACKAGES_LEDGER (default
# /var/lib/tenancy/installed-packages): packages that were already on the
# machine before the project came are never recorded, so never purged.
# Without systemd as PID 1, a temporary policy-rc.d keeps postinst scripts from
# starting daemons (libvirtd would autostart its NAT `default` network).

TENANCY_PACKAGES_LEDGER="${TENANCY_PACKAGES_LEDGER:-/var/lib/tenancy/installed-packages}"

_pkg_log() { printf '%s: %s\n' "${PKG_LOG_PREFIX:-packages}" "$*"; }

ensure_packages() {
  local what=$1
  shift
  local installed missing=() p
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null |
    awk '$2 == "installed" {print $1}' || true)
  for p in "$@"; do
    grep -qxF "$p" <<<"$installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    _pkg_log "packages ($what): all $# installed"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    _pkg_log "packages ($what): missing ${missing[*]}; run as root (sudo make setup) to install them" >&2
    return 1
  fi
  _pkg_log "packages ($what): installing ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d added_policy=0 rc=0
  if [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, tools/packages.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    added_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT # also when apt-get is interrupted
  fi
  {
    export DEBIAN_FRONTEND=noninteractive
    # a fresh machine may have no package lists at all: update before installing
    apt-get update -qq || _pkg_log "apt-get update reported errors (continuing)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  } || rc=$?
  if [ "$added_policy" -eq 1 ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  if [ "$rc" -ne 0 ]; then
    _pkg_log "packages ($what): apt-get install failed ($rc)" >&2
    return "$rc"
  fi
  mkdir -p "$(dirname "$TENANCY_PACKAGES_LEDGER")"
  printf '%s\n' "${missing[@]}" >>"$TENANCY_PACKAGES_LEDGER"
  sort -u -o "$TENANCY_PACKAGES_LEDGER" "$TENANCY_PACKAGES_LEDGER"
}
