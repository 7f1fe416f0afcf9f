"""The Pulumi program: plan -> components. ``stacks/__main__.py`` calls :func:`main`."""

from __future__ import annotations

import os
from pathlib import Path

import pulumi

from tenancy.gcpause import cyclic_gc_paused
from tenancy.infra.dynamic.policyrun import PolicyRunArgs, policy_run_args
from tenancy.infra.hypervisor import BaseImage, Hypervisor, HypervisorArgs
from tenancy.infra.program_config import (
    ProgramInputError,
    ProgramInputs,
    kept_image,
    load_inputs,
)
from tenancy.infra.tenant_hosting import TenantHosting, TenantHostingArgs
from tenancy.policy.variables import VariablesError
from tenancy.project import Project
from tenancy.render.cloud_init import render_seed
from tenancy.render.firewall import guest_host_services, render_host_nftables, table_name
from tenancy.render.inventory import inventory


def build(inputs: ProgramInputs) -> dict[str, TenantHosting]:
    """Create every resource of the site from the finished plan.

    Raises :class:`tenancy.policy.variables.VariablesError` before registering
    anything when a tenant's hardening variables cannot be rendered.
    """
    with cyclic_gc_paused():
        return _build(inputs, policy_runs(inputs))


def policy_runs(inputs: ProgramInputs) -> dict[str, PolicyRunArgs]:
    """Every tenant's PolicyRun inputs, rendered from the inputs once."""
    return {
        t.name: policy_run_args(
            inputs.project,
            inputs.site,
            inputs.plan,
            t.name,
            inputs.policy_sources,
            inputs.today,
            inputs.ssh_keys,
        )
        for t in inputs.plan.tenants
    }


def kept_versions(inputs: ProgramInputs, host: str) -> list[BaseImage]:
    """The older base image versions machines on ``host`` still run (see ``kept_image``);
    the kernel command line is the one their domains boot with."""
    out: dict[tuple[str, str], BaseImage] = {}
    for m in inputs.plan.machines():
        pin = inputs.image_pins.get(m.domain)
        current = inputs.images.get(m.image)
        if m.host != host or pin is None or current is None or pin.recipe == current.recipe:
            continue
        key = (pin.image, pin.recipe)
        if key not in out:
            out[key] = kept_image(inputs.project, current, pin.recipe, pin.cmdline)
    return [out[k] for k in sorted(out)]


def _build(inputs: ProgramInputs, runs: dict[str, PolicyRunArgs]) -> dict[str, TenantHosting]:
    plan, site = inputs.plan, inputs.site
    hypervisors = {
        h.name: Hypervisor(
            h.name,
            HypervisorArgs(
                site=plan.site,
                host=h,
                images=[inputs.images[n] for n in sorted(inputs.images)],
                kept=kept_versions(inputs, h.name),
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
                policy=runs[t.name],
                image_recipes={d: p.recipe for d, p in inputs.image_pins.items()},
            ),
        )
    return tenants


def main() -> None:
    stack = pulumi.get_stack()
    config = pulumi.Config("tenancy")
    approve = [str(a) for a in (config.get_object("approve") or [])]
    approve += [a for a in os.environ.get("TENANCY_APPROVE", "").split(",") if a]
    # the language host starts the program in its ``main:`` directory (stacks/): the
    # project is the nearest directory above holding Pulumi.yaml
    project = Project.find(Path.cwd())
    try:
        inputs = load_inputs(project, stack, approve)
    except ProgramInputError as exc:
        raise pulumi.RunError(str(exc)) from None
    if not pulumi.runtime.is_dry_run() and not inputs.ledger_current:
        raise pulumi.RunError(
            f"stacks/ledger.{stack}.yaml is not up to date with tenants/: run "
            f"`tenancy plan --site {stack} --write-ledger`, review and commit it "
            "(`tenancy up` does this for you); nothing was applied"
        )
    try:
        tenants = build(inputs)
    except VariablesError as exc:
        raise pulumi.RunError(
            f"cannot render the hardening variables; nothing was applied:\n{exc}"
        ) from None
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
