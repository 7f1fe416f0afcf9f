"""``tenancy audit``: run the compliance suite against a site and keep the evidence.

Steps (:func:`run_audit`):

1. plan the site (pure) and render the policy inventory from the plan, the
   same variables ``tenancy harden`` applies (:mod:`tenancy.policy.variables`),
   plus how the auditor connects (ops key, SSH options);
2. run the compliance suite (the installed checks, :attr:`Project.compliance_dir`,
   with their plugin :mod:`tenancy.compliance.plugin`) in a pytest subprocess
   against the selected hosts (``--hosts=ansible://...``, one xdist worker per
   host up to ``workers``), from the bundle directory and rooted at the suite,
   so a checkout and a wheel run it alike; it writes ``junit.xml`` and
   ``records.json`` (one record per test with its control, host, outcome and
   the commands it ran, see :mod:`tenancy.compliance.records`);
3. cross-check: Lynis ``audit system --quick`` on every host, its hardening index
   (:mod:`tenancy.policy.lynis`), over the same SSH options as the suite;
4. write the evidence bundle ``<state>/audits/<UTC timestamp>/``: ``results.json``
   (per control and host), ``report.html``, the files above, ``inventory.yml``,
   ``pytest.log``, ``lynis/<host>.log`` and ``SHA256SUMS`` over every file.

The exit code is 1 when a required control fails (or could not be proven) on
any host, 2 when the suite itself could not run. Whatever narrows the audit
(a tenant or host selection, ``--no-probes``, ``--no-lynis``, stand-ins
switched off, another waiver date, extra pytest arguments) is listed in
``results.json`` under ``reductions`` and in the report's banner
(:func:`scope_reductions`), so a reduced audit never reads as a full one.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from tenancy.contract.host_vars import HostVars, parse_hosts
from tenancy.plan.model import Plan
from tenancy.plan.planner import plan_paths
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.lynis import LYNIS_TIMEOUT, lynis_index
from tenancy.policy.ops_keys import site_ops_keys
from tenancy.policy.provenance import tenants_commit, tool_versions
from tenancy.policy.reachability import private_key_for
from tenancy.policy.report import build_results, render_html, write_manifest
from tenancy.policy.variables import (
    PolicySources,
    VariablesError,
    load_policy_sources,
    policy_inventory,
    tenant_hosts,
)
from tenancy.project import Project
from tenancy.render.inventory import group_name
from tenancy.ssh import SshOptions

__all__ = [
    "LYNIS_TIMEOUT",
    "AuditError",
    "AuditInventory",
    "AuditOptions",
    "AuditRun",
    "audit_inventory",
    "run_audit",
    "scope_reductions",
    "summary_lines",
]

#: Exit code when the suite could not run at all (collection error, no hosts, ...).
EXIT_BROKEN = 2


class AuditError(RuntimeError):
    """The audit could not start: invalid plan, policy files or options."""


@dataclass
class AuditOptions:
    root: Path
    site: str
    tenants: tuple[str, ...] = ()  # only these tenants' machines; empty: every tenant
    hosts: Sequence[str] = ()  # only these machines (domain names); empty: all selected
    out: Path | None = None
    workers: int = 0  # 0: one per host, at most os.cpu_count()
    lynis: bool = True
    lynis_timeout: float = LYNIS_TIMEOUT
    today: date | None = None
    standins: str | None = None
    probes: bool = True
    pytest_args: Sequence[str] = ()


@dataclass
class AuditRun:
    bundle: Path
    exit_code: int
    results: dict[str, Any] = field(default_factory=dict)
    pytest_exit: int = 0


# -- inventory -------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditInventory:
    """What an audit runs against: the inventory, its plan and policy, how to reach the hosts."""

    inventory: dict[str, Any]
    plan: Plan
    sources: PolicySources
    ssh: SshOptions
    """The auditor's SSH options: in the inventory for the suite, and for Lynis."""


def audit_inventory(project: Project, site: str, today: date, control_dir: Path) -> AuditInventory:
    """The inventory for auditing ``site``: the policy variables of every tenant and the
    auditor's connection settings (ops key, SSH multiplexing under ``control_dir``, no
    host key pinning: VMs are recreated with the same address)."""
    result = plan_paths(project.root, None, sites=[site])
    if not result.ok:
        raise AuditError("\n".join(str(e) for e in result.problems.errors))
    plan, model = result.plans[site], result.sites[site].model
    try:
        sources = load_policy_sources(project)
        keys = site_ops_keys(project.root, model.ops)
        inv = policy_inventory(plan, model, sources, today, ops_keys=keys)
    except (CatalogueError, VariablesError) as exc:
        raise AuditError(str(exc)) from None
    key = private_key_for(project.root, model.ops.ssh_key_files)
    ssh = SshOptions(private_key=key, multiplex=True, control_dir=control_dir)
    connection: dict[str, Any] = {"ansible_ssh_common_args": ssh.common_args()}
    if key is not None:
        connection["ansible_ssh_private_key_file"] = str(key)
    inv["all"].setdefault("vars", {}).update(connection)
    return AuditInventory(inventory=inv, plan=plan, sources=sources, ssh=ssh)


# -- the run -----------------------------------------------------------------------------


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def _pytest_argv(
    options: AuditOptions,
    project: Project,
    bundle: Path,
    inventory: Path,
    patterns: list[str],
    workers: int,
) -> list[str]:
    """The suite's command line. Rooted at the suite (test IDs ``test_ssh.py::...`` as the
    catalogue names the checks) and without any ini file (``-c /dev/null``): an
    ini file above an installed suite must not change the audit."""
    suite = project.compliance_dir
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(suite),
        f"--rootdir={suite}",
        "-c",
        os.devnull,
        "--hosts=" + ",".join(f"ansible://{p}" for p in patterns),
        f"--ansible-inventory={inventory}",
        f"--junit-xml={bundle / 'junit.xml'}",
        "-o",
        "junit_suite_name=tenancy-compliance",
        f"--tenancy-records={bundle / 'records.json'}",
        # the catalogue and waivers load_policy_sources read: the report judges by the same
        f"--tenancy-catalogue={project.policies_dir / 'catalogue.yaml'}",
        f"--tenancy-waivers={project.waivers_dir}",
        f"--tenancy-governance={project.governance_file}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
    ]
    if options.today is not None:
        argv.append(f"--tenancy-today={options.today.isoformat()}")
    if options.standins is not None:
        argv.append(f"--tenancy-standins={options.standins}")
    if not options.probes:
        argv.append("--tenancy-no-probes")
    if workers > 1:
        argv += ["-n", str(workers)]
    return [*argv, *options.pytest_args]


def scope_reductions(
    options: AuditOptions, audited: int, planned: int, started: date
) -> list[dict[str, str]]:
    """What this audit leaves out compared to a full one, in words an auditor reads.

    ``audited`` of ``planned`` hosts of the site are selected; ``started`` is the
    audit's date (waivers judged on another day can hide an expiry). Empty: full scope.
    """
    out: list[dict[str, str]] = []

    def add(option: str, effect: str) -> None:
        out.append({"option": option, "effect": effect})

    share = f"{audited} of the site's {planned} host(s) audited"
    if options.tenants:
        which = ", ".join(options.tenants)
        add(
            " ".join(f"--tenant {t}" for t in options.tenants),
            f"only tenant{'s' if len(options.tenants) > 1 else ''} {which}'s machines: {share}",
        )
    if options.hosts:
        names = sorted(options.hosts)
        add(" ".join(f"--host {h}" for h in names), f"only {', '.join(names)}: {share}")
    if not options.probes:
        add(
            "--no-probes",
            "no firewall reachability probes: BASE-FW-02..04 rest on the loaded ruleset alone",
        )
    elif options.standins is not None and options.standins.strip().lower() in ("", "none"):
        add(
            f"--standins {options.standins or 'none'}",
            "no probes from the intranet, extranet or internet stand-ins, only from other "
            "tenants' machines",
        )
    if not options.lynis:
        add("--no-lynis", "no Lynis cross-check (independent scanner)")
    if options.today is not None and options.today != started:
        add(
            f"--today {options.today.isoformat()}",
            f"waivers judged on {options.today.isoformat()}, not on the audit date "
            f"{started.isoformat()}",
        )
    if options.pytest_args:
        add(
            "pytest " + shlex.join(options.pytest_args),
            "extra pytest arguments: checks or items they deselect are missing from this audit",
        )
    return out


def _close_masters(ssh: SshOptions, hosts: Mapping[str, HostVars]) -> None:
    """Stop the SSH control masters the suite left (ControlPersist) before their socket dir goes."""
    for name, hv in hosts.items():
        try:
            argv = ssh.control(hv.user, hv.address_or(name), "exit")
            subprocess.run(argv, capture_output=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue


def _run_logged(argv: list[str], cwd: Path, log: Path, stream: TextIO | None) -> int:
    with log.open("w", encoding="utf-8") as fh:
        fh.write("$ " + shlex.join(argv) + "\n")
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            fh.flush()  # the log can be followed while the suite runs
            if stream is not None:
                stream.write(line)
                stream.flush()
        return proc.wait()


def run_audit(options: AuditOptions, stream: TextIO | None = None) -> AuditRun:
    """Audit a site (or one tenant of it); write and return the evidence bundle."""
    started = datetime.now(UTC)
    today = options.today or started.date()
    project = Project.at(options.root)
    with tempfile.TemporaryDirectory(prefix="tnaudit-") as tmp:
        tmpdir = Path(tmp)
        audit = audit_inventory(project, options.site, today, tmpdir)
        inv, plan = audit.inventory, audit.plan
        every = tenant_hosts(inv)
        every_vars = parse_hosts(every)
        if options.tenants:
            planned = {t.name for t in plan.tenants}
            unknown = [t for t in options.tenants if t not in planned]
            if unknown:
                known = ", ".join(sorted(planned)) or "none"
                names = ", ".join(repr(t) for t in unknown)
                raise AuditError(f"tenant {names} is not planned on {options.site} ({known})")
            wanted = set(options.tenants)
            hosts = {h: v for h, v in every.items() if every_vars[h].tenant in wanted}
            patterns = [group_name(t) for t in dict.fromkeys(options.tenants)]
        else:
            hosts, patterns = every, ["all"]
        if options.hosts:
            unknown = sorted(set(options.hosts) - set(hosts))
            if unknown:
                known = ", ".join(sorted(hosts)) or "none"
                raise AuditError(
                    f"host(s) {', '.join(unknown)} not among the machines selected ({known})"
                )
            hosts = {h: v for h, v in hosts.items() if h in options.hosts}
            patterns = sorted(hosts)
        if not hosts:
            raise AuditError(f"site {options.site}: no machines to audit")

        bundle = options.out or project.audits_dir / _stamp(started)
        bundle.mkdir(parents=True, exist_ok=False)
        inventory_file = tmpdir / "inventory.yml"
        text = yaml.safe_dump(inv, sort_keys=True, allow_unicode=True)
        inventory_file.write_text(text, encoding="utf-8")
        (bundle / "inventory.yml").write_text(text, encoding="utf-8")

        cpus = os.cpu_count() or 1
        workers = options.workers or min(len(hosts), cpus)
        workers = max(1, min(workers, len(hosts)))
        argv = _pytest_argv(options, project, bundle, inventory_file, patterns, workers)
        if stream is not None:
            print(f"audit {options.site}: {len(hosts)} host(s), bundle {bundle}", file=stream)
        pytest_exit = _run_logged(argv, bundle, bundle / "pytest.log", stream)

        lynis: dict[str, dict[str, Any]] = {}
        if options.lynis:
            logs = bundle / "lynis"
            logs.mkdir()
            if stream is not None:
                print(f"lynis: auditing {len(hosts)} host(s)", file=stream)
            with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
                futures = {
                    h: pool.submit(lynis_index, h, v, logs, audit.ssh, options.lynis_timeout)
                    for h, v in hosts.items()
                }
                lynis = {h: f.result() for h, f in futures.items()}
        _close_masters(audit.ssh, every_vars)

    finished = datetime.now(UTC)
    records_file = bundle / "records.json"
    records: list[dict[str, Any]] = []
    if records_file.is_file():
        records = json.loads(records_file.read_text(encoding="utf-8")).get("records", [])
    audited = {h: {**v, "lynis": lynis.get(h)} for h, v in hosts.items()}
    meta = {
        "site": options.site,
        "tenant": ", ".join(options.tenants) or None,
        "host_filter": sorted(options.hosts) or None,
        "plan_digest": plan.digest(),
        "tenants_commit": tenants_commit(project.root),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "today": today.isoformat(),
        "tools": tool_versions(),
        "lynis_versions": {h: (v or {}).get("version") for h, v in lynis.items()},
        "pytest": {"exit_code": pytest_exit, "argv": argv[1:]},
        "reductions": scope_reductions(options, len(hosts), len(every), started.date()),
    }
    sources = audit.sources
    doc = build_results(records, sources.catalogue, sources.waivers, audited, today, meta)
    broken = pytest_exit not in (0, 1) or not records
    code = EXIT_BROKEN if broken else int(doc["exit_code"])
    doc["exit_code"] = code
    (bundle / "results.json").write_text(
        json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (bundle / "report.html").write_text(render_html(doc), encoding="utf-8")
    write_manifest(bundle)
    return AuditRun(bundle=bundle, exit_code=code, results=doc, pytest_exit=pytest_exit)


def summary_lines(run: AuditRun) -> list[str]:
    """What ``tenancy audit`` prints at the end."""
    doc = run.results
    counts = ", ".join(f"{v} {k}" for k, v in doc.get("summary", {}).items())
    lines = []
    for r in doc.get("results", []):
        if r.get("required") and r.get("result") in ("fail", "not-tested"):
            lines.append(f"  {r['result'].upper():10} {r['control']:12} {r['host']}: {r['reason']}")
    for h in doc.get("hosts", []):
        ly = h.get("lynis") or {}
        if ly:
            shown = ly.get("hardening_index") if ly.get("hardening_index") is not None else "n/a"
            lines.append(f"  lynis {h['name']}: hardening index {shown}")
    reductions = doc.get("reductions") or []
    for r in reductions:
        lines.append(f"  reduced scope: {r['option']}: {r['effect']}")
    verdict = {0: "PASSED", 1: "FAILED"}.get(run.exit_code, "ERROR (the suite did not run)")
    if reductions:
        verdict += f" (reduced scope: {'; '.join(r['option'] for r in reductions)})"
    lines.append(f"audit {doc.get('site')}: {verdict}: {counts}; bundle {run.bundle}")
    return lines
