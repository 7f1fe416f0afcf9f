"""Check of the state ``make state`` creates: Pulumi's backend, its passphrase, the ops key.

Secret files are also checked for their mode: a passphrase open to others
is a finding, not a working setup.
"""

from __future__ import annotations

from tenancy.doctor.common import FIX_ENV, FIX_STATE
from tenancy.doctor.model import Check, Facts
from tenancy.doctor.paths import backend_dir, backend_url, passphrase_file, show, ssh_key, state_dir


def _secret_file(facts: Facts, group: str, name: str, path: str, why: str) -> Check:
    f = facts.files.get(path)
    if f is None or f.kind != "file":
        return Check(group, name, "fail", f"{show(facts, path)} missing ({why})", FIX_STATE)
    if f.size == 0:
        return Check(group, name, "fail", f"{show(facts, path)} is empty ({why})", FIX_STATE)
    if f.mode & 0o077:
        return Check(
            group,
            name,
            "fail",
            f"{show(facts, path)} has mode {f.mode:04o}: open to group/others, expected 0600",
            f"chmod 600 {show(facts, path)}",
        )
    return Check(group, name, "ok", f"{show(facts, path)} (mode {f.mode:04o})")


def check_state(facts: Facts) -> list[Check]:
    """Pulumi's backend and secrets passphrase, and the ops key the VMs trust (make state)."""
    checks: list[Check] = []
    url = backend_url(facts)
    directory = backend_dir(facts)
    if directory is None:
        checks.append(
            Check("state", "backend", "info", f"{url} (not a file backend: not checked here)")
        )
    elif facts.files.get(directory, None) is not None and facts.files[directory].kind == "dir":
        checks.append(Check("state", "backend", "ok", url))
    else:
        fix = FIX_STATE if directory == f"{state_dir(facts)}/pulumi" else f"mkdir -p {directory}"
        checks.append(Check("state", "backend", "fail", f"{url}: no such directory", fix))
    passphrase = passphrase_file(facts)
    if passphrase is None:
        checks.append(Check("state", "passphrase", "ok", "from PULUMI_CONFIG_PASSPHRASE"))
    else:
        check = _secret_file(facts, "state", "passphrase", passphrase, "secrets of every stack")
        if check.fix == FIX_STATE and passphrase != f"{state_dir(facts)}/passphrase":
            # make state only generates the default file; a custom one is the operator's
            check = Check(
                check.group,
                check.name,
                check.status,
                check.detail + "; PULUMI_CONFIG_PASSPHRASE_FILE points there",
                f"unset PULUMI_CONFIG_PASSPHRASE_FILE && {FIX_ENV} && {FIX_STATE}",
            )
        checks.append(check)
    checks.append(
        _secret_file(facts, "state", "ops ssh key", ssh_key(facts), "Ansible and audits log in")
    )
    site = facts.site
    for key_file in site.ssh_key_files if site else ():
        if key_file in facts.files:
            continue
        ours = key_file == f"{ssh_key(facts)}.pub"
        checks.append(
            Check(
                "state",
                "ops key file",
                "fail",
                f"{show(facts, key_file)} missing (site {site.name if site else ''} lists it in "
                "ops.sshKeyFiles; its VMs trust that key)",
                FIX_STATE if ours else f"install the site's ops public key as {key_file}",
            )
        )
    return checks
