"""YAML written by a user (a suite file, a `--set` value), read with bounds and without silent surprises.

PyYAML's `safe_load` lets the last of two equal keys win without a word, expands aliases without limit (a few
lines of `&a [*b, *b, ...]` stand for ten million items, whose repr alone is tens of megabytes) and reads a
file of any size. A suite is a few dozen lines, so here a file is bounded in bytes, must be UTF-8, may not
repeat a key, and may not expand past `MAX_NODES` values; each breach is one `LtbenchError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import LtbenchError

MAX_BYTES = 1_000_000  # a suite file of a thousand trials' settings is a few kB
MAX_NODES = 100_000  # values after alias expansion; the largest built-in suite has a few hundred


class _StrictLoader(yaml.SafeLoader):
    """`SafeLoader` that refuses a mapping holding a key twice (where `safe_load` keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                break
            if repeated:
                line = key_node.start_mark.line + 1
                raise LtbenchError(f"holds the key {shown(key)} twice (line {line}); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: an error message quotes what the user wrote, not all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_yaml(text: str) -> Any:
    """One YAML document; raises `LtbenchError` (message without the file's name) on anything refused."""
    try:
        value = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        raise LtbenchError(f"is not valid YAML: {e}".replace("\n", " ")) from None
    except RecursionError:
        raise LtbenchError("nests too deeply to be a suite") from None
    if _count_nodes(value, MAX_NODES) > MAX_NODES:
        raise LtbenchError(
            f"uses YAML aliases (or lists) that expand to more than {MAX_NODES:,} values; write the values out"
        )
    return value


def read_yaml_file(path: Path) -> Any:
    """A YAML file of at most `MAX_BYTES`, UTF-8, parsed by `parse_yaml`; every refusal names the file."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise LtbenchError(f"{path} is larger than {MAX_BYTES:,} bytes ({size:,}); a suite file is a few kB")
        data = path.read_bytes()
    except OSError as e:
        raise LtbenchError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LtbenchError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        return parse_yaml(text)
    except LtbenchError as e:
        raise LtbenchError(f"{path} {e}") from None


def _count_nodes(value: Any, budget: int) -> int:
    """How many values `value` holds once aliases are expanded, counting no further than just past `budget`
    (a shared list is counted once per reference, without building the expansion)."""
    count = 0
    stack = [value]
    while stack and count <= budget:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set):
            stack.extend(item)
    return count
