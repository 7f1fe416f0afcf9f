"""Pulumi's Python language host, served from the project venv.

The Go `pulumi-language-python` host is not available from the Go module proxy,
so `pulumi up`/`pulumi preview` would have no way to run `stacks/__main__.py`.
This module is that plugin: the CLI starts it (via `tools/pulumi-language-python`)
with the engine address as the last argument, reads the port we print on
stdout and talks the LanguageRuntime gRPC protocol to us. The heavy lifting
(configuring the SDK, running inside a Stack, error reporting) reuses the SDK's
own `pulumi.automation._server.LanguageServer`, the server the Automation API
uses for inline programs; we only point it at the project's program on disk.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import queue
import runpy
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import grpc  # type: ignore[import-untyped,unused-ignore]
from google.protobuf import empty_pb2  # type: ignore[import-untyped,unused-ignore]
from pulumi.automation._server import LanguageServer
from pulumi.errors import RunError
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2
from pulumi.runtime.settings import SETTINGS

__all__ = [
    "PluginTarget",
    "ProgramTarget",
    "ProjectLanguageServer",
    "engine_address_from_argv",
    "main",
]

_INSTALL_NOTE = (
    b"tenancy: Python dependencies are managed by tools/python-env.sh (make setup); "
    b"nothing to install here.\n"
)


@dataclass(frozen=True)
class ProgramTarget:
    """Where the program lives; resolved once per Run so the program runs like `python dir/`."""

    root: Path
    """Project root (the directory holding Pulumi.yaml)."""
    directory: Path
    """Program directory: put on sys.path so stacks/ can import its sibling modules."""
    main_file: Path
    """The file to execute as `__main__`."""
    pwd: Path
    """Working directory the engine asked for."""

    @classmethod
    def from_request(cls, request: language_pb2.RunRequest, cwd: Path) -> ProgramTarget:
        """Resolve the program from a RunRequest.

        Newer CLIs send `info` (root, program directory, entry point); older ones
        only `pwd` and `program`. Prefer `info`, fall back to the others.
        """
        info = request.info
        pwd = Path(request.pwd) if request.pwd else cwd
        if not pwd.is_absolute():
            pwd = cwd / pwd
        directory = Path(info.program_directory) if info.program_directory else pwd
        if not directory.is_absolute():
            directory = pwd / directory
        root = Path(info.root_directory) if info.root_directory else directory
        entry = info.entry_point or request.program or "."
        target = Path(entry)
        if not target.is_absolute():
            target = directory / target
        if target.is_dir():
            directory = target
            target = target / "__main__.py"
        else:
            directory = target.parent
        return cls(root=root, directory=directory, main_file=target, pwd=pwd)


@dataclass(frozen=True)
class PluginTarget:
    """A plugin written in Python (a policy pack) and how to start it, from a RunPluginRequest."""

    argv: list[str]
    """`python -u <program> ARGS`: the program is a directory with `__main__.py` or a file."""
    cwd: Path
    env: dict[str, str]

    @classmethod
    def from_request(cls, request: language_pb2.RunPluginRequest, cwd: Path) -> PluginTarget:
        """Resolve like the Go host: run the program directory in the venv's interpreter.

        The CLI sends the plugin directory (where PulumiPolicy.yaml lives) as both the
        root and the program directory, the working directory of the deployment as
        `pwd` and the complete environment in `env` (which replaces ours).
        """
        info = request.info
        directory = Path(info.program_directory or info.root_directory or request.pwd or cwd)
        if not directory.is_absolute():
            directory = cwd / directory
        entry = info.entry_point or request.program or "."
        program = directory / entry if not Path(entry).is_absolute() else Path(entry)
        env = dict(os.environ) if not request.env else {}
        for item in request.env:
            key, sep, value = item.partition("=")
            if sep:
                env[key] = value
        pwd = Path(request.pwd) if request.pwd else cwd
        return cls(
            argv=[sys.executable, "-u", str(program), *request.args],
            cwd=pwd if pwd.is_dir() else directory,
            env=env,
        )


def _pump(stream: IO[bytes], kind: str, out: queue.Queue[tuple[str, bytes]]) -> None:
    """Copy a child's pipe into the queue as the bytes come; an empty chunk ends it."""
    while chunk := os.read(stream.fileno(), 65536):
        out.put((kind, chunk))
    out.put((kind, b""))


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGINT (pulumi-policy stops its server on KeyboardInterrupt), then kill."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:  # pragma: no cover - exited in between
        pass


def _user_traceback(exc: BaseException, program_dir: Path) -> str:
    """Format `exc` starting at the first frame of the user's program, like the Go host does."""
    frames = traceback.extract_tb(exc.__traceback__)
    prefix = str(program_dir)
    for index, frame in enumerate(frames):
        if frame.filename.startswith(prefix):
            lines = traceback.format_list(frames[index:])
            lines.extend(traceback.format_exception_only(type(exc), exc))
            return "Traceback (most recent call last):\n" + "".join(lines)
    return "".join(traceback.format_exception(exc))


def _configured_virtualenv(request: language_pb2.RunRequest, root: Path) -> Path | None:
    """The `virtualenv` runtime option of Pulumi.yaml, made absolute against the project root."""
    options = request.info.options
    if "virtualenv" not in options.fields:
        return None
    raw = options.fields["virtualenv"].string_value
    if not raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() else root / path


class ProjectLanguageServer(LanguageServer):
    """LanguageRuntime for `pulumi up`: the SDK's inline server, pointed at a program on disk."""

    def __init__(self, engine_address: str) -> None:
        super().__init__(self._run_program)
        self.engine_address = engine_address
        self._target: ProgramTarget | None = None
        self._argv: list[str] = []

    # --- protocol -------------------------------------------------------------------------

    def Handshake(  # noqa: N802 - gRPC method name
        self, request: language_pb2.LanguageHandshakeRequest, context: grpc.ServicerContext
    ) -> language_pb2.LanguageHandshakeResponse:
        """Accept the engine address when attached (PULUMI_DEBUG_LANGUAGES) instead of argv."""
        if request.engine_address:
            self.engine_address = request.engine_address
        return language_pb2.LanguageHandshakeResponse()

    def GetPluginInfo(  # noqa: N802 - gRPC method name
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> plugin_pb2.PluginInfo:
        """Report the SDK version so `pulumi about` shows something meaningful."""
        return plugin_pb2.PluginInfo(version=_version("pulumi"))

    def InstallDependencies(  # noqa: N802 - gRPC method name
        self, request: language_pb2.InstallDependenciesRequest, context: grpc.ServicerContext
    ) -> Iterator[language_pb2.InstallDependenciesResponse]:
        """`pulumi install` must not pip-install: the venv is pinned and built by our tools."""
        yield language_pb2.InstallDependenciesResponse(stdout=_INSTALL_NOTE)

    def GetProgramDependencies(  # noqa: N802 - gRPC method name
        self, request: language_pb2.GetProgramDependenciesRequest, context: grpc.ServicerContext
    ) -> language_pb2.GetProgramDependenciesResponse:
        """List the venv's distributions for `pulumi about`."""
        seen: dict[str, tuple[str, str]] = {}
        for dist in importlib.metadata.distributions():
            name = dist.name
            if name:
                seen.setdefault(name.lower(), (name, dist.version))
        deps = [
            language_pb2.DependencyInfo(name=name, version=version)
            for _, (name, version) in sorted(seen.items())
        ]
        return language_pb2.GetProgramDependenciesResponse(dependencies=deps)

    def Cancel(  # noqa: N802 - gRPC method name
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        """Nothing to cancel out of band: the CLI stops us with SIGINT afterwards."""
        return empty_pb2.Empty()

    def RunPlugin(  # noqa: N802 - gRPC method name
        self, request: language_pb2.RunPluginRequest, context: grpc.ServicerContext
    ) -> Iterator[language_pb2.RunPluginResponse]:
        """Start a Python plugin (`pulumi preview --policy-pack DIR`) and stream its output.

        The CLI reads the plugin's gRPC port from the first stdout line we relay, talks
        to the plugin directly, and cancels this call when it is done with it: the
        child is then interrupted (and killed if it lingers).
        """
        target = PluginTarget.from_request(request, Path.cwd())
        proc = subprocess.Popen(
            target.argv,
            cwd=target.cwd,
            env=target.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        context.add_callback(lambda: _stop(proc))
        chunks: queue.Queue[tuple[str, bytes]] = queue.Queue()
        assert proc.stdout is not None and proc.stderr is not None
        for kind, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            threading.Thread(target=_pump, args=(stream, kind, chunks), daemon=True).start()
        open_streams = 2
        while open_streams:
            kind, chunk = chunks.get()
            if not chunk:
                open_streams -= 1
            elif kind == "stdout":
                yield language_pb2.RunPluginResponse(stdout=chunk)
            else:
                yield language_pb2.RunPluginResponse(stderr=chunk)
        yield language_pb2.RunPluginResponse(exitcode=proc.wait())

    def Run(  # noqa: N802 - gRPC method name
        self, request: language_pb2.RunRequest, context: grpc.ServicerContext
    ) -> language_pb2.RunResponse:
        """Run the project's program through the SDK's inline server.

        The inline server takes the engine address from `args[0]` (that is how
        the Automation API passes it), so we hand it a copy of the request with
        our engine address there and keep the real args for the program's argv.
        """
        target = ProgramTarget.from_request(request, Path.cwd())
        if not target.main_file.is_file():
            return language_pb2.RunResponse(
                error=f"tenancy langhost: no Python program at {target.main_file}"
            )
        venv = _configured_virtualenv(request, target.root)
        if venv is not None and venv.resolve() != Path(sys.prefix).resolve():
            print(
                f"tenancy langhost: warning: Pulumi.yaml names virtualenv {venv}, "
                f"but the program runs in {sys.prefix} (set by the launcher)",
                file=sys.stderr,
                flush=True,
            )
        self._target = target
        self._argv = [str(target.main_file), *request.args]

        inline = language_pb2.RunRequest()
        inline.CopyFrom(request)
        del inline.args[:]
        inline.args.append(self.engine_address)
        os.chdir(target.pwd)
        response: language_pb2.RunResponse = super().Run(inline, context)  # type: ignore[no-untyped-call]
        if response.error:
            # The inline server has already logged the error through the engine;
            # `bail` tells the CLI not to print it a second time.
            return language_pb2.RunResponse(bail=True)
        return response

    # --- program --------------------------------------------------------------------------

    def _run_program(self) -> None:
        """Execute `<program dir>/__main__.py` as `__main__`, as `python <dir>` would."""
        target = self._target
        if target is None:  # pragma: no cover - Run always sets it
            raise RunError("tenancy langhost: Run without a program")
        # The inline server does not pass the root directory on; the SDK reads it here.
        SETTINGS.root_directory = str(target.root)
        directory = str(target.directory)
        if directory not in sys.path:
            # Permanently (not just during run_path): resources resolve lazily and
            # may import the program's sibling modules after run_path returns.
            sys.path.insert(0, directory)
        sys.argv = list(self._argv)
        try:
            runpy.run_path(str(target.main_file), run_name="__main__")
        except (RunError, grpc.RpcError):
            raise
        except Exception as exc:
            raise RunError(
                "Program failed with an unhandled exception:\n"
                + _user_traceback(exc, target.directory)
            ) from exc


def _version(distribution: str) -> str:
    """Installed version of `distribution`, or empty when unknown."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def engine_address_from_argv(argv: Sequence[str]) -> str:
    """The engine address: the CLI passes it as the last positional argument.

    Flags before it (`--logtostderr`, `-v=9`, `--tracing URL`, `-root=...`, ...)
    are the Go host's and are ignored; a flag value can never be last.
    """
    if argv and not argv[-1].startswith("-"):
        return argv[-1]
    return ""


def serve(engine_address: str, host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    """Start the gRPC server on a free port; split from main() so tests can drive it."""
    # A policy pack's RunPlugin holds a worker for the whole deployment, next to Run.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=_GRPC_CHANNEL_OPTIONS)
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(
        ProjectLanguageServer(engine_address), server
    )
    port: int = server.add_insecure_port(f"{host}:0")
    server.start()
    return server, port


def main(argv: Sequence[str] | None = None) -> int:
    """Plugin entry point: print the port on stdout, serve until the CLI stops us."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print("usage: pulumi-language-python [flags ignored] ENGINE_ADDRESS")
        return 0
    # Anything the program prints after the port line is shown by the CLI;
    # line buffering keeps it in order with the engine's own messages.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    server, port = serve(engine_address_from_argv(args))

    def _stop(signum: int, frame: FrameType | None) -> Any:
        """The CLI sends SIGINT (then SIGKILL) when it is done with us."""
        server.stop(grace=None)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(port, flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
