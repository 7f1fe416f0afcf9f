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
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import Node, ScalarNode
from yaml.resolver import Resolver

MAX_NODES = 20_000
MAX_DEPTH = 32


class AliasNode(ScalarNode):
    """Stands where an alias (``*name``) was written; aliases are refused, never expanded."""


class _GuardedComposer(Composer):
    """Composer that never shares nodes, records explicit tags and bounds size and depth.

    An alias becomes an ``AliasNode`` at the alias's own position (so the error points
    at the ``*name`` the author wrote), which makes alias bombs harmless: nothing is
    ever expanded. Depth and node count are checked while composing, before any
    oversized or deeply nested structure is built.
    """

    if TYPE_CHECKING:  # provided by the parser half of the loader

        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self.explicit_tags: set[int] = set()
        self._depth = 0
        self._nodes = 0

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
        self._depth += 1
        try:
            node: Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
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
    that is not one well-formed YAML document or breaks the bounds above.
    """
    loader = _Loader(text)
    try:
        return loader.get_single_node(), loader.explicit_tags
    finally:
        loader.dispose()
