"""Fixtures for the classify tests: real photographs shipped in installed packages, and tiny
random CLIP / safety-checker models built from configs, saved and loaded back by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut photograph (Eileen Collins): a woman."""
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()


@pytest.fixture(scope="session")
def grace_hopper_path() -> Path:
    """matplotlib's Grace Hopper photograph: a woman in naval uniform."""
    import matplotlib.cbook as cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory, astronaut, grace_hopper_path) -> Path:
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    (d / "grace_hopper.jpg").write_bytes(grace_hopper_path.read_bytes())
    Image.new("RGB", (320, 240), (200, 200, 200)).save(d / "blank.png")
    (d / "truncated.jpg").write_bytes(grace_hopper_path.read_bytes()[:4000])
    return d


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A random CLIP (tokenizer + model + image processor) saved to a folder, offline."""
    pytest.importorskip("torch")
    from biasamp.testing import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), image_size=30, patch_size=6, heads=4)


def make_safety_checker(folder: Path, *, flag_everything: bool) -> Path:
    """A tiny random Stable Diffusion safety checker whose thresholds flag all or nothing."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    from biasamp.testing import clip_image_processor, tiny_clip_config

    torch.manual_seed(0)
    config = tiny_clip_config(image_size=30, patch_size=6, heads=4, vocab_size=100, bos_token_id=0, eos_token_id=1)
    sc = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        # a concept fires when cos(image, concept) - weight > 0; cosines lie in [-1, 1]
        sc.concept_embeds_weights.fill_(-2.0 if flag_everything else 2.0)
        sc.special_care_embeds_weights.fill_(2.0)
    sc.save_pretrained(folder)
    clip_image_processor(30).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def safety_checker_factory():
    pytest.importorskip("diffusers")
    return make_safety_checker
