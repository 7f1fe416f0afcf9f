"""Names derived from tenant labels: unique per site, within limits, never refused at ``up``.

Each test writes real tenant files into a copy of the project and runs what
``tenancy validate`` runs (plan_paths); every error must name the file, line
and field, say what was expected, and (for a collision) name the other file.
The last tests run the Pulumi program under mocks and check that every name it
registers is one :mod:`tenancy.plan.name_clash` derives, so the check cannot
fall behind the infra.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi_mocks import program_inputs, run_program
from tests.support.problems import assert_located, errors_of, find
from tests.support.project import OPEN_ZONES, REPO, edit_site, tenant_doc, write_tenant

from tenancy.contract.loader import load_site, load_tenants, site_file
from tenancy.infra import program as tenancy_program
from tenancy.plan import name_clash
from tenancy.plan.planner import PlanResult, plan_paths
from tenancy.plan.profiles import known_profiles
from tenancy.render.inventory import inventory


def validate(root: Path) -> PlanResult:
    result = plan_paths(root)
    for e in result.problems.errors:
        assert_located(e)
    if result.problems.errors:
        assert result.plans == {} and result.ledgers == {}  # never a partial plan
    return result


def line_of(path: Path, needle: str, after: str = "") -> int:
    """The first line holding ``needle`` (below the first line holding ``after``)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    for number, line in enumerate(lines[start:], start + 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def machine(name: str, site: str = "local", **extra: Any) -> dict[str, Any]:
    flavor = "tiny" if site == "local" else "small"
    return {"name": name, "flavor": flavor, "image": "debian-12", "diskGiB": 4, **extra}


def use_ledger(root: Path, site: str) -> None:
    """The repository's ledger: its tenants exist, a new file is the one to rename."""
    shutil.copy2(REPO / "stacks" / f"ledger.{site}.yaml", root / "stacks")


# --------------------------------------------------------------------------- collisions


def test_tenant_and_machine_names_meeting_in_one_domain(project: Path) -> None:
    """family + planning-app and family-planning + app: both family-planning-app-1."""
    use_ledger(project, "dc-east")
    doc = tenant_doc("family", site="dc-east", machines=[machine("planning-app", "dc-east")])
    family = write_tenant(project, doc)
    existing = project / "tenants" / "family-planning.yaml"
    errors = errors_of(validate(project))
    assert {e.location.file for e in errors} == {"tenants/family.yaml"}  # the newcomer's
    error = find(errors, field="spec.machines[0].name")
    assert "'family-planning-app-1'" in error.message
    assert "machine 'app' of tenant 'family-planning'" in error.message
    assert error.location.line == line_of(family, "planning-app")
    assert error.related[0].file == "tenants/family-planning.yaml"
    assert error.related[0].line == line_of(existing, "- name: app")
    assert "unique on the site" in error.expected
    assert "tenants/family.yaml" in str(error) and "tenants/family-planning.yaml" in str(error)
    assert len(errors) == 1, "one collision, one error (not one per derived name)"


def test_without_a_ledger_the_later_tenant_by_name_is_told(project: Path) -> None:
    doc = tenant_doc("family", site="dc-east", machines=[machine("planning-app", "dc-east")])
    family = write_tenant(project, doc)
    error = find(errors_of(validate(project)), message="family-planning-app-1")
    assert error.location.file == "tenants/family-planning.yaml"
    assert error.related[0].file == "tenants/family.yaml"
    assert error.related[0].line == line_of(family, "planning-app")


def test_tenant_group_meets_another_tenants_role_group(project: Path) -> None:
    """hr-web's group and hr's role web are both the Ansible group hr_web."""
    path = write_tenant(project, tenant_doc("hr-web"))
    hr = project / "tenants" / "hr.yaml"
    error = find(errors_of(validate(project)), message="Ansible group 'hr_web'")
    assert (error.location.file, error.field) == ("tenants/hr-web.yaml", "metadata.name")
    assert error.location.line == line_of(path, "name: hr-web")
    assert "role 'web' of tenant 'hr'" in error.message
    assert error.related[0].file == "tenants/hr.yaml"
    assert error.related[0].line == line_of(hr, "role: web")


def test_nwfilter_names_meet(project: Path) -> None:
    """tenancy-hr-web-app: tenant hr-web role app, and tenant hr role web-app."""
    path = write_tenant(project, tenant_doc("hr-web", machines=[machine("x", role="app")]))
    hr = tenant_doc("hr", machines=[machine("portal", role="web"), machine("y", role="web-app")])
    write_tenant(project, hr)
    errors = errors_of(validate(project))
    error = find(errors, message="libvirt nwfilter 'tenancy-hr-web-app'")
    assert (error.location.file, error.field) == ("tenants/hr-web.yaml", "spec.machines[0].role")
    assert error.location.line == line_of(path, "role: app")
    assert "role 'web-app' of tenant 'hr'" in error.message
    assert error.related[0].file == "tenants/hr.yaml"
    assert len(errors) == 2, errors  # and the tenant group hr_web, at metadata.name


def test_volume_file_meets_another_machines_root_disk(project: Path) -> None:
    """Machine a's volume b-1-root and machine a-1-b's root disk: both aa-a-1-b-1-root.qcow2."""
    vol = {"name": "b-1-root", "sizeGiB": 1, "pool": "default"}
    doc = tenant_doc("aa", machines=[machine("a", volumes=[vol]), machine("a-1-b")])
    path = write_tenant(project, doc)
    error = find(errors_of(validate(project)), message="volume file 'aa-a-1-b-1-root.qcow2'")
    assert error.location.file == "tenants/aa.yaml"
    assert error.location.line == line_of(path, "a-1-b")
    assert error.related[0].line == line_of(path, "b-1-root")


def test_tenant_and_host_names_meeting_in_one_urn(project: Path) -> None:
    """Tenant aa on host bb-local and tenant aa-bb on host local: aa-bb-local-segment."""
    stack = site_file(project / "stacks", "local")
    data = yaml.safe_load(stack.read_text(encoding="utf-8"))
    hosts = data["config"]["tenancy:site"]["hosts"]
    hosts.append({**copy.deepcopy(hosts[0]), "name": "bb-local"})
    stack.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    write_tenant(project, tenant_doc("aa"))
    path = write_tenant(project, tenant_doc("aa-bb"))
    error = find(errors_of(validate(project)), message="'aa-bb-local-segment'")
    assert (error.location.file, error.field) == ("tenants/aa-bb.yaml", "metadata.name")
    assert error.location.line == line_of(path, "name: aa-bb")
    assert "tenant 'aa' on host 'bb-local'" in error.message
    assert error.related[0].file == "tenants/aa.yaml"


def test_a_volume_file_that_may_be_a_base_image(project: Path) -> None:
    """The base images live in the root pool as base-<image>-<recipe>.qcow2."""
    vol = {"name": "cafe0123cafe0123", "sizeGiB": 1, "pool": "default"}
    write_tenant(project, tenant_doc("base-debian", machines=[machine("x12", volumes=[vol])]))
    write_tenant(project, tenant_doc("base", machines=[machine("debian-12")]))
    errors = errors_of(validate(project))
    error = find(errors, message="base-debian-12-<recipe>.qcow2")
    assert (error.location.file, error.field) == ("tenants/base.yaml", "spec.machines[0].name")
    assert "'base-<image>-'" in error.expected
    assert all(e.location.file == "tenants/base.yaml" for e in errors), errors


def test_the_examples_have_no_collisions(project: Path) -> None:
    assert validate(project).ok


# --------------------------------------------------------------------------- reserved words


@pytest.mark.parametrize(
    "name", ["all", "ungrouped", "localhost", "intranet", "extranet", "internet", "ops", "tenancy"]
)
def test_reserved_tenant_names(project: Path, name: str) -> None:
    path = write_tenant(project, tenant_doc(name))
    error = find(errors_of(validate(project)), field="metadata.name")
    assert error.location.file == f"tenants/{name}.yaml"
    assert error.location.line == line_of(path, f"name: {name}")
    assert "reserved word" in error.expected and "ungrouped" in error.expected


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("metadata", "name"), "hr--web", "metadata.name"),
        (("spec", "machines", 0, "name"), "app--1", "spec.machines[0].name"),
        (("spec", "machines", 0, "role"), "web--x", "spec.machines[0].role"),
        (("spec", "machines", 0, "volumes"), [{"name": "a--b", "sizeGiB": 1, "pool": "default"}],
         "spec.machines[0].volumes[0].name"),
        (("spec", "firewall", "ingress"), [{"from": "intranet", "to": "a--b", "ports": ["22/tcp"]}],
         "spec.firewall.ingress[0].to"),
        (("spec", "firewall", "egress"), [{"to": "hr--x/web", "ports": ["22/tcp"]}],
         "spec.firewall.egress[0].to"),
    ],
)  # fmt: skip
def test_double_hyphens_are_refused(
    project: Path, path: tuple[str | int, ...], value: Any, field: str
) -> None:
    """'--' ends an XML comment (the nwfilter's) and is reserved in DNS (xn--)."""
    doc = tenant_doc("dash")
    target: Any = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    file = write_tenant(project, doc, "hr--web" if path == ("metadata", "name") else None)
    error = find(errors_of(validate(project)), field=field)
    assert error.location.file == f"tenants/{file.name}"
    assert error.location.line == line_of(file, "--")
    assert "'--'" in error.expected or "single '-'" in error.expected, error


def test_a_volume_named_root(project: Path) -> None:
    vol = {"name": "root", "sizeGiB": 1, "pool": "default"}
    path = write_tenant(project, tenant_doc("vols", machines=[machine("app", volumes=[vol])]))
    error = find(errors_of(validate(project)), field="spec.machines[0].volumes[0].name")
    assert error.location.file == "tenants/vols.yaml"
    assert error.location.line == line_of(path, "name: root")
    assert "other than 'root'" in error.expected and "<domain>-root.qcow2" in error.expected


# --------------------------------------------------------------------------- lengths


def test_a_64_character_host_name(project: Path) -> None:
    tenant = "t" * 32
    name = "m" * 29  # tttt...-mmmm...-1: 32 + 1 + 29 + 2 = 64
    path = write_tenant(project, tenant_doc(tenant, machines=[machine(name)]))
    error = find(errors_of(validate(project)), message="host name too long")
    assert (error.location.file, error.field) == (f"tenants/{tenant}.yaml", "spec.machines[0].name")
    assert error.location.line == line_of(path, name)
    assert "at most 63 characters" in error.expected and "by 1" in error.expected
    assert "(64 characters)" in error.found


def test_63_characters_and_the_count_digits(project: Path) -> None:
    tenant = "t" * 32
    write_tenant(project, tenant_doc(tenant, machines=[machine("m" * 28)]))  # exactly 63
    assert validate(project).ok
    write_tenant(project, tenant_doc(tenant, machines=[machine("m" * 28, count=10)]))
    error = find(errors_of(validate(project)), message="host name too long")
    assert f"'{tenant}-{'m' * 28}-10'" in error.found


def test_a_volume_file_name_over_libvirts_limit(project: Path) -> None:
    tenant, name, vol = "t" * 32, "m" * 28, "v" * 32  # 63 + 1 + 32 + 6 = 102
    volume = {"name": vol, "sizeGiB": 1, "pool": "default"}
    path = write_tenant(project, tenant_doc(tenant, machines=[machine(name, volumes=[volume])]))
    error = find(errors_of(validate(project)), message="volume file name too long")
    assert error.field == "spec.machines[0].volumes[0].name"
    assert error.location.line == line_of(path, vol)
    assert "at most 100 characters" in error.expected and "by 2" in error.expected


# --------------------------------------------------------------------------- CIDR form


@pytest.mark.parametrize(
    "cidr",
    ["10.8.0.0/255.255.255.0", "10.8.0.0/0.0.0.255", "10.08.0.0/24", "10.8.0.0/024",
     "10.8.0.0/+24", "10.8.0.0/ 24", "10.8.0.0/24 ", "10.8.0.0/33", "10.8.0.0/٢٤"],
)  # fmt: skip
def test_only_canonical_cidrs_in_tenant_files(project: Path, cidr: str) -> None:
    doc = tenant_doc(
        "nets",
        network={"cidr": cidr},
        egress=[{"to": cidr, "ports": ["443/tcp"]}],
        ingress=[{"from": cidr, "ports": ["443/tcp"]}],
    )
    path = write_tenant(project, doc)
    errors = errors_of(validate(project), "tenants/nets.yaml")
    for field, key in (
        ("spec.network.cidr", "cidr:"),
        ("spec.firewall.egress[0].to", "to:"),
        ("spec.firewall.ingress[0].from", "from:"),
    ):
        error = find(errors, field=field)
        assert error.location.line == line_of(path, key, "network" if key == "cidr:" else "")
        assert "canonical CIDR form like 10.30.2.0/24" in error.expected, error
        assert "not a netmask" in error.expected


def test_canonical_cidrs_still_pass(project: Path) -> None:
    edit_site(project, "local", zoneRules=OPEN_ZONES)  # flows here, zones elsewhere
    doc = tenant_doc("nets", egress=[{"to": "192.0.2.0/24", "ports": ["443/tcp"]}])
    doc["spec"]["firewall"]["ingress"] = [{"from": "198.51.100.7/32", "ports": ["22/tcp"]}]
    write_tenant(project, doc)
    assert validate(project).ok


def test_only_canonical_cidrs_in_site_files(project: Path) -> None:
    stack = site_file(project / "stacks", "local")
    text = stack.read_text(encoding="utf-8")
    stack.write_text(
        text.replace("reserved: [10.30.255.0/24]", "reserved: [10.30.255.0/255.255.255.0]"),
        encoding="utf-8",
    )
    error = find(errors_of(validate(project)), field="reserved[0]")
    assert error.location.file == "stacks/Pulumi.local.yaml"
    assert error.location.line == line_of(stack, "reserved:")
    assert "not a netmask" in error.expected


# --------------------------------------------------------------------------- policy profiles


def test_an_unknown_policy_profile(project: Path) -> None:
    path = write_tenant(project, tenant_doc("strict", policies=["baseline", "pci-dss"]))
    error = find(errors_of(validate(project)), field="spec.policies[1]")
    assert error.location.file == "tenants/strict.yaml"
    assert error.location.line == line_of(path, "pci-dss")
    assert error.message == "unknown policy profile"
    assert error.expected == "one of baseline, mlps-level3 (the policy catalogue)"
    assert error.found == "'pci-dss'"


def test_profiles_come_from_the_shipped_catalogue() -> None:
    data = yaml.safe_load((REPO / "policies" / "catalogue.yaml").read_text(encoding="utf-8"))
    assert known_profiles() == set(data["profiles"])


# --------------------------------------------------------------------------- the infra's names


def _derived(root: Path, site_name: str) -> set[tuple[str, str]]:
    site, errors = load_site(site_file(root / "stacks", site_name), site_name, root)
    assert site is not None, errors
    tenants, errors = load_tenants([root / "tenants"], root)
    assert not errors
    return {
        (d.namespace, d.name)
        for t in tenants
        if t.model.spec.site == site_name
        for d in name_clash.derived_names(site, t.model.name, t)
    }


@pytest.mark.parametrize("site", ["local", "dc-east"])
def test_every_name_the_program_registers_is_checked(tmp_path: Path, site: str) -> None:
    """URN names (by type chain), libvirt names and Ansible groups: all derived here."""
    derived = _derived(REPO, site)
    inputs = program_inputs(REPO, site, tmp_path / "images")
    prog = run_program(lambda: tenancy_program.build(inputs), stack=site)
    checked = 0
    for r in prog.resources.values():
        chain = [t.rsplit(":", 1)[-1] for t in r.urn.split("::")[2].split("$")]
        if chain[0] != "TenantHosting":
            continue  # the hypervisors: named from the site file only
        assert ("Pulumi " + "$".join(chain), r.name) in derived, r.urn
        libvirt = {"Domain": "libvirt domain and host name", "Network": "libvirt network"}
        libvirt |= {"NwFilter": "libvirt nwfilter", "Volume": "volume file"}
        if r.kind in libvirt:
            assert (libvirt[r.kind], r.inputs["name"]) in derived, r.urn
        checked += 1
    assert checked >= 8
    groups = {"all"}
    for tenant_group, body in inventory(inputs.plan)["all"]["children"].items():
        groups |= {tenant_group, *body["children"]}
    assert {("Ansible group", g) for g in groups - {"all"}} <= derived
