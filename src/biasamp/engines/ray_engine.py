"""The Ray engine: tasks with retries for stateless work, a fault-tolerant actor pool for
work that loads a model once per worker.

Nothing here writes outputs: results come back to the caller (the driver), which commits
each shard atomically (`biasamp.store`), so a task that runs twice (a retry after a worker
node died) can never duplicate a row.

Fault handling:

- tasks (`map`, and `map_batches` with a plain function) run with `max_retries`: Ray re-runs
  a task whose worker or node died, and re-creates a lost result from its lineage; on top,
  a task that still fails with a system error is submitted again, up to `max_retries` times.
  Errors raised by the function itself are not retried: they are re-raised in the driver
  as they were raised in the worker (a `BiasampError` keeps its message and hint).
- actors (`map_batches` with a class): an actor that dies (its node was lost) is replaced by
  a new one, and the batch it held is given to another actor. A replacement only receives
  work once it is ready, so a cluster that shrank finishes on the actors it has left.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from biasamp.engines.base import Engine
from biasamp.errors import BiasampError

#: Environment passed on to every Ray worker when set in the driver (offline hubs, no update checks).
FORWARDED_ENV = (
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "NO_ALBUMENTATIONS_UPDATE",
    "RAY_USAGE_STATS_ENABLED", "BIASAMP_HOME",
)


def _call(fn, item):
    return fn(item)


class _Host:
    """Holds one instance of a user's callable class inside a Ray actor."""

    def __init__(self, cls, args, kwargs, env):
        os.environ.update(env)
        self.obj = cls(*args, **kwargs)

    def ready(self) -> bool:
        return True

    def call(self, method: str, batch):
        return getattr(self.obj, method)(batch)

    def close(self) -> None:
        close = getattr(self.obj, "close", None)
        if callable(close):
            close()


def _in_order(pairs: Iterable[tuple[int, Any]]) -> Iterator[Any]:
    """Results of (index, result) pairs that arrive in any order, yielded in index order."""
    buffer: dict[int, Any] = {}
    nxt = 0
    for i, out in pairs:
        buffer[i] = out
        while nxt in buffer:
            yield buffer.pop(nxt)
            nxt += 1


def _unwrap(err: BaseException) -> BaseException:
    """The user's exception inside a RayTaskError, else `err` itself."""
    import ray

    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return err


def _is_system_error(err: BaseException) -> bool:
    import ray

    system = tuple(
        getattr(ray.exceptions, n)
        for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
                  "ObjectReconstructionFailedError", "LocalRayletDiedError", "RaySystemError",
                  "ActorDiedError", "ActorUnavailableError", "RayActorError")
        if hasattr(ray.exceptions, n)
    )
    return isinstance(err, system) and not isinstance(err, ray.exceptions.RayTaskError)


class RayEngine(Engine):
    """Runs work on a Ray cluster.

    address: a cluster to join (`HOST:PORT` of the head's GCS, `ray://HOST:10001` for Ray
    Client, or `auto` for the cluster this machine belongs to); None starts a local Ray
    instance on demand (and stops it in `close`). If Ray is already initialised in this
    process, that connection is used as it is.
    num_cpus: CPUs of the local instance (when one is started). node_ip_address: the address
    this driver is reachable on (needed when the cluster's nodes use addresses other than
    the host's, e.g. loopback test clusters). max_retries: re-runs of a task or a batch
    after a worker or node failure. env: extra environment for the workers. scheduling:
    Ray's scheduling strategy for tasks and actors ("SPREAD": over all nodes, the default;
    "DEFAULT": Ray's, which fills the driver's node first).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, node_ip_address: str | None = None,
                 namespace: str | None = None, max_retries: int = 3, max_in_flight: int | None = None,
                 env: dict[str, str] | None = None, init_options: dict | None = None, scheduling: str = "SPREAD"):
        self.address = address
        self.num_cpus = num_cpus
        self.node_ip_address = node_ip_address
        self.namespace = namespace
        self.max_retries = int(max_retries)
        self.max_in_flight = max_in_flight
        self.env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        self.env.update(env or {})
        self.init_options = dict(init_options or {})
        self.scheduling = scheduling
        self._started = False
        self._ready = False

    # -- connection ----------------------------------------------------------------------
    def _ray(self):
        try:
            import ray
        except ImportError:
            raise BiasampError(
                "the ray engine needs the ray package",
                hint='install it with `pip install "ray[data]"` (and the same version on every node)',
            ) from None
        if self._ready:
            return ray
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs: dict[str, Any] = dict(
                logging_level=logging.WARNING, log_to_driver=True, namespace=self.namespace,
                runtime_env={"env_vars": dict(self.env)} if self.env else None,
            )
            if self.address:
                kwargs["address"] = self.address
                if self.node_ip_address:
                    kwargs["_node_ip_address"] = self.node_ip_address
            else:
                kwargs.update(num_cpus=self.num_cpus, include_dashboard=False)
                if self.node_ip_address:
                    kwargs["_node_ip_address"] = self.node_ip_address
            kwargs.update(self.init_options)
            try:
                ray.init(**{k: v for k, v in kwargs.items() if v is not None})
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
                where = self.address or "a local Ray instance"
                raise BiasampError(
                    f"cannot start or join Ray at {where}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:600],
                    hint="check the address (HOST:PORT of the head node, `ray://HOST:10001`, or `auto`) and that "
                    "the cluster runs the same Ray and Python versions; without --address a local Ray is started",
                ) from None
            self._started = True
        self._ready = True
        return ray

    def connect(self) -> RayEngine:
        """Start or join Ray now (otherwise it happens at the first piece of work)."""
        self._ray()
        return self

    def resources(self) -> dict:
        return dict(self._ray().cluster_resources())

    def slots(self, num_cpus: float = 1, num_gpus: float = 0) -> int:
        """How many workers asking for `num_cpus` CPUs and `num_gpus` GPUs fit the cluster at once."""
        res = self.resources()
        if num_gpus:
            return max(1, int(res.get("GPU", 0) // num_gpus))
        return max(1, int(res.get("CPU", 1) // max(num_cpus, 1e-9))) if num_cpus else max(1, int(res.get("CPU", 1)))

    def describe(self) -> dict:
        d = {"engine": self.name, "address": self.address}
        if self._ready:
            import ray

            res = ray.cluster_resources()
            d.update(cpus=res.get("CPU", 0), gpus=res.get("GPU", 0), nodes=len([n for n in ray.nodes() if n.get("Alive")]),
                     ray=ray.__version__)
        return d

    @property
    def is_local(self) -> bool:
        return False

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
        self._started = self._ready = False

    # -- tasks ---------------------------------------------------------------------------
    def _task_options(self, num_cpus, num_gpus, memory) -> dict:
        opts: dict[str, Any] = dict(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=self.max_retries, retry_exceptions=False,
                                    scheduling_strategy=self.scheduling)
        if memory:
            opts["memory"] = int(memory)
        return opts

    def map(self, fn: Callable, items: Iterable, *, num_cpus: float = 1, num_gpus: float = 0,
            memory: int | None = None) -> Iterator[tuple[int, Any]]:
        ray = self._ray()
        remote = ray.remote(_call).options(**self._task_options(num_cpus, num_gpus, memory))
        fn_ref = ray.put(fn)
        todo = deque(enumerate(items))
        limit = self.max_in_flight or max(2 * self.slots(num_cpus, num_gpus), 2)
        running: dict[Any, tuple[int, Any, int]] = {}

        def submit(i, item, attempt):
            running[remote.remote(fn_ref, item)] = (i, item, attempt)

        try:
            while todo or running:
                while todo and len(running) < limit:
                    i, item = todo.popleft()
                    submit(i, item, 0)
                done, _ = ray.wait(list(running), num_returns=1)
                ref = done[0]
                i, item, attempt = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - system errors are retried, the user's re-raised
                    if _is_system_error(e) and attempt < self.max_retries:
                        submit(i, item, attempt + 1)
                        continue
                    raise _unwrap(e) from None
                yield i, result
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    # -- batches -------------------------------------------------------------------------
    def map_batches(self, fn: Callable | type, batches: Iterable, *, fn_constructor_args: tuple = (),
                    fn_constructor_kwargs: dict | None = None, concurrency: int | None = None,
                    num_cpus: float = 1, num_gpus: float = 0, method: str = "__call__",
                    ordered: bool = True) -> Iterator[Any]:
        if inspect.isclass(fn):
            it = self._actor_pool(fn, batches, fn_constructor_args, fn_constructor_kwargs or {}, concurrency,
                                  num_cpus, num_gpus, method)
        else:
            it = self.map(fn, batches, num_cpus=num_cpus, num_gpus=num_gpus)
        yield from (_in_order(it) if ordered else it)  # unordered: (index, result) pairs

    def pool(self, cls: type, *, fn_constructor_args: tuple = (), fn_constructor_kwargs: dict | None = None,
             concurrency: int | None = None, num_cpus: float = 1, num_gpus: float = 0, method: str = "__call__"):
        """A pool of `concurrency` actors, each holding one `cls(*args, **kwargs)`; `map` may be
        called on it several times (the models stay loaded). Use it as a context manager."""
        ray = self._ray()
        size = max(1, concurrency or self.slots(num_cpus, num_gpus))
        return _ActorPool(ray, self, cls, fn_constructor_args, fn_constructor_kwargs or {}, size, num_cpus, num_gpus, method)

    def _actor_pool(self, cls, batches, args, kwargs, concurrency, num_cpus, num_gpus, method):
        batches = list(batches)
        if not batches:
            return
        size = min(len(batches), concurrency or self.slots(num_cpus, num_gpus))
        with self.pool(cls, fn_constructor_args=args, fn_constructor_kwargs=kwargs, concurrency=size,
                       num_cpus=num_cpus, num_gpus=num_gpus, method=method) as p:
            yield from p.map(batches, ordered=False)


class _ActorPool:
    """Actors that each hold one instance of a class; lost actors are replaced, their
    batches handed to others (see the module doc)."""

    def __init__(self, ray, engine: RayEngine, cls, args, kwargs, size, num_cpus, num_gpus, method):
        self.ray, self.cls, self.args, self.kwargs, self.method = ray, cls, args, kwargs, method
        self.size = size
        self.max_retries = engine.max_retries
        self.Actor = ray.remote(_Host).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0,
                                               scheduling_strategy=engine.scheduling)
        self.env = dict(engine.env)
        self.replacements = 0
        self.max_replacements = max(engine.max_retries * size, 1)
        self.starting: dict[Any, Any] = {}  # ready ref -> actor
        self.idle: list = []
        self.actors: list = []
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        a = self.Actor.remote(self.cls, self.args, self.kwargs, self.env)
        self.actors.append(a)
        self.starting[a.ready.remote()] = a

    def _lost(self, a) -> None:
        try:
            self.ray.kill(a, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        if a in self.actors:
            self.actors.remove(a)
        if self.replacements < self.max_replacements:
            self.replacements += 1
            self._spawn()

    def map(self, batches: Iterable, *, ordered: bool = True) -> Iterator[Any]:
        it = self._map(batches)
        yield from (_in_order(it) if ordered else it)  # unordered: (index, result) pairs

    def _map(self, batches: Iterable) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        todo = deque((i, b, 0) for i, b in enumerate(batches))
        running: dict[Any, tuple[Any, int, Any, int]] = {}  # ref -> (actor, i, batch, attempt)
        try:
            while todo or running:
                while todo and self.idle:
                    a = self.idle.pop()
                    i, batch, attempt = todo.popleft()
                    running[a.call.remote(self.method, batch)] = (a, i, batch, attempt)
                if not running and not self.starting:
                    raise BiasampError("every Ray worker of the pool was lost and none could be replaced",
                                       hint="check the cluster (ray status): nodes may have died or lack the resources asked for")
                done, _ = ray.wait(list(running) + list(self.starting), num_returns=1)
                ref = done[0]
                if ref in self.starting:
                    a = self.starting.pop(ref)
                    try:
                        ray.get(ref)
                    except Exception as e:  # noqa: BLE001
                        if not _is_system_error(e):
                            raise _unwrap(e) from None  # the constructor itself failed: a user error
                        self._lost(a)
                        continue
                    self.idle.append(a)
                    continue
                a, i, batch, attempt = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # noqa: BLE001
                    if _is_system_error(e) and attempt < self.max_retries:
                        todo.appendleft((i, batch, attempt + 1))
                        self._lost(a)
                        continue
                    raise _unwrap(e) from None
                self.idle.append(a)
                yield i, result
        finally:
            for ref, (a, *_rest) in running.items():  # abandoned work (an error, a closed generator)
                ray.cancel(ref, force=False)

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors.clear()
        self.starting.clear()
        self.idle.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
