"""Checks of the toolchain: the project venv's modules and the pinned Pulumi engine.

A wrong engine or language host fails deep inside ``tenancy up``; these
name the ``make`` step that installs the right one.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from tenancy.doctor.common import FIX_ENGINE, FIX_ENV, FIX_PYTHON, first_line
from tenancy.doctor.model import Check, Facts
from tenancy.doctor.paths import show

PYTHON_MODULES = ("libvirt", "pulumi", "ansible_runner")
ENGINE_SHIMS = ("pulumi-resource-pulumi-python", "pulumi-language-python-exec")


def check_python(facts: Facts) -> list[Check]:
    """The program, dynamic providers and Ansible run in the project venv."""
    checks = []
    for module in PYTHON_MODULES:
        error = facts.imports.get(module, "not checked")
        if error is None:
            checks.append(Check("python", f"import {module}", "ok", "imports"))
        else:
            checks.append(Check("python", f"import {module}", "fail", error, FIX_PYTHON))
    venv = f"{facts.root}/.venv"
    if facts.python_prefix and facts.python_prefix.rstrip("/") != venv:
        checks.append(
            Check(
                "python",
                "interpreter",
                "warn",
                f"tenancy runs from {facts.python_prefix}, not {show(facts, venv)} "
                "(the language host uses the project venv)",
                FIX_ENV,
            )
        )
    return checks


def check_engine(facts: Facts) -> list[Check]:
    """The pinned pulumi CLI and the project's language host must be the ones on PATH."""
    pulumi = facts.which.get("pulumi")
    if not pulumi:
        return [Check("engine", "pulumi", "fail", "pulumi is not on PATH", FIX_ENGINE)]
    checks: list[Check] = []
    pinned = facts.env.get("PULUMI_VERSION")
    want = f"v{pinned}" if pinned else None
    result = facts.pulumi_version
    prefix = facts.env.get("PULUMI_PREFIX")
    ours = f"{prefix}/bin/pulumi" if prefix else None
    if want is None:
        checks.append(
            Check("engine", "pulumi version", "fail", "no pinned version (PULUMI_VERSION)", FIX_ENV)
        )
    elif result is None or not result.ok:
        why = "timed out" if result is not None and result.returncode is None else "failed"
        err = first_line(result.stderr) if result else ""
        checks.append(
            Check(
                "engine",
                "pulumi version",
                "fail",
                f"`{pulumi} version` {why}" + (f": {err}" if err else ""),
                FIX_ENGINE,
            )
        )
    elif result.stdout.strip() != want:
        fix = FIX_ENGINE
        if ours and pulumi != ours and ours in facts.files:
            fix = f'export PATH="{prefix}/bin:$PATH"'
        checks.append(
            Check(
                "engine",
                "pulumi version",
                "fail",
                f"{pulumi} is {result.stdout.strip() or '(no output)'}, pinned {want}",
                fix,
            )
        )
    else:
        checks.append(Check("engine", "pulumi version", "ok", f"{want} ({pulumi})"))
    bindir = str(PurePosixPath(pulumi).parent)
    launcher = facts.which.get("pulumi-language-python")
    if not launcher:
        checks.append(
            Check(
                "engine",
                "pulumi-language-python",
                "fail",
                "the language host launcher is not on PATH",
                FIX_ENGINE,
            )
        )
    elif str(PurePosixPath(launcher).parent) != bindir:
        checks.append(
            Check(
                "engine",
                "pulumi-language-python",
                "warn",
                f"{launcher} is not next to {pulumi}: the engine may start another host",
                FIX_ENGINE,
            )
        )
    else:
        checks.append(Check("engine", "pulumi-language-python", "ok", launcher))
    missing = [s for s in ENGINE_SHIMS if f"{bindir}/{s}" not in facts.files]
    if missing:
        checks.append(
            Check(
                "engine",
                "python shims",
                "fail",
                f"missing in {bindir}: {', '.join(missing)} (dynamic providers need them)",
                FIX_ENGINE,
            )
        )
    else:
        checks.append(Check("engine", "python shims", "ok", ", ".join(ENGINE_SHIMS)))
    return checks
