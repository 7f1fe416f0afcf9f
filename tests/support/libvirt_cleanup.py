"""Find and remove what a site copy left on the hypervisor: libvirt objects, nftables, pools.

Everything is selected by name prefix only (the copy's tenants, its pool prefix, its
nftables table), so a sweep never touches the demo site or another test's objects.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable
from functools import partial
from typing import Any

from tests.support.sitecopy import POOL_BASE, SiteCopy


def site_objects(uri: str, copy: SiteCopy, tenant_names: list[str]) -> dict[str, list[str]]:
    """Every libvirt object and the nftables table that belong to the copy's site."""
    import libvirt

    domain_prefixes = tuple(f"{t}-" for t in tenant_names)
    object_prefixes = tuple(f"tenancy-{t}" for t in tenant_names)
    conn = libvirt.open(uri)
    try:
        found: dict[str, list[str]] = {
            "domains": sorted(
                d.name() for d in conn.listAllDomains(0) if d.name().startswith(domain_prefixes)
            ),
            "networks": sorted(
                n.name() for n in conn.listAllNetworks(0) if n.name().startswith(object_prefixes)
            ),
            "nwfilters": sorted(
                f.name() for f in conn.listAllNWFilters(0) if f.name().startswith(object_prefixes)
            ),
            "pools": [],
            "volumes": [],
        }
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(copy.pool_prefix):
                found["pools"].append(pool.name())
                if pool.isActive():
                    with contextlib.suppress(libvirt.libvirtError):
                        pool.refresh(0)
                    found["volumes"].extend(
                        f"{pool.name()}/{v.name()}" for v in pool.listAllVolumes(0)
                    )
            elif pool.isActive():
                for vol in pool.listAllVolumes(0):
                    if vol.name().startswith(domain_prefixes):
                        found["volumes"].append(f"{pool.name()}/{vol.name()}")
        found["pools"].sort()
        found["volumes"].sort()
    finally:
        conn.close()
    nft = subprocess.run(
        ["nft", "list", "table", "inet", copy.table], capture_output=True, text=True, check=False
    )
    found["nftables"] = [copy.table] if nft.returncode == 0 else []
    found["pool_dirs"] = sorted(str(p) for p in copy.pool_paths if p.exists())
    return found


def sweep_site(uri: str, copy: SiteCopy, tenant_names: list[str]) -> dict[str, list[str]]:
    """Remove whatever of the copy's site is left (after pulumi destroy): by name prefix only.

    Returns what was there before. Every removal is attempted even when another fails
    (an object already gone, a pool still busy): this is the safety net after a failure.
    """
    import libvirt

    found = site_objects(uri, copy, tenant_names)
    domain_prefixes = tuple(f"{t}-" for t in tenant_names)
    object_prefixes = tuple(f"tenancy-{t}" for t in tenant_names)
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(domain_prefixes):
                nvram = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                _quietly(partial(_stop, dom), partial(dom.undefineFlags, nvram))
        for net in conn.listAllNetworks(0):
            if net.name().startswith(object_prefixes):
                _quietly(partial(_stop, net), net.undefine)
        for nwf in conn.listAllNWFilters(0):
            if nwf.name().startswith(object_prefixes):
                _quietly(nwf.undefine)
        for pool in conn.listAllStoragePools(0):
            mine = pool.name().startswith(copy.pool_prefix)
            if not pool.isActive():
                continue
            for vol in pool.listAllVolumes(0):
                if mine or vol.name().startswith(domain_prefixes):
                    _quietly(partial(vol.delete, 0))
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(copy.pool_prefix):
                _quietly(partial(_stop, pool), partial(pool.delete, 0), pool.undefine)
    finally:
        conn.close()
    subprocess.run(["nft", "delete", "table", "inet", copy.table], capture_output=True, check=False)
    for path in copy.pool_paths:
        if path.parent == POOL_BASE and path.name.startswith(f"{copy.site}-"):
            shutil.rmtree(path, ignore_errors=True)
    return found


def _stop(obj: Any) -> None:
    """Stop a running domain, network or pool (libvirt's ``destroy``: not a removal)."""
    if obj.isActive():
        obj.destroy()


def _quietly(*steps: Callable[[], object]) -> None:
    """Run every step; a libvirt error in one (already gone, busy) does not skip the next."""
    import libvirt

    for step in steps:
        with contextlib.suppress(libvirt.libvirtError):
            step()
