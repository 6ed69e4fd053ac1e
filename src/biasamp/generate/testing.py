"""Tiny random diffusion pipelines built from configs, for tests and offline demos.

`build_tiny_pipeline(path)` writes a complete Stable Diffusion pipeline folder (UNet,
VAE, CLIP text encoder, an offline byte-level CLIP tokenizer, a PNDM scheduler) with
random weights, saved with `save_pretrained` in safetensors. It loads back through the
same `from_pretrained` path as a real model, generates a 64x64 image in milliseconds per
step on a CPU, and the same arguments always give byte-identical files.

`sd15_sized_components()` builds the same architecture at Stable Diffusion 1.5 sizes
(random weights), for speed measurements.
"""

from __future__ import annotations

import json
from pathlib import Path

#: CLIP's context length (the text encoder's token limit).
CLIP_MAX_TOKENS = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_byte_level_clip_tokenizer(folder: str | Path, *, model_max_length: int = CLIP_MAX_TOKENS):
    """Write a CLIP tokenizer that needs no download: one token per byte, no merges.

    Vocabulary: the 256 byte symbols, the same with the end-of-word mark `</w>`,
    `<|startoftext|>` and `<|endoftext|>` (514 entries); an empty merges file.
    Returns the loaded `CLIPTokenizer`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(folder))
    return tok


def tiny_components(seed: int = 0, *, sample_size: int = 32, text_layers: int = 2):
    """The components of a tiny random Stable Diffusion pipeline (deterministic in `seed`)."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = write_byte_level_clip_tokenizer(tmp)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=sample_size * 2,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=len(tokenizer) - 2,
            eos_token_id=len(tokenizer) - 1,
            pad_token_id=len(tokenizer) - 1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=text_layers,
            vocab_size=len(tokenizer),
            max_position_embeddings=CLIP_MAX_TOKENS,
            layer_norm_eps=1e-5,
        )
    )
    scheduler = _sd_scheduler(PNDMScheduler)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def _sd_scheduler(cls):
    """Stable Diffusion 1.x's scheduler settings."""
    return cls(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )


def sd15_sized_components(seed: int = 0):
    """Stable Diffusion 1.5's architecture (UNet, VAE, CLIP ViT-L/14 text encoder) with
    random weights, built from configs; a byte-level tokenizer stands in for CLIP's BPE."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = write_byte_level_clip_tokenizer(tmp)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        norm_num_groups=32,
        sample_size=512,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=len(tokenizer) - 2,
            eos_token_id=len(tokenizer) - 1,
            pad_token_id=len(tokenizer) - 1,
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            vocab_size=49408,
            max_position_embeddings=CLIP_MAX_TOKENS,
            hidden_act="quick_gelu",
            projection_dim=768,
        )
    )
    scheduler = _sd_scheduler(PNDMScheduler)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)


def tiny_safety_checker(seed: int = 0):
    """A tiny random Stable Diffusion safety checker and its image processor."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    small = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1)
    config = CLIPConfig(
        text_config=dict(small, vocab_size=514, max_position_embeddings=CLIP_MAX_TOKENS, bos_token_id=512, eos_token_id=513, pad_token_id=513),
        vision_config=dict(small, image_size=32, patch_size=8),
        projection_dim=32,
    )
    torch.manual_seed(seed + 3)
    return StableDiffusionSafetyChecker(config), CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def build_pipeline_folder(path: str | Path, components: dict, *, dtype: str | None = None) -> Path:
    """Assemble a StableDiffusionPipeline from `components` and save it (safetensors).
    `components` may hold `safety_checker` and `feature_extractor`; by default there is none."""
    import torch
    from diffusers import StableDiffusionPipeline

    components = dict(components)
    checker = components.pop("safety_checker", None)
    extractor = components.pop("feature_extractor", None)
    pipe = StableDiffusionPipeline(
        **components, safety_checker=checker, feature_extractor=extractor, requires_safety_checker=checker is not None
    )
    if dtype is not None:
        pipe.to(getattr(torch, dtype))
    path = Path(path)
    pipe.save_pretrained(str(path), safe_serialization=True)
    return path


def build_tiny_pipeline(path: str | Path, seed: int = 0, *, safety_checker: bool = False) -> Path:
    """Write a tiny random Stable Diffusion pipeline folder at `path` and return it.

    Load it like any model: `biasamp generate --model PATH …`, or
    `DiffusionPipeline.from_pretrained(PATH, use_safetensors=True)`. Default image size
    64x64. Same arguments -> byte-identical files. `safety_checker=True` adds a tiny random
    safety checker (with random weights it flags nothing).
    """
    components = tiny_components(seed)
    if safety_checker:
        components["safety_checker"], components["feature_extractor"] = tiny_safety_checker(seed)
    return build_pipeline_folder(path, components)
