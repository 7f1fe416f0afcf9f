"""Tenant text cannot fake or hide anything in the reports a reviewer reads.

The display name is any Unicode by contract. These tests put markup of every
output format into it (a carriage return and ``<!--`` that used to hide every
later flow of the pull-request comment, a fake banner, bidi controls, quotes
and brackets of Mermaid and Graphviz) and check that each format shows it as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests.support.cli import CliResult
from tests.support.project import tenant_doc, write_tenant

from tenancy.cli.errors import EXIT_OK
from tenancy.plan.model import Plan
from tenancy.plan.planner import PlanResult
from tenancy.render import escape
from tenancy.render.plan_report import to_dot, to_markdown, to_mermaid, to_table

Cli = Callable[..., CliResult]
HOSTILE = (
    "Evil\r<!-- hide\n### :white_check_mark: approved by ops | x ` ``` "
    '"] --> n0 ; a -> b [label=" \\ \u202egnp.exe\u2066 @ops-team <b>&amp; [x](http://e)'
)
INVISIBLE = ("\r", "\n", "\u202e", "\u2066", "\x1b")


@pytest.fixture
def hostile_plan(project: Path, plan_of: Callable[..., PlanResult]) -> Plan:
    doc = tenant_doc("evil", ingress=[{"from": "intranet", "ports": ["443/tcp"]}])
    doc["metadata"]["displayName"] = HOSTILE[:128]
    write_tenant(project, doc)
    result = plan_of(project, sites=["local"])
    assert result.ok, result.problems.errors
    return result.plans["local"]


def _without_invisibles(text: str) -> None:
    for char in INVISIBLE[2:]:
        assert char not in text, repr(char)


def test_markdown_shows_the_name_as_text(hostile_plan: Plan) -> None:
    md = to_markdown(hostile_plan)
    _without_invisibles(md)
    assert "\r" not in md and "<!--" not in md and "<b>" not in md
    assert "@ops-team" not in md  # no mention: GitHub would notify the team
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert not [h for h in headings if ":white_check_mark:" in h and not h.startswith("### Evil")]
    evil = [h for h in headings if h.startswith("### Evil")]
    assert len(evil) == 1 and "(`evil`, intranet)" in evil[0]
    assert "\\u202e" in evil[0] and "\\x0d" in evil[0]
    # the flows that follow the name are still there, in a well-formed table
    rows = [line for line in md.splitlines() if line.startswith("| ingress")]
    assert rows and all(len(re.findall(r"(?<!\\)\|", r)) == 5 for r in rows)


def test_mermaid_label_stays_one_label(hostile_plan: Plan) -> None:
    mmd = to_mermaid(hostile_plan)
    _without_invisibles(mmd)
    (line,) = [x for x in mmd.splitlines() if "subgraph" in x and "Evil" in x]
    label = line.split("[", 1)[1]
    assert label.startswith('"') and label.endswith('"]')
    assert '"' not in label[1:-2] and "]" not in label[1:-2] and "[" not in label[1:-2]
    assert "#34;" in label  # the name's quote, as Mermaid's entity code
    evil = [v for k, v in _mermaid_ids(mmd).items() if k.startswith("evil")]
    edges = [x for x in mmd.splitlines() if "-->" in x and any(x.endswith(f" {i}") for i in evil)]
    assert len(edges) == 1  # the one declared flow; the name made none


def _mermaid_ids(mmd: str) -> dict[str, str]:
    """``tenant/group`` -> node id, read back from the node lines inside each subgraph."""
    ids: dict[str, str] = {}
    tenant = ""
    for line in mmd.splitlines():
        sub = re.match(r"\s+subgraph (n\d+)\[", line)
        node = re.match(r"\s+(n\d+)\[\"([a-z][a-z0-9-]*) ", line)
        if sub:
            tenant = "evil" if "Evil" in line else sub.group(1)
        elif node and tenant:
            ids[f"{tenant}/{node.group(2)}"] = node.group(1)
    return ids


def test_dot_label_stays_one_string(hostile_plan: Plan) -> None:
    dot = to_dot(hostile_plan)
    _without_invisibles(dot)
    (line,) = [x for x in dot.splitlines() if "label=" in x and "Evil" in x]
    value = line.strip().removeprefix("label=").removesuffix(";")
    assert re.fullmatch(r'"([^"\\]|\\.)*"', value), value  # one quoted string, escapes paired
    assert value.count("\\n") >= 1  # the name and the segment on two lines
    edges = [x for x in dot.splitlines() if "->" in x and '"evil/' in x]
    assert len(edges) == 1  # the one declared flow; the name made none


def test_table_shows_no_terminal_control(hostile_plan: Plan) -> None:
    _without_invisibles(to_table(hostile_plan))


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("# heading", "\\# heading"),
        ("- item", "\\- item"),
        ("1. first", "1\\. first"),
        ("a_b*c", "a\\_b\\*c"),
        ("<!-- x -->", "&lt;!\\-\\- x \\-\\-&gt;".replace("\\-", "-")),
        ("税务局 Tax", "税务局 Tax"),
    ],
)
def test_markdown_filter(text: str, shown: str) -> None:
    assert escape.markdown(text) == shown


def test_markdown_code_span_outlasts_backticks() -> None:
    assert escape.markdown_code("a``b") == "```a``b```"
    assert escape.markdown_code("`x") == "`` `x ``"


def test_yaml_string_round_trips(cli: Cli, project: Path) -> None:
    name = 'a: b # c\n- "d" \u202e'
    result = cli("--root", project, "new", "quoted", "--display-name", name, "-o", "-")
    assert result.code == EXIT_OK, result
    assert "\u202e" not in result.out
    doc = yaml.safe_load(result.out)
    assert doc["metadata"]["displayName"] == name
