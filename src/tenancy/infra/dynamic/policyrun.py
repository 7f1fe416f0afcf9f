"""PolicyRun: the security baseline applied to one tenant's VMs, as a Pulumi resource.

One resource per tenant, created after the tenant's domains. It runs
``policies/playbook.yml`` through the harden use case (:mod:`tenancy.policy.harden`:
ansible-runner, one private data dir per run under ``$TENANCY_STATE/runs/``).

Inputs
    ``hosts``        inventory host name -> address (the plan's static addresses)
    ``instances``    host name -> libvirt domain UUID: a replaced VM gets a new UUID, so
                     it is hardened again (depends_on alone would not re-run anything)
    ``ssh_user``     the site's ops user
    ``policy_hash``  sha256 of playbook + catalogue + roles/** + the tenant's rendered
                     variables (:func:`tenancy.policy.digest.policy_digest`)
    ``inventory``    the tenant's rendered inventory; ``project`` (the project root; the
                     applied files are the installed package's), ``state_dir``,
                     ``private_key`` (a path), ``ssh_timeout`` and ``run_timeout`` say where
                     and how to run. Only the first four inputs decide whether to run again.

Lifecycle
    create/update  wait until every host answers SSH and cloud-init is done (at most
                   ``ssh_timeout`` seconds; the error names each silent host and its last
                   SSH error), refuse when this controller is outside the ops networks
                   (BASE-FW-03 would lock it out), then apply. Ansible keeps going on the
                   other hosts when one fails; if any host failed or was unreachable the
                   operation fails with every host's result and the run directory, so the
                   next ``up`` tries again. Other tenants are other resources
                   (``PULUMI_CONTINUE_ON_ERROR=true`` lets their runs start even after
                   this one failed).
    read           (``pulumi refresh``, ``up --refresh``) runs the same playbook in
                   ``--check`` mode and records the hosts that would change or fail in
                   ``drifted`` (their controls in ``drift``); unreachable hosts go to
                   ``unverified`` (a stopped VM is its Domain's business). Set
                   ``TENANCY_POLICY_REFRESH=skip`` for a refresh without the check run.
    diff           a change when ``hosts``, ``instances``, ``ssh_user`` or ``policy_hash``
                   differ, or when drift was recorded: so refresh + up re-applies exactly
                   the drifted tenants. Never a replacement.
    delete         nothing on the hosts: hardening is not reverted (the VMs usually go too).

Outputs: ``run_id``, ``results`` (per host: status, ok/changed/failed/unreachable/
skipped counts, changed control IDs, failed tasks with controls and message),
``drifted``, ``drift``, ``unverified``, ``check_run_id``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from tenancy.contract.models import Site
from tenancy.infra.dynamic._base import (
    REQUIRED,
    LibvirtProvider,
    args_to_props,
    canonical,
    prop_dict,
    prop_int,
    prop_list,
    prop_opt_str,
    prop_str,
)
from tenancy.infra.dynamic._errors import ProviderError
from tenancy.plan.model import Plan
from tenancy.policy.digest import PolicyFiles, policy_digest
from tenancy.policy.harden import ErrorKind, HardenError, HardenRun, execute
from tenancy.policy.ops_keys import OpsKeys
from tenancy.policy.reachability import private_key_for
from tenancy.policy.results import RunResult
from tenancy.policy.run_request import RunRequest, new_run_id
from tenancy.policy.variables import PolicySources, host_addresses, policy_inventory, site_problems
from tenancy.project import Project

#: Inputs whose change means "run again".
RUN_ON = ("tenant", "site", "hosts", "instances", "ssh_user", "policy_hash")
DEFAULT_SSH_TIMEOUT = 900
DEFAULT_RUN_TIMEOUT = 3600


class PolicyRunError(ProviderError):
    """The baseline could not be applied to every host of a tenant (a per-host report)."""


class PolicyRunProvider(LibvirtProvider):
    """Applies the baseline on create/update, checks it on read (see the module doc)."""

    kind: ClassVar[str] = "PolicyRun"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "tenant": REQUIRED,
        "site": REQUIRED,
        "hosts": REQUIRED,
        "instances": {},
        "ssh_user": REQUIRED,
        "policy_hash": REQUIRED,
        "inventory": REQUIRED,
        "project": REQUIRED,
        "state_dir": REQUIRED,
        "private_key": "",
        "ssh_timeout": DEFAULT_SSH_TIMEOUT,
        "run_timeout": DEFAULT_RUN_TIMEOUT,
        "problems": [],
    }

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        hosts = inputs.get("hosts")
        if not isinstance(hosts, Mapping) or not hosts:
            problems.append(("hosts", "a non-empty mapping of host name to address"))
        elif not all(isinstance(v, str) and v for v in hosts.values()):
            problems.append(("hosts", "every address must be a non-empty string"))
        digest = str(inputs.get("policy_hash", ""))
        if len(digest) != 64:
            problems.append(("policy_hash", "a sha256 hex digest"))
        if not isinstance(inputs.get("inventory"), Mapping):
            problems.append(("inventory", "the rendered inventory (a mapping)"))
        return problems

    # --- diff -------------------------------------------------------------

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in RUN_ON if canonical(olds.get(k)) != canonical(news.get(k))]
        if olds.get("drifted"):
            changed.append("drifted")
        return DiffResult(
            changes=bool(changed), replaces=[], stables=[], delete_before_replace=False
        )

    # --- running ----------------------------------------------------------

    def _run(self, props: Mapping[str, Any], check: bool) -> HardenRun:
        """An apply waits for SSH first (a check reports unreachable hosts as unverified)."""
        site, tenant = prop_str(props, "site"), prop_str(props, "tenant")
        key = prop_opt_str(props, "private_key")
        request = RunRequest(
            run_id=new_run_id("check" if check else "apply", site, tenant),
            label=f"{'check' if check else 'apply'} {tenant}",
            files=PolicyFiles.of(Project.at(Path(prop_str(props, "project")))),
            inventory=canonical(prop_dict(props, "inventory")),
            state_dir=Path(prop_str(props, "state_dir")),
            check=check,
            private_key=Path(key) if key else None,
            timeout=float(prop_int(props, "run_timeout")),
            extravars={"tenancy_run_policy_digest": prop_str(props, "policy_hash")},
        )
        return HardenRun(
            request=request,
            addresses={str(k): str(v) for k, v in prop_dict(props, "hosts").items()},
            user=prop_str(props, "ssh_user"),
            wait=None if check else float(prop_int(props, "ssh_timeout")),
            mark_waiting=True,
        )

    def _apply(self, props: Mapping[str, Any]) -> dict[str, Any]:
        tenant = prop_str(props, "tenant")
        problems = [str(p) for p in prop_list(props, "problems")]
        if problems:
            raise PolicyRunError(f"PolicyRun {tenant}: nothing applied:\n" + "\n".join(problems))
        try:
            result = execute(self._run(props, check=False))
        except HardenError as exc:
            raise PolicyRunError(_refusal(tenant, exc)) from None
        if not result.ok:
            raise PolicyRunError(_failure(tenant, result))
        return self.outputs(
            props,
            run_id=result.run_id,
            results={h: r.summary() for h, r in result.hosts.items()},
            drifted=[],
            drift={},
            unverified=[],
            check_run_id="",
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._apply(props)
        return CreateResult(f"{prop_str(props, 'site')}/{prop_str(props, 'tenant')}", outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._apply(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if os.environ.get("TENANCY_POLICY_REFRESH", "").lower() == "skip":
            return ReadResult(id_, dict(props))
        result = execute(self._run(props, check=True))  # check mode: never refused
        drifted = sorted(
            h for h, r in result.hosts.items() if (r.changed or r.failed) and not r.problem
        )
        drift = {
            h: sorted({*result.hosts[h].changed_controls, *result.hosts[h].failed_controls})
            for h in drifted
        }
        # unreachable, or never in the play recap: nothing is known of these hosts
        unverified = sorted(h for h, r in result.hosts.items() if r.unreachable or r.problem)
        if result.error and not result.hosts:
            unverified = sorted(prop_dict(props, "hosts"))
        outs = {
            **props,
            "drifted": drifted,
            "drift": drift,
            "unverified": unverified,
            "check_run_id": result.run_id,
        }
        return ReadResult(id_, outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


def _refusal(tenant: str, error: HardenError) -> str:
    """Why nothing was applied: the silent hosts, or the hosts the firewall would lock out."""
    if error.kind is ErrorKind.UNREACHABLE:
        return f"PolicyRun {tenant}: nothing applied: {error.message}"
    return f"PolicyRun {tenant}: nothing applied:\n" + "\n".join(error.details or [error.message])


def _failure(tenant: str, result: RunResult) -> str:
    head = (
        f"PolicyRun {tenant}: the baseline failed on {len(result.failed_hosts)} of "
        f"{len(result.hosts)} host(s) ({', '.join(result.failed_hosts) or 'run aborted'})"
    )
    lines = [head, *result.lines()]
    if result.error:
        lines.append(f"error: {result.error}")
    lines.append(f"run directory: {result.run_dir}")
    return "\n".join(lines)


# --- the resource ---------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRunArgs:
    """Inputs of a :class:`PolicyRun` (build them with :func:`policy_run_args`)."""

    tenant: str
    site: str
    hosts: dict[str, str]
    """Inventory host name -> address."""
    ssh_user: str
    policy_hash: str
    inventory: dict[str, Any]
    project: str
    """The project root (its waivers are rendered into ``inventory`` already)."""
    state_dir: str
    private_key: str = ""
    """Path of the ops private key ("" = ssh defaults/agent)."""
    instances: pulumi.Input[dict[str, pulumi.Input[str]]] = dataclasses.field(default_factory=dict)
    """Host name -> libvirt domain UUID (set by the component that owns the domains)."""
    ssh_timeout: int = DEFAULT_SSH_TIMEOUT
    run_timeout: int = DEFAULT_RUN_TIMEOUT
    problems: list[str] = dataclasses.field(default_factory=list)
    """Why the baseline cannot run here (site settings); reported by create/update."""

    def with_instances(self, instances: Mapping[str, pulumi.Input[str]]) -> PolicyRunArgs:
        return dataclasses.replace(self, instances=dict(instances))


def policy_run_args(
    project: Project,
    site: Site,
    plan: Plan,
    tenant: str,
    sources: PolicySources,
    today: date,
    ops_keys: Sequence[str],
) -> PolicyRunArgs:
    """Everything one tenant's PolicyRun needs, from the finished plan (reads roles/ to hash it).

    Raises :class:`tenancy.policy.variables.VariablesError`.
    """
    inv = policy_inventory(
        plan, site, sources, today, [tenant], ops_keys=OpsKeys(tuple(ops_keys)), check_site=False
    )
    key = private_key_for(project.root, site.ops.ssh_key_files)
    return PolicyRunArgs(
        tenant=tenant,
        site=plan.site,
        hosts=host_addresses(inv),
        ssh_user=site.ops.user,
        policy_hash=policy_digest(PolicyFiles.of(project), inv),
        inventory=inv,
        project=str(project.root),
        state_dir=str(project.state_dir),
        private_key=str(key) if key else "",
        problems=site_problems(site),
    )


class PolicyRun(Resource, module="tenancy", name="PolicyRun"):
    """The security baseline applied to one tenant's machines."""

    tenant: pulumi.Output[str]
    site: pulumi.Output[str]
    hosts: pulumi.Output[dict[str, str]]
    instances: pulumi.Output[dict[str, str]]
    ssh_user: pulumi.Output[str]
    policy_hash: pulumi.Output[str]
    run_id: pulumi.Output[str]
    """The last apply run (``$TENANCY_STATE/runs/<run_id>/``)."""
    results: pulumi.Output[dict[str, Any]]
    """Per host: status, counts, changed control IDs, failed tasks."""
    drifted: pulumi.Output[list[str]]
    """Hosts the last refresh found different from the policy (re-applied by the next up)."""
    drift: pulumi.Output[dict[str, list[str]]]
    """Per drifted host, the control IDs of the tasks that would change or failed."""
    unverified: pulumi.Output[list[str]]
    """Hosts the last refresh could not reach."""
    check_run_id: pulumi.Output[str]
    """The last check-mode run (refresh)."""

    def __init__(
        self, resource_name: str, args: PolicyRunArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            **args_to_props(args),
            "run_id": None,
            "results": None,
            "drifted": None,
            "drift": None,
            "unverified": None,
            "check_run_id": None,
        }
        super().__init__(PolicyRunProvider(), resource_name, props, opts)
