"""Safe, located YAML loading: every refusal is a located error, never an exception."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.support.project import DATA

from tenancy.contract.errors import SpecError
from tenancy.contract.yamldoc import Document, format_path
from tenancy.contract.yamlguard import MAX_DEPTH, MAX_NODES
from tenancy.contract.yamlsource import MAX_BYTES, LoadError, load_file, load_text


def load_errors(text: str, file: str = "t.yaml") -> list[SpecError]:
    with pytest.raises(LoadError) as info:
        load_text(text, file)
    errors = info.value.errors
    assert errors
    for e in errors:
        assert e.location.file == file
        assert e.location.line >= 1 and e.location.column >= 1, str(e)
    return errors


# --------------------------------------------------------------------------- positions


def test_positions_of_keys_and_items() -> None:
    text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 2\n"
    doc = load_text(text, "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"], "d": [{"e": 2}]}}
    assert doc.positions[("a",)] == (1, 1)
    assert doc.positions[("b", "c")] == (3, 3)
    assert doc.positions[("b", "c", 1)] == (3, 10)
    assert doc.positions[("b", "d", 0, "e")] == (5, 7)


def test_locate_falls_back_to_nearest_ancestor() -> None:
    doc = load_text("spec:\n  machines:\n    - name: a\n", "f.yaml")
    assert str(doc.locate(("spec", "machines", 0, "flavor"))) == "f.yaml:3:7"
    assert str(doc.locate(("spec", "network", "cidr"))) == "f.yaml:1:1"
    assert doc.locate(()).line == 1
    empty = Document("g.yaml", {})
    assert str(empty.locate(("x",))) == "g.yaml:1:1"


def test_format_path() -> None:
    assert format_path(("spec", "machines", 0, "flavor")) == "spec.machines[0].flavor"
    assert format_path((0, "a")) == "[0].a"
    assert format_path(()) == ""
    # odd keys are quoted, so a field is never blank or ambiguous
    assert format_path(("",)) == '[""]'
    assert format_path(("spec", "a b", 0, "x.y")) == 'spec["a b"][0]["x.y"]'
    assert format_path(("config", "tenancy:site", "hosts", 0)) == "config.tenancy:site.hosts[0]"


def test_unicode_values_and_comments() -> None:
    doc = load_text("# 注释\nname: 财政局 Finance ☃\n", "f.yaml")
    assert doc.data == {"name": "财政局 Finance ☃"}


def test_byte_order_mark_is_accepted() -> None:
    assert load_text("\ufeffa: 1\n", "f.yaml").data == {"a": 1}


def test_keys_are_their_text() -> None:
    doc = load_text("1: a\ntrue: b\nnull: c\n", "f.yaml")
    assert doc.data == {"1": "a", "true": "b", "null": "c"}


def test_implicit_dates_stay_text() -> None:
    # YAML 1.1 would make a date object; a tenant file has no dates, so keep the text
    assert load_text("a: 2024-01-01\nb: =\n", "f.yaml").data == {"a": "2024-01-01", "b": "="}


def test_standard_explicit_tags_are_harmless() -> None:
    assert load_text("a: !!str 5\nb: ! 6\n", "f.yaml").data == {"a": "5", "b": 6}


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: [1, 2\n", 2),
        ("a: b: c\n", 1),
        ("a:\n\tb: 1\n", 2),
        ("a: 1\n---\nb: 2\n", 2),
        ("a: 'unterminated\n", 2),
        ("- a\nb: 1\n", 2),
    ],
)
def test_malformed_yaml_is_located(text: str, line: int) -> None:
    (error,) = load_errors(text)
    assert error.message.startswith("malformed YAML")
    assert error.location.line == line
    assert "\n" not in str(error)


def test_malformed_data_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        load_file(DATA / "broken" / "malformed.yaml", "malformed.yaml")
    (error,) = info.value.errors
    assert error.location.file == "malformed.yaml"
    assert error.location.line == 12  # end of file: the bracket never closes
    assert "',' or ']'" in error.message


def test_control_character_is_located() -> None:
    (error,) = load_errors("a: b\nc: \x00d\n")
    assert (error.location.line, error.location.column) == (2, 4)
    assert "character" in error.message
    assert error.found == "character #x0000"


def test_empty_document() -> None:
    (error,) = load_errors("# only a comment\n")
    assert error.message == "empty document"


# --------------------------------------------------------------------------- unsafe input


def test_python_tag_is_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"a: !!python/object/apply:os.system ['touch {marker}']\n"
    (error,) = load_errors(text)
    assert error.message == "YAML tags are not allowed"
    assert error.field == "a"
    assert "python/object/apply:os.system" in error.found
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    [
        "a: !!set {x}\n",
        "a: !!binary aGk=\n",
        "a: !!omap [x: 1]\n",
        "a: !custom 1\n",
        "a: !!python/name:os.system\n",
        "a: !!timestamp 2024-01-01\n",
    ],
)
def test_non_standard_tags_are_refused(text: str) -> None:
    (error,) = load_errors(text)
    assert error.message == "YAML tags are not allowed"
    assert error.location.line == 1


def test_tagged_key_is_refused() -> None:
    (error,) = load_errors("? !!python/name:os.system\n: 1\n")
    assert error.message == "YAML tags are not allowed"
    assert "python/name:os.system" in error.found


def test_alias_is_refused_at_its_own_position() -> None:
    errors = load_errors("a: &x [1, 2]\nb: *x\n")
    (error,) = errors
    assert error.field == "b"
    assert (error.location.line, error.location.column) == (2, 4)
    assert error.found == "alias *x"


def test_undefined_alias_is_refused() -> None:
    (error,) = load_errors("a: *nowhere\n")
    assert "aliases are not allowed" in error.message


def test_alias_as_key_is_refused() -> None:
    (error,) = load_errors("a: &k key\n*k : 1\n")
    assert error.message == "mapping keys must be plain text"


def test_billion_laughs_is_refused_quickly() -> None:
    text = (DATA / "broken" / "alias-bomb.yaml").read_text(encoding="utf-8")
    start = time.perf_counter()
    errors = load_errors(text, "alias-bomb.yaml")
    assert time.perf_counter() - start < 1.0
    assert all("alias" in e.message.lower() for e in errors)
    # the first few are named, the rest counted in one summary
    assert len(errors) == 6
    assert errors[0].field == "b[0]" and errors[0].location.line == 3
    assert errors[-1].message.startswith("67 more YAML aliases")


def test_merge_key_is_refused() -> None:
    errors = load_errors("x: &x {a: 1}\ny: {<<: *x}\n")
    assert any(e.message == "YAML merge keys are not allowed" for e in errors)


def test_complex_key_is_refused() -> None:
    (error,) = load_errors("? [a, b]\n: 1\n")
    assert error.message == "mapping keys must be plain text"
    assert error.found == "a complex key"


def test_nesting_depth_is_bounded() -> None:
    (error,) = load_errors("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in error.message
    assert str(MAX_DEPTH) in error.message


def test_nesting_just_inside_the_limit_loads() -> None:
    depth = MAX_DEPTH - 1
    doc = load_text("[" * depth + "]" * depth, "f.yaml")
    assert isinstance(doc.data, list)


def test_node_count_is_bounded() -> None:
    (error,) = load_errors("a: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n")
    assert "too many values" in error.message


def test_huge_integer_is_an_error_not_a_crash() -> None:
    (error,) = load_errors("a: 1" + "0" * 5000 + "\n")
    assert error.field == "a"
    assert error.message == "number too long"


# --------------------------------------------------------------------------- duplicates


def test_duplicate_key_is_reported_but_not_fatal() -> None:
    doc = load_text("a: 1\nb: {c: 2, c: 3}\na: 4\n", "f.yaml")
    assert doc.data == {"a": 1, "b": {"c": 2}}  # the first value wins
    fields = sorted((p.field, p.location.line) for p in doc.problems)
    assert fields == [("a", 3), ("b.c", 2)]
    problem = next(p for p in doc.problems if p.field == "a")
    assert problem.message == "duplicate key"
    assert problem.found == "'a' again (first at line 1)"


# --------------------------------------------------------------------------- files


def test_too_large_text() -> None:
    (error,) = load_errors("a: '" + "x" * MAX_BYTES + "'\n")
    assert error.message == "file too large"
    assert str(MAX_BYTES) in error.expected


def test_too_large_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"a: " + b"x" * (MAX_BYTES + 1) + b"\n")
    with pytest.raises(LoadError) as info:
        load_file(path, "huge.yaml")
    (error,) = info.value.errors
    assert error.message == "file too large"
    assert error.found == f"{MAX_BYTES + 5} bytes"
    assert error.location.line == 1


def test_multibyte_text_counts_bytes() -> None:
    text = "a: " + "财" * (MAX_BYTES // 3 + 10) + "\n"  # fewer chars than MAX_BYTES, more bytes
    assert len(text) < MAX_BYTES
    (error,) = load_errors(text)
    assert error.message == "file too large"


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(LoadError) as info:
        load_file(path, "latin1.yaml")
    (error,) = info.value.errors
    assert error.message == "file is not UTF-8 text"
    assert error.found == "byte 0xe9 at offset 9"


def test_utf16_file(tmp_path: Path) -> None:
    path = tmp_path / "utf16.yaml"
    path.write_bytes("a: 1\n".encode("utf-16"))
    with pytest.raises(LoadError) as info:
        load_file(path, "utf16.yaml")
    assert info.value.errors[0].message == "file is not UTF-8 text"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        load_file(tmp_path / "nope.yaml", "nope.yaml")
    (error,) = info.value.errors
    assert error.message.startswith("cannot read file")
    assert error.location.file == "nope.yaml"


def test_load_file_display_name(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    assert load_file(path).file == str(path)
    assert load_file(path, "tenants/x.yaml").file == "tenants/x.yaml"
