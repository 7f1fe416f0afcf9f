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
and other tests are never touched.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
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
    "ConnectTimeout=15",
    "-o",
    "LogLevel=ERROR",
]


#: Where the isolated copies live. Not under pytest's basetemp: other pytest sessions
#: on this machine rotate it away (only the 3 newest are kept) and with it a copy's
#: Pulumi state, mid-run.
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

    # --- names the program derives (kept in one place for the sweep) --------------

    @property
    def state(self) -> Path:
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
        path = self.root / "tenants" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _default_sigint() -> None:
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


# --- guests --------------------------------------------------------------------------


def ssh(copy: SiteCopy, address: str, command: str, timeout: float = 60, attempts: int = 3) -> Any:
    """``ssh ops@address command`` with the copy's ops key.

    SSH's own failures (exit 255: e.g. "timed out during banner exchange" when the
    two shared cores run many TCG guests) are retried ``attempts`` times; the
    command's result is returned as is.
    """
    argv = ["ssh", *SSH_OPTS, "-i", str(copy.key), f"ops@{address}", command]
    result: Any = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(5)
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            result = subprocess.CompletedProcess(argv, 255, "", f"timeout after {timeout} s")
        if result.returncode != 255:
            break
    return result


def wait_for_ssh(copy: SiteCopy, address: str, timeout: float) -> float:
    """Seconds until ``ssh ops@address true`` works; AssertionError after ``timeout``."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        result = ssh(copy, address, "true", timeout=30, attempts=1)
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
    subprocess.run(["nft", "delete", "table", "inet", copy.table], capture_output=True, check=False)
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
    survivors: list[str] = field(default_factory=list)  # processes left running after exit


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
    seconds = time.monotonic() - (sent_at or start)
    output = "".join(lines)
    with copy.log.open("a") as fh:
        fh.write(output + f"[exit {code}]\n")
    return Interrupted(code, output, trigger, seconds, _reap_group(proc.pid))


def _group_members(pgid: int) -> dict[int, str]:
    """Live processes of process group ``pgid``: pid -> command line."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            pid = int(stat.parent.name)
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        found[pid] = cmd.strip()
    return found


def _reap_group(pgid: int, grace: float = 30) -> list[str]:
    """Processes of the interrupted run still alive when it exited (engine plugins,
    provider hosts): each is listed; those still alive after ``grace`` seconds are
    terminated by pid and marked so."""
    first = _group_members(pgid)
    survivors = dict(first)
    deadline = time.monotonic() + grace
    while survivors and time.monotonic() < deadline:
        time.sleep(1)
        survivors = {p: c for p, c in _group_members(pgid).items() if p in survivors}
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return [
        f"{pid} {cmd[:160]}" + (f" (terminated after {grace:.0f} s)" if pid in survivors else "")
        for pid, cmd in sorted(first.items())
    ]


def _lines(proc: subprocess.Popen[str], timeout: float) -> Iterator[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        yield line
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break


# --- listeners and probes -----------------------------------------------------------------

# Accepts and closes TCP connections on every ``[addr:]port`` argument (one process, no
# threads: cheap in a TCG guest). Ports that are taken are reported and skipped.
LISTENER = r"""
import os, selectors, socket, sys
args = sys.argv[1:]
if args[:1] == ["--pidfile"]:
    with open(args[1], "w") as fh:
        fh.write(f"{os.getpid()}\n")
    args = args[2:]
sel = selectors.DefaultSelector()
for arg in args:
    addr, _, port = arg.rpartition(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((addr or "0.0.0.0", int(port)))
    except OSError as exc:
        print(f"skip {arg}: {exc}", flush=True)
        continue
    s.listen(64)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    print(f"listening {arg}", flush=True)
while True:
    for key, _ in sel.select():
        try:
            conn, _ = key.fileobj.accept()
            conn.close()
        except OSError:
            pass
"""

# TCP connect to every ``addr:port`` argument in parallel; prints ``addr port state`` with
# state open | refused | timeout | error:<reason>.
PROBER = r"""
import concurrent.futures, socket, sys
wait = float(sys.argv[1])
def probe(target):
    addr, _, port = target.rpartition(":")
    s = socket.socket()
    s.settimeout(wait)
    try:
        s.connect((addr, int(port)))
        return f"{addr} {port} open"
    except socket.timeout:
        return f"{addr} {port} timeout"
    except ConnectionRefusedError:
        return f"{addr} {port} refused"
    except OSError:
        return f"{addr} {port} error"
    finally:
        s.close()
with concurrent.futures.ThreadPoolExecutor(64) as pool:
    for line in pool.map(probe, sys.argv[2:]):
        print(line, flush=True)
"""

GUEST_LISTENER = "/tmp/tenancy-listen.py"
GUEST_PIDFILE = "/tmp/tenancy-listen.pid"


def start_guest_listeners(copy: SiteCopy, address: str, ports: list[int]) -> list[int]:
    """Start (once) a root listener on ``ports`` in the guest; returns the ports it listens on.

    The listener is detached (setsid, nohup) so it outlives the SSH session; a running
    one (pid file naming a live listener) is kept, so this is safe to repeat.
    """
    wanted = " ".join(str(p) for p in ports)
    script = (
        f"cat > {GUEST_LISTENER} && "
        f'if ! grep -qs tenancy-listen /proc/"$(cat {GUEST_PIDFILE} 2>/dev/null)"/cmdline; '
        "then "
        f"sudo setsid nohup python3 {GUEST_LISTENER} --pidfile {GUEST_PIDFILE} {wanted} "
        "> /tmp/tenancy-listen.log 2>&1 < /dev/null & fi"
    )
    argv = ["ssh", *SSH_OPTS, "-i", str(copy.key), f"ops@{address}", script]
    for attempt in range(3):  # exit 255: SSH itself failed (load), the script did not run
        if attempt:
            time.sleep(5)
        started = subprocess.run(
            argv, input=LISTENER, capture_output=True, text=True, timeout=90, check=False
        )
        if started.returncode != 255:
            break
    if started.returncode != 0:
        raise AssertionError(f"listener on {address}: {started.stderr.strip()}")
    deadline = time.monotonic() + 60
    listening: set[int] = set()
    while time.monotonic() < deadline:
        out = ssh(copy, address, "ss -Hltn", timeout=30)
        listening = set()
        for line in (out.stdout or "").splitlines():
            fields = line.split()
            if len(fields) >= 4:
                port = fields[3].rpartition(":")[2]
                if port.isdigit():
                    listening.add(int(port))
        if set(ports) <= listening:
            break
        time.sleep(2)
    return sorted(listening & set(ports))


def probe_from_guest(
    copy: SiteCopy, address: str, targets: list[tuple[str, int]], wait: int = 3
) -> dict[tuple[str, int], str]:
    """``nc -z`` from the guest to every target in parallel: open | refused | timeout."""
    lines = [
        f'p() {{ out=$(nc -z -v -w {wait} "$1" "$2" 2>&1); rc=$?; echo "$1 $2 $rc" $out; }}',
        *(f"p {addr} {port} &" for addr, port in targets),
        "wait",
    ]
    out = ssh(copy, address, "\n".join(lines), timeout=120)
    if out.returncode not in (0, 1):
        raise AssertionError(f"probes from {address} failed: {out.stderr.strip()}")
    results: dict[tuple[str, int], str] = {}
    for line in (out.stdout or "").splitlines():
        fields = line.split(None, 3)
        if len(fields) < 3 or not fields[1].isdigit():
            continue
        rest = fields[3] if len(fields) > 3 else ""
        if fields[2] == "0":
            state = "open"
        elif "refused" in rest:
            state = "refused"
        else:
            state = "timeout"
        results[(fields[0], int(fields[1]))] = state
    missing = [t for t in targets if t not in results]
    if missing:
        raise AssertionError(f"probes from {address}: no answer for {missing}: {out.stdout}")
    return results


def netns_argv(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def probe_from_host(
    python: str, netns: str | None, targets: list[tuple[str, int]], wait: int = 3
) -> dict[tuple[str, int], str]:
    """TCP connects from this host (``netns`` None) or from a stand-in namespace."""
    pairs = [f"{a}:{p}" for a, p in targets]
    argv = [*netns_argv(netns), python, "-c", PROBER, str(wait), *pairs]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise AssertionError(f"probes from {netns or 'host'} failed: {out.stderr.strip()}")
    results: dict[tuple[str, int], str] = {}
    for line in out.stdout.splitlines():
        addr, port, state = line.split(None, 2)
        results[(addr, int(port))] = state
    return results


def start_host_listener(python: str, netns: str | None, binds: list[str]) -> subprocess.Popen[str]:
    """A listener on this host or in a namespace; the caller stops it (``terminate``)."""
    proc = subprocess.Popen(
        [*netns_argv(netns), python, "-u", "-c", LISTENER, *binds],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for _ in binds:
        line = proc.stdout.readline()
        if not line:
            break
    return proc


def waive_baseline(copy: SiteCopy, tenants: list[str], profile: str = "baseline") -> list[str]:
    """Waive every control of ``profile`` for ``tenants`` in the copy (a waiver file).

    The program applies the security baseline to every tenant (PolicyRun); with
    the controls waived the run still happens (SSH, facts) but changes nothing
    in the guests, so a test of the host firewall layers sees only those layers
    and does not spend ~5 minutes of TCG per VM hardening. Returns the controls.
    """
    catalogue = yaml.safe_load((copy.root / "policies" / "catalogue.yaml").read_text())
    profiles = catalogue.get("profiles") or {}
    controls: list[str] = []
    todo = [profile]
    while todo:
        name = todo.pop()
        entry = profiles.get(name) or {}
        controls += [c for c in entry.get("controls") or [] if c not in controls]
        todo += list(entry.get("extends") or [])
    expires = datetime.date.today() + datetime.timedelta(days=7)  # dumped as a YAML date
    doc = {
        "apiVersion": "tenancy/v1",
        "kind": "WaiverList",
        "waivers": [
            {
                "control": control,
                "tenant": tenant,
                "justification": "integration test of the host firewall layers "
                "(tests/integration/test_site_local.py); the baseline has its own suite",
                "approved_by": "tests/integration",
                "expires": datetime.date.fromordinal(expires.toordinal()),  # no YAML alias
            }
            for tenant in tenants
            for control in controls
        ],
    }
    waivers = copy.root / "policies" / "waivers"
    waivers.mkdir(parents=True, exist_ok=True)
    (waivers / f"integration-{copy.site}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return controls


@contextlib.contextmanager
def site_lock(
    site: str, timeout: float = 3600, directory: Path = Path("/run/lock")
) -> Iterator[float]:
    """Hold the machine-wide lock of a test site (yields the seconds waited for it).

    Two runs of the same site (a developer's and a CI clone's, say) share libvirt
    names, bridges and CIDRs: the second one's leftover sweep removes the first
    one's machines and each one's SSH reaches the other's VMs (seen: "Permission
    denied (publickey)" for 900 s). The lock makes the second run wait.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tenancy-{site}.lock"
    start = time.monotonic()
    with path.open("a+") as fh:
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip()
                if time.monotonic() - start > timeout:
                    raise AssertionError(
                        f"site {site} is busy: another run holds {path} ({holder})"
                    ) from None
                if not told:
                    print(f"\n[{site}] waiting for another run ({holder})", flush=True)
                    told = True
                time.sleep(10)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')} in {Path.cwd()}\n")
        fh.flush()
        try:
            yield time.monotonic() - start
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
