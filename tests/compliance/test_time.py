"""Time synchronisation (role tenancy_time): BASE-TIME-01..02."""

from __future__ import annotations

import re
from typing import Any

import pytest
from compliance_support import (
    HostInfo,
    Item,
    active_lines,
    expect,
    packages,
    parametrize,
    run,
    units,
)

#: Time daemons that must not run next to chrony.
OTHER_DAEMONS = ["systemd-timesyncd.service", "ntp.service", "ntpsec.service", "openntpd.service"]


@pytest.mark.control("BASE-TIME-01")
@parametrize("BASE-TIME-01", ["package", "service-enabled", "service-running", *OTHER_DAEMONS])
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


@pytest.mark.control("BASE-TIME-02")
@parametrize(
    "BASE-TIME-02", ["site-servers-known", "configured-servers", "no-pools", "live-sources"]
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
        # "^* 10.0.0.1 ...": mode (^ server, = peer, # local clock) and state columns
        live = [
            line.split()[1]
            for line in out.stdout.splitlines()
            if len(line) > 2 and line[0] in "^=#" and line[1] in "*+-?x~"
        ]
        foreign = [s for s in live if s not in site]
        assert not foreign, f"chronyd uses sources outside the site's {site}: {foreign}"
