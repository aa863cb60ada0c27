"""Named plug-ins of one kind: the sinks, head types, encoder backends and capture schemes.

A plug-in is one module that adds itself under a name when imported. The modules of the
built-in ones are named, not imported, by the registry's owner (BUILT_IN), and imported on the
first lookup; so the owner never imports its plug-ins, and a plug-in may import its owner.

>>> colours = Registry("colour", built_in=())
>>> colours.add("red", 0xFF0000)
16711680
>>> @colours.register("green")
... def green():
...     return 0x00FF00
>>> colours.names(), colours.get("green")() == 0x00FF00
(['red', 'green'], True)
>>> colours.get("blue")
Traceback (most recent call last):
lrcn.stream.errors.LrcnError: unknown colour 'blue' (known: red, green)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from lrcn.stream.errors import LrcnError

T = TypeVar("T")


class Registry(Generic[T]):
    """Plug-ins by name, listed built-in first (in `built_in` order), then the others in the
    order they were added."""

    def __init__(self, kind: str, built_in: Iterable[str]):
        self.kind = kind
        self.built_in = tuple(built_in)
        self._items: dict[str, T] = {}
        self._modules: dict[str, str] = {}  # name -> the module that added it

    def add(self, name: str, item: T, module: str | None = None) -> T:
        """Add `item` as `name`; ValueError when the name is empty or taken."""
        if not name or name in self._items:
            raise ValueError(f"{self.kind} {item!r} needs a unique name, got {name!r}")
        self._items[name] = item
        self._modules[name] = module or getattr(item, "__module__", None) or ""
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`."""
        return lambda item: self.add(name, item)

    def names(self) -> list[str]:
        self._load_built_in()
        rank = {module: i for i, module in enumerate(self.built_in)}
        return sorted(self._items, key=lambda name: rank.get(self._modules[name], len(rank)))

    def get(self, name: object) -> T:
        """The plug-in called `name` (as a file gives it: any value), or one LrcnError line naming the known ones."""
        self._load_built_in()
        if not isinstance(name, str) or name not in self._items:
            raise LrcnError(f"unknown {self.kind} {name!r} (known: {', '.join(self.names())})")
        return self._items[name]

    def module(self, name: str) -> str:
        """The module that added `name`."""
        self.get(name)
        return self._modules[name]

    def __contains__(self, name: str) -> bool:
        self._load_built_in()
        return name in self._items

    def remove(self, name: str) -> None:
        """Take a plug-in out again (tests that add one of their own)."""
        self._items.pop(name, None)
        self._modules.pop(name, None)

    def _load_built_in(self) -> None:
        for module in self.built_in:
            importlib.import_module(module)
