"""Time synchronisation (role tenancy_time): BASE-TIME-01..02.

A running chronyd is not a synchronised clock: BASE-TIME-02 also needs a
usable source (``chronyc -n sources`` state ``*``/``+``, a real reference in
``chronyc tracking``; see ``tenancy.compliance.chrony.chrony_sync_problem``).
"""

from __future__ import annotations

import re
from typing import Any

from tenancy.compliance import control
from tenancy.compliance.applicability import HostInfo
from tenancy.compliance.chrony import chrony_sync_problem, parse_chrony_sources
from tenancy.compliance.expect import expect
from tenancy.compliance.facts import active_lines, packages, run, units
from tenancy.compliance.items import Item

#: Time daemons that must not run next to chrony.
OTHER_DAEMONS = ["systemd-timesyncd.service", "ntp.service", "ntpsec.service", "openntpd.service"]


@control("BASE-TIME-01", items=["package", "service-enabled", "service-running", *OTHER_DAEMONS])
def chrony_running(host: Any, item: Item) -> None:
    if item.name == "package":
        expect("package chrony", packages(host, ["chrony"])["chrony"], "installed")
        return
    found = units(host, ["chrony.service", *OTHER_DAEMONS])
    if item.name == "service-enabled":
        expect(
            "chrony.service UnitFileState", found["chrony.service"].get("UnitFileState"), "enabled"
        )
    elif item.name == "service-running":
        expect("chrony.service ActiveState", found["chrony.service"].get("ActiveState"), "active")
    else:
        unit = found[item.name]
        assert unit.get("ActiveState") != "active", f"{item.name} runs next to chrony"
        if item.name == "systemd-timesyncd.service":
            assert unit.get("LoadState") in ("masked", "not-found"), (
                f"{item.name} is {unit.get('LoadState')}, expected masked (or not installed)"
            )


def _servers(host: Any) -> tuple[list[str], list[str]]:
    """(server addresses, pool lines) of chrony.conf and its sources/conf directories."""
    out = run(
        host,
        "cat /etc/chrony/chrony.conf /etc/chrony/conf.d/*.conf /etc/chrony/sources.d/*.sources "
        "2>/dev/null; true",
    )
    lines = active_lines(out.stdout)
    servers = [line.split()[1] for line in lines if re.match(r"server\s+\S", line)]
    pools = [line for line in lines if line.startswith("pool ") or line.startswith("peer ")]
    return servers, pools


@control(
    "BASE-TIME-02",
    items=["site-servers-known", "configured-servers", "no-pools", "live-sources", "synchronised"],
)
def chrony_sources(host: Any, item: Item, info: HostInfo) -> None:
    site = [str(s) for s in info.var("tenancy_site_ntp_servers") or []]
    assert site, "the inventory names no site time servers (tenancy_site_ntp_servers)"
    if item.name == "site-servers-known":
        return
    servers, pools = _servers(host)
    if item.name == "configured-servers":
        assert servers, "chrony has no server lines"
        foreign = [s for s in servers if s not in site]
        assert not foreign, f"chrony uses servers outside the site's {site}: {foreign}"
        missing = [s for s in site if s not in servers]
        assert not missing, f"chrony does not use the site's {missing}"
    elif item.name == "no-pools":
        assert not pools, f"chrony has pool/peer sources: {pools}"
    else:
        out = run(host, "chronyc -n sources", sudo=False)
        assert out.rc == 0, f"chronyc -n sources failed: {out.stderr.strip()}"
        if item.name == "live-sources":
            live = [s.address for s in parse_chrony_sources(out.stdout)]
            foreign = [s for s in live if s not in site]
            assert not foreign, f"chronyd uses sources outside the site's {site}: {foreign}"
            return
        tracking = run(host, "chronyc tracking", sudo=False)
        assert tracking.rc == 0, f"chronyc tracking failed: {tracking.stderr.strip()}"
        problem = chrony_sync_problem(out.stdout, tracking.stdout)
        assert problem is None, problem
