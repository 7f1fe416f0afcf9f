"""Safe YAML loading that remembers where every value came from: the one located reader.

Only plain YAML (safe_load semantics) is accepted. Anchors/aliases, explicit
tags and oversized files are refused up front and duplicate keys reported, so
alias bombs and object-construction tags never reach the models; so is a tenant
firewall listing more distinct ports than its rule budget holds, while it is read. Tenant, site
and ledger files and the policy catalogue and waivers all come through here.

This module reads: bytes to text (size, encoding) and every way that fails,
worded as located errors. The parsing is :mod:`.yamlguard`, the conversion to
data :mod:`.yamltree`, and what callers get back, :class:`~.yamldoc.Document`,
lives in :mod:`.yamldoc`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import yaml
from yaml.reader import ReaderError

from tenancy.contract.errors import Location, SpecError
from tenancy.contract.yamldoc import Document, format_path
from tenancy.contract.yamlguard import BoundError, compose
from tenancy.contract.yamltree import to_document

MAX_BYTES = 1 << 20  # 1 MiB: a tenant file is a page of YAML, not a data dump


class LoadError(Exception):
    """The file cannot be turned into a document; carries located errors."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class UnreadableFileError(LoadError):
    """The file cannot be read at all; ``reason`` is the system's words (``strerror``).

    A subclass, not a message to parse, so a caller with its own wording (the
    policy catalogue's ``cannot read: ...``) can tell this failure apart.
    """

    def __init__(self, error: SpecError, reason: str) -> None:
        super().__init__([error])
        self.reason = reason


class MalformedYamlError(LoadError):
    """The text is not one well-formed YAML document (or breaks the size bounds).

    ``problem`` is the parser's own words without the context the located error
    adds (``while parsing a flow sequence``): the policy catalogue's wording.
    """

    def __init__(self, error: SpecError, problem: str) -> None:
        super().__init__([error])
        self.problem = problem


def _too_large(file: str, size: int) -> LoadError:
    return LoadError(
        [
            SpecError(
                Location(file, 1, 1),
                "",
                "file too large",
                f"at most {MAX_BYTES} bytes",
                f"{size} bytes",
            )
        ]
    )


def _reader_location(exc: ReaderError, text: str) -> tuple[int, int]:
    position = exc.position if isinstance(exc.position, int) else 0
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _malformed(exc: yaml.YAMLError, text: str, file: str) -> MalformedYamlError:
    """The located error for text PyYAML cannot parse."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "malformed YAML"
        detail = f"{exc.problem} ({exc.context})" if exc.problem and exc.context else problem
        error = SpecError(Location(file, line, col), "", f"malformed YAML: {detail}")
        return MalformedYamlError(error, problem)
    if isinstance(exc, ReaderError):
        line, col = _reader_location(exc, text)
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        error = SpecError(
            Location(file, line, col),
            "",
            "malformed YAML: character not allowed in YAML text",
            "printable characters",
            f"character #x{code:04x}",
        )
        return MalformedYamlError(error, f"unacceptable character #x{code:04x}: {exc.reason}")
    first = str(exc).splitlines()[0] if str(exc) else "malformed YAML"
    return MalformedYamlError(
        SpecError(Location(file, 1, 1), "", f"malformed YAML: {first}"), first
    )


def load_text(text: str, file: str, *, dates: bool = False) -> Document:
    """Parse ``text``; raise LoadError with located errors on anything unsafe or malformed.

    ``dates``: YAML timestamps become dates instead of staying text (waivers).
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise _too_large(file, size)
    try:
        root, explicit = compose(text)
    except BoundError as exc:  # a bound on what the document holds: at the field's key
        where = Location(file, exc.mark.line + 1, exc.mark.column + 1)
        error = SpecError(where, format_path(exc.path), exc.message, exc.expected, exc.found)
        raise LoadError([error]) from None
    except yaml.YAMLError as exc:
        raise _malformed(exc, text, file) from None
    if root is None:
        raise LoadError(
            [SpecError(Location(file, 1, 1), "", "empty document", "a mapping", "nothing")]
        )
    doc, errors = to_document(root, file, explicit, dates=dates)
    if errors:
        raise LoadError(errors)
    return doc


def load_file(
    path: Path, display: str | None = None, *, dates: bool = False, regular_only: bool = False
) -> Document:
    """Read and parse one YAML file; unreadable or non-UTF-8 files become located errors.

    Only a regular file is read (a FIFO or a device is refused unread, so nothing blocks);
    ``regular_only`` refuses a symlink too, on the open itself (``O_NOFOLLOW``): tenant
    files never point elsewhere, e.g. at the state directory's passphrase.
    """
    name = display or str(path)
    raw = _read_regular(path, name, follow=not regular_only)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(
            [
                SpecError(
                    Location(name, 1, 1),
                    "",
                    "file is not UTF-8 text",
                    found=f"byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                )
            ]
        ) from None
    return load_text(text, name, dates=dates)


def _read_regular(path: Path, name: str, *, follow: bool) -> bytes:
    """The bytes of a regular file of at most MAX_BYTES, checked on the open descriptor."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise _not_regular(name, "a symlink") from None
        error = SpecError(Location(name), "", f"cannot read file: {exc.strerror}")
        raise UnreadableFileError(error, str(exc.strerror)) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(name, "not a regular file")
        if info.st_size > MAX_BYTES:
            raise _too_large(name, info.st_size)
        try:
            raw = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            error = SpecError(Location(name), "", f"cannot read file: {exc.strerror}")
            raise UnreadableFileError(error, str(exc.strerror)) from None
    if len(raw) > MAX_BYTES:  # grew since fstat
        raise _too_large(name, len(raw))
    return raw


def _not_regular(name: str, what: str) -> LoadError:
    return LoadError(
        [
            SpecError(
                Location(name),
                "",
                f"{what}: refused without reading it",
                "a regular file (tenant files are never links, devices or pipes)",
            )
        ]
    )
