"""Compliance results: per-test records -> per control and host results -> JSON and HTML.

The compliance suite (:mod:`tenancy.compliance`) writes one record per test: the
control, the host, the item (one setting, rule or flow), the outcome and the
commands it ran with their output. This module folds them into one result per
control and host, the auditor's vocabulary:

``pass``            every item of the check ran and passed
``fail``            at least one item failed (an expired waiver is a failure too)
``waived``          a valid waiver covers the control on that host
``not-applicable``  the host's profiles do not include the control
``not-tested``      the check never ran, or some of its items did not (e.g. a
                    probe whose stand-in network namespace was down): what was
                    not tested is not proven, whatever the other items found

A required control (in the host's profiles, not validly waived) that is
``fail`` or ``not-tested`` makes the audit fail; what is required is decided
as the suite's gate decides it (:mod:`tenancy.compliance.applicability`). An
item's status is one of the same words (records of older suites say
``skipped`` for ``not-tested``).

Pure functions except :func:`write_manifest` / :func:`verify_manifest`, which
read and write the evidence bundle's ``SHA256SUMS``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from tenancy.compliance.applicability import Applicability, applicability
from tenancy.contract.host_vars import parse_hosts
from tenancy.policy.catalogue import Catalogue
from tenancy.policy.waivers import Waiver
from tenancy.render.env import environment

__all__ = [
    "RESULTS",
    "RESULTS_SCHEMA",
    "build_results",
    "exit_code",
    "failures",
    "render_html",
    "verify_manifest",
    "write_manifest",
]

RESULTS_SCHEMA = "tenancy/audit-results/v1"
#: Result values, in the order the report lists them.
RESULTS = ("pass", "fail", "waived", "not-applicable", "not-tested")
MANIFEST = "SHA256SUMS"


# -- folding records -------------------------------------------------------------------


def _fold(statuses: Sequence[str]) -> str:
    """One result from the items' statuses: a pass needs every item passed."""
    if "fail" in statuses:
        return "fail"
    for word in ("pass", "waived", "not-applicable"):
        if statuses and all(s == word for s in statuses):
            return word
    return "not-tested"


def _evidence_table(
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Unique commands over ``records`` and, per record, the indices of its commands."""
    unique: list[dict[str, Any]] = []
    index: dict[tuple[str, str, str, int], int] = {}
    per_record: list[list[int]] = []
    for rec in records:
        refs: list[int] = []
        for e in rec.get("evidence") or []:
            key = (
                str(e.get("where")),
                str(e.get("command")),
                str(e.get("stdout")),
                int(e.get("rc", 0)),
            )
            if key not in index:
                index[key] = len(unique)
                unique.append(
                    {
                        "where": e.get("where"),
                        "command": e.get("command"),
                        "sudo": bool(e.get("sudo")),
                        "rc": e.get("rc"),
                        "stdout": e.get("stdout", ""),
                        "stderr": e.get("stderr", ""),
                    }
                )
            if index[key] not in refs:
                refs.append(index[key])
        per_record.append(refs)
    return unique, per_record


def build_results(
    records: Sequence[Mapping[str, Any]],
    catalogue: Catalogue,
    waivers: Iterable[Waiver],
    hosts: Mapping[str, Mapping[str, Any]],
    today: date,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``results.json`` document: one result per control and host, with evidence.

    ``hosts`` maps the audited host names to their merged inventory variables
    (read as :class:`~tenancy.contract.host_vars.HostVars`: tenant, profiles,
    address), plus ``lynis`` when measured. Records of other hosts are ignored.
    """
    waiver_list = list(waivers)
    by_key: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for rec in records:
        if rec.get("control") and rec.get("host") in hosts:
            by_key.setdefault((str(rec["control"]), str(rec["host"])), []).append(rec)
    host_vars = parse_hosts(hosts)
    order = sorted(hosts, key=lambda h: (host_vars[h].tenant or "", h))
    results: list[dict[str, Any]] = []
    for name in order:
        tenant = host_vars[name].tenant
        profiles = list(host_vars[name].policy.profiles_or_default())
        for control in catalogue.controls:
            try:
                decision = applicability(
                    catalogue,
                    waiver_list,
                    today,
                    control.id,
                    host=name,
                    tenant=tenant or None,
                    profiles=profiles,
                )
            except KeyError as exc:
                decision = Applicability("required", f"cannot resolve the profiles: {exc}")
            recs = sorted(by_key.get((control.id, name), []), key=lambda r: str(r.get("nodeid")))
            statuses = [str(r.get("status")) for r in recs]
            if recs:
                result = _fold(statuses)
            elif decision.status in ("not-applicable", "waived"):
                result = decision.status
            else:
                result = "not-tested"
            reason = _reason(result, recs, decision)
            evidence, refs = _evidence_table(recs)
            results.append(
                {
                    "control": control.id,
                    "title": control.title,
                    "severity": control.severity,
                    "references": {fw: list(refs) for fw, refs in control.references.items()},
                    "host": name,
                    "tenant": tenant,
                    "result": result,
                    "required": decision.required,
                    "reason": reason,
                    "waiver": decision.waiver,
                    "items": [
                        {
                            "item": r.get("item"),
                            "nodeid": r.get("nodeid"),
                            "status": r.get("status"),
                            "message": r.get("message", ""),
                            "duration": r.get("duration", 0.0),
                            "evidence": ref,
                        }
                        for r, ref in zip(recs, refs, strict=True)
                    ],
                    "evidence": evidence,
                }
            )
    doc: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        **dict(meta or {}),
        "catalogue": {
            "name": catalogue.metadata.name,
            "version": catalogue.metadata.version,
            "frameworks": {
                k: {"title": f.title, "version": f.version} for k, f in catalogue.frameworks.items()
            },
        },
        "controls": [
            {
                "id": c.id,
                "title": c.title,
                "severity": c.severity,
                "check": c.check,
                "profile": _profile_of(catalogue, c.id),
                "references": {fw: list(refs) for fw, refs in c.references.items()},
            }
            for c in catalogue.controls
        ],
        "hosts": [
            {
                "name": name,
                "tenant": host_vars[name].tenant,
                "address": host_vars[name].address,
                "profiles": list(host_vars[name].policy.profiles_or_default()),
                "lynis": hosts[name].get("lynis"),
            }
            for name in order
        ],
        "results": results,
    }
    doc["summary"] = summary(results)
    doc["exit_code"] = exit_code(doc)
    return doc


def _profile_of(catalogue: Catalogue, control: str) -> str | None:
    for name, profile in catalogue.profiles.items():
        if control in profile.controls:
            return name
    return None


def _reason(result: str, recs: Sequence[Mapping[str, Any]], decision: Applicability) -> str:
    if result == "fail":
        failed = [r for r in recs if r.get("status") == "fail"]
        first = str(failed[0].get("message", "")).splitlines()[0] if failed else ""
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        if decision.status == "expired" and not first.startswith("waiver expired"):
            return f"{decision.reason.split(':')[0]}; {first}{more}"
        return f"{first}{more}"
    if result in ("waived", "not-applicable"):
        return decision.reason
    if result == "not-tested":
        untested = [r for r in recs if r.get("status") not in _PROVEN]
        first = next((str(r["message"]) for r in untested if r.get("message")), "")
        passed = sum(1 for r in recs if r.get("status") == "pass")
        if passed:
            counts = f"{len(untested)} of {len(recs)} item(s) not tested ({passed} passed)"
            return f"{counts}: {first}" if first else counts
        return first or "the check did not run"
    return ""


#: Item statuses that settle an item; anything else (``not-tested``, ``skipped``) did not.
_PROVEN = ("pass", "fail", "waived", "not-applicable")


def summary(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(RESULTS, 0)
    for r in results:
        counts[str(r["result"])] = counts.get(str(r["result"]), 0) + 1
    return counts


def failures(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Required controls that failed or could not be proven, in report order."""
    return [
        r
        for r in doc.get("results", [])
        if r.get("required") and r.get("result") in ("fail", "not-tested")
    ]


def exit_code(doc: Mapping[str, Any]) -> int:
    """0 when every required control passed on every host, else 1."""
    return 1 if failures(doc) else 0


# -- HTML --------------------------------------------------------------------------------


def _anchor(*parts: Any) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in str(p)) for p in parts)


def render_html(doc: Mapping[str, Any]) -> str:
    """One self-contained HTML page (inline CSS, no external assets) for ``results.json``."""
    hosts = list(doc.get("hosts", []))
    tenants: list[tuple[str, int]] = []
    for h in hosts:
        tenant = str(h.get("tenant") or "-")
        if tenants and tenants[-1][0] == tenant:
            tenants[-1] = (tenant, tenants[-1][1] + 1)
        else:
            tenants.append((tenant, 1))
    cells = {(r["control"], r["host"]): r for r in doc.get("results", [])}
    frameworks = doc.get("catalogue", {}).get("frameworks", {})
    # the shared environment escapes *.html.j2: evidence is command output from the hosts
    return (
        environment()
        .get_template("report/report.html.j2")
        .render(
            doc=doc,
            hosts=hosts,
            tenants=tenants,
            controls=doc.get("controls", []),
            cells=cells,
            frameworks=frameworks,
            failures=failures(doc),
            summary=doc.get("summary", {}),
            results_order=RESULTS,
            anchor=_anchor,
        )
    )


# -- the bundle's manifest -----------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _bundle_files(bundle: Path) -> list[Path]:
    return sorted(
        p for p in bundle.rglob("*") if p.is_file() and p.relative_to(bundle).as_posix() != MANIFEST
    )


def write_manifest(bundle: Path) -> Path:
    """Write ``SHA256SUMS`` (``sha256sum -c`` format) over every other file of the bundle."""
    lines = [f"{_sha256(p)}  {p.relative_to(bundle).as_posix()}" for p in _bundle_files(bundle)]
    manifest = bundle / MANIFEST
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def verify_manifest(bundle: Path) -> list[str]:
    """Problems with the bundle against its ``SHA256SUMS``: changed, missing or extra files."""
    manifest = bundle / MANIFEST
    if not manifest.is_file():
        return [f"{manifest}: missing"]
    listed: dict[str, str] = {}
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            return [f"{manifest}:{n}: not a sha256sum line"]
        listed[name] = digest
    problems = []
    present = {p.relative_to(bundle).as_posix(): p for p in _bundle_files(bundle)}
    for name, digest in sorted(listed.items()):
        if name not in present:
            problems.append(f"{name}: missing")
        elif _sha256(present[name]) != digest:
            problems.append(f"{name}: changed (sha256 differs)")
    problems += [f"{name}: not in {MANIFEST}" for name in sorted(set(present) - set(listed))]
    return problems
