"""The engine interface: how the heavy, per-batch work of a stage is mapped.

A stage cuts its work into items (input files, shards, batches of rows) and hands an
engine a function over one item. The engine runs it in the local process (`LocalEngine`)
or on a Ray cluster (`RayEngine`) and gives the results back to the caller, which commits
each one atomically. Stage code never imports Ray.

Two kinds of work:

- `map(fn, items)`: a plain function, stateless (one task per item). Results come back as
  `(index, result)` pairs in completion order.
- `map_batches(fn_or_class, batches)`: a plain function or a callable class. A class is
  built once per worker (`fn_constructor_args/kwargs`: a model loaded once per actor) and
  then called on many batches. Results come back in input order (`ordered=True`) or as
  `(index, result)` pairs in completion order (`ordered=False`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Engine:
    """Maps a function over items; subclasses decide where it runs."""

    name = "engine"

    # -- the two primitives --------------------------------------------------------------
    def map(self, fn: Callable, items: Iterable, *, num_cpus: float = 1, num_gpus: float = 0,
            memory: int | None = None) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def map_batches(self, fn: Callable | type, batches: Iterable, *, fn_constructor_args: tuple = (),
                    fn_constructor_kwargs: dict | None = None, concurrency: int | None = None,
                    num_cpus: float = 1, num_gpus: float = 0, method: str = "__call__",
                    ordered: bool = True) -> Iterator[Any]:
        raise NotImplementedError

    def pool(self, cls: type, *, fn_constructor_args: tuple = (), fn_constructor_kwargs: dict | None = None,
             concurrency: int | None = None, num_cpus: float = 1, num_gpus: float = 0, method: str = "__call__"):
        """Workers that each hold one `cls(*args, **kwargs)` (a model loaded once), for
        several `map(batches, ordered=True)` calls; a context manager."""
        raise NotImplementedError

    def slots(self, num_cpus: float = 1, num_gpus: float = 0) -> int:
        """How many workers of that size run at once."""
        return 1

    # -- descriptions and lifetime -------------------------------------------------------
    def describe(self) -> dict:
        return {"engine": self.name}

    @property
    def is_local(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalEngine(Engine):
    """Runs everything in this process, one item after another (the default)."""

    name = "local"

    def map(self, fn, items, *, num_cpus=1, num_gpus=0, memory=None):
        for i, item in enumerate(items):
            yield i, fn(item)

    def map_batches(self, fn, batches, *, fn_constructor_args=(), fn_constructor_kwargs=None, concurrency=None,
                    num_cpus=1, num_gpus=0, method="__call__", ordered=True):
        if inspect.isclass(fn):
            with self.pool(fn, fn_constructor_args=fn_constructor_args, fn_constructor_kwargs=fn_constructor_kwargs,
                           method=method) as p:
                yield from p.map(batches, ordered=ordered)
            return
        for i, batch in enumerate(batches):
            out = fn(batch)
            yield out if ordered else (i, out)

    def pool(self, cls, *, fn_constructor_args=(), fn_constructor_kwargs=None, concurrency=None, num_cpus=1,
             num_gpus=0, method="__call__"):
        return _LocalPool(cls(*fn_constructor_args, **(fn_constructor_kwargs or {})), method)


class _LocalPool:
    """One instance of the class, in this process."""

    def __init__(self, obj, method: str):
        self.obj, self.method = obj, method

    def map(self, batches: Iterable, *, ordered: bool = True) -> Iterator[Any]:
        call = getattr(self.obj, self.method)
        for i, batch in enumerate(batches):
            out = call(batch)
            yield out if ordered else (i, out)

    def close(self) -> None:
        close = getattr(self.obj, "close", None)
        if callable(close):
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
