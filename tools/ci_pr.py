"""Glue of the tenant pull-request check: pull-request files as data, never as code.

``.github/workflows/tenant-pr.yml`` runs this file from the base branch's checkout.
The pull request's commit is only read through git (``ls-tree``/``cat-file``/``diff``,
NUL-separated): its regular tenant files are copied into the base checkout's
``tenants/``, anything else (symlinks, submodules, names with control or unusual
characters, oversized blobs) is refused without being read. Every string that came
from the pull request is escaped for where it goes: workflow-command annotations,
the job log (between ``::stop-commands::`` markers) and the markdown comment (inside
a code fence longer than any backtick run it holds).

    python tools/ci_pr.py export --repo PR --base SHA --head SHA --dest tenants --report R
    python tools/ci_pr.py ledgers --repo PR --head SHA --stacks stacks --keep BASE_LEDGERS
    python tools/ci_pr.py sites --report R --old OLD_TENANTS --new tenants
    python tools/ci_pr.py annotate --validate validate.json --report R
    python tools/ci_pr.py quote FILE...
    python tools/ci_pr.py comment --report R --validate-code N ... > comment.md
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tenancy.contract.text import plain  # the base branch's, installed by the workflow

TENANTS = "tenants"
TENANT_SUFFIXES = (".yaml", ".yml")
EXPORT_MAX_BYTES = 2 << 20
"""Larger blobs are refused unread; smaller ones meet the loader's own (lower) size limit."""
MAX_FILES = 5000
SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
SHA = re.compile(r"[0-9a-f]{40}")
SITE = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
MAX_COMMENT = 60_000
"""What the comment body may take (GitHub refuses more than 65,536 characters)."""
MAX_LISTED = 20


# --------------------------------------------------------------------------- escaping


def escape_text(text: str, keep_newlines: bool = True) -> str:
    """Control, format (bidi) and separator characters as visible ``\\xNN``/``\\uNNNN``."""
    return plain(text, keep_newlines)


def escape_name(name: str) -> str:
    """A file name on one line: newlines and tabs escaped too."""
    return escape_text(name, keep_newlines=False)


def fence(text: str, info: str = "text") -> str:
    """``text`` as a fenced code block no line of it can close (nor turn into markup)."""
    body = escape_text(text).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    marks = "`" * max(3, longest + 1)
    return f"{marks}{info}\n{body}\n{marks}\n"


def escape_data(text: str) -> str:
    """A workflow command's message (GitHub's toolkit rules: %, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: also ':' and ',', which end a property."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    kind: str, message: str, file: str | None = None, line: int = 0, col: int = 0
) -> str:
    """One ``::error``/``::warning`` line; every property and the message escaped."""
    if kind not in ("error", "warning", "notice"):
        raise ValueError(f"unknown annotation kind {kind!r}")
    props = []
    if file is not None:
        props.append(f"file={escape_property(file)}")
        props.append(f"line={max(line, 1)}")
        props.append(f"col={max(col, 1)}")
    where = f" {','.join(props)}" if props else ""
    return f"::{kind}{where}::{escape_data(message)}"


def quoted(text: str, token: str | None = None) -> str:
    """``text`` for the job log: workflow commands stopped around it, controls escaped."""
    body = escape_text(text)
    while token is None or token in body:
        token = secrets.token_hex(16)
    if body and not body.endswith("\n"):
        body += "\n"
    return f"::stop-commands::{token}\n{body}::{token}::\n"


# --------------------------------------------------------------------------- git, as data


@dataclass(frozen=True)
class Entry:
    mode: str
    kind: str
    oid: str
    size: int | None
    path: str


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="surrogateescape")


def parse_ls_tree(data: bytes) -> list[Entry]:
    """``git ls-tree -r -l -z`` output: ``<mode> <type> <oid> <size>\\t<path>\\0``."""
    entries = []
    for record in data.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, oid, size = meta.decode("ascii").split()
        entries.append(Entry(mode, kind, oid, int(size) if size.isdigit() else None, _decode(path)))
    return entries


def parse_name_status(data: bytes) -> list[tuple[str, str]]:
    """``git diff -z --name-status --no-renames`` output: ``<status>\\0<path>\\0`` pairs."""
    fields = data.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    if len(fields) % 2:
        raise ValueError("git diff -z --name-status: odd number of fields")
    return [(_decode(fields[i])[:1], _decode(fields[i + 1])) for i in range(0, len(fields), 2)]


def _git(repo: Path, *args: str) -> bytes:
    cmd = ["git", "-C", str(repo), "-c", "core.quotePath=false", *args]
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def name_problem(path: str) -> str | None:
    """Why a path from the pull request is refused by name, or None."""
    parts = path.split("/")
    if any(not SAFE_COMPONENT.fullmatch(p) for p in parts):
        return "file name with characters outside A-Z a-z 0-9 . _ - (refused without reading)"
    return None


@dataclass
class Report:
    """What ``export`` did; names are listed only when safe, else escaped."""

    exported: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    outside_count: int = 0

    def refuse(self, path: str, reason: str) -> None:
        self.refused.append({"path": escape_name(path), "reason": reason})

    @classmethod
    def load(cls, path: Path) -> Report:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return cls(**data)


def _tenant_entry(report: Report, entry: Entry) -> bool:
    """Whether ``entry`` is a tenant file to copy; records refusals and ignored files."""
    problem = name_problem(entry.path)
    if problem:
        report.refuse(entry.path, problem)
        return False
    if entry.mode not in ("100644", "100755") or entry.kind != "blob":
        what = {"120000": "symlink", "160000": "submodule"}.get(entry.mode, f"mode {entry.mode}")
        report.refuse(entry.path, f"not a regular file ({what}): refused without reading")
        return False
    name = entry.path.removeprefix(f"{TENANTS}/")
    if "/" in name or not name.endswith(TENANT_SUFFIXES):
        report.ignored.append(entry.path)  # not a tenant file: tenancy never reads it
        return False
    if entry.size is None or entry.size > EXPORT_MAX_BYTES:
        report.refuse(entry.path, f"larger than {EXPORT_MAX_BYTES} bytes: refused without reading")
        return False
    return True


def export(repo: Path, base: str, head: str, dest: Path) -> Report:
    """Copy the regular tenant files of ``head`` into the new directory ``dest``."""
    for rev in (base, head):
        if not SHA.fullmatch(rev):
            raise ValueError(f"not a full commit id: {rev!r}")
    report = Report()
    entries = parse_ls_tree(_git(repo, "ls-tree", "-r", "-l", "-z", head, "--", f"{TENANTS}/"))
    if len(entries) > MAX_FILES:
        report.refuse(f"{TENANTS}/", f"more than {MAX_FILES} files: nothing exported")
        entries = []
    dest.mkdir(mode=0o755)
    for entry in entries:
        if _tenant_entry(report, entry):
            if not SHA.fullmatch(entry.oid):
                raise ValueError(f"git ls-tree: unexpected object id {entry.oid!r}")
            blob = _git(repo, "cat-file", "blob", entry.oid)
            with (dest / Path(entry.path).name).open("xb") as out:
                out.write(blob)
            report.exported.append(entry.path)
    diff = _git(repo, "diff", "-z", "--name-status", "--no-renames", base, head, "--")
    for status, path in parse_name_status(diff):
        if not path.startswith(f"{TENANTS}/"):
            report.outside_count += 1
            if len(report.outside) < MAX_LISTED:
                report.outside.append(escape_name(path))
        elif name_problem(path):
            if status == "D":  # a present one is refused above already
                report.refuse(path, "deleted file with an unusual name")
        elif status == "D":
            report.deleted.append(path)
        else:
            report.changed.append(path)
    return report


LEDGER = re.compile(r"ledger\.([a-z]([a-z0-9-]{0,61}[a-z0-9])?)\.yaml")


def export_ledgers(repo: Path, head: str, stacks: Path, keep: Path) -> list[str]:
    """Swap the base's ledgers for the pull request's: it carries its own allocation.

    The base's ``stacks/ledger.<site>.yaml`` files move to ``keep`` (for the
    ``--base-ledger`` check); the pull request's regular ledger blobs take their place.
    Returns the refusals (links, oversized blobs), which fail the check.
    """
    if not SHA.fullmatch(head):
        raise ValueError(f"not a full commit id: {head!r}")
    keep.mkdir(mode=0o755)
    for old in sorted(stacks.glob("ledger.*.yaml")):
        old.replace(keep / old.name)
    refused: list[str] = []
    for entry in parse_ls_tree(_git(repo, "ls-tree", "-l", "-z", head, "--", "stacks/")):
        name = entry.path.removeprefix("stacks/")
        if not LEDGER.fullmatch(name):
            continue
        if entry.mode not in ("100644", "100755") or entry.kind != "blob":
            refused.append(f"{entry.path}: not a regular file: refused without reading")
        elif entry.size is None or entry.size > EXPORT_MAX_BYTES or not SHA.fullmatch(entry.oid):
            refused.append(f"{entry.path}: larger than {EXPORT_MAX_BYTES} bytes: refused")
        else:
            (stacks / name).write_bytes(_git(repo, "cat-file", "blob", entry.oid))
    return refused


def touched_sites(report: Report, old: Path, new: Path) -> list[str]:
    """Sites of the changed files (before and after) and of the deleted ones (before)."""
    from tenancy.contract.loader import load_tenant  # the base branch's loader and its limits

    sites: set[str] = set()
    wanted = [(new, p) for p in report.changed]
    wanted += [(old, p) for p in [*report.changed, *report.deleted]]
    for folder, path in wanted:
        file = folder / Path(path).name
        if not file.is_file() or file.is_symlink() or file.parent.resolve() != folder.resolve():
            continue
        loaded, _ = load_tenant(file, path)  # a broken file: validation reports it
        if loaded is not None and SITE.fullmatch(loaded.model.spec.site):
            sites.add(loaded.model.spec.site)
    return sorted(sites)


# --------------------------------------------------------------------------- outputs


def annotation_lines(validate: dict[str, Any], report: Report) -> Iterable[str]:
    """Inline annotations for the validate JSON's problems and for refused files."""
    for item in report.refused:
        yield annotation("error", f"{item['reason']}: {item['path']}")
    problems = [*validate.get("errors", []), *validate.get("warnings", [])]
    for item in problems[:50]:
        kind = "error" if item.get("severity") == "error" else "warning"
        text = f"{item.get('field') or 'document'}: {item.get('message', '')}"
        if item.get("expected"):
            text += f"; expected {item['expected']}"
        if item.get("found"):
            text += f"; found {item['found']}"
        file = str(item.get("file") or "")
        line, col = _int(item.get("line")), _int(item.get("column"))
        yield annotation(kind, escape_text(text), file or None, line, col)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[:limit].rsplit("\n", 1)[0]
    rest = text[len(head) :].count("\n")
    return f"{head}\n... {rest} more line(s): see the check's job log\n"


@dataclass(frozen=True)
class CommentInput:
    report: Report
    validate_code: int | None
    validate_text: str
    plans: str
    plan_errors: str
    sites: Sequence[str]
    head: str


def comment(data: CommentInput) -> str:
    """The pull-request comment: verdict, refusals, errors or plans; PR text only fenced."""
    parts: list[str] = []
    report = data.report
    valid = data.validate_code == 0 and not report.refused and not data.plan_errors
    if valid:
        parts.append("### :white_check_mark: Tenant files are valid\n")
        sites = ", ".join(f"`{s}`" for s in data.sites if SITE.fullmatch(s)) or "none"
        parts.append(
            f"What this pull request changes on the site(s) it touches: {sites} "
            "(against the base branch; the full plan of each site follows its changes).\n"
        )
        if len(data.plans) <= MAX_COMMENT // 2:
            parts.append(data.plans.rstrip("\n") + "\n")
        else:
            parts.append(
                "The plan is too long for a comment: run `tenancy plan --site <site> "
                "--format markdown` on this branch to read it.\n"
            )
    else:
        parts.append("### :x: Tenant files are invalid: nothing can be planned\n")
    if report.refused:
        parts.append("Files refused without reading:\n")
        lines = [f"{r['path']}: {r['reason']}" for r in report.refused[:MAX_LISTED]]
        parts.append(fence("\n".join(lines)))
    if data.validate_code is None:
        parts.append("Validation did not run: see the check's job log.\n")
    elif data.validate_code != 0:
        parts.append(
            "Each line names the file, line and field, what was expected and what was found.\n"
        )
        parts.append(fence(_cut(data.validate_text, MAX_COMMENT // 2)))
    if data.plan_errors:
        parts.append("Planning failed:\n")
        parts.append(fence(_cut(data.plan_errors, MAX_COMMENT // 8)))
    if report.outside_count:
        parts.append(
            f"This pull request also changes {report.outside_count} file(s) outside "
            "`tenants/`: they are neither validated nor used here and need a review by ops.\n"
        )
        parts.append(fence("\n".join(report.outside)))
    if SHA.fullmatch(data.head):
        parts.append(f"<sub>commit {data.head}</sub>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- command line


def _read(path: str | None) -> str:
    if not path or not Path(path).is_file():
        return ""
    return Path(path).read_text(encoding="utf-8", errors="replace")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="copy the pull request's regular tenant files")
    p.add_argument("--repo", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--head", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--report", required=True)
    p = sub.add_parser("ledgers", help="put the pull request's ledgers in place of the base's")
    p.add_argument("--repo", required=True)
    p.add_argument("--head", required=True)
    p.add_argument("--stacks", required=True)
    p.add_argument("--keep", required=True)
    p = sub.add_parser("sites", help="the sites the changed tenant files belong to")
    p.add_argument("--report", required=True)
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p = sub.add_parser("annotate", help="workflow-command annotations")
    p.add_argument("--validate", required=True)
    p.add_argument("--report", required=True)
    p = sub.add_parser("quote", help="print files for the job log, commands stopped")
    p.add_argument("files", nargs="+")
    p = sub.add_parser("comment", help="the markdown comment body")
    p.add_argument("--report", required=True)
    p.add_argument("--validate-code", default="")
    p.add_argument("--validate-text")
    p.add_argument("--plans")
    p.add_argument("--plan-errors")
    p.add_argument("--sites", default="")
    p.add_argument("--head", default="")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "export":
        report = export(Path(args.repo), args.base, args.head, Path(args.dest))
        Path(args.report).write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
        print(len(report.refused))
    elif args.command == "ledgers":
        refused = export_ledgers(Path(args.repo), args.head, Path(args.stacks), Path(args.keep))
        for line in refused:
            print(escape_name(line), file=sys.stderr)
        print(len(refused))
    elif args.command == "sites":
        print(
            " ".join(touched_sites(Report.load(Path(args.report)), Path(args.old), Path(args.new)))
        )
    elif args.command == "annotate":
        text = _read(args.validate)
        validate = json.loads(text) if text.strip() else {}
        for line in annotation_lines(validate, Report.load(Path(args.report))):
            print(line)
    elif args.command == "quote":
        for name in args.files:
            sys.stdout.write(quoted(_read(name)))
    else:
        code = int(args.validate_code) if args.validate_code.isdigit() else None
        data = CommentInput(
            report=Report.load(Path(args.report)) if Path(args.report).is_file() else Report(),
            validate_code=code,
            validate_text=_read(args.validate_text),
            plans=_read(args.plans),
            plan_errors=_read(args.plan_errors),
            sites=args.sites.split(),
            head=args.head,
        )
        sys.stdout.write(comment(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
