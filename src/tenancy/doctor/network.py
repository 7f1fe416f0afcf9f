"""Checks of what the guests meet on the host network: the stand-ins and the time service.

Neither blocks ``tenancy up``; both decide whether the audit can test
what it claims (firewall probes, BASE-TIME-02).
"""

from __future__ import annotations

from tenancy.doctor.common import FIX_HYPERVISOR, FIX_STANDINS
from tenancy.doctor.model import Check, Facts

STANDINS = ("tn-intranet", "tn-extranet", "tn-internet")


def check_standins(facts: Facts) -> list[Check]:
    """The audit's firewall probes connect from these namespaces; without them: "not tested"."""
    missing = [ns for ns in STANDINS if f"/run/netns/{ns}" not in facts.files]
    if missing:
        return [
            Check(
                "network",
                "stand-ins",
                "warn",
                f"network namespaces missing: {', '.join(missing)} "
                "(tenancy audit reports its firewall probes as not tested)",
                FIX_STANDINS,
            )
        ]
    return [Check("network", "stand-ins", "ok", "namespaces " + ", ".join(STANDINS))]


def check_time_service(facts: Facts) -> list[Check]:
    """A site without ntpServers gives its guests this host's time (udp/123, BASE-TIME-02)."""
    site = facts.site
    if site is None or site.ntp_servers or not site.local_hosts:
        return []
    if facts.udp_ports is None:
        return [Check("network", "guest time service", "info", "cannot read /proc/net/udp")]
    if 123 not in facts.udp_ports:
        return [
            Check(
                "network",
                "guest time service",
                "fail",
                f"site {site.name} names no ntpServers, so its guests take the time from "
                "this host, and nothing listens on udp/123 (BASE-TIME-02 fails in the audit)",
                FIX_HYPERVISOR,
            )
        ]
    return [Check("network", "guest time service", "ok", "udp/123 served for the guests")]
