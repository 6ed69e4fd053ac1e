"""CLIP zero-shot (tiny random model loaded by path), linear probe, human votes, NSFW filter."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from biasamp.classify import make_classifier
from biasamp.classify.human import read_annotations, vote
from biasamp.classify.probe import fit_logistic, load_probe, save_probe
from biasamp.errors import BiasampError

torch = pytest.importorskip("torch")


def _reference_p_female(folder, images, male, female):
    """The transformers path: processor + tokenizer + CLIPModel forward, prompt-ensembled."""
    from transformers import AutoTokenizer, CLIPModel

    try:
        from transformers import CLIPImageProcessorPil as Proc
    except ImportError:  # pragma: no cover
        from transformers import CLIPImageProcessor as Proc
    model = CLIPModel.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    px = Proc.from_pretrained(folder)(images=list(images), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        enc = tok(list(male) + list(female), padding=True, return_tensors="pt")
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=px)
        ie = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
        te = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
        m = te[: len(male)].mean(0)
        f = te[len(male):].mean(0)
        cls = torch.stack([m / m.norm(), f / f.norm()])
        logits = model.logit_scale.exp() * ie @ cls.T
        if len(male) == len(female) == 1:  # the study's two-text case is exactly logits_per_image
            torch.testing.assert_close(logits, out.logits_per_image, rtol=1e-4, atol=1e-4)
        return logits.softmax(-1)[:, 1].numpy(), ie.numpy()


@pytest.mark.parametrize("male,female", [
    (("A photo of a man",), ("A photo of a woman",)),
    (("A photo of a man", "a man"), ("A photo of a woman", "a woman", "a portrait of a woman")),
])
def test_clip_zero_shot_matches_transformers(tiny_clip, astronaut, grace_hopper_path, male, female):
    grace = np.asarray(Image.open(grace_hopper_path).convert("RGB"))
    imgs = [astronaut, grace, np.zeros((50, 90, 3), np.uint8)]
    clf = make_classifier("clip", model=str(tiny_clip), male_texts=male, female_texts=female, device="cpu")
    p, emb = clf.predict([clf.prepare(i, None) for i in imgs])
    p_ref, e_ref = _reference_p_female(str(tiny_clip), imgs, male, female)
    np.testing.assert_allclose(p, p_ref, atol=1e-4)
    np.testing.assert_allclose(emb, e_ref, atol=1e-4)
    assert ((p > 0) & (p < 1)).all()


def test_clip_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(BiasampError, match="cannot load CLIP model"):
        make_classifier("clip", model=str(tmp_path / "nothing"), device="cpu")


def test_fit_logistic_matches_scipy_optimum():
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 5))
    y = (x @ np.array([1.5, -2, 0.5, 0, 1]) + rng.normal(size=80) > 0).astype(float)
    w, b = fit_logistic(x, y, l2=0.7)

    def loss(v):
        z = x @ v[:-1] + v[-1]
        return np.sum(np.logaddexp(0, z) - y * z) + 0.35 * v[:-1] @ v[:-1]

    ref = minimize(loss, np.zeros(6), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(np.r_[w, b], ref, atol=1e-4)


def test_probe_roundtrip_safetensors_and_json(tmp_path):
    w = np.arange(16, dtype=np.float64) / 10
    save_probe(tmp_path / "p.safetensors", w, -0.5, {"embed_model": "m", "n": 3})
    w2, b2, meta = load_probe(tmp_path / "p.safetensors")
    np.testing.assert_allclose(w2, w, rtol=1e-6)
    assert b2 == -0.5 and meta["embed_model"] == "m"
    (tmp_path / "p.json").write_text(json.dumps({"weight": w.tolist(), "bias": 0.25, "embed_model": "m"}))
    w3, b3, meta3 = load_probe(tmp_path / "p.json")
    np.testing.assert_allclose(w3, w)
    assert b3 == 0.25 and meta3["embed_model"] == "m"
    assert b"pickle" not in (tmp_path / "p.safetensors").read_bytes()


def test_linear_probe_classifier_uses_the_probe(tiny_clip, tmp_path, astronaut):
    clip = make_classifier("clip", model=str(tiny_clip), device="cpu")
    crop = clip.prepare(astronaut, None)
    emb = clip.runner.embed([crop])[0]
    save_probe(tmp_path / "p.safetensors", emb * 50, 0.0, {"embed_model": str(tiny_clip)})
    probe = make_classifier("linear-probe", probe=str(tmp_path / "p.safetensors"), device="cpu")
    p, e = probe.predict([probe.prepare(astronaut, None)])
    assert p[0] > 0.99  # w·x = 50 |x|² = 50
    save_probe(tmp_path / "wrong.safetensors", np.ones(7), 0.0, {"embed_model": str(tiny_clip)})
    with pytest.raises(BiasampError, match="expects 7-d"):
        make_classifier("linear-probe", probe=str(tmp_path / "wrong.safetensors"), device="cpu")
    with pytest.raises(BiasampError, match="probe"):
        make_classifier("linear-probe", device="cpu")


def test_human_vote_mapping_majority_and_ties(tmp_path):
    rows = [
        ("a", "female", "x"), ("a", "female", "y"), ("a", "male", "z"),  # majority female
        ("b", "male", "x"), ("b", "female", "y"),  # tie → ambiguous
        ("c", "no_person", "x"),
        ("d", "several_people", "x"), ("d", "several_people", "y"), ("d", "unsure", "z"),
        ("e", "unsure", "x"),
        ("f", "male", "x"), ("f", "female", "x"),  # the same annotator twice: last wins
    ]
    (tmp_path / "a.csv").write_text("item_id,label,annotator\n" + "\n".join(",".join(r) for r in rows[:6]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"item_id": i, "label": lab, "annotator": a})
                                                for i, lab, a in rows[6:]) + "\n")
    v = vote(read_annotations([tmp_path / "a.csv", tmp_path / "b.jsonl"]))
    got = dict(zip(v["item_id"], v["label"]))
    assert got == {"a": "female", "b": "ambiguous", "c": "no_face", "d": "many_faces", "e": "ambiguous", "f": "female"}
    fs = dict(zip(v["item_id"], v["face_status"]))
    assert fs["c"] == "no_face" and fs["d"] == "many_faces" and fs["a"] == "ok"
    pf = dict(zip(v["item_id"], v["p_female"]))
    assert pf["a"] == pytest.approx(2 / 3) and pf["c"] is None


def test_human_bad_label_names_the_file_column_and_line(tmp_path):
    # "woman" is on line 3 of the file (the header is line 1)
    (tmp_path / "a.csv").write_text("item_id,label,annotator\nx,female,a\ny,woman,b\n")
    with pytest.raises(BiasampError, match=r"a\.csv, column 'label': unknown label 'woman' at line 3 \(data row 2\)"):
        read_annotations([tmp_path / "a.csv"])
    # a quoted line break and a blank line before the bad row: still the line an editor shows
    (tmp_path / "q.csv").write_text('item_id,label,annotator\n"x\ny",female,a\n\nz,,b\n')
    with pytest.raises(BiasampError, match=r"column 'label': empty label at line 5 "):
        read_annotations([tmp_path / "q.csv"])
    (tmp_path / "j.jsonl").write_text('{"item_id": "x", "label": "female", "annotator": "a"}\n\n'
                                      '{"item_id": "y", "label": "women", "annotator": "a"}\n')
    with pytest.raises(BiasampError, match=r"j\.jsonl, column 'label': unknown label 'women' at line 3"):
        read_annotations([tmp_path / "j.jsonl"])
    (tmp_path / "e.tsv").write_text("item\tlabel\tannotator\nx\tfemale\ta\n\tmale\tb\n")
    with pytest.raises(BiasampError, match=r"e\.tsv, column 'item': empty item id at line 3"):
        read_annotations([tmp_path / "e.tsv"])
    (tmp_path / "b.csv").write_text("item,label\nx,female\n")
    with pytest.raises(BiasampError, match="missing column.*annotator"):
        read_annotations([tmp_path / "b.csv"])


def test_human_item_alias_blank_lines_and_spaces(tmp_path):
    """The column name `item` works like `item_id`; blank lines and padded labels are fine."""
    (tmp_path / "a.csv").write_text("item,label,annotator\nx, Female ,a\n\ny,male,a\n\n")
    ann = read_annotations(tmp_path / "a.csv")
    assert ann.rows() == [("x", "female", "a"), ("y", "male", "a")]
    (tmp_path / "b.csv").write_text("item_id,item,label,annotator\nx,ignored,female,a\n")
    assert read_annotations(tmp_path / "b.csv")["item_id"].to_list() == ["x"]  # item_id wins when both are there


def test_human_missing_file_names_the_option_and_path(tmp_path, cli_runner):
    from biasamp.cli import app

    with pytest.raises(BiasampError, match=r"--annotations: file not found: .*nope\.csv"):
        read_annotations([tmp_path / "nope.csv"])
    with pytest.raises(BiasampError, match=r"--annotations: not a file"):
        read_annotations([tmp_path])
    lab = tmp_path / "labels.parquet"
    pl.DataFrame({"item_id": ["x"], "label": ["male"]}).write_parquet(lab)
    r = cli_runner.invoke(app, ["validate", str(lab), "--annotations", str(tmp_path / "nope.csv"),
                                "--out", str(tmp_path / "v")])
    assert r.exit_code == 2 and "--annotations" in r.output and "nope.csv" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("flag", [True, False])
def test_safety_checker_flags(tmp_path, astronaut, flag, safety_checker_factory):
    from biasamp.classify.models import SafetyChecker

    folder = safety_checker_factory(tmp_path / "sc", flag_everything=flag)
    sc = SafetyChecker(str(folder), device="cpu")
    assert sc.flags([sc.prepare(astronaut), sc.prepare(astronaut[:100])]) == [flag, flag]
