#!/usr/bin/env bash
# Network-namespace hosts that stand in for the intranet, extranet and internet
# clients of the local site (addresses from stacks/Pulumi.local.yaml `external`).
# Each namespace gets one veth to this host and a route to the tenant pools via
# it; nothing is connected to the uplink. Usage: standins.sh up|down|status
set -euo pipefail
. "$(dirname "$0")/env.sh"

# name  host-side address  namespace address
STANDINS=(
  "intranet 10.255.1.1 10.255.1.2"
  "extranet 10.255.2.1 10.255.2.2"
  "internet 10.255.3.1 10.255.3.2"
)

up() {
  for entry in "${STANDINS[@]}"; do
    read -r name host_ip ns_ip <<<"$entry"
    ns="tn-$name"
    # not `ip netns list | grep -q`: with pipefail, grep -q exiting early can fail the
    # pipeline (SIGPIPE), and `ip netns add` of an existing namespace aborts the script
    if [ ! -e "/run/netns/$ns" ]; then
      ip netns add "$ns"
    fi
    if ! ip link show "tnv-$name" >/dev/null 2>&1; then
      ip link add "tnv-$name" type veth peer name eth0 netns "$ns"
    fi
    ip addr replace "$host_ip/24" dev "tnv-$name"
    ip link set "tnv-$name" up
    ip -n "$ns" addr replace "$ns_ip/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$host_ip"
    echo "standins: $ns at $ns_ip (via tnv-$name $host_ip)"
  done
}

down() {
  for entry in "${STANDINS[@]}"; do
    read -r name _ _ <<<"$entry"
    ip link del "tnv-$name" 2>/dev/null || true
    ip netns del "tn-$name" 2>/dev/null || true
  done
  echo "standins: removed"
}

case "${1:-status}" in
  up) up ;;
  down) down ;;
  status) ip netns list | grep '^tn-' || echo "standins: none" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
