"""The harden use case: apply (or check) the baseline on a site's machines, once, for everyone.

``tenancy harden`` and the PolicyRun resource of ``tenancy up`` run the same
steps: (plan the site, render the inventory,) wait until the hosts answer SSH,
refuse when the firewall would lock this controller out, run the playbook.
:func:`harden` does all of it from a site name (the CLI);
:func:`execute` does the part after the inventory (the PolicyRun already has
it, rendered by the program). Refusals are :class:`HardenError` with a
:class:`ErrorKind`; a finished run is a :class:`HardenOutcome` whose
:class:`Verdict` the caller turns into exit codes or resource errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from tenancy.plan.planner import plan_paths
from tenancy.policy.ansible_run import run_policy
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.digest import PolicyFiles
from tenancy.policy.ops_keys import site_ops_keys
from tenancy.policy.progress import waiting_marker
from tenancy.policy.reachability import (
    SshWaitError,
    lockout_problems,
    private_key_for,
    wait_for_ssh,
)
from tenancy.policy.results import RunResult
from tenancy.policy.run_request import RunRequest, new_run_id, runs_dir
from tenancy.policy.variables import (
    VariablesError,
    host_addresses,
    inventory_host_vars,
    load_policy_sources,
    policy_inventory,
)
from tenancy.project import Project

__all__ = [
    "ErrorKind",
    "HardenError",
    "HardenOptions",
    "HardenOutcome",
    "HardenRun",
    "Verdict",
    "execute",
    "harden",
    "plan_run",
]


class ErrorKind(StrEnum):
    """Why nothing ran."""

    INVALID = "invalid"
    """The tenants, the site, the catalogue or the waivers."""
    UNREACHABLE = "unreachable"
    """Some hosts did not answer SSH in time."""
    LOCKOUT = "lockout"
    """The firewall (BASE-FW-03) would shut this controller out of SSH."""


class HardenError(Exception):
    """Nothing ran: ``details`` are the located problems, ``message`` the verdict line."""

    def __init__(self, kind: ErrorKind, message: str, details: Sequence[str] = ()) -> None:
        self.kind = kind
        self.message = message
        self.details = list(details)
        super().__init__("\n".join([*self.details, message]))


class Verdict(StrEnum):
    """What a finished :func:`harden` says; the CLI maps it to its exit codes."""

    NOTHING = "nothing"
    """No machines are planned on the site: nothing to do."""
    OK = "ok"
    FAILED = "failed"
    """A task failed or a host was unreachable, or the run aborted."""
    DRIFT = "drift"
    """Check mode only: no failure, but some host differs from the policy."""


@dataclass(frozen=True)
class HardenOptions:
    """What ``tenancy harden`` was asked (see its ``--help``)."""

    project: Project
    site: str
    tenants: tuple[str, ...] = ()
    """Only these tenants' machines; () every tenant of the site."""
    check: bool = False
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    wait: float = 0.0
    """First wait up to this many seconds for every host to answer SSH; 0: do not wait."""
    timeout: float = 3600.0
    lockout_check: bool = True


@dataclass(frozen=True)
class HardenRun:
    """A run ready to start, and how to reach its hosts first."""

    request: RunRequest
    addresses: Mapping[str, str]
    """Host name -> address to wait for."""
    user: str
    wait: float | None = None
    """Seconds to wait for SSH first; None: do not wait."""
    lockout_check: bool = True
    """Refuse when the firewall would lock this controller out (never in check mode)."""
    mark_waiting: bool = False
    """Leave a marker while waiting, for a watcher in another process (``tenancy up``)."""


@dataclass(frozen=True)
class HardenOutcome:
    """A finished :func:`harden`: the run, or why there was none."""

    root: Path
    run: RunResult | None = None
    reason: str = ""

    @property
    def verdict(self) -> Verdict:
        if self.run is None:
            return Verdict.NOTHING
        if not self.run.ok:
            return Verdict.FAILED
        if self.run.check and self.run.changed_hosts:
            return Verdict.DRIFT
        return Verdict.OK

    def lines(self) -> list[str]:
        """The per-host report and a one-line verdict (or the reason nothing ran)."""
        run = self.run
        if run is None:
            return [self.reason]
        lines = run.lines()
        if run.error:
            lines.append(f"error: {run.error}")
        where = Path(run.run_dir)
        shown = where.relative_to(self.root) if where.is_relative_to(self.root) else where
        verdict = f"{len(run.changed_hosts)} {'drifted' if run.check else 'changed'}"
        lines.append(
            f"{'check' if run.check else 'harden'}: {len(run.hosts)} host(s), {verdict}, "
            f"{len(run.failed_hosts)} failed/unreachable in {run.seconds:.0f} s; run dir {shown}"
        )
        return lines


def plan_run(options: HardenOptions) -> HardenRun:
    """Plan the site and render its inventory into a run; raises :class:`HardenError`."""
    project = options.project
    result = plan_paths(project.root, None, sites=[options.site])
    if not result.ok:
        errors = [str(e) for e in result.problems.errors]
        raise HardenError(ErrorKind.INVALID, f"nothing run: {len(errors)} error(s)", errors)
    plan, site = result.plans[options.site], result.sites[options.site].model
    try:
        sources = load_policy_sources(project)
        tenants = list(options.tenants) or None
        keys = site_ops_keys(project.root, site.ops)
        inv = policy_inventory(plan, site, sources, date.today(), tenants, ops_keys=keys)
    except (CatalogueError, VariablesError) as exc:
        raise HardenError(ErrorKind.INVALID, f"nothing run:\n{exc}") from exc
    label = ",".join(options.tenants) or None
    kind = "check" if options.check else "harden"
    meta = sources.catalogue.metadata
    request = RunRequest(
        run_id=new_run_id(kind, options.site, label),
        label=f"{kind} {label or options.site}",
        files=PolicyFiles.of(project),
        inventory=inv,
        state_dir=project.state_dir,
        check=options.check,
        private_key=private_key_for(project.root, site.ops.ssh_key_files),
        limit=options.limit,
        tags=options.tags,
        skip_tags=options.skip_tags,
        timeout=options.timeout,
        extravars={"tenancy_run_catalogue": f"{meta.name} v{meta.version}"},
    )
    return HardenRun(
        request=request,
        addresses=host_addresses(inv),
        user=site.ops.user,
        wait=options.wait if options.wait > 0 else None,
        lockout_check=options.lockout_check,
    )


@contextlib.contextmanager
def _marked(run: HardenRun) -> Iterator[None]:
    """The "waiting for SSH" marker while the block runs, if the run asks for one."""
    if not run.mark_waiting:
        yield
        return
    r = run.request
    marker = waiting_marker(runs_dir(r.state_dir), r.run_id, r.label, sorted(run.addresses))
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def execute(
    run: HardenRun,
    on_start: Callable[[RunRequest], None] | None = None,
    stream: TextIO | None = None,
) -> RunResult:
    """Wait for SSH, guard against a lock-out, run; raises :class:`HardenError` if nothing ran.

    ``on_start`` is called once the checks passed, just before Ansible starts;
    ``stream`` receives Ansible's own output (see :func:`run_policy`).
    """
    request = run.request
    if run.wait is not None:
        try:
            with _marked(run):
                wait_for_ssh(run.addresses, run.user, request.private_key, run.wait)
        except SshWaitError as exc:
            raise HardenError(ErrorKind.UNREACHABLE, str(exc)) from exc
    if run.lockout_check and not request.check:  # check mode changes no firewall
        lockouts = lockout_problems(inventory_host_vars(request.inventory))
        if lockouts:
            raise HardenError(
                ErrorKind.LOCKOUT,
                "nothing run: the firewall would lock this controller out",
                lockouts,
            )
    if on_start is not None:
        on_start(request)
    return run_policy(request, stream=stream)


def harden(
    options: HardenOptions,
    progress: Callable[[str], None] | None = None,
    stream: TextIO | None = None,
) -> HardenOutcome:
    """``tenancy harden``: plan, check, run; raises :class:`HardenError` when nothing ran.

    ``progress`` receives one line when the run starts; ``stream`` Ansible's output.
    """
    run = plan_run(options)
    root = options.project.root
    if not run.addresses:
        return HardenOutcome(
            root, reason=f"site {options.site}: no machines planned; nothing to do"
        )
    kind = "check" if options.check else "harden"

    def announce(request: RunRequest) -> None:
        if progress is not None:
            progress(
                f"{kind} site {options.site}: {len(run.addresses)} host(s), run {request.run_id}"
            )

    return HardenOutcome(root, run=execute(run, on_start=announce, stream=stream))
