"""Property-based: whatever a tenant file holds, the result is a plan or located errors.

Starting from the example tenants, hypothesis deletes keys, inserts unknown keys,
swaps types, plants random strings/ints/bools/lists, duplicates entries and edits
the YAML text itself. plan_paths (what `tenancy validate` and `plan` run) must never
raise, and must return either plans for every site or a non-empty list of errors,
each naming the file, a line >= 1 and (below the document level) the field.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.support.project import EXAMPLE_TENANTS, REPO, copy_project

from tenancy.plan.planner import PlanResult, plan_paths

BASE_TEXT = {
    n: (REPO / "tenants" / f"{n}.yaml").read_text(encoding="utf-8") for n in EXAMPLE_TENANTS
}
BASE_DOCS = {n: yaml.safe_load(t) for n, t in BASE_TEXT.items()}
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# errors about the file as a whole (before there is any field to name)
DOCUMENT_LEVEL = (
    "malformed YAML",
    "file too large",
    "file is not UTF-8 text",
    "empty document",
    "a tenant file must be a mapping",
    "mapping keys must be plain text",
    "YAML tags are not allowed",
    "YAML merge keys are not allowed",
    "YAML anchors and aliases are not allowed",
)

PLAUSIBLE = [
    "yes", "no", "on", "true", "2", "0", "-1", "443/tcp", "80", "8000-7000/tcp", "53/udp",
    "10.0.0.0/8", "10.30.2.0/24", "10.30.2.1/24", "0.0.0.0/0", "10.30.255.0/24", "intranet",
    "extranet", "internet", "hr", "hr/web", "finance/db", "family-planning/app", "tourism",
    "../x", "a/b", "财政", "Finance", "debian-12", "small", "tiny", "db", "medium", "bulk",
    "ssd", "daily", "hourly", "local", "dc-east", "dc-west", "web", "app", "", " ", "~",
]  # fmt: skip
KEYS = [
    "colour", "count", "from", "to", "ports", "cidr", "quota", "name", "flavor", "volumes",
    "network", "firewall", "ingress", "egress", "protect", "role", "diskGiB", "site", "zone",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(PLAUSIBLE),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=4)
    ),
    max_leaves=8,
)

Path_ = tuple[str | int, ...]


def all_paths(node: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from all_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from all_paths(v, (*prefix, i))


def get(doc: Any, path: Path_) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@st.composite
def mutated_documents(draw: st.DrawFn) -> tuple[str, str]:
    """(tenant file name, YAML text) of an example tenant after 1-4 random mutations."""
    name = draw(st.sampled_from(EXAMPLE_TENANTS))
    doc: Any = copy.deepcopy(BASE_DOCS[name])
    for _ in range(draw(st.integers(1, 4))):
        paths = list(all_paths(doc))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["delete", "replace", "insert", "duplicate", "plausible"]))
        if not path:
            if op == "replace":
                doc = draw(values)
            continue
        parent, key = get(doc, path[:-1]), path[-1]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(values)
        elif op == "plausible":
            parent[key] = draw(st.sampled_from(PLAUSIBLE))
        elif op == "insert":
            target = get(doc, path)
            if isinstance(target, dict):
                target[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = draw(values)
            elif isinstance(target, list):
                target.append(draw(values))
        elif op == "duplicate":
            target = get(doc, path)
            if isinstance(target, list) and target:
                target.append(copy.deepcopy(draw(st.sampled_from(target))))
    return name, yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


@st.composite
def mutated_text(draw: st.DrawFn) -> tuple[str, str]:
    """An example tenant's YAML text with random characters inserted, deleted or replaced."""
    name = draw(st.sampled_from(EXAMPLE_TENANTS))
    text = BASE_TEXT[name]
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(
            st.sampled_from(
                ["\t", ":", "- ", "{", "]", "&a ", "*a", "!!python/object:os.system", "\n  ", "'"]
            )
            | st.text(max_size=6)
        )
        end = min(len(text), at + draw(st.integers(0, 8)))
        if op == "insert":
            text = text[:at] + chunk + text[at:]
        elif op == "delete":
            text = text[:at] + text[end:]
        else:
            text = text[:at] + chunk + text[end:]
    return name, text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("properties") / "project")


def run(root: Path, name: str, content: str | bytes) -> PlanResult:
    target = root / "tenants" / f"{name}.yaml"
    original = target.read_bytes()
    try:
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8", errors="surrogatepass")
        return plan_paths(root)  # must never raise
    finally:
        target.write_bytes(original)


def check(result: PlanResult) -> None:
    errors = result.problems.errors
    event("errors" if errors else "plan")
    if errors:
        assert result.plans == {} and result.ledgers == {}, "partial plan next to errors"
        for e in errors:
            assert e.location.file, str(e)
            assert e.location.line >= 1, str(e)
            assert e.message, str(e)
            if not e.field:
                assert e.message.startswith(DOCUMENT_LEVEL), f"error without a field: {e}"
        return
    assert result.plans, "neither a plan nor errors"
    for plan in result.plans.values():
        assert plan.tenants
        plan.to_json()
    for w in result.problems.warnings:
        assert w.location.line >= 1 and w.field


@PROPERTY_SETTINGS
@given(case=mutated_documents())
def test_mutated_documents_give_a_plan_or_located_errors(
    workspace: Path, case: tuple[str, str]
) -> None:
    check(run(workspace, *case))


@settings(PROPERTY_SETTINGS, max_examples=80)
@given(case=mutated_text())
def test_mutated_yaml_text_gives_a_plan_or_located_errors(
    workspace: Path, case: tuple[str, str]
) -> None:
    check(run(workspace, *case))


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(name=st.sampled_from(EXAMPLE_TENANTS), text=st.text(max_size=200))
def test_random_text_gives_located_errors(workspace: Path, name: str, text: str) -> None:
    result = run(workspace, name, text)
    check(result)
    assert not result.ok


@settings(PROPERTY_SETTINGS, max_examples=30)
@given(name=st.sampled_from(EXAMPLE_TENANTS), data=st.binary(max_size=200))
def test_random_bytes_give_located_errors(workspace: Path, name: str, data: bytes) -> None:
    check(run(workspace, name, data))


def test_workspace_is_restored(workspace: Path) -> None:
    for name in EXAMPLE_TENANTS:
        assert (workspace / "tenants" / f"{name}.yaml").read_text(encoding="utf-8") == BASE_TEXT[
            name
        ]
    assert plan_paths(workspace).ok
    shutil.rmtree(workspace / "tenants" / "__pycache__", ignore_errors=True)
