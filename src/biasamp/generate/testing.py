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

from pathlib import Path

from biasamp.testing import CLIP_MAX_TOKENS, write_byte_level_clip_tokenizer

__all__ = [
    "CLIP_MAX_TOKENS", "build_pipeline_folder", "build_tiny_pipeline", "sd15_sized_components", "tiny_components",
    "tiny_safety_checker", "write_byte_level_clip_tokenizer",
]


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
    from transformers import CLIPImageProcessor

    from biasamp.testing import tiny_clip_config

    config = tiny_clip_config(image_size=32, patch_size=8, layers=1, heads=4, projection_dim=32)
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
