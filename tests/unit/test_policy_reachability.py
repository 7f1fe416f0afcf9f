"""Before a run: which key, waiting for SSH (probes faked), and the lock-out guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenancy.contract.host_vars import HostVars, PolicyVars, SiteVars
from tenancy.policy import reachability
from tenancy.policy.reachability import (
    READY_PROBE,
    SshWaitError,
    lockout_problems,
    private_key_for,
    wait_for_ssh,
)


def test_private_key_is_the_public_key_files_sibling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANCY_OPS_SSH_KEY", raising=False)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "ops.pub").write_text("ssh-ed25519 AAAA")
    assert private_key_for(tmp_path, ["k/ops.pub"]) is None
    (tmp_path / "k" / "ops").write_text("private")
    assert private_key_for(tmp_path, ["/nonexistent.pub", "k/ops.pub"]) == tmp_path / "k" / "ops"
    monkeypatch.setenv("TENANCY_OPS_SSH_KEY", "/elsewhere/key")
    assert private_key_for(tmp_path, ["k/ops.pub"]) == Path("/elsewhere/key")


# -- readiness and lock-out ------------------------------------------------------------


def test_wait_for_ssh_retries_until_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {}

    def probe(address: str, *_: Any) -> tuple[int, str]:
        calls[address] = calls.get(address, 0) + 1
        return (0, "") if calls[address] >= 3 else (255, "Connection refused")

    monkeypatch.setattr(reachability, "_probe", probe)
    ready = wait_for_ssh({"a": "10.0.0.1", "b": "10.0.0.2"}, "ops", None, 10, interval=0.01)
    assert set(ready) == {"a", "b"} and calls == {"10.0.0.1": 3, "10.0.0.2": 3}


def test_wait_for_ssh_names_every_silent_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(address: str, *_: Any) -> tuple[int, str]:
        if address == "10.0.0.1":
            return 0, ""
        return 255, f"ssh: connect to host {address} port 22: No route to host"

    monkeypatch.setattr(reachability, "_probe", probe)
    with pytest.raises(SshWaitError) as err:
        wait_for_ssh(
            {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}, "ops", None, 0.05, interval=0.01
        )
    assert err.value.pending == {
        "b": "ssh: connect to host 10.0.0.2 port 22: No route to host",
        "c": "ssh: connect to host 10.0.0.3 port 22: No route to host",
    }
    assert str(err.value).startswith("2 host(s) did not answer SSH within 0 s:")


def test_ssh_probe_command_line() -> None:
    argv = reachability._ssh_argv("10.0.0.1", "ops", Path("/k/id"), READY_PROBE)
    assert argv[-2:] == ["ops@10.0.0.1", READY_PROBE]
    assert "BatchMode=yes" in argv and "IdentitiesOnly=yes" in argv and "/k/id" in argv


def test_lockout_guard() -> None:
    hosts = {
        "in": HostVars(address="10.30.0.10", site=SiteVars(ops_cidrs=("10.30.0.1/32",))),
        "out": HostVars(address="10.40.0.10", site=SiteVars(ops_cidrs=("10.40.0.1/32",))),
        "waived": HostVars(
            address="10.50.0.10", policy=PolicyVars(waived_controls=("BASE-FW-03",))
        ),
        "unknown": HostVars(address="10.60.0.10"),
    }
    sources = {
        "10.30.0.10": ("10.30.0.1", "tnhr"),
        "10.40.0.10": ("192.0.2.2", "eth0"),
        "10.50.0.10": ("192.0.2.2", "eth0"),
    }
    problems = lockout_problems(hosts, sources.get)
    assert len(problems) == 1 and problems[0].startswith("out: this controller reaches")
    assert "from 192.0.2.2 (via eth0)" in problems[0]
