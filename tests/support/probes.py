"""Who can open a TCP connection to whom: listeners and connect probes, in guests and on the host.

A guest gets a detached listener (started once over SSH) and runs ``nc -z`` probes;
this host, or a stand-in client's network namespace, runs the same listener and a
parallel connect prober as ``python -c`` scripts. Results are open | refused | timeout.
"""

from __future__ import annotations

import subprocess
import time

from tests.support.guests import ssh
from tests.support.sitecopy import SiteCopy

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
    # exit 255 (SSH itself failed under load, the script did not run) is retried
    started = ssh(copy, address, script, timeout=90, stdin=LISTENER)
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
    """The prefix that runs a command in ``netns`` (none: on this host)."""
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
