"""A failed provider operation is one line (resource, host, libvirt's words, a hint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt
import pytest

from tenancy.infra.dynamic._base import LibvirtProvider
from tenancy.infra.dynamic._errors import ProviderError


class Failing(LibvirtProvider):
    kind = "Domain"

    def create(self, props: dict[str, Any]) -> Any:
        raise libvirt.libvirtError(
            "Failed to create file '/var/lib/libvirt/dnsmasq/tnhr.macs.new': "
            "No such file or directory"
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> Any:
        raise ValueError("bad\nvalue")


def test_a_libvirt_error_names_resource_host_message_hint_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANCY_STATE", str(tmp_path))
    with pytest.raises(ProviderError) as caught:
        Failing().create({"uri": "qemu:///system", "name": "hr-portal-1"})
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("tenancy: Domain hr-portal-1 on qemu:///system: create failed: ")
    assert "libvirt: Failed to create file '/var/lib/libvirt/dnsmasq/tnhr.macs.new'" in line
    assert "hint: run `tenancy doctor`" in line
    log = tmp_path / "logs" / "providers.log"
    assert f"(traceback in {log})" in line
    recorded = log.read_text()
    assert "Traceback (most recent call last)" in recorded
    assert "libvirt.libvirtError" in recorded


def test_update_names_the_new_properties_and_collapses_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANCY_STATE", str(tmp_path))
    with pytest.raises(ProviderError) as caught:
        Failing().update("id", {"name": "old", "uri": "u"}, {"name": "new", "uri": "qemu+ssh://h"})
    assert "Domain new on qemu+ssh://h: update failed: ValueError: bad value;" in str(caught.value)


def test_provider_errors_pass_through_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANCY_STATE", str(tmp_path))

    class Reporting(LibvirtProvider):
        kind = "PolicyRun"

        def create(self, props: dict[str, Any]) -> Any:
            raise ProviderError("PolicyRun hr: the baseline failed on 1 of 1 host(s)\nhr-1: ...")

    with pytest.raises(ProviderError) as caught:
        Reporting().create({})
    assert str(caught.value).startswith("PolicyRun hr: the baseline failed")


def test_the_one_line_error_is_still_a_runtime_error_with_the_original_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANCY_STATE", str(tmp_path))

    class Refusing(LibvirtProvider):
        kind = "StoragePool"

        def create(self, props: dict[str, Any]) -> Any:
            raise RuntimeError("storage pool 'x' already exists outside this stack")

    with pytest.raises(RuntimeError, match="already exists"):
        Refusing().create({"name": "x", "uri": "qemu:///system"})
