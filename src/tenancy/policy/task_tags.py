"""The tags of a task, found from where Ansible says it is (``task_path`` = ``file:line``).

Job events name a task and its file position but not its tags; a task whose
name carries no control ID prefix still implements the controls it is tagged
with. This reads the role's task file once (cached) and maps each task's first
line to its tags, blocks included.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["tags_at"]


@lru_cache(maxsize=256)
def _task_tags_by_line(path: str) -> dict[int, tuple[str, ...]]:
    """1-based start line of every task mapping in a task file -> its tags."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    found: dict[int, tuple[str, ...]] = {}

    def walk(n: yaml.Node | None) -> None:
        if isinstance(n, yaml.SequenceNode):
            for item in n.value:
                walk(item)
        elif isinstance(n, yaml.MappingNode):
            tags: tuple[str, ...] = ()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value == "tags":
                    if isinstance(v, yaml.SequenceNode):
                        tags = tuple(str(i.value) for i in v.value)
                    elif isinstance(v, yaml.ScalarNode):
                        tags = (str(v.value),)
                if isinstance(k, yaml.ScalarNode) and k.value in ("block", "rescue", "always"):
                    walk(v)
            found[n.start_mark.line + 1] = tags

    walk(node)
    return found


def tags_at(task_path: str) -> tuple[str, ...]:
    """The tags of the task at ``<file>:<line>``; ``()`` when unknown."""
    path, _, line = (task_path or "").rpartition(":")
    if not path or not line.isdigit():
        return ()
    return _task_tags_by_line(path).get(int(line), ())
