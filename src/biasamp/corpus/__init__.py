"""Caption corpora: find the captions that mention each occupation, with their gender words.

    from biasamp.corpus import query_corpus, read_mentions
    result = query_corpus(["laion/part-*.parquet"], "run/query", lexicon="extended")
    mentions = read_mentions("run/query")

See docs/query.md. Heavy work is a pure function over a batch (`query_batch`), so it runs
the same in the local loop and in a distributed engine.
"""

from biasamp.corpus.matcher import (
    CaptionMatcher,
    caption_ids,
    fallback_caption_id,
    laion_caption_id,
    query_batch,
    query_batch_arrow,
)
from biasamp.corpus.query import (
    CorpusStats,
    QueryResult,
    corpus_stats,
    make_matcher,
    mention_stats,
    query_corpus,
    read_mentions,
)
from biasamp.corpus.readers import CorpusFile, resolve_inputs

__all__ = [
    "CaptionMatcher",
    "CorpusFile",
    "CorpusStats",
    "QueryResult",
    "caption_ids",
    "corpus_stats",
    "fallback_caption_id",
    "laion_caption_id",
    "make_corpus",
    "make_matcher",
    "mention_stats",
    "query_batch",
    "query_batch_arrow",
    "query_corpus",
    "read_mentions",
    "resolve_inputs",
]


def make_corpus(*args, **kwargs):
    """A labelled synthetic caption corpus (see `biasamp.corpus.synthetic.make_corpus`)."""
    from biasamp.corpus.synthetic import make_corpus as _make

    return _make(*args, **kwargs)
