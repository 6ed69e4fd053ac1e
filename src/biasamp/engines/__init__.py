"""Execution engines: the same stage code on one machine (`local`) or on a Ray cluster (`ray`).

```python
from biasamp.engines import get_engine
from biasamp.engines.stages import query_corpus

with get_engine("ray", address="10.0.0.5:6379") as engine:
    query_corpus("s3://bucket/laion2B-en/*.parquet", "runs/q", engine=engine)
```

Engines are registered by name in `ENGINES` (factories, so Ray is imported only when used).
Stage modules never import Ray: they expose functions over a batch, which an engine maps.
"""

from __future__ import annotations

from biasamp.engines.base import Engine, LocalEngine
from biasamp.errors import BiasampError
from biasamp.registry import Registry, lazy

ENGINES: Registry = Registry("engine")
ENGINES.register("local", LocalEngine, doc="This process, one item after another (the default).")
ENGINES.register("ray", lazy("biasamp.engines.ray_engine", "RayEngine"),
                 doc="A Ray cluster (an address to join, or a local Ray started on demand).")


def get_engine(name: str | Engine | None = "local", address: str | None = None, **options) -> Engine:
    """An engine by name (`local` | `ray`), or `name` itself if it already is one.

    `address` is the Ray cluster to join (`HOST:PORT`, `ray://HOST:10001`, `auto`); options go
    to the engine's constructor (for ray: num_cpus, node_ip_address, max_retries, env, …).
    """
    if isinstance(name, Engine):
        return name
    name = name or "local"
    factory = ENGINES.get(name)
    if name == "local":
        if address:
            raise BiasampError("an address was given for the local engine", hint="use --engine ray with --address, or drop --address")
        if options:
            raise BiasampError(f"the local engine takes no options (got {', '.join(sorted(options))})")
        return factory()
    return factory(address=address, **options)


def engine_from_config(section) -> Engine:
    """The engine of a study config's `[engine]` section (name, address, options)."""
    return get_engine(section.name, section.address, **dict(section.options or {}))


__all__ = ["ENGINES", "Engine", "LocalEngine", "engine_from_config", "get_engine"]
