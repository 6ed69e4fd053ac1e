"""Fixtures for the classify tests: real photographs shipped in installed packages, and tiny
random CLIP / safety-checker models built from configs, saved and loaded back by path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte → printable-unicode table (so a byte-level vocab is plain text)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


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


def _tiny_clip_config(vocab_size: int, bos: int, eos: int, image_size: int = 30):
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=6),
        projection_dim=16,
    )


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A random CLIP (tokenizer + model + image processor) saved to a folder, offline."""
    torch = pytest.importorskip("torch")
    from transformers import CLIPModel, CLIPTokenizer

    try:
        from transformers import CLIPImageProcessorPil as Proc
    except ImportError:  # pragma: no cover
        from transformers import CLIPImageProcessor as Proc
    d = tmp_path_factory.mktemp("tiny-clip")
    vocab: dict[str, int] = {}
    syms = list(bytes_to_unicode().values())
    for s in syms:
        vocab[s] = len(vocab)
    for s in syms:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"))
    torch.manual_seed(0)
    model = CLIPModel(_tiny_clip_config(len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"])).eval()
    model.save_pretrained(d)
    tok.save_pretrained(d)
    Proc(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30}).save_pretrained(d)
    return d


def make_safety_checker(folder: Path, *, flag_everything: bool) -> Path:
    """A tiny random Stable Diffusion safety checker whose thresholds flag all or nothing."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    try:
        from transformers import CLIPImageProcessorPil as Proc
    except ImportError:  # pragma: no cover
        from transformers import CLIPImageProcessor as Proc
    torch.manual_seed(0)
    sc = StableDiffusionSafetyChecker(_tiny_clip_config(100, 0, 1)).eval()
    with torch.no_grad():
        # a concept fires when cos(image, concept) - weight > 0; cosines lie in [-1, 1]
        sc.concept_embeds_weights.fill_(-2.0 if flag_everything else 2.0)
        sc.special_care_embeds_weights.fill_(2.0)
    sc.save_pretrained(folder)
    Proc(size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def safety_checker_factory():
    pytest.importorskip("diffusers")
    return make_safety_checker
