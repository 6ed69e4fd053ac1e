"""Selection strategies: named conditions built from composable parts.

A `Strategy` is a pool (the captions mentioning the occupation, narrowed by zero or more
named filters) plus a way to pick from it:

- `sample`: a seeded uniform sample of n captions per occupation (all if fewer);
- `nearest`: the k captions most similar to the occupation's prompt, per template and
  pooled across templates;
- `base`: the picks of another strategy, unchanged (captions-as-prompts reuses keyword).

`prompts` says how the generated side of the condition is prompted ("templates", or
"captions": the selected captions themselves are used as prompts).

New conditions are a registration away, e.g.
`STRATEGIES.register("nearest-female-free", Strategy("nearest-female-free", "nearest",
pool=("no-indicators",)))`, and pool filters live in `POOL_FILTERS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.registry import Registry

PICKS = ("sample", "nearest", "base")


@dataclass(frozen=True)
class Strategy:
    name: str
    pick: str
    pool: tuple[str, ...] = ()
    base: str | None = None
    prompts: str = "templates"
    doc: str = ""

    def __post_init__(self):
        if self.pick not in PICKS:
            raise BiasampError(f"strategy {self.name!r}: unknown pick {self.pick!r}", hint=f"use one of {', '.join(PICKS)}")
        if self.pick == "base" and not self.base:
            raise BiasampError(f"strategy {self.name!r} picks from a base strategy but names none")


#: name -> function(mentions frame, options dict) -> the rows that stay in the pool
POOL_FILTERS: Registry[Callable[[pl.DataFrame, dict], pl.DataFrame]] = Registry("pool filter")


@POOL_FILTERS.register("no-indicators")
def _no_indicators(df: pl.DataFrame, opts: dict) -> pl.DataFrame:
    """captions whose gender indicator is in `no_indicator_values` (default: none)"""
    return df.filter(pl.col("indicator").is_in(list(opts.get("no_indicator_values", ("none",)))))


@POOL_FILTERS.register("has-text")
def _has_text(df: pl.DataFrame, opts: dict) -> pl.DataFrame:
    """captions with a non-empty text"""
    return df.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != ""))


STRATEGIES: Registry[Strategy] = Registry("strategy")
for _s in (
    Strategy("keyword", "sample", doc="seeded uniform sample of n captions that mention the occupation"),
    Strategy("no-indicators", "sample", pool=("no-indicators",), doc="the same sample among captions without gender indicators"),
    Strategy("nearest", "nearest", doc="k captions nearest to the prompt, among captions that mention the occupation"),
    Strategy("nearest-no-indicators", "nearest", pool=("no-indicators",), doc="nearest among captions without gender indicators"),
    Strategy("captions-as-prompts", "base", base="keyword", prompts="captions", doc="the keyword sample; its captions are also the prompts"),
):
    STRATEGIES.register(_s.name, _s, doc=_s.doc)

DEFAULT_STRATEGIES = ("keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators")


def resolve_strategies(spec: str | Sequence[str | Strategy] | None) -> list[Strategy]:
    """Strategies from names (comma-separated string or list) or objects; base ones pulled in."""
    if spec is None:
        spec = list(DEFAULT_STRATEGIES)
    if isinstance(spec, str):
        spec = [s.strip() for s in spec.split(",") if s.strip()]
    out: dict[str, Strategy] = {}
    for item in spec:
        if isinstance(item, Strategy):
            out.setdefault(item.name, item)
        elif item == "all":
            for n in DEFAULT_STRATEGIES:
                out.setdefault(n, STRATEGIES.get(n))
        else:
            out.setdefault(item, STRATEGIES.get(item))
    for s in list(out.values()):
        if s.pick == "base" and s.base not in out:
            # the base is computed (to copy its picks) but only written if it was asked for
            STRATEGIES.get(s.base)
    for s in out.values():
        for f in s.pool:
            POOL_FILTERS.get(f)
    if not out:
        raise BiasampError("no strategy given", hint=f"pick from {', '.join(STRATEGIES.names())}")
    return list(out.values())


def apply_pool(df: pl.DataFrame, strategy: Strategy, opts: dict) -> pl.DataFrame:
    for f in strategy.pool:
        df = POOL_FILTERS.get(f)(df, opts)
    return df


# ---- seeded sampling ------------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 that scatters ids uniformly."""
    x = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def occupation_seed(seed: int, occupation: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha1(f"{seed}\x00{occupation}".encode()).digest()[:8], "little"))


def sample_order(caption_ids: np.ndarray, seed: int, occupation: str) -> np.ndarray:
    """Positions of `caption_ids` in their seeded random order.

    The order depends only on (seed, occupation, caption_id): it does not change with the
    row order of the input or with the other captions present, so a sample of n is the
    first n of this order, samples are nested (n=50 ⊂ n=100) and the no-indicators
    sample is the keyword order restricted to captions without indicators.
    """
    ids = np.asarray(caption_ids, dtype=np.int64).view(np.uint64)
    keys = mix64(ids ^ occupation_seed(seed, occupation))
    return np.argsort(keys, kind="stable")
