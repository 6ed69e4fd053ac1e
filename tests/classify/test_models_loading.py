"""Model loading: safetensors only (pickled .bin weights refused with a way out, except the
default safety checker, which publishes none), and options a classifier would ignore."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from biasamp.classify import make_classifier
from biasamp.classify import models as m
from biasamp.errors import BiasampError

torch = pytest.importorskip("torch")


def _pickled_copy(src: Path, dest: Path, cls) -> Path:
    """`src` with its weights as a pickled pytorch_model.bin instead of model.safetensors (what
    older save_pretrained(safe_serialization=False) wrote; transformers 5 writes safetensors only)."""
    shutil.copytree(src, dest)
    model = cls.from_pretrained(src)
    (dest / "model.safetensors").unlink()
    torch.save(model.state_dict(), dest / "pytorch_model.bin")
    return dest


@pytest.fixture(scope="module")
def pickled_clip(tiny_clip, tmp_path_factory):
    from transformers import CLIPModel

    return _pickled_copy(tiny_clip, tmp_path_factory.mktemp("pickled") / "clip", CLIPModel)


def test_clip_loads_safetensors_and_refuses_pickled_weights(tiny_clip, pickled_clip, tmp_path, astronaut):
    from transformers import CLIPModel

    assert (tiny_clip / "model.safetensors").exists()
    make_classifier("clip", model=str(tiny_clip), device="cpu")
    with pytest.raises(BiasampError, match=r"only pickled PyTorch weights \(pytorch_model\.bin\).*safetensors only") as e:
        make_classifier("clip", model=str(pickled_clip), device="cpu")
    assert "save_pretrained" in str(e.value) and str(pickled_clip.resolve()) in str(e.value)
    with pytest.raises(BiasampError, match="only pickled PyTorch weights"):  # the embedder of --embed-model too
        m.ClipImageModel(str(pickled_clip), device="cpu")
    # the conversion the hint gives makes a folder that loads, with the same weights
    dest = tmp_path / "converted"
    shutil.copytree(pickled_clip, dest)
    CLIPModel.from_pretrained(pickled_clip).save_pretrained(dest)
    a = make_classifier("clip", model=str(dest), device="cpu")
    b = make_classifier("clip", model=str(tiny_clip), device="cpu")
    np.testing.assert_allclose(a.predict([a.prepare(astronaut, None)])[0], b.predict([b.prepare(astronaut, None)])[0])


def test_pickled_hub_model_in_the_cache_is_named(tmp_path, monkeypatch):
    """A hub id whose cached files are a .bin only: the error says so (not 'cannot connect')."""
    import huggingface_hub.constants as hc

    snap = tmp_path / "hub" / "models--someone--tiny-clip" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "pytorch_model.bin").write_bytes(b"not loaded")
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert m._pickled_only("someone/tiny-clip") and not m._pickled_only("someone/other")
    err = m._weights_error("CLIP model", "someone/tiny-clip", "CLIPModel", OSError("couldn't connect"))
    assert "only pickled PyTorch weights" in str(err)
    err = m._weights_error("CLIP model", "someone/other", "CLIPModel", OSError("couldn't connect"))
    assert "only pickled" not in str(err) and "couldn't connect" in str(err)


def test_safety_checker_safetensors_pickled_and_the_default_exception(tmp_path, astronaut, safety_checker_factory,
                                                                      monkeypatch):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    folder = safety_checker_factory(tmp_path / "sc", flag_everything=True)
    assert (folder / "model.safetensors").exists()
    assert m.SafetyChecker(str(folder), device="cpu").model == str(folder.resolve())
    pickled = _pickled_copy(folder, tmp_path / "sc-bin", StableDiffusionSafetyChecker)
    with pytest.raises(BiasampError, match=r"safety checker .*only pickled PyTorch weights") as e:
        m.SafetyChecker(str(pickled), device="cpu")
    assert "save_pretrained" in str(e.value)
    # the published default has no safetensors weights: for it alone the .bin is loaded
    assert m.DEFAULT_NSFW_MODEL in m.PICKLED_DEFAULTS
    monkeypatch.setattr(m, "PICKLED_DEFAULTS", frozenset({str(pickled.resolve())}))
    sc = m.SafetyChecker(str(pickled), device="cpu")
    assert sc.flags([sc.prepare(astronaut)]) == [True]


def test_missing_models_are_still_plain_load_errors(tmp_path):
    with pytest.raises(BiasampError, match="cannot load CLIP model") as e:
        make_classifier("clip", model=str(tmp_path / "nothing"), device="cpu")
    assert "pickled" not in str(e.value)
    with pytest.raises(BiasampError, match="cannot load safety checker") as e:
        m.SafetyChecker(str(tmp_path / "nothing"), device="cpu")
    assert "pickled" not in str(e.value)


def test_model_reference_resolves_folders_only(tmp_path, monkeypatch):
    (tmp_path / "tiny").mkdir()
    monkeypatch.chdir(tmp_path)
    assert m.model_reference("tiny") == str((tmp_path / "tiny").resolve())
    assert m.model_reference("openai/clip-vit-large-patch14") == "openai/clip-vit-large-patch14"
    assert m.model_reference(Path("tiny")) == m.model_reference(str(tmp_path / "tiny"))


@pytest.mark.parametrize("margin", [0.0, 0.5, 0.25])
def test_face_region_crops_the_box_plus_the_margin(tiny_clip, astronaut, margin):
    from PIL import Image

    from biasamp.classify.faces import Face

    clip = make_classifier("clip", model=str(tiny_clip), region="face", face_margin=margin, device="cpu")
    face = Face(150.0, 100.0, 250.0, 240.0)  # the grown box stays inside the 512 x 512 image
    got = clip.prepare(astronaut, face)
    bw, bh = 100, 140
    box = (int(150 - margin * bw), int(100 - margin * bh), int(250 + margin * bw), int(240 + margin * bh))
    want = clip.runner.pre.crop(np.asarray(Image.fromarray(astronaut).crop(box)))
    np.testing.assert_array_equal(got, want)
    with pytest.raises(BiasampError, match="face margin must be 0 or more"):
        make_classifier("clip", model=str(tiny_clip), region="face", face_margin=-0.1, device="cpu")


@pytest.mark.parametrize("classifier,extra", [
    ("linear-probe", ["--probe", "p.safetensors"]),
    ("dlib-onnx", []),
    ("human", ["--annotations", "a.csv"]),
])
@pytest.mark.parametrize("clip_option", [["--region", "face"], ["--male-text", "a man"], ["--face-margin", "0.2"]])
def test_clip_only_options_with_other_classifiers_are_refused(tmp_path, cli_runner, classifier, extra, clip_option):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["classify", str(tmp_path), "--out", str(tmp_path / "o"), "--classifier", classifier,
                                *extra, *clip_option])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"{clip_option[0]}" in r.output and "--classifier clip only" in r.output
    assert not (tmp_path / "o").exists()


def test_face_margin_needs_region_face(tmp_path, cli_runner):
    from biasamp.cli import app

    r = cli_runner.invoke(app, ["classify", str(tmp_path), "--out", str(tmp_path / "o"), "--classifier", "clip",
                                "--face-margin", "0.2"])
    assert r.exit_code == 2 and "--face-margin applies to --region face only" in r.output


def test_nsfw_with_the_human_classifier_is_warned(tmp_path, capsys):
    from biasamp.classify import Labeler

    ann = tmp_path / "a.csv"
    ann.write_text("item_id,label,annotator\nx.png,female,a\n")
    Labeler("human", nsfw=True, workers=0, classifier_options={"annotations": str(ann)}).close()
    err = capsys.readouterr().err
    assert "--nsfw" in err and "human" in err and "does not run" in err
    Labeler("human", nsfw=False, workers=0, classifier_options={"annotations": str(ann)}).close()
    assert "warning" not in capsys.readouterr().err
