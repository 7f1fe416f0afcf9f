"""``tenancy audit``: run the compliance suite against a site and keep the evidence.

Steps (:func:`run_audit`):

1. plan the site (pure) and render the policy inventory from the plan, the
   same variables ``tenancy harden`` applies (:mod:`tenancy.policy.variables`),
   plus how the auditor connects (ops key, SSH options);
2. run ``pytest tests/compliance`` in a subprocess against the selected hosts
   (``--hosts=ansible://...``, one xdist worker per host up to ``workers``),
   writing ``junit.xml`` and ``records.json`` (one record per test with its
   control, host, outcome and the commands it ran, see tests/compliance/conftest.py);
3. cross-check: Lynis ``audit system --quick`` on every host, its hardening index;
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

import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from tenancy.contract.loader import load_site, site_file
from tenancy.engine import state_dir
from tenancy.plan.planner import plan_paths
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.report import build_results, render_html, write_manifest
from tenancy.policy.runner import private_key_for
from tenancy.policy.variables import (
    VariablesError,
    load_policy_sources,
    policy_inventory,
    tenant_hosts,
)
from tenancy.render.inventory import group_name

__all__ = [
    "AuditError",
    "AuditOptions",
    "AuditRun",
    "audit_inventory",
    "lynis_command",
    "lynis_index",
    "parse_lynis_report",
    "run_audit",
    "scope_reductions",
    "suite_dir",
    "summary_lines",
]

#: Exit code when the suite could not run at all (collection error, no hosts, ...).
EXIT_BROKEN = 2
#: Lynis under software emulation takes 10-30 minutes per guest.
LYNIS_TIMEOUT = 3600.0


class AuditError(RuntimeError):
    """The audit could not start: invalid plan, policy files or options."""


def project_dir() -> Path:
    """The project this package belongs to (src layout): home of tests/compliance."""
    return Path(__file__).resolve().parents[3]


def suite_dir() -> Path:
    return project_dir() / "tests" / "compliance"


@dataclass
class AuditOptions:
    root: Path
    site: str
    tenant: str | None = None
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


def audit_inventory(
    root: Path, site: str, today: date, control_dir: Path
) -> tuple[dict[str, Any], Any, Any]:
    """(inventory, plan, policy sources) for auditing ``site``: the policy variables of
    every tenant and the auditor's connection settings (ops key, SSH multiplexing
    under ``control_dir``, no host key pinning: VMs are recreated with the same address)."""
    result = plan_paths(root, None, sites=[site])
    if not result.ok:
        raise AuditError("\n".join(str(e) for e in result.problems.errors))
    plan = result.plans[site]
    loaded, errors = load_site(site_file(root / "stacks", site), site, root)
    if loaded is None:
        raise AuditError("\n".join(str(e) for e in errors))
    try:
        sources = load_policy_sources(root)
        inv = policy_inventory(plan, loaded.model, sources, today)
    except (CatalogueError, VariablesError) as exc:
        raise AuditError(str(exc)) from None
    connection: dict[str, Any] = {
        "ansible_ssh_common_args": " ".join(
            [
                "-o StrictHostKeyChecking=no",
                "-o UserKnownHostsFile=/dev/null",
                "-o LogLevel=ERROR",
                "-o BatchMode=yes",
                "-o ControlMaster=auto",
                "-o ControlPersist=120s",
                f"-o ControlPath={control_dir}/%C",
            ]
        )
    }
    key = private_key_for(root, loaded.model.ops.ssh_key_files)
    if key is not None:
        connection["ansible_ssh_private_key_file"] = str(key)
        connection["ansible_ssh_common_args"] += " -o IdentitiesOnly=yes"
    inv["all"].setdefault("vars", {}).update(connection)
    return inv, plan, sources


# -- provenance --------------------------------------------------------------------------


def tenants_commit(root: Path) -> str | None:
    """The last commit that touched ``tenants/`` (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", "tenants/"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    return value if out.returncode == 0 and value else None


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("tenancy", "pytest", "pytest-testinfra", "pytest-xdist", "ansible-core", "jinja2"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


# -- Lynis -------------------------------------------------------------------------------


def parse_lynis_report(text: str) -> dict[str, str]:
    """``key=value`` lines of /var/log/lynis-report.dat (list keys ``x[]`` are left out)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.endswith("[]") and not line.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def _ssh(host_vars: Mapping[str, Any], command: str, timeout: float) -> tuple[int, str, str]:
    argv = ["ssh", *shlex.split(str(host_vars.get("ansible_ssh_common_args", "")))]
    key = host_vars.get("ansible_ssh_private_key_file")
    if key:
        argv += ["-i", str(key)]
    argv += [f"{host_vars.get('ansible_user', 'ops')}@{host_vars['ansible_host']}", command]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout, done.stderr


def _close_masters(hosts: Iterable[Mapping[str, Any]]) -> None:
    """Stop the SSH control masters the suite left (ControlPersist) before their socket dir goes."""
    for hv in hosts:
        argv = ["ssh", *shlex.split(str(hv.get("ansible_ssh_common_args", ""))), "-O", "exit"]
        argv.append(f"{hv.get('ansible_user', 'ops')}@{hv.get('ansible_host')}")
        try:
            subprocess.run(argv, capture_output=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue


def lynis_command(timeout: float) -> str:
    """Lynis, stopped by the guest itself after ``timeout`` seconds, then its report file."""
    return (
        f"sudo timeout {int(timeout)} lynis audit system --quick --no-colors; rc=$?; "
        "echo '=== /var/log/lynis-report.dat'; sudo cat /var/log/lynis-report.dat; exit $rc"
    )


def lynis_index(
    name: str, host_vars: Mapping[str, Any], logs: Path, timeout: float = LYNIS_TIMEOUT
) -> dict[str, Any]:
    """Run Lynis on one host; its hardening index, version and the log file name."""
    start = time.monotonic()
    rc, out, err = _ssh(host_vars, lynis_command(timeout), timeout + 60)
    log = logs / f"{name}.log"
    log.write_text(out + ("\n--- stderr ---\n" + err if err else ""), encoding="utf-8")
    report = parse_lynis_report(out.partition("=== /var/log/lynis-report.dat")[2])
    index = report.get("hardening_index")
    return {
        "hardening_index": int(index) if index and index.isdigit() else None,
        "version": report.get("lynis_version"),
        "tests_performed": report.get("lynis_tests_done"),
        "rc": rc,
        "seconds": round(time.monotonic() - start, 1),
        "log": f"lynis/{log.name}",
        "error": None if index else (err.strip().splitlines() or [f"exit {rc}"])[-1],
    }


# -- the run -----------------------------------------------------------------------------


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def _pytest_argv(
    options: AuditOptions, bundle: Path, inventory: Path, patterns: list[str], workers: int
) -> list[str]:
    root = options.root
    policies = root / "policies" if (root / "policies" / "catalogue.yaml").is_file() else None
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(suite_dir()),
        "--hosts=" + ",".join(f"ansible://{p}" for p in patterns),
        f"--ansible-inventory={inventory}",
        f"--junit-xml={bundle / 'junit.xml'}",
        "-o",
        "junit_suite_name=tenancy-compliance",
        f"--tenancy-records={bundle / 'records.json'}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
    ]
    if policies is not None:
        argv += [
            f"--tenancy-catalogue={policies / 'catalogue.yaml'}",
            f"--tenancy-waivers={policies / 'waivers'}",
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
    if options.tenant is not None:
        add(f"--tenant {options.tenant}", f"only tenant {options.tenant}'s machines: {share}")
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
    with tempfile.TemporaryDirectory(prefix="tnaudit-") as tmp:
        tmpdir = Path(tmp)
        inv, plan, sources = audit_inventory(options.root, options.site, today, tmpdir)
        every = tenant_hosts(inv)
        if options.tenant is not None:
            if options.tenant not in {t.name for t in plan.tenants}:
                known = ", ".join(sorted(t.name for t in plan.tenants)) or "none"
                raise AuditError(
                    f"tenant {options.tenant!r} is not planned on {options.site} ({known})"
                )
            hosts = {h: v for h, v in every.items() if v.get("tenancy_tenant") == options.tenant}
            patterns = [group_name(options.tenant)]
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

        bundle = options.out or state_dir(options.root) / "audits" / _stamp(started)
        bundle.mkdir(parents=True, exist_ok=False)
        inventory_file = tmpdir / "inventory.yml"
        text = yaml.safe_dump(inv, sort_keys=True, allow_unicode=True)
        inventory_file.write_text(text, encoding="utf-8")
        (bundle / "inventory.yml").write_text(text, encoding="utf-8")

        cpus = os.cpu_count() or 1
        workers = options.workers or min(len(hosts), cpus)
        workers = max(1, min(workers, len(hosts)))
        argv = _pytest_argv(options, bundle, inventory_file, patterns, workers)
        if stream is not None:
            print(f"audit {options.site}: {len(hosts)} host(s), bundle {bundle}", file=stream)
        pytest_exit = _run_logged(argv, project_dir(), bundle / "pytest.log", stream)

        lynis: dict[str, dict[str, Any]] = {}
        if options.lynis:
            logs = bundle / "lynis"
            logs.mkdir()
            if stream is not None:
                print(f"lynis: auditing {len(hosts)} host(s)", file=stream)
            with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
                futures = {
                    h: pool.submit(lynis_index, h, v, logs, options.lynis_timeout)
                    for h, v in hosts.items()
                }
                lynis = {h: f.result() for h, f in futures.items()}
        _close_masters(every.values())

    finished = datetime.now(UTC)
    records_file = bundle / "records.json"
    records: list[dict[str, Any]] = []
    if records_file.is_file():
        records = json.loads(records_file.read_text(encoding="utf-8")).get("records", [])
    audited = {h: {**v, "lynis": lynis.get(h)} for h, v in hosts.items()}
    meta = {
        "site": options.site,
        "tenant": options.tenant,
        "host_filter": sorted(options.hosts) or None,
        "plan_digest": plan.digest(),
        "tenants_commit": tenants_commit(options.root),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "today": today.isoformat(),
        "tools": tool_versions(),
        "lynis_versions": {h: (v or {}).get("version") for h, v in lynis.items()},
        "pytest": {"exit_code": pytest_exit, "argv": argv[1:]},
        "reductions": scope_reductions(options, len(hosts), len(every), started.date()),
    }
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
