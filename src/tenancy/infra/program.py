"""The Pulumi program: plan -> components. ``stacks/__main__.py`` calls :func:`main`."""

from __future__ import annotations

import os
from pathlib import Path

import pulumi

from tenancy.gcpause import cyclic_gc_paused
from tenancy.infra.hypervisor import Hypervisor, HypervisorArgs
from tenancy.infra.program_config import ProgramInputError, ProgramInputs, load_inputs
from tenancy.infra.tenant_hosting import TenantHosting, TenantHostingArgs
from tenancy.render.cloud_init import render_seed
from tenancy.render.firewall import guest_host_services, render_host_nftables, table_name
from tenancy.render.inventory import inventory


def build(inputs: ProgramInputs) -> dict[str, TenantHosting]:
    """Create every resource of the site from the finished plan."""
    with cyclic_gc_paused():
        return _build(inputs)


def _build(inputs: ProgramInputs) -> dict[str, TenantHosting]:
    plan, site = inputs.plan, inputs.site
    hypervisors = {
        h.name: Hypervisor(
            h.name,
            HypervisorArgs(
                site=plan.site,
                host=h,
                images=[inputs.images[n] for n in sorted(inputs.images)],
                firewall_table=table_name(plan.site),
                firewall_ruleset=render_host_nftables(
                    plan, h.name, guest_host_services(site.ntp_servers)
                ),
            ),
        )
        for h in site.hosts
    }
    uris = {h.name: h.uri for h in site.hosts}
    tenants: dict[str, TenantHosting] = {}
    for t in plan.tenants:
        seeds = {
            m.domain: render_seed(m, t.segment, inputs.ssh_keys, site.ops.user, site.package_mirror)
            for m in t.machines
        }
        tenants[t.name] = TenantHosting(
            t.name,
            TenantHostingArgs(
                tenant=t,
                hypervisors=hypervisors,
                host_uris=uris,
                domain_type=plan.domain_type,
                seeds=seeds,
                ops_cidrs=list(site.ops.cidrs),
                approved=inputs.approved,
            ),
        )
    return tenants


def project_root(cwd: Path) -> Path:
    """The project pulumi runs: the nearest directory at or above ``cwd`` with Pulumi.yaml.

    The language host starts the program in its ``main:`` directory (``stacks/``), so
    the project file is one level up; falling back to this package's own checkout
    would make every copy of the project (another clone, a test site) plan the
    checkout's tenants and stacks instead of its own.
    """
    for candidate in (cwd, *cwd.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return Path(__file__).resolve().parents[3]


def main() -> None:
    stack = pulumi.get_stack()
    config = pulumi.Config("tenancy")
    approve = [str(a) for a in (config.get_object("approve") or [])]
    approve += [a for a in os.environ.get("TENANCY_APPROVE", "").split(",") if a]
    root = project_root(Path.cwd())
    try:
        inputs = load_inputs(root, stack, approve)
    except ProgramInputError as exc:
        raise pulumi.RunError(str(exc)) from None
    if not pulumi.runtime.is_dry_run() and not inputs.ledger_current:
        raise pulumi.RunError(
            f"stacks/ledger.{stack}.yaml is not up to date with tenants/: run "
            f"`tenancy plan --site {stack} --write-ledger`, review and commit it "
            "(`tenancy up` does this for you); nothing was applied"
        )
    tenants = build(inputs)
    plan = inputs.plan
    pulumi.export("planDigest", plan.digest())
    pulumi.export(
        "tenants",
        {
            t.name: {
                "zone": t.zone,
                "segment": t.segment.cidr,
                "machines": {
                    m.domain: {
                        "host": m.host,
                        "address": m.address,
                        "role": m.group,
                        "running": tenants[t.name].machines[m.domain].domain.running,
                    }
                    for m in t.machines
                },
            }
            for t in plan.tenants
        },
    )
    pulumi.export("inventory", inventory(plan, inputs.site.ops.user))
