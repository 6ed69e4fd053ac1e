"""`biasamp similarity`: conditions paired as the study pairs them, embedding models checked.

Generated-side tables are built with generate's own prompt builder and item ids, so their
conditions are the ones `biasamp generate` writes (`templates` for template prompts, the
selection condition for captions used as prompts); similarities are checked against a
brute-force mean over all (training, generated) pairs.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from biasamp.classify import image_similarity
from biasamp.classify.similarity import pair_conditions
from biasamp.tables import CAPTION_CONDITION, TEMPLATE_CONDITION, generated_condition_for
from biasamp.errors import BiasampError
from biasamp.generate.prompts import build_prompts, item_ids

TEMPLATE_PROMPTED = ("keyword", "nearest", "nearest-no-indicators", "no-indicators")
OCCUPATIONS = ("nurse", "pilot")


def _write_classify_out(folder, df: pl.DataFrame, emb: np.ndarray, model: str | list[str]):
    """A classify output folder as `classify --embeddings` writes it: labels/ + embeddings/."""
    (folder / "labels").mkdir(parents=True)
    (folder / "embeddings").mkdir()
    np.save(folder / "embeddings" / "00000.npy", emb.astype(np.float32))
    df.with_columns(
        pl.lit("ok").alias("face_status"), pl.lit(0.5).alias("p_female"), pl.lit("ambiguous").alias("label"),
        pl.lit("embeddings/00000.npy").alias("embedding_file"), pl.int_range(0, len(df), dtype=pl.Int64).alias("embedding_row"),
        pl.Series("embedding_model", model if isinstance(model, list) else [model] * len(df)),
    ).write_parquet(folder / "labels" / "part-00000.parquet")
    return folder


def _generations(captions: pl.DataFrame | None = None, *, per_prompt: int = 2, **kw) -> pl.DataFrame:
    """Rows as `biasamp generate` writes them (item_id, occupation, condition, group)."""
    p = build_prompts(list(OCCUPATIONS), ["study"], captions, **kw)
    p = p.with_columns(pl.lit(list(range(per_prompt))).alias("index")).explode("index")
    return p.select(
        pl.Series("item_id", item_ids(p["condition"], p["occupation"], p["group"], p["index"])),
        "occupation", "condition", "group", pl.lit("gen").alias("source"),
    )


def _selection() -> pl.DataFrame:
    """Training images per selection condition (the study's five), 3 captions each."""
    rows = [(c, o, 1000 * i + 10 * j + k, f"a {o} at work {k}")
            for i, c in enumerate((*TEMPLATE_PROMPTED, "captions-as-prompts"))
            for j, o in enumerate(OCCUPATIONS) for k in range(3)]
    return pl.DataFrame(rows, schema=["condition", "occupation", "caption_id", "text"], orient="row")


def _train(sel: pl.DataFrame) -> pl.DataFrame:
    return sel.select(pl.col("caption_id").cast(pl.Utf8).alias("item_id"), "occupation", "condition",
                      pl.lit("train").alias("source"))


def _brute(t: np.ndarray, g: np.ndarray) -> float:
    return float(np.mean([[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in g] for a in t]))


@pytest.fixture
def study_inputs(tmp_path):
    sel = _selection()
    train = _train(sel)
    gens = _generations(sel.filter(pl.col("condition") == "captions-as-prompts"))
    rng = np.random.default_rng(7)
    et, eg = rng.normal(size=(len(train), 8)), rng.normal(size=(len(gens), 8))
    tr = _write_classify_out(tmp_path / "tr", train, et, "clip-a")
    ge = _write_classify_out(tmp_path / "ge", gens, eg, "clip-a")
    return tr, ge, train, gens, et, eg, sel


def test_generate_conditions_are_the_ones_paired():
    """One rule pairs training conditions with generated images: generate writes the names
    it pairs, and captions used as prompts never meet template images."""
    from biasamp import generate

    assert (generate.TEMPLATE_CONDITION, generate.CAPTION_CONDITION) == (TEMPLATE_CONDITION, CAPTION_CONDITION)
    assert set(_generations()["condition"]) == {TEMPLATE_CONDITION}
    assert [generated_condition_for(c) for c in [*TEMPLATE_PROMPTED, CAPTION_CONDITION]] == \
        [TEMPLATE_CONDITION] * len(TEMPLATE_PROMPTED) + [CAPTION_CONDITION]
    assert generated_condition_for("keyword", template_condition="t", caption_condition="c") == "t"
    assert generated_condition_for(CAPTION_CONDITION, template_condition="t", caption_condition="c") == "c"


def test_template_images_pair_with_every_template_condition(study_inputs):
    tr, ge, train, gens, et, eg, _ = study_inputs
    assert set(gens["condition"]) == {"templates", "captions-as-prompts"}  # as generate labels them
    sim = image_similarity([tr, ge], n_boot=100)
    assert sim.columns[:3] == ["occupation", "condition", "gen_condition"]
    expected = {(o, c, "templates") for o in OCCUPATIONS for c in TEMPLATE_PROMPTED}
    expected |= {(o, "captions-as-prompts", "captions-as-prompts") for o in OCCUPATIONS}
    assert set(sim.select("occupation", "condition", "gen_condition").iter_rows()) == expected
    assert sim["similarity"].is_not_null().all()
    for r in sim.iter_rows(named=True):
        t = et[((train["occupation"] == r["occupation"]) & (train["condition"] == r["condition"])).to_numpy()]
        g = eg[((gens["occupation"] == r["occupation"]) & (gens["condition"] == r["gen_condition"])).to_numpy()]
        assert (r["n_train"], r["n_gen"]) == (len(t), len(g))
        assert r["similarity"] == pytest.approx(_brute(t, g), abs=1e-6)
        assert r["ci_low"] <= r["similarity"] <= r["ci_high"]


def test_pairing_is_the_measure_stages(study_inputs):
    """Per (condition, occupation), the generated images compared are those the study's
    measure stage counts for that condition (study.runner.gen_observations)."""
    from biasamp.study.runner import gen_observations

    tr, ge, train, gens, *_ = study_inputs
    labels = gens.select("item_id", pl.lit("male").alias("label"), pl.lit(None, pl.Float64).alias("p_female"))
    obs = gen_observations(gens, labels, [*TEMPLATE_PROMPTED, "captions-as-prompts"], TEMPLATE_CONDITION,
                           CAPTION_CONDITION)
    want = obs.group_by("occupation", "condition").agg(pl.len().cast(pl.Int64).alias("n_gen"))
    got = image_similarity([tr, ge], n_boot=0).select("occupation", "condition", "n_gen")
    assert got.sort("occupation", "condition").equals(want.sort("occupation", "condition"))


def test_nearer_training_images_show_as_more_alike(tmp_path):
    """The study's check: training images closer to the generated ones give a higher similarity."""
    rng = np.random.default_rng(1)
    gens = _generations(per_prompt=10).filter(pl.col("occupation") == "nurse")
    centre = rng.normal(size=32)
    eg = centre + 0.5 * rng.normal(size=(len(gens), 32))
    train = pl.DataFrame({"item_id": [f"t{i}" for i in range(40)], "occupation": "nurse",
                          "condition": ["keyword"] * 20 + ["nearest"] * 20, "source": "train"})
    et = np.concatenate([rng.normal(size=(20, 32)), centre + 0.5 * rng.normal(size=(20, 32))])
    sim = image_similarity([_write_classify_out(tmp_path / "tr", train, et, "m"),
                            _write_classify_out(tmp_path / "ge", gens, eg, "m")], n_boot=300)
    by = {r["condition"]: r for r in sim.iter_rows(named=True)}
    assert by["keyword"]["gen_condition"] == by["nearest"]["gen_condition"] == "templates"
    assert by["nearest"]["ci_low"] > by["keyword"]["ci_high"]


def test_same_named_conditions_pair_directly(tmp_path):
    """Hand-made labels whose two sides share a condition name are compared as they are."""
    rng = np.random.default_rng(2)
    df = pl.DataFrame({"item_id": ["a", "b", "c"], "occupation": "nurse", "condition": "keyword",
                       "source": ["train", "gen", "gen"]})
    e = rng.normal(size=(3, 4))
    sim = image_similarity(_write_classify_out(tmp_path / "x", df, e, "m"), n_boot=0)
    assert sim.select("condition", "gen_condition", "n_train", "n_gen").rows() == [("keyword", "keyword", 1, 2)]
    assert sim["similarity"][0] == pytest.approx(_brute(e[:1], e[1:]))


def test_caption_condition_without_its_images_is_not_given_template_images(tmp_path):
    """As in the study, captions-as-prompts training images are never compared with template images."""
    assert pair_conditions(["keyword", "captions-as-prompts"], ["templates"]) == [
        ("keyword", "templates"), ("captions-as-prompts", None)]
    assert pair_conditions(["keyword"], ["keyword", "templates"]) == [("keyword", "keyword")]
    assert pair_conditions(["nearest"], ["tpl"], template_condition="tpl") == [("nearest", "tpl")]


def test_pairs_override_and_template_condition(study_inputs, tmp_path):
    tr, ge, train, gens, et, eg, sel = study_inputs
    sim = image_similarity([tr, ge], n_boot=0, pairs=[("keyword", "captions-as-prompts"), ("nearest", "templates")])
    assert set(sim.select("condition", "gen_condition").iter_rows()) == {
        ("keyword", "captions-as-prompts"), ("nearest", "templates")}
    r = sim.filter((pl.col("occupation") == "nurse") & (pl.col("condition") == "keyword")).row(0, named=True)
    t = et[((train["occupation"] == "nurse") & (train["condition"] == "keyword")).to_numpy()]
    g = eg[((gens["occupation"] == "nurse") & (gens["condition"] == "captions-as-prompts")).to_numpy()]
    assert r["similarity"] == pytest.approx(_brute(t, g), abs=1e-6)
    with pytest.raises(BiasampError, match=r"generated condition\(s\) keyword .*present: templates, captions-as-prompts"):
        image_similarity([tr, ge], pairs={"nearest": "keyword"})
    with pytest.raises(BiasampError, match="'condition' is not among"):
        image_similarity([tr, ge], by=("occupation",), pairs={"nearest": "templates"})
    # template images written under another name (generate's template_condition=)
    g2 = _generations(template_condition="tpl")
    ge2 = _write_classify_out(tmp_path / "ge2", g2, np.random.default_rng(3).normal(size=(len(g2), 8)), "clip-a")
    sim = image_similarity([tr, ge2], n_boot=0, template_condition="tpl")
    assert set(sim["gen_condition"].drop_nulls()) == {"tpl"} and sim["similarity"].is_not_null().sum() == 8


def test_pooled_without_condition(study_inputs):
    tr, ge, train, gens, et, eg, _ = study_inputs
    sim = image_similarity([tr, ge], by=("occupation",), n_boot=0)
    assert "gen_condition" not in sim.columns and sim.height == 2
    r = sim.filter(pl.col("occupation") == "pilot").row(0, named=True)
    t, g = et[(train["occupation"] == "pilot").to_numpy()], eg[(gens["occupation"] == "pilot").to_numpy()]
    assert r["similarity"] == pytest.approx(_brute(t, g), abs=1e-6)


def test_nothing_to_compare_is_an_error(tmp_path, capsys):
    gens = _generations(per_prompt=1)
    ge = _write_classify_out(tmp_path / "ge", gens, np.ones((len(gens), 4)), "m")
    with pytest.raises(BiasampError, match=r"nothing to compare \(0 training, \d+ generated images"):
        image_similarity([ge])
    # captions-as-prompts training images, template images only: no pair
    train = pl.DataFrame({"item_id": ["t"], "occupation": "nurse", "condition": "captions-as-prompts", "source": "train"})
    tr = _write_classify_out(tmp_path / "tr", train, np.ones((1, 4)), "m")
    with pytest.raises(BiasampError, match="training conditions: captions-as-prompts, generated conditions: templates"):
        image_similarity([tr, ge])
    assert "templates are compared with no training condition" in capsys.readouterr().err


def test_embedding_models_must_match(tmp_path):
    train = pl.DataFrame({"item_id": ["t1", "t2"], "occupation": "nurse", "condition": "keyword", "source": "train"})
    gens = _generations(per_prompt=1)
    tr16 = _write_classify_out(tmp_path / "tr16", train, np.ones((2, 16)), "clip-a")
    ge8 = _write_classify_out(tmp_path / "ge8", gens, np.ones((len(gens), 8)), "clip-b")
    with pytest.raises(BiasampError, match=r"tr16 holds embeddings of clip-a \(16-d\) but .*ge8 of clip-b \(8-d\)"):
        image_similarity([tr16, ge8])
    ge16 = _write_classify_out(tmp_path / "ge16", gens, np.ones((len(gens), 16)), "clip-b")
    with pytest.raises(BiasampError, match=r"clip-a \(16-d\) but .*clip-b \(16-d\)"):
        image_similarity([tr16, ge16])
    mixed = _write_classify_out(tmp_path / "mixed", train, np.ones((2, 16)), ["clip-a", "clip-b"])
    with pytest.raises(BiasampError, match="mixed come from several models: clip-a, clip-b"):
        image_similarity([mixed, ge16])
    ok = _write_classify_out(tmp_path / "ok", gens, np.ones((len(gens), 16)), "clip-a")
    assert image_similarity([tr16, ok], n_boot=0)["similarity"].drop_nulls().to_list() == pytest.approx([1.0])


def test_cli_end_to_end_with_classify(tmp_path, tiny_clip, cli_runner):
    """Images classified by the real pipeline (tiny CLIP), generated ones labelled as generate
    labels them: the CLI reports training vs template images per training condition."""
    from PIL import Image

    from biasamp.classify import classify_images
    from biasamp.cli import app
    from biasamp.testing import build_tiny_clip

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    gens = _generations(per_prompt=3).filter(pl.col("occupation") == "nurse")
    train = pl.DataFrame({"item_id": [f"t{i}" for i in range(4)], "occupation": "nurse",
                          "condition": ["keyword", "keyword", "nearest", "nearest"]})
    for i in [*train["item_id"], *gens["item_id"]]:
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
    for name, df in (("train", train), ("gen", gens.drop("source"))):
        df.with_columns(("img/" + pl.col("item_id") + ".png").alias("image")).write_parquet(tmp_path / f"{name}.parquet")
    kw = dict(classifier="clip", face_detector="none", embeddings=True, device="cpu", show_progress=False)
    clip = {"model": str(tiny_clip)}
    classify_images([tmp_path / "train.parquet"], tmp_path / "tr", source="train", classifier_options=clip, **kw)
    classify_images([tmp_path / "gen.parquet"], tmp_path / "ge", classifier_options=clip, **kw)
    r = cli_runner.invoke(app, ["similarity", str(tmp_path / "tr"), str(tmp_path / "ge"), "--out",
                                str(tmp_path / "sim.parquet"), "--n-boot", "50", "-q"])
    assert r.exit_code == 0, r.output
    sim = pl.read_parquet(tmp_path / "sim.parquet")
    assert sim.select("condition", "gen_condition", "n_train", "n_gen").rows() == [
        ("keyword", "templates", 2, 3), ("nearest", "templates", 2, 3)]
    assert sim["similarity"].is_not_null().all()
    r = cli_runner.invoke(app, ["similarity", str(tmp_path / "tr"), str(tmp_path / "ge"), "--pair", "nearest=templates",
                                "--n-boot", "0", "--out", str(tmp_path / "one.parquet"), "-q"])
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(tmp_path / "one.parquet")["condition"].to_list() == ["nearest"]
    r = cli_runner.invoke(app, ["similarity", str(tmp_path / "tr"), str(tmp_path / "ge"), "--pair", "nearest"])
    assert r.exit_code == 2 and "'nearest' is not TRAIN=GEN" in r.output
    # generated images embedded by another CLIP (8-d): a clear error naming both, no traceback
    other = build_tiny_clip(tmp_path / "clip8", image_size=30, patch_size=6, heads=4, projection_dim=8)
    classify_images([tmp_path / "gen.parquet"], tmp_path / "ge8", classifier_options={"model": str(other)}, **kw)
    r = cli_runner.invoke(app, ["similarity", str(tmp_path / "tr"), str(tmp_path / "ge8")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "(16-d)" in r.output and "(8-d)" in r.output and "clip8" in r.output and "ge8" in r.output
