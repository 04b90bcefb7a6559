"""String-keyed registries, so configs and sweep specs can name models and datasets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from adgan.errors import UnknownNameError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with a clear error for unknown names.

    Args:
        kind: What is registered ("detector", "dataset"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a second use of a name is an error."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise UnknownNameError(f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; expected "
                                   f"one of: {known}") from None

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register something for their own duration)."""
        self._items.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
