"""A named registry of plug-in classes: ``register`` / ``create`` / ``names``.

Why one small class: policies and dispatchers (and any later family) are looked up by the name a
user writes in a config; an unknown name must fail with the list of valid ones, and adding an
implementation must be one module plus one decorator line. Modules named in ``lazy`` are imported
only when their name is first asked for, so an optional heavy dependency (scikit-learn's Gaussian
processes for PB2) costs nothing to runs that do not use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that is not registered; the message lists the valid ones."""


class Registry(Generic[T]):
    """Classes of one family by name.

    Args:
        kind: what the family is called in messages (``"policy"``, ``"dispatcher"``).
        lazy: name → module that registers it when imported.
    """

    def __init__(self, kind: str, lazy: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}
        self._lazy = dict(lazy or {})

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: record the class under ``name`` (set as its ``name`` attribute)."""

        def deco(cls: type[T]) -> type[T]:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered by "
                                 f"{self._classes[name]!r}")
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        """Every registered name (imported or lazy), sorted."""
        return sorted(set(self._classes) | set(self._lazy))

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; :class:`UnknownName` lists the valid names."""
        if name not in self._classes and name in self._lazy:
            importlib.import_module(self._lazy[name])
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; valid: "
                              f"{', '.join(self.names())}") from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """An instance of the class registered as ``name``."""
        return self.get(name)(*args, **kwargs)
