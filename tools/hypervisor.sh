#!/usr/bin/env bash
# The local hypervisor: libvirt + QEMU from Debian packages, started without
# systemd when systemd is not PID 1, behind a network guard that keeps every
# guest packet on this host.
#
#   tools/hypervisor.sh up                    install, load the guard, start the daemons
#   tools/hypervisor.sh down [--remove-guard] stop domains/networks and the daemons
#                                             (every running domain and active network
#                                             of this libvirt: the machine is the project's;
#                                             definitions are kept)
#   tools/hypervisor.sh status                daemons, guard counters, domains, networks
#                                             (exit 0 when libvirt answers, 3 otherwise)
#
# Order in `up` matters: the guard (tools/guard.nft) is loaded before any
# package postinst or libvirtd could start a NAT network. Idempotent: a warm
# re-run checks and changes nothing (the guard keeps its counters).
# Environment: TENANCY_UPLINK="eth0 ..." overrides the uplink detection.
set -euo pipefail
# shellcheck source=tools/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=tools/packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/packages.sh"
PKG_LOG_PREFIX=hypervisor

URI=qemu:///system
STATE_DIR="$TENANCY_STATE/hypervisor"
GUARD_FILE="$TENANCY_ROOT/tools/guard.nft"
SYSCTLS=(net.ipv4.ip_forward net.ipv6.conf.all.forwarding)
DAEMONS=(virtlogd virtlockd libvirtd)   # start order; stopped in reverse
PACKAGES=(
  libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu
  libvirt-daemon-config-network libvirt-daemon-config-nwfilter
  qemu-system-x86 qemu-utils dnsmasq-base debootstrap genisoimage
  iptables nftables ebtables bridge-utils iproute2 iputils-ping
  openssh-client conntrack chrony
)

log() { printf 'hypervisor: %s\n' "$*"; }
die() { printf 'hypervisor: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (libvirt system daemons, nftables)"

systemd_is_init() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }

# --- host prerequisites ----------------------------------------------------------

# Directories, device nodes and kernel modules libvirt relies on but that only
# systemd, udev or a first start of the stock `default` network would create:
# on a machine where none of those ran, `tenancy up` would fail deep inside
# libvirt (for example "Failed to create file '/var/lib/libvirt/dnsmasq/...'").
STATE_DIRS=(
  "/var/lib/libvirt/dnsmasq root:root 0755"
  "/var/lib/libvirt/images root:root 0711"
  "/var/log/libvirt/qemu root:root 0750"
  "/var/cache/libvirt/qemu root:root 0750"
  "/run/libvirt root:root 0755"
)
KERNEL_MODULES=(tun bridge br_netfilter nf_tables)

ensure_host_prerequisites() {
  local entry dir owner mode made=()
  for entry in "${STATE_DIRS[@]}"; do
    read -r dir owner mode <<<"$entry"
    if [ ! -d "$dir" ]; then
      install -d -o "${owner%:*}" -g "${owner#*:}" -m "$mode" "$dir"
      made+=("$dir")
    fi
  done
  if [ ${#made[@]} -gt 0 ]; then log "state dirs: created ${made[*]}"; else log "state dirs: present"; fi
  if [ ! -c /dev/net/tun ]; then
    mkdir -p /dev/net
    mknod -m 0666 /dev/net/tun c 10 200
    log "device /dev/net/tun: created (QEMU's tap interfaces need it)"
  fi
  # Modules may be built in (nothing to load) or absent; what matters is that
  # the features work: `tenancy doctor` checks /dev/net/tun, nftables and bridges.
  local m loaded=() absent=()
  for m in "${KERNEL_MODULES[@]}"; do
    if [ -d "/sys/module/$m" ]; then continue; fi
    if modprobe "$m" 2>/dev/null; then loaded+=("$m"); else absent+=("$m"); fi
  done
  if [ ${#loaded[@]} -eq 0 ] && [ ${#absent[@]} -eq 0 ]; then
    log "kernel modules: ${KERNEL_MODULES[*]} present"
  else
    log "kernel modules: loaded [${loaded[*]}], not loadable (built in or absent) [${absent[*]}]"
  fi
}

# --- guard --------------------------------------------------------------------

uplinks() {
  if [ -n "${TENANCY_UPLINK:-}" ]; then
    tr ' ' '\n' <<<"$TENANCY_UPLINK" | sed '/^$/d'
    return
  fi
  { ip -4 route show default; ip -6 route show default; } 2>/dev/null |
    awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}' | sort -u
}

dnsmasq_uids() {
  # libvirt's dnsmasq drops privileges to `nobody` on Debian 12 (no
  # libvirt-dnsmasq user exists); the other names are covered if present.
  local u
  for u in nobody libvirt-dnsmasq dnsmasq; do id -u "$u" 2>/dev/null || true; done | sort -un
}

nft_set() { # words -> '{ "a", "b" }' (quoted) or '{ 1, 2 }' (numbers)
  local quote=$1; shift
  local out="" w
  for w in "$@"; do
    if [ "$quote" = q ]; then w="\"$w\""; fi
    out="${out:+$out, }$w"
  done
  printf '{ %s }' "$out"
}

guard_listing() {
  nft -s list table inet tenancy_guard 2>/dev/null || true
  nft -s list table bridge tenancy_guard 2>/dev/null || true
}

load_guard() {
  local links uids
  mapfile -t links < <(uplinks)
  [ ${#links[@]} -gt 0 ] || die "no default route: cannot tell the uplink (set TENANCY_UPLINK=eth0)"
  mapfile -t uids < <(dnsmasq_uids)
  [ ${#uids[@]} -gt 0 ] || die "no dnsmasq user found (nobody)"
  local d_up d_uid want
  d_up="uplinks=$(nft_set q "${links[@]}")"
  d_uid="dnsmasq_uids=$(nft_set n "${uids[@]}")"
  want=$( { cat "$GUARD_FILE"; echo "$d_up"; echo "$d_uid"; } | sha256sum | cut -c1-16)
  mkdir -p "$STATE_DIR"
  if [ -f "$STATE_DIR/guard.stamp" ] && [ "$(cat "$STATE_DIR/guard.stamp")" = "$want" ] &&
     [ -f "$STATE_DIR/guard.listing" ] && [ "$(guard_listing)" = "$(cat "$STATE_DIR/guard.listing")" ]; then
    log "guard: loaded, unchanged (uplink ${links[*]}, dnsmasq uid ${uids[*]}; counters kept)"
    return 0
  fi
  nft -D "$d_up" -D "$d_uid" -f "$GUARD_FILE"
  guard_listing >"$STATE_DIR/guard.listing"
  echo "$want" >"$STATE_DIR/guard.stamp"
  log "guard: loaded table inet+bridge tenancy_guard (uplink ${links[*]}, dnsmasq uid ${uids[*]})"
}

guard_counters() { # one line per counter: name packets bytes
  nft list counters table "$1" tenancy_guard 2>/dev/null |
    awk '$1 == "counter" {name = $2} $1 == "packets" {print name, $2, $4}'
}

remove_guard() {
  local fam removed=0
  for fam in inet bridge; do
    if nft list table "$fam" tenancy_guard >/dev/null 2>&1; then
      nft delete table "$fam" tenancy_guard
      removed=1
    fi
  done
  rm -f "$STATE_DIR/guard.stamp" "$STATE_DIR/guard.listing"
  if [ "$removed" -eq 1 ]; then log "guard: removed"; else log "guard: not loaded"; fi
}

# --- sysctls ------------------------------------------------------------------

save_sysctls() {
  local saved="$STATE_DIR/sysctl.saved" note="" k
  if [ -f "$saved" ]; then
    log "forwarding: original values already recorded: $(paste -sd' ' "$saved")"
    return
  fi
  mkdir -p "$STATE_DIR"
  if daemon_pid libvirtd >/dev/null; then note=" (libvirtd was already running: may be libvirt's values)"; fi
  for k in "${SYSCTLS[@]}"; do
    if [ -r "/proc/sys/${k//.//}" ]; then echo "$k=$(cat "/proc/sys/${k//.//}")"; fi
  done >"$saved.tmp"
  mv "$saved.tmp" "$saved"
  log "forwarding: recorded $(paste -sd' ' "$saved")$note"
}

restore_sysctls() {
  local saved="$STATE_DIR/sysctl.saved" k v
  if [ ! -f "$saved" ]; then log "forwarding: nothing recorded, left as is"; return; fi
  while IFS='=' read -r k v; do
    if [ -n "$k" ] && [ -w "/proc/sys/${k//.//}" ]; then echo "$v" >"/proc/sys/${k//.//}"; fi
  done <"$saved"
  log "forwarding: restored $(paste -sd' ' "$saved")"
  rm -f "$saved"
}

# --- /dev/kvm ------------------------------------------------------------------

# Without udev, /dev/kvm stays root:root 0600. libvirt's QEMU probe still sees
# KVM (query-kvm: enabled), while its own check (can libvirt-qemu open
# /dev/kvm?) says no, so every capabilities lookup declares the cache invalid
# and probes QEMU again, forever: `virsh define` hangs for minutes and
# `virsh version` takes ~4 s. Giving /dev/kvm the ownership udev would give it
# (root:kvm 0660; libvirt-qemu is in group kvm) makes both agree. Domains stay
# type='qemu' (TCG): the KVM here is PVM, unusable for stock guest kernels.
fix_kvm_device() {
  local dev=/dev/kvm
  if [ ! -c "$dev" ]; then log "kvm device: none (TCG only)"; return; fi
  if ! getent group kvm >/dev/null; then log "kvm device: no kvm group, left as is"; return; fi
  if [ "$(stat -c '%G %a' "$dev")" = "kvm 660" ]; then
    log "kvm device: root:kvm 0660 (consistent for libvirt)"
    return
  fi
  chgrp kvm "$dev"
  chmod 0660 "$dev"
  log "kvm device: set root:kvm 0660 (was root-only: libvirt re-probed QEMU on every call)"
}

# --- daemons -------------------------------------------------------------------

daemon_pid() { # prints the PID of a live daemon from its pid file
  local name=$1 pid
  [ -r "/run/$name.pid" ] || return 1
  pid=$(tr -dc '0-9' <"/run/$name.pid")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  echo "$pid"
}

# The first call after a cold start waits for the QEMU driver to probe QEMU
# (~8 s, more on a busy machine): give each attempt time instead of killing it
# early. (`virsh version` taking seconds on every call is the symptom of the
# /dev/kvm re-probe loop, see fix_kvm_device.)
libvirt_answers() { timeout 20 virsh -c "$URI" version >/dev/null 2>&1; }

start_daemons() {
  local d pid
  if systemd_is_init; then
    systemctl start virtlogd.socket virtlockd.socket libvirtd.service
    log "daemons: started by systemd"
  else
    for d in "${DAEMONS[@]}"; do
      if pid=$(daemon_pid "$d"); then
        log "daemon $d: running (pid $pid)"
        continue
      fi
      if pgrep -x "$d" >/dev/null; then
        die "$d runs without /run/$d.pid (started elsewhere?); stop it first"
      fi
      if [ "$d" = libvirtd ]; then
        mkdir -p /var/log/libvirt
        LIBVIRT_LOG_OUTPUTS="${LIBVIRT_LOG_OUTPUTS:-3:file:/var/log/libvirt/libvirtd.log}" \
          "$d" -d </dev/null >/dev/null 2>&1
      else
        "$d" -d </dev/null >/dev/null 2>&1
      fi
      local i
      for i in $(seq 50); do pid=$(daemon_pid "$d") && break; sleep 0.1; done
      [ -n "${pid:-}" ] || die "$d did not start (see /var/log/libvirt/)"
      log "daemon $d: started (pid $pid)"
    done
  fi
  local t0=$SECONDS
  until libvirt_answers; do
    [ $((SECONDS - t0)) -lt 60 ] || die "$URI did not answer within 60 s (see /var/log/libvirt/libvirtd.log)"
    sleep 0.5
  done
  log "libvirt: $URI answers ($(virsh -c "$URI" version | awk -F': *' '/^Using library/ {l = $2} /^Running hypervisor/ {h = $2} END {print l ", " h}'), waited $((SECONDS - t0)) s)"
}

stop_daemon() {
  local d=$1 pid i
  if ! pid=$(daemon_pid "$d"); then
    rm -f "/run/$d.pid" 2>/dev/null || true
    log "daemon $d: not running"
    return 0
  fi
  kill -TERM "$pid"
  for i in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  if [ -d "/proc/$pid" ]; then
    kill -KILL "$pid"
    log "daemon $d: killed (pid $pid did not stop within 20 s)"
  else
    log "daemon $d: stopped (pid $pid)"
  fi
  rm -f "/run/$d.pid" 2>/dev/null || true
}

# --- libvirt objects ------------------------------------------------------------

# The stock `default` network NATs guests out of the uplink: never autostart it.
# Before libvirtd starts, its autostart link is removed directly (libvirtd would
# start it on boot); afterwards the same is checked through the API.
disable_default_autostart_offline() {
  local link=/etc/libvirt/qemu/networks/autostart/default.xml
  if [ -L "$link" ]; then
    rm -f "$link"
    log "network default: autostart disabled (before libvirtd start)"
  fi
}

neutralise_default_network() {
  if ! virsh -c "$URI" net-info default >/dev/null 2>&1; then
    log "network default: not defined"
    return
  fi
  local info
  info=$(virsh -c "$URI" net-info default)
  if grep -Eq '^Autostart:\s+yes' <<<"$info"; then
    virsh -c "$URI" net-autostart default --disable >/dev/null
    log "network default: autostart disabled"
  fi
  if grep -Eq '^Active:\s+yes' <<<"$info"; then
    virsh -c "$URI" net-destroy default >/dev/null
    log "network default: was active, destroyed (it NATs to the uplink)"
  else
    log "network default: defined, inactive, no autostart (left so)"
  fi
}

names() { virsh -c "$URI" "$@" --name 2>/dev/null | sed 's/^ *//; s/ *$//; /^$/d'; }

stop_libvirt_objects() {
  local n count=0
  while read -r n; do
    if virsh -c "$URI" destroy "$n" >/dev/null; then count=$((count + 1)); fi
  done < <(names list --state-running; names list --state-paused)
  log "domains: destroyed $count running (definitions kept)"
  count=0
  while read -r n; do
    if virsh -c "$URI" net-destroy "$n" >/dev/null; then count=$((count + 1)); fi
  done < <(names net-list)
  log "networks: destroyed $count active (definitions kept)"
}

# --- time service for the guests ---------------------------------------------------

# A site that names no ntpServers (the local site) gives its guests the segment
# gateway, i.e. this host, as their time source (BASE-TIME-01/02; the host
# nftables table opens udp/123 from the segments for it). Without systemd a
# dedicated chronyd serves the local clock (`local stratum 10`) and never steers
# this host's clock (-x) nor asks any upstream server: no traffic leaves the
# machine. With systemd the distribution's chrony gets the same two lines.
# machine-wide, like the daemon: clones of the project share one time service
CHRONY_CONF=/var/lib/tenancy/chrony-guests.conf
CHRONY_PID=/run/tenancy-chronyd.pid
CHRONY_LINES=(
  "# tools/hypervisor.sh: time for the guests of this hypervisor (no upstream servers)"
  "local stratum 10"
  "allow 10.0.0.0/8"
  "allow 172.16.0.0/12"
  "allow 192.168.0.0/16"
)

start_time_service() {
  if systemd_is_init; then
    local dropin=/etc/chrony/conf.d/tenancy-guests.conf
    if ! cmp -s <(printf '%s\n' "${CHRONY_LINES[@]}") "$dropin" 2>/dev/null; then
      printf '%s\n' "${CHRONY_LINES[@]}" >"$dropin"
      systemctl restart chrony.service
    fi
    log "time service: chrony (systemd) serves the guests"
    return
  fi
  mkdir -p "$(dirname "$CHRONY_CONF")"
  local want pid
  want=$(printf '%s\n' "${CHRONY_LINES[@]}" "cmdport 0" "pidfile $CHRONY_PID")
  if [ "$(cat "$CHRONY_CONF" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" >"$CHRONY_CONF"
    stop_time_service quiet
  fi
  if pid=$(tr -dc '0-9' <"$CHRONY_PID" 2>/dev/null) && [ -n "$pid" ] &&
     [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = chronyd ]; then
    log "time service: chronyd for the guests running (pid $pid)"
    return
  fi
  chronyd -x -f "$CHRONY_CONF" </dev/null >/dev/null 2>&1 || die "chronyd did not start (config $CHRONY_CONF)"
  local i
  for i in $(seq 50); do pid=$(tr -dc '0-9' <"$CHRONY_PID" 2>/dev/null) && [ -n "$pid" ] && break; sleep 0.1; done
  log "time service: chronyd for the guests started (pid ${pid:-?}; serves the local clock on udp/123)"
}

stop_time_service() {
  local pid i
  if pid=$(tr -dc '0-9' <"$CHRONY_PID" 2>/dev/null) && [ -n "$pid" ] &&
     [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = chronyd ]; then
    kill -TERM "$pid"
    # wait for it: a start right after must not mistake the dying daemon for a live one
    for i in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ "${1:-}" = quiet ] || log "time service: chronyd for the guests stopped (pid $pid)"
  fi
  rm -f "$CHRONY_PID"
}

# --- commands ---------------------------------------------------------------------

cmd_up() {
  local t0=$SECONDS
  # 1. the guard needs only nft and ip: install those first, load it, then the rest
  ensure_packages guard nftables iproute2
  load_guard
  ensure_packages libvirt "${PACKAGES[@]}"
  ensure_host_prerequisites
  start_time_service
  # 2. forwarding values before libvirt touches them
  save_sysctls
  # 3. daemons
  fix_kvm_device
  if ! systemd_is_init && ! daemon_pid libvirtd >/dev/null; then disable_default_autostart_offline; fi
  start_daemons
  neutralise_default_network
  log "up: ready in $((SECONDS - t0)) s"
}

cmd_down() {
  local remove=0
  for a in "$@"; do
    case "$a" in
      --remove-guard) remove=1 ;;
      *) die "down: unknown option $a" ;;
    esac
  done
  if libvirt_answers; then
    stop_libvirt_objects
  else
    log "libvirt: not answering, no domains/networks to stop"
  fi
  if systemd_is_init; then
    systemctl stop libvirtd.service virtlockd.service virtlogd.service virtlockd.socket virtlogd.socket || true
    log "daemons: stopped by systemd"
  else
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]}"; done
    stop_time_service
  fi
  restore_sysctls
  if [ "$remove" -eq 1 ]; then
    remove_guard
  else
    log "guard: kept loaded (use down --remove-guard to remove)"
  fi
}

cmd_status() {
  local d pid rc=0 k
  for d in "${DAEMONS[@]}"; do
    if pid=$(daemon_pid "$d"); then log "daemon $d: running (pid $pid)"; else log "daemon $d: stopped"; fi
  done
  if nft list table inet tenancy_guard >/dev/null 2>&1; then
    log "guard: loaded (uplink $(uplinks | tr '\n' ' '| sed 's/ $//'))"
    local fam
    for fam in inet bridge; do
      guard_counters "$fam" | while read -r name pk by; do
        log "  counter $fam $name: $pk packets, $by bytes"
      done
    done
  else
    log "guard: NOT LOADED"
    rc=3
  fi
  if [ -c /dev/kvm ]; then log "kvm device: $(stat -c '%U:%G %a' /dev/kvm) (domains use type='qemu', TCG)"; fi
  for k in "${SYSCTLS[@]}"; do
    if [ -r "/proc/sys/${k//.//}" ]; then log "sysctl $k = $(cat "/proc/sys/${k//.//}")"; fi
  done
  if [ -f "$STATE_DIR/sysctl.saved" ]; then
    log "sysctl values to restore on down: $(paste -sd' ' "$STATE_DIR/sysctl.saved")"
  fi
  if libvirt_answers; then
    log "libvirt: $URI answers"
    log "domains:"
    virsh -c "$URI" list --all | sed '/^$/d; s/^/    /'
    log "networks:"
    virsh -c "$URI" net-list --all | sed '/^$/d; s/^/    /'
  else
    log "libvirt: $URI not answering"
    rc=3
  fi
  return "$rc"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) echo "usage: $0 up | down [--remove-guard] | status" >&2; exit 2 ;;
esac
