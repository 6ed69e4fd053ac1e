"""How alike are training and generated images? Mean pairwise cosine similarity of their
CLIP embeddings per (occupation, condition), with bootstrap confidence intervals.

For L2-normalised embeddings T (training) and G (generated), the mean over all pairs of
cos(t, g) is mean(T @ G.T). A bootstrap replicate resamples training and generated images
independently (with replacement) and recomputes that mean; the interval is the percentile
interval over replicates, each group with its own seeded generator.

Conditions are paired as the study pairs them when it builds observations (the study
runner's `gen_observations`): `biasamp generate` draws template-prompted images once, with
condition `templates`, and they stand for every template-prompted training condition
(keyword, nearest, nearest-no-indicators, no-indicators); images drawn from captions keep
their selection condition and are compared with that condition's training images.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import polars as pl

from biasamp.errors import BiasampError
from biasamp.tables import TEMPLATE_CONDITION, generated_condition_for


def _within(x: np.ndarray) -> float | None:
    n = len(x)
    if n < 2:
        return None
    s = x.sum(0)
    return float((s @ s - (x * x).sum()) / (n * (n - 1)))


def pairwise_similarity(train: np.ndarray, gen: np.ndarray, *, n_boot: int = 1000, ci: float = 0.95,
                        rng: np.random.Generator | None = None) -> dict:
    """Mean pairwise cosine similarity between two sets of embeddings, with a bootstrap CI."""
    t = np.asarray(train, np.float64)
    g = np.asarray(gen, np.float64)
    t = t / np.linalg.norm(t, axis=1, keepdims=True).clip(1e-12)
    g = g / np.linalg.norm(g, axis=1, keepdims=True).clip(1e-12)
    out = {"n_train": len(t), "n_gen": len(g), "similarity": None, "ci_low": None, "ci_high": None,
           "within_train": _within(t), "within_gen": _within(g)}
    if len(t) == 0 or len(g) == 0:
        return out
    s = t @ g.T
    out["similarity"] = float(s.mean())
    if n_boot > 0:
        rng = rng or np.random.default_rng(0)
        sims = np.empty(n_boot)
        for start in range(0, n_boot, 256):
            b = min(256, n_boot - start)
            ct = rng.multinomial(len(t), np.full(len(t), 1 / len(t)), size=b)
            cg = rng.multinomial(len(g), np.full(len(g), 1 / len(g)), size=b)
            sims[start : start + b] = ((ct @ s) * cg).sum(1) / (len(t) * len(g))
        a = (1 - ci) / 2
        out["ci_low"], out["ci_high"] = (float(x) for x in np.quantile(sims, [a, 1 - a]))
    return out


def pair_conditions(train_conditions, gen_conditions, *, template_condition: str = TEMPLATE_CONDITION,
                    pairs=None) -> list[tuple[str, str | None]]:
    """(training condition, generated condition) pairs to compare; None where a training
    condition has no generated counterpart.

    Default, the study's pairing: a training condition the generated side also carries is
    compared with those images (captions used as prompts keep their selection condition);
    every other one, except captions-as-prompts, with the images drawn from templates.
    `pairs` ((train, gen) tuples or a {train: gen} mapping) replaces that pairing; each
    condition it names must be present on its side.
    """
    train_conditions = list(dict.fromkeys(train_conditions))
    gen_conditions = list(dict.fromkeys(gen_conditions))
    if pairs:
        pairs = list(pairs.items()) if isinstance(pairs, dict) else [tuple(p) for p in pairs]
        for side, have, names in (("training", train_conditions, [t for t, _ in pairs]),
                                  ("generated", gen_conditions, [g for _, g in pairs])):
            unknown = sorted(set(names) - set(have))
            if unknown:
                raise BiasampError(f"--pair names {side} condition(s) {', '.join(unknown)} that no {side} image carries; "
                                   f"{side} conditions present: {', '.join(map(str, have)) or '(none)'}",
                                   hint="write pairs as TRAIN_CONDITION=GEN_CONDITION with conditions from the labels")
        return list(dict.fromkeys(pairs))
    out = []
    for c in train_conditions:
        if c in gen_conditions and c != template_condition:  # images drawn from this condition's own captions
            out.append((c, c))
        else:
            g = generated_condition_for(c, template_condition=template_condition)
            out.append((c, g if g in gen_conditions else None))
    return out


def _model_key(name: str | None) -> str | None:
    """A model name as compared across inputs: a folder by its resolved path."""
    if name is None:
        return None
    p = Path(name)
    return str(p.resolve()) if p.is_dir() else name.rstrip("/")


def _embedding_model(p, base: Path, df: pl.DataFrame, emb: np.ndarray) -> str | None:
    """The one model that embedded this input's images (None where it is not recorded)."""
    from .embeddings import _manifest_model

    has = pl.Series(np.isfinite(emb).all(axis=1))
    if "embedding_model" in df.columns:
        models = df.filter(has)["embedding_model"].drop_nulls().unique(maintain_order=True).to_list()
        if len(models) > 1:
            raise BiasampError(f"embeddings in {p} come from several models: {', '.join(models)}",
                               hint="similarity compares embeddings of one model: classify again with one --embed-model")
        if models:
            return models[0]
    return _manifest_model(base)


def image_similarity(inputs, *, by: tuple[str, ...] = ("occupation", "condition"), n_boot: int = 1000,
                     ci: float = 0.95, seed: int = 0, statuses: tuple[str, ...] | None = None,
                     pairs=None, template_condition: str = TEMPLATE_CONDITION) -> pl.DataFrame:
    """Per group (`by`), mean pairwise cosine similarity of training vs generated embeddings.

    inputs: classify output folders (or labels files inside them) written with embeddings
    of one CLIP model; rows need `source` (train|gen) and the `by` columns. statuses: keep
    only rows whose face_status is one of these (default: every image that has an
    embedding). With `condition` in `by`, generated images are paired with training
    conditions by `pair_conditions` (`pairs`, `template_condition` as there) and the
    output gains `gen_condition`, the generated side's condition of each row.
    """
    from .embeddings import _base_and_labels, load_embeddings

    frames, embs, seen = [], [], []
    for p in [inputs] if isinstance(inputs, (str, Path)) else inputs:
        base, df = _base_and_labels(p)
        missing = [c for c in ("source", *by) if c not in df.columns]
        if missing:
            raise BiasampError(f"labels in {p} lack column(s) {', '.join(missing)}",
                               hint="classify generations tables / img2dataset folders (which carry occupation and "
                               "condition), and pass --source train|gen for plain folders")
        emb = load_embeddings(df, base)
        model = _embedding_model(p, base, df, emb)
        for q, m, d in seen:
            if d != emb.shape[1] or (m is not None and model is not None and _model_key(m) != _model_key(model)):
                raise BiasampError(
                    f"{q} holds embeddings of {m or 'an unrecorded model'} ({d}-d) but {p} of "
                    f"{model or 'an unrecorded model'} ({emb.shape[1]}-d): their similarities mean nothing",
                    hint="classify training and generated images with the same CLIP model (--embed-model)")
        seen.append((p, model, emb.shape[1]))
        embs.append(emb)
        frames.append(df.select("source", *by, *([c for c in ("face_status",) if c in df.columns])))
    df = pl.concat(frames, how="diagonal_relaxed").with_row_index("_i")
    emb = np.concatenate(embs)
    keep = pl.Series(np.isfinite(emb).all(axis=1))
    if statuses is not None:
        keep = keep & df["face_status"].is_in(list(statuses))
    df = df.filter(keep)
    n_side = {s: int((df["source"] == s).sum()) for s in ("train", "gen")}
    keys, found = list(by), {}
    if "condition" in by:
        df = df.with_columns(pl.col("condition").cast(pl.Utf8))
        tr, ge = df.filter(pl.col("source") == "train"), df.filter(pl.col("source") == "gen")
        found = {s: d["condition"].drop_nulls().unique(maintain_order=True).to_list() for s, d in (("train", tr), ("gen", ge))}
        plan = pair_conditions(found["train"], found["gen"], template_condition=template_condition, pairs=pairs)
        unpaired = [c for c in found["gen"] if c not in {g for _, g in plan}]
        if unpaired:
            from biasamp.ui import err_console

            err_console.print(f"[yellow]warning:[/] generated images of condition(s) {', '.join(unpaired)} are compared "
                              f"with no training condition (training conditions: {', '.join(found['train']) or 'none'})",
                              highlight=False, soft_wrap=True)
        pf = pl.DataFrame(plan, schema={"condition": pl.Utf8, "gen_condition": pl.Utf8}, orient="row")
        tr = tr.join(pf, on="condition", how="left") if not pairs else tr.join(pf, on="condition", how="inner")
        ge = ge.join(pf.drop_nulls().rename({"condition": "_tc", "gen_condition": "condition"}), on="condition",
                     how="inner").with_columns(pl.col("condition").alias("gen_condition"), pl.col("_tc").alias("condition"))
        df = pl.concat([tr, ge.select(tr.columns)])
        keys.insert(keys.index("condition") + 1, "gen_condition")
    elif pairs:
        raise BiasampError("--pair pairs conditions, but 'condition' is not among the --by columns",
                           hint="add condition to --by, or leave --pair out")
    rows = []
    for key, grp in df.group_by(keys, maintain_order=True):
        key = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        idx_t = grp.filter(pl.col("source") == "train")["_i"].to_numpy()
        idx_g = grp.filter(pl.col("source") == "gen")["_i"].to_numpy()
        parts = [key[b] for b in by]
        if key.get("gen_condition") not in (None, key.get("condition")):  # keeps seeds of same-named pairs as they were
            parts.append(key["gen_condition"])
        gseed = zlib.crc32("\x1f".join(map(str, parts)).encode())
        r = pairwise_similarity(emb[idx_t], emb[idx_g], n_boot=n_boot, ci=ci, rng=np.random.default_rng([seed, gseed]))
        rows.append({**key, **r})
    schema = {**{b: pl.Utf8 for b in keys}, "n_train": pl.Int64, "n_gen": pl.Int64, "similarity": pl.Float64,
              "ci_low": pl.Float64, "ci_high": pl.Float64, "within_train": pl.Float64, "within_gen": pl.Float64}
    out = pl.DataFrame(rows, schema=schema).sort(keys, nulls_last=True)
    if out["similarity"].is_not_null().sum() == 0:
        what = (f"; training conditions: {', '.join(found['train']) or '(none)'}, generated conditions: "
                f"{', '.join(found['gen']) or '(none)'}" if found else "")
        raise BiasampError(
            f"no group ({', '.join(keys)}) has both training and generated images with embeddings: nothing to compare"
            f" ({n_side['train']} training, {n_side['gen']} generated images{what})",
            hint="pass classify outputs of both sides (--source train for training images); pair conditions "
            "with --pair TRAIN=GEN if the generated images carry other condition names")
    return out
