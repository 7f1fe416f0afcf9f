"""The house rules of ARCHITECTURE.md, checked on the source: who may import whom, and more.

Reads every module under ``src/tenancy`` as text (ast), so a rule is checked
for imports inside functions too (the CLI's lazy imports included).
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "tenancy"

#: The allowed imports between the parts of the package (ARCHITECTURE.md's map).
#: A part is a sub-package or a top-level module of ``tenancy``.
ALLOWED: dict[str, set[str]] = {
    "project": set(),
    "ssh": set(),
    "process": set(),
    "gcpause": set(),
    "engine_output": set(),
    "gitsnap": set(),
    "_resources": set(),
    "contract": set(),
    "plan": {"contract", "gcpause", "project"},
    "render": {"contract", "plan", "project"},
    "policy": {"contract", "plan", "render", "project", "ssh", "process", "compliance"},
    "compliance": {"contract", "project", "ssh"},
    "engine": {"project", "engine_output"},
    "doctor": {"contract", "plan", "project", "engine", "ssh", "process"},
    "infra": {"contract", "plan", "render", "policy", "project", "ssh", "gcpause"},
    "cli": {
        "contract",
        "plan",
        "render",
        "policy",
        "compliance",
        "doctor",
        "engine",
        "project",
        "gitsnap",
    },
}
#: Third-party packages that only one part may import.
ONLY_IN: dict[str, str] = {"pulumi": "infra", "libvirt": "infra"}
#: Files allowed above MAX_LINES, each with the reason it stays whole.
MAX_LINES = 400
LARGE: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    module: str
    """Dotted name of the importing module."""
    target: str
    """Dotted name imported (``from a.b import c`` gives ``a.b.c`` when c is a module)."""
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _under_type_checking(tree: ast.AST) -> set[int]:
    """Line numbers of imports guarded by ``if TYPE_CHECKING:`` (no runtime edge)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {
                n.lineno for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)
            }
    return lines


def _imports(name: str, path: Path, known: set[str]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = _under_type_checking(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in guarded:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            yield Import(name, full if full in known else base, node.lineno)


def _all_imports() -> list[Import]:
    modules = _modules()
    known = set(modules)
    return [imp for name, path in modules.items() for imp in _imports(name, path, known)]


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "tenancy" and len(parts) > 1 else None


def test_every_part_is_on_the_map() -> None:
    parts = {part for m in _modules() if (part := _part(m)) is not None}
    assert parts == set(ALLOWED), (
        f"parts not on the map: {sorted(parts - set(ALLOWED))}; "
        f"on the map but gone: {sorted(set(ALLOWED) - parts)} (update ARCHITECTURE.md too)"
    )


def test_parts_import_only_what_the_map_allows() -> None:
    bad = []
    for imp in _all_imports():
        src, dst = _part(imp.module), _part(imp.target)
        if src is None or dst is None or src == dst:
            continue
        if dst not in ALLOWED.get(src, set()):
            bad.append(f"{imp.module}:{imp.line} imports {imp.target} ({src} -> {dst})")
    assert not bad, "imports the map does not allow:\n" + "\n".join(bad)


def test_pulumi_and_libvirt_only_in_infra() -> None:
    bad = []
    for imp in _all_imports():
        top = imp.target.split(".")[0]
        if top in ONLY_IN and _part(imp.module) != ONLY_IN[top]:
            bad.append(f"{imp.module}:{imp.line} imports {imp.target}")
    assert not bad, "only infra talks to Pulumi and libvirt:\n" + "\n".join(bad)


def test_no_import_circle_between_modules() -> None:
    modules = set(_modules())
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in _all_imports():
        target = imp.target
        while target and target not in modules:
            target = target.rpartition(".")[0]
        # importing a package's __init__ from inside that package is not a circle worth naming
        if target and target != imp.module and not imp.module.startswith(target + "."):
            edges[imp.module].add(target)
    circles = _strongly_connected(edges)
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(sorted(c)) for c in circles)


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules that import each other (size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.add(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


CLIMB = re.compile(r"__file__\)?(\.resolve\(\))?\.parents?\b")


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_no_module_finds_files_by_walking_up_from_itself(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not CLIMB.search(text), f"{path}: finds files relative to __file__ (use tenancy.project)"
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0]
        assert not re.search(r"""["']tests[/"']""", code), (
            f"{path}:{lineno}: names the tests/ tree (the library never reaches into it)"
        )


def test_modules_stay_small_or_say_why() -> None:
    big = {
        str(p.relative_to(SRC)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    unexplained = {f: n for f, n in big.items() if f not in LARGE}
    assert not unexplained, (
        f"modules above {MAX_LINES} lines without a reason in LARGE: {unexplained}"
    )
    stale = sorted(set(LARGE) - set(big))
    assert not stale, f"LARGE names files that are small now: {stale}"


def test_architecture_md_shows_the_same_map() -> None:
    """ARCHITECTURE.md's table lists each part with the parts it may import."""
    text = (SRC.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]*) \|", text, flags=re.MULTILINE))
    documented = {
        part: {p.strip(" `") for p in deps.split(",") if p.strip(" `-—")}
        for part, deps in rows.items()
    }
    assert documented == ALLOWED, "ARCHITECTURE.md's import map differs from this test's ALLOWED"


def test_pyproject_lists_every_package_and_maps_every_shipped_folder() -> None:
    """pyproject.toml names the packages one by one (it maps the shipped folders in)."""
    config = tomllib.loads((SRC.parent / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    on_disk = {_module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    listed = set(setuptools["packages"])
    mapped = {name for name in setuptools["package-dir"] if name}
    assert listed - mapped == on_disk, (
        f"unlisted packages: {sorted(on_disk - listed)}; "
        f"listed but gone: {sorted(listed - mapped - on_disk)}"
    )
    shipped = {
        f"tenancy._resources.{name}" for name in ("templates", "policies", "roles", "compliance")
    }
    assert mapped == shipped and mapped <= listed
    for name in mapped:
        folder = SRC.parent / setuptools["package-dir"][name]
        assert (folder / "__init__.py").is_file(), (
            f"{folder} needs __init__.py (the editable finder)"
        )
