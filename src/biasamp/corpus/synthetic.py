"""A labelled *synthetic* caption corpus in the LAION-2B-en metadata schema.

The captions are generated from templates, not collected: they look like web alt-texts
(product listings, stock-photo titles, travel snaps, portraits) and mention occupations
and gender words at rates you set, so the caption query can be tested and benchmarked at
any size without downloading data. Each row carries its truth: `true_occupation` (the
occupation written into the caption, or null), `true_gender_paper` and
`true_gender_extended` (male|female|both|none: the gender words written in, judged by the
"paper" and "extended" lexicons) and `true_name` (a first name written in, or null).

Columns: SAMPLE_ID, URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity (as LAION-2B-en),
then the truth columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from biasamp.vocab.occupations import Occupation, load_occupations

_ADJ = ["young", "smiling", "professional", "happy", "confident", "serious", "senior", "experienced",
        "friendly", "busy", "portrait of a", "close-up of a", "candid shot of a"]
_PLACES = ["at work", "in the office", "in a modern studio", "outdoors", "on the street", "at the desk",
           "in a workshop", "in the city", "on a white background", "during a break", "at a conference",
           "in the kitchen", "on location", "at the hospital", "in front of a building"]
_PREFIX = ["Stock photo:", "Photo of", "Image of", "A picture of", "", "", "", "Portrait:", "Closeup of"]
_MALE = ["man", "men", "boy", "gentleman", "male"]
_FEMALE = ["woman", "women", "girl", "lady", "female"]
_MALE_PRON = ["with his", "and his", "he is", "him and his"]
_FEMALE_PRON = ["with her", "and her", "she is", "her and her"]
_MALE_EXT = ["businessman", "father", "husband", "son", "brother", "king"]
_FEMALE_EXT = ["actress", "mother", "wife", "daughter", "sister", "queen"]
_OBJECTS = ["laptop", "tablet", "coffee", "colleagues", "tools", "team", "documents", "phone", "dog", "friends"]
_NAMES_M = ["John", "Michael", "David", "James", "Robert", "Thomas", "Peter", "Carlos", "Ahmed", "Hiroshi"]
_NAMES_F = ["Maria", "Anna", "Sarah", "Emily", "Laura", "Julia", "Fatima", "Sofia", "Yuki", "Elena"]
# Noise: no occupation, no gender word. Decoys contain an occupation's letters but not the word.
_NOISE_HEAD = ["Vintage", "Modern", "Red", "Blue", "Handmade", "Wooden", "Leather", "Cotton", "Luxury", "Cheap",
               "Organic", "Rustic", "Minimalist", "Retro", "Large", "Small", "Outdoor", "Indoor", "Floral",
               "Abstract", "Sunset over the", "View of the", "Aerial photo of the", "Map of the"]
_NOISE_THING = ["sofa", "chair", "dining table", "dress", "sneakers", "backpack", "watch", "lamp", "poster",
                "canvas print", "phone case", "mug", "beach", "mountains", "harbour", "old town", "garden",
                "wedding cake", "birthday card", "coffee table", "kitchen island", "bookshelf", "rug",
                "car", "bicycle", "tent", "necklace", "ring", "earrings", "t-shirt"]
_NOISE_TAIL = ["for sale", "- free shipping", "| size M", "with pockets", "in 4K", "wallpaper",
               "(set of 2)", "on sale now", "2019", "| Etsy", "stock image", "HD", "- IMG_2041.JPG", "", "", ""]
_EXTRA = ["in excellent condition", "perfect for your living room", "high resolution photograph",
          "available in several colours", "made in Italy", "by a local artist", "royalty free stock photo",
          "close up detail", "on a sunny day", "with natural light", "shot on 35mm film", "free download",
          "", "", ""]
_DECOYS = ["engineering", "nursery", "cookware", "bakery", "painterly", "scientific", "tailored",
           "directory", "pilotless", "judgement", "teaching", "farmhouse", "singersongwriter", "editorial",
           "cookbook", "managerial", "artistry", "nursing"]


def _gender(words_m: np.ndarray, words_f: np.ndarray) -> np.ndarray:
    return np.where(words_m & words_f, "both", np.where(words_m, "male", np.where(words_f, "female", "none")))


def make_corpus(
    n: int,
    *,
    seed: int = 0,
    occupations: list[str] | list[Occupation] | str | None = None,
    occupation_rate: float = 0.05,
    male_rate: float = 0.30,
    female_rate: float = 0.20,
    both_rate: float = 0.05,
    extended_rate: float = 0.15,
    name_rate: float = 0.05,
    noise_gender_rate: float = 0.05,
    decoy_rate: float = 0.02,
    null_rate: float = 0.0,
    out: str | Path | None = None,
    rows_per_file: int = 1_000_000,
    compression: str = "zstd",
) -> pl.DataFrame | list[Path]:
    """Generate `n` synthetic captions (LAION-2B-en columns + truth columns).

    Among occupation captions, a gender word is written in with probability `male_rate`
    (male only), `female_rate` (female only), `both_rate` (one of each); of those words a
    share `extended_rate` is one only the extended lexicon knows ("wife", "businessman").
    `name_rate` adds a first name; `noise_gender_rate` puts gender words into captions
    without an occupation; `decoy_rate` adds look-alike words ("engineering", "nursery")
    that must not match. With `out`, writes `part-00000.parquet`, … (`rows_per_file` rows
    each) plus `synthetic.json` (the parameters) and returns the paths; else returns the frame.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    occs = occupations if occupations is not None else "default"
    if isinstance(occs, (str, Path)):
        occ_names = [o.name for o in load_occupations(occs)]
    else:
        occ_names = [o.name if isinstance(o, Occupation) else str(o) for o in occs]
    params = {k: v for k, v in locals().items() if k in (
        "n", "seed", "occupation_rate", "male_rate", "female_rate", "both_rate", "extended_rate",
        "name_rate", "noise_gender_rate", "decoy_rate", "null_rate")}
    if out is None:
        return _generate(0, n, seed, occ_names, params)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from biasamp.store import atomic_path, atomic_write_json

    paths = []
    for k, start in enumerate(range(0, max(n, 1), rows_per_file)):
        m = min(rows_per_file, n - start)
        df = _generate(start, m, seed + 1000003 * k, occ_names, params)
        p = out / f"part-{k:05d}.parquet"
        with atomic_path(p) as tmp:
            df.write_parquet(tmp, compression=compression, row_group_size=min(max(m, 1), 256 * 1024))
        paths.append(p)
    atomic_write_json({"synthetic": True, "schema": "LAION-2B-en + truth columns", "occupations": occ_names,
                       "files": len(paths), "params": params}, out / "synthetic.json")
    return paths


def _pick(rng: np.random.Generator, words: list[str], n: int) -> pl.Series:
    return pl.Series(words, dtype=pl.Utf8).gather(rng.integers(0, len(words), n))


def _generate(start: int, n: int, seed: int, occ_names: list[str], p: dict) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    has_occ = rng.random(n) < p["occupation_rate"]
    occ_idx = rng.integers(0, len(occ_names), n)
    plural = rng.random(n) < 0.15
    u = rng.random(n)
    g_m = has_occ & (u < p["male_rate"])
    g_f = has_occ & (u >= p["male_rate"]) & (u < p["male_rate"] + p["female_rate"])
    g_b = has_occ & (u >= p["male_rate"] + p["female_rate"]) & (u < p["male_rate"] + p["female_rate"] + p["both_rate"])
    noise_g = (~has_occ) & (rng.random(n) < p["noise_gender_rate"])
    noise_m = noise_g & (rng.random(n) < 0.5)
    noise_f = noise_g & ~noise_m
    ext = rng.random(n) < p["extended_rate"]
    pron = rng.random(n) < 0.3
    names = rng.random(n) < p["name_rate"]
    name_m = rng.random(n) < 0.5
    decoy = rng.random(n) < p["decoy_rate"]

    occ_s = pl.Series(occ_names, dtype=pl.Utf8).gather(occ_idx)
    from biasamp.vocab.occupations import pluralise

    plural_map = {o: pluralise(o)[0] for o in occ_names}
    occ_word = pl.select(
        pl.when(pl.Series(plural)).then(occ_s.replace_strict(plural_map, default=occ_s)).otherwise(occ_s)
    ).to_series()

    want_m = g_m | g_b | noise_m
    want_f = g_f | g_b | noise_f
    male_word = pl.select(
        pl.when(pl.Series(ext & want_m)).then(_pick(rng, _MALE_EXT, n))
        .when(pl.Series(pron)).then(_pick(rng, _MALE_PRON, n)).otherwise(_pick(rng, _MALE, n))
    ).to_series()
    female_word = pl.select(
        pl.when(pl.Series(ext & want_f)).then(_pick(rng, _FEMALE_EXT, n))
        .when(pl.Series(pron)).then(_pick(rng, _FEMALE_PRON, n)).otherwise(_pick(rng, _FEMALE, n))
    ).to_series()
    name_s = pl.select(
        pl.when(pl.Series(name_m)).then(_pick(rng, _NAMES_M, n)).otherwise(_pick(rng, _NAMES_F, n))
    ).to_series()

    df = pl.DataFrame({
        "has_occ": has_occ, "occ": occ_word, "occ_name": occ_s, "wm": want_m, "wf": want_f,
        "mw": male_word, "fw": female_word, "named": names, "name": name_s, "decoy": decoy,
        "prefix": _pick(rng, _PREFIX, n), "adj": _pick(rng, _ADJ, n), "place": _pick(rng, _PLACES, n),
        "obj": _pick(rng, _OBJECTS, n), "nh": _pick(rng, _NOISE_HEAD, n), "nt": _pick(rng, _NOISE_THING, n),
        "ntail": _pick(rng, _NOISE_TAIL, n), "dw": _pick(rng, _DECOYS, n), "extra": _pick(rng, _EXTRA, n), "extra2": _pick(rng, _EXTRA, n), "tmpl": rng.integers(0, 4, n),
    })
    c = pl.col
    gender_part = (
        pl.when(c("wm") & c("wf")).then(pl.concat_str([c("mw"), pl.lit(" and "), c("fw")]))
        .when(c("wm")).then(c("mw")).when(c("wf")).then(c("fw")).otherwise(pl.lit(""))
    )
    name_part = pl.when(c("named")).then(pl.concat_str([c("name"), pl.lit(",")])).otherwise(pl.lit(""))
    decoy_part = pl.when(c("decoy")).then(c("dw")).otherwise(pl.lit(""))
    occ_text = (
        pl.when(c("tmpl") == 0).then(pl.concat_str([c("prefix"), name_part, c("adj"), gender_part, c("occ"), c("place")], separator=" "))
        .when(c("tmpl") == 1).then(pl.concat_str([name_part, gender_part, pl.lit("working as"), c("occ"), c("place"), pl.lit("with"), c("obj"), c("extra")], separator=" "))
        .when(c("tmpl") == 2).then(pl.concat_str([c("occ").str.to_titlecase(), pl.lit("-"), c("adj"), gender_part, c("place"), decoy_part, c("extra")], separator=" "))
        .otherwise(pl.concat_str([c("prefix"), c("occ"), gender_part, name_part, c("place"), c("extra"), pl.lit("| stock photo")], separator=" "))
    )
    noise_text = pl.concat_str([name_part, c("nh"), gender_part, c("nt"), c("extra"), decoy_part, c("extra2"), c("ntail")], separator=" ")
    text = pl.when(c("has_occ")).then(occ_text).otherwise(noise_text).str.replace_all(r"\s+", " ").str.strip_chars()
    ids = np.arange(start, start + n, dtype=np.int64)
    frame = df.select(
        pl.Series("SAMPLE_ID", ids * 7 + seed % 7),
        pl.concat_str([pl.lit("https://img"), pl.Series(ids % 97).cast(pl.Utf8), pl.lit(".example.com/"),
                       pl.Series(rng.integers(0, 2**62, n)).cast(pl.Utf8), pl.lit(".jpg")]).alias("URL"),
        text.alias("TEXT"),
        pl.Series("HEIGHT", rng.integers(256, 2048, n)),
        pl.Series("WIDTH", rng.integers(256, 2048, n)),
        pl.lit("?").alias("LICENSE"),
        pl.lit("UNLIKELY").alias("NSFW"),
        pl.Series("similarity", rng.uniform(0.28, 0.45, n)),
        pl.when(c("has_occ")).then(c("occ_name")).otherwise(None).alias("true_occupation"),
        pl.Series("true_gender_paper", _gender(want_m & ~ext, want_f & ~ext)),
        pl.Series("true_gender_extended", _gender(want_m, want_f)),
        pl.when(c("named")).then(c("name")).otherwise(None).alias("true_name"),
    )
    if p["null_rate"]:
        frame = frame.with_columns(pl.when(pl.Series(rng.random(n) < p["null_rate"])).then(None).otherwise(c("TEXT")).alias("TEXT"))
    return frame
