"""The `tenancy` command: every subcommand and format, exit codes, scaffolding, schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema  # type: ignore[import-untyped,unused-ignore]  # untyped without types-jsonschema
import pytest
import yaml
from tests.support.cli import CliResult
from tests.support.project import EXAMPLE_TENANTS, REPO, tenant_doc, write_data, write_tenant

from tenancy import __version__
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE

Cli = Callable[..., CliResult]
FORMATS = ["table", "markdown", "json", "dot", "mermaid"]


# --------------------------------------------------------------------------- validate


def test_validate_examples_in_the_repository(cli: Cli) -> None:
    result = cli("--root", REPO, "validate", REPO / "tenants")
    assert result.code == EXIT_OK, result
    assert result.out == ""
    assert result.err.strip() == "5 tenant file(s) valid: 0 error(s), 0 warning(s)"


def test_validate_console_script_in_the_repository() -> None:
    """The real entry point, as CI runs it, from the project directory."""
    exe = Path(sys.executable).with_name("tenancy")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tenancy.cli"]
    proc = subprocess.run(
        [*cmd, "validate", "tenants/"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid: 0 error(s)" in proc.stderr


def test_validate_defaults_to_tenants_dir(cli: Cli, project: Path) -> None:
    assert cli("--root", project, "validate").code == EXIT_OK


def test_validate_single_file(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "validate", project / "tenants" / "tourism.yaml")
    assert result.code == EXIT_OK, result


def test_validate_broken_file_text(cli: Cli, project: Path) -> None:
    write_data(project, "broken/wrong-types.yaml")
    result = cli("--root", project, "validate")
    assert result.code == EXIT_INVALID
    lines = result.out.splitlines()
    assert len(lines) == 7
    assert lines[0] == (
        "tenants/wrong-types.yaml:13:7: error: spec.machines[0].count: invalid value; "
        "expected a valid integer; found string '2'"
    )
    assert "tenants/wrong-types.yaml:17:7: error: spec.machines[0].protect" in result.out
    assert result.err.strip() == "6 tenant file(s) invalid: 7 error(s), 0 warning(s)"
    assert "Traceback" not in result.out + result.err


def test_validate_json_shape(cli: Cli, project: Path) -> None:
    write_data(project, "broken/unknown-keys.yaml")
    write_tenant(project, tenant_doc("aa", egress=[{"to": "hr/web", "ports": ["1/tcp"]}]))
    result = cli("--root", project, "validate", "--format", "json")
    assert result.code == EXIT_INVALID
    doc = json.loads(result.out)
    assert set(doc) == {"ok", "files", "tenants", "sites", "errors", "warnings"}
    assert doc["ok"] is False
    assert (doc["files"], doc["tenants"], doc["sites"]) == (7, 6, [])
    keys = {"file", "line", "column", "field", "severity", "message", "expected", "found"}
    for item in doc["errors"]:
        assert set(item) == {*keys, "related"}
        assert item["file"] == "tenants/unknown-keys.yaml" and item["line"] >= 1
        assert item["severity"] == "error" and item["message"] == "unknown key"
    assert {e["field"] for e in doc["errors"]} == {
        "metadata.team",
        "spec.machines[0].cpus",
        "spec.firewall.ingress[0].action",
        "status",
    }


def test_validate_json_ok_with_warnings(cli: Cli, project: Path) -> None:
    write_tenant(project, tenant_doc("aa", egress=[{"to": "hr/web", "ports": ["1/tcp"]}]))
    result = cli("--root", project, "validate", "--format", "json")
    assert result.code == EXIT_OK  # warnings do not fail validation
    doc = json.loads(result.out)
    assert doc["ok"] is True and doc["errors"] == [] and doc["sites"] == ["dc-east", "local"]
    (warning,) = doc["warnings"]
    assert warning["severity"] == "warning"
    assert warning["file"] == "tenants/aa.yaml"
    hr_lines = (project / "tenants" / "hr.yaml").read_text(encoding="utf-8").splitlines()
    firewall = next(i for i, line in enumerate(hr_lines, 1) if "firewall:" in line)
    assert warning["related"] == [f"tenants/hr.yaml:{firewall}:3"]


def test_validate_unicode_output(cli: Cli, project: Path) -> None:
    write_tenant(project, tenant_doc("财政"), name="财政")
    result = cli("--root", project, "validate", "--format", "json")
    doc = json.loads(result.out)
    assert doc["errors"][0]["file"] == "tenants/财政.yaml"
    assert "财政" in result.out  # not \\u escapes


# --------------------------------------------------------------------------- plan


@pytest.mark.parametrize("site", ["local", "dc-east"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_plan_formats(cli: Cli, project: Path, site: str, fmt: str) -> None:
    result = cli("--root", project, "plan", "--site", site, "--format", fmt)
    assert result.code == EXIT_OK, result
    out = result.out
    assert out.endswith("\n")
    if fmt == "json":
        doc = json.loads(out)
        assert doc["site"] == site and doc["tenants"]
    elif fmt == "table":
        assert out.startswith("TENANT") and "SEGMENTS" in out and "FLOWS" in out
        assert out.rstrip().splitlines()[-1].startswith("plan ")
    elif fmt == "markdown":
        assert out.startswith(f"## Tenancy plan for site `{site}`")
        assert "| machine | role | host |" in out and "### Hypervisors" in out
    elif fmt == "dot":
        assert out.startswith("digraph tenancy {") and out.rstrip().endswith("}")
        assert "->" in out
    else:
        assert out.startswith("flowchart LR") and "-->" in out


def test_plan_table_content(cli: Cli, project: Path) -> None:
    out = cli("--root", project, "plan", "--site", "dc-east").out
    assert "finance-db-1" in out and "yes" in out
    assert "family-planning/app -> finance/web" in out
    assert "intranet -> finance/web" in out
    assert "3 tenants, 9 machines, 3 hosts" in out


def test_plan_markdown_is_a_pr_comment(cli: Cli, project: Path) -> None:
    out = cli("--root", project, "plan", "--site", "dc-east", "--format", "markdown").out
    assert "### 财政局 Finance Bureau (`finance`, intranet)" in out
    assert "| `finance-db-1` | db |" in out
    assert "| ingress | web | family-planning/app | 8443/tcp |" in out


def test_plan_markdown_shows_warnings(cli: Cli, project: Path) -> None:
    write_tenant(project, tenant_doc("aa", egress=[{"to": "hr/web", "ports": ["1/tcp"]}]))
    result = cli("--root", project, "plan", "--site", "local", "--format", "markdown")
    assert result.code == EXIT_OK
    assert "### Warnings" in result.out and "one-sided flow stays closed" in result.out
    assert "warning" in result.err


def test_plan_graphs_name_every_group(cli: Cli, project: Path) -> None:
    dot = cli("--root", project, "plan", "--site", "dc-east", "--format", "dot").out
    assert '"family-planning/app" -> "finance/web" [label="8443/tcp"];' in dot
    assert '"finance/db" -> "10.8.0.0/24" [label="873/tcp"];' in dot
    mermaid = cli("--root", project, "plan", "--site", "dc-east", "--format", "mermaid").out
    assert '(["10.8.0.0/24"])' in mermaid and '-->|"8443/tcp"|' in mermaid


def test_plan_invalid_inputs(cli: Cli, project: Path) -> None:
    write_data(project, "broken/malformed.yaml")
    result = cli("--root", project, "plan", "--site", "local", "--format", "json")
    assert result.code == EXIT_INVALID
    assert result.out == ""  # no partial plan on stdout
    assert "tenants/malformed.yaml:12:1: error" in result.err
    assert "no plan: 1 error(s)" in result.err


def test_plan_unknown_site_is_a_usage_error(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "plan", "--site", "dc-west")
    assert result.code == EXIT_USAGE
    assert "unknown site 'dc-west'" in result.err and "known sites: dc-east, local" in result.err
    result = cli("--root", project, "plan", "--site", "../stacks/x")
    assert result.code == EXIT_USAGE and "a DNS label" in result.err


def test_plan_write_ledger(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "plan", "--site", "local", "--write-ledger", "--format", "json")
    assert result.code == EXIT_OK
    ledger = yaml.safe_load((project / "stacks" / "ledger.local.yaml").read_text())
    assert ledger["site"] == "local" and set(ledger["tenants"]) == {"hr", "tourism"}


def test_plan_tenants_option(cli: Cli, project: Path) -> None:
    result = cli(
        "--root", project, "plan", "--site", "local", "--tenants", project / "tenants" / "hr.yaml"
    )
    assert result.code == EXIT_OK
    assert "tourism" in result.out  # other tenants still come from the project


# --------------------------------------------------------------------------- schema


@pytest.fixture(scope="module")
def tenant_schema() -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "tenancy.cli", "--root", str(REPO), "schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    schema: dict[str, object] = json.loads(proc.stdout)
    return schema


def test_schema_is_valid_json_schema(tenant_schema: dict[str, object]) -> None:
    jsonschema.Draft202012Validator.check_schema(tenant_schema)
    assert tenant_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert tenant_schema["title"] == "Tenancy tenant v1"
    assert tenant_schema["additionalProperties"] is False


@pytest.mark.parametrize("name", EXAMPLE_TENANTS)
def test_schema_accepts_the_examples(tenant_schema: dict[str, object], name: str) -> None:
    doc = yaml.safe_load((REPO / "tenants" / f"{name}.yaml").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(tenant_schema).validate(doc)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("metadata", "colour"), "red"),
        (("metadata", "name"), "../x"),
        (("spec", "zone"), "dmz"),
        (("spec", "machines", 0, "count"), "2"),
        (("spec", "machines", 0, "protect"), "yes"),
        (("spec", "firewall", "ingress", 0, "ports"), ["80"]),
    ],
)
def test_schema_rejects_what_validate_rejects(
    tenant_schema: dict[str, object], path: tuple[str | int, ...], value: object
) -> None:
    doc = yaml.safe_load((REPO / "tenants" / "hr.yaml").read_text(encoding="utf-8"))
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(tenant_schema).validate(doc)


def test_schema_of_sites(cli: Cli) -> None:
    result = cli("--root", REPO, "schema", "--kind", "site")
    assert result.code == EXIT_OK
    schema = json.loads(result.out)
    jsonschema.Draft202012Validator.check_schema(schema)
    for stack in ("local", "dc-east"):
        data = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
        jsonschema.Draft202012Validator(schema).validate(data["config"]["tenancy:site"])


# --------------------------------------------------------------------------- new


def test_new_scaffold_validates(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "new", "tax-office", "--site", "dc-east", "--zone", "extranet")
    assert result.code == EXIT_OK, result
    path = project / "tenants" / "tax-office.yaml"
    text = path.read_text(encoding="utf-8")
    assert "name: tax-office" in text and "site: dc-east" in text and "zone: extranet" in text
    assert "tenancy validate tenants/tax-office.yaml" in text  # relative, not /tmp/...
    assert str(project) not in text
    # without a default quota on the site, a new tenant is refused until ops grant one
    site = project / "stacks" / "Pulumi.dc-east.yaml"
    text = site.read_text(encoding="utf-8")
    site.write_text(
        "\n".join(line for line in text.splitlines() if "defaultQuota:" not in line) + "\n",
        encoding="utf-8",
    )
    refused = cli("--root", project, "validate", path)
    assert refused.code == EXIT_INVALID, refused
    assert "tenants/tax-office.yaml:8:" in refused.out
    assert "no quota is granted" in refused.out and "stacks/quotas.dc-east.yaml" in refused.out
    grants = project / "stacks" / "quotas.dc-east.yaml"
    grants.write_text(
        grants.read_text(encoding="utf-8")
        + "  tax-office: {vcpus: 8, memoryGiB: 32, storageGiB: 50, machines: 1}\n",
        encoding="utf-8",
    )
    check = cli("--root", project, "validate", path)
    assert check.code == EXIT_OK, check
    plan = cli("--root", project, "plan", "--site", "dc-east", "--format", "json")
    assert "tax-office" in plan.out


def test_new_with_unicode_display_name(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "new", "tax", "--display-name", "税务局 Tax Office")
    assert result.code == EXIT_OK
    assert cli("--root", project, "validate").code == EXIT_OK


def test_new_to_stdout(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "new", "audit", "-o", "-")
    assert result.code == EXIT_OK
    assert yaml.safe_load(result.out)["metadata"]["name"] == "audit"
    assert not (project / "tenants" / "audit.yaml").exists()


@pytest.mark.parametrize(
    "name", ["../x", "x", "a/b", "Finance", "财政", "has space", "a" * 33, "x-", "x.yaml"]
)
def test_new_refuses_bad_names(cli: Cli, project: Path, name: str) -> None:
    before = sorted(p.name for p in (project / "tenants").iterdir())
    result = cli("--root", project, "new", name)
    assert result.code == EXIT_USAGE
    assert "expected a DNS label of 2-32 characters" in result.err
    assert sorted(p.name for p in (project / "tenants").iterdir()) == before
    assert not (project / "x.yaml").exists()


def test_new_option_like_name_is_a_usage_error(cli: Cli, project: Path) -> None:
    assert cli("--root", project, "new", "-x").code == EXIT_USAGE


def test_new_refuses_to_overwrite(cli: Cli, project: Path) -> None:
    before = (project / "tenants" / "hr.yaml").read_bytes()
    result = cli("--root", project, "new", "hr")
    assert result.code == EXIT_USAGE and "not overwriting" in result.err
    assert (project / "tenants" / "hr.yaml").read_bytes() == before


def test_new_unknown_site(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "new", "tax", "--site", "dc-west")
    assert result.code == EXIT_USAGE and "unknown site 'dc-west'" in result.err


# --------------------------------------------------------------------------- inventory


def test_inventory_yaml_and_json(cli: Cli, project: Path) -> None:
    result = cli("--root", project, "inventory", "--site", "dc-east")
    assert result.code == EXIT_OK
    inv = yaml.safe_load(result.out)
    finance = inv["all"]["children"]["finance"]
    host = finance["children"]["finance_db"]["hosts"]["finance-db-1"]
    assert host["ansible_host"] == "10.30.2.12" and host["ansible_user"] == "ops"
    assert host["tenancy_profiles"] == ["baseline", "mlps-level3"]
    assert {"direction": "egress", "peer_cidr": "10.8.0.0/24", "proto": "tcp", "port": "873",
            "comment": "egress 10.8.0.0/24 873/tcp"} in host["tenancy_firewall_rules"]  # fmt: skip
    assert finance["vars"] == {"tenancy_zone": "intranet", "tenancy_segment": "10.30.2.0/24"}
    as_json = json.loads(
        cli("--root", project, "inventory", "--site", "dc-east", "--format", "json").out
    )
    assert as_json == inv


def test_inventory_invalid_and_unknown_site(cli: Cli, project: Path) -> None:
    assert cli("--root", project, "inventory", "--site", "nowhere").code == EXIT_USAGE
    write_data(project, "broken/python-tag.yaml")
    result = cli("--root", project, "inventory", "--site", "local")
    assert result.code == EXIT_INVALID and "YAML tags are not allowed" in result.err


# --------------------------------------------------------------------------- exit codes


def test_usage_errors(cli: Cli, project: Path) -> None:
    assert cli().code == EXIT_USAGE
    assert cli("bogus").code == EXIT_USAGE
    assert cli("--root", project, "plan", "--format", "pdf").code == EXIT_USAGE
    assert cli("--root", project, "validate", "--format", "xml").code == EXIT_USAGE
    missing = cli("--root", project, "validate", project / "nope")
    assert missing.code == EXIT_USAGE and "no such file or directory" in missing.err


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert result.code == EXIT_OK and result.out.strip() == f"tenancy {__version__}"


def test_help_mentions_exit_codes(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == EXIT_OK
    assert "0 ok, 1 invalid input" in result.out
    for command in ("validate", "plan", "schema", "new", "inventory"):
        assert command in result.out


def test_exit_codes_as_a_process(project: Path) -> None:
    """Exit statuses as CI sees them, through the real interpreter."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}

    def run(*args: str) -> int:
        return subprocess.run(
            [sys.executable, "-m", "tenancy.cli", "--root", str(project), *args],
            capture_output=True,
            env=env,
            check=False,
        ).returncode

    assert run("validate") == 0
    write_data(project, "broken/alias-bomb.yaml")
    assert run("validate") == 1
    assert run("validate", "--format", "nope") == 2


# --------------------------------------------------------------------------- engine verbs


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        ("up", ["--yes", "--suppress-outputs", "--skip-preview"]),
        ("up --refresh", ["--yes", "--suppress-outputs", "--skip-preview", "--refresh"]),
        ("refresh", ["--yes", "--suppress-outputs", "--skip-preview"]),
        ("destroy", ["--yes"]),
        ("preview", []),
    ],
)
def test_engine_verbs_pass_the_flags_that_avoid_double_work(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch, verb: str, expected: list[str]
) -> None:
    calls: list[tuple[str, str, list[str]]] = []

    def fake_run(root: Path, site: str, verb: str, args: list[str], **_: object) -> int:
        calls.append((site, verb, list(args)))
        return 0

    monkeypatch.setattr("tenancy.cli.engine.run_pulumi", fake_run)
    # recorded, then removed: what a preview sets in-process is undone after the test
    monkeypatch.setenv("PULUMI_SKIP_CHECKPOINTS", "")
    monkeypatch.delenv("PULUMI_SKIP_CHECKPOINTS")
    result = cli("--root", project, *verb.split()[:1], "--site", "local", *verb.split()[1:])
    assert result.code == EXIT_OK, result
    assert calls == [("local", verb.split()[0], expected)]


# --------------------------------------------------------------------------- audit


@pytest.mark.parametrize(
    ("tenants", "expected"), [([], ()), (["hr"], ("hr",)), (["hr", "tourism"], ("hr", "tourism"))]
)
def test_audit_passes_the_tenants_through(
    cli: Cli,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    tenants: list[str],
    expected: tuple[str, ...],
) -> None:
    from tenancy.policy.audit import AuditError, AuditOptions

    seen: list[AuditOptions] = []

    def fake_audit(options: AuditOptions, **_: object) -> object:
        seen.append(options)
        raise AuditError("faked: no host audited")

    monkeypatch.setattr("tenancy.cli.audit.run_audit", fake_audit)
    args = [a for t in tenants for a in ("--tenant", t)]
    result = cli("--root", project, "audit", "--site", "local", *args, "-q")
    assert result.code == EXIT_INVALID and "faked: no host audited" in result.err
    (options,) = seen
    assert (options.site, options.tenants, options.root) == ("local", expected, project.resolve())
