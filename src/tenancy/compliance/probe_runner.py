"""Runs a reachability probe: a listener on the destination, a connection from the source.

A probe proves "blocked" only if something listened: the runner starts a
listener for the probe's duration (``nc`` in a guest, Python in a stand-in
namespace), connects from the source and reads what arrived. Guests are
reached through testinfra hosts (the inventory's SSH settings); stand-ins
through ``ip netns exec`` on the auditor's machine, recorded as evidence too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tenancy.compliance.evidence import record
from tenancy.compliance.facts import Output, run
from tenancy.compliance.host import Host, host_name
from tenancy.compliance.probe_results import (
    PROBE_PROTOCOLS,
    connect_result,
    nc_result,
    source_problem,
    why,
)
from tenancy.compliance.probes import Endpoint, Probe

__all__ = ["ProbeRunner"]


class ProbeRunner:
    """Runs a :class:`Probe`: a listener on the destination, a connection from the source."""

    TIMEOUT = 3

    def __init__(self, target_host: Host, host_factory: Callable[[str], Host]) -> None:
        self.target_host = target_host
        self.host_factory = host_factory
        self._received: str | None = ""  # what the last listener got; None: unknown

    # endpoints ---------------------------------------------------------------------

    def _host(self, endpoint: Endpoint) -> Host:
        if endpoint.label == host_name(self.target_host):
            return self.target_host
        return self.host_factory(endpoint.label)

    def _remote(self, endpoint: Endpoint, command: str, sudo: bool = False) -> Output:
        return run(self._host(endpoint), command, sudo=sudo, cache=False)

    @staticmethod
    def _local(argv: list[str], timeout: float = 30, shown: str | None = None) -> Output:
        start = time.monotonic()
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
            out = Output(done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired:
            out = Output(124, "", f"timed out after {timeout} s")
        record(
            "auditor",
            shown or shlex.join(argv),
            out.rc,
            out.stdout,
            out.stderr,
            seconds=time.monotonic() - start,
        )
        return out

    @staticmethod
    def netns_ready(name: str) -> str | None:
        """None when the stand-in namespace can be used, else why not."""
        if os.geteuid() != 0:
            return "probing from a stand-in needs root on the auditor's machine (ip netns exec)"
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        )
        names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
        if name not in names:
            return f"stand-in {name} is not up (tools/standins.sh up)"
        return None

    # listeners ---------------------------------------------------------------------

    @contextlib.contextmanager
    def listening(self, endpoint: Endpoint, proto: str, port: int) -> Iterator[str]:
        """A listener on ``endpoint`` for the duration of the block; yields a handle."""
        if endpoint.kind == "netns":
            with self._netns_listener(endpoint, proto, port) as handle:
                yield handle
        else:
            with self._guest_listener(endpoint, proto, port) as handle:
                yield handle

    @contextlib.contextmanager
    def _netns_listener(self, endpoint: Endpoint, proto: str, port: int) -> Iterator[str]:
        lock_path = Path("/tmp") / f"tenancy-probe-{endpoint.label}-{proto}-{port}.lock"
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            argv = [
                "ip",
                "netns",
                "exec",
                endpoint.label,
                "python3",
                "-c",
                _LISTENER,
                proto,
                str(port),
            ]
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert proc.stdout is not None
            first = proc.stdout.readline().strip()
            shown = shlex.join([*argv[:5], "<listener>", proto, str(port)])
            record("auditor", shown, 0, first, "")
            try:
                yield "netns" if first.startswith("listening") else f"failed: {first}"
            finally:
                proc.terminate()
                try:
                    rest, _ = proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rest, _ = proc.communicate()
                self._received = rest

    @contextlib.contextmanager
    def _guest_listener(self, endpoint: Endpoint, proto: str, port: int) -> Iterator[str]:
        flag = "-Hlun" if proto == "udp" else "-Hltn"
        busy = self._remote(endpoint, f"ss {flag} 'sport = :{port}'")
        if busy.stdout.strip():
            yield "existing"
            return
        out_file = f"/tmp/tenancy-probe-{secrets.token_hex(4)}"
        nc = "nc -lu" if proto == "udp" else "nc -lk"
        start = (
            f"nohup timeout 60 {nc} -p {port} >{out_file} 2>&1 </dev/null & pid=$!; "
            f"for i in $(seq 50); do ss {flag} 'sport = :{port}' | grep -q . && break; "
            f"sleep 0.1; done; ss {flag} 'sport = :{port}' | grep -q . || echo failed; "
            "echo pid=$pid"
        )
        started = self._remote(endpoint, f"sh -c {shlex.quote(start)}", sudo=True)
        ran = started.rc == 0 and "pid=" in started.stdout
        pid = started.stdout.strip().rpartition("pid=")[2]
        try:
            if not ran:  # SSH to the destination failed: nothing listens there
                yield f"failed: the listener command did not run ({why(started)})"
            elif "failed" in started.stdout:
                yield "failed: nc did not listen"
            else:
                yield out_file
        finally:
            self._received = None
            if ran:
                collect = f"kill {pid} 2>/dev/null; cat {out_file}; rm -f {out_file}; true"
                got = self._remote(endpoint, f"sh -c {shlex.quote(collect)}", sudo=True)
                # unread output is unknown, not "nothing arrived"
                self._received = got.stdout if got.rc == 0 else None

    # connections -------------------------------------------------------------------

    def connect(self, probe: Probe) -> str:
        """``open``, ``refused``, ``timeout`` or ``unreachable``; for UDP ``received``/``lost``.

        ``untestable: <why>`` when the probe did not happen (no listener, the
        source could not send, a protocol it cannot test): never a verdict.
        """
        if probe.proto not in PROBE_PROTOCOLS:
            return f"untestable: a probe cannot test {probe.proto} (only tcp and udp)"
        self._received = ""
        token = f"tenancy-probe-{secrets.token_hex(6)}"
        with self.listening(probe.target, probe.proto, probe.port) as handle:
            if probe.proto == "udp" and handle == "existing":
                return "untestable: a service already listens on that UDP port"
            if handle.startswith("failed"):
                return f"untestable: the listener on {probe.target} did not start ({handle})"
            result = self._send(probe, token)
        if result.startswith("untestable") or probe.proto != "udp":
            return result
        if self._received is None:
            return f"untestable: what the listener on {probe.target} received could not be read"
        return "received" if token in self._received else "lost"

    def _send(self, probe: Probe, token: str) -> str:
        source, address, port = probe.source, probe.target.address, probe.port
        if source.kind == "netns":
            argv = ["ip", "netns", "exec", source.label, "python3", "-c", _CONNECT]
            args = [probe.proto, address, str(port), token, str(self.TIMEOUT)]
            shown = shlex.join([*argv[:5], "<connect>", *args])
            return connect_result(self._local([*argv, *args], shown=shown))
        if probe.proto == "udp":
            send = f"printf %s {token} | nc -u -w 1 {address} {port} 2>&1"
            cmd = f"{send}; {send}; echo rc=$?"
            out = self._remote(source, f"sh -c {shlex.quote(cmd)}")
            return source_problem(out) or "sent"
        cmd = f"nc -zv -w {self.TIMEOUT} {address} {port} 2>&1; echo rc=$?"
        return nc_result(self._remote(source, f"sh -c {shlex.quote(cmd)}"))


_LISTENER = r"""
import socket, sys, time
proto, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if kind == socket.SOCK_STREAM:
    s.listen(8)
print("listening", proto, port, flush=True)
s.settimeout(1.0)
deadline = time.time() + 60
while time.time() < deadline:
    try:
        if kind == socket.SOCK_STREAM:
            c, peer = s.accept()
            c.settimeout(1.0)
            try:
                data = c.recv(256)
            except OSError:
                data = b""
            print("accepted", peer[0], data.decode(errors="replace"), flush=True)
            c.close()
        else:
            data, peer = s.recvfrom(256)
            print("datagram", peer[0], data.decode(errors="replace"), flush=True)
    except socket.timeout:
        continue
"""

_CONNECT = r"""
import errno, socket, sys
proto, host, port, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
timeout = float(sys.argv[5])
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(token.encode(), (host, port))
    print("sent")
    sys.exit(0)
try:
    c = socket.create_connection((host, port), timeout=timeout)
    try:
        c.sendall(token.encode())
    except OSError:
        pass
    c.close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
except OSError as exc:
    # only an answer of the network is a result; a local error proves nothing
    answered = exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
    print("unreachable:" if answered else "error:", exc)
    sys.exit(0 if answered else 1)
"""
