"""Run the stages' own commands and functions on an engine, unchanged.

`routed(engine)` is a context manager: while it is active, the library functions that
the stage commands call (`query_corpus`, `embed_to_shards`, `generate_images`,
`classify_images`, `fetch_training_images`) are those of `biasamp.engines.stages`, bound to
`engine`. `biasamp scale --engine ray --address HOST:PORT <stage command> …` uses it, so
every option of a stage command works on the cluster; a study runner can run its stages
inside it the same way. `used` tells which stages went
through the engine (a stage command that bypassed it is reported, never silently run
locally).
"""

from __future__ import annotations

import functools
import importlib
from contextlib import contextmanager

from biasamp.engines import Engine

#: (module a caller imports the function from, function name) -> function in
#: `biasamp.engines.stages`. Both the defining module and the package that re-exports
#: the function are listed, so `from biasamp.images import fetch_training_images` is
#: routed as well as `from biasamp.images.fetch import fetch_training_images`.
ROUTES: dict[tuple[str, str], str] = {
    ("biasamp.corpus.query", "query_corpus"): "query_corpus",
    ("biasamp.corpus", "query_corpus"): "query_corpus",
    ("biasamp.select.embedders", "embed_to_shards"): "embed_to_shards",
    ("biasamp.generate", "generate_images"): "generate_images",
    ("biasamp.classify", "classify_images"): "classify_images",
    ("biasamp.images.fetch", "fetch_training_images"): "fetch_training_images",
    ("biasamp.images", "fetch_training_images"): "fetch_training_images",
}


@contextmanager
def routed(engine: Engine, per_stage: dict[str, dict] | None = None):
    """Route the stages' functions to `engine`; yields the set of stage functions used.

    per_stage: extra keyword arguments per function name of `biasamp.engines.stages`
    (e.g. {"generate_images": {"concurrency": 4}}).
    """
    from biasamp.engines import stages

    used: set[str] = set()
    saved = []
    try:
        for (module, name), target in ROUTES.items():
            mod = importlib.import_module(module)
            original = getattr(mod, name)
            stages.ORIGINALS.setdefault((module, name), original)
            fn = getattr(stages, target)
            extra = dict((per_stage or {}).get(target, {}))

            @functools.wraps(original)
            def bound(*args, _fn=fn, _target=target, _extra=extra, **kwargs):
                used.add(_target)
                return _fn(*args, engine=engine, **_extra, **kwargs)

            saved.append((mod, name, original))
            setattr(mod, name, bound)
        yield used
    finally:
        for mod, name, original in reversed(saved):
            setattr(mod, name, original)
            stages.ORIGINALS.pop((mod.__name__, name), None)
