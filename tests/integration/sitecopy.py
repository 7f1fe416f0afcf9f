"""An isolated copy of the project for one test site (its own stack, state, key, tenants).

The copy holds only what ``tenancy`` and the Pulumi program read from a
project root: ``Pulumi.yaml``, ``stacks/__main__.py``, one stack file derived
from ``stacks/Pulumi.local.yaml`` (site renamed, pools moved under
``/var/lib/tenancy/pools/<site>-*``, ops key inside the copy) and the test
tenants. Everything else (code, templates) comes from the installed package,
so a fix in the main tree is what the test exercises.

Every command runs with the copy's own Pulumi file backend, a random secrets
passphrase and ``TENANCY_STATE`` inside the copy: the demo stack ``local``
and other tests are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

POOL_BASE = Path("/var/lib/tenancy/pools")
SSH_OPTS = [
    "-o",
    "BatchMode=yes",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
]


@dataclass
class SiteCopy:
    """A project copy under ``root`` with its own site (stack) ``site``."""

    root: Path
    site: str
    main_root: Path
    passphrase: str
    log: Path
    pool_paths: list[Path] = field(default_factory=list)

    # --- names the program derives (kept in one place for the sweep) --------------

    @property
    def state(self) -> Path:
        return self.root / ".tenancy"

    @property
    def key(self) -> Path:
        return self.state / "ssh" / "ops_ed25519"

    @property
    def table(self) -> str:
        return "tenancy_" + self.site.replace("-", "_")

    @property
    def pool_prefix(self) -> str:
        return f"tenancy-{self.site}-"

    def env(self) -> dict[str, str]:
        """The environment of every command run against the copy."""
        env = dict(os.environ)
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        env.update(
            {
                "TENANCY_STATE": str(self.state),
                "PULUMI_BACKEND_URL": f"file://{self.state / 'pulumi'}",
                "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
                "PULUMI_SKIP_UPDATE_CHECK": "true",
            }
        )
        return env

    # --- commands ------------------------------------------------------------------

    def _logged(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        with self.log.open("a") as fh:
            fh.write(f"\n$ {' '.join(argv)}\n[exit {result.returncode}]\n")
            fh.write(result.stdout or "")
            if result.stderr:
                fh.write("--- stderr ---\n" + result.stderr)

    def run(self, argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a command in the copy with its environment; output goes to the log too."""
        try:
            result = subprocess.run(
                argv,
                cwd=self.root,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            result = subprocess.CompletedProcess(argv, 124, out, err + f"\ntimeout {timeout} s")
        self._logged(argv, result)
        return result

    def tenancy(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``tenancy --root <copy> ARGS`` (the real CLI and the real pulumi)."""
        return self.run(["tenancy", "--root", str(self.root), *args], timeout=timeout)

    def pulumi(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The pulumi CLI directly, on the copy's stack and config copy (what an operator types)."""
        config = self.state / "stacks" / f"Pulumi.{self.site}.yaml"
        return self.run(
            ["pulumi", *args, "--stack", self.site, "--config-file", str(config)],
            timeout=timeout,
        )

    def plan(self) -> dict[str, Any]:
        out = self.tenancy("plan", "--site", self.site, "--format", "json")
        if out.returncode != 0:
            raise AssertionError(f"tenancy plan failed: {out.stderr}")
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def start_up(self) -> subprocess.Popen[str]:
        """``tenancy up`` in its own process group (so an interrupt reaches it like a ^C)."""
        argv = ["tenancy", "--root", str(self.root), "up", "--site", self.site]
        with self.log.open("a") as fh:
            fh.write(f"\n$ {' '.join(argv)}  (background, to be interrupted)\n")
        return subprocess.Popen(
            argv,
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def write_tenant(self, name: str, doc: dict[str, Any]) -> None:
        path = self.root / "tenants" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def make_site_copy(main_root: Path, dest: Path, site: str, tenants: dict[str, Any]) -> SiteCopy:
    """Build the copy: project file, program, derived stack file, tenants, ops key."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(main_root / "Pulumi.yaml", dest / "Pulumi.yaml")
    (dest / "stacks").mkdir(exist_ok=True)
    shutil.copy2(main_root / "stacks" / "__main__.py", dest / "stacks" / "__main__.py")
    (dest / "tenants").mkdir(exist_ok=True)

    doc = yaml.safe_load((main_root / "stacks" / "Pulumi.local.yaml").read_text())
    spec = doc["config"]["tenancy:site"]
    spec["name"] = site
    spec["description"] = f"Integration test copy of the local site ({site}); temporary."
    pool_paths: list[Path] = []
    for host in spec["hosts"]:
        for pool in host["pools"]:
            path = POOL_BASE / f"{site}-{pool['name']}"
            pool["path"] = str(path)
            pool_paths.append(path)
    key_rel = Path(".tenancy") / "ssh" / "ops_ed25519"
    spec["ops"]["sshKeyFiles"] = [f"{key_rel}.pub"]
    (dest / "stacks" / f"Pulumi.{site}.yaml").write_text(
        "# Derived from stacks/Pulumi.local.yaml by tests/integration/sitecopy.py\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    )

    copy = SiteCopy(
        root=dest,
        site=site,
        main_root=main_root,
        passphrase=secrets.token_urlsafe(24),
        log=dest / "commands.log",
        pool_paths=pool_paths,
    )
    (copy.state / "ssh").mkdir(parents=True, exist_ok=True)
    (copy.state / "pulumi").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tenancy-{site}", "-f", copy.key],
        check=True,
    )
    for name, tenant in tenants.items():
        copy.write_tenant(name, tenant)
    copy.log.write_text("")
    return copy


# --- guests --------------------------------------------------------------------------


def ssh(copy: SiteCopy, address: str, command: str, timeout: float = 60) -> Any:
    """``ssh ops@address command`` with the copy's ops key."""
    argv = ["ssh", *SSH_OPTS, "-i", str(copy.key), f"ops@{address}", command]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 255, "", f"timeout after {timeout} s")


def wait_for_ssh(copy: SiteCopy, address: str, timeout: float) -> float:
    """Seconds until ``ssh ops@address true`` works; AssertionError after ``timeout``."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        result = ssh(copy, address, "true", timeout=20)
        if result.returncode == 0:
            return time.monotonic() - start
        last = (result.stderr or "").strip()
        time.sleep(3)
    raise AssertionError(f"no SSH to ops@{address} within {timeout:.0f} s; last error: {last}")


# --- libvirt / host objects of the copy's site -----------------------------------------


def site_objects(uri: str, copy: SiteCopy, tenant_names: list[str]) -> dict[str, list[str]]:
    """Every libvirt object and the nftables table that belong to the copy's site."""
    import libvirt

    domain_prefixes = tuple(f"{t}-" for t in tenant_names)
    object_prefixes = tuple(f"tenancy-{t}" for t in tenant_names)
    conn = libvirt.open(uri)
    try:
        found: dict[str, list[str]] = {
            "domains": sorted(
                d.name() for d in conn.listAllDomains(0) if d.name().startswith(domain_prefixes)
            ),
            "networks": sorted(
                n.name() for n in conn.listAllNetworks(0) if n.name().startswith(object_prefixes)
            ),
            "nwfilters": sorted(
                f.name() for f in conn.listAllNWFilters(0) if f.name().startswith(object_prefixes)
            ),
            "pools": [],
            "volumes": [],
        }
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(copy.pool_prefix):
                found["pools"].append(pool.name())
                if pool.isActive():
                    with contextlib.suppress(libvirt.libvirtError):
                        pool.refresh(0)
                    found["volumes"].extend(
                        f"{pool.name()}/{v.name()}" for v in pool.listAllVolumes(0)
                    )
            elif pool.isActive():
                for vol in pool.listAllVolumes(0):
                    if vol.name().startswith(domain_prefixes):
                        found["volumes"].append(f"{pool.name()}/{vol.name()}")
        found["pools"].sort()
        found["volumes"].sort()
    finally:
        conn.close()
    nft = subprocess.run(
        ["nft", "list", "table", "inet", copy.table], capture_output=True, text=True, check=False
    )
    found["nftables"] = [copy.table] if nft.returncode == 0 else []
    found["pool_dirs"] = sorted(str(p) for p in copy.pool_paths if p.exists())
    return found


def sweep_site(uri: str, copy: SiteCopy, tenant_names: list[str]) -> dict[str, list[str]]:
    """Remove whatever of the copy's site is left (after pulumi destroy): by name prefix only."""
    import libvirt

    found = site_objects(uri, copy, tenant_names)
    domain_prefixes = tuple(f"{t}-" for t in tenant_names)
    object_prefixes = tuple(f"tenancy-{t}" for t in tenant_names)
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(domain_prefixes):
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.isActive():
                        dom.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        for net in conn.listAllNetworks(0):
            if net.name().startswith(object_prefixes):
                with contextlib.suppress(libvirt.libvirtError):
                    if net.isActive():
                        net.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    net.undefine()
        for nwf in conn.listAllNWFilters(0):
            if nwf.name().startswith(object_prefixes):
                with contextlib.suppress(libvirt.libvirtError):
                    nwf.undefine()
        for pool in conn.listAllStoragePools(0):
            mine = pool.name().startswith(copy.pool_prefix)
            if not pool.isActive():
                continue
            for vol in pool.listAllVolumes(0):
                if mine or vol.name().startswith(domain_prefixes):
                    with contextlib.suppress(libvirt.libvirtError):
                        vol.delete(0)
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(copy.pool_prefix):
                with contextlib.suppress(libvirt.libvirtError):
                    if pool.isActive():
                        pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.delete(0)
                with contextlib.suppress(libvirt.libvirtError):
                    pool.undefine()
    finally:
        conn.close()
    subprocess.run(
        ["nft", "delete", "table", "inet", copy.table], capture_output=True, check=False
    )
    for path in copy.pool_paths:
        if path.parent == POOL_BASE and path.name.startswith(f"{copy.site}-"):
            shutil.rmtree(path, ignore_errors=True)
    return found


# --- the engine, interrupted ------------------------------------------------------------


@dataclass
class Interrupted:
    """What happened to an interrupted ``tenancy up``."""

    returncode: int
    output: str
    trigger: str  # the output line after which the interrupt was sent
    seconds_to_exit: float


def interrupt_up(copy: SiteCopy, marker: tuple[str, ...], timeout: float = 300) -> Interrupted:
    """Start ``tenancy up`` and send SIGINT to its process group (an operator's ^C) as soon
    as a line containing one of ``marker`` appears (a resource operation has started)."""
    proc = copy.start_up()
    assert proc.stdout is not None
    lines: list[str] = []
    trigger = ""
    start = time.monotonic()
    sent_at = 0.0
    for line in _lines(proc, timeout):
        lines.append(line)
        if not trigger and any(m in line for m in marker):
            trigger = line.rstrip()
            sent_at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
    try:
        code = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    output = "".join(lines)
    with copy.log.open("a") as fh:
        fh.write(output + f"[exit {code}]\n")
    return Interrupted(code, output, trigger, time.monotonic() - (sent_at or start))


def _lines(proc: subprocess.Popen[str], timeout: float) -> Iterator[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        yield line
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
