"""An isolated copy of the project for one test site (its own stack, state, key, tenants).

The copy holds only what ``tenancy`` and the Pulumi program read from a
project root: ``Pulumi.yaml``, ``stacks/__main__.py``, one stack file derived
from ``stacks/Pulumi.local.yaml`` (site renamed, pools moved under
``/var/lib/tenancy/pools/<site>-*``, ops key inside the copy), ``policies/``
and ``roles/`` (the security baseline the program applies) and the test
tenants. Everything else (code, templates) comes from the installed package,
so a fix in the main tree is what the test exercises.

Every command runs with the copy's own Pulumi file backend, a random secrets
passphrase and ``TENANCY_STATE`` inside the copy: the demo stack ``local``
and other tests are never touched. Reaching the copy's guests, cleaning up its
libvirt objects and the rest live in the sibling modules of ``tests.support``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Where the copies' storage pools live (``<site>-<pool>``; the sweep removes only those).
POOL_BASE = Path("/var/lib/tenancy/pools")

COPY_BASE = Path(os.environ.get("TENANCY_IT_WORKDIR", "/var/tmp/tenancy-it"))


def new_workdir(site: str) -> Path:
    """A fresh directory for one copy of the project under :data:`COPY_BASE`."""
    COPY_BASE.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{site}-", dir=COPY_BASE))


@dataclass
class SiteCopy:
    """A project copy under ``root`` with its own site (stack) ``site``."""

    root: Path
    site: str
    main_root: Path
    passphrase: str
    log: Path
    pool_paths: list[Path] = field(default_factory=list)
    env_overrides: dict[str, str] = field(default_factory=dict)
    """Variables a test sets for every later command (e.g. its own ``TENANCY_CACHE``)."""

    # --- names the program derives (kept in one place for the sweep) --------------

    @property
    def state(self) -> Path:
        """``TENANCY_STATE`` of the copy: its Pulumi backend, key, reports."""
        return self.root / ".tenancy"

    def keep_for_later(self) -> str:
        """Write the passphrase next to the state (0600) for a later run of this copy,
        and return the command that destroys the site."""
        secret = self.state / "passphrase"
        secret.write_text(self.passphrase)
        secret.chmod(0o600)
        return (
            f"TENANCY_STATE={self.state} PULUMI_BACKEND_URL=file://{self.state / 'pulumi'} "
            f"PULUMI_CONFIG_PASSPHRASE_FILE={secret} "
            f"tenancy --root {self.root} destroy --site {self.site}"
        )

    @property
    def key(self) -> Path:
        """The copy's own ops key (the stack file names its public half)."""
        return self.state / "ssh" / "ops_ed25519"

    @property
    def table(self) -> str:
        """The nftables table the program creates for the site."""
        return "tenancy_" + self.site.replace("-", "_")

    @property
    def pool_prefix(self) -> str:
        """Prefix of the site's libvirt storage pools (what the sweep removes)."""
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
        env.update(self.env_overrides)
        return env

    # --- commands ------------------------------------------------------------------

    def _logged(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        """Append a command and its output to the copy's log (read after a failure)."""
        with self.log.open("a") as fh:
            fh.write(f"\n$ {' '.join(argv)}\n[exit {result.returncode}]\n")
            fh.write(result.stdout or "")
            if result.stderr:
                fh.write("--- stderr ---\n" + result.stderr)

    def run(self, argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a command in the copy with its environment; output goes to the log too.

        The command gets its own process group: on timeout the whole group (the
        ``tenancy`` wrapper, pulumi, its plugins) is interrupted, then killed, so no
        orphaned pulumi keeps working on the stack behind the cleanup.
        """
        proc = self._spawn(argv, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGINT, 120), (signal.SIGKILL, 30)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    out, err = proc.communicate(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    out, err = "", ""
            err = (err or "") + f"\ntimeout after {timeout:.0f} s: process group interrupted"
            code = 124
        result = subprocess.CompletedProcess(argv, code, out or "", err or "")
        self._logged(argv, result)
        return result

    def tenancy(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """``tenancy --root <copy> ARGS`` (the real CLI and the real pulumi)."""
        return self.run(["tenancy", "--root", str(self.root), *args], timeout=timeout)

    def pulumi(
        self, *args: str, config: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """The pulumi CLI directly on the copy's stack (what an operator types); ``config``
        adds ``--config-file`` with the copy ``tenancy`` keeps (for verbs that run the
        program)."""
        argv = ["pulumi", *args, "--stack", self.site]
        if config:
            argv += ["--config-file", str(self.state / "stacks" / f"Pulumi.{self.site}.yaml")]
        return self.run(argv, timeout=timeout)

    def locks(self) -> list[Path]:
        """Lock files the file backend keeps for the copy's stack while an update runs."""
        base = self.state / "pulumi" / ".pulumi" / "locks"
        return sorted(p for p in base.glob(f"**/{self.site}/*.json") if p.is_file())

    def pending_operations(self) -> list[dict[str, Any]]:
        """``pending_operations`` of the stack's checkpoint (what an interrupted run left)."""
        out = self.pulumi("stack", "export")
        if out.returncode != 0:
            raise AssertionError(f"pulumi stack export failed: {out.stderr}")
        deployment = json.loads(out.stdout).get("deployment") or {}
        pending: list[dict[str, Any]] = deployment.get("pending_operations") or []
        return pending

    def plan(self) -> dict[str, Any]:
        """``tenancy plan --format json`` of the copy's site, parsed."""
        out = self.tenancy("plan", "--site", self.site, "--format", "json")
        if out.returncode != 0:
            raise AssertionError(f"tenancy plan failed: {out.stderr}")
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def start_up(self) -> subprocess.Popen[str]:
        """``tenancy up`` in its own process group (so an interrupt reaches it like a ^C).

        SIGINT is reset to its default in the child, as in a terminal's foreground job:
        a test runner started in the background by a non-interactive shell inherits
        SIGINT *ignored*, and the interrupt would then reach only pulumi, not the
        ``tenancy`` wrapper (a different, luckier experiment).
        """
        argv = ["tenancy", "--root", str(self.root), "up", "--site", self.site]
        with self.log.open("a") as fh:
            fh.write(f"\n$ {' '.join(argv)}  (background, to be interrupted)\n")
        return self._spawn(argv, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)

    def _spawn(self, argv: list[str], **popen: Any) -> subprocess.Popen[str]:
        """Start ``argv`` in the copy, with its environment, in a process group of its own
        (so a timeout or an interrupt reaches the wrapper, pulumi and its plugins)."""
        return subprocess.Popen(
            argv,
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **popen,
        )

    def write_tenant(self, name: str, doc: dict[str, Any]) -> None:
        """Add or replace the copy's tenant file ``tenants/<name>.yaml``."""
        path = self.root / "tenants" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _default_sigint() -> None:
    """In the child before exec: SIGINT as in a terminal's foreground job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_site_copy(main_root: Path, dest: Path, site: str, tenants: dict[str, Any]) -> SiteCopy:
    """Build the copy: project file, program, derived stack file, policies and roles,
    tenants, ops key."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(main_root / "Pulumi.yaml", dest / "Pulumi.yaml")
    (dest / "stacks").mkdir(exist_ok=True)
    shutil.copy2(main_root / "stacks" / "__main__.py", dest / "stacks" / "__main__.py")
    (dest / "tenants").mkdir(exist_ok=True)
    # the program hashes and runs the security baseline from the project it runs in
    for tree in ("policies", "roles"):
        if (main_root / tree).is_dir():
            shutil.copytree(
                main_root / tree,
                dest / tree,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )

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
        "# Derived from stacks/Pulumi.local.yaml by tests/support/sitecopy.py\n"
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


def reopen_site_copy(main_root: Path, root: Path, site: str) -> SiteCopy:
    """A copy an earlier run left running (``TENANCY_IT_KEEP=1``), as it is on disk.

    Its passphrase is the one the keeping run wrote to ``.tenancy/passphrase``.
    """
    doc = yaml.safe_load((root / "stacks" / f"Pulumi.{site}.yaml").read_text())
    pools = [
        Path(pool["path"])
        for host in doc["config"]["tenancy:site"]["hosts"]
        for pool in host["pools"]
    ]
    return SiteCopy(
        root=root,
        site=site,
        main_root=main_root,
        passphrase=(root / ".tenancy" / "passphrase").read_text().strip(),
        log=root / "commands.log",
        pool_paths=pools,
    )
