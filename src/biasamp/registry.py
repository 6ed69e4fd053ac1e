"""Named registries for backends (embedders, generators, face detectors, classifiers,
metrics, image sources, engines).

Entries are factories, so a heavy library is imported only when its backend is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from biasamp.errors import BiasampError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping name -> factory with a clear error for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, doc: str | None = None):
        """Register `obj` under `name`; usable as a decorator when `obj` is omitted."""

        def _add(o: T) -> T:
            if name in self._entries and self._entries[name] is not o:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = o
            self._docs[name] = (doc or (getattr(o, "__doc__", None) or "")).strip().split("\n")[0]
            return o

        if obj is not None:
            return _add(obj)
        return _add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise BiasampError(
                f"unknown {self.kind} {name!r}; known: {known}",
                hint=f"pick one of the registered {self.kind}s",
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        return {n: self._docs[n] for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def lazy(module: str, attr: str) -> Callable:
    """A factory that imports `module.attr` on first call (keeps heavy imports lazy)."""

    def _factory(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    _factory.__doc__ = f"{module}.{attr}"
    return _factory
