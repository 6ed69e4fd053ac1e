"""Inputs: the Fair Diffusion reader (on the published files, in place), observations and
counts tables, and bad input that must end in a clear error or a flag."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

from biasamp.errors import BiasampError
from biasamp.measure import load_counts, load_observations, measure, parse_fair_diffusion, read_fair_diffusion
from biasamp.measure.io import is_fair_diffusion, normalise_inputs


def _raw_pairs(path):
    """Independent parse: pairs of (name, counts line) straight from the file."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    out = {}
    for name, counts in zip(lines[0::2], lines[1::2]):
        parts = dict(p.split(":") for p in counts.split(","))
        out[name] = {k.strip(): int(v) for k, v in parts.items()}
    return out


def test_fair_diffusion_files_parse_in_place(fair_diffusion_dir):
    for name in ("results_fairface_laion.txt", "results_fairface_generated_1-5.txt", "results_fairface_edited_1-5.txt"):
        path = fair_diffusion_dir / name
        assert is_fair_diffusion(path)
        df = parse_fair_diffusion(path)
        ref = _raw_pairs(path)
        assert len(df) == len(ref) == 153
        for row in df.iter_rows(named=True):
            r = ref[row["occupation"]]
            assert (row["n_male"], row["n_female"], row["n_excluded"]) == (r["man"], r["woman"], r["except"])


def test_read_fair_diffusion_counts_frame(fair_diffusion_dir):
    c = read_fair_diffusion(
        fair_diffusion_dir / "results_fairface_laion.txt",
        fair_diffusion_dir / "results_fairface_generated_1-5.txt",
        condition="keyword",
    )
    assert set(c["source"]) == {"train", "gen"} and set(c["condition"]) == {"keyword"}
    acc = c.filter(pl.col("occupation") == "accountant").sort("source")
    assert acc.filter(pl.col("source") == "train")[["n_male", "n_female"]].row(0) == (3491, 3272)
    assert acc.filter(pl.col("source") == "gen")[["n_male", "n_female"]].row(0) == (166, 84)
    assert not is_fair_diffusion(fair_diffusion_dir / "occupations.txt")


@pytest.mark.parametrize(
    "text, match",
    [
        ("nurse\nman: 1, woman: x, except: 0\n", r"line 2: cannot read counts"),
        ("nurse\n", r"line 1: occupation 'nurse' has no counts line"),
        ("man: 1, woman: 2, except: 0\nnurse\n", r"line 1: expected an occupation name"),
        ("nurse\nman: 1, woman: 2, except: 0\nnurse\nman: 1, woman: 2, except: 0\n", r"line 3: occupation 'nurse' appears twice"),
        ("", r"is empty"),
    ],
)
def test_fair_diffusion_malformed(tmp_path, text, match):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(BiasampError, match=match) as e:
        parse_fair_diffusion(p)
    assert "bad.txt" in str(e.value)


def test_fair_diffusion_missing_file(tmp_path):
    with pytest.raises(BiasampError, match="file not found"):
        read_fair_diffusion(tmp_path / "a.txt", tmp_path / "b.txt")


def _obs(**extra):
    rows = {
        "source": ["train", "train", "train", "gen", "gen", "gen"],
        "condition": ["k"] * 6,
        "occupation": ["nurse"] * 6,
        "label": ["female", "male", "no_face", "female", "ambiguous", "ambiguous"],
    }
    rows.update(extra)
    return pl.DataFrame(rows)


def test_exclusions_counted_by_reason_never_dropped():
    groups, excl, kinds = normalise_inputs(_obs())
    assert kinds == ["observations"]
    e = {(r["source"], r["reason"]): r["n"] for r in excl.iter_rows(named=True)}
    assert e == {("train", "no_face"): 1, ("gen", "ambiguous"): 2}
    tot = groups.group_by("source").agg(pl.col("n_female").sum(), pl.col("n_male").sum()).sort("source")
    assert tot.rows() == [("gen", 1, 0), ("train", 1, 1)]
    r = measure(_obs(), n_boot=50)
    row = r.amplification.row(0, named=True)
    assert (row["n_train"], row["n_train_excluded"], row["n_gen"], row["n_gen_excluded"]) == (2, 1, 1, 2)
    assert row["n_gen_excl_ambiguous"] == 2 and row["n_train_excl_no_face"] == 1
    assert r.exclusions.filter(pl.col("reason") == "ambiguous")["n"].to_list() == [2]


def test_missing_column_names_it(tmp_path):
    df = _obs().drop("occupation")
    p = tmp_path / "obs.csv"
    df.write_csv(p)
    with pytest.raises(BiasampError, match="occupation") as e:
        measure(p, n_boot=10)
    assert "obs.csv" in str(e.value)


def test_unknown_label_is_an_error():
    df = _obs().with_columns(pl.Series("label", ["female", "woman", "male", "male", "male", "male"]))
    with pytest.raises(BiasampError, match=r"unknown value\(s\) \['woman'\]"):
        measure(df, n_boot=10)


def test_unrecognised_table():
    with pytest.raises(BiasampError, match="cannot tell what this table is"):
        measure(pl.DataFrame({"a": [1]}), n_boot=10)


def test_negative_counts_rejected():
    df = pl.DataFrame(
        {"source": ["train", "gen"], "condition": ["k", "k"], "occupation": ["a", "a"], "n_female": [1, -1], "n_male": [1, 1]}
    )
    with pytest.raises(BiasampError, match="negative"):
        load_counts(df)


def test_pandas_and_paths_accepted(tmp_path):
    df = _obs()
    obs = load_observations(df.to_pandas())
    assert obs.equals(load_observations(df))
    p = tmp_path / "obs.parquet"
    df.write_parquet(p)
    a = measure(p, n_boot=20, seed=1).amplification
    b = measure(df.to_pandas(), n_boot=20, seed=1).amplification
    assert a.equals(b)
    assert isinstance(df.to_pandas(), pd.DataFrame)


def test_one_sided_and_unconfident_occupations_are_flagged_not_averaged():
    base = {
        "source": ["train", "train", "gen", "gen"],
        "condition": ["k"] * 4,
        "occupation": ["nurse"] * 4,
        "n_female": [80, 0, 10, 0],
        "n_male": [20, 0, 5, 0],
    }
    extra = pl.DataFrame(
        {
            "source": ["train", "gen", "train", "gen"],
            "condition": ["k"] * 4,
            "occupation": ["only-train", "only-gen", "no-conf", "no-conf"],
            "n_female": [5, 5, 3, 0],
            "n_male": [5, 5, 3, 0],
            "n_excluded": [0, 0, 0, 7],
        }
    )
    df = pl.concat([pl.DataFrame(base).with_columns(pl.lit(0, dtype=pl.Int64).alias("n_excluded")), extra])
    r = measure(df, n_boot=100)
    a = {row["occupation"]: row for row in r.amplification.iter_rows(named=True)}
    assert a["only-train"]["flag"] == "no generated images"
    assert a["only-gen"]["flag"] == "no training images"
    assert a["no-conf"]["flag"] == "no confident generated images"
    assert a["nurse"]["flag"] is None
    for occ in ("only-train", "only-gen", "no-conf"):
        assert a[occ]["amp"] is None and a[occ]["category"] is None and a[occ]["q_value"] is None
    s = r.summary["conditions"]["k"]
    assert s["n_occupations"] == 4 and s["n_flagged"] == 3
    assert s["mean_amp"] == pytest.approx(a["nurse"]["amp"])  # the flagged ones are left out


def test_everything_flagged_is_an_error():
    df = pl.DataFrame(
        {"source": ["train", "gen"], "condition": ["k", "k"], "occupation": ["a", "a"], "label": ["ambiguous", "female"]}
    )
    with pytest.raises(BiasampError, match="no occupation can be measured"):
        measure(df, n_boot=10)


def test_condition_filter_and_fill():
    df = _obs().drop("condition")
    r = measure(df, n_boot=20, condition="keyword")
    assert r.amplification["condition"].to_list() == ["keyword"]
    with pytest.raises(BiasampError, match=r"condition\(s\) \['nope'\] not in the data"):
        measure(_obs(), n_boot=20, condition="nope")


def test_bad_parameters():
    for kwargs, match in [
        ({"n_boot": 0}, "n_boot"),
        ({"ci": 1.5}, "ci"),
        ({"reflected_band": -1}, "reflected_band"),
        ({"seed": -3}, "seed"),
    ]:
        with pytest.raises(BiasampError, match=match):
            measure(_obs(), **kwargs)
