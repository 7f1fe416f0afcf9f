"""What an in-process ``tenancy`` run gave back: its exit code and captured output."""

from __future__ import annotations


class CliResult:
    """Exit code, stdout and stderr of one ``tenancy ARGS`` (the ``cli`` fixture)."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"
