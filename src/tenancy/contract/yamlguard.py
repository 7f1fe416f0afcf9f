"""The guarded YAML parser: text to a node tree, bounded, with aliases never expanded.

Kept apart from the conversion (:mod:`.yamltree`) and the Document API
(:mod:`.yamldoc`) because this is the part that fights PyYAML's class
machinery (a composer mixed into the C or pure-Python parser); the rest of the
reader sees only nodes and marks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import Node, ScalarNode
from yaml.resolver import Resolver

MAX_NODES = 20_000
MAX_DEPTH = 32

TENANT_RULE_BUDGET = 2_000
"""Firewall rules one tenant's nwfilters may hold (``tenancy.plan.rule_budget`` counts them).

Every distinct port of a rule is at least one rule (one peer block, one machine group),
so a tenant file whose rules list more distinct ports than this is over budget
whatever the site and the other tenants say: it is refused while it is being read,
at its ``spec.firewall`` key, before the rest is composed, converted or validated.
"""
_RULE_LISTS = frozenset({"ingress", "egress"})
_PORTS_DEPTH = 5  # root 0, spec 1, firewall 2, ingress/egress 3, [i] 4, ports 5


class BoundError(yaml.YAMLError):
    """The document breaks a bound on what it holds, found while composing it.

    Unlike PyYAML's errors it names the field (``path``) and where its key was written
    (``mark``: PyYAML's or libyaml's ``Mark``, 0-based ``line`` and ``column``), so the
    reader reports it like any other located error.
    """

    def __init__(
        self, path: tuple[str | int, ...], mark: Any, message: str, expected: str, found: str
    ) -> None:
        super().__init__(message)
        self.path, self.mark = path, mark
        self.message, self.expected, self.found = message, expected, found


def _named(part: Any, *names: str) -> bool:
    """Whether a trail entry is the key node of one of ``names``."""
    return isinstance(part, ScalarNode) and part.value in names


def _is_rule_ports(trail: list[Any]) -> bool:
    """Whether the node at _PORTS_DEPTH is a tenant firewall rule's ``ports``."""
    return (
        _named(trail[5], "ports")
        and isinstance(trail[4], int)
        and _named(trail[3], *_RULE_LISTS)
        and _named(trail[2], "firewall")
        and _named(trail[1], "spec")
    )


class _PortTally:
    """Distinct ports per tenant firewall rule, summed while the rules are composed.

    Counts the scalar items of ``spec.firewall.(ingress|egress)[i].ports`` by their
    text (the rule budget counts distinct port strings per rule).
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.total = 0  # distinct ports of the rules composed so far
        self.current: set[str] = set()  # the ports of the rule being composed
        self.open = False

    def add(self, port: str, mark: Any, trail: list[Any]) -> None:
        """Count one port of the current rule; over budget: a BoundError at ``firewall:``."""
        self.current.add(port)
        seen = self.total + len(self.current)
        if seen <= self.budget:
            return
        rule = f"spec.firewall.{trail[3].value}[{trail[4]}]"
        raise BoundError(
            ("spec", "firewall"),
            trail[2].start_mark,
            f"firewall expands into more than {self.budget} rules",
            f"at most {self.budget} rules per tenant (ports x peer addresses x groups)",
            f"at least {seen} rules: {seen} distinct ports by {rule} "
            f"(line {mark.line + 1}), each one rule or more; the rest unread",
        )

    def close(self) -> None:
        """The current rule's ports are all composed."""
        self.total += len(self.current)
        self.current = set()
        self.open = False


class AliasNode(ScalarNode):
    """Stands where an alias (``*name``) was written; aliases are refused, never expanded."""


class _GuardedComposer(Composer):
    """Composer that never shares nodes, records explicit tags and bounds size and depth.

    An alias becomes an ``AliasNode`` at the alias's own position (so the error points
    at the ``*name`` the author wrote), which makes alias bombs harmless: nothing is
    ever expanded. Depth and node count are checked while composing, before any
    oversized or deeply nested structure is built, and so are a tenant firewall's
    distinct ports (TENANT_RULE_BUDGET): the composer keeps what names each node being
    composed, by depth, for that.
    """

    if TYPE_CHECKING:  # provided by the parser half of the loader

        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self.explicit_tags: set[int] = set()
        self._depth = 0
        self._nodes = 0
        # what names each node being composed, by depth: its key node (a mapping's
        # value), its index (a sequence item) or None (the root, a key)
        self._trail: list[Any] = [None] * MAX_DEPTH
        self._ports = _PortTally(TENANT_RULE_BUDGET)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()
        if isinstance(event, AliasEvent):
            alias: Any = self.get_event()
            return AliasNode("alias", str(alias.anchor), alias.start_mark, alias.end_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(
                None, None, f"document has too many values (at most {MAX_NODES})", event.start_mark
            )
        if self._depth >= MAX_DEPTH:
            raise ComposerError(
                None,
                None,
                f"document nested too deeply (at most {MAX_DEPTH} levels)",
                event.start_mark,
            )
        explicit = isinstance(event, ScalarEvent | CollectionStartEvent) and event.tag not in (
            None,
            "!",
        )
        depth = self._depth
        trail = self._trail
        trail[depth] = index
        watch = False  # this node is a rule's ports: count its items
        if depth == _PORTS_DEPTH:
            watch = isinstance(event, SequenceStartEvent) and _is_rule_ports(trail)
            self._ports.open = watch
        elif depth == _PORTS_DEPTH + 1 and self._ports.open and isinstance(event, ScalarEvent):
            self._ports.add(event.value, event.start_mark, trail)
        self._depth = depth + 1
        try:
            node: Node | None = super().compose_node(parent, index)
        finally:
            self._depth = depth
        if watch:
            self._ports.close()
        if explicit:
            self.explicit_tags.add(id(node))
        return node


class _PyLoader(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _GuardedComposer, Resolver
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _GuardedComposer.__init__(self)
        Resolver.__init__(self)


_Loader: type[Any] = _PyLoader
try:  # libyaml scans and parses ~7x faster; composing stays in Python (the guards above)
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    pass
else:

    class _CLoader(_GuardedComposer, CParser, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _GuardedComposer.__init__(self)
            Resolver.__init__(self)

    _Loader = _CLoader


def compose(text: str) -> tuple[Node | None, set[int]]:
    """The single document's root node (None if empty) and the ids of explicitly tagged nodes.

    Raises PyYAML's own errors (``MarkedYAMLError``, ``ReaderError``) for text
    that is not one well-formed YAML document or breaks the size bounds above, and
    :class:`BoundError` for a tenant firewall over TENANT_RULE_BUDGET.
    """
    loader = _Loader(text)
    try:
        return loader.get_single_node(), loader.explicit_tags
    finally:
        loader.dispose()
