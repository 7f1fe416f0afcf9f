"""What the user sees of pulumi's output: tracebacks folded to the line that explains them."""

from __future__ import annotations

from pathlib import Path

from tenancy.engine_output import TracebackFolder

DATA = Path(__file__).parent / "data" / "engine"


def fold(text: str) -> tuple[list[str], int]:
    folder = TracebackFolder()
    out = [shown for line in text.splitlines(keepends=True) for shown in folder.feed(line)]
    return out, folder.folded


def test_a_provider_traceback_becomes_its_one_line() -> None:
    # recorded from a real `pulumi up` whose Network provider hit a libvirt error
    out, folded = fold((DATA / "provider-traceback.txt").read_text())
    text = "\n".join(out)
    assert folded == 1
    assert "Traceback" not in text
    assert 'File "' not in text
    assert (
        "    error: Network tenancy-demo on qemu:///system: create failed: libvirt: "
        "Failed to create file '/var/lib/libvirt/dnsmasq/x.macs.new'" in text
    )
    assert "hint: run `tenancy doctor`" in text
    # the rest of pulumi's output is untouched
    assert "Resources:" in text and "    2 errored" in text


def test_a_program_traceback_keeps_the_exception_message_and_its_lines() -> None:
    text = (
        "  pulumi:pulumi:Stack (x-local):\n"
        "    error: Program failed with an unhandled exception:\n"
        "    Traceback (most recent call last):\n"
        '      File "/srv/stacks/__main__.py", line 3, in <module>\n'
        "        build()\n"
        "    tenancy.infra.program.PlanRefused: nothing applied: 2 error(s)\n"
        "    tenants/hr.yaml:3:1: error: spec.zone: invalid\n"
        "\n"
        "Resources:\n"
    )
    out, folded = fold(text)
    assert folded == 1
    assert out == [
        "  pulumi:pulumi:Stack (x-local):",
        "    error: Program failed with an unhandled exception:",
        "    error: nothing applied: 2 error(s)",
        "    tenants/hr.yaml:3:1: error: spec.zone: invalid",
        "",
        "Resources:",
    ]


def test_output_without_tracebacks_passes_unchanged() -> None:
    text = "Updating (local):\n +  tenancy:infra:Segment hr creating (0s)\nDuration: 3s\n"
    out, folded = fold(text)
    assert out == text.splitlines()
    assert folded == 0
