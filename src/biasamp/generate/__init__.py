"""Image generation: prompts from templates or captions, any diffusers model,
one seed per image, sharded and resumable output.

    from biasamp.generate import build_prompts, generate_images
    gens = generate_images("run/gen", "stable-diffusion-v1-5/stable-diffusion-v1-5",
                           occupations="nurse,engineer", images_per_prompt=10)

Heavy libraries (torch, diffusers) are imported only when a backend is loaded.
"""

from biasamp.generate.backends import GENERATORS, load_backend
from biasamp.generate.images import open_image, read_image_bytes
from biasamp.generate.prompts import CAPTION_CONDITION, TEMPLATE_CONDITION, build_prompts, fit_to_tokens
from biasamp.generate.run import ACCEPT_FILTERS, ROW_SCHEMA, generate_batch, generate_images, regenerate_image
from biasamp.generate.seeds import derive_seed

__all__ = [
    "ACCEPT_FILTERS",
    "CAPTION_CONDITION",
    "GENERATORS",
    "ROW_SCHEMA",
    "TEMPLATE_CONDITION",
    "build_prompts",
    "derive_seed",
    "fit_to_tokens",
    "generate_batch",
    "generate_images",
    "load_backend",
    "open_image",
    "read_image_bytes",
    "regenerate_image",
]
