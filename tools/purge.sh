#!/usr/bin/env bash
# Removes what `make setup` installed, built and started, so the fresh-machine
# path (`make demo`, then `make test`) can be walked again on the same machine.
#
#   tools/purge.sh              VMs, networks, filters and pools of the project, the
#                               libvirt daemons, guard and site nftables tables, stand-ins,
#                               guest images, engine and Go caches, test copies, this
#                               clone's state (.tenancy/: Pulumi state, passphrase, keys)
#                               and .venv
#   tools/purge.sh --packages   also the Debian packages the project installed (listed in
#                               /var/lib/tenancy/installed-packages; packages that were on
#                               the machine before are never listed), then apt autoremove
#
# Irreversible: the Pulumi state and secrets of this clone go too. Objects are
# the project's when libvirt names them tenancy-* (networks, filters, pools) or
# when their disks live under /var/lib/tenancy/ (domains).
set -euo pipefail
# shellcheck source=tools/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

URI=qemu:///system
PROJECT_VAR=/var/lib/tenancy
LEDGER="${TENANCY_PACKAGES_LEDGER:-$PROJECT_VAR/installed-packages}"
TEST_COPIES=/var/tmp/tenancy-it

log() { printf 'purge: %s\n' "$*"; }

PACKAGES=0
for a in "$@"; do
  case "$a" in
    --packages) PACKAGES=1 ;;
    *) echo "usage: $0 [--packages]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "purge: must run as root" >&2; exit 1; }

t0=$SECONDS

# 1. stand-ins (network namespaces of the audit probes)
bash "$TENANCY_ROOT/tools/standins.sh" down >/dev/null 2>&1 || true
log "stand-ins: removed"

# 2. libvirt objects of the project, while libvirt still answers
names() { virsh -c "$URI" "$@" --name 2>/dev/null | sed 's/^ *//; s/ *$//; /^$/d'; }
if command -v virsh >/dev/null && timeout 20 virsh -c "$URI" version >/dev/null 2>&1; then
  count=0
  while read -r d; do
    if virsh -c "$URI" dumpxml "$d" 2>/dev/null | grep -q "$PROJECT_VAR/"; then
      virsh -c "$URI" destroy "$d" >/dev/null 2>&1 || true
      virsh -c "$URI" undefine "$d" --nvram >/dev/null 2>&1 || virsh -c "$URI" undefine "$d" >/dev/null 2>&1 || true
      count=$((count + 1))
    fi
  done < <(names list --all)
  log "domains: removed $count"
  count=0
  while read -r n; do
    case "$n" in tenancy-*) ;; *) continue ;; esac
    virsh -c "$URI" net-destroy "$n" >/dev/null 2>&1 || true
    virsh -c "$URI" net-undefine "$n" >/dev/null 2>&1 && count=$((count + 1))
  done < <(names net-list --all)
  log "networks: removed $count"
  count=0
  while read -r f; do
    case "$f" in tenancy-*) ;; *) continue ;; esac
    virsh -c "$URI" nwfilter-undefine "$f" >/dev/null 2>&1 && count=$((count + 1))
  done < <(virsh -c "$URI" nwfilter-list 2>/dev/null | awk 'NR > 2 && $2 != "" {print $2}')
  log "nwfilters: removed $count"
  count=0
  while read -r p; do
    if virsh -c "$URI" pool-dumpxml "$p" 2>/dev/null | grep -q "<path>$PROJECT_VAR/"; then
      virsh -c "$URI" pool-destroy "$p" >/dev/null 2>&1 || true
      virsh -c "$URI" pool-undefine "$p" >/dev/null 2>&1 && count=$((count + 1))
    fi
  done < <(names pool-list --all)
  log "pools: removed $count"
else
  log "libvirt: not answering; no libvirt objects to remove"
fi

# 3. daemons, forwarding sysctls, guard; then the site tables the programs loaded
if [ -f "$TENANCY_ROOT/tools/hypervisor.sh" ] && command -v nft >/dev/null; then
  bash "$TENANCY_ROOT/tools/hypervisor.sh" down --remove-guard | sed 's/^/purge: /'
fi
if command -v nft >/dev/null; then
  while read -r fam table; do
    nft delete table "$fam" "$table" && log "nftables: removed table $fam $table"
  done < <(nft list tables 2>/dev/null | awk '$3 ~ /^tenancy_/ {print $2, $3}')
fi

# 4. files: images, pools, caches, test copies, this clone's state and venv
mapfile -t installed < <(cat "$LEDGER" 2>/dev/null || true)
for path in "$PROJECT_VAR" "$TENANCY_CACHE" "$TEST_COPIES" "$TENANCY_STATE" "$TENANCY_ROOT/.venv"; do
  if [ -e "$path" ]; then
    rm -rf --one-file-system "$path"
    log "removed $path"
  fi
done
if [ "$PACKAGES" -eq 0 ] && [ ${#installed[@]} -gt 0 ]; then
  # the record of installed packages outlives a purge that keeps them
  mkdir -p "$(dirname "$LEDGER")"
  printf '%s\n' "${installed[@]}" >"$LEDGER"
fi
find "$TENANCY_ROOT/src" -maxdepth 2 -name '*.egg-info' -prune -exec rm -rf {} + 2>/dev/null || true

# 5. packages the project installed (only with --packages)
if [ "$PACKAGES" -eq 1 ]; then
  if [ ${#installed[@]} -gt 0 ]; then
    log "packages: purging ${installed[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # only the listed packages that are still installed (apt refuses unknown names)
    present=()
    for p in "${installed[@]}"; do
      if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ]; then present+=("$p"); fi
    done
    if [ ${#present[@]} -gt 0 ]; then apt-get purge -y -qq "${present[@]}" >/dev/null; fi
    apt-get autoremove --purge -y -qq >/dev/null
    # state libvirt and QEMU leave behind (or that setup created for them)
    rm -rf /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /run/libvirt /etc/libvirt
    # cloud-init's off switch that tools/test-deps.sh wrote before installing it as a checker
    if grep -qs 'written by tools/test-deps.sh' /etc/cloud/cloud-init.disabled &&
      ! dpkg-query -W -f='${db:Status-Status}' cloud-init 2>/dev/null | grep -qx installed; then
      rm -f /etc/cloud/cloud-init.disabled
      rmdir /etc/cloud 2>/dev/null || true
    fi
    log "packages: purged ${#present[@]}, autoremoved their dependencies"
  else
    log "packages: none recorded as installed by the project"
  fi
else
  log "packages: kept (purge --packages removes the ${#installed[@]} the project installed)"
fi
log "done in $((SECONDS - t0)) s"
