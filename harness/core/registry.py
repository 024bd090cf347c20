"""A name -> object registry that rejects duplicates (in the spirit of fvcore's `Registry`).

Datasets, models, recipes and methods each keep one. Looking up an unknown name raises a
`LtbenchError` that lists every registered name, which is what the CLI shows the user.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from harness.core.errors import unknown_choice

T = TypeVar("T")


class DuplicateName(ValueError):
    """A name registered twice; `name` is the contested name."""

    def __init__(self, kind: str, name: str, holder: object) -> None:
        super().__init__(f"{kind} {name!r} is already registered (by {holder!r})")
        self.name = name


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T) -> T:
        if name in self._items:
            raise DuplicateName(self.kind, name, self._items[name])
        self._items[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Take back a registration (a plugin that failed half way through registering its methods)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown_choice(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
