"""The tenant v1 and site contracts: every rule a single document must satisfy."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from tests.support.problems import assert_located, find
from tests.support.project import DATA, EXAMPLE_TENANTS, REPO, tenant_doc

from tenancy.contract.errors import ErrorList, Location, SpecError, describe
from tenancy.contract.loader import load_site, load_tenant, load_tenants, tenant_files
from tenancy.contract.models import Site, Tenant
from tenancy.contract.types import PortRange, parse_port

Doc = dict[str, Any]


def check(tmp_path: Path, doc: Doc | str, name: str = "sample") -> list[SpecError]:
    """Load one tenant file; return its errors (empty when valid)."""
    path = tmp_path / f"{name}.yaml"
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    loaded, errors = load_tenant(path, f"tenants/{name}.yaml")
    assert (loaded is None) == bool(errors)
    for e in errors:
        assert_located(e)
        assert e.location.file == f"tenants/{name}.yaml"
    return errors


def base() -> Doc:
    doc = tenant_doc(
        "sample",
        machines=[
            {
                "name": "app",
                "count": 2,
                "flavor": "tiny",
                "image": "debian-12",
                "diskGiB": 4,
                "role": "web",
                "volumes": [{"name": "data", "sizeGiB": 5, "pool": "bulk", "backup": "daily"}],
            }
        ],
        ingress=[{"from": "intranet", "to": "web", "ports": ["443/tcp"]}],
        egress=[{"to": "internet", "ports": ["443/tcp"]}],
    )
    doc["spec"]["quotaRequest"] = {"vcpus": 4, "memoryGiB": 4, "storageGiB": 60}
    doc["spec"]["network"] = {"cidr": "10.30.9.0/24"}
    doc["spec"]["policies"] = ["baseline"]
    return doc


def mutate(path: str, value: Any) -> Callable[[Doc], None]:
    """Set (or with value=DELETE remove) a dotted path like spec.machines.0.count."""

    def apply(doc: Doc) -> None:
        parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
        target: Any = doc
        for p in parts[:-1]:
            target = target[p]
        if value is DELETE:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value

    return apply


DELETE = object()


def test_base_document_is_valid(tmp_path: Path) -> None:
    assert check(tmp_path, base()) == []


@pytest.mark.parametrize("name", EXAMPLE_TENANTS)
def test_example_tenants_are_valid(name: str) -> None:
    loaded, errors = load_tenant(REPO / "tenants" / f"{name}.yaml")
    assert errors == []
    assert loaded is not None and loaded.model.name == name


def test_unicode_data_file_is_valid(tmp_path: Path) -> None:
    text = (DATA / "valid" / "unicode.yaml").read_text(encoding="utf-8")
    assert check(tmp_path, text, "unicode") == []


M = "spec.machines.0."
V = "spec.machines.0.volumes.0."
IN = "spec.firewall.ingress.0."
EG = "spec.firewall.egress.0."

# (id, dotted path, bad value, text in 'expected', text in 'found')
INVALID: list[tuple[str, str, Any, str, str]] = [
    ("api-version", "apiVersion", "tenancy/v2", "'tenancy/v1'", "v2"),
    ("kind", "kind", "Site", "'Tenant'", "Site"),
    ("name-traversal", "metadata.name", "../x", "DNS label", "'../x'"),
    ("name-slash", "metadata.name", "a/b", "no '/'", "'a/b'"),
    ("name-chinese", "metadata.name", "财政", "DNS label", "财政"),
    ("name-upper", "metadata.name", "Sample", "DNS label", "Sample"),
    ("name-short", "metadata.name", "s", "at least 2", "'s'"),
    ("name-long", "metadata.name", "a" * 33, "at most 32", "aaa"),
    ("name-dash", "metadata.name", "sample-", "DNS label", "sample-"),
    ("name-int", "metadata.name", 12, "valid string", "int 12"),
    ("display-empty", "metadata.displayName", "", "at least 1", ""),
    ("display-long", "metadata.displayName", "财" * 129, "128", ""),
    ("owner", "metadata.owner", "nobody", "an e-mail address", "'nobody'"),
    ("zone", "spec.zone", "dmz", "'intranet' or 'extranet'", "'dmz'"),
    ("site-type", "spec.site", ["local"], "valid string", "a list of 1"),
    ("cidr-host-bits", "spec.network.cidr", "10.30.9.1/24", "IPv4", ""),
    ("cidr-no-prefix", "spec.network.cidr", "10.30.9.0", "prefix", ""),
    ("cidr-garbage", "spec.network.cidr", "ten.0.0.0/8", "CIDR", ""),
    ("cidr-v6", "spec.network.cidr", "fd00::/64", "IPv4", ""),
    ("quota-zero", "spec.quotaRequest.vcpus", 0, "greater than or equal", ""),
    ("quota-str", "spec.quotaRequest.memoryGiB", "4", "integer", "'4'"),
    ("count-str", M + "count", "2", "integer", "'2'"),
    ("count-bool", M + "count", True, "integer", "true"),
    ("count-float", M + "count", 2.0, "integer", "2.0"),
    ("count-zero", M + "count", 0, "greater", "int 0"),
    ("count-big", M + "count", 65, "less", "int 65"),
    ("protect-yes", M + "protect", "yes", "boolean", "'yes'"),
    ("protect-true", M + "protect", "true", "boolean", "'true'"),
    ("protect-int", M + "protect", 1, "boolean", "int 1"),
    ("machine-name", M + "name", "App_1", "DNS label", ""),
    ("flavor-int", M + "flavor", 3, "string", "int 3"),
    ("flavor-name", M + "flavor", "XL", "letter (flavor from the site's catalogue)", "'XL'"),
    ("image", M + "image", "Debian 12", "an image name", "'Debian 12'"),
    ("disk-small", M + "diskGiB", 2, "greater", ""),
    ("disk-float", M + "diskGiB", 4.5, "integer", "4.5"),
    ("role", M + "role", "Web Servers", "with a letter (Ansible group", ""),
    ("volumes-type", M + "volumes", {"a": 1}, "list", ""),
    ("volume-size", V + "sizeGiB", 0, "greater", ""),
    ("volume-pool", V + "pool", "", "at least 1", "''"),
    ("volume-pool-name", V + "pool", "SSD", "letter (storage pool from the site)", "'SSD'"),
    ("machines-type", "spec.machines", "app", "list", "'app'"),
    ("machine-str", "spec.machines.0", "app", "dictionary", "'app'"),
    ("from-host", IN + "from", "10.0.0.1", "prefix length", ""),
    ("from-host-bits", IN + "from", "10.0.0.1/24", "CIDR", ""),
    ("from-deep", IN + "from", "a/b/c", "tenant/group", ""),
    ("from-upper", IN + "from", "HR", "tenant name", ""),
    ("to-group", IN + "to", "hr/web", "with a letter (machine group", ""),
    ("egress-to", EG + "to", "the internet", "intranet", ""),
    ("egress-from", EG + "from", "hr/web", "DNS label", "'hr/web'"),
    ("port-bare", IN + "ports", ["80"], "'443/tcp'", "'80'"),
    ("port-zero", IN + "ports", ["0/tcp"], "between 1 and 65535", ""),
    ("port-high", IN + "ports", ["65536/tcp"], "65535", ""),
    ("port-range", IN + "ports", ["90-80/tcp"], "range", ""),
    ("port-proto", IN + "ports", ["443/icmp"], "tcp", ""),
    ("port-int", IN + "ports", [443], "string", "int 443"),
    ("ports-empty", IN + "ports", [], "at least 1", "empty list"),
    ("ports-many", IN + "ports", [f"{p}/tcp" for p in range(1, 66)], "at most 64", ""),
    ("policies-str", "spec.policies", "baseline", "list", "'baseline'"),
    ("policy-name", "spec.policies", ["Base Line"], "DNS label", ""),
    ("firewall-list", "spec.firewall", [], "dictionary", "empty list"),
    ("spec-null", "spec", None, "dictionary", "null"),
]


def field_of(path: str, value: Any) -> str:
    """spec.machines.0.count -> spec.machines[0].count (a list of ports: its first item)."""
    field = re.sub(r"\.(\d+)", r"[\1]", path)
    if path.endswith(".ports") and value and len(value) < 2:
        field += "[0]"
    return field


@pytest.mark.parametrize(
    ("path", "value", "expected", "found"),
    [pytest.param(p, v, e, f, id=i) for i, p, v, e, f in INVALID],
)
def test_invalid_values_are_located(
    tmp_path: Path, path: str, value: Any, expected: str, found: str
) -> None:
    doc = base()
    mutate(path, value)(doc)
    errors = check(tmp_path, doc)
    error = find(errors, field=field_of(path, value))
    assert error.message == "invalid value"
    assert expected in error.expected, str(error)
    assert found in error.found, str(error)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("apiVersion", "apiVersion"),
        ("kind", "kind"),
        ("metadata", "metadata"),
        ("metadata.owner", "metadata.owner"),
        ("spec.site", "spec.site"),
        ("spec.zone", "spec.zone"),
        ("spec.machines.0.flavor", "spec.machines[0].flavor"),
        ("spec.machines.0.volumes.0.pool", "spec.machines[0].volumes[0].pool"),
        ("spec.firewall.ingress.0.ports", "spec.firewall.ingress[0].ports"),
    ],
)
def test_missing_required_keys(tmp_path: Path, path: str, field: str) -> None:
    doc = base()
    mutate(path, DELETE)(doc)
    error = find(check(tmp_path, doc), field=field)
    assert error.message == "required key is missing"


@pytest.mark.parametrize(
    ("path", "field", "allowed"),
    [
        ("colour", "colour", "apiVersion, kind, metadata, spec"),
        ("metadata.team", "metadata.team", "name, displayName, owner"),
        (
            "spec.size",
            "spec.size",
            "site, zone, network, quotaRequest, machines, firewall, policies",
        ),
        ("spec.network.vlan", "spec.network.vlan", "cidr"),
        (
            "spec.quotaRequest.gpus",
            "spec.quotaRequest.gpus",
            "vcpus, memoryGiB, storageGiB, machines, addresses",
        ),
        ("spec.machines.0.cpus", "spec.machines[0].cpus", "name, count, flavor, image, diskGiB"),
        ("spec.machines.0.volumes.0.iops", "spec.machines[0].volumes[0].iops", "sizeGiB, pool"),
        ("spec.firewall.deny", "spec.firewall.deny", "ingress, egress"),
        ("spec.firewall.ingress.0.action", "spec.firewall.ingress[0].action", "from, to, ports"),
        ("spec.firewall.egress.0.log", "spec.firewall.egress[0].log", "to, from, ports"),
    ],
)
def test_unknown_keys_name_the_allowed_keys(
    tmp_path: Path, path: str, field: str, allowed: str
) -> None:
    doc = base()
    mutate(path, 1)(doc)
    error = find(check(tmp_path, doc), field=field)
    assert error.message == "unknown key"
    assert allowed in error.expected
    assert error.found == repr(field.rsplit(".", 1)[-1])


def test_a_key_with_a_bracket_is_named(tmp_path: Path) -> None:
    # pydantic's own location markers hold "[" too; a document's key must survive
    doc = base()
    doc["k[ind"] = doc.pop("kind")
    errors = check(tmp_path, doc)
    unknown = find(errors, message="unknown key")
    assert unknown.field == '["k[ind"]'  # quoted: not a plain key
    assert find(errors, message="required key is missing").field == "kind"


def test_a_self_granted_quota_is_refused_with_where_grants_live(tmp_path: Path) -> None:
    doc = base()
    doc["spec"]["quota"] = {"vcpus": 4096, "memoryGiB": 65536, "storageGiB": 1_000_000}
    error = find(check(tmp_path, doc), field="spec.quota")
    assert error.message == "quotas are granted by ops, not by the tenant file"
    assert "spec.quotaRequest" in error.expected
    assert "stacks/quotas.<site>.yaml" in error.expected
    assert error.location.line > 0


def test_empty_key_is_named(tmp_path: Path) -> None:
    (error,) = check(tmp_path, yaml.safe_dump(base()) + "'': 1\n")
    assert (error.field, error.message, error.found) == ('[""]', "unknown key", "''")


def test_valid_endpoints_and_ports(tmp_path: Path) -> None:
    doc = base()
    doc["spec"]["firewall"]["ingress"] = [
        {"from": "hr", "ports": ["443/tcp"]},
        {"from": "hr/web", "to": "web", "ports": ["8000-8080/tcp", "53/udp", "1/tcp"]},
        {"from": "extranet", "ports": ["65535/udp"]},
        {"from": "192.0.2.10/32", "ports": ["22/tcp"]},
        {"from": "0.0.0.0/0", "ports": ["80/tcp"]},
    ]
    doc["spec"]["firewall"]["egress"] = [
        {"to": "finance/web", "from": "web", "ports": ["8443/tcp"]},
        {"to": "intranet", "ports": ["80-80/tcp"]},
    ]
    assert check(tmp_path, doc) == []


def test_chinese_display_name_valid_chinese_name_invalid(tmp_path: Path) -> None:
    doc = base()
    doc["metadata"]["displayName"] = "财政局"
    assert check(tmp_path, doc) == []
    doc["metadata"]["name"] = "财政局"
    error = find(check(tmp_path, doc), field="metadata.name")
    assert error.found == "string '财政局'"


def test_duplicate_machine_names(tmp_path: Path) -> None:
    doc = base()
    doc["spec"]["machines"].append(copy.deepcopy(doc["spec"]["machines"][0]))
    error = find(check(tmp_path, doc), field="spec.machines")
    assert "unique machine names; 'app' appears twice" in error.expected


def test_duplicate_volume_names(tmp_path: Path) -> None:
    doc = base()
    volumes = doc["spec"]["machines"][0]["volumes"]
    volumes.append(dict(volumes[0]))
    error = find(check(tmp_path, doc), field="spec.machines[0].volumes")
    assert "'data' appears twice" in error.expected
    assert error.found == "a list of 2"


def test_too_many_volumes(tmp_path: Path) -> None:
    doc = base()
    doc["spec"]["machines"][0]["volumes"] = [
        {"name": f"v{i}", "sizeGiB": 1, "pool": "bulk"} for i in range(17)
    ]
    assert "at most 16" in find(check(tmp_path, doc), field="spec.machines[0].volumes").expected


def test_name_must_equal_file_name(tmp_path: Path) -> None:
    errors = check(tmp_path, base(), name="other")
    error = find(errors, field="metadata.name")
    assert error.message == "tenant name must equal the file name"
    assert error.expected == "'other' (from other.yaml)"
    assert error.found == "'sample'"


def test_document_must_be_a_mapping(tmp_path: Path) -> None:
    (error,) = check(tmp_path, "- a\n- b\n")
    assert error.message == "a tenant file must be a mapping"
    assert error.found == "a list of 2"


def test_duplicate_key_and_model_errors_in_one_run(tmp_path: Path) -> None:
    text = (DATA / "broken" / "duplicate-keys.yaml").read_text(encoding="utf-8")
    errors = check(tmp_path, text, "duplicate-keys")
    dup = find(errors, message="duplicate key")
    assert (dup.field, dup.location.line) == ("spec.zone", 10)
    assert dup.found == "'zone' again (first at line 9)"
    unknown = find(errors, message="unknown key")
    assert (unknown.field, unknown.location.line) == ("spec.machines[0].colour", 15)


def test_duplicate_key_alone_still_rejects_the_file(tmp_path: Path) -> None:
    text = yaml.safe_dump(base(), sort_keys=False) + "kind: Tenant\n"
    (error,) = check(tmp_path, text)
    assert error.message == "duplicate key" and error.field == "kind"


def test_wrong_types_data_file(tmp_path: Path) -> None:
    text = (DATA / "broken" / "wrong-types.yaml").read_text(encoding="utf-8")
    errors = check(tmp_path, text, "wrong-types")
    got = {(e.field, e.location.line, e.found) for e in errors}
    assert got == {
        ("spec.machines[0].count", 13, "string '2'"),
        ("spec.machines[0].diskGiB", 16, "float 4.5"),
        ("spec.machines[0].protect", 17, "string 'yes'"),
        ("spec.machines[1].count", 19, "boolean true"),
        ("spec.machines[1].flavor", 20, "int 3"),
        ("spec.machines[1].protect", 22, "string 'true'"),
        ("spec.policies", 23, "string 'baseline'"),
    }


def test_unknown_keys_data_file(tmp_path: Path) -> None:
    text = (DATA / "broken" / "unknown-keys.yaml").read_text(encoding="utf-8")
    errors = check(tmp_path, text, "unknown-keys")
    assert {(e.field, e.location.line) for e in errors} == {
        ("metadata.team", 7),
        ("spec.machines[0].cpus", 15),
        ("spec.firewall.ingress[0].action", 18),
        ("status", 19),
    }
    assert all(e.message == "unknown key" and e.expected.startswith("one of: ") for e in errors)


def test_python_tag_data_file(tmp_path: Path) -> None:
    text = (DATA / "broken" / "python-tag.yaml").read_text(encoding="utf-8")
    (error,) = check(tmp_path, text, "python-tag")
    assert error.field == "metadata.displayName"
    assert error.location.line == 5
    assert not Path("/tmp/tenancy-pwned").exists()


def test_path_name_data_file(tmp_path: Path) -> None:
    text = (DATA / "broken" / "path-name.yaml").read_text(encoding="utf-8")
    (error,) = check(tmp_path, text, "path-name")
    assert (error.field, error.location.line) == ("metadata.name", 4)
    assert error.found == "string '../path-name'"


def test_defaults() -> None:
    doc = base()
    del doc["spec"]["quotaRequest"], doc["spec"]["network"], doc["spec"]["policies"]
    del doc["spec"]["firewall"]
    machine = doc["spec"]["machines"][0]
    for key in ("count", "diskGiB", "role", "volumes"):
        del machine[key]
    spec = Tenant.model_validate(doc)
    m = spec.spec.machines[0]
    assert (m.count, m.disk_gib, m.role, m.group, m.protect) == (1, 10, None, "app", False)
    assert m.instance_names() == ["app-1"]
    assert spec.spec.quota_request is None and spec.spec.network.cidr is None
    assert spec.spec.policies == ["baseline"]
    assert spec.spec.firewall.ingress == [] and spec.groups() == {"app"}


def test_volume_backup_defaults_to_none() -> None:
    doc = base()
    del doc["spec"]["machines"][0]["volumes"][0]["backup"]
    spec = Tenant.model_validate(doc)
    assert spec.spec.machines[0].volumes[0].backup == "none"


def test_models_are_frozen() -> None:
    spec = Tenant.model_validate(base())
    with pytest.raises(ValidationError):
        spec.metadata.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- site


def site_doc() -> Doc:
    data = yaml.safe_load((REPO / "stacks" / "Pulumi.local.yaml").read_text(encoding="utf-8"))
    return dict(data["config"]["tenancy:site"])


def check_site(tmp_path: Path, site: Doc | str, name: str = "local") -> list[SpecError]:
    path = tmp_path / f"Pulumi.{name}.yaml"
    if isinstance(site, str):
        path.write_text(site, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump({"config": {"tenancy:site": site}}), encoding="utf-8")
    loaded, errors = load_site(path, name, tmp_path)
    assert (loaded is None) == bool(errors)
    for e in errors:
        assert_located(e)
    return errors


@pytest.mark.parametrize("stack", ["local", "dc-east"])
def test_example_sites_are_valid(stack: str) -> None:
    loaded, errors = load_site(REPO / "stacks" / f"Pulumi.{stack}.yaml", stack, REPO)
    assert errors == []
    assert loaded is not None and loaded.model.name == stack
    assert loaded.locate("name").file == f"stacks/Pulumi.{stack}.yaml"


def test_site_vlan_range_from_yaml(tmp_path: Path) -> None:
    site = site_doc()
    site["vlanRange"] = [200, 300]
    assert check_site(tmp_path, site) == []
    site["vlanRange"] = [300, 200]
    assert "vlanRange" in find(check_site(tmp_path, site), message="invalid value").expected
    site["vlanRange"] = [1, 2, 3]
    assert find(check_site(tmp_path, site), field="vlanRange").found == "a list of 3"


@pytest.mark.parametrize(
    ("mutation", "field", "expected"),
    [
        (mutate("hosts.0.uri", "http://x/system"), "hosts[0].uri", "a libvirt URI"),
        (mutate("hosts.0.pools", []), "hosts[0].pools", "at least 1"),
        (mutate("hosts.0.vcpus", "2"), "hosts[0].vcpus", "integer"),
        (mutate("hosts", []), "hosts", "at least 1"),
        (mutate("domainType", "xen"), "domainType", "'kvm' or 'qemu'"),
        (mutate("addressPools.segmentPrefix", 30), "addressPools.segmentPrefix", "less than"),
        (mutate("addressPools.intranet", "10.30.0.1/16"), "addressPools.intranet", "IPv4"),
        (mutate("overcommit.cpu", 64), "overcommit.cpu", "less than"),
        (mutate("flavors", {}), "flavors", "at least 1"),
        (mutate("flavors.Big", {"vcpus": 1, "memoryMiB": 512}), "flavors", "DNS labels"),
        (mutate("flavors.tiny.memoryMiB", 64), "flavors.tiny.memoryMiB", "greater"),
        (mutate("external.internet", []), "external.internet", "at least 1"),
        (mutate("defaultQuota.machines", -1), "defaultQuota.machines", "greater"),
    ],
)
def test_invalid_site_values(
    tmp_path: Path, mutation: Callable[[Doc], None], field: str, expected: str
) -> None:
    site = site_doc()
    mutation(site)
    error = find(check_site(tmp_path, site), field=f"config.tenancy:site.{field}")
    assert expected in error.expected, str(error)
    assert error.location.file.endswith("Pulumi.local.yaml")


def test_site_unknown_key_inside_a_catalogue_entry(tmp_path: Path) -> None:
    site = site_doc()
    site["flavors"]["tiny"]["disk"] = 3
    error = find(check_site(tmp_path, site), field="config.tenancy:site.flavors.tiny.disk")
    assert error.message == "unknown key"
    assert error.expected == "one of: vcpus, memoryMiB"


def test_site_duplicate_hosts(tmp_path: Path) -> None:
    site = site_doc()
    site["hosts"].append(copy.deepcopy(site["hosts"][0]))
    assert "unique host names" in find(check_site(tmp_path, site), field="").expected


def test_site_name_must_equal_stack(tmp_path: Path) -> None:
    error = find(check_site(tmp_path, site_doc(), name="other"), field="config.tenancy:site.name")
    assert error.message == "site name must equal the stack name"


def test_stack_without_site(tmp_path: Path) -> None:
    (error,) = check_site(tmp_path, "config:\n  libvirt:uri: qemu:///system\n")
    assert error.message == "stack file has no site definition"
    assert error.location.line == 1


def test_site_helpers() -> None:
    spec = Site.model_validate(site_doc())
    assert spec.pool_names() == {"default", "bulk"}
    assert spec.vlan_range == [100, 3999]
    assert spec.backup_schedules == ["none", "daily", "weekly"]


# --------------------------------------------------------------------------- loader


def test_tenant_files_sorted_and_deduplicated(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("a: 1\n", encoding="utf-8")
    (tmp_path / "a.yml").write_text("a: 1\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("x\n", encoding="utf-8")
    (tmp_path / "sub.yaml").mkdir()
    files, errors = tenant_files([tmp_path, tmp_path / "b.yaml", tmp_path / "missing.yaml"])
    assert [f.name for f in files] == ["a.yml", "b.yaml"]
    refused, missing = errors
    assert refused.location.file.endswith("sub.yaml")  # a directory is no tenant file
    assert refused.message == "not a regular file: refused without reading it"
    assert missing.message == "no such file or directory"


def test_load_tenants_collects_every_file(tmp_path: Path) -> None:
    for name in ("wrong-types", "unknown-keys", "malformed"):
        (tmp_path / f"{name}.yaml").write_bytes((DATA / "broken" / f"{name}.yaml").read_bytes())
    (tmp_path / "sample.yaml").write_text(yaml.safe_dump(base()), encoding="utf-8")
    loaded, errors = load_tenants([tmp_path], tmp_path)
    assert [t.model.name for t in loaded] == ["sample"]
    assert {e.location.file for e in errors} == {
        "wrong-types.yaml",
        "unknown-keys.yaml",
        "malformed.yaml",
    }


# --------------------------------------------------------------------------- errors, types


def test_spec_error_text_and_dict() -> None:
    error = SpecError(
        Location("tenants/a.yaml", 3, 5),
        "spec.zone",
        "invalid value",
        "'intranet' or 'extranet'",
        "string 'dmz'",
        related=(Location("tenants/b.yaml", 1, 1),),
    )
    assert str(error) == (
        "tenants/a.yaml:3:5: error: spec.zone: invalid value; expected 'intranet' or "
        "'extranet'; found string 'dmz' (see tenants/b.yaml:1:1)"
    )
    assert error.as_dict() == {
        "file": "tenants/a.yaml",
        "line": 3,
        "column": 5,
        "field": "spec.zone",
        "severity": "error",
        "message": "invalid value",
        "expected": "'intranet' or 'extranet'",
        "found": "string 'dmz'",
        "related": ["tenants/b.yaml:1:1"],
    }
    assert str(SpecError(Location("x.yaml"), "", "oops")) == "x.yaml: error: <document>: oops"


def test_error_list_sorts_and_splits() -> None:
    items = ErrorList()
    items.add(SpecError(Location("b.yaml", 1, 1), "", "late"))
    items.add(SpecError(Location("a.yaml", 9, 1), "", "warn", severity="warning"))
    items.extend([SpecError(Location("a.yaml", 2, 1), "", "early")])
    assert [e.message for e in items.errors] == ["early", "late"]
    assert [e.message for e in items.warnings] == ["warn"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "boolean true"),
        (None, "null"),
        ("x" * 100, "string '" + "x" * 40 + "'… (100 characters)"),
        ({}, "an empty mapping"),
        ({"a": 1}, "a mapping"),
        ([], "an empty list"),
        ([1, 2], "a list of 2"),
        (1.5, "float 1.5"),
    ],
)
def test_describe(value: object, text: str) -> None:
    assert describe(value) == text


def test_parse_port() -> None:
    assert parse_port("443/tcp") == PortRange("tcp", 443, 443)
    assert str(parse_port("8000-8080/udp")) == "8000-8080/udp"
    assert parse_port("1-10/tcp").intersect(parse_port("5-20/tcp")) == PortRange("tcp", 5, 10)
    assert parse_port("1-10/tcp").intersect(parse_port("11-20/tcp")) is None
    assert parse_port("53/tcp").intersect(parse_port("53/udp")) is None
    for bad in ("443", "443/icmp", "0/tcp", "70000/tcp", "9-1/tcp", "a/tcp"):
        with pytest.raises(ValueError):
            parse_port(bad)
