"""Choose the training captions that stand for each occupation, per condition.

`select_training_examples(mentions, …)` returns a `Selection`: the `selection` table and
its diagnostics (pools, similarity, indicators, neighbours, prompts); `.write(out_dir)`
writes them as Parquet with a manifest. See docs/select.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from biasamp import tables
from biasamp.errors import BiasampError
from biasamp.select.cache import CachedEmbedder
from biasamp.select.embedders import Embedder, make_embedder
from biasamp.select.search import knn
from biasamp.select.strategies import Strategy, apply_pool, mix64, occupation_seed, resolve_strategies
from biasamp.vocab.prompts import Template, load_templates_file, resolve_templates

#: `template` value of rows chosen by similarity pooled over all templates
POOLED = "pooled"
#: pseudo-condition in the diagnostics: every caption that mentions the occupation
ALL_MENTIONS = "all-mentions"
POOL_BY = ("mean", "max")
FLAGS = ("ok", "short_pool", "empty_pool")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

SELECTION_COLUMNS = ["condition", "occupation", "template", "caption_id", "text", "url", "rank", "similarity", "indicator"]
_SEL_SCHEMA = {
    "condition": pl.Utf8, "occupation": pl.Utf8, "template": pl.Utf8, "caption_id": pl.Int64, "text": pl.Utf8,
    "url": pl.Utf8, "rank": pl.Int64, "similarity": pl.Float64, "indicator": pl.Utf8,
}
_POOLS_SCHEMA = {
    "condition": pl.Utf8, "occupation": pl.Utf8, "n_mentions": pl.Int64, "n_pool": pl.Int64, "n_requested": pl.Int64,
    "n_selected": pl.Int64, "flag": pl.Utf8, "message": pl.Utf8,
}
_NEIGHBOURS_SCHEMA = {
    "occupation": pl.Utf8, "template": pl.Utf8, "prompt": pl.Utf8, "rank": pl.Int64, "caption_id": pl.Int64,
    "text": pl.Utf8, "similarity": pl.Float64, "mentions_occupation": pl.Boolean, "occupations": pl.List(pl.Utf8),
    "n_captions": pl.Int64, "selected": pl.Boolean,
}


@dataclass
class Selection:
    """The chosen captions per condition and the diagnostics that explain them."""

    selection: pl.DataFrame
    pools: pl.DataFrame
    similarity: pl.DataFrame
    indicators: pl.DataFrame
    neighbours: pl.DataFrame
    prompts: pl.DataFrame
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: the (cached) embedder used, None without embeddings; its `.stats` count model calls
    embedder: object | None = field(default=None, repr=False, compare=False)

    @property
    def flags(self) -> pl.DataFrame:
        """Pools rows whose flag is not ok (empty pool, or fewer captions than asked)."""
        return self.pools.filter(pl.col("flag") != "ok")

    def messages(self) -> list[str]:
        return list(self.notes) + [m for m in self.flags["message"].to_list() if m]

    def condition(self, name: str) -> pl.DataFrame:
        return self.selection.filter(pl.col("condition") == name)

    def diagnostics(self) -> dict[str, pl.DataFrame]:
        return {"pools": self.pools, "similarity": self.similarity, "indicators": self.indicators,
                "neighbours": self.neighbours, "prompts": self.prompts}

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """selection.parquet, diagnostics/<name>.parquet and select.manifest.json, each atomic."""
        from biasamp.store import write_manifest

        out = Path(out_dir)
        paths = {"selection": tables.write_table(self.selection, out / "selection.parquet", "selection")}
        for name, df in self.diagnostics().items():
            paths[name] = tables.write_table(df, out / "diagnostics" / f"{name}.parquet")
        flags = self.flags.select("condition", "occupation", "flag", "message").to_dicts()
        paths["manifest"] = write_manifest(out, "select", self.params, {"flags": flags, "notes": self.notes})
        return paths


def _templates(spec) -> list[Template]:
    if spec is None or isinstance(spec, str) and not Path(spec).is_file():
        return resolve_templates(spec)
    if isinstance(spec, str | Path):
        return load_templates_file(str(spec))
    if all(isinstance(t, Template) for t in spec):
        return list(spec)
    return resolve_templates([str(t) for t in spec])


def _load_mentions(mentions, occupations: Sequence[str] | None = None) -> pl.DataFrame:
    if isinstance(mentions, str | Path):
        from biasamp.corpus.query import _mentions_dir, read_mentions

        if Path(mentions).is_dir() and _mentions_dir(mentions)[1] is not None:
            # a query output: committed rows only, each once; only the occupations asked for
            # are read (their partitions), so a selection can go one group at a time
            df = read_mentions(mentions, occupations=list(occupations) if occupations is not None else None)
        else:
            df = tables.read_table(mentions, "mentions")
    else:
        df = tables.validate(mentions, "mentions", source="mentions frame")
    if df["caption_id"].null_count():
        rows = df.with_row_index("_row").filter(pl.col("caption_id").is_null())["_row"].head(3).to_list()
        raise BiasampError(f"mentions table: column 'caption_id' has empty values (rows {rows})", hint="every caption needs a stable id (see docs/tables.md)")
    if "url" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.Utf8).alias("url"))
    return df


def _rows(vecs: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """vecs[ids]; a view (no copy) when ids are one increasing run of consecutive rows."""
    if len(ids) and ids[-1] - ids[0] + 1 == len(ids) and (len(ids) == 1 or bool(np.all(np.diff(ids) == 1))):
        return vecs[ids[0] : ids[-1] + 1]
    return vecs[ids]


def _pooled_scores(sims: np.ndarray, pool_by: str) -> np.ndarray:
    return sims.mean(axis=1) if pool_by == "mean" else sims.max(axis=1)


def nearest_topk(queries: np.ndarray, base: np.ndarray, k: int, pool_by: str, **search):
    """Per-template and pooled top-k in one pass over `base`.

    Returns ((scores, ids) per template [T, k'], (scores, ids) pooled [k']). With mean
    pooling the mean prompt vector rides along as one more query of the same search.
    """
    T = len(queries)
    if pool_by == "mean":
        s, i = knn(np.vstack([queries, queries.mean(axis=0, keepdims=True)]), base, k, **search)
        return (s[:T], i[:T]), (s[T], i[T])
    s, i = knn(queries, base, k, **search)
    return (s, i), pooled_topk(queries, base, k, pool_by, per_template=(s, i), **search)


def pooled_topk(queries: np.ndarray, base: np.ndarray, k: int, pool_by: str, per_template: tuple | None = None, **search):
    """Top-k of `base` by the similarity pooled over the query rows (one per template).

    mean: the mean cosine over templates equals the inner product with the mean of the
    prompt vectors, so one exact search answers it. max: every member of the top-k by max
    similarity is in the top-k of the template where its maximum is reached, so the union
    of the per-template top-k lists, rescored, is exact.
    """
    if pool_by == "mean":
        s, i = knn(queries.mean(axis=0, keepdims=True), base, k, **search)
        return s[0], i[0]
    if per_template is None:
        per_template = knn(queries, base, k, **search)
    ids = np.unique(per_template[1][per_template[1] >= 0])
    if len(ids) == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = (np.asarray(base[ids], dtype=np.float32) @ queries.T).max(axis=1)
    order = np.lexsort((ids, -scores))[:k]
    return scores[order], ids[order]


def select_training_examples(
    mentions: pl.DataFrame | str | Path,
    *,
    strategies: str | Sequence[str | Strategy] | None = None,
    n: int = 100,
    k: int = 100,
    templates: str | Sequence[str] | Sequence[Template] | None = None,
    occupations: Sequence[str] | None = None,
    embedder: str | Embedder | None = "minilm",
    model: str | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    pool_by: str = "mean",
    index: str = "exact",
    approx_threshold: int = 5_000_000,
    no_indicator_values: Sequence[str] = ("none",),
    inspect_top: int = 10,
    device: str = "auto",
    batch_size: int = 64,
    show_progress: bool = True,
) -> Selection:
    """Choose training captions per occupation for each strategy (condition).

    - sample strategies (keyword, no-indicators): a seeded uniform sample of `n` per
      occupation (all if fewer, flagged `short_pool`);
    - nearest strategies: per template, the `k` captions most similar to the rendered
      prompt, drawn only from captions that mention the occupation, plus `k` rows with
      template `"pooled"` ranked by similarity pooled over templates (`pool_by` mean|max);
    - captions-as-prompts: the keyword sample, marked to be used as prompts too.

    `embedder=None` skips embeddings (then only sample strategies can run, with no
    similarity). With an embedder, sample rows carry their pooled similarity to the
    occupation's prompts. See docs/select.md for every table.
    """
    from biasamp import ui

    if isinstance(embedder, str) and embedder.lower() == "none":
        embedder = None
    if n < 1 or k < 1:
        raise BiasampError(f"n and k must be at least 1 (got n={n}, k={k})")
    if pool_by not in POOL_BY:
        raise BiasampError(f"unknown pool_by {pool_by!r}", hint="use mean or max")
    strats = resolve_strategies(strategies)
    by_name = {s.name: s for s in strats}
    from biasamp.select.strategies import STRATEGIES

    for s in strats:  # bring in base strategies (computed; written only if asked for)
        if s.pick == "base" and s.base not in by_name:
            by_name[s.base] = STRATEGIES.get(s.base)
    tpls = _templates(templates)
    if not tpls:
        raise BiasampError("no prompt template given", hint="e.g. --templates study")
    df = _load_mentions(mentions, occupations)
    notes: list[str] = []
    dup = len(df) - df.select("caption_id", "occupation").n_unique()
    if dup:
        notes.append(f"mentions table has {dup} repeated (caption_id, occupation) row(s); the first of each was kept")
        df = df.unique(subset=["caption_id", "occupation"], keep="first", maintain_order=True)
    occs = sorted(df["occupation"].unique().to_list()) if occupations is None else list(dict.fromkeys(occupations))
    if occupations is not None:
        unknown = sorted(set(df["occupation"].unique().to_list()) - set(occs))
        df = df.filter(pl.col("occupation").is_in(occs))
        if unknown:
            notes.append(f"{len(unknown)} occupation(s) in the mentions table were not asked for and are left out")
    opts = {"no_indicator_values": tuple(no_indicator_values)}
    search = {"index": index, "approx_threshold": approx_threshold, "device": device}
    need_nearest = any(s.pick == "nearest" for s in by_name.values())
    if need_nearest and embedder is None:
        raise BiasampError("nearest strategies need an embedder", hint="pass --embedder minilm (or another), or drop the nearest strategies")

    # seeded order key: depends only on (seed, occupation, caption_id)
    seeds = {o: occupation_seed(seed, o) for o in occs}
    occ_seed = np.array([seeds[o] for o in df["occupation"].to_list()], dtype=np.uint64)
    key = mix64(df["caption_id"].to_numpy().astype(np.int64).view(np.uint64) ^ occ_seed)
    df = df.with_columns(pl.Series("_key", key, dtype=pl.UInt64)).with_row_index("_row")
    n_mentions = dict(df.group_by("occupation").len().iter_rows())

    prompt_rows = [(o, t.id, t.render(o)) for o in occs for t in tpls]
    prompts = pl.DataFrame(prompt_rows, schema={"occupation": pl.Utf8, "template": pl.Utf8, "prompt": pl.Utf8}, orient="row")

    # ---- sample strategies ---------------------------------------------------------
    rows: dict[str, pl.DataFrame] = {}
    pool_rows: list[dict] = []

    def pool_row(cond, occ, n_pool, requested, selected):
        if n_pool == 0:
            flag, msg = "empty_pool", f"{cond}: no candidate caption for {occ!r}"
        elif selected < requested:
            flag, msg = "short_pool", f"{cond}: only {n_pool} candidate caption(s) for {occ!r}, fewer than {requested} asked; all taken"
        else:
            flag, msg = "ok", ""
        pool_rows.append({"condition": cond, "occupation": occ, "n_mentions": n_mentions.get(occ, 0), "n_pool": n_pool,
                          "n_requested": requested, "n_selected": selected, "flag": flag, "message": msg})

    for s in by_name.values():
        if s.pick != "sample":
            continue
        pool = apply_pool(df, s, opts)
        sizes = dict(pool.group_by("occupation").len().iter_rows())
        picked = (
            pool.sort("occupation", "_key")
            .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("occupation").alias("rank"))
            .filter(pl.col("rank") <= n)
        )
        for o in occs:
            m = sizes.get(o, 0)
            pool_row(s.name, o, m, n, min(m, n))
        rows[s.name] = picked.with_columns(pl.lit(s.name).alias("condition"), pl.lit(None, dtype=pl.Utf8).alias("template"))

    # ---- embeddings ----------------------------------------------------------------
    emb = None
    vecs = text_index = pvecs = None
    if embedder is not None:
        base = make_embedder(embedder, model, device=device, batch_size=batch_size)
        emb = CachedEmbedder(base, cache_dir)
        has_text = df.filter(pl.col("text").is_not_null() & (pl.col("text").str.strip_chars() != ""))
        if need_nearest:
            wanted = has_text
        else:
            ids = pl.concat([r.select("_row") for r in rows.values()]) if rows else pl.DataFrame({"_row": []}, schema={"_row": pl.UInt32})
            wanted = has_text.join(ids.unique(), on="_row", how="semi")
        # texts grouped by occupation: each occupation's vectors then sit (mostly) together,
        # so the per-occupation search reads memory sequentially
        utexts = wanted.sort("occupation", "_row")["text"].unique(maintain_order=True).to_list()
        text_index = pl.DataFrame({"text": utexts, "_tid": np.arange(len(utexts), dtype=np.int64)})
        with ui.progress("embedding captions and prompts", len(utexts) + len(prompt_rows), enabled=show_progress) as advance:
            emb.progress = advance
            vecs = emb.encode(utexts)
            pvecs = emb.encode(prompts["prompt"].to_list()).reshape(len(occs), len(tpls), -1)
            emb.progress = None
        df = df.join(text_index, on="text", how="left")
    occ_pos = {o: i for i, o in enumerate(occs)}

    # ---- nearest strategies --------------------------------------------------------
    for s in by_name.values():
        if s.pick != "nearest":
            continue
        pool = apply_pool(df, s, opts).filter(pl.col("_tid").is_not_null())
        parts = []
        groups = {g[0]: frame for g, frame in pool.partition_by("occupation", as_dict=True, maintain_order=True).items()}
        for o in occs:
            frame = groups.get(o)
            m = 0 if frame is None else len(frame)
            pool_row(s.name, o, m, k, min(m, k))
            if not m:
                continue
            frame = frame.sort("_tid")
            base_vecs = _rows(vecs, frame["_tid"].to_numpy())
            q = pvecs[occ_pos[o]]
            (ps, pi), (cs, ci) = nearest_topk(q, base_vecs, k, pool_by, **search)
            for ti, t in enumerate(tpls):
                ok = pi[ti] >= 0
                parts.append(frame[pi[ti][ok]].with_columns(
                    pl.lit(t.id).alias("template"),
                    pl.Series("rank", np.arange(1, ok.sum() + 1), dtype=pl.Int64),
                    pl.Series("similarity", ps[ti][ok].astype(np.float64)),
                ))
            ci, cs = ci[ci >= 0], cs[ci >= 0]
            parts.append(frame[ci].with_columns(
                pl.lit(POOLED).alias("template"),
                pl.Series("rank", np.arange(1, len(ci) + 1), dtype=pl.Int64),
                pl.Series("similarity", cs.astype(np.float64)),
            ))
        rows[s.name] = (pl.concat(parts, how="diagonal_relaxed") if parts else df.head(0).with_columns(
            pl.lit(None, dtype=pl.Utf8).alias("template"), pl.lit(None, dtype=pl.Int64).alias("rank"),
            pl.lit(None, dtype=pl.Float64).alias("similarity"))).with_columns(pl.lit(s.name).alias("condition"))

    # ---- pooled similarity of sample rows, and of all mentions (diagnostics) ---------
    def pooled_similarity(frame: pl.DataFrame) -> pl.DataFrame:
        """Add `similarity`: the caption's pooled similarity to its occupation's prompts."""
        if vecs is None or not len(frame):
            return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("similarity"))
        out = np.full(len(frame), np.nan)
        tid = frame["_tid"].fill_null(-1).to_numpy()
        occ = frame["occupation"].replace_strict(occ_pos, return_dtype=pl.Int64).to_numpy()
        order = np.argsort(occ, kind="stable")
        bounds = np.searchsorted(occ[order], np.arange(len(occs) + 1))
        for oi in range(len(occs)):
            sel = order[bounds[oi] : bounds[oi + 1]]
            sel = np.sort(sel[tid[sel] >= 0])
            if len(sel):
                out[sel] = _pooled_scores(_rows(vecs, tid[sel]) @ pvecs[oi].T, pool_by)
        return frame.with_columns(pl.Series("similarity", out).fill_nan(None))

    for name, s in by_name.items():
        if s.pick == "sample":
            frame = rows[name]
            if vecs is not None:
                frame = frame.join(df.select("_row", "_tid"), on="_row", how="left")
            rows[name] = pooled_similarity(frame)
    for name, s in by_name.items():
        if s.pick == "base":
            rows[name] = rows[s.base].with_columns(pl.lit(name).alias("condition"))
            base_rows = [p for p in pool_rows if p["condition"] == s.base]
            pool_rows.extend({**r, "condition": name, "message": r["message"].replace(f"{s.base}:", f"{name} ({s.base} sample):", 1)} for r in base_rows)

    wanted_names = [s.name for s in strats]
    frames = [rows[nm].select([pl.col(c).cast(t) if c in rows[nm].columns else pl.lit(None, dtype=t).alias(c) for c, t in _SEL_SCHEMA.items()]) for nm in wanted_names]
    selection = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=_SEL_SCHEMA)
    order = {nm: i for i, nm in enumerate(wanted_names)}
    selection = (
        selection.with_columns(pl.col("condition").replace_strict(order, return_dtype=pl.Int64).alias("_c"),
                               (pl.col("template") == POOLED).fill_null(False).alias("_p"))
        .sort("_c", "occupation", "_p", "template", "rank", nulls_last=False)
        .drop("_c", "_p")
    )
    selection = tables.validate(selection, "selection", source="selection")
    pools = pl.DataFrame([p for p in pool_rows if p["condition"] in order], schema=_POOLS_SCHEMA)
    pools = pools.sort(pl.col("condition").replace_strict(order, return_dtype=pl.Int64), "occupation")

    # ---- diagnostics ----------------------------------------------------------------
    all_mentions = pooled_similarity(df) if need_nearest and vecs is not None else None
    similarity = _similarity_table(selection, all_mentions)
    indicators = _indicator_table(selection, df)
    if need_nearest and vecs is not None and inspect_top > 0:
        neighbours = _neighbours(df, text_index, vecs, pvecs, occs, tpls, prompts, inspect_top, pool_by, search, selection)
    else:
        neighbours = pl.DataFrame(schema=_NEIGHBOURS_SCHEMA)

    params = {
        "strategies": wanted_names, "n": n, "k": k, "templates": {t.id: t.text for t in tpls}, "seed": seed,
        "pool_by": pool_by, "index": index, "approx_threshold": approx_threshold,
        "no_indicator_values": list(no_indicator_values), "inspect_top": inspect_top,
        "embedder": None if emb is None else emb.key, "occupations": len(occs), "mentions": len(df),
    }
    if emb is not None:
        params["embedding"] = vars(emb.stats).copy()
    return Selection(selection, pools, similarity, indicators, neighbours, prompts, params, notes, emb)


def _similarity_table(selection: pl.DataFrame, all_mentions: pl.DataFrame | None) -> pl.DataFrame:
    frames = [selection.select("condition", "occupation", "template", "similarity")]
    if all_mentions is not None:
        frames.append(all_mentions.select(pl.lit(ALL_MENTIONS).alias("condition"), "occupation",
                                          pl.lit(POOLED).alias("template"), "similarity"))
    x = pl.concat(frames, how="vertical_relaxed").filter(pl.col("similarity").is_not_null())
    sim = pl.col("similarity")
    aggs = [pl.len().cast(pl.Int64).alias("n"), sim.mean().alias("mean"), sim.std().alias("std"), sim.min().alias("min")]
    aggs += [sim.quantile(q, interpolation="linear").alias(f"q{int(q * 100):02d}") for q in QUANTILES]
    aggs += [sim.max().alias("max")]
    return x.group_by("condition", "occupation", "template", maintain_order=True).agg(aggs)


def _indicator_table(selection: pl.DataFrame, mentions: pl.DataFrame) -> pl.DataFrame:
    sel = selection.select("condition", "occupation", "caption_id", "indicator").unique(maintain_order=True)
    base = mentions.select(pl.lit(ALL_MENTIONS).alias("condition"), "occupation", "caption_id", "indicator")
    x = pl.concat([sel, base], how="vertical_relaxed")
    counts = [(pl.col("indicator") == v).sum().cast(pl.Int64).alias(f"n_{v}") for v in tables.INDICATORS]

    def agg(by):
        return x.group_by(by, maintain_order=True).agg(pl.len().cast(pl.Int64).alias("n"), *counts)

    per = agg(["condition", "occupation"])
    overall = agg(["condition"]).with_columns(pl.lit(None, dtype=pl.Utf8).alias("occupation")).select(per.columns)
    out = pl.concat([per, overall])
    return out.with_columns([(pl.col(f"n_{v}") / pl.col("n")).alias(f"share_{v}") for v in tables.INDICATORS])


def _neighbours(df, text_index, vecs, pvecs, occs, tpls, prompts, top, pool_by, search, selection) -> pl.DataFrame:
    """The top captions for each prompt among *all* captions (any occupation): shows what a
    search that is not restricted to the occupation's mentions would pick."""
    per_text = (
        df.filter(pl.col("_tid").is_not_null())
        .group_by("_tid")
        .agg(pl.col("caption_id").min(), pl.col("occupation").unique().sort().alias("occupations"),
             pl.col("caption_id").n_unique().cast(pl.Int64).alias("n_captions"))
        .join(text_index, on="_tid")
    )
    sel_pairs = selection.select("occupation", "caption_id").unique().with_columns(pl.lit(True).alias("selected"))
    T = len(tpls)
    flat = pvecs.reshape(len(occs) * T, -1)
    if pool_by == "mean":  # the mean prompt vectors ride along in the same pass
        queries = np.vstack([flat, pvecs.mean(axis=1)])
    else:
        queries = flat
    s, i = knn(queries, vecs, top, **search)
    recs = []
    for oi, o in enumerate(occs):
        for ti, t in enumerate(tpls):
            r = oi * T + ti
            recs.extend((o, t.id, rank, int(tid), float(sc)) for rank, (sc, tid) in enumerate(zip(s[r], i[r]), 1) if tid >= 0)
        if pool_by == "mean":
            ps, pi = s[len(flat) + oi], i[len(flat) + oi]
        else:
            ps, pi = pooled_topk(pvecs[oi], vecs, top, pool_by, per_template=(s[oi * T:(oi + 1) * T], i[oi * T:(oi + 1) * T]))
        recs.extend((o, POOLED, rank, int(tid), float(sc)) for rank, (sc, tid) in enumerate(zip(ps, pi), 1) if tid >= 0)
    hits = pl.DataFrame(recs, schema={"occupation": pl.Utf8, "template": pl.Utf8, "rank": pl.Int64, "_tid": pl.Int64, "similarity": pl.Float64}, orient="row")
    pooled_prompt = prompts.group_by("occupation").agg(pl.col("prompt").str.join(" | ")).with_columns(pl.lit(POOLED).alias("template"))
    all_prompts = pl.concat([prompts, pooled_prompt.select(prompts.columns)])
    out = (
        hits.join(per_text, on="_tid", how="left")
        .join(all_prompts, on=["occupation", "template"], how="left")
        .with_columns(pl.col("occupations").list.contains(pl.col("occupation")).alias("mentions_occupation"))
        .join(sel_pairs, on=["occupation", "caption_id"], how="left")
        .with_columns(pl.col("selected").fill_null(False))
    )
    return out.select(list(_NEIGHBOURS_SCHEMA)).cast(_NEIGHBOURS_SCHEMA)
