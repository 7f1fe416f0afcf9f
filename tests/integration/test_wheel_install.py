"""A wheel install, not editable, works on a project that holds only tenants and stacks.

The wheel is built with ``python -m build`` (sdist first, then the wheel from
the sdist, as a release would) and installed into a new virtual environment
with its dependencies; the project is a directory with ``Pulumi.yaml``,
``tenants/`` and ``stacks/`` and nothing else. Everything Tenancy ships
(templates, catalogue, playbook, roles, compliance checks) must then come from
the installed package: the plan, every template and the audit's entry points.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITES = ("local", "dc-east")
PLAN_FORMATS = ("table", "markdown", "json", "dot", "mermaid")

# Run inside the clean venv: render every template through the package's own
# renderers and say which templates were loaded and where they came from.
RENDER_ALL = r"""
import json, sys
from pathlib import Path
from tenancy.contract.loader import load_site
from tenancy.plan.planner import plan_paths
from tenancy.project import Project, shipped
from tenancy.render import env, plan_report
from tenancy.render.cloud_init import render_seed
from tenancy.render.firewall import guest_host_services, render_host_nftables, render_nwfilter_body

loaded = set()
original = env.environment().get_template
def recording(name, *args, **kwargs):
    loaded.add(name)
    return original(name, *args, **kwargs)
env.environment().get_template = recording

project = Project.find(Path.cwd())
result = plan_paths(project.root, None, sites=["dc-east"])
assert result.ok, result.problems.errors
plan, site = result.plans["dc-east"], result.sites["dc-east"].model
for tenant in plan.tenants:
    for machine in tenant.machines:
        render_seed(machine, tenant.segment, ["ssh-ed25519 AAAA test"], site.ops.user)
    for group in sorted({m.group for m in tenant.machines}):
        render_nwfilter_body(tenant, group, list(site.ops.cidrs))
for host in plan.hosts:
    render_host_nftables(plan, host.name, guest_host_services(site.ntp_servers))
for to_text in (plan_report.to_markdown, plan_report.to_dot, plan_report.to_mermaid):
    to_text(plan)
from tenancy.plan.plan_diff import diff_plans
from tenancy.render import diff_report
diff_report.to_markdown(diff_plans(None, plan, {}, {}))
env.render("tenant/tenant.yaml.j2", name="x", path="tenants/x.yaml", display_name="x",
           owner="x@example.gov", site="dc-east", zone="intranet", flavor="small",
           flavors="small", image="debian-12", images="debian-12", pool="default")
from datetime import date
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.report import build_results, render_html
from tenancy.policy.variables import load_policy_sources, policy_inventory, tenant_hosts
from tenancy.policy.ops_keys import OpsKeys
sources = load_policy_sources(project)
inv = policy_inventory(plan, site, sources, date.today(), ops_keys=OpsKeys(('ssh-ed25519 A t',)),
                       check_site=False)
meta = {"site": "dc-east", "tenant": None, "plan_digest": plan.digest(), "tenants_commit": None,
        "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00",
        "today": date.today().isoformat(), "tools": {}}
doc = build_results([], sources.catalogue, sources.waivers, tenant_hosts(inv), date.today(), meta)
html = render_html(doc)
assert "<html" in html.lower()
print(json.dumps({
    "loaded": sorted(loaded),
    "templates": str(shipped("templates")),
    "resources": {n: str(shipped(n)) for n in ("templates", "policies", "roles", "compliance")},
}))
"""


@dataclass(frozen=True)
class WheelInstall:
    venv: Path
    project: Path
    env: dict[str, str]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(argv), cwd=self.project, env=self.env, capture_output=True, text=True, check=False
        )
        if check:
            assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}"
        return done

    def tenancy(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "tenancy"), *args)


def _checked(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> WheelInstall:
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    # the build's own tools (setuptools, wheel) are the pinned ones of this venv
    _checked([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), "."], ROOT)
    wheels = sorted(dist.glob("tenancy-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}: {sorted(dist.iterdir())}"
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    _checked([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], work)
    project = work / "project"
    project.mkdir()
    shutil.copy2(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    for folder in ("tenants", "stacks"):
        shutil.copytree(ROOT / folder, project / folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANCY_", "PYTHON"))}
    env["PATH"] = f"{env_dir / 'bin'}:{env.get('PATH', '')}"
    env["TENANCY_STATE"] = str(work / "state")
    return WheelInstall(venv=env_dir, project=project, env=env)


def _site_packages(install: WheelInstall) -> Path:
    out = install.run(
        str(install.venv / "bin" / "python"),
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
    )
    return Path(out.stdout.strip())


def test_the_wheel_carries_every_shipped_file(wheel: WheelInstall) -> None:
    shipped = _site_packages(wheel) / "tenancy" / "_resources"
    for name, source in (
        ("templates", ROOT / "templates"),
        ("policies", ROOT / "policies"),
        ("roles", ROOT / "roles"),
        ("compliance", ROOT / "tests" / "compliance"),
    ):
        want = {
            p.relative_to(source).as_posix()
            for p in source.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        have = {
            p.relative_to(shipped / name).as_posix()
            for p in (shipped / name).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert want <= have, f"{name}: missing from the wheel: {sorted(want - have)}"


def test_validate_and_plan_match_the_checkout(wheel: WheelInstall) -> None:
    out = wheel.tenancy("validate", "tenants/")
    assert "valid" in out.stderr
    for site in SITES:
        for fmt in PLAN_FORMATS:
            got = wheel.tenancy("plan", "--site", site, "--format", fmt).stdout
            want = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tenancy.cli",
                    "--root",
                    str(ROOT),
                    "plan",
                    "--site",
                    site,
                    "--format",
                    fmt,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert got == want, f"plan --site {site} --format {fmt} differs from the checkout's"
    inventory = wheel.tenancy("inventory", "--site", "dc-east", "--format", "json").stdout
    assert json.loads(inventory)["all"]["children"], "the inventory has no groups"


def test_every_template_renders_from_the_package(wheel: WheelInstall) -> None:
    out = wheel.run(str(wheel.venv / "bin" / "python"), "-c", RENDER_ALL)
    report = json.loads(out.stdout)
    site_packages = _site_packages(wheel)
    for name, path in report["resources"].items():
        assert Path(path).is_relative_to(site_packages), f"{name} resolved to {path}, not the wheel"
    every = sorted(
        p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*.j2")
    )
    assert report["loaded"] == every, "some templates were not rendered from the wheel"


def test_audit_and_harden_start_from_the_package(wheel: WheelInstall) -> None:
    for verb in ("audit", "harden", "doctor", "up"):
        assert "--site" in wheel.tenancy(verb, "--help").stdout
    new = wheel.tenancy("new", "demo", "-o", "-").stdout
    assert "apiVersion: tenancy/v1" in new
    wheel.run(str(wheel.venv / "bin" / "python"), "-c", "import tenancy.compliance.plugin")
