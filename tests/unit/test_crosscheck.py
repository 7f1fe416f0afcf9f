"""Checks across documents: site catalogues, quotas, references, overlaps, duplicates.

Each test adds real tenant files to a copy of the project and runs the same
entry point as `tenancy validate` (plan_paths); errors must be located and no
plan may be produced when any error is found.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from tests.support.problems import assert_located, errors_of, find
from tests.support.project import OPEN_ZONES, edit_site, tenant_doc, write_data, write_tenant

from tenancy.contract.crosscheck import usage
from tenancy.contract.loader import load_site, load_tenant
from tenancy.plan.planner import PlanResult, plan_paths


def validate(root: Path) -> PlanResult:
    result = plan_paths(root)
    for e in [*result.problems.errors, *result.problems.warnings]:
        assert_located(e)
    if result.problems.errors:
        assert result.plans == {} and result.ledgers == {}  # never a partial plan
    return result


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def test_examples_are_valid(project: Path) -> None:
    result = validate(project)
    assert result.ok
    assert sorted(result.plans) == ["dc-east", "local"]
    assert result.problems.warnings == []


# --------------------------------------------------------------------------- site catalogues


def test_unknown_flavor_image_pool_backup(project: Path) -> None:
    path = write_data(project, "broken/catalogue.yaml")
    errors = errors_of(validate(project), "tenants/catalogue.yaml")
    flavor = find(errors, field="spec.machines[0].flavor")
    assert flavor.message == "unknown flavor"
    assert flavor.expected == "one of medium, small, tiny (site local)"
    assert flavor.found == "'xlarge'"
    assert flavor.location.line == line_of(path, "flavor: xlarge")
    image = find(errors, field="spec.machines[0].image")
    assert (image.message, image.found) == ("unknown image", "'windows-2022'")
    assert image.expected == "one of debian-12 (site local)"
    pool = find(errors, field="spec.machines[0].volumes[0].pool")
    assert (pool.message, pool.expected, pool.found) == (
        "unknown storage pool",
        "one of bulk, default",
        "'nvme'",
    )
    backup = find(errors, field="spec.machines[0].volumes[0].backup")
    assert backup.message == "unknown backup schedule"
    assert backup.expected == "one of none, daily, weekly"
    assert {e.location.line for e in (pool, backup)} == {line_of(path, "pool: nvme")}


def test_catalogue_is_per_site(project: Path) -> None:
    # 'db' exists on dc-east only
    doc = tenant_doc("aa", machines=[{"name": "x", "flavor": "db", "image": "debian-12"}])
    write_tenant(project, doc)
    error = find(errors_of(validate(project)), field="spec.machines[0].flavor")
    assert "(site local)" in error.expected


def test_unknown_site(project: Path) -> None:
    write_tenant(project, tenant_doc("lost", site="dc-west"))
    error = find(errors_of(validate(project)), field="spec.site")
    assert error.message == "unknown site"
    assert error.expected == "a stack file stacks/Pulumi.dc-west.yaml"
    assert error.found == "'dc-west'"
    assert error.location.file == "tenants/lost.yaml"


def test_broken_site_file_is_located(project: Path) -> None:
    stack = project / "stacks" / "Pulumi.local.yaml"
    stack.write_text(
        stack.read_text(encoding="utf-8").replace("vcpus: 2\n", "vcpus: two\n"), encoding="utf-8"
    )
    error = find(errors_of(validate(project)), field="config.tenancy:site.hosts[0].vcpus")
    assert error.location.file == "stacks/Pulumi.local.yaml"
    assert error.location.line == line_of(stack, "vcpus: two")


# --------------------------------------------------------------------------- quota


def grant(project: Path, site: str, tenant: str, line: str) -> Path:
    """Add ops' grant for ``tenant`` (a flow mapping) to the site's grants file."""
    path = project / "stacks" / f"quotas.{site}.yaml"
    path.write_text(path.read_text(encoding="utf-8") + f"  {tenant}: {line}\n", encoding="utf-8")
    return path


def test_the_grant_limits_not_the_request(project: Path) -> None:
    path = write_data(project, "broken/over-quota.yaml")  # asks for 4,096 vCPUs
    grants = grant(project, "local", "over-quota", "{vcpus: 2, memoryGiB: 1, storageGiB: 10}")
    errors = errors_of(validate(project), "tenants/over-quota.yaml")
    assert {e.message for e in errors} == {
        "vcpus over the quota ops granted",
        "memoryGiB over the quota ops granted",
        "storageGiB over the quota ops granted",
    }
    vcpus = find(errors, message="vcpus over")
    assert vcpus.field == "spec.machines"
    assert vcpus.expected == "at most 2 vcpus (granted in stacks/quotas.local.yaml)"
    assert vcpus.found == "5 requested"
    assert vcpus.location.line == line_of(path, "  machines:")
    # both files named: the tenant's line and ops' grant line
    assert [(r.file, r.line) for r in vcpus.related] == [
        ("stacks/quotas.local.yaml", line_of(grants, "over-quota:"))
    ]
    memory = find(errors, message="memoryGiB over")
    assert memory.found == "3 requested"  # 5 x 512 MiB, rounded up to whole GiB
    storage = find(errors, message="storageGiB over")
    assert storage.found == "20 requested"


def test_a_request_within_the_grant_plans_and_is_shown(project: Path) -> None:
    write_data(project, "broken/over-quota.yaml")
    grant(project, "local", "over-quota", "{vcpus: 5, memoryGiB: 3, storageGiB: 20, machines: 5}")
    result = validate(project)
    assert result.ok, [str(e) for e in result.problems.errors]
    (plan,) = [t for t in result.plans["local"].tenants if t.name == "over-quota"]
    assert plan.quota == {
        "vcpus": 5,
        "memoryGiB": 3,
        "storageGiB": 20,
        "machines": 5,
        "addresses": 256,
    }
    assert plan.quota_source == "stacks/quotas.local.yaml"
    assert plan.quota_request == {
        "vcpus": 4096,
        "memoryGiB": 65536,
        "storageGiB": 100000,
        "machines": 40,
    }
    assert plan.usage == {
        "vcpus": 5,
        "memoryGiB": 3,
        "storageGiB": 20,
        "machines": 5,
        "addresses": 256,
    }


def test_machines_and_addresses_count(project: Path) -> None:
    doc = tenant_doc(
        "squat",
        network={"cidr": "10.30.64.0/22"},
        machines=[{"name": "w", "count": 3, "flavor": "tiny", "image": "debian-12"}],
    )
    path = write_tenant(project, doc)
    grant(
        project,
        "local",
        "squat",
        "{vcpus: 4, memoryGiB: 4, storageGiB: 60, machines: 2, addresses: 256}",
    )
    pools = {"intranet": "10.30.0.0/16", "extranet": "10.40.0.0/16", "segmentPrefix": 24}
    edit_site(project, "local", addressPools={**pools, "explicitPrefixes": [22, 28]})
    errors = errors_of(validate(project), "tenants/squat.yaml")
    machines = find(errors, message="machines over")
    assert (machines.expected, machines.found) == (
        "at most 2 machines (granted in stacks/quotas.local.yaml)",
        "3 requested",
    )
    addresses = find(errors, message="addresses over")
    assert addresses.field == "spec.network.cidr"
    assert addresses.location.line == line_of(path, "cidr:")
    assert addresses.found == "1024 requested"


def test_site_default_quota(project: Path) -> None:
    # local's default quota: 4 vCPUs, 4 GiB, 60 GiB; 5 x tiny = 5 vCPUs
    doc = tenant_doc(
        "big", machines=[{"name": "w", "count": 5, "flavor": "tiny", "image": "debian-12"}]
    )
    path = write_tenant(project, doc)
    errors = errors_of(validate(project), "tenants/big.yaml")
    error = find(errors, message="vcpus over")
    assert error.expected == "at most 4 vcpus (granted in stacks/Pulumi.local.yaml defaultQuota)"
    assert error.found == "5 requested"
    assert error.location.line == line_of(path, "machines:")
    assert [r.file for r in error.related] == ["stacks/Pulumi.local.yaml"]


def test_no_grant_and_no_default_refuses_the_tenant(project: Path) -> None:
    stack = project / "stacks" / "Pulumi.local.yaml"
    text = stack.read_text(encoding="utf-8")
    stack.write_text(
        "\n".join(line for line in text.splitlines() if "defaultQuota:" not in line) + "\n",
        encoding="utf-8",
    )
    write_tenant(project, tenant_doc("newcomer"))
    errors = errors_of(validate(project), "tenants/newcomer.yaml")
    error = find(errors, field="metadata.name")
    assert error.message == "no quota is granted to this tenant"
    assert "tenants.newcomer in stacks/quotas.local.yaml" in error.expected
    # the granted ones still plan: only the grants file decides
    assert not errors_of(validate(project), "tenants/hr.yaml")


def test_grants_file_is_checked(project: Path) -> None:
    path = grant(project, "local", "ghost", "{vcpus: lots, memoryGiB: 2, storageGiB: 20}")
    error = find(errors_of(validate(project)), location="stacks/quotas.local.yaml")
    assert error.field == "tenants.ghost.vcpus"
    assert error.location.line == line_of(path, "vcpus: lots")
    path.write_text(
        path.read_text(encoding="utf-8").replace("lots", "2").replace("site: local", "site: x"),
        encoding="utf-8",
    )
    error = find(errors_of(validate(project)), field="site")
    assert (error.message, error.found) == ("grants belong to another site", "'x'")


def test_quota_counts_volumes_and_disks(project: Path) -> None:
    doc = tenant_doc(
        "vols",
        machines=[
            {
                "name": "db",
                "count": 2,
                "flavor": "small",
                "image": "debian-12",
                "diskGiB": 5,
                "volumes": [{"name": "d", "sizeGiB": 7, "pool": "bulk"}],
            }
        ],
    )
    path = write_tenant(project, doc)
    tenant, errors = load_tenant(path)
    site, site_errors = load_site(project / "stacks" / "Pulumi.local.yaml", "local")
    assert tenant and site and not errors and not site_errors
    assert usage(tenant, site) == {
        "vcpus": 2,
        "memoryGiB": 2,
        "storageGiB": 24,
        "machines": 2,
        "addresses": 256,
    }


# --------------------------------------------------------------------------- references


def test_unknown_tenant_reference(project: Path) -> None:
    doc = tenant_doc("aa", ingress=[{"from": "nobody", "to": "app", "ports": ["443/tcp"]}])
    write_tenant(project, doc)
    error = find(errors_of(validate(project)), field="spec.firewall.ingress[0].from")
    assert error.message == "unknown tenant"
    assert error.found == "'nobody'"
    assert "a tenant file in tenants/" in error.expected


def test_unknown_tenant_in_egress_with_group(project: Path) -> None:
    write_tenant(project, tenant_doc("aa", egress=[{"to": "ghost/web", "ports": ["1/tcp"]}]))
    error = find(errors_of(validate(project)), field="spec.firewall.egress[0].to")
    assert (error.message, error.found) == ("unknown tenant", "'ghost'")


def test_unknown_group_of_this_tenant(project: Path) -> None:
    doc = tenant_doc(
        "aa",
        ingress=[{"from": "intranet", "to": "db", "ports": ["443/tcp"]}],
        egress=[{"from": "cache", "to": "internet", "ports": ["443/tcp"]}],
    )
    write_tenant(project, doc)
    errors = errors_of(validate(project), "tenants/aa.yaml")
    to = find(errors, field="spec.firewall.ingress[0].to")
    assert to.message == "unknown machine group of this tenant"
    assert (to.expected, to.found) == ("one of app", "'db'")
    source = find(errors, field="spec.firewall.egress[0].from")
    assert source.found == "'cache'"


def test_group_of_tenant_without_machines(project: Path) -> None:
    doc = tenant_doc("aa", machines=[], ingress=[{"from": "hr", "to": "web", "ports": ["1/tcp"]}])
    write_tenant(project, doc)
    error = find(errors_of(validate(project)), field="spec.firewall.ingress[0].to")
    assert error.expected == "one of (no machines)"


def test_unknown_group_of_other_tenant(project: Path) -> None:
    doc = tenant_doc("aa", ingress=[{"from": "hr/db", "ports": ["443/tcp"]}])
    write_tenant(project, doc)
    error = find(errors_of(validate(project)), field="spec.firewall.ingress[0].from")
    assert error.message == "unknown machine group of tenant hr"
    assert (error.expected, error.found) == ("one of web", "'db'")
    assert error.related and error.related[0].file == "tenants/hr.yaml"


def test_self_reference(project: Path) -> None:
    write_tenant(project, tenant_doc("aa", egress=[{"to": "aa/app", "ports": ["1/tcp"]}]))
    error = find(errors_of(validate(project)), field="spec.firewall.egress[0].to")
    assert error.message.startswith("a tenant's own machines share a segment")


def test_cross_site_flow(project: Path) -> None:
    # finance lives on dc-east, aa on local
    write_tenant(project, tenant_doc("aa", egress=[{"to": "finance/web", "ports": ["8443/tcp"]}]))
    error = find(errors_of(validate(project)), field="spec.firewall.egress[0].to")
    assert error.message == "flows across sites are not supported"
    assert error.expected == "a tenant on site local"
    assert error.found == "finance on site dc-east"
    (related,) = error.related
    assert related.file == "tenants/finance.yaml"
    assert related.line == line_of(project / "tenants" / "finance.yaml", "site: dc-east")


def test_keyword_and_cidr_endpoints_need_no_tenant(project: Path) -> None:
    edit_site(project, "local", zoneRules=OPEN_ZONES)  # flows here, zones elsewhere
    doc = tenant_doc(
        "aa",
        ingress=[
            {"from": "intranet", "ports": ["443/tcp"]},
            {"from": "extranet", "ports": ["80/tcp"]},
            {"from": "192.0.2.0/24", "to": "app", "ports": ["22/tcp"]},
        ],
        egress=[
            {"to": "internet", "ports": ["443/tcp"]},
            {"to": "10.8.0.0/24", "ports": ["1/udp"]},
        ],
    )
    write_tenant(project, doc)
    result = validate(project)
    assert result.ok, [str(e) for e in result.problems.errors]


# --------------------------------------------------------------------------- CIDRs


def test_overlap_between_tenants(project: Path) -> None:
    write_tenant(project, tenant_doc("aa", network={"cidr": "10.30.7.0/24"}))
    path = write_tenant(project, tenant_doc("bb", network={"cidr": "10.30.7.128/25"}))
    error = find(errors_of(validate(project)), message="overlaps tenant")
    assert error.location.file == "tenants/bb.yaml"
    assert error.location.line == line_of(path, "cidr:")
    assert error.message == "overlaps tenant aa's network 10.30.7.0/24"
    assert error.found == "10.30.7.128/25"
    assert error.related[0].file == "tenants/aa.yaml"


def test_overlap_between_many_tenants_each_reported(project: Path) -> None:
    write_tenant(project, tenant_doc("aa", network={"cidr": "10.30.64.0/18"}))
    for i, name in enumerate(["bb", "cc", "dd"]):
        write_tenant(project, tenant_doc(name, network={"cidr": f"10.30.{64 + i}.0/24"}))
    write_tenant(project, tenant_doc("ee", network={"cidr": "10.30.200.0/24"}))  # no overlap
    errors = [e for e in errors_of(validate(project)) if "overlaps tenant" in e.message]
    assert sorted(e.location.file for e in errors) == [
        "tenants/bb.yaml",
        "tenants/cc.yaml",
        "tenants/dd.yaml",
    ]


def test_overlap_with_finance_example(project: Path) -> None:
    doc = tenant_doc("aa", site="dc-east", network={"cidr": "10.30.2.0/23"})
    write_tenant(project, doc)
    error = find(errors_of(validate(project)), message="overlaps tenant")
    assert error.location.file == "tenants/finance.yaml"  # sorts after 'aa'
    assert "aa's network 10.30.2.0/23" in error.message


@pytest.mark.parametrize(
    ("cidr", "what"),
    [
        ("10.30.255.0/25", "site reserved range 10.30.255.0/24"),
        ("10.255.1.0/28", "site intranet client range 10.255.1.0/24"),
        ("10.255.0.0/16", "site extranet client range 10.255.2.0/24"),
    ],
)
def test_overlap_with_site_ranges(project: Path, cidr: str, what: str) -> None:
    write_tenant(project, tenant_doc("aa", network={"cidr": cidr}))
    errors = errors_of(validate(project), "tenants/aa.yaml")
    error = find(errors, message=f"overlaps the {what}")
    assert error.expected == (
        "a network free of the site's reserved, client, ops and infrastructure ranges"
    )
    assert error.found == cidr


def test_internet_range_is_not_reserved(project: Path) -> None:
    # local's 'internet' stand-in range is 10.255.3.0/24; tenant segments may not overlap
    # reserved and client ranges, and lie in their zone's pool
    write_tenant(project, tenant_doc("aa", zone="extranet", network={"cidr": "10.40.100.0/24"}))
    assert validate(project).ok


def test_segment_too_small(project: Path) -> None:
    # one check of the size: the site's allowed range (at most /28 by the model)
    write_tenant(project, tenant_doc("aa", network={"cidr": "10.30.9.0/29"}))
    errors = errors_of(validate(project), "tenants/aa.yaml")
    (error,) = [e for e in errors if e.field == "spec.network.cidr"]
    assert error.message == "segment size not allowed by the site"
    assert (error.expected, error.found) == ("a /22 to /28", "10.30.9.0/29")


# --------------------------------------------------------------------------- names, files


def test_duplicate_tenant_names(project: Path) -> None:
    shutil.copy(project / "tenants" / "hr.yaml", project / "tenants" / "hr.yml")
    error = find(errors_of(validate(project)), message="duplicate tenant name")
    assert error.location.file == "tenants/hr.yml"
    assert error.found == "'hr'"
    assert error.related[0].file == "tenants/hr.yaml"


def test_duplicate_names_from_two_directories(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(project / "tenants" / "tourism.yaml", other / "tourism.yaml")
    result = plan_paths(project, [project / "tenants", other])
    error = find(errors_of(result), message="duplicate tenant name")
    assert error.found == "'tourism'"


def test_same_file_named_twice_is_not_a_duplicate(project: Path) -> None:
    result = plan_paths(project, [project / "tenants", project / "tenants" / "hr.yaml"])
    assert result.ok, [str(e) for e in result.problems.errors]
    assert result.file_count == 5


def test_single_file_is_checked_against_the_project(project: Path) -> None:
    # tourism's egress names hr: validating tourism alone still resolves hr
    result = plan_paths(project, [project / "tenants" / "tourism.yaml"])
    assert result.ok, [str(e) for e in result.problems.errors]


def test_named_file_replaces_the_project_copy(project: Path, tmp_path: Path) -> None:
    edited = tmp_path / "hr.yaml"
    data = yaml.safe_load((project / "tenants" / "hr.yaml").read_text(encoding="utf-8"))
    data["spec"]["machines"][0]["flavor"] = "huge"
    edited.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = plan_paths(project, [edited])
    error = find(errors_of(result), field="spec.machines[0].flavor")
    assert error.found == "'huge'"
    assert not any("duplicate" in e.message for e in result.problems.errors)


def test_every_error_of_every_file_in_one_run(project: Path) -> None:
    broken = [
        "malformed",
        "wrong-types",
        "duplicate-keys",
        "unknown-keys",
        "python-tag",
        "alias-bomb",
        "path-name",
        "catalogue",
        "over-quota",
    ]
    for name in broken:
        write_data(project, f"broken/{name}.yaml")
    (project / "tenants" / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    (project / "tenants" / "huge.yaml").write_bytes(b"a: " + b"x" * (2 << 20))
    result = validate(project)
    files = {e.location.file for e in result.problems.errors}
    assert files == {f"tenants/{n}.yaml" for n in [*broken, "latin1", "huge"]}
    assert result.file_count == 5 + len(broken) + 2
    assert result.tenant_count == 5 + 2  # the examples, catalogue and over-quota parse
    assert result.plans == {}
    # the two files with several problems report all of them
    assert len(errors_of(result, "tenants/wrong-types.yaml")) == 7
    assert len(errors_of(result, "tenants/duplicate-keys.yaml")) == 2


def test_chinese_file_name(project: Path) -> None:
    doc = tenant_doc("财政")
    write_tenant(project, doc, name="财政")
    error = find(errors_of(validate(project)), field="metadata.name")
    assert error.location.file == "tenants/财政.yaml"
    assert error.found == "string '财政'"


def test_no_tenants_at_all(tmp_path: Path) -> None:
    (tmp_path / "tenants").mkdir()
    result = plan_paths(tmp_path)
    assert result.ok and result.plans == {} and result.file_count == 0
