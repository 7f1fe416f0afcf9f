"""What a check verifies, item by item, and the one marker that ties it to its control.

Each check is parametrized over :class:`Item` objects, one per setting, rule
or flow, so one failure never hides another, and the control ID is in every
test ID (``sshd_banner[ansible://hr-web-1-BASE-SSH-07-banner]``). The control
ID is written once, in ``@control("BASE-SSH-07", items=[...])``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

__all__ = ["Item", "ItemsProvider", "control", "control_of", "item_of"]

F = TypeVar("F", bound=Callable[..., Any])

#: Items known only at collection (one host's declared flows): ``provider(config, control)``.
ItemsProvider = Callable[[pytest.Config, str], list["Item"]]


@dataclass(frozen=True)
class Item:
    """One thing a check verifies: a setting, a rule, a flow.

    ``host`` is set for items that exist on one host only (declared flows,
    read from the inventory at collection); the suite deselects them for the
    other hosts.
    """

    control: str
    name: str
    expected: Any = None
    host: str | None = None

    def __str__(self) -> str:
        return f"{self.control}-{self.name}"


def _items(control: str, expected: Mapping[str, Any] | Iterable[str]) -> list[Item]:
    """Items of ``control``: a mapping name -> expectation, or bare names."""
    if isinstance(expected, Mapping):
        return [Item(control, name, value) for name, value in expected.items()]
    return [Item(control, name) for name in expected]


def control(
    control_id: str, items: Mapping[str, Any] | Iterable[str] | ItemsProvider | None = None
) -> Callable[[F], F]:
    """Mark a check as the proof of ``control_id`` (``@pytest.mark.control``), parametrized
    over its ``items``: a mapping name -> expectation, bare names, or an
    :data:`ItemsProvider` called at collection (``@pytest.mark.items``)."""
    marks: list[pytest.MarkDecorator] = []
    if callable(items):
        marks.append(pytest.mark.items.with_args(items))
    elif items is not None:
        values = _items(control_id, items)
        marks.append(pytest.mark.parametrize("item", values, ids=[str(v) for v in values]))
    marks.append(pytest.mark.control(control_id))

    def mark(function: F) -> F:
        for decorator in marks:
            function = decorator(function)
        return function

    return mark


def control_of(test: pytest.Item) -> str | None:
    """The control ID a collected test proves (None for a test without ``@control``)."""
    marker = test.get_closest_marker("control")
    return str(marker.args[0]) if marker and marker.args else None


def item_of(test: pytest.Item) -> Item | None:
    """The :class:`Item` a collected test verifies (None when it has none)."""
    callspec = getattr(test, "callspec", None)
    value = callspec.params.get("item") if callspec is not None else None
    return value if isinstance(value, Item) else None
