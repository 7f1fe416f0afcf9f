"""The policy catalogue, waivers and their traceability to roles/ (real files, no hosts)."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenancy.policy.catalogue import Catalogue, CatalogueError
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.role_trace import verify_roles
from tenancy.policy.waivers import Waiver, active_waivers, load_waivers, waived_control_ids

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "policies" / "catalogue.yaml"
ROLES = ROOT / "roles"
WAIVERS = ROOT / "policies" / "waivers"
PLAYBOOK = ROOT / "policies" / "playbook.yml"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue(CATALOGUE)


# -- the real catalogue --------------------------------------------------------


def test_real_catalogue_loads_with_both_profiles(catalogue: Catalogue) -> None:
    assert set(catalogue.profiles) == {"baseline", "mlps-level3"}
    assert catalogue.profiles["mlps-level3"].extends == ["baseline"]
    assert 30 <= len(catalogue.controls) <= 50


def test_level3_is_a_strict_superset_of_baseline(catalogue: Catalogue) -> None:
    baseline = [c.id for c in catalogue.controls_for(["baseline"])]
    level3 = [c.id for c in catalogue.controls_for(["mlps-level3"])]
    assert set(baseline) < set(level3)
    assert all(cid.startswith("BASE-") for cid in baseline)
    assert {cid for cid in level3 if cid not in baseline} == set(
        catalogue.profiles["mlps-level3"].controls
    )


def test_controls_for_keeps_catalogue_order_and_deduplicates(catalogue: Catalogue) -> None:
    both = catalogue.controls_for(["baseline", "mlps-level3", "baseline"])
    order = [c.id for c in catalogue.controls]
    assert [c.id for c in both] == [cid for cid in order if cid in {c.id for c in both}]
    assert len({c.id for c in both}) == len(both)


def test_controls_for_unknown_profile_names_the_known_ones(catalogue: Catalogue) -> None:
    with pytest.raises(KeyError, match="baseline"):
        catalogue.controls_for(["mlps-level4"])


def test_roles_for_baseline_covers_every_role(catalogue: Catalogue) -> None:
    assert catalogue.roles_for(["baseline"]) == catalogue.roles()
    assert set(catalogue.roles()) == {p.name for p in ROLES.iterdir() if p.is_dir()}


def test_brief_example_control_is_traceable(catalogue: Catalogue) -> None:
    control = catalogue.control("BASE-SSH-03")
    assert control.implements.role == "tenancy_ssh"
    assert control.check == "test_ssh.py::sshd_permit_root_login"
    assert "5.1.20" in control.references["cis-debian12"]


def test_every_control_cites_a_framework(catalogue: Catalogue) -> None:
    uncited = [c.id for c in catalogue.controls if not any(c.references.values())]
    assert uncited == []


def test_level3_controls_cite_gb_t_22239(catalogue: Catalogue) -> None:
    level3 = catalogue.profiles["mlps-level3"].controls
    missing = [
        cid for cid in level3 if not catalogue.control(cid).references.get("gb-t-22239-2019")
    ]
    assert missing == []


# -- traceability: catalogue ↔ roles ↔ playbook -------------------------------------


def test_roles_implement_the_catalogue(catalogue: Catalogue) -> None:
    assert verify_roles(catalogue, ROLES) == []


def test_verify_roles_reports_a_missing_tag(catalogue: Catalogue, tmp_path: Path) -> None:
    role = tmp_path / "tenancy_time"
    (role / "tasks").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "tasks" / "main.yml").write_text(
        "- name: 'BASE-TIME-01 | Ensure chrony is installed'\n"
        "  ansible.builtin.package: {name: chrony, state: present}\n"
        "  tags: [BASE-TIME-01, BASE-FOO-01]\n"
    )
    (role / "defaults" / "main.yml").write_text("tenancy_time_controls: [BASE-TIME-01]\n")
    problems = [p for p in verify_roles(catalogue, tmp_path) if p.startswith("tenancy_time:")]
    assert "tenancy_time: no task is tagged BASE-TIME-02 (BASE-TIME-02)" in problems
    assert "tenancy_time: no task name starts with BASE-TIME-02" in problems
    assert any("BASE-FOO-01" in p for p in problems)
    assert any("tenancy_time_controls must list exactly" in p for p in problems)


def test_playbook_applies_every_catalogue_role(catalogue: Catalogue) -> None:
    play = yaml.safe_load(PLAYBOOK.read_text())[0]
    applied = [r["role"] for r in play["roles"]]
    assert sorted(applied) == sorted(catalogue.roles())
    assert applied[-1] == "tenancy_firewall"
    for entry in play["roles"]:
        role = entry["role"]
        assert entry["vars"] == {f"{role}_controls": "{{ tenancy_controls }}"}
        assert entry["when"] == f"'{role}' in tenancy_roles"


def _role_dirs() -> list[Path]:
    return sorted(p for p in ROLES.iterdir() if p.is_dir())


@pytest.mark.parametrize("role_dir", _role_dirs(), ids=lambda p: p.name)
def test_argument_specs_and_defaults_agree(role_dir: Path) -> None:
    role = role_dir.name
    spec = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = spec["argument_specs"]["main"]["options"]
    defaults: dict[str, Any] = yaml.safe_load((role_dir / "defaults" / "main.yml").read_text())
    assert set(options) == set(defaults), (
        "defaults/main.yml and argument_specs.yml name other variables"
    )
    for name, option in options.items():
        assert name.startswith(f"{role}_"), f"{name} lacks the role prefix"
        assert option.get("description"), f"{name} has no description"
        value = defaults[name]
        if isinstance(value, str) and "{{" in value:
            # site-derived defaults: the spec documents the fallback value
            assert "tenancy_site_" in value, (
                f"{name}: templated default must come from a tenancy_site_* variable"
            )
            continue
        assert option.get("default") == value, (
            f"{name}: spec default {option.get('default')!r} != {value!r}"
        )


@pytest.mark.parametrize("role_dir", _role_dirs(), ids=lambda p: p.name)
def test_main_routes_concerns_behind_toggles(role_dir: Path) -> None:
    role = role_dir.name
    options = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"
    ]["main"]["options"]
    for entry in yaml.safe_load((role_dir / "tasks" / "main.yml").read_text()):
        concern = Path(entry["ansible.builtin.import_tasks"]).stem
        toggle = f"{role}_{concern}_enabled"
        assert entry["when"] == toggle
        assert options[toggle]["type"] == "bool"
        assert entry["tags"] == [f"{role}_{concern}"]


@pytest.mark.parametrize(
    "template", sorted((ROLES).glob("*/templates/**/*.j2")), ids=lambda p: str(p.relative_to(ROLES))
)
def test_templates_start_with_the_managed_marker(template: Path) -> None:
    lines = template.read_text().splitlines()
    first = lines[1] if lines[0].startswith("#!") else lines[0]
    if "pam-configs" in template.parts:
        # pam-auth-update profiles have no comment syntax: the marker is in the Name field
        assert first.startswith("Name: ") and "managed by Ansible" in first
    else:
        assert first.startswith("{{ ansible_managed | comment"), first


# -- validation errors name file, line and key ----------------------------------------

MINIMAL = """\
apiVersion: tenancy/v1
kind: PolicyCatalogue
metadata: {name: test, version: 1}
frameworks:
  cis-debian12: {title: CIS Debian Linux 12 Benchmark, version: v1.1.0}
profiles:
  baseline:
    title: Base
    controls: [BASE-SSH-03]
  strict:
    title: Strict
    extends: [baseline]
    controls: [STRICT-SSH-01]
controls:
  - id: BASE-SSH-03
    title: Ensure root login over SSH is disabled
    rationale: Attributable logins.
    severity: high
    implements: {role: tenancy_ssh, tags: [BASE-SSH-03]}
    check: test_ssh.py::sshd_permit_root_login
    references: {cis-debian12: ["5.1.20"]}
  - id: STRICT-SSH-01
    title: Ensure only ops log in
    rationale: Explicit accounts.
    severity: medium
    implements: {role: tenancy_ssh, tags: [STRICT-SSH-01]}
    check: test_ssh.py::sshd_allow_groups
"""


def _write(tmp_path: Path, text: str, roles: tuple[str, ...] = ("tenancy_ssh",)) -> Path:
    for role in roles:
        (tmp_path / "roles" / role / "tasks").mkdir(parents=True, exist_ok=True)
        (tmp_path / "roles" / role / "tasks" / "main.yml").write_text("[]\n")
    path = tmp_path / "policies" / "catalogue.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _errors(path: Path) -> list[str]:
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(path)
    return exc.value.errors


def test_minimal_catalogue_resolves_inheritance(tmp_path: Path) -> None:
    cat = load_catalogue(_write(tmp_path, MINIMAL))
    assert [c.id for c in cat.controls_for(["strict"])] == ["BASE-SSH-03", "STRICT-SSH-01"]
    assert cat.profile_chain("strict") == ["strict", "baseline"]


def test_wrong_severity_names_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace("severity: high", "severity: critical"))
    [error] = _errors(path)
    assert error.startswith(
        f"{path}:18: controls[0].severity: Input should be 'low', 'medium' or 'high'"
    )


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path, MINIMAL.replace("    severity: medium\n", "    severity: medium\n    owner: x\n")
    )
    [error] = _errors(path)
    assert ":26: controls[1].owner: Extra inputs are not permitted" in error


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path, MINIMAL.replace("    title: Strict\n", "    title: Strict\n    title: Again\n")
    )
    [error] = _errors(path)
    assert (
        f"{path}:12: invalid YAML" in error and "duplicate key 'title' (first on line 11)" in error
    )


def test_unknown_control_in_profile(tmp_path: Path) -> None:
    path = _write(
        tmp_path, MINIMAL.replace("controls: [BASE-SSH-03]", "controls: [BASE-SSH-03, BASE-SSH-99]")
    )
    errors = _errors(path)
    assert f"{path}:9: profiles.baseline.controls[1]: unknown control BASE-SSH-99" in errors


def test_control_in_no_profile_and_unknown_parent(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace("extends: [baseline]", "extends: [base]"))
    errors = _errors(path)
    assert any(e.endswith("profiles.strict.extends[0]: unknown profile 'base'") for e in errors)


def test_control_listed_by_two_profiles(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        MINIMAL.replace("controls: [STRICT-SSH-01]", "controls: [STRICT-SSH-01, BASE-SSH-03]"),
    )
    errors = _errors(path)
    assert any("BASE-SSH-03 is already in profile 'baseline'" in e for e in errors)


def test_inheritance_cycle(tmp_path: Path) -> None:
    text = MINIMAL.replace("    title: Base\n", "    title: Base\n    extends: [strict]\n")
    errors = _errors(_write(tmp_path, text))
    assert any("profile inheritance has a cycle" in e for e in errors)


def test_inheritance_has_no_depth_limit(tmp_path: Path) -> None:
    """Python resolves ``extends`` for the playbook, so a long chain is as good as a short one."""
    chain = "".join(
        f"  p{i}:\n    title: P{i}\n    extends: [{'strict' if i == 0 else f'p{i - 1}'}]\n"
        for i in range(6)
    )
    text = MINIMAL.replace(
        "controls:\n  - id: BASE-SSH-03", chain + "controls:\n  - id: BASE-SSH-03", 1
    )
    cat = load_catalogue(_write(tmp_path, text))
    assert [c.id for c in cat.controls_for(["p5"])] == ["BASE-SSH-03", "STRICT-SSH-01"]


def test_own_id_missing_from_tags_and_duplicate_check(tmp_path: Path) -> None:
    text = MINIMAL.replace("tags: [STRICT-SSH-01]", "tags: [ssh]").replace(
        "::sshd_allow_groups", "::sshd_permit_root_login"
    )
    errors = _errors(_write(tmp_path, text))
    assert any(
        "controls[1].implements.tags: must include the control's own ID STRICT-SSH-01" in e
        for e in errors
    )
    assert any(
        "controls[1].check: check " in e and "already proves BASE-SSH-03" in e for e in errors
    )


def test_unknown_framework_and_clause(tmp_path: Path) -> None:
    text = MINIMAL.replace('references: {cis-debian12: ["5.1.20"]}', 'references: {nist: ["AC-6"]}')
    errors = _errors(_write(tmp_path, text))
    assert any("controls[0].references.nist: unknown framework 'nist'" in e for e in errors)
    text = MINIMAL.replace("version: v1.1.0}", "version: v1.1.0, clauses: {'5.1': SSH}}").replace(
        '["5.1.20"]', '["5.1.20", "6.2"]'
    )
    errors = _errors(_write(tmp_path, text))
    assert errors == [
        f"{tmp_path}/policies/catalogue.yaml:21: controls[0].references.cis-debian12[0]: "
        "'5.1.20' is not under a known clause of cis-debian12",
        f"{tmp_path}/policies/catalogue.yaml:21: controls[0].references.cis-debian12[1]: "
        "'6.2' is not under a known clause of cis-debian12",
    ]


def test_bad_control_id_and_check_format(tmp_path: Path) -> None:
    text = MINIMAL.replace("  - id: STRICT-SSH-01", "  - id: strict-ssh-1").replace(
        "::sshd_allow_groups", "::Sshd"
    )
    errors = _errors(_write(tmp_path, text))
    assert any("controls[1].id: String should match pattern" in e for e in errors)
    assert any("controls[1].check: String should match pattern" in e for e in errors)


def test_a_check_is_named_relative_to_the_suite(tmp_path: Path) -> None:
    """``test_ssh.py::name`` means the same check in a checkout and in a wheel; a path is not."""
    text = MINIMAL.replace(
        "check: test_ssh.py::sshd_allow_groups",
        "check: tests/compliance/test_ssh.py::sshd_allow_groups",
    )
    errors = _errors(_write(tmp_path, text))
    assert any("controls[1].check: String should match pattern" in e for e in errors)
    assert not any("controls[0].check" in e for e in errors)


def test_implementing_role_must_exist(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL, roles=())
    [error] = [e for e in _errors(path) if "BASE-SSH-03" in e]
    assert error == (
        f"{path}:19: controls[0].implements.role: role 'tenancy_ssh' of BASE-SSH-03 "
        f"does not exist under {tmp_path / 'roles'}"
    )


def test_explicit_roles_dir(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL, roles=())
    assert load_catalogue(path, roles_dir=ROLES).controls[0].id == "BASE-SSH-03"


# -- waivers -------------------------------------------------------------------


def test_example_waivers_load_against_the_catalogue(catalogue: Catalogue) -> None:
    waivers = load_waivers(WAIVERS, catalogue=catalogue)
    assert {w.control for w in waivers} == {"BASE-SSH-08", "MLPS-LOG-01"}
    assert all(w.tenant == "example" for w in waivers)


def _waiver(**overrides: Any) -> Waiver:
    fields: dict[str, Any] = {
        "control": "BASE-SSH-08",
        "tenant": "finance",
        "hosts": ["finance-app-1"],
        "justification": "Vendor agent needs a local forward until its next release.",
        "approved_by": "ciso@example.gov",
        "approved_on": date(2026, 11, 2),
        "expires": date(2027, 3, 31),
    }
    fields.update(overrides)
    return Waiver.model_validate(fields)


def test_waiver_is_active_up_to_and_including_expiry() -> None:
    w = _waiver()
    assert w.is_active(date(2027, 3, 30))
    assert w.is_active(date(2027, 3, 31))
    assert not w.is_active(date(2027, 4, 1))


def test_waiver_scope() -> None:
    assert _waiver().applies_to("finance", "finance-app-1")
    assert not _waiver().applies_to("finance", "finance-app-2")
    assert not _waiver().applies_to("hr", "finance-app-1")
    assert _waiver(hosts=[]).applies_to("finance", "finance-db-1")


def test_waived_control_ids_for_a_host() -> None:
    waivers = [
        _waiver(),
        _waiver(control="MLPS-LOG-01", hosts=[]),
        _waiver(control="BASE-FW-04", expires=date(2026, 1, 1)),
        _waiver(control="BASE-SSH-03", tenant="hr"),
    ]
    today = date(2026, 11, 28)
    assert waived_control_ids(waivers, tenant="finance", host="finance-app-1", today=today) == [
        "BASE-SSH-08",
        "MLPS-LOG-01",
    ]
    assert [
        w.control
        for w in active_waivers(waivers, tenant="finance", host="finance-db-1", today=today)
    ] == ["MLPS-LOG-01"]


def _write_waivers(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text("apiVersion: tenancy/v1\nkind: WaiverList\nwaivers:\n" + textwrap.dedent(body))
    return path


def test_waiver_for_unknown_control(tmp_path: Path, catalogue: Catalogue) -> None:
    path = _write_waivers(
        tmp_path,
        """\
          - control: BASE-SSH-42
            tenant: finance
            justification: Twenty characters or more of reasons.
            approved_by: ciso
            approved_on: 2026-11-02
            expires: 2027-01-01
        """,
    )
    with pytest.raises(CatalogueError) as exc:
        load_waivers(path, catalogue=catalogue, today=date(2026, 12, 3))
    assert exc.value.errors == [f"{path}:4: waivers[0].control: unknown control BASE-SSH-42"]


def test_waiver_expiry_must_be_a_date_not_a_string(tmp_path: Path) -> None:
    path = _write_waivers(
        tmp_path,
        """\
          - control: BASE-SSH-08
            tenant: finance
            justification: short
            approved_by: ciso
            approved_on: 2026-11-02
            expires: "2027-01-01"
        """,
    )
    with pytest.raises(CatalogueError) as exc:
        load_waivers(path)
    assert any(
        e.startswith(f"{path}:9: waivers[0].expires: Input should be a valid date")
        for e in exc.value.errors
    )
    assert any(
        e.startswith(f"{path}:6: waivers[0].justification: String should have at least 20")
        for e in exc.value.errors
    )
