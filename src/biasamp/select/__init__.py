"""Training-example selection: which captions stand for an occupation, per condition.

    from biasamp.select import select_training_examples
    result = select_training_examples("run/mentions.parquet", k=50, templates="all")
    result.selection        # the `selection` table
    result.write("run/select")

Strategies, embedders and pool filters are registries (`STRATEGIES`, `EMBEDDERS`,
`POOL_FILTERS`); see docs/select.md.
"""

from biasamp.select.embedders import EMBEDDERS, make_embedder
from biasamp.select.core import ALL_MENTIONS, POOLED, Selection, nearest_topk, pooled_topk, select_training_examples
from biasamp.select.strategies import DEFAULT_STRATEGIES, POOL_FILTERS, STRATEGIES, Strategy, resolve_strategies, sample_order

__all__ = [
    "ALL_MENTIONS", "DEFAULT_STRATEGIES", "EMBEDDERS", "POOLED", "POOL_FILTERS", "STRATEGIES", "Selection", "Strategy",
    "make_embedder", "nearest_topk", "pooled_topk", "resolve_strategies", "sample_order", "select_training_examples",
]

