"""Run the real ``pulumi`` CLI for a site without touching tracked files.

The passphrase secrets manager writes a per-passphrase ``encryptionsalt`` into
the stack config file. For per-clone stacks (``local``) that would dirty the
committed ``stacks/Pulumi.<site>.yaml``, so ``tenancy`` passes pulumi a copy
under the state dir (``--config-file``) that carries the salt; the committed
file stays the single source of the site definition.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tenancy.engine_output import TracebackFolder
from tenancy.project import Project

SALT_RE = re.compile(r"^encryptionsalt:.*$", re.MULTILINE)


class EngineError(Exception):
    """The pulumi CLI is missing or a step before the engine run failed."""


def state_dir(root: Path) -> Path:
    return Project.at(root).state_dir


def pulumi_binary() -> str:
    found = shutil.which("pulumi")
    if found is None:
        raise EngineError("pulumi CLI not on PATH: run `make engine` and `source tools/env.sh`")
    return found


def _run(argv: Sequence[str], cwd: Path, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, capture_output=capture, text=True, check=False)


def stack_exists(root: Path, site: str) -> bool:
    out = _run([pulumi_binary(), "stack", "ls", "--json"], root)
    if out.returncode != 0:
        raise EngineError(f"pulumi stack ls failed: {out.stderr.strip()}")
    return any(s.get("name") == site for s in json.loads(out.stdout or "[]"))


def unprotect_approved(root: Path, site: str, approve: Sequence[str]) -> list[str]:
    """Lift the protection of the approved machines' resources in the stack's state.

    ``destroy`` does not run the program, so ``--approve`` cannot drop a protect flag
    there the way ``up`` does; and an ``up`` that replaces a protected domain because
    its root disk is replaced (a roll onto a new image) meets the domain's old flag
    before the program registers it unprotected. This lifts them first, through
    ``pulumi state unprotect``, for the resources named ``<domain>-...`` of each
    approved domain (``all``: every one). Returns the URNs unprotected.
    """
    binary = pulumi_binary()
    out = _run([binary, "stack", "export", "--stack", site], root)
    if out.returncode != 0:
        raise EngineError(f"pulumi stack export failed: {out.stderr.strip()}")
    resources = (json.loads(out.stdout or "{}").get("deployment") or {}).get("resources") or []
    wanted = set(approve)
    urns = []
    for resource in resources:
        urn = str(resource.get("urn", ""))
        name = urn.rsplit("::", 1)[-1]
        if resource.get("protect") and (
            "all" in wanted or any(name.startswith(f"{d}-") for d in wanted)
        ):
            urns.append(urn)
    set_protection(root, site, urns, protect=False)
    return urns


def set_protection(root: Path, site: str, urns: Sequence[str], *, protect: bool) -> None:
    """``pulumi state protect|unprotect`` of each URN (a refused run puts flags back)."""
    verb = "protect" if protect else "unprotect"
    for urn in urns:
        done = _run([pulumi_binary(), "state", verb, "--yes", "--stack", site, urn], root)
        if done.returncode != 0:
            raise EngineError(f"pulumi state {verb} {urn} failed: {done.stderr.strip()}")


def _salt_of(path: Path) -> str | None:
    if not path.is_file():
        return None
    match = SALT_RE.search(path.read_text(encoding="utf-8"))
    return match.group(0) if match else None


def prepare_stack(root: Path, site: str) -> Path:
    """Create the stack when missing and return the config file pulumi should use."""
    tracked = root / "stacks" / f"Pulumi.{site}.yaml"
    if not tracked.is_file():
        raise EngineError(f"no stack file {tracked}")
    work = state_dir(root) / "stacks"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / f"Pulumi.{site}.yaml"
    salt = _salt_of(tracked) or _salt_of(copy)
    if not stack_exists(root, site):
        # init in a scratch project so the salt lands in a file we own
        scratch = state_dir(root) / "init"
        scratch.mkdir(parents=True, exist_ok=True)
        project = (root / "Pulumi.yaml").read_text(encoding="utf-8")
        project = re.sub(r"^stackConfigDir:.*$", "stackConfigDir: .", project, flags=re.M)
        (scratch / "Pulumi.yaml").write_text(project, encoding="utf-8")
        init_file = scratch / f"Pulumi.{site}.yaml"
        init_file.unlink(missing_ok=True)
        if salt:
            init_file.write_text(salt + "\n", encoding="utf-8")
        out = _run([pulumi_binary(), "stack", "init", site, "--no-select"], scratch)
        if out.returncode != 0:
            raise EngineError(f"pulumi stack init {site} failed: {out.stderr.strip()}")
        salt = _salt_of(init_file) or salt
    text = tracked.read_text(encoding="utf-8")
    if salt and not SALT_RE.search(text):
        text = text.rstrip("\n") + "\n" + salt + "\n"
    copy.write_text(text, encoding="utf-8")
    return copy


@dataclass(frozen=True)
class PolicyPack:
    """A CrossGuard policy pack to run with the engine, and its per-rule config for this run."""

    directory: Path
    """The folder holding ``PulumiPolicy.yaml`` (from the installed package)."""
    config: Mapping[str, Any]
    """``{rule: {"enforcementLevel": ..., property: value}}`` (``--policy-pack-config``)."""


def policy_pack_args(root: Path, site: str, pack: PolicyPack) -> list[str]:
    """Write the pack's config for this run; return the pulumi arguments that run the pack.

    The file is replaced atomically, so a run never reads a half-written config of
    another run of the same site.
    """
    directory = state_dir(root) / "policy-packs"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{pack.directory.name}.{site}.json"
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(pack.config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path)
    return ["--policy-pack", str(pack.directory), "--policy-pack-config", str(path)]


def logs_dir(root: Path) -> Path:
    """``<state>/logs``: full engine output and provider tracebacks."""
    return Project.at(root).logs_dir


def run_pulumi(
    root: Path,
    site: str,
    verb: str,
    extra: Sequence[str] = (),
    watch: Callable[[Callable[[str], None]], AbstractContextManager[object]] | None = None,
    out: TextIO | None = None,
    policy_pack: PolicyPack | None = None,
) -> int:
    """``pulumi <verb> --stack <site> --config-file <copy> ...``; returns its exit code.

    ``policy_pack`` runs with the engine (its mandatory violations fail the run).

    The output is shown with Python tracebacks folded to their last line (the
    complete output goes to ``<state>/logs/pulumi-<verb>-<site>-<time>.log``,
    named at the end when something was folded). ``watch`` receives the line
    printer and returns a context manager that runs beside pulumi (progress of
    the hardening runs). An interrupt (^C) reaches pulumi through the process
    group; this wrapper keeps showing its output until it has stopped cleanly.
    """
    config = prepare_stack(root, site)
    argv = [pulumi_binary(), verb, "--stack", site, "--config-file", str(config)]
    if policy_pack is not None:
        argv += policy_pack_args(root, site, policy_pack)
    argv += extra
    stream = out or sys.stdout
    log_dir = logs_dir(root)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"pulumi-{verb}-{site}-{time.strftime('%Y%m%dT%H%M%S')}.log"
    folder = TracebackFolder()
    lock = threading.Lock()  # the watcher prints from its own thread

    def show(line: str) -> None:
        with lock:
            stream.write(line + "\n")
            stream.flush()

    with log_path.open("w", encoding="utf-8", buffering=1) as log:  # line-buffered: tail -f
        log.write("$ " + " ".join(argv) + "\n")
        proc = subprocess.Popen(
            argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        with watch(show) if watch is not None else nullcontext():
            while True:
                try:
                    line = proc.stdout.readline()
                except KeyboardInterrupt:
                    show("interrupted: waiting for pulumi to stop cleanly (^C again to force)")
                    continue
                if not line:
                    break
                log.write(line)
                for shown in folder.feed(line):
                    show(shown)
        code = _wait(proc)
    if folded := folder.folded:
        show(f"({folded} Python traceback(s) shortened; full output: {log_path})")
    return code


def _wait(proc: subprocess.Popen[str]) -> int:
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue
