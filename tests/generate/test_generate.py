"""Generation with a tiny random pipeline, loaded from disk like a user's model."""

import io
import json
import tarfile

import numpy as np
import polars as pl
import pytest
from PIL import Image

from biasamp.errors import BiasampError
from biasamp.generate import derive_seed, generate_images, read_image_bytes, regenerate_image
from biasamp.tables import GENERATIONS

torch = pytest.importorskip("torch")

FAST = dict(steps=2, height=32, width=32, show_progress=False)


def _pixels(ref, run_dir):
    return np.asarray(Image.open(io.BytesIO(read_image_bytes(ref, run_dir))).convert("RGB"))


def test_tiny_pipeline_is_deterministic(tmp_path, tiny_model):
    from biasamp.generate.testing import build_tiny_pipeline

    other = build_tiny_pipeline(tmp_path / "again", seed=0)
    files = sorted(p.relative_to(tiny_model) for p in tiny_model.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    assert any(str(f).endswith(".safetensors") for f in files)
    for f in files:
        assert (tiny_model / f).read_bytes() == (other / f).read_bytes(), f


def test_generate_writes_table_and_images(tmp_path, tiny_backend):
    out = tmp_path / "run"
    gens = generate_images(out, backend=tiny_backend, occupations="nurse,engineer", templates="face,photo", images_per_prompt=3, batch_size=4, shard_size=5, **FAST)
    assert len(gens) == 12 and gens["item_id"].is_unique().all()
    assert set(GENERATIONS.required) <= set(gens.columns)
    assert sorted(gens["shard"].unique()) == ["000000", "000001", "000002"]
    row = gens.filter(pl.col("item_id") == "templates__engineer__face__00002").row(0, named=True)
    assert row["prompt"] == "A photo of the face of an engineer" and row["group"] == "face" and row["condition"] == "templates"
    assert row["seed"] == derive_seed(42, row["prompt"], 2) and row["index"] == 2
    assert (row["steps"], row["guidance"], row["width"], row["height"]) == (2, 7.5, 32, 32)
    assert row["scheduler"] == "PNDMScheduler" and row["dtype"] == "float32" and row["device"] == "cpu"
    assert row["image"] == "images/000001/templates__engineer__face__00002.png"
    img = Image.open(out / row["image"])
    assert img.size == (32, 32) and img.mode == "RGB"
    meta = json.loads(img.text["biasamp"])
    assert meta["seed"] == row["seed"] and meta["prompt"] == row["prompt"]
    # different seeds give different images
    a, b = (_pixels(r, out) for r in gens["image"].head(2))
    assert not np.array_equal(a, b)
    manifest = json.loads((out / "generate.manifest.json").read_text())
    assert manifest["params"]["steps"] == 2 and manifest["resolved"]["scheduler"] == "PNDMScheduler"


def test_same_settings_same_bytes_and_files_equal_webdataset(tmp_path, tiny_backend):
    kw = dict(backend=tiny_backend, occupations="chef,nurse", templates="face", images_per_prompt=3, batch_size=2, shard_size=4, **FAST)
    a = generate_images(tmp_path / "a", **kw)
    b = generate_images(tmp_path / "b", **kw)
    w = generate_images(tmp_path / "w", image_format="webdataset", **kw)
    assert a.drop("image").equals(b.drop("image")) and a["image"].equals(b["image"])
    assert w["image"][0] == "images/000000.tar::templates__chef__face__00000.png"
    for ra, rw in zip(a["image"], w["image"]):
        assert (tmp_path / "a" / ra).read_bytes() == (tmp_path / "b" / ra).read_bytes()
        assert read_image_bytes(rw, tmp_path / "w") == (tmp_path / "a" / ra).read_bytes()
    with tarfile.open(tmp_path / "w" / "images" / "000000.tar") as tar:
        names = tar.getnames()
        assert names[:2] == ["templates__chef__face__00000.png", "templates__chef__face__00000.json"]
        meta = json.loads(tar.extractfile(names[1]).read())
        assert meta["seed"] == a["seed"][0]


def test_batched_images_match_images_drawn_alone(tmp_path, tiny_backend):
    """Each image has its own generator: a batch of 4 equals 4 images drawn alone up to
    float rounding of batched arithmetic; with batch size 1 they are bit-identical."""
    batched = generate_images(tmp_path / "b4", backend=tiny_backend, occupations="nurse", templates="all", images_per_prompt=1, batch_size=4, **FAST)
    single = generate_images(tmp_path / "b1", backend=tiny_backend, occupations="nurse", templates="all", images_per_prompt=1, batch_size=1, **FAST)
    assert batched["seed"].equals(single["seed"])
    for rb, rs, row in zip(batched["image"], single["image"], single.iter_rows(named=True)):
        pb, ps = _pixels(rb, tmp_path / "b4").astype(int), _pixels(rs, tmp_path / "b1").astype(int)
        assert np.abs(pb - ps).max() <= 1
        alone = np.asarray(regenerate_image(row, backend=tiny_backend))
        assert np.array_equal(alone, ps)


def test_regenerate_loads_the_recorded_model(tmp_path, tiny_backend):
    gens = generate_images(tmp_path / "r", backend=tiny_backend, occupations="baker", templates="face", images_per_prompt=1, batch_size=1, **FAST)
    row = gens.row(0, named=True)
    again = regenerate_image(row)  # loads row["model"] with the row's scheduler, dtype and device
    assert np.array_equal(np.asarray(again), _pixels(row["image"], tmp_path / "r"))


def test_captions_are_truncated_to_the_token_limit(tmp_path, tiny_backend):
    long = "a nurse " + " ".join(f"word{i}" for i in range(40))  # > 77 byte-level tokens
    sel = pl.DataFrame({"condition": ["captions-as-prompts"] * 2, "occupation": ["nurse", "nurse"], "caption_id": [5, 6], "text": [long, "a nurse smiling"]})
    gens = generate_images(tmp_path / "c", backend=tiny_backend, captions=sel, images_per_prompt=1, batch_size=2, **FAST)
    by = {r["group"]: r for r in gens.iter_rows(named=True)}
    assert by["5"]["prompt_truncated"] and not by["6"]["prompt_truncated"]
    assert by["5"]["n_tokens"] == tiny_backend.count_tokens(long) > 77
    assert long.startswith(by["5"]["prompt"]) and tiny_backend.count_tokens(by["5"]["prompt"]) <= 77
    assert tiny_backend.count_tokens(by["5"]["prompt"] + " x") > 70  # not cut much further than needed
    assert by["5"]["source_text"] == long and by["5"]["caption_id"] == 5 and by["5"]["condition"] == "captions-as-prompts"
    assert by["6"]["prompt"] == "a nurse smiling" and by["6"]["item_id"] == "captions-as-prompts__nurse__6__00000"


def test_until_usable_records_attempts(tmp_path, tiny_backend):
    def accept(image, row):  # deterministic stand-in for a face filter
        assert image.size == (32, 32)
        return row["seed"] % 3 != 0

    gens = generate_images(tmp_path / "u", backend=tiny_backend, occupations="nurse,chef", templates="face", until_usable=3, max_attempts=12, accept=accept, batch_size=4, **FAST)
    attempts = pl.read_parquet(tmp_path / "u" / "attempts" / "*.parquet")
    for occ in ("nurse", "chef"):
        att = attempts.filter(pl.col("occupation") == occ).sort("index")
        ok = att.filter("accepted")
        assert len(ok) == 3 and att["index"].to_list() == list(range(len(att)))
        assert att["accepted"][-1]  # stopped right after the third accepted image
        assert all(s % 3 != 0 for s in ok["seed"]) and all(s % 3 == 0 for s in att.filter(~pl.col("accepted"))["seed"])
        g = gens.filter(pl.col("occupation") == occ)
        assert sorted(g["index"]) == sorted(ok["index"]) and all((tmp_path / "u" / p).exists() for p in g["image"])
    # a filter nothing passes stops at the cap
    none = generate_images(tmp_path / "n", backend=tiny_backend, occupations="nurse", templates="face", until_usable=2, max_attempts=5, accept=lambda i, r: False, batch_size=4, **FAST)
    assert none.is_empty()
    att = pl.read_parquet(tmp_path / "n" / "attempts" / "*.parquet")
    assert len(att) == 5 and not att["accepted"].any()


def test_resume_after_partial_shard_and_changed_settings(tmp_path, tiny_backend):
    """A run killed between steps of a shard commit resumes to the uninterrupted result."""
    kw = dict(backend=tiny_backend, occupations="nurse,chef,baker", templates="face", images_per_prompt=2, batch_size=2, shard_size=2, **FAST)
    ref = generate_images(tmp_path / "ref", **kw)
    out = tmp_path / "run"
    generate_images(out, **kw)
    # as if killed: shard 1 committed its images but not its table part; shard 2 half-written
    (out / "generations" / "part-000001.parquet").unlink()
    (out / "generations" / "part-000002.parquet").unlink()
    (out / "images" / "000002" / "templates__baker__face__00001.png").unlink()
    (out / "images" / ".000002.dead.tmp").mkdir()
    (out / "generations" / ".part-000002.parquet.x.tmp").write_bytes(b"half")
    kept = (out / "images" / "000000" / "templates__nurse__face__00000.png").stat().st_mtime_ns
    again = generate_images(out, **kw)
    assert again.equals(ref.with_columns(again["image"])) and again["image"].equals(ref["image"])
    assert (out / "images" / "000000" / "templates__nurse__face__00000.png").stat().st_mtime_ns == kept
    assert not list(out.rglob("*.tmp"))
    for r in ref["image"]:
        assert (out / r).read_bytes() == (tmp_path / "ref" / r).read_bytes()
    with pytest.raises(BiasampError, match="different generation run.*steps"):
        generate_images(out, **{**kw, "steps": 3})


def test_webdataset_resume_after_partial_shard(tmp_path, tiny_backend):
    kw = dict(backend=tiny_backend, occupations="nurse,chef", templates="face", images_per_prompt=2, batch_size=2, shard_size=2, image_format="webdataset", **FAST)
    ref = generate_images(tmp_path / "ref", **kw)
    out = tmp_path / "run"
    generate_images(out, **kw)
    (out / "generations" / "part-000001.parquet").unlink()  # tar renamed in, table part not yet committed
    (out / "images" / ".000001.tar.dead.tmp").write_bytes(b"half a tar")
    again = generate_images(out, **kw)
    assert again.equals(ref)
    assert (out / "images" / "000001.tar").read_bytes() == (tmp_path / "ref" / "images" / "000001.tar").read_bytes()
    assert not list(out.rglob("*.tmp"))


def test_model_options(tmp_path, tiny_model, tiny_backend):
    from biasamp.generate import load_backend

    ddim = load_backend("diffusers", str(tiny_model), device="cpu", scheduler="DDIMScheduler")
    g = generate_images(tmp_path / "d", backend=ddim, occupations="nurse", templates="face", images_per_prompt=1, **FAST)
    assert g["scheduler"][0] == "DDIMScheduler"
    neg = generate_images(tmp_path / "neg", backend=tiny_backend, occupations="nurse", templates="face", images_per_prompt=1, negative_prompt="blurry", **FAST)
    pos = generate_images(tmp_path / "pos", backend=tiny_backend, occupations="nurse", templates="face", images_per_prompt=1, **FAST)
    assert neg["negative_prompt"][0] == "blurry" and neg["seed"][0] == pos["seed"][0]
    assert not np.array_equal(_pixels(neg["image"][0], tmp_path / "neg"), _pixels(pos["image"][0], tmp_path / "pos"))
    with pytest.raises(BiasampError, match="unknown scheduler 'Nope'"):
        load_backend("diffusers", str(tiny_model), device="cpu", scheduler="Nope")
    with pytest.raises(BiasampError, match="no safety checker"):
        load_backend("diffusers", str(tiny_model), device="cpu", safety_checker=True)
    if not torch.cuda.is_available():
        with pytest.raises(BiasampError, match="CUDA is not available"):
            load_backend("diffusers", str(tiny_model), device="cuda")
    with pytest.raises(BiasampError, match="unknown generator backend"):
        load_backend("nope", str(tiny_model))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BiasampError, match="model_index.json"):
        load_backend("diffusers", str(tmp_path / "empty"), device="cpu")
    with pytest.raises(BiasampError, match="share an item id.*templates__nurse__face"):
        generate_images(tmp_path / "x", backend=tiny_backend, occupations=["nurse", "Nurse"], templates="face")
    with pytest.raises(BiasampError, match="multiple of 8"):
        generate_images(tmp_path / "x", backend=tiny_backend, occupations="nurse", height=30)


def test_only_safetensors_weights_are_loaded(tmp_path, tiny_model):
    from diffusers import DiffusionPipeline

    from biasamp.generate import load_backend

    pipe = DiffusionPipeline.from_pretrained(str(tiny_model), use_safetensors=True)
    pipe.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(BiasampError, match="safetensors"):
        load_backend("diffusers", str(tmp_path / "bin"), device="cpu")


def test_safety_checker_flags_are_recorded_and_filtered(tmp_path):
    from biasamp.generate import load_backend
    from biasamp.generate.testing import build_tiny_pipeline

    model = build_tiny_pipeline(tmp_path / "tiny-sc", seed=0, safety_checker=True)
    backend = load_backend("diffusers", str(model), device="cpu", safety_checker=True)
    ok = generate_images(tmp_path / "ok", backend=backend, occupations="nurse", templates="face", images_per_prompt=2, **FAST)
    assert ok["nsfw"].to_list() == [False, False]
    off = load_backend("diffusers", str(model), device="cpu")  # the checker is not even loaded
    assert off.pipe.safety_checker is None
    assert generate_images(tmp_path / "off", backend=off, occupations="nurse", templates="face", images_per_prompt=1, **FAST)["nsfw"].null_count() == 1
    backend.pipe.safety_checker.concept_embeds_weights.data[:] = -2.0  # now every image is flagged (and blacked out)
    flagged = generate_images(tmp_path / "all", backend=backend, occupations="nurse", templates="face", images_per_prompt=1, **FAST)
    assert flagged["nsfw"].to_list() == [True]
    assert _pixels(flagged["image"][0], tmp_path / "all").max() == 0
    assert ok["safety_checker"].to_list() == [True, True] and flagged["safety_checker"].to_list() == [True]
    import biasamp.generate.run as run_module

    loaded = []
    real_load = run_module._load
    run_module_load = lambda name, model, **opts: loaded.append(opts) or real_load(name, model, **opts)  # noqa: E731
    try:
        run_module._load = run_module_load
        regenerate_image(ok.row(0, named=True))  # the row says the checker ran: it is loaded again
        regenerate_image(generate_images(tmp_path / "off2", backend=off, occupations="nurse", templates="face", images_per_prompt=1, **FAST).row(0, named=True))
    finally:
        run_module._load = real_load
    assert [o["safety_checker"] for o in loaded] == [True, False]
    none = generate_images(tmp_path / "u", backend=backend, occupations="nurse", templates="face", until_usable=1, max_attempts=2, accept="not-blank", **FAST)
    assert none.is_empty()
    att = pl.read_parquet(tmp_path / "u" / "attempts" / "*.parquet")
    assert att["nsfw"].to_list() == [True, True] and not att["accepted"].any() and set(att["filter"]) == {"not-blank"}


def test_face_filter_for_until_usable(tmp_path, tiny_backend):
    """`accept="face"`: the study's rule (one face of at least 0.1 of the image), by dlib."""
    pytest.importorskip("dlib")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    from biasamp.generate.run import resolve_accept

    face, name = resolve_accept("face")
    assert name == "face"
    astronaut = Image.fromarray(skimage_data.astronaut())  # one face, large
    assert face(astronaut, {"nsfw": None}) is True
    assert face(astronaut, {"nsfw": True}) is False  # flagged images never count
    assert face(Image.new("RGB", (512, 512), (128, 128, 128)), {}) is False
    two = Image.new("RGB", (1024, 512))
    two.paste(astronaut, (0, 0))
    two.paste(astronaut, (512, 0))
    assert face(two, {}) is False  # many faces
    small = Image.new("RGB", (2048, 2048), (128, 128, 128))
    small.paste(astronaut.resize((160, 160)), (0, 0))
    assert face(small, {}) is False  # a face under 0.1 of the image
    # random tiny-pipeline images hold no face: every attempt is recorded, none accepted
    none = generate_images(tmp_path / "u", backend=tiny_backend, occupations="nurse", templates="face", until_usable=1, max_attempts=2,
                           accept="face", **FAST)
    assert none.is_empty()
    att = pl.read_parquet(tmp_path / "u" / "attempts" / "*.parquet")
    assert len(att) == 2 and not att["accepted"].any() and set(att["filter"]) == {"face"}


def test_custom_pipeline_code_is_never_run(tmp_path, tiny_model):
    """A folder whose model_index.json names its own pipeline module is refused, and the
    module is never imported (no trust_remote_code)."""
    import json
    import shutil

    from biasamp.generate import load_backend

    folder = tmp_path / "custom"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "ran"
    (folder / "pipeline_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nfrom diffusers import StableDiffusionPipeline\n"
        "class EvilPipeline(StableDiffusionPipeline):\n    pass\n")
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = ["pipeline_evil", "EvilPipeline"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(BiasampError):
        load_backend("diffusers", str(folder), device="cpu")
    assert not marker.exists()


def _accept_two_in_three(image, row) -> bool:
    return row["seed"] % 3 != 0


def test_until_usable_resumes_to_the_same_images_and_attempts(tmp_path, tiny_backend):
    """A shard lost to a kill (its generations part missing) is drawn again on resume: the
    same accepted images and the same attempts, none recorded twice."""
    from pathlib import Path

    kw = dict(backend=tiny_backend, occupations="nurse,chef,baker,pilot", templates="face", until_usable=2, max_attempts=6,
              accept=_accept_two_in_three, batch_size=3, shard_size=2, steps=1, height=32, width=32, show_progress=False)
    ref = generate_images(tmp_path / "ref", **kw)
    generate_images(tmp_path / "run", **kw)
    parts = sorted(Path(tmp_path / "run" / "generations").glob("part-*.parquet"))
    assert len(parts) >= 2
    parts[-1].unlink()
    again = generate_images(tmp_path / "run", **kw)
    assert again.sort("item_id").drop("shard").equals(ref.sort("item_id").drop("shard"))
    a_ref = pl.read_parquet(tmp_path / "ref" / "attempts" / "*.parquet").sort("item_id")
    a_run = pl.read_parquet(tmp_path / "run" / "attempts" / "*.parquet").sort("item_id")
    assert a_run.equals(a_ref) and a_run["item_id"].is_unique().all() and (~a_run["accepted"]).any()
    for ref_path in again["image"]:
        assert read_image_bytes(ref_path, tmp_path / "run") == read_image_bytes(ref_path, tmp_path / "ref")


def test_resume_with_a_loaded_backend_of_another_scheduler_is_refused(tmp_path, tiny_model):
    """A loaded backend's scheduler is part of the run's settings: a resumed run cannot mix two."""
    from pathlib import Path

    from biasamp.generate import load_backend

    kw = dict(occupations="nurse,engineer", templates="face", images_per_prompt=1, shard_size=1, **FAST)
    ddim = load_backend("diffusers", str(tiny_model), device="cpu", scheduler="DDIMScheduler")
    generate_images(tmp_path / "mix", backend=ddim, **kw)
    sorted(Path(tmp_path / "mix" / "generations").glob("part-*.parquet"))[-1].unlink()
    euler = load_backend("diffusers", str(tiny_model), device="cpu", scheduler="EulerDiscreteScheduler")
    with pytest.raises(BiasampError, match="scheduler"):
        generate_images(tmp_path / "mix", backend=euler, **kw)
    again = generate_images(tmp_path / "mix", backend=ddim, **kw)
    assert set(again["scheduler"]) == {"DDIMScheduler"}


def test_local_model_folders_are_recorded_by_absolute_path(tmp_path, tiny_model, monkeypatch):
    """Rows name a local model by its absolute path, so any single image can be redone from
    another working directory; --revision with a local folder is refused (it would be ignored)."""
    import shutil

    from biasamp.generate import load_backend

    shutil.copytree(tiny_model, tmp_path / "tiny-sd")
    monkeypatch.chdir(tmp_path)
    gens = generate_images("out", "tiny-sd", occupations="nurse", templates="face", images_per_prompt=1, device="cpu", **FAST)
    assert gens["model"].to_list() == [str((tmp_path / "tiny-sd").resolve())]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = regenerate_image(gens.row(0, named=True))
    assert np.array_equal(np.asarray(again), _pixels(gens["image"][0], tmp_path / "out"))
    with pytest.raises(BiasampError, match="applies to hub ids"):
        load_backend("diffusers", str(tmp_path / "tiny-sd"), device="cpu", revision="v2")


@pytest.mark.slow
def test_hub_models_record_the_commit_loaded(tmp_path):
    """A hub id loaded from the local cache without --revision records the commit that `main`
    pointed to, so that moving `main` later cannot silently change a redone image."""
    import os
    import subprocess
    import sys

    from biasamp.generate.testing import build_tiny_pipeline

    cache = tmp_path / "hub"
    repo = cache / "models--biasamp-test--tiny"
    for commit, ref in (("a" * 40, "main"), ("b" * 40, "v2")):
        build_tiny_pipeline(repo / "snapshots" / commit, seed=0)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    script = (
        "import sys\nfrom biasamp.generate import generate_images\n"
        "for rev in (None, 'v2'):\n"
        "    g = generate_images(sys.argv[1] + '/' + str(rev), 'biasamp-test/tiny', revision=rev, occupations='nurse', templates='face',\n"
        "                        images_per_prompt=1, steps=1, height=32, width=32, device='cpu', show_progress=False)\n"
        "    print(rev, g['model'][0], g['revision'][0])\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert lines == [f"None biasamp-test/tiny {'a' * 40}", f"v2 biasamp-test/tiny {'b' * 40}"]
