"""The language host that lets the real `pulumi up` run stacks/ (tenancy.infra.langhost)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc  # type: ignore[import-untyped,unused-ignore]
import pytest
from google.protobuf import empty_pb2  # type: ignore[import-untyped,unused-ignore]
from pulumi.runtime.proto import language_pb2, language_pb2_grpc

from tenancy.infra.langhost import ProgramTarget, engine_address_from_argv, serve


def _request(**kwargs: object) -> language_pb2.RunRequest:
    info = kwargs.pop("info", None)
    req = language_pb2.RunRequest(**kwargs)  # type: ignore[arg-type]
    if info is not None:
        req.info.CopyFrom(info)
    return req


def test_engine_address_is_last_positional() -> None:
    assert engine_address_from_argv(["127.0.0.1:4000"]) == "127.0.0.1:4000"
    argv = ["--logtostderr", "-v=9", "--tracing", "http://t", "-root=/x", "127.0.0.1:4000"]
    assert engine_address_from_argv(argv) == "127.0.0.1:4000"
    assert engine_address_from_argv([]) == ""
    assert engine_address_from_argv(["-v=3"]) == ""


def test_target_from_program_info(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "__main__.py").write_text("")
    info = language_pb2.ProgramInfo(
        root_directory=str(tmp_path), program_directory=str(stacks), entry_point="."
    )
    target = ProgramTarget.from_request(_request(pwd=str(stacks), info=info), Path("/"))
    assert target.root == tmp_path
    assert target.directory == stacks
    assert target.main_file == stacks / "__main__.py"
    assert target.pwd == stacks


def test_target_from_legacy_fields(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("")
    target = ProgramTarget.from_request(_request(pwd=str(tmp_path), program="prog.py"), Path("/"))
    assert target.main_file == tmp_path / "prog.py"
    assert target.directory == tmp_path
    assert target.root == tmp_path


def test_target_defaults_to_cwd(tmp_path: Path) -> None:
    target = ProgramTarget.from_request(_request(), tmp_path)
    assert target.main_file == tmp_path / "__main__.py"


@pytest.fixture
def stub() -> Iterator[language_pb2_grpc.LanguageRuntimeStub]:
    server, port = serve("127.0.0.1:1")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield language_pb2_grpc.LanguageRuntimeStub(channel)
    finally:
        channel.close()
        server.stop(grace=None)


def test_protocol_answers(stub: language_pb2_grpc.LanguageRuntimeStub) -> None:
    stub.Handshake(language_pb2.LanguageHandshakeRequest(engine_address="127.0.0.1:2"))
    assert stub.GetPluginInfo(empty_pb2.Empty()).version
    assert stub.About(language_pb2.AboutRequest()).executable
    assert list(stub.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest()).packages) == []
    deps = stub.GetProgramDependencies(language_pb2.GetProgramDependenciesRequest()).dependencies
    assert "pulumi" in {d.name for d in deps}
    out = b"".join(
        r.stdout for r in stub.InstallDependencies(language_pb2.InstallDependenciesRequest())
    )
    assert b"python-env" in out
    stub.Cancel(empty_pb2.Empty())


def test_run_reports_missing_program(
    stub: language_pb2_grpc.LanguageRuntimeStub, tmp_path: Path
) -> None:
    resp = stub.Run(_request(pwd=str(tmp_path)))
    assert "no Python program" in resp.error
