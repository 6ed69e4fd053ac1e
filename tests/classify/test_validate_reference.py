"""`biasamp validate` needs something to validate against: reference values are normalised,
values that count as unlabelled are reported, and no reference at all is an error."""

from __future__ import annotations

import json

import polars as pl
import pytest

from biasamp.classify import validate_labels
from biasamp.errors import BiasampError


def _labels(refs, labels=None) -> pl.DataFrame:
    n = len(refs)
    return pl.DataFrame({"item_id": [f"i{k}" for k in range(n)], "label": labels or ["male"] * n, "reference": refs},
                        schema={"item_id": pl.Utf8, "label": pl.Utf8, "reference": pl.Utf8})


def test_reference_values_are_stripped_and_case_folded(tmp_path):
    padded = validate_labels(_labels(["Male ", " FEMALE", "male", "female"], ["male", "male", "female", "female"]))
    clean = validate_labels(_labels(["male", "female", "male", "female"], ["male", "male", "female", "female"]))
    a, b = padded["summary"]["backends"]["table0"], clean["summary"]["backends"]["table0"]
    assert a["n_reference"] == 4 and a["confusion"] == b["confusion"] and a["accuracy"] == b["accuracy"] == 0.5
    assert a["reference_ignored"] == {}
    assert padded["labelled"]["reference"].to_list() == ["male", "female", "male", "female"]


def test_no_female_or_male_reference_is_an_error(tmp_path, cli_runner):
    from biasamp.cli import app

    with pytest.raises(BiasampError, match=r"nothing to validate against.*'reference' \(values found: 'M' ×2, 'F' ×1\)"):
        validate_labels(_labels(["M", "F", "M"]), out=tmp_path / "v")
    assert not (tmp_path / "v" / "labelled.parquet").exists()  # no empty correction table for measure
    with pytest.raises(BiasampError, match="the table is empty"):
        validate_labels(_labels([]))
    _labels(["M", "F"]).write_parquet(tmp_path / "mf.parquet")
    r = cli_runner.invoke(app, ["validate", str(tmp_path / "mf.parquet"), "--out", str(tmp_path / "v2")])
    assert r.exit_code == 2 and "mf.parquet" in r.output and "'M'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "v2" / "labelled.parquet").exists()


def test_other_reference_values_are_counted_and_reported(capsys):
    res = validate_labels(_labels(["female", "unsure", None, "male", "unsure"]))
    err = capsys.readouterr().err
    assert "3 of 5 rows have a reference that is neither female nor male ('unsure' ×2, empty ×1)" in err
    s = res["summary"]["backends"]["table0"]
    assert s["n_reference"] == 2 and s["reference_ignored"] == {"unsure": 2, "empty": 1}
    validate_labels(_labels(["female", "male"]))
    assert "warning" not in capsys.readouterr().err


def test_annotations_that_match_no_label_are_an_error(tmp_path):
    lab = pl.DataFrame({"item_id": ["astronaut.png", "grace_hopper.jpg"], "label": ["female", "male"]})
    (tmp_path / "ann.csv").write_text("item,label,annotator\nastronaut,female,x\ngrace_hopper,female,x\n")
    with pytest.raises(BiasampError, match=r"0 of its 2 item_ids are among the 2 annotated items.*"
                                           r"'astronaut.png'.*'astronaut'") as e:
        validate_labels(lab, annotations=tmp_path / "ann.csv", out=tmp_path / "v")
    assert "item_id" in str(e.value) and not (tmp_path / "v").exists()
    # ids overlap but no annotation gives a female or male majority
    (tmp_path / "unsure.csv").write_text("item,label,annotator\nastronaut.png,unsure,x\ngrace_hopper.jpg,no_person,x\n")
    with pytest.raises(BiasampError, match=r"2 of its 2 item_ids .* \(their labels: 'ambiguous' ×1, 'no_face' ×1\)"):
        validate_labels(lab, annotations=tmp_path / "unsure.csv")


def test_annotations_with_the_item_column(tmp_path):
    """Annotation files with columns item, label, annotator work for validation."""
    lab = pl.DataFrame({"item_id": ["a", "b", "c"], "label": ["female", "male", "male"], "backend": "dlib-onnx"})
    (tmp_path / "ann.csv").write_text("item,label,annotator\na,female,x\nb,female,x\nc, Male,x\nd,male,x\n")
    res = validate_labels(lab, annotations=[tmp_path / "ann.csv"], out=tmp_path / "v")
    s = res["summary"]["backends"]["dlib-onnx"]
    assert s["n_reference"] == 3 and s["accuracy"] == pytest.approx(2 / 3)
    assert json.loads((tmp_path / "v" / "validation.json").read_text())["backends"]["dlib-onnx"]["n_confident"] == 3


def test_the_table_without_reference_is_named(tmp_path):
    good = _labels(["female", "male"])
    _labels(["F", "M"]).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(BiasampError, match=r"bad\.parquet: nothing to validate against"):
        validate_labels([good, tmp_path / "bad.parquet"])
